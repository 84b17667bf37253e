/* The lecture's simple TCP server: accepts a connection, reads once (up to 50
 * bytes), echoes what it read, closes the connection, and takes the next.
 *
 * Changed for the test, and only this: the port is the test's own, given at
 * compile time (-DPORT=N, a port free when the test started), instead of 4242;
 * 4242 stays the default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#ifndef PORT
#define PORT 4242
#endif
int main(void)
{
    struct sockaddr_in local;                // local address
    char msg[50];
    int n, c, s = socket(PF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == -1) { perror("socket"); return EXIT_FAILURE; }

    memset(&local, 0, sizeof local);        // clear local
    local.sin_family = AF_INET;            // IPv4 address
    local.sin_port = htons(PORT);          // listen on the test's port
    local.sin_addr.s_addr = INADDR_ANY;    // whichever IP we have
    if (bind(s, (void *) &local, sizeof local) != 0) return EXIT_FAILURE;
    if (listen(s, 4) == -1) return EXIT_FAILURE; // listen for connections
    while ((c = accept(s, NULL, 0)) != 0) { // accept a connection
        if ((n = read(c, msg, sizeof(msg))) > 0)
            write(c, msg, n);             // just echo back msg
        close(c);
    }
    close(s);
    return EXIT_SUCCESS;
}
