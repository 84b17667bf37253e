/* An LD_PRELOAD library that holds a process at one C call, once, until the test lets
 * it go: a breakpoint without a debugger, so that a signal or a second process comes
 * exactly where a race would need microseconds. Not derived from a lecture program.
 *
 * IPCTOOL_GATE names the call:
 *   mmap    the first MAP_SHARED mapping of a file, before it is made
 *   getpid  the first call
 *   readv   the first read of fd 0 that returned data, after it returned
 *   copy    the first memcpy or memmove of a page or more into a file mapped
 *           MAP_SHARED, after it is done
 *   fallocate  the first posix_fallocate (a new file's blocks: after the walk to
 *           its directory, before the file is linked in), before it is done
 * IPCTOOL_GATE_FDS is "IN,OUT": there, one byte is written to OUT ("the process is
 * there"), then one byte (or EOF) is awaited on IN. A signal that comes meanwhile
 * does not end the wait; the process acts on it once the call returns. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static int used;

static void hold(const char *call)
{
    const char *which = getenv("IPCTOOL_GATE"), *fds = getenv("IPCTOOL_GATE_FDS");
    if (used || !which || !fds || strcmp(which, call) != 0)
        return;
    used = 1;
    int in = -1, out = -1;
    if (sscanf(fds, "%d,%d", &in, &out) != 2)
        return;
    char byte = 'g';
    syscall(SYS_write, out, &byte, 1);
    long got;
    do  /* EINTR: a signal came; the byte (or the test's end: EOF) still decides */
        got = syscall(SYS_read, in, &byte, 1);
    while (got == -1 && errno == EINTR);
}

/* The last file mapped MAP_SHARED: where a "copy" gate looks. */
static char *shared_start;
static size_t shared_length;

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    if (fd >= 0 && (flags & MAP_SHARED))
        hold("mmap");
    void *made = (void *)syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    if (made != MAP_FAILED && fd >= 0 && (flags & MAP_SHARED)) {
        shared_start = made;
        shared_length = length;
    }
    return made;
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    return mmap(addr, length, prot, flags, fd, offset);
}

pid_t getpid(void)
{
    hold("getpid");
    return (pid_t)syscall(SYS_getpid);
}

ssize_t readv(int fd, const struct iovec *iov, int count)
{
    ssize_t got = syscall(SYS_readv, fd, iov, count);
    if (fd == 0 && got > 0)
        hold("readv");
    return got;
}

/* memcpy and memmove: the C library's, found on first use. Until then (dlsym may
 * copy too) a plain loop, which the compiler must not turn back into a call. */
typedef void *(*copier)(void *, const void *, size_t);
static copier real_memcpy, real_memmove;
static int resolving;

__attribute__((optimize("no-tree-loop-distribute-patterns")))
static void *plain_copy(void *to, const void *from, size_t n)
{
    unsigned char *d = to;
    const unsigned char *s = from;
    if (d < s)
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    else
        for (size_t i = n; i > 0; i--) d[i - 1] = s[i - 1];
    return to;
}

static void resolve(void)
{
    if (real_memmove || resolving)
        return;
    resolving = 1;
    real_memcpy = (copier)dlsym(RTLD_NEXT, "memcpy");
    real_memmove = (copier)dlsym(RTLD_NEXT, "memmove");
    resolving = 0;
}

static void after_copy(void *to, size_t n)
{
    char *at = to;
    if (n >= 4096 && shared_start && at >= shared_start && at < shared_start + shared_length)
        hold("copy");
}

void *memcpy(void *to, const void *from, size_t n)
{
    resolve();
    void *done = real_memcpy ? real_memcpy(to, from, n) : plain_copy(to, from, n);
    after_copy(to, n);
    return done;
}

void *memmove(void *to, const void *from, size_t n)
{
    resolve();
    void *done = real_memmove ? real_memmove(to, from, n) : plain_copy(to, from, n);
    after_copy(to, n);
    return done;
}

/* posix_fallocate: the C library's, found by name at the call. */
typedef int (*allocator)(int, off_t, off_t);

static int allocate(const char *name, int fd, off_t offset, off_t length)
{
    hold("fallocate");
    allocator real = (allocator)dlsym(RTLD_NEXT, name);
    return real ? real(fd, offset, length) : ENOSYS;
}

int posix_fallocate(int fd, off_t offset, off_t length)
{
    return allocate("posix_fallocate", fd, offset, length);
}

int posix_fallocate64(int fd, off_t offset, off_t length)
{
    return allocate("posix_fallocate64", fd, offset, length);
}
