/* The lecture's socketpair example ("hello parent"), run by `ipctool unix pair`.
 *
 * Changed for the test, and only this: ipctool makes the socketpair and starts
 * this program twice, so instead of socketpair() and fork() each process finds
 * its end of the pair on descriptor 3 (`ipctool unix pair --fd 3`) and takes its
 * role from argv[1] ("parent" or "child"); the close() of the other end is gone
 * (that end is in the other process, and both ends are fd 3 here); <sys/wait.h>
 * is included for wait(), which today's compilers require (with no child it
 * returns at once). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

int main(int argc, char *argv[]) {
    char line[20];
    int n, fd[2] = {3, 3};  // both ends: fd 3, one in each process
    pid_t pid;
    if (argc < 2) return EXIT_FAILURE;

    pid = strcmp(argv[1], "parent") == 0;  // "fork": nonzero in the parent
    if (pid != 0) {        // parent
        read(fd[1], line, sizeof(line)); // read from child
        strcat(line, " parent"); // add to original string
        write(fd[1], line, strlen(line) + 1);
        wait(&n);          // wait for child
    } else {              // child
        write(fd[0], "hello", 6); // write to parent
        read(fd[0], line, sizeof(line)); // wait for response
        printf("%s\n", line);
    }
    return EXIT_SUCCESS;
}
