/* Copied from the lecture's "FIFO Writer Example" (shared/seeds). The only change:
 * the path /tmp/fifo is IPCTOOL_TEST_FIFO, given with -D at compile time, so that
 * every test uses a path of its own. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/stat.h>

const char data[] = "Hello fifo";
const char fifo[] = IPCTOOL_TEST_FIFO;

int main(int argc, char *argv[])
{
    if (mkfifo(fifo, 0644) == -1) { perror(fifo); return EXIT_FAILURE; }

    int file = open(fifo, O_WRONLY);
    if (file == -1) { perror("open"); return EXIT_FAILURE; }

    if (write(file, data, sizeof(data)) != sizeof(data))
    {
        perror("error writing to FIFO");
        return EXIT_FAILURE;
    }
    close(file); /* close the fifo */

    return EXIT_SUCCESS;
}
