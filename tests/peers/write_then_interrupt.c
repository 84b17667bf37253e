/* Writes a file's bytes into a descriptor it inherited (a FIFO's or a pipe's write
 * end, a terminal's master side), then SIGINTs a process DELAY microseconds after the
 * last write returned: a Ctrl-C that lands just after data arrives, a window
 * Python cannot hit on purpose. The byte-stream sibling of send_then_interrupt.c
 * (not derived from a lecture program).
 *
 * usage: write_then_interrupt FD DATA_FILE PID DELAY_US hold|close [CPU]
 *
 * The bytes are DATA_FILE's (up to 1 MiB, read in full first). Before writing,
 * it waits for one byte on stdin: the test sends it once it has closed its own
 * copies of FD, so that with "close" this process holds the only one, and
 * closing it (before the delay starts) is the EOF the reader sees.
 * With "hold" FD stays open (the test holds another copy: no EOF).
 * FD is made blocking, so all the bytes are written whatever the reader's pace.
 * CPU pins this process to one CPU (the test puts the reader on another). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int write_all(int fd, const unsigned char *data, size_t n)
{
    while (n > 0) {
        ssize_t done = write(fd, data, n);
        if (done == -1)
            return -1;
        data += done;
        n -= (size_t)done;
    }
    return 0;
}

int main(int argc, char *argv[])
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s FD DATA_FILE PID DELAY_US hold|close [CPU]\n", argv[0]);
        return 2;
    }
    int fd = atoi(argv[1]);
    pid_t pid = (pid_t)atol(argv[3]);
    double delay = atof(argv[4]);
    int hold = strcmp(argv[5], "hold") == 0;
    if (!hold && strcmp(argv[5], "close") != 0) { fprintf(stderr, "hold or close\n"); return 2; }
    if (argc == 7) {
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET(atoi(argv[6]), &cpus);
        if (sched_setaffinity(0, sizeof cpus, &cpus) == -1) { perror("sched_setaffinity"); return 1; }
    }
    static unsigned char data[1 << 20];
    int file = open(argv[2], O_RDONLY);
    if (file == -1) { perror(argv[2]); return 1; }
    ssize_t n = read(file, data, sizeof data); /* a regular file: one read takes it all */
    if (n == -1) { perror("read"); return 1; }
    close(file);
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) { perror("fcntl"); return 1; }

    char go;
    if (read(0, &go, 1) != 1) { fprintf(stderr, "no go byte on stdin\n"); return 1; }
    if (write_all(fd, data, (size_t)n) == -1) { perror("write"); return 1; }
    if (!hold && close(fd) == -1) { perror("close"); return 1; }
    double written = now_us();
    while (now_us() - written < delay)
        ; /* spin: a sleep would overshoot by more than the whole range of delays */
    if (kill(pid, SIGINT) == -1) { perror("kill"); return 1; }
    return 0;
}
