/* ARM semihosting (BKPT 0xAB): the QEMU harness's file I/O and exit. */
#ifndef SEMIHOSTING_H
#define SEMIHOSTING_H
#include <stdint.h>

enum { SH_MODE_RB = 1, SH_MODE_WB = 5 };

int sh_open(const char *name, int mode);
int sh_close(int fd);
/* Return the number of bytes NOT transferred (0 on success), as semihosting does. */
int sh_read(int fd, void *buffer, uint32_t length);
int sh_write(int fd, const void *buffer, uint32_t length);
int sh_flen(int fd);
void sh_write0(const char *text);
void sh_exit(int status) __attribute__((noreturn));

#endif
