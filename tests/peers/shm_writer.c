/* Copied from the lecture's "Shared Memory Writer Example" (shared/seeds). The only
 * change: the key 12345 is IPCTOOL_TEST_KEY, given with -D at compile time, so that
 * every test run uses a key of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/shm.h>

int main(int argc, char *argv[])
{
    size_t size = 1024;
    int shmid = shmget(IPCTOOL_TEST_KEY, size, 0644 | IPC_CREAT);

    if (shmid == -1) { perror("shmget failed"); return EXIT_FAILURE; }

    char *data = shmat(shmid, NULL, 0);    /* attach shared memory */

    if (data == (char *) -1) { perror("shmat"); return EXIT_FAILURE; }

    sprintf(data, "Hello, %s", "world");    /* write important data */

    shmdt(data);                            /* done, detach shared memory */

    return EXIT_SUCCESS;
}
