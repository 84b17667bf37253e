/* The lecture's simple TCP client: connects, writes "Hello void!\n", then prints
 * what it reads until the server closes.
 *
 * Changed for the test, and only this: the port is the test's own, given at
 * compile time (-DPORT=N, the port ipctool's listener reported), instead of 4242;
 * 4242 stays the default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#ifndef PORT
#define PORT 4242
#endif
int main(void) {
    char msg[80] = "Hello void!\n";
    struct sockaddr_in remote;                // remote address

    int n, sock = socket(PF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (sock == -1) { perror("socket"); return EXIT_FAILURE; }

    memset(&remote, 0, sizeof remote);        // clear remote
    remote.sin_family = AF_INET;              // IPv4 address
    remote.sin_port = htons(PORT);            // send to the test's port
    remote.sin_addr.s_addr = inet_addr("127.0.0.1"); // "remote" IP address
    if (connect(sock, (void *)&remote, sizeof remote) < 0) return EXIT_FAILURE;

    if (write(sock, msg, strlen(msg)) != strlen(msg))
        { perror("write"); return EXIT_FAILURE; }
    while ((n = read(sock, msg, sizeof(msg))) > 0)
        write(STDOUT_FILENO, msg, n);
    close(sock);
    return EXIT_SUCCESS;
}
