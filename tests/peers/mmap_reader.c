/* Copied from the lecture's "Memory Mapped Reader Example" (shared/seeds). The only
 * change: the path /tmp/test is IPCTOOL_TEST_PATH, a string given with -D at compile
 * time, so that every test uses a path of its own. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>

int main(int argc, char *argv[])
{
    size_t size = 8192;
    int file = open(IPCTOOL_TEST_PATH, O_RDONLY);

    if (file == -1) { perror("open"); return EXIT_FAILURE; }

    char *data = mmap(NULL, size, PROT_READ, MAP_FILE | MAP_SHARED,
                      file, 0);      /* memory-map file */

    if (data == MAP_FAILED) { perror("mmap"); return EXIT_FAILURE; }

    printf("data is: %s!\n", data);    /* print shared data */

    munmap(data, size);               /* done, unmap file */
    close(file);                      /* close the file */
    unlink(IPCTOOL_TEST_PATH);              /* delete the file */

    return EXIT_SUCCESS;
}
