/* The EGRU PE kernel: what runs on one SpiNNaker2 processing element.
 *
 * The runtime around it (the QEMU harness in qemu_main.c, or the board runtime) calls
 * pe_receive() for every multicast packet that arrives and pe_tick() on every timer tick, and
 * provides pe_send() to emit packets.  All arithmetic follows egru_deploy.profiles exactly. */
#ifndef PE_H
#define PE_H
#include <stdint.h>
#include "pe_image_layout.h"

/* Bind the kernel to its memory image; returns 0, or -1 if the image is not a PE image. */
int pe_init(uint8_t *image);
/* Zero the state (accumulators, cell, trace, counters): a new sample starts. */
void pe_reset(void);
/* A packet arrived: add its weight row times the payload to the accumulators. */
void pe_receive(uint32_t key, int32_t payload);
/* Timer tick: update the owned units from the accumulators and send their packets. */
void pe_tick(uint32_t tick);
/* Counters (saturations per kind, dropped packets), PE_N_COUNTERS of them. */
const uint32_t *pe_counters(void);

/* Provided by the runtime. */
void pe_send(uint32_t key, int32_t payload);

#endif
