/* Waits in msgrcv on a SysV queue, but leaves the wait every 2 ms (SIGALRM,
 * as ipctool's heartbeat does every 100 ms) and spins 0.3 ms in user space
 * before waiting again: out of its system call about a seventh of the time,
 * like a waiter on a busy machine that waits for a CPU after each heartbeat.
 * (A short spin: on a loaded machine a longer one is stretched by preemption.) Prints "ready" once
 * the first wait has begun.
 *
 * usage: restless_waiter KEY */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/msg.h>
#include <sys/time.h>
#include <time.h>

static void on_alarm(int signum) { (void)signum; }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char *argv[])
{
    if (argc != 2) { fprintf(stderr, "usage: %s KEY\n", argv[0]); return 2; }
    int id = msgget((key_t)strtoul(argv[1], NULL, 0), 0);
    if (id == -1) { perror("msgget"); return 1; }
    struct sigaction action = { .sa_handler = on_alarm }; /* no SA_RESTART: EINTR */
    sigaction(SIGALRM, &action, NULL);
    struct itimerval beat = { { 0, 2000 }, { 0, 2000 } };
    setitimer(ITIMER_REAL, &beat, NULL);
    struct { long mtype; char mtext[8192]; } message;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (msgrcv(id, &message, sizeof message.mtext, 0, 0) >= 0) return 0;
        if (errno != EINTR) { perror("msgrcv"); return 1; }
        double until = now() + 0.0003;
        while (now() < until)
            ; /* out of the wait for a while */
    }
}
