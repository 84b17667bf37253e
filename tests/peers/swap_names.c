/* Swaps two names in a directory over and over (renameat2 RENAME_EXCHANGE), so that
 * each is by turns a directory and a symbolic link: a parent that changes between a
 * program's check of a path and its open of it. Runs until killed; prints
 * "swapping" once the first swap is done. Not derived from a lecture program.
 *
 * usage: swap_names DIR NAME_A NAME_B */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
    if (argc != 4) { fprintf(stderr, "usage: %s DIR NAME_A NAME_B\n", argv[0]); return 2; }
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (dir == -1) { perror(argv[1]); return 1; }
    for (unsigned long n = 0;; n++) {
        if (renameat2(dir, argv[2], dir, argv[3], RENAME_EXCHANGE) == -1) {
            perror("renameat2");
            return 1;
        }
        if (n == 0) { puts("swapping"); fflush(stdout); }
    }
}
