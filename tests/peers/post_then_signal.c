/* Posts one unit to a semaphore and signals a process at once, from C, so the
 * signal lands in the few microseconds after the process's wait returns, where
 * a Python test could not aim it.
 *
 *   post_then_signal posix /NAME PID SIGNAL
 *   post_then_signal sysv KEY PID SIGNAL
 */
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>

int main(int argc, char **argv) {
    if (argc != 5) { fputs("usage: post_then_signal posix|sysv TARGET PID SIGNAL\n", stderr); return 2; }
    pid_t pid = (pid_t)atoi(argv[3]);
    int sig = atoi(argv[4]);
    if (strcmp(argv[1], "posix") == 0) {
        sem_t *sem = sem_open(argv[2], 0);
        if (sem == SEM_FAILED) { perror("sem_open"); return 1; }
        if (sem_post(sem) != 0) { perror("sem_post"); return 1; }
    } else {
        int id = semget((key_t)strtoul(argv[2], NULL, 0), 0, 0);
        if (id < 0) { perror("semget"); return 1; }
        struct sembuf op = {0, 1, 0};
        if (semop(id, &op, 1) != 0) { perror("semop"); return 1; }
    }
    if (kill(pid, sig) != 0) { perror("kill"); return 1; }
    return 0;
}
