/* Copied from the lecture's "Message Receiver Example" (shared/seeds). The only change:
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
    int msgq = msgget(IPCTOOL_TEST_KEY, 0644);          /* get mailbox 12345 */

    if (msgq == -1) { perror("msgget failed"); return EXIT_FAILURE; }

    struct msgbuf data;                     /* data to read */

    /* receive message: IPC_NOWAIT means don't wait if no message */
    if (msgrcv(msgq, &data, sizeof(data), 1234, IPC_NOWAIT) < 0)
        perror("no message of type 1234 for me");
    else
        printf("Message type %ld: %s", data.mtype, data.mtext);

    msgctl(msgq, IPC_RMID, NULL);          /* remove mailbox */

    return EXIT_SUCCESS;
}
