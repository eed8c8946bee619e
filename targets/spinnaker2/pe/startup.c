/* Cortex-M4F reset: vector table, .bss zeroed, FPU enabled (CPACR), main(), exit via semihosting.
 * .data is loaded in place (by QEMU's ELF loader, or by the host on the board). */
#include <stdint.h>
#include "semihosting.h"

extern uint32_t __bss_start[], __bss_end[], __stack_top[];
int main(void);

void Reset_Handler(void)
{
    for (uint32_t *p = __bss_start; p < __bss_end; p++)
        *p = 0;
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20; /* CP10 and CP11 full access */
    __asm__ volatile("dsb\n\tisb");
    sh_exit(main());
}

void Fault_Handler(void)
{
    sh_write0("pe: processor fault\n");
    sh_exit(1);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
