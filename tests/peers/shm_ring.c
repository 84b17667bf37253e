/* A C peer of ipctool's shm ring (README "Shared memory", "The ring"), over SysV shm
 * or (a PATH with a '/') a file mapped MAP_SHARED, as ipctool's mmap --stream lays it:
 *   shm_ring send KEY|PATH SIZE < data      shm_ring recv KEY|PATH SIZE > data
 * Either may start first; it creates the segment (SIZE bytes) if missing and says
 * so (made_for_stream). The receiver removes such a segment at the end of the stream. Peer death is checked every 100 ms
 * of waiting. The tests use it to show a C program speaks the layout; bench/shm.py
 * uses it as the C baseline. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct ring {
    uint64_t magic; uint32_t version, header_size; uint64_t capacity;
    uint32_t made_for_stream; uint8_t pad0[36];
    uint64_t head; uint32_t sender_pid, sender_state, to_receiver, receiver_sleeping;
    uint32_t sender_claim; uint8_t pad1[36];
    uint64_t tail; uint32_t receiver_pid, receiver_state, to_sender, sender_sleeping;
    uint32_t receiver_claim; uint8_t pad2[100];
};
_Static_assert(sizeof(struct ring) == 256, "header is 256 bytes");
#define MAGIC 0x31676e6972637069ULL /* "ipcring1" little-endian */
enum { NONE, RUNNING, DONE, STOPPED };
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)

/* A role is taken by one compare-and-swap of its claim word, 0 -> our pid. */
static int claim(uint32_t *word) {
    uint32_t none = 0;
    if (__atomic_compare_exchange_n(word, &none, (uint32_t)getpid(), 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) return 1;
    fprintf(stderr, "the ring already has that side (pid %u)\n", none & 0x3FFFFFFF);
    return 0;
}

static void wake(uint32_t *word, uint32_t *sleeping) {
    __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
    if (LOAD(*sleeping)) syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void sleep_on(uint32_t *word, uint32_t seen) {
    struct timespec slice = {0, 100000000};
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &slice, NULL, 0);
}

static int gone(uint32_t state, uint32_t pid) {
    return state == STOPPED || (state == RUNNING && kill(pid, 0) == -1 && errno == ESRCH);
}

/* The file at path, mapped; made whole (sized in an unnamed file, then linked in)
 * if missing, so a peer never finds it empty. */
static struct ring *map_file(const char *path, size_t size, int *created) {
    int fd = open(path, O_RDWR | O_NOFOLLOW);
    *created = 0;
    if (fd == -1 && errno == ENOENT) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        *strrchr(dir, '/') = 0;
        fd = open(*dir ? dir : "/", O_TMPFILE | O_RDWR, 0600);
        if (fd == -1 || posix_fallocate(fd, 0, size)) { perror("new file"); return NULL; }
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) *created = 1;
        else { close(fd); fd = open(path, O_RDWR | O_NOFOLLOW); }  /* a peer made it first */
    }
    if (fd == -1) { perror(path); return NULL; }
    struct ring *r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return r == MAP_FAILED ? NULL : r;
}

int main(int argc, char *argv[]) {
    if (argc != 4) { fprintf(stderr, "usage: shm_ring send|recv KEY|PATH SIZE\n"); return 2; }
    int sending = strcmp(argv[1], "send") == 0;
    const char *path = strchr(argv[2], '/') ? argv[2] : NULL;
    size_t size = strtoul(argv[3], NULL, 0);
    int created = 1, id = -1;
    struct ring *r;
    if (path) {
        if (!(r = map_file(path, size, &created))) return 1;
    } else {
        key_t key = (key_t)strtoul(argv[2], NULL, 0);
        id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0600);
        if (id == -1 && errno == EEXIST) { created = 0; id = shmget(key, size, 0600); }
        if (id == -1) { perror("shmget"); return 1; }
        r = shmat(id, NULL, 0);
        if (r == (void *)-1) { perror("shmat"); return 1; }
    }
    char *data = (char *)r + 256;
    if (created) STORE(r->made_for_stream, 1);
    if (LOAD(r->magic) == 0) { /* new: both sides write the same fixed fields */
        r->version = 1; r->header_size = 256; r->capacity = size - 256;
        STORE(r->magic, MAGIC);
    }
    uint64_t cap = r->capacity;
    if (sending) {
        if (!claim(&r->sender_claim)) return 6;
        STORE(r->sender_pid, getpid()); STORE(r->sender_state, RUNNING);
        uint64_t head = LOAD(r->head);
        for (;;) {
            uint64_t free_ = cap - (head - LOAD(r->tail));
            if (!free_) {
                if (gone(LOAD(r->receiver_state), LOAD(r->receiver_pid))) return 1;
                uint32_t seen = LOAD(r->to_sender);
                STORE(r->sender_sleeping, 1);
                if (head - LOAD(r->tail) == cap) sleep_on(&r->to_sender, seen);
                STORE(r->sender_sleeping, 0);
                continue;
            }
            uint64_t at = head % cap, n = cap - at < free_ ? cap - at : free_;
            ssize_t got = read(0, data + at, n > (1 << 20) ? (1 << 20) : n);
            if (got < 0) { perror("read"); return 1; }
            if (got == 0) break;
            head += got;
            STORE(r->head, head);
            wake(&r->to_receiver, &r->receiver_sleeping);
        }
        STORE(r->sender_state, DONE);
        __atomic_add_fetch(&r->to_receiver, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &r->to_receiver, FUTEX_WAKE, 1, NULL, NULL, 0);
    } else {
        if (!claim(&r->receiver_claim)) return 6;
        STORE(r->receiver_pid, getpid()); STORE(r->receiver_state, RUNNING);
        uint64_t tail = LOAD(r->tail);
        for (;;) {
            uint64_t ready = LOAD(r->head) - tail;
            if (!ready) {
                uint32_t state = LOAD(r->sender_state);
                if (state == DONE) { if (LOAD(r->head) == tail) break; continue; }
                if (gone(state, LOAD(r->sender_pid))) return 1;
                uint32_t seen = LOAD(r->to_receiver);
                STORE(r->receiver_sleeping, 1);
                if (LOAD(r->head) == tail && LOAD(r->sender_state) == state)
                    sleep_on(&r->to_receiver, seen);
                STORE(r->receiver_sleeping, 0);
                continue;
            }
            uint64_t at = tail % cap, n = cap - at < ready ? cap - at : ready;
            ssize_t put = write(1, data + at, n > (1 << 20) ? (1 << 20) : n);
            if (put < 0) { perror("write"); return 1; }
            tail += put;
            STORE(r->tail, tail);
            wake(&r->to_sender, &r->sender_sleeping);
        }
        STORE(r->receiver_state, DONE);
        if (LOAD(r->made_for_stream)) path ? unlink(path) : shmctl(id, IPC_RMID, NULL);
    }
    if (path) munmap(r, size); else shmdt(r);
    return 0;
}
