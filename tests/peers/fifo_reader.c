/* Copied from the lecture's "FIFO Reader Example" (shared/seeds). The only change:
 * the path /tmp/fifo is IPCTOOL_TEST_FIFO, given with -D at compile time, so that
 * every test uses a path of its own. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/stat.h>

int main(int argc, char *argv[])
{
    const char fifo[] = IPCTOOL_TEST_FIFO;
    int file = open(fifo, O_RDONLY);
    if (file == -1) { perror("open"); return EXIT_FAILURE; }

    char data[80];
    if (read(file, data, sizeof(data)) <= 0)
    {
        perror("error reading from FIFO");
        return EXIT_FAILURE;
    }

    printf("data: %s\n", data);

    close(file); /* close the fifo */
    unlink(fifo); /* remove the fifo */

    return EXIT_SUCCESS;
}
