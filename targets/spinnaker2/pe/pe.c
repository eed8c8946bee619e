/* EGRU and readout PE kernel: event-driven accumulation, per-tick neuron update.
 * Integer rules (egru_deploy.profiles): exact sums then saturation; right shifts round half up;
 * sigmoid/tanh from lookup tables; every saturation counted. */
#include "pe.h"

static const pe_header *hdr;
static uint8_t *base;

#define SECTION(type, name) ((type *)(base + hdr->off_##name))

static int64_t rshift_round(int64_t x, int s)
{
    if (s > 0)
        return (x + ((int64_t)1 << (s - 1))) >> s;
    if (s < 0)
        return x * ((int64_t)1 << -s); /* exact left shift, also for negative x */
    return x;
}

static int64_t saturate(int64_t x, unsigned bits, unsigned counter)
{
    const int64_t hi = ((int64_t)1 << (bits - 1)) - 1, lo = -hi - 1;
    uint32_t *counters = SECTION(uint32_t, counters);
    if (x > hi) {
        counters[counter]++;
        return hi;
    }
    if (x < lo) {
        counters[counter]++;
        return lo;
    }
    return x;
}

static int64_t lookup(const int16_t *table, int64_t a, int32_t offset, unsigned shift)
{
    int64_t index = (a + offset) >> shift;
    if (index < 0)
        index = 0;
    if (index > hdr->lut_entries - 1)
        index = hdr->lut_entries - 1;
    return table[index];
}

static const char *const STATUS_TEXT[PE_N_STATUS] = {
    [PE_OK] = "ok",
    [PE_BAD_SIZE] = "image_bytes exceeds the image (or the image is shorter than its header or misaligned)",
    [PE_BAD_MAGIC] = "wrong magic",
    [PE_BAD_VERSION] = "unsupported version",
    [PE_BAD_KIND] = "kind is neither EGRU nor Linear (or a Linear image has h_rows)",
    [PE_BAD_FORMAT] = "x_format or h_format is not dense, csr8, csr16 or csr8b",
    [PE_BAD_SECTION] = "a section offset is misaligned, out of order or its section (sized from the "
                       "header's counts) leaves the image",
    [PE_BAD_CSR] = "CSR row pointers do not start at 0 or decrease, or a column index is out of range",
    [PE_BAD_LUT] = "lut_entries is 0",
    [PE_BAD_STATE] = "state_begin is not off_acc_x, or state_end does not cover the state inside the image",
    [PE_BAD_ARITHMETIC] = "a bit width or shift is outside what 64-bit arithmetic supports, or zoneout_gain "
                          "is outside 0..2^state_frac",
};

const char *pe_status_text(int status)
{
    return status >= 0 && status < PE_N_STATUS ? STATUS_TEXT[status] : "unknown status";
}

/* A section of `bytes` at `off`: 8-byte aligned (int64 accumulators), after the previous section
 * (so sections never overlap) and inside the image.  64-bit sums: header counts cannot wrap. */
static int place(uint32_t off, uint64_t bytes, uint64_t *cursor)
{
    if (off % 8 != 0 || off < *cursor || off + bytes > hdr->image_bytes)
        return 0;
    *cursor = off + bytes;
    return 1;
}

/* A weight matrix's ptr/idx/val sections; for CSR, row pointers from 0 never decrease and every
 * column index is below `cols` (pe_receive indexes the accumulators with them unchecked).  csr8b has
 * banks * rows + 1 pointers, bank-major, and an entry of bank b stands for column 256 b + idx. */
static int check_matrix(unsigned format, uint32_t rows, uint32_t cols, uint32_t off_ptr, uint32_t off_idx,
                        uint32_t off_val, uint64_t *cursor)
{
    if (format == PE_FORMAT_DENSE)
        return place(off_ptr, 0, cursor) && place(off_idx, 0, cursor) &&
               place(off_val, (uint64_t)rows * cols, cursor) ? PE_OK : PE_BAD_SECTION;
    if (format != PE_FORMAT_CSR8 && format != PE_FORMAT_CSR16 && format != PE_FORMAT_CSR8B)
        return PE_BAD_FORMAT;
    const uint64_t banks = format == PE_FORMAT_CSR8B ? ((uint64_t)cols + PE_BANK_COLUMNS - 1) / PE_BANK_COLUMNS : 1;
    const uint64_t segments = banks * rows; /* < 2^56: no wrap, and place() bounds it by the image */
    if (!place(off_ptr, 2 * (segments + 1), cursor))
        return PE_BAD_SECTION;
    const uint16_t *ptr = (const uint16_t *)(base + off_ptr);
    if (ptr[0] != 0)
        return PE_BAD_CSR;
    for (uint64_t s = 0; s < segments; s++)
        if (ptr[s + 1] < ptr[s])
            return PE_BAD_CSR;
    const uint32_t nnz = ptr[segments], width = format == PE_FORMAT_CSR16 ? 2u : 1u;
    if (!place(off_idx, (uint64_t)nnz * width, cursor) || !place(off_val, nnz, cursor))
        return PE_BAD_SECTION;
    if (format == PE_FORMAT_CSR8B) {
        for (uint64_t b = 0; b < banks; b++)
            for (uint32_t k = ptr[b * rows]; k < ptr[(b + 1) * rows]; k++)
                if (b * PE_BANK_COLUMNS + base[off_idx + k] >= cols)
                    return PE_BAD_CSR;
        return PE_OK;
    }
    for (uint32_t k = 0; k < nnz; k++) {
        const uint32_t col = width == 1 ? base[off_idx + k] : ((const uint16_t *)(base + off_idx))[k];
        if (col >= cols)
            return PE_BAD_CSR;
    }
    return PE_OK;
}

static int bits_ok(unsigned bits)
{
    return bits >= 1 && bits <= 63; /* saturate() builds 1 << (bits - 1) in int64 */
}

static int shift_ok(int shift)
{
    return shift >= -62 && shift <= 63; /* rshift_round: 1 << (s - 1), or 1 << -s */
}

static int check_header(uint32_t size)
{
    if (size < sizeof(pe_header) || (uintptr_t)base % 8 != 0)
        return PE_BAD_SIZE;
    if (hdr->magic != PE_MAGIC)
        return PE_BAD_MAGIC;
    if (hdr->version != PE_VERSION)
        return PE_BAD_VERSION;
    if (hdr->image_bytes > size)
        return PE_BAD_SIZE;
    const int egru = hdr->kind == PE_KIND_EGRU;
    if (!egru && (hdr->kind != PE_KIND_LINEAR || hdr->h_rows != 0))
        return PE_BAD_KIND; /* a Linear PE has no recurrent matrix (and no acc_h to add it to) */
    if (!bits_ok(hdr->acc_bits) || !bits_ok(hdr->state_bits) || !bits_ok(hdr->event_bits) ||
        !shift_ok(hdr->shift_x) || (!egru && !bits_ok(hdr->out_bits)) ||
        (egru && (!shift_ok(hdr->shift_h) || hdr->state_frac > 62 || !shift_ok(hdr->event_shift) ||
                  !shift_ok(hdr->sigmoid_shift) || !shift_ok(hdr->tanh_shift) || hdr->zoneout_gain < 0 ||
                  hdr->zoneout_gain > ((int64_t)1 << hdr->state_frac))))
        return PE_BAD_ARITHMETIC;
    if (egru && hdr->lut_entries == 0)
        return PE_BAD_LUT; /* lookup() clamps to lut_entries - 1 */
    const uint64_t n = hdr->n_units, cols = egru ? 3 * n : n, lut = egru ? hdr->lut_entries : 0;
    uint64_t cursor = sizeof(pe_header);
    if (!place(hdr->off_sources, (uint64_t)sizeof(pe_source) * hdr->n_sources, &cursor))
        return PE_BAD_SECTION;
    int status = check_matrix(hdr->x_format, hdr->x_rows, (uint32_t)cols, hdr->off_x_ptr, hdr->off_x_idx,
                              hdr->off_x_val, &cursor);
    if (status == PE_OK)
        status = check_matrix(hdr->h_format, hdr->h_rows, (uint32_t)cols, hdr->off_h_ptr, hdr->off_h_idx,
                              hdr->off_h_val, &cursor);
    if (status != PE_OK)
        return status;
    if (!place(hdr->off_bias, 4 * cols, &cursor) || !place(hdr->off_rbias, egru ? 4 * cols : 0, &cursor) ||
        !place(hdr->off_thr, egru ? 4 * n : 0, &cursor) || !place(hdr->off_lut_sigmoid, 2 * lut, &cursor) ||
        !place(hdr->off_lut_tanh, 2 * lut, &cursor))
        return PE_BAD_SECTION;
    if (!place(hdr->off_acc_x, 8 * cols, &cursor) || !place(hdr->off_acc_h, egru ? 8 * cols : 0, &cursor) ||
        !place(hdr->off_cell, egru ? 4 * n : 0, &cursor) || !place(hdr->off_trace, egru ? 4 * n : 0, &cursor) ||
        !place(hdr->off_counters, 4 * PE_N_COUNTERS, &cursor))
        return PE_BAD_SECTION;
    /* pe_reset zeroes [state_begin, state_end): all of the state, and no weight. */
    if (hdr->state_begin != hdr->off_acc_x || hdr->state_end < cursor || hdr->state_end > hdr->image_bytes)
        return PE_BAD_STATE;
    return PE_OK;
}

int pe_init(uint8_t *image, uint32_t size)
{
    base = image;
    hdr = (const pe_header *)image;
    const int status = check_header(size);
    if (status == PE_OK)
        pe_reset();
    return status;
}

void pe_reset(void)
{
    for (uint32_t i = hdr->state_begin; i < hdr->state_end; i++)
        base[i] = 0;
}

const uint32_t *pe_counters(void)
{
    return SECTION(uint32_t, counters);
}

static void accumulate(int64_t *acc, unsigned format, uint32_t cols, uint32_t ptr_rows, const uint16_t *ptr,
                       const uint8_t *idx, const int8_t *val, uint32_t row, int32_t payload)
{
    if (format == PE_FORMAT_DENSE) {
        const int8_t *w = val + row * cols;
        for (uint32_t c = 0; c < cols; c++)
            acc[c] += (int64_t)w[c] * payload;
    } else if (format == PE_FORMAT_CSR8) {
        for (uint32_t k = ptr[row]; k < ptr[row + 1]; k++)
            acc[idx[k]] += (int64_t)val[k] * payload;
    } else if (format == PE_FORMAT_CSR8B) {
        const uint32_t banks = (cols + PE_BANK_COLUMNS - 1) / PE_BANK_COLUMNS, rows = ptr_rows;
        for (uint32_t b = 0; b < banks; b++) {
            int64_t *bank = acc + b * PE_BANK_COLUMNS;
            const uint16_t *p = ptr + b * rows + row;
            for (uint32_t k = p[0]; k < p[1]; k++)
                bank[idx[k]] += (int64_t)val[k] * payload;
        }
    } else {
        const uint16_t *idx16 = (const uint16_t *)idx;
        for (uint32_t k = ptr[row]; k < ptr[row + 1]; k++)
            acc[idx16[k]] += (int64_t)val[k] * payload;
    }
}

void pe_receive(uint32_t key, int32_t payload)
{
    const pe_source *sources = SECTION(pe_source, sources);
    const uint32_t population = key >> PE_UNIT_BITS, row = key & (PE_CHANNEL_BIT - 1);
    const uint32_t cols = hdr->kind == PE_KIND_EGRU ? 3u * hdr->n_units : hdr->n_units;
    for (uint32_t s = 0; s < hdr->n_sources; s++) {
        if (sources[s].population != population)
            continue;
        if (sources[s].matrix == PE_MATRIX_X && row < hdr->x_rows) {
            accumulate(SECTION(int64_t, acc_x), hdr->x_format, cols, hdr->x_rows, SECTION(uint16_t, x_ptr),
                       SECTION(uint8_t, x_idx), SECTION(int8_t, x_val), row, payload);
            return;
        }
        if (sources[s].matrix == PE_MATRIX_H && row < hdr->h_rows) {
            accumulate(SECTION(int64_t, acc_h), hdr->h_format, cols, hdr->h_rows, SECTION(uint16_t, h_ptr),
                       SECTION(uint8_t, h_idx), SECTION(int8_t, h_val), row, payload);
            return;
        }
    }
    SECTION(uint32_t, counters)[PE_COUNTER_DROPPED]++; /* a routing error: no source of this PE */
}

static void egru_update(void)
{
    const uint32_t n = hdr->n_units;
    const int64_t one = (int64_t)1 << hdr->state_frac;
    int64_t *acc_x = SECTION(int64_t, acc_x), *acc_h = SECTION(int64_t, acc_h);
    const int32_t *bias = SECTION(int32_t, bias), *rbias = SECTION(int32_t, rbias), *thr = SECTION(int32_t, thr);
    const int16_t *sig = SECTION(int16_t, lut_sigmoid), *tanh_table = SECTION(int16_t, lut_tanh);
    int32_t *cell = SECTION(int32_t, cell), *trace = SECTION(int32_t, trace);
    for (uint32_t j = 0; j < n; j++) {
        int64_t gx[3], gh[3];
        for (uint32_t g = 0; g < 3; g++) {
            const uint32_t c = g * n + j;
            gx[g] = rshift_round(saturate(acc_x[c], hdr->acc_bits, PE_COUNTER_ACCUMULATOR), hdr->shift_x) + bias[c];
            gh[g] = rshift_round(saturate(acc_h[c], hdr->acc_bits, PE_COUNTER_ACCUMULATOR), hdr->shift_h) + rbias[c];
            acc_x[c] = acc_h[c] = 0;
        }
        const int64_t z = lookup(sig, saturate(gx[0] + gh[0], hdr->state_bits, PE_COUNTER_STATE),
                                 hdr->sigmoid_offset, hdr->sigmoid_shift);
        const int64_t r = lookup(sig, saturate(gx[1] + gh[1], hdr->state_bits, PE_COUNTER_STATE),
                                 hdr->sigmoid_offset, hdr->sigmoid_shift);
        const int64_t a_g = gx[2] + rshift_round(r * gh[2], hdr->state_frac);
        const int64_t g = lookup(tanh_table, saturate(a_g, hdr->state_bits, PE_COUNTER_STATE),
                                 hdr->tanh_offset, hdr->tanh_shift);
        const int64_t c_old = cell[j];
        int64_t c_new = saturate(c_old + rshift_round((one - z) * (g - c_old), hdr->state_frac),
                                 hdr->state_bits, PE_COUNTER_STATE);
        /* zoneout's eval blend p*c + (1-p)*c' (EvNN lib/egru_forward_cpu.cc), gain = p in Q.state_frac:
         * the result lies between c_old and c_new, so it needs no saturation */
        c_new += rshift_round(hdr->zoneout_gain * (c_old - c_new), hdr->state_frac);
        const int fired = c_new > thr[j];
        cell[j] = (int32_t)(fired ? c_new - thr[j] : c_new);
        const int64_t event = saturate(rshift_round(fired ? c_new : 0, hdr->event_shift), hdr->event_bits,
                                       PE_COUNTER_EVENT);
        trace[j] = (int32_t)(trace[j] + rshift_round((int64_t)hdr->trace_gain * (event - trace[j]),
                                                     hdr->state_frac));
        if (event != 0)
            pe_send(hdr->key_base + j, (int32_t)event);
        if (hdr->use_trace && trace[j] != 0)
            pe_send((hdr->key_base + j) | PE_CHANNEL_BIT, trace[j]);
    }
}

static void linear_update(void)
{
    int64_t *acc = SECTION(int64_t, acc_x);
    const int32_t *bias = SECTION(int32_t, bias);
    for (uint32_t j = 0; j < hdr->n_units; j++) {
        int64_t out = rshift_round(saturate(acc[j], hdr->acc_bits, PE_COUNTER_ACCUMULATOR), hdr->shift_x) + bias[j];
        acc[j] = 0;
        if (hdr->relu && out < 0)
            out = 0;
        out = saturate(out, hdr->out_bits, PE_COUNTER_OUTPUT);
        if (out != 0)
            pe_send(hdr->key_base + j, (int32_t)out);
    }
}

void pe_tick(uint32_t tick)
{
    if (tick < hdr->first_tick) /* this layer's first step happens after `depth` hops */
        return;
    if (hdr->kind == PE_KIND_EGRU)
        egru_update();
    else
        linear_update();
}
