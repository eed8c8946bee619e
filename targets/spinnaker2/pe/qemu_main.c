/* QEMU shim: the same application layer (app.c) the board runtime drives, fed from files instead of
 * interrupts.  The PE's regions (data spec, params, image) are linked at their fixed addresses (pe.ld,
 * .pe_regions), exactly as the host writes them on the board.  The shim reads the packets routed to this
 * PE (events.bin) through semihosting, calls app_packet() for each and app_tick() once per tick, and
 * writes every packet runtime_send() emits plus the counters (sent.bin).  Its buffers live in the
 * board's SSRAM2/3 (HARNESS region), outside the PE's memory.
 *
 * events.bin: u32 magic "EVS2", n_samples, n_ticks; per sample, per tick: u32 n, n x (u32 key, u32 payload)
 * sent.bin:   per sample: per tick: u32 n, n x (u32 key, u32 payload); then, for a kernel PE, PE_N_COUNTERS
 *             u32 counters; then, when the params set n_ticks (a board run), the status region's words and
 *             the record region's words */
#include "app.h"
#include "pe.h"
#include "semihosting.h"

#define STREAM_MAGIC 0x32535645u /* "EVS2" */

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

void runtime_send(uint32_t key, uint32_t payload)
{
    append(key);
    append(payload);
}

int main(void)
{
    const int code = app_init();
    if (code != 0) {
        sh_write0(code < PE_N_STATUS ? "pe: invalid image: " : "pe: invalid regions: ");
        sh_write0(app_status_text(code));
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
        app_reset();
        for (uint32_t t = 0; t < n_ticks; t++) {
            if (in >= in_end || in + 1 + 2 * in[0] > in_end)
                return fail("pe: events.bin truncated\n");
            const uint32_t n = *in++;
            for (uint32_t i = 0; i < n; i++, in += 2)
                app_packet(in[0], in[1]);
            uint32_t *count = out_cursor;
            append(0);
            app_tick();
            *count = (uint32_t)(out_cursor - count - 1) / 2;
        }
        if (app_mode() == MAP_MODE_KERNEL) {
            const uint32_t *counters = pe_counters();
            for (uint32_t i = 0; i < PE_N_COUNTERS; i++)
                append(counters[i]);
        }
        if (app_n_ticks()) {
            const uint32_t *words = (const uint32_t *)app_status();
            for (uint32_t i = 0; i < sizeof(map_status) / 4; i++)
                append(words[i]);
            uint32_t n_words;
            const uint32_t *record = app_record(&n_words);
            for (uint32_t i = 0; i < n_words; i++)
                append(record[i]);
        }
    }
    fd = sh_open("sent.bin", SH_MODE_WB);
    if (fd < 0 || sh_write(fd, out_start, (uint32_t)(out_cursor - out_start) * 4) != 0)
        return fail("pe: cannot write sent.bin\n");
    sh_close(fd);
    return 0;
}
