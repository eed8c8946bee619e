/* Board runtime: the glue between the SpiNNaker2 PE runtime and the application layer (app.c), the
 * counterpart of the QEMU shim (qemu_main.c) around the same kernel.  NOT RUN ON A BOARD: every runtime
 * name it uses is declared in s2_runtime.h, which says where each was seen.
 *
 *  - start: the host loads the program and writes the regions (data spec, params, image) at their fixed
 *    addresses (memory_map.py); main() checks them (app_init) and waits.  The host starts all PEs with
 *    feed-through interrupt 0 and resets them with 1, as NESTML's generated apps do (qpe_isr.c).
 *  - timer: one tick per sys_tick; app_tick() runs the kernel's pe_tick or sends an input PE's preloaded
 *    inputs; after n_ticks ticks app_done() is set (status region: done = 1) and the timer stops.
 *  - packet receive: each packet (key, payload) goes straight to app_packet() -> pe_receive().  Its
 *    interrupt has the timer's priority, so a packet arriving during a tick's update waits until the update
 *    is over: it counts towards the next tick, as hwsim's one hop = one tick.
 *  - send with payload: runtime_send() writes the payload word, then the key ([L] router_spike).
 *  - record region and done flag: written by app.c, read back by the host after the run. */
#include <string.h>
#include "app.h"
#include "s2_runtime.h"

static uint32_t qpe_x, qpe_y, pe_id;

void runtime_send(uint32_t key, uint32_t payload)
{
    while ((comms[COMMS_TCTL] & S2_TCTL_READY) == 0) {
    }
    comms[COMMS_TDR_A_4] = payload;
    comms[COMMS_TKR_A] = key;
}

static void stop(void)
{
    timer[TIMER1_CTL] = 0;
    set_mask_feedthrough_irq(qpe_x, qpe_y, pe_id, 1 + 2); /* ready for the next start / reset ([N] main.c) */
}

void Timer_Int1_Handler(void)
{
    timer[TIMER1_INT_CLR] = 0xFFFFFFFFu;
    app_tick();
    if (app_done())
        stop();
}

void S2_PACKET_IRQ_HANDLER(void)
{
    const uint32_t key = comms[COMMS_RKR];
    const uint32_t payload = comms[COMMS_RDR0];
    app_packet(key, payload);
}

void FT_INT_0_Handler(void)
{
    NVIC_ClearPendingIRQ(FT_INT_0_IRQn);
    timer[TIMER1_CTL] = S2_TIMER_START;
    NVIC_EnableIRQ(Timer_Int1_IRQn);
}

void FT_INT_1_Handler(void)
{
    NVIC_ClearPendingIRQ(FT_INT_1_IRQn);
    app_reset();
}

static void log_text(const char *text)
{
    char *log = (char *)MAP_LOG_ADDRESS;
    strncpy(log, text, MAP_LOG_BYTES - 1);
    log[MAP_LOG_BYTES - 1] = '\0';
}

int main(void)
{
    qpe_x = (getMyPEID() >> 5) & 0x7;
    qpe_y = (getMyPEID() >> 2) & 0x7;
    pe_id = getMyPEID() & 0x3;
    comms_init();
    const int code = app_init();
    if (code != 0) {
        log_text(app_status_text(code)); /* also in the status region: error = code */
        for (;;)
            __WFI();
    }
    log_text("ok");
    timer[TIMER1_CTL] = 0;
    timer[TIMER1_LOAD] = app_timer_period();
    const uint32_t priority = (1u << __NVIC_PRIO_BITS) - 2u;
    NVIC_SetPriority(Timer_Int1_IRQn, priority);
    NVIC_SetPriority(S2_PACKET_IRQ, priority); /* same priority: a packet never interrupts a tick update */
    NVIC_EnableIRQ(S2_PACKET_IRQ);
    set_mask_feedthrough_irq(qpe_x, qpe_y, pe_id, 1 + 2);
    NVIC_SetPriority(FT_INT_0_IRQn, priority);
    NVIC_EnableIRQ(FT_INT_0_IRQn);
    NVIC_SetPriority(FT_INT_1_IRQn, priority);
    NVIC_EnableIRQ(FT_INT_1_IRQn);
    for (;;)
        __WFI();
}
