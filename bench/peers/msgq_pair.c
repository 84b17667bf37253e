/* Reference peers for bench/msgq.py: SysV message queues at C speed.
 *
 *   msgq_pair send KEY COUNT SIZE     COUNT messages of SIZE bytes, type 1, blocking
 *   msgq_pair recv KEY COUNT SIZE     COUNT messages of any type, blocking; then IPC_RMID
 *   msgq_pair sendstream KEY SIZE     stdin as SIZE-byte messages, then an empty one
 *   msgq_pair recvstream KEY SIZE     messages to stdout until the empty one; then IPC_RMID
 *
 * Every mode opens the queue with msgget(KEY, IPC_CREAT | 0600), so either end
 * may start first. KEY is decimal or 0x-hex. Built by bench/msgq.py at run time
 * (gcc -O2); never commit the binary.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

struct message {
    long mtype;
    char mtext[];
};

static void die(const char *what) {
    perror(what);
    exit(1);
}

static unsigned long number(const char *text, const char *what) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 0);
    if (errno || *text == '\0' || *end != '\0') {
        fprintf(stderr, "msgq_pair: bad %s: %s\n", what, text);
        exit(2);
    }
    return value;
}

static int open_queue(const char *key_text) {
    key_t key = (key_t)number(key_text, "key");
    int id = msgget(key, IPC_CREAT | 0600);
    if (id < 0)
        die("msgget");
    return id;
}

static struct message *new_message(size_t size) {
    struct message *m = calloc(1, sizeof(struct message) + size);
    if (!m)
        die("calloc");
    m->mtype = 1;
    memset(m->mtext, 'x', size);
    return m;
}

static void put(int id, struct message *m, size_t size) {
    while (msgsnd(id, m, size, 0) < 0)
        if (errno != EINTR)
            die("msgsnd");
}

static ssize_t get(int id, struct message *m, size_t size) {
    ssize_t n;
    while ((n = msgrcv(id, m, size, 0, 0)) < 0)
        if (errno != EINTR)
            die("msgrcv");
    return n;
}

static void remove_queue(int id) {
    if (msgctl(id, IPC_RMID, NULL) < 0)
        die("msgctl IPC_RMID");
}

/* Fill buf from fd up to size bytes; fewer only at end of input. */
static size_t read_full(int fd, char *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        got += (size_t)n;
    }
    return got;
}

static void write_full(int fd, const char *buf, size_t size) {
    while (size) {
        ssize_t n = write(fd, buf, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        buf += n;
        size -= (size_t)n;
    }
}

static int usage(void) {
    fputs("usage: msgq_pair send|recv KEY COUNT SIZE\n"
          "       msgq_pair sendstream|recvstream KEY SIZE\n",
          stderr);
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    int counted = strcmp(mode, "send") == 0 || strcmp(mode, "recv") == 0;
    int streamed = strcmp(mode, "sendstream") == 0 || strcmp(mode, "recvstream") == 0;
    if (!(counted && argc == 5) && !(streamed && argc == 4))
        return usage();

    int id = open_queue(argv[2]);
    size_t size = number(argv[argc - 1], "size");
    struct message *m = new_message(size);

    if (strcmp(mode, "send") == 0) {
        unsigned long count = number(argv[3], "count");
        for (unsigned long i = 0; i < count; i++)
            put(id, m, size);
    } else if (strcmp(mode, "recv") == 0) {
        unsigned long count = number(argv[3], "count");
        for (unsigned long i = 0; i < count; i++)
            get(id, m, size);
        remove_queue(id);
    } else if (strcmp(mode, "sendstream") == 0) {
        size_t n;
        while ((n = read_full(0, m->mtext, size)) > 0) {
            put(id, m, n);
            if (n < size)
                break;
        }
        put(id, m, 0); /* the end marker */
    } else {
        ssize_t n;
        while ((n = get(id, m, size)) > 0)
            write_full(1, m->mtext, (size_t)n);
        remove_queue(id);
    }
    free(m);
    return 0;
}
