/* Copied from the lecture's "Message Sender Example" (shared/seeds). The only change:
 * the key 12345 is IPCTOOL_TEST_KEY, given with -D at compile time, so that
 * every test run uses a key of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct msgbuf { long mtype; char mtext[80]; }; /* message type and data */

int main(int argc, char *argv[])
{
    int msgq = msgget(IPCTOOL_TEST_KEY, 0644 | IPC_CREAT); /* get queue 12345 */

    if (msgq == -1) { perror("msgget failed"); return EXIT_FAILURE; }

    struct msgbuf data; /* data to write */

    sprintf(data.mtext, "Hello message\n"); /* create message */
    data.mtype = 1234; /* message type ( > 0 ) */

    msgsnd(msgq, &data, sizeof(data), 0); /* send message */

    return EXIT_SUCCESS;
}
