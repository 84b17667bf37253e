/* Reference peers for bench/sem.py: SysV semaphores at C speed.
 *
 *   sem_pair ping A B COUNT   COUNT times: post A, then wait on B
 *   sem_pair pong A B COUNT   COUNT times: wait on A, then post B
 *   sem_pair send KEY         one post (semop +1), then exit: a one-shot, as `ipctool sem send`
 *   sem_pair recv KEY         one wait (semop -1), then exit: a one-shot, as `ipctool sem recv`
 *
 * A ping and a pong on the same two semaphores make COUNT round trips between
 * two processes, each a semop post and a semop wait on either side. Every mode
 * opens an existing set (semget(KEY, 0, 0)) and uses its element 0; the script
 * makes the sets, at 0, before starting either end. KEY is decimal or 0x-hex.
 * Built by bench/sem.py at run time (gcc -O2); never commit the binary.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static unsigned long number(const char *text, const char *what) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 0);
    if (errno || *text == '\0' || *end != '\0') {
        fprintf(stderr, "sem_pair: bad %s: %s\n", what, text);
        exit(2);
    }
    return value;
}

static int open_set(const char *key) {
    int id = semget((key_t)number(key, "key"), 0, 0);
    if (id < 0)
        die("semget");
    return id;
}

static void op(int id, short delta) {
    struct sembuf change = {0, delta, 0};
    while (semop(id, &change, 1) < 0)
        if (errno != EINTR)
            die("semop");
}

static int usage(void) {
    fputs("usage: sem_pair ping|pong A B COUNT\n"
          "       sem_pair send|recv KEY\n",
          stderr);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    if ((strcmp(mode, "send") == 0 || strcmp(mode, "recv") == 0) && argc == 3) {
        op(open_set(argv[2]), strcmp(mode, "send") == 0 ? 1 : -1);
        return 0;
    }
    int ping = strcmp(mode, "ping") == 0;
    if (!(ping || strcmp(mode, "pong") == 0) || argc != 5)
        return usage();
    int a = open_set(argv[2]), b = open_set(argv[3]);
    unsigned long count = number(argv[4], "count");
    for (unsigned long i = 0; i < count; i++) {
        if (ping) {
            op(a, 1);
            op(b, -1);
        } else {
            op(a, -1);
            op(b, 1);
        }
    }
    return 0;
}
