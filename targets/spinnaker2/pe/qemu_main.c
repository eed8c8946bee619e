/* QEMU harness around the PE kernel: reads the packets routed to this PE (events.bin) through
 * semihosting, delivers them tick by tick, and writes every packet the PE sends plus its counters
 * (sent.bin).  Its buffers live in the board's SSRAM2/3 (HARNESS region), outside the PE's memory.
 *
 * events.bin: u32 magic "EVS2", n_samples, n_ticks; per sample, per tick: u32 n, n x (u32 key, i32 payload)
 * sent.bin:   per sample: per tick: u32 n, n x (u32 key, i32 payload); then PE_N_COUNTERS u32 counters */
#include "pe.h"
#include "semihosting.h"

#define STREAM_MAGIC 0x32535645u /* "EVS2" */

extern uint8_t pe_image[], __pe_image_end[];
extern uint32_t __harness_start[], __harness_end[];

static uint32_t *out_cursor, *out_end;

static int fail(const char *message)
{
    sh_write0(message);
    return 1;
}

static void append(uint32_t word)
{
    if (out_cursor >= out_end) {
        sh_write0("pe: sent.bin buffer full\n");
        sh_exit(1);
    }
    *out_cursor++ = word;
}

void pe_send(uint32_t key, int32_t payload)
{
    append(key);
    append((uint32_t)payload);
}

int main(void)
{
    const int status = pe_init(pe_image, (uint32_t)(__pe_image_end - pe_image));
    if (status != PE_OK) {
        sh_write0("pe: invalid image: ");
        sh_write0(pe_status_text(status));
        return fail("\n");
    }
    const uint32_t harness_words = (uint32_t)(__harness_end - __harness_start);
    uint32_t *in = __harness_start, *in_end;
    int fd = sh_open("events.bin", SH_MODE_RB);
    if (fd < 0)
        return fail("pe: cannot open events.bin\n");
    const int length = sh_flen(fd);
    if (length < 12 || (uint32_t)length / 4 > harness_words / 2 || sh_read(fd, in, (uint32_t)length) != 0)
        return fail("pe: events.bin unreadable or too large\n");
    sh_close(fd);
    in_end = in + length / 4;
    if (in[0] != STREAM_MAGIC)
        return fail("pe: events.bin has a wrong magic\n");
    const uint32_t n_samples = in[1], n_ticks = in[2];
    in += 3;
    uint32_t *const out_start = __harness_start + harness_words / 2;
    out_cursor = out_start;
    out_end = __harness_end;
    for (uint32_t s = 0; s < n_samples; s++) {
        pe_reset();
        for (uint32_t t = 0; t < n_ticks; t++) {
            if (in >= in_end || in + 1 + 2 * in[0] > in_end)
                return fail("pe: events.bin truncated\n");
            const uint32_t n = *in++;
            for (uint32_t i = 0; i < n; i++, in += 2)
                pe_receive(in[0], (int32_t)in[1]);
            uint32_t *count = out_cursor;
            append(0);
            pe_tick(t);
            *count = (uint32_t)(out_cursor - count - 1) / 2;
        }
        const uint32_t *counters = pe_counters();
        for (uint32_t i = 0; i < PE_N_COUNTERS; i++)
            append(counters[i]);
    }
    fd = sh_open("sent.bin", SH_MODE_WB);
    if (fd < 0 || sh_write(fd, out_start, (uint32_t)(out_cursor - out_start) * 4) != 0)
        return fail("pe: cannot write sent.bin\n");
    sh_close(fd);
    return 0;
}
