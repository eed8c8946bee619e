/* The application layer (app.h): regions, key translation, input sequence, record, status.
 * Nothing here does arithmetic on the network's values: the kernel (pe.c) does all of it. */
#include <string.h>
#include "app.h"
#include "pe.h"

static const map_data_spec *spec;
static const map_params *params;
static const map_key_range *ranges;
static map_status *status;
static uint32_t *record;
static const uint32_t *input;  /* an input PE's sequence, after its header */
static uint32_t input_ticks, input_cursor, tick, now;

static int region_ok(uint32_t r, uint32_t at_least, uint32_t *cursor)
{
    const uint64_t address = spec->address[r], end = address + spec->bytes[r];
    if (address % 8 != 0 || address < *cursor || end > MAP_STACK_ADDRESS || spec->bytes[r] < at_least)
        return 0;
    *cursor = (uint32_t)end;
    return 1;
}

/* Regions in address order after the data spec, inside the PE below its stack, none overlapping. */
static int check_spec(void)
{
    if (spec->magic != MAP_DATA_SPEC_MAGIC || spec->version != MAP_DATA_SPEC_VERSION)
        return APP_BAD_DATA_SPEC;
    uint32_t cursor = MAP_DATA_SPEC_ADDRESS + MAP_DATA_SPEC_BYTES;
    if (!region_ok(MAP_REGION_STATUS, sizeof(map_status), &cursor) || !region_ok(MAP_REGION_LOG, 0, &cursor) ||
        !region_ok(MAP_REGION_PARAMS, sizeof(map_params), &cursor) || !region_ok(MAP_REGION_IMAGE, 0, &cursor) ||
        !region_ok(MAP_REGION_RECORD, 0, &cursor))
        return APP_BAD_DATA_SPEC;
    return 0;
}

static int check_params(void)
{
    if (params->magic != MAP_PARAMS_MAGIC || params->version != MAP_PARAMS_VERSION ||
        params->n_ranges > MAP_MAX_RANGES ||
        sizeof(map_params) + (uint64_t)params->n_ranges * sizeof(map_key_range) > spec->bytes[MAP_REGION_PARAMS])
        return APP_BAD_PARAMS;
    if (params->record_units) {
        const uint64_t need = 4 * (1 + (uint64_t)params->record_units) * params->n_ticks;
        if (params->n_ticks == 0 || need > spec->bytes[MAP_REGION_RECORD] || params->record_channel > 1)
            return APP_BAD_RECORD;
    }
    return 0;
}

/* Header, then per tick a count and (unit, value) pairs, exactly n_words of them, every unit < n_units. */
static int check_input(const uint32_t *words, uint32_t bytes)
{
    const map_input *head = (const map_input *)words;
    if (bytes < sizeof(map_input) || head->magic != MAP_INPUT_MAGIC || head->version != MAP_INPUT_VERSION ||
        head->n_units != params->out_units || sizeof(map_input) + 4 * (uint64_t)head->n_words > bytes)
        return APP_BAD_INPUT;
    const uint32_t *w = words + sizeof(map_input) / 4;
    uint64_t at = 0;
    for (uint32_t t = 0; t < head->n_ticks; t++) {
        if (at >= head->n_words)
            return APP_BAD_INPUT;
        const uint64_t n = w[at++];
        if (at + 2 * n > head->n_words)
            return APP_BAD_INPUT;
        for (uint64_t i = 0; i < n; i++, at += 2)
            if (w[at] >= head->n_units)
                return APP_BAD_INPUT;
    }
    if (at != head->n_words)
        return APP_BAD_INPUT;
    input = w;
    input_ticks = head->n_ticks;
    return 0;
}

int app_init(void)
{
    spec = (const map_data_spec *)MAP_DATA_SPEC_ADDRESS;
    status = NULL;
    int code = check_spec();
    if (code == 0) {
        status = (map_status *)spec->address[MAP_REGION_STATUS];
        params = (const map_params *)spec->address[MAP_REGION_PARAMS];
        ranges = (const map_key_range *)(params + 1);
        code = check_params();
    }
    if (code == 0) {
        uint8_t *image = (uint8_t *)spec->address[MAP_REGION_IMAGE];
        const uint32_t bytes = spec->bytes[MAP_REGION_IMAGE];
        if (params->mode == MAP_MODE_KERNEL)
            code = pe_init(image, bytes);
        else if (params->mode == MAP_MODE_INPUT)
            code = check_input((const uint32_t *)image, bytes);
        else
            code = APP_BAD_MODE;
        record = params->record_units ? (uint32_t *)spec->address[MAP_REGION_RECORD] : NULL;
    }
    if (status) {
        memset(status, 0, sizeof(map_status));
        status->magic = MAP_STATUS_MAGIC;
        status->error = (uint32_t)code;
    }
    if (code == 0)
        app_reset();
    return code;
}

const char *app_status_text(int code)
{
    switch (code) {
    case APP_BAD_DATA_SPEC: return APP_BAD_DATA_SPEC_TEXT;
    case APP_BAD_PARAMS: return APP_BAD_PARAMS_TEXT;
    case APP_BAD_RECORD: return APP_BAD_RECORD_TEXT;
    case APP_BAD_INPUT: return APP_BAD_INPUT_TEXT;
    case APP_BAD_MODE: return APP_BAD_MODE_TEXT;
    default: return pe_status_text(code);
    }
}

void app_reset(void)
{
    if (params->mode == MAP_MODE_KERNEL)
        pe_reset();
    tick = input_cursor = 0;
    const uint32_t error = status->error;
    memset(status, 0, sizeof(map_status));
    status->magic = MAP_STATUS_MAGIC;
    status->error = error;
    if (record)
        memset(record, 0, 4 * (1 + (size_t)params->record_units) * params->n_ticks);
}

int app_done(void)
{
    return status && status->done;
}

uint32_t app_timer_period(void)
{
    return params->timer_period;
}

uint32_t app_n_ticks(void)
{
    return params->n_ticks;
}

uint32_t app_mode(void)
{
    return params->mode;
}

const map_status *app_status(void)
{
    return status;
}

const uint32_t *app_record(uint32_t *n_words)
{
    *n_words = record ? (1 + params->record_units) * params->n_ticks : 0;
    return record;
}

/* A kernel key (population << 20 | channel << 19 | unit) out: the network's key, and the record. */
static void send(uint32_t key, uint32_t payload)
{
    const uint32_t offset = key - params->out_kernel_key;
    uint32_t base, channel, unit;
    if (offset < params->out_units) {
        base = params->out_board_key, channel = 0, unit = offset;
    } else if (offset - PE_CHANNEL_BIT < params->out_units) {
        base = params->out_trace_board_key, channel = 1, unit = offset - PE_CHANNEL_BIT;
    } else {
        status->unrouted++; /* the image's key_base and the params disagree */
        return;
    }
    if (record && channel == params->record_channel && unit < params->record_units && now < params->n_ticks) {
        const float value = (float)(int32_t)payload; /* the "v" record holds float32 bits (NESTML: f2ui) */
        memcpy(&record[now * (1 + params->record_units) + 1 + unit], &value, 4);
        status->recorded++;
    }
    if (base == MAP_NO_KEY)
        return; /* a stream nobody consumes (an output PE's values, kept in the record) */
    status->sent++;
    runtime_send(base + unit, payload);
}

void pe_send(uint32_t key, int32_t payload)
{
    send(key, (uint32_t)payload);
}

void app_packet(uint32_t key, uint32_t payload)
{
    status->received++;
    if (params->mode == MAP_MODE_KERNEL && !status->done)
        for (uint32_t r = 0; r < params->n_ranges; r++) {
            const uint32_t offset = key - ranges[r].board_key;
            if (offset < ranges[r].n_keys) {
                pe_receive(ranges[r].kernel_key + offset, (int32_t)payload);
                return;
            }
        }
    status->dropped++;
}

void app_tick(void)
{
    if (status->done)
        return;
    now = tick;
    if (record && now < params->n_ticks)
        record[now * (1 + params->record_units)] = now;
    if (params->mode == MAP_MODE_INPUT) {
        if (now < input_ticks) {
            const uint32_t n = input[input_cursor++];
            for (uint32_t i = 0; i < n; i++, input_cursor += 2)
                send(params->out_kernel_key + input[input_cursor], input[input_cursor + 1]);
        }
    } else {
        pe_tick(now);
    }
    tick++;
    status->ticks = tick;
    if (params->n_ticks && tick >= params->n_ticks)
        status->done = 1;
}
