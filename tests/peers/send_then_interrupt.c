/* Sends one message to a queue, then SIGINTs a process DELAY microseconds after
 * the send returned: a Ctrl-C that lands just after a message arrives, a window
 * Python cannot hit on purpose.
 *
 * usage: send_then_interrupt sysv KEY|posix NAME  PID DELAY_US MESSAGE [CPU]
 * SysV messages have type 1, POSIX ones priority 0. CPU pins this process to
 * one CPU (the test puts the receiver on another). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>
#include <time.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char *argv[])
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s sysv KEY|posix NAME PID DELAY_US MESSAGE [CPU]\n", argv[0]);
        return 2;
    }
    if (argc == 7) {
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET(atoi(argv[6]), &cpus);
        if (sched_setaffinity(0, sizeof cpus, &cpus) == -1) { perror("sched_setaffinity"); return 1; }
    }
    pid_t pid = (pid_t)atol(argv[3]);
    double delay = atof(argv[4]);
    const char *text = argv[5];
    size_t len = strlen(text);
    struct { long mtype; char mtext[256]; } message = { 1, "" };

    if (len > sizeof(message.mtext)) { fprintf(stderr, "message too long\n"); return 2; }
    if (strcmp(argv[1], "sysv") == 0) {
        int id = msgget((key_t)strtoul(argv[2], NULL, 0), 0);
        memcpy(message.mtext, text, len);
        if (id == -1 || msgsnd(id, &message, len, 0) == -1) { perror("msgsnd"); return 1; }
    } else {
        mqd_t queue = mq_open(argv[2], O_WRONLY);
        if (queue == (mqd_t)-1 || mq_send(queue, text, len, 0) == -1) { perror("mq_send"); return 1; }
    }
    double sent = now_us();
    while (now_us() - sent < delay)
        ; /* spin: a sleep would overshoot by more than the whole range of delays */
    if (kill(pid, SIGINT) == -1) { perror("kill"); return 1; }
    return 0;
}
