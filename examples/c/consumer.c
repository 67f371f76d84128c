/*
 * A consumer: claims messages from the queue at PATH, prints each payload as
 * a line on standard output and acks it, until it claims the message "stop"
 * (or nothing comes for 30 s). Several consumers compete: each message goes
 * to one of them.
 *
 *   consumer PATH
 */
#include <stdio.h>
#include <string.h>

#include <shmq.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH\n", argv[0]);
        return 2;
    }
    shmq_queue *q = NULL;
    if (shmq_open(argv[1], &q) != SHMQ_OK) {
        fprintf(stderr, "consumer: %s\n", shmq_last_error());
        return 1;
    }
    int rc = 0;
    for (;;) {
        shmq_message m;
        shmq_status st = shmq_claim(q, &m, 30000000000LL); /* 30 s */
        if (st != SHMQ_OK) {
            fprintf(stderr, "consumer: %s\n", shmq_last_error());
            rc = st == SHMQ_TIMEOUT ? 0 : 1;
            break;
        }
        /* m.data points into the shared mapping while we hold the claim. */
        int stop = m.len == 4 && memcmp(m.data, "stop", 4) == 0;
        if (!stop)
            printf("%.*s\n", (int)m.len, (const char *)m.data);
        st = shmq_ack(q, &m);
        if (st != SHMQ_OK) /* LEASE_LOST: it will be delivered again */
            fprintf(stderr, "consumer: %s\n", shmq_last_error());
        if (stop)
            break;
    }
    fflush(stdout);
    shmq_close(q);
    return rc;
}
