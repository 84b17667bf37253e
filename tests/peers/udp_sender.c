/* The lecture's "UDP Sender Example" (send one UDP message), as given, but for
 * where it sends: the test's own port (-DUDP_PORT=N; the lecture's 1234
 * otherwise), on 127.0.0.1 as in the lecture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#ifndef UDP_PORT
#define UDP_PORT 1234
#endif

int main(void)
{
    char *msg = "hello UDP!";           // message to send
    struct sockaddr_in remote;         // remote address

    int sock = socket(PF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (sock == -1) { perror("socket"); return EXIT_FAILURE; }

    memset(&remote, 0, sizeof remote); // clear remote address
    remote.sin_family = AF_INET;       // IPv4 address
    remote.sin_port = htons(UDP_PORT);     // send to the test's port (the lecture: 1234)
    remote.sin_addr.s_addr = inet_addr("127.0.0.1"); // "remote" IP address

    if (sendto(sock, msg, strlen(msg) + 1, 0, (void *) &remote, sizeof remote)
        != strlen(msg) + 1) { perror("send"); return EXIT_FAILURE; }

    close(sock);
    return EXIT_SUCCESS;
}
