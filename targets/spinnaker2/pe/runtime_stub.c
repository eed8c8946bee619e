/* LINK CHECK ONLY: dummy definitions of the unverified runtime names in s2_runtime.h, so that build.py can
 * compile and link the board program (runtime_board.c) without py-spinnaker2's runtime and catch a syntax
 * or link break.  The real board build (Makefile, -DS2_RUNTIME_HEADERS) links py-spinnaker2's runtime
 * library instead and never this file.  Nothing here models the hardware. */
#include "s2_runtime.h"

volatile uint32_t comms[64] = {[COMMS_TCTL] = S2_TCTL_READY};
volatile uint32_t timer[16];

void NVIC_SetPriority(IRQn_Type irq, uint32_t priority) { (void)irq, (void)priority; }
void NVIC_EnableIRQ(IRQn_Type irq) { (void)irq; }
void NVIC_ClearPendingIRQ(IRQn_Type irq) { (void)irq; }
void __WFI(void) { __asm__ volatile("wfi"); }
uint32_t getMyPEID(void) { return 0; }
void set_mask_feedthrough_irq(uint32_t qpe_x, uint32_t qpe_y, uint32_t pe, uint32_t mask)
{
    (void)qpe_x, (void)qpe_y, (void)pe, (void)mask;
}
void comms_init(void) {}

void Timer_Int1_Handler(void);
void S2_PACKET_IRQ_HANDLER(void);
void FT_INT_0_Handler(void);
void FT_INT_1_Handler(void);

/* Keeps the handlers in the linked program: on a board the runtime's vector table (.isr_vector, which pe.ld
 * keeps) reaches them; here this table stands in for it. */
__attribute__((section(".isr_vector"), used)) static void (*const handlers[])(void) = {
    Timer_Int1_Handler, S2_PACKET_IRQ_HANDLER, FT_INT_0_Handler, FT_INT_1_Handler,
};
