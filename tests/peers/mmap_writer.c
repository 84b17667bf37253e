/* Copied from the lecture's "Memory Mapped Writer Example" (shared/seeds). The only
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
    int file = open(IPCTOOL_TEST_PATH, O_RDWR | O_CREAT | O_TRUNC, 0644);

    if (file == -1) { perror("open"); return EXIT_FAILURE; }

    if (ftruncate(file, size) == -1) return EXIT_FAILURE;

    char *data = mmap(NULL, size, PROT_WRITE, MAP_FILE | MAP_SHARED,
                      file, 0); /* memory-map file */

    if (data == MAP_FAILED) { perror("mmap"); return EXIT_FAILURE; }

    sprintf(data, "Hello, %s", "world"); /* write important data */

    munmap(data, size); /* done, unmap file */
    close(file); /* close the file */

    return EXIT_SUCCESS;
}
