/* UNVERIFIED: the SpiNNaker2 PE runtime names the board build uses.  No py-spinnaker2 source is reachable
 * from here; every name below was seen in public material only, and each says where.  None has been run.
 *
 * Built against py-spinnaker2's runtime (its Makefile.default, see Makefile), define S2_RUNTIME_HEADERS and
 * the real headers replace the declarations below.  Without it (our link check, build.py board build),
 * runtime_stub.c gives every name a dummy definition so that a syntax or link break in runtime_board.c is
 * caught; the stub program does nothing useful.
 *
 * Sources:
 *  [N] nest/nestml, pynestml/codegeneration/resources_spinnaker2/ (NESTML's SpiNNaker2 code generator,
 *      generated custom-neuron applications): main.c.jinja2, qpe_isr.c.jinja2, spike_processing.c.jinja2
 *      (commits 51438ba3e / 00cddf4f7 / fcc36c737).
 *  [L] a public compiler listing of a SpiNNaker2 prototype application (spinnaker_src/neuron.c,
 *      spinnaker_src/spinn_start.c, spinnaker_src/qpe_isr.c in .lst files; repository not identified by the
 *      search index): one source only, for a prototype chip. */
#ifndef S2_RUNTIME_H
#define S2_RUNTIME_H
#include <stdint.h>

#ifdef S2_RUNTIME_HEADERS
#include <s2app.h>  /* [N] main.c, qpe_isr.c */
#include <comms.h>  /* [N] spike_processing.c */
#include <spinn2.h> /* [N] qpe_isr.c, spike_processing.c */
#else
/* Communication controller registers, as word indices of `comms` ([N] spike_processing.c: comms[COMMS_TCTL],
 * comms[COMMS_TKR_A]; [L] neuron.c router_spike: comms[COMMS_TDR_A_4] = payload before comms[COMMS_TKR_A] =
 * key sends a packet WITH payload; [L] spinn_start.c IRQ_05_Handler: comms[COMMS_RCR] (header),
 * comms[COMMS_RKR] (key), comms[COMMS_RDR0..3] (payload words, in commented-out code)).  The indices are
 * those of [L]'s literal pools where it shows them (0xE2000000 + 4 x index); RDR0's is not shown. */
extern volatile uint32_t comms[64];
enum { COMMS_TDR_A_4 = 4, COMMS_TKR_A = 5, COMMS_TCTL = 31, COMMS_RCR = 32, COMMS_RKR = 37, COMMS_RDR0 = 38 };
/* Timer 1 ([N] main.c timer_init/timer_start/timer_callback, qpe_isr.c Timer_Int1_Handler). */
extern volatile uint32_t timer[16];
enum { TIMER1_LOAD = 0, TIMER1_VALUE = 1, TIMER1_CTL = 2, TIMER1_INT_CLR = 3, TIMER1_INT_STATUS = 4 };
/* Interrupt numbers and CMSIS calls ([N] main.c: NVIC_SetPriority, NVIC_EnableIRQ, __NVIC_PRIO_BITS,
 * Timer_Int1_IRQn, FT_INT_0_IRQn, FT_INT_1_IRQn; qpe_isr.c: NVIC_ClearPendingIRQ; main.c: __WFI). */
typedef enum { Timer_Int1_IRQn = 1, FT_INT_0_IRQn = 2, FT_INT_1_IRQn = 3, S2_PACKET_IRQn = 5 } IRQn_Type;
#define __NVIC_PRIO_BITS 3
void NVIC_SetPriority(IRQn_Type irq, uint32_t priority);
void NVIC_EnableIRQ(IRQn_Type irq);
void NVIC_ClearPendingIRQ(IRQn_Type irq);
void __WFI(void);
/* PE identity and the feed-through interrupts the host uses to start and reset the PEs ([N] main.c:
 * getMyPEID() >> 5 & 7 = QPE x, >> 2 & 7 = QPE y, & 3 = PE; set_mask_feedthrough_irq(x, y, pe, 1 + 2);
 * comms_init()). */
uint32_t getMyPEID(void);
void set_mask_feedthrough_irq(uint32_t qpe_x, uint32_t qpe_y, uint32_t pe, uint32_t mask);
void comms_init(void);
#endif

/* Not in any public source: the interrupt that signals a received packet.  [L] handles it in
 * IRQ_05_Handler; [N] drains packets with receive_spikes(callback) at the start of each tick, keys only
 * (no payload).  Check both names against the runtime before the first board run (docs/spinnaker2_board.md). */
#ifndef S2_PACKET_IRQ_HANDLER
#define S2_PACKET_IRQ_HANDLER IRQ_05_Handler
#endif
#ifndef S2_PACKET_IRQ
#define S2_PACKET_IRQ S2_PACKET_IRQn
#endif
#define S2_TCTL_READY 0x80000000u /* [N], [L]: wait until (comms[COMMS_TCTL] & 0x80000000) before sending */
#define S2_TIMER_START 0xE2u      /* [N] main.c timer_start: timer[TIMER1_CTL] = 0xE2 */

#endif
