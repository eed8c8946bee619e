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

int pe_init(uint8_t *image)
{
    base = image;
    hdr = (const pe_header *)image;
    if (hdr->magic != PE_MAGIC || hdr->version != PE_VERSION)
        return -1;
    pe_reset();
    return 0;
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

static void accumulate(int64_t *acc, unsigned format, uint32_t cols, const uint16_t *ptr,
                       const uint8_t *idx, const int8_t *val, uint32_t row, int32_t payload)
{
    if (format == PE_FORMAT_DENSE) {
        const int8_t *w = val + row * cols;
        for (uint32_t c = 0; c < cols; c++)
            acc[c] += (int64_t)w[c] * payload;
    } else if (format == PE_FORMAT_CSR8) {
        for (uint32_t k = ptr[row]; k < ptr[row + 1]; k++)
            acc[idx[k]] += (int64_t)val[k] * payload;
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
            accumulate(SECTION(int64_t, acc_x), hdr->x_format, cols, SECTION(uint16_t, x_ptr),
                       SECTION(uint8_t, x_idx), SECTION(int8_t, x_val), row, payload);
            return;
        }
        if (sources[s].matrix == PE_MATRIX_H && row < hdr->h_rows) {
            accumulate(SECTION(int64_t, acc_h), hdr->h_format, cols, SECTION(uint16_t, h_ptr),
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
        const int64_t c_new = saturate(c_old + rshift_round((one - z) * (g - c_old), hdr->state_frac),
                                       hdr->state_bits, PE_COUNTER_STATE);
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
