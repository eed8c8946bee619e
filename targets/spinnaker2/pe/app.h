/* The application layer around the EGRU kernel (pe.c): what BOTH runtimes call, the board runtime
 * (runtime_board.c: timer and packet interrupts, network send) and the QEMU shim (qemu_main.c: packets
 * and ticks from a file).  It reads the PE's regions from the fixed memory map (pe_memory_map.h,
 * generated from memory_map.py), translates the network's keys to the kernel's and back, preloads an
 * input PE's sequence, writes the record region and the status region (done flag, counters). */
#ifndef APP_H
#define APP_H
#include <stdint.h>
#include "pe_memory_map.h"

/* Read the data spec at MAP_DATA_SPEC_ADDRESS, check every region and bind the kernel (pe_init) or the
 * input sequence.  Returns 0 or an error code (app_status_text); the code is also in the status region. */
int app_init(void);
const char *app_status_text(int status);
/* A new sample: kernel state, tick counter, done flag and record region cleared. */
void app_reset(void);
/* A packet arrived from the network (board key). */
void app_packet(uint32_t key, uint32_t payload);
/* The timer ticked: an input PE sends this tick's inputs, a kernel PE updates its units (pe_tick). */
void app_tick(void);
/* 1 once n_ticks ticks have run (never when n_ticks is 0: the harness decides). */
int app_done(void);
uint32_t app_timer_period(void);
uint32_t app_n_ticks(void);
uint32_t app_mode(void);
const map_status *app_status(void);
/* The record region (NULL when this PE records nothing) and its size in words. */
const uint32_t *app_record(uint32_t *n_words);

/* Provided by the runtime: send one packet with a 32-bit payload into the network. */
void runtime_send(uint32_t key, uint32_t payload);

#endif
