/*
 * The C side of `shmq bench`'s c-abi scenario: a producer or a consumer of
 * one queue, through include/shmq.h only. `shmq bench` embeds this file,
 * compiles it at run time with `cc -O2` against the libshmq.so beside the
 * shmq binary, and runs one producer and one consumer process.
 *
 * It does what the Rust one-to-one row does, message for message: the
 * producer sends COUNT payloads of PAYLOAD bytes with shmq_send (waiting
 * forever for room); the consumer claims and copies each with
 * shmq_claim_copy (the claim and the checked copy of the Rust consumer's
 * claim + read_into, in one call; try once, busy-polling while the queue is
 * empty), checks the sequence number in the first bytes and acks with
 * shmq_ack. Each pins itself to CPU.
 *
 * The protocol is that of the bench's Rust peers: print "ready" once
 * attached, then "done COUNT ELAPSED_NS" (the consumer's time runs from
 * its first message); exit non-zero on any failed call or check.
 *
 *   c_peer produce PATH COUNT PAYLOAD CPU
 *   c_peer consume PATH COUNT PAYLOAD CPU
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmq.h"

/* What Rust's std::hint::spin_loop emits. */
#if defined(__x86_64__) || defined(__i386__)
#define SPIN() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define SPIN() __asm__ __volatile__("yield")
#else
#define SPIN() ((void)0)
#endif

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* ignored if the CPU is missing */
}

static int fail(const char *what) {
    fprintf(stderr, "c_peer: %s: %s\n", what, shmq_last_error());
    return 2;
}

/* The sequence number in the first min(len, 8) bytes, little-endian. */
static uint64_t seq_of(const uint8_t *p, size_t len) {
    uint64_t s = 0;
    size_t n = len < 8 ? len : 8;
    for (size_t i = 0; i < n; i++)
        s |= (uint64_t)p[i] << (8 * i);
    return s;
}

static void set_seq(uint8_t *p, size_t len, uint64_t s) {
    size_t n = len < 8 ? len : 8;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(s >> (8 * i));
}

static int produce(shmq_queue *q, uint64_t count, size_t payload) {
    uint8_t *buf = malloc(payload ? payload : 1);
    if (!buf)
        return 2;
    memset(buf, 0xa5, payload);
    printf("ready\n");
    fflush(stdout);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < count; i++) {
        set_seq(buf, payload, i);
        if (shmq_send(q, buf, payload, 0, 0, -1) != SHMQ_OK)
            return fail("shmq_send");
    }
    printf("done %llu %llu\n", (unsigned long long)count, (unsigned long long)(now_ns() - t0));
    free(buf);
    return 0;
}

static int consume(shmq_queue *q, uint64_t count, size_t payload) {
    size_t cap = payload < 8 ? 8 : payload;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return 2;
    uint64_t mask = payload >= 8 ? ~0ull : ((1ull << (8 * payload)) - 1);
    printf("ready\n");
    fflush(stdout);
    uint64_t t0 = 0;
    uint64_t got = 0;
    while (got < count) {
        shmq_message m;
        shmq_status st = shmq_claim_copy(q, &m, buf, cap, 0);
        if (st == SHMQ_EMPTY) {
            SPIN();
            continue;
        }
        if (st != SHMQ_OK)
            return fail("shmq_claim_copy");
        if (got == 0)
            t0 = now_ns();
        if (seq_of(buf, m.len) != (got & mask)) {
            fprintf(stderr, "c_peer: message %llu arrived as %llu\n", (unsigned long long)got,
                    (unsigned long long)seq_of(buf, m.len));
            return 2;
        }
        if (shmq_ack(q, &m) != SHMQ_OK)
            return fail("shmq_ack");
        got++;
    }
    printf("done %llu %llu\n", (unsigned long long)got,
           (unsigned long long)(got ? now_ns() - t0 : 0));
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s produce|consume PATH COUNT PAYLOAD CPU\n", argv[0]);
        return 2;
    }
    if (shmq_abi_version() != SHMQ_ABI_VERSION) {
        fprintf(stderr, "c_peer: library ABI %u, header ABI %u\n", shmq_abi_version(),
                SHMQ_ABI_VERSION);
        return 2;
    }
    uint64_t count = strtoull(argv[3], NULL, 10);
    size_t payload = (size_t)strtoull(argv[4], NULL, 10);
    pin(atoi(argv[5]));
    shmq_queue *q = NULL;
    if (shmq_open(argv[2], &q) != SHMQ_OK)
        return fail("shmq_open");
    int rc;
    if (strcmp(argv[1], "produce") == 0)
        rc = produce(q, count, payload);
    else if (strcmp(argv[1], "consume") == 0)
        rc = consume(q, count, payload);
    else {
        fprintf(stderr, "c_peer: unknown role %s\n", argv[1]);
        rc = 2;
    }
    fflush(stdout);
    shmq_close(q);
    return rc;
}
