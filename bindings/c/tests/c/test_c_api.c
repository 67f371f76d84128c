/*
 * Tests of the C API through include/shmq.h: every status path, misuse
 * (NULLs, double outcomes, forged tokens and handles, use after close, two
 * threads on one handle), batches, dead letters, stats, and processes
 * killed with SIGKILL. Compiled as C11 and as C++17 with -Wall -Wextra
 * -Werror by bindings/c/tests/c_abi.rs.
 *
 * Usage: test_c_api DIR [--keys]   (DIR: where queue files go)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmq.h"

static const char *g_dir;
static int g_passed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n",       \
                    __FILE__, __LINE__, #cond, shmq_last_error());               \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#define EXPECT(call, status)                                                     \
    do {                                                                         \
        shmq_status st_ = (call);                                                \
        if (st_ != (status)) {                                                   \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n  last error: %s\n", \
                    __FILE__, __LINE__, #call, shmq_status_name(st_),            \
                    shmq_status_name(status), shmq_last_error());                \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

#define OK(call) EXPECT(call, SHMQ_OK)

static const int64_t MS = 1000000;

static void path_for(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s-%d", g_dir, name, (int)getpid());
    unlink(out);
}

static shmq_options small_opts(void) {
    shmq_options o;
    shmq_options_init(&o);
    o.capacity = 4;
    o.max_message_size = 64;
    return o;
}

static shmq_queue *create_small(const char *path) {
    shmq_options o = small_opts();
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    CHECK(q != NULL);
    return q;
}

static void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static int last_error_has(const char *needle) {
    return strstr(shmq_last_error(), needle) != NULL;
}

/* ------------------------------------------------------------------ */

static void test_abi_and_names(void) {
    CHECK(shmq_abi_version() == SHMQ_ABI_VERSION);
    CHECK(strcmp(shmq_status_name(SHMQ_OK), "SHMQ_OK") == 0);
    CHECK(strcmp(shmq_status_name(SHMQ_INTERNAL), "SHMQ_INTERNAL") == 0);
    CHECK(strcmp(shmq_status_name(SHMQ_CLOSED), "SHMQ_CLOSED") == 0);
    /* Enum order is part of the contract. */
    CHECK(SHMQ_FULL == 1 && SHMQ_EMPTY == 2 && SHMQ_TIMEOUT == 3 && SHMQ_TOO_LARGE == 4);
    CHECK(SHMQ_LEASE_LOST == 5 && SHMQ_ABANDONED == 6 && SHMQ_KEYS_FULL == 7);
    CHECK(SHMQ_STALE == 8 && SHMQ_INVALID_ARGUMENT == 9 && SHMQ_NOT_FOUND == 10);
    CHECK(SHMQ_EXISTS == 11 && SHMQ_INCOMPATIBLE == 12 && SHMQ_CORRUPT == 13);
    CHECK(SHMQ_PERMISSION == 14 && SHMQ_IO == 15 && SHMQ_INTERNAL == 16);
    /* Values that are no status are safe. */
#ifdef __cplusplus
    /* C++ only allows values within the enumeration's range (0..31). */
    CHECK(strcmp(shmq_status_name((shmq_status)31), "SHMQ_UNKNOWN") == 0);
#else
    CHECK(strcmp(shmq_status_name((shmq_status)-1), "SHMQ_UNKNOWN") == 0);
    CHECK(strcmp(shmq_status_name((shmq_status)1000), "SHMQ_UNKNOWN") == 0);
#endif
    for (int i = 0; i <= SHMQ_CLOSED; i++)
        CHECK(strncmp(shmq_status_name((shmq_status)i), "SHMQ_", 5) == 0);
}

static void test_lifecycle_statuses(void) {
    char path[512];
    path_for(path, sizeof path, "life");
    shmq_options o = small_opts();
    shmq_queue *q = NULL;

    /* NULLs and bad options. */
    EXPECT(shmq_create(NULL, &o, &q), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_create(path, &o, NULL), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_open(NULL, &q), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_open(path, NULL), SHMQ_INVALID_ARGUMENT);
    CHECK(q == NULL); /* out-parameters untouched on failure */
    shmq_options bad = o;
    bad.size = 3;
    EXPECT(shmq_create(path, &bad, &q), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("size"));
    bad = o;
    bad.flags = 0x80;
    EXPECT(shmq_create(path, &bad, &q), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("flags"));
    bad = o;
    bad.wait_strategy = 77;
    EXPECT(shmq_create(path, &bad, &q), SHMQ_INVALID_ARGUMENT);
    bad = o;
    bad.capacity = 0;
    EXPECT(shmq_create(path, &bad, &q), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has(path));
    CHECK(q == NULL);
    shmq_options_init(NULL); /* ignored, no crash */

    /* Files. */
    EXPECT(shmq_open(path, &q), SHMQ_NOT_FOUND);
    CHECK(last_error_has(path));
    OK(shmq_create(path, &o, &q));
    shmq_queue *q2 = NULL;
    EXPECT(shmq_create(path, &o, &q2), SHMQ_EXISTS);
    CHECK(q2 == NULL);
    OK(shmq_open(path, &q2));
    OK(shmq_close(q2));
    OK(shmq_close(q));
    if (geteuid() != 0) {
        char ro[512], inside[600];
        path_for(ro, sizeof ro, "readonly-dir");
        rmdir(ro);
        CHECK(mkdir(ro, 0500) == 0);
        snprintf(inside, sizeof inside, "%s/q", ro);
        EXPECT(shmq_create(inside, &o, &q2), SHMQ_PERMISSION);
        rmdir(ro);
    } else {
        /* root passes permission bits; sysfs still refuses new files. */
        EXPECT(shmq_create("/sys/shmq-c-test", &o, &q2), SHMQ_PERMISSION);
    }
    EXPECT(shmq_create("/etc/passwd/shmq", &o, &q2), SHMQ_IO);

    /* A file that is not a queue. */
    char junk[512];
    path_for(junk, sizeof junk, "junk");
    FILE *f = fopen(junk, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 8192; i++)
        fputc('x', f);
    fclose(f);
    shmq_status st = shmq_open(junk, &q2);
    CHECK(st == SHMQ_INCOMPATIBLE || st == SHMQ_CORRUPT);
    CHECK(last_error_has(junk));
    unlink(junk);

    /* Defaults with NULL options. */
    char p2[512];
    path_for(p2, sizeof p2, "defaults");
    OK(shmq_create(p2, NULL, &q));
    shmq_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    OK(shmq_get_info(q, &info));
    CHECK(info.capacity == 1024 && info.max_message_size == 256);
    CHECK(info.lease_ns == 30ull * 1000 * MS && info.max_deliveries == 10);
    info.size = 2;
    EXPECT(shmq_get_info(q, &info), SHMQ_INVALID_ARGUMENT);
    OK(shmq_verify(q));
    OK(shmq_recover(q));
    OK(shmq_flush(q));
    OK(shmq_close(q));
    struct stat sb;
    CHECK(stat(p2, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    unlink(p2);
    unlink(path);
}

static void test_send_claim_statuses(void) {
    char path[512];
    path_for(path, sizeof path, "basic");
    shmq_queue *q = create_small(path);
    shmq_message m;
    memset(&m, 0, sizeof m);

    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);
    CHECK(last_error_has(path) && last_error_has("claim"));
    EXPECT(shmq_claim(q, &m, 5 * MS), SHMQ_TIMEOUT);
    CHECK(m.token == 0); /* untouched */

    for (int i = 0; i < 4; i++) {
        char b[16];
        int n = snprintf(b, sizeof b, "msg %d", i);
        OK(shmq_send(q, b, (size_t)n, 0, 0, 0));
    }
    EXPECT(shmq_send(q, "x", 1, 0, 0, 0), SHMQ_FULL);
    CHECK(last_error_has(path) && last_error_has("send") && last_error_has("full"));
    EXPECT(shmq_send(q, "x", 1, 0, 0, 5 * MS), SHMQ_TIMEOUT);
    char big[65];
    memset(big, 'b', sizeof big);
    EXPECT(shmq_send(q, big, sizeof big, 0, 0, 0), SHMQ_TOO_LARGE);
    EXPECT(shmq_send(q, NULL, 3, 0, 0, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_send(NULL, "x", 1, 0, 0, 0), SHMQ_INVALID_ARGUMENT);

    for (int i = 0; i < 4; i++) {
        OK(shmq_claim(q, &m, 0));
        char want[16];
        int n = snprintf(want, sizeof want, "msg %d", i);
        CHECK(m.len == (size_t)n && memcmp(m.data, want, m.len) == 0);
        CHECK(m.deliveries == 1 && m.key == 0 && m.enqueued_ns > 0);
        OK(shmq_ack(q, &m));
    }
    /* An empty payload with a NULL pointer is fine. */
    OK(shmq_send(q, NULL, 0, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));
    CHECK(m.len == 0);
    OK(shmq_ack(q, &m));

    /* send_ex: position and version out, delay. */
    shmq_send_options so;
    shmq_send_options_init(&so);
    so.delay_ns = (uint64_t)(60 * MS);
    uint64_t pos = 0, ver = 99;
    OK(shmq_send_ex(q, "later", 5, &so, &pos, &ver));
    CHECK(ver == 0);
    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);
    OK(shmq_claim(q, &m, 2000 * MS));
    CHECK(m.position == pos && m.len == 5);
    OK(shmq_ack(q, &m));
    so.size = 1;
    EXPECT(shmq_send_ex(q, "x", 1, &so, NULL, NULL), SHMQ_INVALID_ARGUMENT);
    OK(shmq_send_ex(q, "x", 1, NULL, NULL, NULL));
    OK(shmq_claim(q, &m, 0));
    OK(shmq_ack(q, &m));

    OK(shmq_close(q));
    unlink(path);
}

static void test_misuse(void) {
    char path[512];
    path_for(path, sizeof path, "misuse");
    shmq_queue *q = create_small(path);
    shmq_message m, forged;
    OK(shmq_send(q, "a", 1, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));

    EXPECT(shmq_ack(q, NULL), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_ack(NULL, &m), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_claim(q, NULL, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_reserve(q, 4, NULL, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_get_stats(q, NULL), SHMQ_INVALID_ARGUMENT);

    /* Forged tokens: one that names no claim at all (generation 0), and
       others of no claim this handle holds (the token is opaque: whatever
       its encoding, such a token is INVALID_ARGUMENT or LEASE_LOST, never
       acted on). */
    forged = m;
    forged.token = 0;
    EXPECT(shmq_ack(q, &forged), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("token"));
    static const uint64_t flips[] = {0x5555, (uint64_t)0x5555 << 32, 1, (uint64_t)1 << 63};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        forged.token = m.token ^ flips[i];
        shmq_status st = shmq_ack(q, &forged);
        CHECK(st == SHMQ_INVALID_ARGUMENT || st == SHMQ_LEASE_LOST);
        st = shmq_nack(q, &forged, 0);
        CHECK(st == SHMQ_INVALID_ARGUMENT || st == SHMQ_LEASE_LOST);
        st = shmq_reject(q, &forged, "x");
        CHECK(st == SHMQ_INVALID_ARGUMENT || st == SHMQ_LEASE_LOST);
        st = shmq_extend_lease(q, &forged, 1000);
        CHECK(st == SHMQ_INVALID_ARGUMENT || st == SHMQ_LEASE_LOST);
    }
    EXPECT(shmq_extend_lease(q, &m, 0), SHMQ_INVALID_ARGUMENT);

    /* Double outcomes. */
    OK(shmq_ack(q, &m));
    EXPECT(shmq_ack(q, &m), SHMQ_LEASE_LOST);
    CHECK(last_error_has(path) && last_error_has("ack"));
    EXPECT(shmq_nack(q, &m, 0), SHMQ_LEASE_LOST);
    EXPECT(shmq_reject(q, &m, "late"), SHMQ_LEASE_LOST);

    /* A claim belongs to the handle that made it. */
    shmq_queue *other = NULL;
    OK(shmq_open(path, &other));
    OK(shmq_send(q, "b", 1, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));
    EXPECT(shmq_ack(other, &m), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("another handle"));
    OK(shmq_ack(q, &m));

    /* A pointer that is no handle. */
    uint64_t fake[8];
    memset(fake, 0, sizeof fake);
    EXPECT(shmq_send((shmq_queue *)(void *)fake, "x", 1, 0, 0, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_send((shmq_queue *)(void *)((char *)fake + 1), "x", 1, 0, 0, 0),
           SHMQ_INVALID_ARGUMENT);

    /* Use after close, double close. */
    OK(shmq_close(other));
    EXPECT(shmq_send(other, "x", 1, 0, 0, 0), SHMQ_CLOSED);
    CHECK(last_error_has("close"));
    EXPECT(shmq_claim(other, &m, 0), SHMQ_CLOSED);
    EXPECT(shmq_ack(other, &m), SHMQ_CLOSED);
    EXPECT(shmq_close(other), SHMQ_CLOSED);
    EXPECT(shmq_close(NULL), SHMQ_INVALID_ARGUMENT);

    /* An inspection handle cannot send or claim. */
    shmq_queue *insp = NULL;
    OK(shmq_inspect(path, &insp));
    EXPECT(shmq_send(insp, "x", 1, 0, 0, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_claim(insp, &m, 0), SHMQ_INVALID_ARGUMENT);
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(insp, &s));
    CHECK(s.sent == 2);
    OK(shmq_close(insp));

    OK(shmq_close(q));
    unlink(path);
}

/* Two queues used alike hand out equal tokens: each refuses the other's
 * messages (and messages not filled by a claim), changing nothing. */
static void test_foreign_messages(void) {
    char px[512], py[512];
    path_for(px, sizeof px, "foreign-x");
    path_for(py, sizeof py, "foreign-y");
    shmq_queue *x = create_small(px);
    shmq_queue *y = create_small(py);
    shmq_message mx, my, bad;
    OK(shmq_send(x, "x", 1, 0, 0, 0));
    OK(shmq_send(y, "y", 1, 0, 0, 0));
    OK(shmq_claim(x, &mx, 0));
    OK(shmq_claim(y, &my, 0));
    CHECK(mx.size == sizeof(shmq_message) && my.size == sizeof(shmq_message));
    CHECK(mx.handle_id != 0 && my.handle_id != 0 && mx.handle_id != my.handle_id);
    CHECK(mx.reserved[0] == 0 && mx.reserved[1] == 0 && mx.reserved[2] == 0);

    /* Every call that takes a message refuses the other queue's. */
    EXPECT(shmq_ack(y, &mx), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has(py) && last_error_has("shmq_ack") && last_error_has("another handle"));
    EXPECT(shmq_nack(y, &mx, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_reject(y, &mx, "no"), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_extend_lease(y, &mx, 1000), SHMQ_INVALID_ARGUMENT);
    char buf[64];
    size_t n = 77;
    EXPECT(shmq_read(y, &mx, buf, sizeof buf, &n), SHMQ_INVALID_ARGUMENT);
    CHECK(n == 77);
    shmq_message both[2];
    both[0] = my;
    both[1] = mx;
    size_t acked = 77;
    EXPECT(shmq_ack_batch(y, both, 2, &acked), SHMQ_INVALID_ARGUMENT);
    CHECK(acked == 77 && last_error_has("msgs[1]"));

    /* Not filled by a claim: a size that is not this version's (read alone,
     * nothing past it), reserved words, handle id 0. */
    bad = my;
    bad.size = 0;
    EXPECT(shmq_ack(y, &bad), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("size"));
    bad.size = (uint32_t)sizeof(shmq_message) - 8;
    EXPECT(shmq_nack(y, &bad, 0), SHMQ_INVALID_ARGUMENT);
    bad.size = (uint32_t)sizeof(shmq_message) + 8;
    EXPECT(shmq_reject(y, &bad, "x"), SHMQ_INVALID_ARGUMENT);
    uint64_t just_a_size = 8; /* 8 readable bytes: never read past the size */
    EXPECT(shmq_ack(y, (const shmq_message *)(const void *)&just_a_size), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("size is 8"));
    bad = my;
    bad.reserved[2] = 1;
    EXPECT(shmq_extend_lease(y, &bad, 1000), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("reserved"));
    bad = my;
    bad.handle_id = 0;
    EXPECT(shmq_read(y, &bad, buf, sizeof buf, &n), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("handle_id"));
    memset(&bad, 0, sizeof bad);
    EXPECT(shmq_ack(y, &bad), SHMQ_INVALID_ARGUMENT);

    /* Nothing changed on either queue. */
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(y, &s));
    CHECK(s.in_flight == 1 && s.acked == 0 && s.nacked == 0 && s.dead_letters == 0);
    OK(shmq_read(y, &my, buf, sizeof buf, &n));
    CHECK(n == 1 && buf[0] == 'y');
    OK(shmq_ack(y, &my));
    OK(shmq_ack(x, &mx));

    /* A closed handle's message, given to a newer handle of the same file. */
    OK(shmq_send(x, "again", 5, 0, 0, 0));
    OK(shmq_claim(x, &mx, 0));
    OK(shmq_close(x));
    OK(shmq_open(px, &x));
    OK(shmq_claim(x, &my, 0)); /* redelivered at the close */
    CHECK(my.deliveries == 2 && my.handle_id != mx.handle_id);
    EXPECT(shmq_ack(x, &mx), SHMQ_INVALID_ARGUMENT);
    OK(shmq_ack(x, &my));
    OK(shmq_close(x));
    OK(shmq_close(y));
    unlink(px);
    unlink(py);
}

struct busy_arg {
    shmq_queue *q;
    shmq_status st;
};

static void *claim_slowly(void *p) {
    struct busy_arg *a = (struct busy_arg *)p;
    shmq_message m;
    a->st = shmq_claim(a->q, &m, 300 * MS);
    return NULL;
}

static void test_two_threads_on_one_handle(void) {
    char path[512];
    path_for(path, sizeof path, "threads");
    shmq_queue *q = create_small(path);
    struct busy_arg a;
    a.q = q;
    a.st = SHMQ_OK;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, claim_slowly, &a) == 0);
    sleep_ms(80);
    EXPECT(shmq_send(q, "x", 1, 0, 0, 0), SHMQ_CLOSED);
    CHECK(last_error_has("another thread"));
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(a.st == SHMQ_TIMEOUT);
    /* The thread's TIMEOUT detail stayed in its own thread-local slot. */
    CHECK(last_error_has("another thread") && !last_error_has("timed out"));
    OK(shmq_send(q, "x", 1, 0, 0, 0));
    OK(shmq_close(q));
    unlink(path);
}

static void test_outcomes_and_dead_letters(void) {
    char path[512];
    path_for(path, sizeof path, "outcomes");
    shmq_options o = small_opts();
    o.max_deliveries = 2;
    o.lease_ns = (uint64_t)(150 * MS);
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    shmq_message m, m2;

    /* nack with delay, then the last allowed delivery dead-letters. */
    OK(shmq_send(q, "n", 1, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));
    OK(shmq_nack(q, &m, (uint64_t)(40 * MS)));
    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);
    OK(shmq_claim(q, &m, 2000 * MS));
    CHECK(m.deliveries == 2);
    OK(shmq_nack(q, &m, 0));
    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);

    /* reject goes straight to dead letters. */
    OK(shmq_send(q, "rejected payload", 16, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));
    OK(shmq_reject(q, &m, "bad input"));

    /* extend_lease keeps a claim past its lease; expiry loses it. */
    OK(shmq_send(q, "e", 1, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));
    OK(shmq_extend_lease(q, &m, (uint64_t)(1000 * MS)));
    sleep_ms(250);
    EXPECT(shmq_claim(q, &m2, 0), SHMQ_EMPTY);
    OK(shmq_ack(q, &m));
    OK(shmq_send(q, "l", 1, 0, 0, 0));
    OK(shmq_claim(q, &m, 0));
    sleep_ms(250);
    OK(shmq_claim(q, &m2, 1000 * MS)); /* redelivered after expiry */
    CHECK(m2.deliveries == 2 && m2.data[0] == 'l');
    EXPECT(shmq_ack(q, &m), SHMQ_LEASE_LOST);
    OK(shmq_ack(q, &m2));

    /* The dead letters. */
    size_t total = 99;
    OK(shmq_dlq_list(q, NULL, 0, &total));
    CHECK(total == 2);
    shmq_dead_letter dl[4];
    memset(dl, 0, sizeof dl);
    EXPECT(shmq_dlq_list(q, dl, 4, &total), SHMQ_INVALID_ARGUMENT); /* size unset */
    dl[0].size = sizeof dl[0];
    OK(shmq_dlq_list(q, dl, 4, &total));
    CHECK(total == 2 && dl[0].id != 0 && dl[1].id > dl[0].id);
    CHECK(dl[0].attempts == 2 && strstr(dl[0].reason, "nack") != NULL);
    CHECK(strcmp(dl[1].reason, "bad input") == 0 && dl[1].len == 16);
    CHECK(dl[1].last_consumer_pid == (uint64_t)getpid());

    shmq_dead_letter one;
    memset(&one, 0, sizeof one);
    one.size = sizeof one;
    char buf[64];
    size_t len = 0;
    EXPECT(shmq_dlq_get(q, dl[1].id, &one, buf, 4, &len), SHMQ_TOO_LARGE);
    CHECK(len == 0 && one.id == 0);
    OK(shmq_dlq_get(q, dl[1].id, &one, buf, sizeof buf, &len));
    CHECK(len == 16 && memcmp(buf, "rejected payload", 16) == 0 && one.id == dl[1].id);
    EXPECT(shmq_dlq_get(q, 12345, &one, buf, sizeof buf, &len), SHMQ_NOT_FOUND);
    CHECK(last_error_has(path));

    size_t n = 0;
    OK(shmq_dlq_redrive(q, dl[1].id, &n));
    CHECK(n == 1);
    OK(shmq_claim(q, &m, 0));
    CHECK(m.deliveries == 1 && m.len == 16);
    OK(shmq_ack(q, &m));
    EXPECT(shmq_dlq_redrive(q, dl[1].id, &n), SHMQ_NOT_FOUND);
    OK(shmq_dlq_purge(q, SHMQ_DLQ_ALL, &n));
    CHECK(n == 1);
    OK(shmq_dlq_list(q, NULL, 0, &total));
    CHECK(total == 0);
    EXPECT(shmq_dlq_purge(q, 777, &n), SHMQ_NOT_FOUND);

    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(q, &s));
    CHECK(s.nacked == 2 && s.rejected == 1 && s.dead_lettered == 2);
    CHECK(s.extended == 1 && s.redelivered >= 2 && s.lease_lost >= 1);
    OK(shmq_close(q));
    unlink(path);
}

static void test_reserve_commit(void) {
    char path[512];
    path_for(path, sizeof path, "reserve");
    shmq_options o = small_opts();
    o.reservation_timeout_ns = (uint64_t)(30 * MS);
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    shmq_reservation r, r2;
    shmq_message m;

    OK(shmq_reserve(q, 10, &r, 0));
    CHECK(r.data != NULL && r.capacity == 10);
    memcpy(r.data, "zero-copy!", 10);
    OK(shmq_commit(q, &r, 10, 0, 0));
    EXPECT(shmq_commit(q, &r, 10, 0, 0), SHMQ_NOT_FOUND); /* double commit */
    EXPECT(shmq_abort(q, &r), SHMQ_NOT_FOUND);
    OK(shmq_claim(q, &m, 0));
    CHECK(m.len == 10 && memcmp(m.data, "zero-copy!", 10) == 0 && m.position == r.position);
    OK(shmq_ack(q, &m));

    /* Commit a shorter payload; too long aborts. */
    OK(shmq_reserve(q, 20, &r, 0));
    memcpy(r.data, "abc", 3);
    OK(shmq_commit(q, &r, 3, 0, 0));
    OK(shmq_claim(q, &m, 0));
    CHECK(m.len == 3);
    OK(shmq_ack(q, &m));
    OK(shmq_reserve(q, 4, &r, 0));
    EXPECT(shmq_commit(q, &r, 5, 0, 0), SHMQ_TOO_LARGE);
    EXPECT(shmq_reserve(q, 65, &r, 0), SHMQ_TOO_LARGE);

    /* Abort, forged ids. */
    OK(shmq_reserve(q, 4, &r, 0));
    r2 = r;
    r2.id ^= (uint64_t)1 << 40;
    EXPECT(shmq_commit(q, &r2, 1, 0, 0), SHMQ_NOT_FOUND);
    r2.id = 999;
    EXPECT(shmq_abort(q, &r2), SHMQ_NOT_FOUND);
    EXPECT(shmq_commit(q, NULL, 1, 0, 0), SHMQ_INVALID_ARGUMENT);
    OK(shmq_abort(q, &r));
    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);

    /* A reservation left past the reservation timeout is abandoned. */
    OK(shmq_reserve(q, 4, &r, 0));
    shmq_queue *c = NULL;
    OK(shmq_open(path, &c));
    sleep_ms(60);
    EXPECT(shmq_claim(c, &m, 50 * MS), SHMQ_TIMEOUT);
    EXPECT(shmq_commit(q, &r, 4, 0, 0), SHMQ_ABANDONED);
    CHECK(last_error_has(path));

    /* commit_ex with options. */
    shmq_send_options so;
    shmq_send_options_init(&so);
    uint64_t pos = 0;
    OK(shmq_reserve(q, 2, &r, 0));
    memcpy(r.data, "hi", 2);
    OK(shmq_commit_ex(q, &r, 2, &so, &pos, NULL));
    OK(shmq_claim(c, &m, 0));
    CHECK(m.position == pos);
    OK(shmq_ack(c, &m));

    /* Closing a handle aborts what it still has reserved. */
    OK(shmq_reserve(q, 4, &r, 0));
    OK(shmq_close(q));
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(c, &s));
    CHECK(s.reserved == 0 && s.abandoned >= 1);
    OK(shmq_close(c));
    unlink(path);
}

static void test_batches_and_copies(void) {
    char path[512];
    path_for(path, sizeof path, "batch");
    shmq_options o = small_opts();
    o.capacity = 64;
    o.max_message_size = 16;
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));

    shmq_iovec iov[3];
    iov[0].data = "one";
    iov[0].len = 3;
    iov[1].data = "two";
    iov[1].len = 3;
    iov[2].data = "three";
    iov[2].len = 5;
    size_t n = 0;
    OK(shmq_send_batch(q, iov, 3, &n, 0));
    CHECK(n == 3);
    iov[1].data = NULL;
    n = 77;
    EXPECT(shmq_send_batch(q, iov, 3, &n, 0), SHMQ_INVALID_ARGUMENT);
    CHECK(n == 77);
    const char packed[] = "fourfivesix";
    size_t lens[3] = {4, 4, 3};
    OK(shmq_send_packed(q, packed, 11, lens, 3, &n, 0));
    CHECK(n == 3);
    lens[2] = 9;
    EXPECT(shmq_send_packed(q, packed, 11, lens, 3, &n, 0), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("data_len"));

    shmq_message ms[8];
    OK(shmq_claim_batch(q, ms, 2, &n, 0));
    CHECK(n == 2 && memcmp(ms[0].data, "one", 3) == 0 && memcmp(ms[1].data, "two", 3) == 0);
    EXPECT(shmq_claim_batch(q, ms, 0, &n, 0), SHMQ_INVALID_ARGUMENT);
    size_t acked = 0;
    OK(shmq_ack_batch(q, ms, 2, &acked));
    CHECK(acked == 2);
    OK(shmq_ack_batch(q, ms, 2, &acked)); /* lost leases are skipped */
    CHECK(acked == 0);

    /* Copying claim: the buffer must hold max_message_size. */
    char buf[64];
    shmq_message m;
    EXPECT(shmq_claim_copy(q, &m, buf, 8, 0), SHMQ_INVALID_ARGUMENT);
    OK(shmq_claim_copy(q, &m, buf, sizeof buf, 0));
    CHECK(m.len == 5 && m.data == (const uint8_t *)buf && memcmp(buf, "three", 5) == 0);
    size_t len = 0;
    char small[2];
    EXPECT(shmq_read(q, &m, small, sizeof small, &len), SHMQ_TOO_LARGE);
    OK(shmq_read(q, &m, buf, sizeof buf, &len));
    CHECK(len == 5);
    OK(shmq_ack(q, &m));
    EXPECT(shmq_read(q, &m, buf, sizeof buf, &len), SHMQ_LEASE_LOST);

    /* Packed copying claim: claims only what fits whole. */
    OK(shmq_claim_packed(q, buf, 40, ms, 8, &n, 0));
    CHECK(n == 2); /* 40 / 16 */
    CHECK(ms[0].len == 4 && memcmp(ms[0].data, "four", 4) == 0);
    CHECK(ms[1].data == ms[0].data + 4 && memcmp(ms[1].data, "five", 4) == 0);
    OK(shmq_ack_batch(q, ms, n, &acked));
    OK(shmq_claim_packed(q, buf, sizeof buf, ms, 8, &n, 0));
    CHECK(n == 1 && memcmp(ms[0].data, "six", 3) == 0);
    OK(shmq_ack(q, &ms[0]));
    EXPECT(shmq_claim_packed(q, buf, 15, ms, 8, &n, 0), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_claim_packed(q, buf, sizeof buf, ms, 8, &n, 0), SHMQ_EMPTY);

    /* Fill it: the batch sends what fits. */
    const char *many[70];
    shmq_iovec big[70];
    for (int i = 0; i < 70; i++) {
        many[i] = "m";
        big[i].data = many[i];
        big[i].len = 1;
    }
    OK(shmq_send_batch(q, big, 70, &n, 0));
    CHECK(n == 64);
    EXPECT(shmq_send_batch(q, big, 1, &n, 0), SHMQ_FULL);

    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(q, &s));
    CHECK(s.sent == 70 && s.acked == 6 && s.depth == 64 && s.capacity == 64);
    /* The engine may sample latencies: at least one, at most every message. */
    CHECK(s.processing_time.count >= 1 && s.processing_time.count <= 6);
    CHECK(s.time_in_queue.count <= 6);
    CHECK(s.time_in_queue.p50 <= s.time_in_queue.max && s.producers == 1 && s.consumers == 1);
    CHECK(s.refused_full == 1);
    s.size = 8;
    EXPECT(shmq_get_stats(q, &s), SHMQ_INVALID_ARGUMENT);
    OK(shmq_close(q));
    unlink(path);
}

static void test_keys(void) {
    char path[512];
    path_for(path, sizeof path, "keys");
    shmq_options o = small_opts();
    o.key_capacity = 2;
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    shmq_message m;
    uint64_t v = 0;
    OK(shmq_send(q, "k1v1", 4, 1, 1, 0));
    OK(shmq_send(q, "k2v5", 4, 2, 5, 0));
    EXPECT(shmq_send(q, "k3", 2, 3, 1, 0), SHMQ_KEYS_FULL);
    OK(shmq_claim(q, &m, 0));
    CHECK(m.key == 1 && m.version == 1);
    OK(shmq_ack(q, &m));
    OK(shmq_latest_acked_version(q, 1, &v));
    CHECK(v == 1);
    EXPECT(shmq_send(q, "k1v1", 4, 1, 1, 0), SHMQ_STALE);
    EXPECT(shmq_latest_acked_version(q, 0, &v), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_latest_acked_version(q, 1, NULL), SHMQ_INVALID_ARGUMENT);

    /* Version 0 on a keyed send: the key's next version. */
    shmq_send_options so;
    shmq_send_options_init(&so);
    so.key = 1;
    uint64_t ver = 0;
    OK(shmq_send_ex(q, "k1next", 6, &so, NULL, &ver));
    CHECK(ver > 1);
    OK(shmq_claim(q, &m, 0));
    CHECK(m.key == 2 && m.version == 5);
    OK(shmq_ack(q, &m));
    OK(shmq_claim(q, &m, 0));
    CHECK(m.key == 1 && m.version == ver && m.len == 6);
    OK(shmq_ack(q, &m));
    OK(shmq_latest_acked_version(q, 1, &v));
    CHECK(v == ver);

    /* A queue without a key table refuses keys. */
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(q, &s));
    CHECK(s.stale >= 1 && s.key_capacity == 2 && s.keys_in_use >= 1);
    OK(shmq_close(q));
    unlink(path);
    q = create_small(path);
    EXPECT(shmq_latest_acked_version(q, 1, &v), SHMQ_INVALID_ARGUMENT);
    OK(shmq_close(q));
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Processes killed with SIGKILL. A forked child opens its own handle. */

static pid_t spawn(const char *path, int role, int ready_fd) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid != 0)
        return pid;
    shmq_queue *q = NULL;
    if (shmq_open(path, &q) != SHMQ_OK)
        _exit(2);
    shmq_message m;
    shmq_reservation r;
    char c = 'r';
    if (role == 0) { /* a consumer that claims and hangs */
        if (shmq_claim(q, &m, 2000 * MS) != SHMQ_OK)
            _exit(3);
    } else { /* a producer that reserves and hangs */
        if (shmq_reserve(q, 8, &r, 2000 * MS) != SHMQ_OK)
            _exit(3);
        memcpy(r.data, "partial", 7);
    }
    if (write(ready_fd, &c, 1) != 1)
        _exit(4);
    for (;;)
        pause();
}

static void wait_ready(int fd) {
    char c;
    CHECK(read(fd, &c, 1) == 1);
}

static void kill_and_reap(pid_t pid) {
    int status = 0;
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void test_killed_consumer_and_producer(void) {
    char path[512];
    path_for(path, sizeof path, "kill");
    shmq_options o = small_opts();
    o.capacity = 1;
    o.lease_ns = (uint64_t)(3600ull * 1000 * MS); /* only death can end it */
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    int fds[2];
    CHECK(pipe(fds) == 0);
    shmq_message m;

    /* A consumer dies holding a claim: redelivered without a lease timeout. */
    OK(shmq_send(q, "job", 3, 0, 0, 0));
    pid_t c = spawn(path, 0, fds[1]);
    wait_ready(fds[0]);
    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);
    kill_and_reap(c);
    OK(shmq_claim(q, &m, 3000 * MS));
    CHECK(m.deliveries == 2 && m.len == 3 && memcmp(m.data, "job", 3) == 0);
    OK(shmq_ack(q, &m));

    /* A producer dies holding the only slot: abandoned, nothing delivered. */
    pid_t p = spawn(path, 1, fds[1]);
    wait_ready(fds[0]);
    EXPECT(shmq_send(q, "x", 1, 0, 0, 0), SHMQ_FULL);
    kill_and_reap(p);
    OK(shmq_send(q, "after", 5, 0, 0, 3000 * MS));
    OK(shmq_claim(q, &m, 0));
    CHECK(m.len == 5 && memcmp(m.data, "after", 5) == 0);
    OK(shmq_ack(q, &m));
    EXPECT(shmq_claim(q, &m, 0), SHMQ_EMPTY);

    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(q, &s));
    CHECK(s.abandoned >= 1 && s.dead_participants >= 2 && s.in_flight == 0);
    OK(shmq_verify(q));
    close(fds[0]);
    close(fds[1]);
    OK(shmq_close(q));
    unlink(path);
}

/* Several consumer processes, one killed at a random moment: every message
 * is acked exactly once in the end. */
static void test_competing_consumers_one_killed(void) {
    char path[512];
    path_for(path, sizeof path, "compete");
    shmq_options o = small_opts();
    o.capacity = 32;
    o.lease_ns = (uint64_t)(3600ull * 1000 * MS);
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    const int total = 400, workers = 3;
    pid_t pids[3];
    for (int w = 0; w < workers; w++) {
        pids[w] = fork();
        CHECK(pids[w] >= 0);
        if (pids[w] == 0) {
            shmq_queue *cq = NULL;
            if (shmq_open(path, &cq) != SHMQ_OK)
                _exit(2);
            shmq_message m;
            for (;;) {
                shmq_status st = shmq_claim(cq, &m, 500 * MS);
                if (st == SHMQ_TIMEOUT)
                    _exit(0);
                if (st != SHMQ_OK)
                    _exit(3);
                if (m.len == 4 && memcmp(m.data, "stop", 4) == 0) {
                    shmq_ack(cq, &m);
                    shmq_close(cq);
                    _exit(0);
                }
                if (shmq_ack(cq, &m) != SHMQ_OK)
                    _exit(4);
            }
        }
    }
    for (int i = 0; i < total; i++) {
        char b[16];
        int n = snprintf(b, sizeof b, "%d", i);
        OK(shmq_send(q, b, (size_t)n, 0, 0, -1));
        if (i == total / 3)
            kill(pids[0], SIGKILL);
    }
    for (int w = 1; w < workers; w++)
        OK(shmq_send(q, "stop", 4, 0, 0, -1));
    for (int w = 0; w < workers; w++) {
        int status = 0;
        CHECK(waitpid(pids[w], &status, 0) == pids[w]);
        if (w > 0)
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* What the killed one held is redelivered; drain what is left. */
    shmq_message m;
    while (shmq_claim(q, &m, 200 * MS) == SHMQ_OK)
        OK(shmq_ack(q, &m));
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(q, &s));
    CHECK(s.sent == (uint64_t)(total + workers - 1));
    /* Every message left the queue by an ack: nothing is queued, in flight,
     * reserved or dead-lettered. The acked counter may miss one ack: the one
     * the killed worker finished in the file just before SIGKILL, before it
     * counted it in its own metrics. */
    if (!(s.acked <= s.sent && s.acked + 1 >= s.sent))
        fprintf(stderr, "sent %llu acked %llu\n", (unsigned long long)s.sent,
                (unsigned long long)s.acked);
    CHECK(s.acked <= s.sent && s.acked + 1 >= s.sent);
    CHECK(s.depth == 0 && s.in_flight == 0 && s.reserved == 0 && s.delayed == 0);
    CHECK(s.dead_letters == 0 && s.dlq_waiting == 0);
    OK(shmq_close(q));
    unlink(path);
}

/* A handle copied into a forked child is refused there, and closing it in
 * the child leaves the parent's claims and participant entry alone. */
static void test_fork_inherited_handle(void) {
    char path[512];
    path_for(path, sizeof path, "fork");
    shmq_queue *q = create_small(path);
    shmq_message held;
    OK(shmq_send(q, "held", 4, 0, 0, 0));
    OK(shmq_claim(q, &held, 0));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int code = 0;
        if (shmq_send(q, "x", 1, 0, 0, 0) != SHMQ_INVALID_ARGUMENT || !last_error_has("fork"))
            code = 10;
        else if (shmq_ack(q, &held) != SHMQ_INVALID_ARGUMENT)
            code = 11;
        else if (shmq_close(q) != SHMQ_OK)
            code = 12;
        else if (shmq_close(q) != SHMQ_CLOSED)
            code = 13;
        else {
            shmq_queue *own = NULL;
            if (shmq_open(path, &own) != SHMQ_OK)
                code = 14;
            else if (shmq_send(own, "from child", 10, 0, 0, 0) != SHMQ_OK)
                code = 15;
            else if (shmq_close(own) != SHMQ_OK)
                code = 16;
        }
        _exit(code);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    shmq_message m;
    OK(shmq_claim(q, &m, 0));
    CHECK(m.len == 10 && memcmp(m.data, "from child", 10) == 0);
    OK(shmq_ack(q, &m));
    OK(shmq_ack(q, &held)); /* the parent's claim survived the child */
    OK(shmq_verify(q));
    OK(shmq_close(q));
    unlink(path);
}

/* Reads a whole file into a new buffer; *len is its size. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n > 0);
    rewind(f);
    unsigned char *b = (unsigned char *)malloc((size_t)n);
    CHECK(b != NULL);
    CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_permissions_and_read_only(void) {
    char path[512], link[512], shared[512];
    path_for(path, sizeof path, "perm");
    path_for(link, sizeof link, "perm-link");
    path_for(shared, sizeof shared, "perm-shared");
    shmq_queue *q = create_small(path);
    OK(shmq_send(q, "one", 3, 0, 0, 0));
    shmq_message held;
    OK(shmq_claim(q, &held, 0));
    OK(shmq_send(q, "two", 3, 0, 0, 0));

    /* Open options: defaults, and every bad value refused. */
    shmq_open_options oo;
    memset(&oo, 0x55, sizeof oo);
    shmq_open_options_init(&oo);
    CHECK(oo.size == sizeof oo && oo.access == SHMQ_ACCESS_PARTICIPANT && oo.flags == 0);
    shmq_open_options_init(NULL); /* ignored */
    shmq_queue *h = NULL;
    shmq_open_options bad = oo;
    bad.access = 9;
    EXPECT(shmq_open_ex(path, &bad, &h), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("access"));
    bad = oo;
    bad.flags = 0x40;
    EXPECT(shmq_open_ex(path, &bad, &h), SHMQ_INVALID_ARGUMENT);
    bad = oo;
    bad.size = 2;
    EXPECT(shmq_open_ex(path, &bad, &h), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_open_ex(path, &oo, NULL), SHMQ_INVALID_ARGUMENT);
    CHECK(h == NULL);
    OK(shmq_open_ex(path, NULL, &h)); /* NULL: as shmq_open */
    shmq_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    OK(shmq_get_info(h, &info));
    CHECK(info.access == SHMQ_ACCESS_PARTICIPANT);
    OK(shmq_close(h));

    /* A read-only handle reads, refuses every change, writes nothing. */
    size_t len_before = 0, len_after = 0;
    unsigned char *before = slurp(path, &len_before);
    oo.access = SHMQ_ACCESS_READ_ONLY;
    shmq_queue *ro = NULL;
    OK(shmq_open_ex(path, &oo, &ro));
    OK(shmq_get_info(ro, &info));
    CHECK(info.access == SHMQ_ACCESS_READ_ONLY && info.capacity == 4);
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(ro, &s));
    CHECK(s.depth == 1 && s.in_flight == 1 && s.sent == 2);
    OK(shmq_verify(ro));
    OK(shmq_flush(ro));
    EXPECT(shmq_send(ro, "x", 1, 0, 0, 0), SHMQ_PERMISSION);
    CHECK(last_error_has(path) && last_error_has("read-only"));
    shmq_message m;
    EXPECT(shmq_claim(ro, &m, 0), SHMQ_PERMISSION);
    EXPECT(shmq_claim(ro, &m, -1), SHMQ_PERMISSION); /* refused, never waits */
    EXPECT(shmq_ack(ro, &held), SHMQ_PERMISSION);
    EXPECT(shmq_nack(ro, &held, 0), SHMQ_PERMISSION);
    EXPECT(shmq_recover(ro), SHMQ_PERMISSION);
    size_t purged = 7;
    EXPECT(shmq_dlq_purge(ro, SHMQ_DLQ_ALL, &purged), SHMQ_PERMISSION);
    CHECK(purged == 7);
    OK(shmq_close(ro));
    unsigned char *after = slurp(path, &len_after);
    CHECK(len_before == len_after && memcmp(before, after, len_before) == 0);
    free(before);
    free(after);
    /* An inspection handle of a writable file is mapped read-write. */
    OK(shmq_inspect(path, &h));
    OK(shmq_get_info(h, &info));
    CHECK(info.access == SHMQ_ACCESS_INSPECT);
    OK(shmq_close(h));
    OK(shmq_ack(q, &held));
    OK(shmq_close(q));

    /* Files others may write: refused unless accepted. */
    shmq_open_options_init(&oo);
    CHECK(chmod(path, 0606) == 0);
    EXPECT(shmq_open(path, &h), SHMQ_PERMISSION);
    CHECK(last_error_has(path) && last_error_has("every user"));
    oo.flags = SHMQ_OPEN_GROUP_SHARED;
    EXPECT(shmq_open_ex(path, &oo, &h), SHMQ_PERMISSION);
    oo.flags = SHMQ_OPEN_TRUST_ANY_OWNER;
    OK(shmq_open_ex(path, &oo, &h));
    OK(shmq_close(h));
    CHECK(chmod(path, 0660) == 0);
    EXPECT(shmq_open(path, &h), SHMQ_PERMISSION);
    CHECK(last_error_has("group"));
    EXPECT(shmq_inspect(path, &h), SHMQ_PERMISSION);
    oo.flags = SHMQ_OPEN_GROUP_SHARED;
    OK(shmq_open_ex(path, &oo, &h));
    OK(shmq_close(h));
    CHECK(chmod(path, 0600) == 0);

    /* Not regular files. */
    h = NULL;
    CHECK(symlink(path, link) == 0);
    EXPECT(shmq_open(link, &h), SHMQ_PERMISSION);
    CHECK(last_error_has(link) && last_error_has("symbolic link"));
    oo.access = SHMQ_ACCESS_READ_ONLY;
    oo.flags = SHMQ_OPEN_TRUST_ANY_OWNER;
    EXPECT(shmq_open_ex(link, &oo, &h), SHMQ_PERMISSION);
    EXPECT(shmq_open_ex("/dev/null", &oo, &h), SHMQ_PERMISSION);
    CHECK(last_error_has("character device"));
    EXPECT(shmq_open_ex(g_dir, &oo, &h), SHMQ_PERMISSION);
    CHECK(last_error_has("directory"));
    CHECK(h == NULL);
    unlink(link);

    /* A group-shared queue: mode 0660 whatever the umask, given a group. */
    shmq_options o = small_opts();
    o.mode = SHMQ_MODE_GROUP_SHARED;
    o.flags |= SHMQ_FLAG_SET_GROUP;
    o.group = (uint32_t)getegid();
    mode_t old_umask = umask(077);
    OK(shmq_create(shared, &o, &q));
    umask(old_umask);
    struct stat sb;
    CHECK(stat(shared, &sb) == 0 && (sb.st_mode & 07777) == 0660 && sb.st_gid == getegid());
    OK(shmq_close(q));
    shmq_open_options_init(&oo);
    oo.flags = SHMQ_OPEN_GROUP_SHARED;
    OK(shmq_open_ex(shared, &oo, &q));
    OK(shmq_close(q));
    unlink(shared);
    unlink(path);
}

typedef void (*test_fn)(void);

static void run(const char *name, test_fn f) {
    printf("test %s ... ", name);
    fflush(stdout);
    f();
    printf("ok\n");
    g_passed++;
}

static void test_peek(void) {
    char path[512];
    path_for(path, sizeof path, "peek");
    shmq_options o = small_opts();
    o.max_deliveries = 2;
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    unsigned char buf[4 * 64];
    shmq_peeked ps[4];
    size_t n = 99;
    ps[0].size = sizeof ps[0];
    OK(shmq_peek(q, buf, sizeof buf, ps, 4, &n));
    CHECK(n == 0); /* nothing waits: not an error */
    OK(shmq_send(q, "held", 4, 0, 0, 0));
    OK(shmq_send(q, "nacked", 6, 0, 0, 0));
    OK(shmq_send(q, "ready", 5, 0, 0, 0));
    shmq_message held, nacked;
    OK(shmq_claim(q, &held, 0));
    OK(shmq_claim(q, &nacked, 0));
    OK(shmq_nack(q, &nacked, 0));
    /* Twice, with max deliveries 2: nothing is counted or dead-lettered. */
    for (int round = 0; round < 2; round++) {
        memset(ps, 0, sizeof ps);
        ps[0].size = sizeof ps[0];
        OK(shmq_peek(q, buf, sizeof buf, ps, 4, &n));
        CHECK(n == 2);
        CHECK(ps[0].size == sizeof ps[0] && ps[1].size == sizeof ps[1]);
        CHECK(ps[0].state == SHMQ_PEEK_PENDING && ps[0].deliveries == 1);
        CHECK(ps[0].len == 6 && memcmp(ps[0].data, "nacked", 6) == 0);
        CHECK(ps[1].state == SHMQ_PEEK_READY && ps[1].deliveries == 0);
        CHECK(ps[1].data == ps[0].data + 6 && memcmp(ps[1].data, "ready", 5) == 0);
        CHECK(ps[0].position < ps[1].position && ps[1].not_before_ns == 0);
    }
    /* Only what fits whole: one message in 64..127 bytes. */
    OK(shmq_peek(q, buf, 100, ps, 4, &n));
    CHECK(n == 1 && memcmp(ps[0].data, "nacked", 6) == 0);
    EXPECT(shmq_peek(q, buf, 63, ps, 4, &n), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_peek(q, buf, sizeof buf, ps, 0, &n), SHMQ_INVALID_ARGUMENT);
    EXPECT(shmq_peek(q, buf, sizeof buf, NULL, 4, &n), SHMQ_INVALID_ARGUMENT);
    ps[0].size = 8;
    EXPECT(shmq_peek(q, buf, sizeof buf, ps, 4, &n), SHMQ_INVALID_ARGUMENT);
    CHECK(last_error_has("size"));
    /* Through a read-only handle. */
    shmq_open_options oo;
    shmq_open_options_init(&oo);
    oo.access = SHMQ_ACCESS_READ_ONLY;
    shmq_queue *ro = NULL;
    OK(shmq_open_ex(path, &oo, &ro));
    ps[0].size = sizeof ps[0];
    OK(shmq_peek(ro, buf, sizeof buf, ps, 4, &n));
    CHECK(n == 2 && ps[0].state == SHMQ_PEEK_PENDING);
    OK(shmq_close(ro));
    shmq_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    OK(shmq_get_stats(q, &s));
    CHECK(s.depth == 2 && s.in_flight == 1 && s.dead_letters == 0);
    OK(shmq_ack(q, &held));
    OK(shmq_close(q));
    unlink(path);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [--keys]\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    if (argc > 2 && strcmp(argv[2], "--keys") == 0) {
        run("keys", test_keys);
    } else {
        run("keys", test_keys);
        run("abi_and_names", test_abi_and_names);
        run("lifecycle_statuses", test_lifecycle_statuses);
        run("send_claim_statuses", test_send_claim_statuses);
        run("misuse", test_misuse);
        run("foreign_messages", test_foreign_messages);
        run("permissions_and_read_only", test_permissions_and_read_only);
        run("two_threads_on_one_handle", test_two_threads_on_one_handle);
        run("outcomes_and_dead_letters", test_outcomes_and_dead_letters);
        run("reserve_commit", test_reserve_commit);
        run("batches_and_copies", test_batches_and_copies);
        run("peek", test_peek);
        run("fork_inherited_handle", test_fork_inherited_handle);
        run("killed_consumer_and_producer", test_killed_consumer_and_producer);
        run("competing_consumers_one_killed", test_competing_consumers_one_killed);
    }
    printf("C: %d passed, 0 failed\n", g_passed);
    return 0;
}
