/* A C peer for ipctool sem: waits on or posts to an existing semaphore, as any
 * program would, with the plain calls.
 *
 *   sem_peer posix-wait /NAME    sem_wait; prints "taken"
 *   sem_peer posix-post /NAME    sem_post
 *   sem_peer sysv-wait KEY [I]   semop -1 on element I (default 0); prints "taken"
 *   sem_peer sysv-post KEY [I]   semop +1 on element I
 */
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>

static int posix(const char *how, const char *name) {
    sem_t *sem = sem_open(name, 0);
    if (sem == SEM_FAILED) { perror("sem_open"); return 1; }
    if (strcmp(how, "wait") == 0) {
        if (sem_wait(sem) != 0) { perror("sem_wait"); return 1; }
        puts("taken");
    } else if (sem_post(sem) != 0) { perror("sem_post"); return 1; }
    return sem_close(sem) != 0;
}

static int sysv(const char *how, const char *key_text, const char *index_text) {
    int id = semget((key_t)strtoul(key_text, NULL, 0), 0, 0);
    if (id < 0) { perror("semget"); return 1; }
    struct sembuf op = {(unsigned short)(index_text ? atoi(index_text) : 0), 1, 0};
    if (strcmp(how, "wait") == 0) op.sem_op = -1;
    if (semop(id, &op, 1) != 0) { perror("semop"); return 1; }
    if (op.sem_op < 0) puts("taken");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fputs("usage: sem_peer posix-wait|posix-post|sysv-wait|sysv-post TARGET [INDEX]\n", stderr); return 2; }
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strncmp(argv[1], "posix-", 6) == 0) return posix(argv[1] + 6, argv[2]);
    return sysv(argv[1] + 5, argv[2], argc > 3 ? argv[3] : NULL);
}
