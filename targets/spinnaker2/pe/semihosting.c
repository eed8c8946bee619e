#include "semihosting.h"

enum {
    SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE0 = 0x04, SYS_WRITE = 0x05, SYS_READ = 0x06,
    SYS_FLEN = 0x0C, SYS_EXIT = 0x18,
};
enum { ADP_STOPPED_APPLICATION_EXIT = 0x20026, ADP_STOPPED_RUNTIME_ERROR = 0x20023 };

static int call(int op, const void *argument)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static uint32_t length_of(const char *text)
{
    uint32_t n = 0;
    while (text[n])
        n++;
    return n;
}

/* Opens only a bare file name (no '/', '\\', no leading '.'): relative to QEMU's working folder,
 * which qemu.py makes a fresh temporary folder holding just this run's files.  Semihosting itself
 * still lets guest code open any host path (and SYS_SYSTEM run host commands, with QEMU's rights):
 * this is acceptable only because the guest is our program, built from these sources, and its one
 * input from a bundle, the PE image, is data that pe_init validates (and the Python loader has
 * compared with what the bundle's graph compiles to) before anything uses it. */
int sh_open(const char *name, int mode)
{
    if (name[0] == '\0' || name[0] == '.')
        return -1;
    for (const char *c = name; *c; c++)
        if (*c == '/' || *c == '\\')
            return -1;
    const uint32_t args[3] = {(uint32_t)name, (uint32_t)mode, length_of(name)};
    return call(SYS_OPEN, args);
}

int sh_close(int fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return call(SYS_CLOSE, args);
}

int sh_read(int fd, void *buffer, uint32_t length)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buffer, length};
    return call(SYS_READ, args);
}

int sh_write(int fd, const void *buffer, uint32_t length)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buffer, length};
    return call(SYS_WRITE, args);
}

int sh_flen(int fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return call(SYS_FLEN, args);
}

void sh_write0(const char *text)
{
    call(SYS_WRITE0, text);
}

void sh_exit(int status)
{
    /* On 32-bit ARM the reason is passed in r1 itself; QEMU exits 0 for ApplicationExit, 1 otherwise. */
    call(SYS_EXIT, (const void *)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUNTIME_ERROR));
    for (;;)
        ;
}
