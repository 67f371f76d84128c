/*
 * A producer: sends COUNT orders to the queue at PATH (creating it if
 * needed), waiting for room when the queue is full (back-pressure), then
 * COUNT_STOPS "stop" messages, one per consumer.
 *
 *   producer PATH [COUNT] [STOPS]
 */
#include <stdio.h>
#include <stdlib.h>

#include <shmq.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [COUNT] [STOPS]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    long count = argc > 2 ? strtol(argv[2], NULL, 10) : 10;
    long stops = argc > 3 ? strtol(argv[3], NULL, 10) : 1;
    if (shmq_abi_version() != SHMQ_ABI_VERSION) {
        fprintf(stderr, "libshmq has ABI %u, this program was built for %d\n",
                shmq_abi_version(), SHMQ_ABI_VERSION);
        return 1;
    }

    shmq_queue *q = NULL;
    shmq_status st = shmq_open(path, &q);
    if (st == SHMQ_NOT_FOUND) {
        shmq_options opts;
        shmq_options_init(&opts);
        opts.capacity = 64;
        opts.max_message_size = 128;
        st = shmq_create(path, &opts, &q);
    }
    if (st != SHMQ_OK) {
        fprintf(stderr, "producer: %s\n", shmq_last_error());
        return 1;
    }
    for (long i = 0; i < count + stops; i++) {
        char buf[64];
        int n = i < count ? snprintf(buf, sizeof buf, "order %ld", i)
                          : snprintf(buf, sizeof buf, "stop");
        /* timeout -1: wait for room as long as it takes. */
        st = shmq_send(q, buf, (size_t)n, 0, 0, -1);
        if (st != SHMQ_OK) {
            fprintf(stderr, "producer: %s\n", shmq_last_error());
            shmq_close(q);
            return 1;
        }
    }
    shmq_stats s;
    s.size = sizeof s;
    if (shmq_get_stats(q, &s) == SHMQ_OK)
        fprintf(stderr, "producer: sent %ld; queue depth %llu, refused full %llu\n", count,
                (unsigned long long)s.depth, (unsigned long long)s.refused_full);
    shmq_close(q);
    return 0;
}
