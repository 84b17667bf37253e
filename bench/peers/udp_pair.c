/* Reference peers for bench/udp.py: UDP datagrams at C speed, as the lecture's
 * sender and receiver do it (one sendto / recvfrom a datagram), in a loop.
 *
 *   udp_pair send PORT COUNT SIZE        COUNT datagrams of SIZE bytes to 127.0.0.1:PORT
 *   udp_pair recv PORT COUNT IDLE_MS     bind 127.0.0.1:PORT; write each datagram and a
 *                                        newline to stdout, until COUNT came or none
 *                                        for IDLE_MS ms (some were lost); then say on
 *                                        stderr how many came
 *
 * The sender connects its socket (as ipctool send does: no route lookup per
 * datagram) and each datagram carries its number in decimal digits. The
 * receiver raises SO_RCVBUF to net.core.rmem_max, as ipctool recv does, and
 * writes through stdio (one write per 4 KiB), as ipctool writes batches.
 * Built by bench/udp.py at run time (gcc -O2); never commit the binary.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static unsigned long number(const char *text, const char *what) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || *text == '\0' || *end != '\0') {
        fprintf(stderr, "udp_pair: bad %s: %s\n", what, text);
        exit(2);
    }
    return value;
}

static struct sockaddr_in loopback(unsigned long port) {
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)port);
    address.sin_addr.s_addr = inet_addr("127.0.0.1");
    return address;
}

static int send_all(unsigned long port, unsigned long count, size_t size) {
    struct sockaddr_in remote = loopback(port);
    int sock = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (sock < 0)
        die("socket");
    if (connect(sock, (struct sockaddr *)&remote, sizeof remote) < 0)
        die("connect");
    char *message = malloc(size + 32);
    if (!message)
        die("malloc");
    for (unsigned long i = 0; i < count; i++) {
        snprintf(message, size + 1, "%0*lu", (int)size, i);
        while (send(sock, message, size, 0) < 0)
            if (errno != EINTR && errno != ENOBUFS)
                die("send");
    }
    close(sock);
    return 0;
}

static void raise_buffer(int sock) {
    FILE *f = fopen("/proc/sys/net/core/rmem_max", "r");
    int most = 0;
    if (f) {
        if (fscanf(f, "%d", &most) != 1)
            most = 0;
        fclose(f);
    }
    if (most > 0 && setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &most, sizeof most) < 0)
        die("setsockopt SO_RCVBUF");
}

static int receive_all(unsigned long port, unsigned long count, int idle_ms) {
    struct sockaddr_in local = loopback(port);
    int sock = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (sock < 0)
        die("socket");
    raise_buffer(sock);
    if (bind(sock, (struct sockaddr *)&local, sizeof local) < 0)
        die("bind");
    static char buffer[65536];
    unsigned long got = 0;
    struct pollfd waiting = {.fd = sock, .events = POLLIN};
    while (got < count) {
        if (got > 0) { /* the first datagram is waited for as long as it takes */
            int ready = poll(&waiting, 1, idle_ms);
            if (ready < 0 && errno == EINTR)
                continue;
            if (ready < 0)
                die("poll");
            if (ready == 0)
                break; /* none for idle_ms: the rest was lost */
        }
        ssize_t n = recv(sock, buffer, sizeof buffer, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("recv");
        }
        fwrite(buffer, 1, (size_t)n, stdout);
        putchar('\n');
        got++;
    }
    if (fflush(stdout) != 0)
        die("write");
    fprintf(stderr, "received %lu\n", got);
    close(sock);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "send") == 0)
        return send_all(number(argv[2], "port"), number(argv[3], "count"),
                        number(argv[4], "size"));
    if (argc == 5 && strcmp(argv[1], "recv") == 0)
        return receive_all(number(argv[2], "port"), number(argv[3], "count"),
                           (int)number(argv[4], "idle ms"));
    fprintf(stderr, "usage: udp_pair send PORT COUNT SIZE | recv PORT COUNT IDLE_MS\n");
    return 2;
}
