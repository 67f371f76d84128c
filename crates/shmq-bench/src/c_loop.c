/*
 * The C loops of `shmq bench --instructions`: one process, one handle,
 * COUNT messages of 64 bytes through include/shmq.h, run under callgrind to
 * count the instructions a message costs through the C ABI. `shmq bench`
 * embeds this file and compiles it at run time with `cc -O2` against the
 * static library (libshmq.a) of the target directory the shmq binary sits
 * in, so that the count has no dynamic-linking stubs in it.
 *
 *   c_loop single PATH COUNT   shmq_send -> shmq_claim_copy -> shmq_ack,
 *                              one message at a time
 *   c_loop batch PATH COUNT    shmq_send_batch -> shmq_claim_packed ->
 *                              shmq_ack_batch, 32 messages at a time
 *                              (COUNT a multiple of 32)
 *
 * Every message carries its sequence number in its first 8 bytes and is
 * checked when it comes back. The queue file PATH is created (it must not
 * exist) and removed at the end. Exits 0 and prints "ok COUNT", or prints
 * what failed to stderr and exits 2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmq.h"

#define PAYLOAD 64
#define BATCH 32

static int fail(const char *what) {
    fprintf(stderr, "c_loop: %s: %s\n", what, shmq_last_error());
    return 2;
}

static void set_seq(uint8_t *p, uint64_t s) { memcpy(p, &s, 8); }

static uint64_t seq_of(const uint8_t *p) {
    uint64_t s;
    memcpy(&s, p, 8);
    return s;
}

static int single(shmq_queue *q, uint64_t count) {
    uint8_t buf[PAYLOAD], out[PAYLOAD];
    memset(buf, 0xa5, sizeof buf);
    for (uint64_t i = 0; i < count; i++) {
        set_seq(buf, i);
        if (shmq_send(q, buf, PAYLOAD, 0, 0, 0) != SHMQ_OK)
            return fail("shmq_send");
        shmq_message m;
        if (shmq_claim_copy(q, &m, out, sizeof out, 0) != SHMQ_OK)
            return fail("shmq_claim_copy");
        if (m.len != PAYLOAD || seq_of(out) != i) {
            fprintf(stderr, "c_loop: message %llu came back wrong\n", (unsigned long long)i);
            return 2;
        }
        if (shmq_ack(q, &m) != SHMQ_OK)
            return fail("shmq_ack");
    }
    return 0;
}

static int batch(shmq_queue *q, uint64_t count) {
    static uint8_t bufs[BATCH][PAYLOAD];
    static uint8_t packed[BATCH * PAYLOAD];
    shmq_iovec iov[BATCH];
    shmq_message msgs[BATCH];
    memset(bufs, 0xa5, sizeof bufs);
    for (int k = 0; k < BATCH; k++) {
        iov[k].data = bufs[k];
        iov[k].len = PAYLOAD;
    }
    for (uint64_t i = 0; i < count; i += BATCH) {
        for (int k = 0; k < BATCH; k++)
            set_seq(bufs[k], i + (uint64_t)k);
        size_t sent = 0, got = 0, acked = 0;
        if (shmq_send_batch(q, iov, BATCH, &sent, 0) != SHMQ_OK || sent != BATCH)
            return fail("shmq_send_batch");
        if (shmq_claim_packed(q, packed, sizeof packed, msgs, BATCH, &got, 0) != SHMQ_OK ||
            got != BATCH)
            return fail("shmq_claim_packed");
        for (int k = 0; k < BATCH; k++) {
            if (msgs[k].len != PAYLOAD || seq_of(msgs[k].data) != i + (uint64_t)k) {
                fprintf(stderr, "c_loop: message %llu came back wrong\n",
                        (unsigned long long)(i + (uint64_t)k));
                return 2;
            }
        }
        if (shmq_ack_batch(q, msgs, BATCH, &acked) != SHMQ_OK || acked != BATCH)
            return fail("shmq_ack_batch");
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s single|batch PATH COUNT\n", argv[0]);
        return 2;
    }
    if (shmq_abi_version() != SHMQ_ABI_VERSION) {
        fprintf(stderr, "c_loop: library ABI %u, header ABI %u\n", shmq_abi_version(),
                SHMQ_ABI_VERSION);
        return 2;
    }
    uint64_t count = strtoull(argv[3], NULL, 10);
    /* The options of the bench's one-to-one rows: 4096 slots of 64 bytes,
     * busy-polled waits. */
    shmq_options o;
    shmq_options_init(&o);
    o.capacity = 4096;
    o.max_message_size = PAYLOAD;
    o.wait_strategy = SHMQ_WAIT_SPIN;
    shmq_queue *q = NULL;
    if (shmq_create(argv[2], &o, &q) != SHMQ_OK)
        return fail("shmq_create");
    int rc;
    if (strcmp(argv[1], "single") == 0)
        rc = single(q, count);
    else if (strcmp(argv[1], "batch") == 0)
        rc = count % BATCH ? 2 : batch(q, count);
    else {
        fprintf(stderr, "c_loop: unknown loop %s\n", argv[1]);
        rc = 2;
    }
    shmq_close(q);
    unlink(argv[2]);
    if (rc == 0)
        printf("ok %llu\n", (unsigned long long)count);
    return rc;
}
