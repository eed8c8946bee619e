/* The EGRU PE kernel: what runs on one SpiNNaker2 processing element.
 *
 * The runtime around it (the QEMU harness in qemu_main.c, or the board runtime) calls
 * pe_receive() for every multicast packet that arrives and pe_tick() on every timer tick, and
 * provides pe_send() to emit packets.  All arithmetic follows egru_deploy.profiles exactly. */
#ifndef PE_H
#define PE_H
#include <stdint.h>
#include "pe_image_layout.h"

/* pe_init's results: PE_OK, or the header check that failed (pe_status_text says which). */
enum {
    PE_OK = 0, PE_BAD_SIZE, PE_BAD_MAGIC, PE_BAD_VERSION, PE_BAD_KIND, PE_BAD_FORMAT, PE_BAD_SECTION,
    PE_BAD_CSR, PE_BAD_LUT, PE_BAD_STATE, PE_BAD_ARITHMETIC, PE_N_STATUS
};

/* Bind the kernel to its memory image of `size` bytes.  Every header field is checked against that
 * size first (the image comes from the host, so nothing in it is trusted): afterwards no access
 * leaves the image and every shift is defined.  Returns PE_OK or the failed check. */
int pe_init(uint8_t *image, uint32_t size);
const char *pe_status_text(int status);
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
