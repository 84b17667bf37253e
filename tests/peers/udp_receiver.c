/* The lecture's "UDP Receiver Example" (receive and print one UDP message), as
 * given, but for where it listens: the test's own port (-DUDP_PORT=N; the
 * lecture's 1234 otherwise) on loopback (INADDR_LOOPBACK for the lecture's
 * INADDR_ANY: the tests use no other interface). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

#ifndef UDP_PORT
#define UDP_PORT 1234
#endif

int main(void)
{
    struct sockaddr_in local;                // local address
    char msg[50];
    int sock = socket(PF_INET, SOCK_DGRAM, IPPROTO_UDP);

    if (sock == -1) { perror("socket"); return EXIT_FAILURE; }

    memset(&local, 0, sizeof local);        // clear local
    local.sin_family = AF_INET;            // IPv4 address
    local.sin_port = htons(UDP_PORT);     // listen on the test's port (the lecture: 1234)
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);   // loopback (the lecture: INADDR_ANY)
    if (bind(sock, (void *) &local, sizeof local) != 0) return EXIT_FAILURE;

    if (recvfrom(sock, msg, sizeof msg, 0, NULL, 0) < 0) return EXIT_FAILURE;

    printf("got: '%s'\n", msg);           // assume it's a string
    close(sock);
    return EXIT_SUCCESS;
}
