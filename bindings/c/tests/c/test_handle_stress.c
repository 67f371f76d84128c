/*
 * Stress tests of a handle used from several threads (the ownership of a
 * handle: the thread that uses it owns it, another thread takes it over
 * between calls, and a call made while another thread is inside one gets
 * SHMQ_CLOSED "in use by another thread"). Compiled as C11 by
 * bindings/c/tests/c_abi.rs and run with and without membarrier
 * (SHMQ_NO_MEMBARRIER=1: every call takes the CAS), against the release
 * library and, in the debug suite, the debug one, which also panics
 * (SHMQ_INTERNAL) when two calls are inside one handle at once.
 *
 *   hand_off      threads pass one handle between them between calls:
 *                 every call succeeds, every message comes back once, in
 *                 order
 *   race          two threads call on one handle at once: each call is OK
 *                 or "in use"; no message is lost or doubled
 *   close_race    shmq_close from one thread while another calls: calls
 *                 are OK, "in use" or "use after close"; nothing lost
 *   fork          fork() while a thread is calling: the child refuses the
 *                 inherited handle and uses its own; nothing lost
 *
 * Usage: test_handle_stress DIR
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

#define OK(call)                                                                 \
    do {                                                                         \
        shmq_status st_ = (call);                                                \
        if (st_ != SHMQ_OK) {                                                    \
            fprintf(stderr, "%s:%d: %s returned %s\n  last error: %s\n",         \
                    __FILE__, __LINE__, #call, shmq_status_name(st_),            \
                    shmq_last_error());                                          \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

enum { PAYLOAD = 16 };

static void path_for(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s-%d", g_dir, name, (int)getpid());
    unlink(out);
}

static shmq_queue *create(const char *path, uint64_t capacity) {
    shmq_options o;
    shmq_options_init(&o);
    o.capacity = capacity;
    o.max_message_size = PAYLOAD;
    shmq_queue *q = NULL;
    OK(shmq_create(path, &o, &q));
    return q;
}

static int has(const char *what) { return strstr(shmq_last_error(), what) != NULL; }

/* A refused call: SHMQ_CLOSED because another thread is inside a call. */
static int in_use(shmq_status st) { return st == SHMQ_CLOSED && has("in use by another thread"); }

static void put_seq(uint8_t *p, uint64_t s) { memcpy(p, &s, 8); }
static uint64_t get_seq(const uint8_t *p) {
    uint64_t s;
    memcpy(&s, p, 8);
    return s;
}

/* Marks `seq` seen in `seen` (n entries); fails if it was seen already. */
static void see_once(uint8_t *seen, uint64_t n, uint64_t seq) {
    CHECK(seq < n);
    CHECK(seen[seq] == 0); /* never delivered twice */
    seen[seq] = 1;
}

/* Claims (copying) and acks everything left in `q`, marking it seen. */
static uint64_t drain(shmq_queue *q, uint8_t *seen, uint64_t n) {
    uint64_t got = 0;
    for (;;) {
        uint8_t buf[PAYLOAD];
        shmq_message m;
        shmq_status st = shmq_claim_copy(q, &m, buf, sizeof buf, 0);
        if (st == SHMQ_EMPTY)
            return got;
        OK(st);
        see_once(seen, n, get_seq(buf));
        OK(shmq_ack(q, &m));
        got++;
    }
}

/* ---- hand_off -------------------------------------------------------- */

enum { HAND_THREADS = 4 };

struct hand_off {
    shmq_queue *q;
    pthread_mutex_t lock;
    pthread_cond_t turn_changed;
    int turn;       /* whose turn it is */
    int turns_left; /* turns still to take, in all */
    uint64_t next;  /* the next sequence number to send */
};

struct hand_arg {
    struct hand_off *s;
    int me;
};

static void *hand_thread(void *p) {
    struct hand_arg *a = (struct hand_arg *)p;
    struct hand_off *s = a->s;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (s->turn != a->me && s->turns_left > 0)
            pthread_cond_wait(&s->turn_changed, &s->lock);
        if (s->turns_left <= 0) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        pthread_mutex_unlock(&s->lock);
        /* Our turn: a few calls, none overlapping another thread's. The
         * mutex hands the handle over between calls. */
        for (int k = 0; k < 3; k++) {
            uint8_t buf[PAYLOAD] = {0}, out[PAYLOAD];
            uint64_t seq = s->next++;
            put_seq(buf, seq);
            OK(shmq_send(s->q, buf, sizeof buf, 0, 0, 0));
            shmq_message m;
            OK(shmq_claim_copy(s->q, &m, out, sizeof out, 0));
            CHECK(get_seq(out) == seq); /* in order, nothing lost */
            OK(shmq_ack(s->q, &m));
        }
        pthread_mutex_lock(&s->lock);
        s->turns_left--;
        s->turn = (s->turn + 1) % HAND_THREADS;
        pthread_cond_broadcast(&s->turn_changed);
        pthread_mutex_unlock(&s->lock);
    }
}

static void hand_off_round(shmq_queue *q, int turns) {
    struct hand_off s;
    s.q = q;
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.turn_changed, NULL);
    s.turn = 0;
    s.turns_left = turns;
    s.next = 0;
    pthread_t t[HAND_THREADS];
    struct hand_arg a[HAND_THREADS];
    for (int i = 0; i < HAND_THREADS; i++) {
        a[i].s = &s;
        a[i].me = i;
        CHECK(pthread_create(&t[i], NULL, hand_thread, &a[i]) == 0);
    }
    for (int i = 0; i < HAND_THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(s.next == (uint64_t)turns * 3);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.turn_changed);
}

static void test_hand_off(void) {
    char path[512];
    path_for(path, sizeof path, "hand-off");
    shmq_queue *q = create(path, 64);
    /* Few hand-overs (the handle keeps changing owner), then many (past
     * the point where the handle stops having an owner), each on a fresh
     * handle. */
    hand_off_round(q, 40);
    OK(shmq_close(q));
    OK(shmq_open(path, &q));
    hand_off_round(q, 2000);
    /* The main thread takes it over at the end. */
    OK(shmq_send(q, "x", 1, 0, 0, 0));
    shmq_message m;
    OK(shmq_claim(q, &m, 0));
    OK(shmq_ack(q, &m));
    OK(shmq_close(q));
    unlink(path);
}

/* ---- race ------------------------------------------------------------ */

enum { RACE_ROUNDS = 150, RACE_ITERS = 300, RACE_SEQS = 2 * RACE_ROUNDS * RACE_ITERS };

struct race_arg {
    shmq_queue *q;
    uint64_t base;             /* this thread's sequence numbers start here */
    uint64_t sent;             /* sends that returned OK */
    uint64_t refused;          /* calls refused as in use */
    uint64_t claimed[RACE_ITERS];
    uint64_t n_claimed;
    volatile int *go;
};

static void *race_thread(void *p) {
    struct race_arg *a = (struct race_arg *)p;
    while (!__atomic_load_n(a->go, __ATOMIC_ACQUIRE)) {
    }
    for (uint64_t i = 0; i < RACE_ITERS; i++) {
        uint8_t buf[PAYLOAD] = {0}, out[PAYLOAD];
        put_seq(buf, a->base + a->sent);
        shmq_status st = shmq_send(a->q, buf, sizeof buf, 0, 0, 0);
        if (st == SHMQ_OK)
            a->sent++;
        else if (in_use(st))
            a->refused++;
        else
            OK(st);
        shmq_message m;
        st = shmq_claim_copy(a->q, &m, out, sizeof out, 0);
        if (st == SHMQ_OK) {
            a->claimed[a->n_claimed++] = get_seq(out);
            /* The claim is this handle's: ack it, through refusals. */
            while ((st = shmq_ack(a->q, &m)) != SHMQ_OK) {
                CHECK(in_use(st));
                a->refused++;
            }
        } else if (in_use(st)) {
            a->refused++;
        } else {
            CHECK(st == SHMQ_EMPTY);
        }
    }
    return NULL;
}

static void test_race(void) {
    char path[512];
    path_for(path, sizeof path, "race");
    shmq_queue *own = create(path, 1024);
    uint8_t *seen = (uint8_t *)calloc(RACE_SEQS, 1);
    CHECK(seen != NULL);
    static struct race_arg a[2];
    uint64_t refused = 0, sent = 0, got = 0;
    for (int r = 0; r < RACE_ROUNDS; r++) {
        shmq_queue *q = NULL;
        OK(shmq_open(path, &q));
        /* The first call makes an owner: this thread, or (odd rounds) the
         * first racing thread's own first call. */
        if (r % 2 == 0) {
            shmq_stats s;
            memset(&s, 0, sizeof s);
            s.size = sizeof s;
            OK(shmq_get_stats(q, &s));
        }
        volatile int go = 0;
        pthread_t t[2];
        for (int i = 0; i < 2; i++) {
            memset(&a[i], 0, sizeof a[i]);
            a[i].q = q;
            a[i].base = ((uint64_t)r * 2 + (uint64_t)i) * RACE_ITERS;
            a[i].go = &go;
            CHECK(pthread_create(&t[i], NULL, race_thread, &a[i]) == 0);
        }
        __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
        for (int i = 0; i < 2; i++) {
            CHECK(pthread_join(t[i], NULL) == 0);
            refused += a[i].refused;
            sent += a[i].sent;
            for (uint64_t k = 0; k < a[i].n_claimed; k++)
                see_once(seen, RACE_SEQS, a[i].claimed[k]);
            got += a[i].n_claimed;
        }
        OK(shmq_close(q));
    }
    got += drain(own, seen, RACE_SEQS);
    CHECK(got == sent); /* nothing lost, nothing doubled (see_once) */
    printf("  race: %llu sent, %llu calls refused as in use\n", (unsigned long long)sent,
           (unsigned long long)refused);
    OK(shmq_close(own));
    free(seen);
    unlink(path);
}

/* ---- close_race ------------------------------------------------------ */

enum { CLOSE_ROUNDS = 100, CLOSE_SEQS = CLOSE_ROUNDS * 100000 };

struct close_arg {
    shmq_queue *q;
    uint64_t base;
    uint64_t sent;
    int first; /* make the first call (and own the handle) before `go` */
    volatile int *go;
};

static void *close_thread(void *p) {
    struct close_arg *a = (struct close_arg *)p;
    uint8_t buf[PAYLOAD] = {0};
    if (a->first) {
        put_seq(buf, a->base + a->sent);
        OK(shmq_send(a->q, buf, sizeof buf, 0, 0, 0));
        a->sent++;
    }
    __atomic_store_n(a->go, 1, __ATOMIC_RELEASE);
    for (;;) {
        CHECK(a->sent < 100000);
        put_seq(buf, a->base + a->sent);
        shmq_status st = shmq_send(a->q, buf, sizeof buf, 0, 0, 0);
        if (st == SHMQ_OK)
            a->sent++;
        else if (st == SHMQ_CLOSED && has("use after close"))
            return NULL;
        else if (st == SHMQ_FULL)
            continue;
        else
            CHECK(in_use(st));
    }
}

static void test_close_race(void) {
    char path[512];
    path_for(path, sizeof path, "close-race");
    shmq_queue *own = create(path, 1u << 16);
    uint8_t *seen = (uint8_t *)calloc(CLOSE_SEQS, 1);
    CHECK(seen != NULL);
    uint64_t sent = 0, got = 0, refused_closes = 0;
    for (int r = 0; r < CLOSE_ROUNDS; r++) {
        shmq_queue *q = NULL;
        OK(shmq_open(path, &q));
        struct close_arg a;
        volatile int go = 0;
        a.q = q;
        a.base = (uint64_t)r * 100000;
        a.sent = 0;
        a.first = r % 2;
        a.go = &go;
        if (!a.first) {
            /* This thread owns the handle; the other one revokes it. */
            uint8_t buf[PAYLOAD] = {0};
            put_seq(buf, a.base);
            OK(shmq_send(q, buf, sizeof buf, 0, 0, 0));
            a.base++;
            sent++;
        }
        pthread_t t;
        CHECK(pthread_create(&t, NULL, close_thread, &a) == 0);
        while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) {
        }
        for (volatile int spin = 0; spin < (r % 7) * 2000; spin++) {
        }
        shmq_status st;
        while ((st = shmq_close(q)) != SHMQ_OK) {
            CHECK(in_use(st));
            refused_closes++;
        }
        CHECK(pthread_join(t, NULL) == 0);
        sent += a.sent;
        /* Closed: every call says so, from any thread. */
        CHECK(shmq_send(q, "x", 1, 0, 0, 0) == SHMQ_CLOSED && has("use after close"));
        CHECK(shmq_close(q) == SHMQ_CLOSED);
        got += drain(own, seen, CLOSE_SEQS);
    }
    CHECK(got == sent);
    printf("  close_race: %llu sent, %llu closes refused as in use\n",
           (unsigned long long)sent, (unsigned long long)refused_closes);
    OK(shmq_close(own));
    free(seen);
    unlink(path);
}

/* ---- fork ------------------------------------------------------------ */

enum { FORKS = 40, FORK_SEQS = 1u << 22 };

struct fork_arg {
    shmq_queue *q;
    uint64_t sent;
    volatile int stop;
};

static void *fork_sender(void *p) {
    struct fork_arg *a = (struct fork_arg *)p;
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
        uint8_t buf[PAYLOAD] = {0};
        if (a->sent == FORK_SEQS / 2) {
            /* Out of sequence numbers: go on calling, without sending. */
            shmq_stats s;
            memset(&s, 0, sizeof s);
            s.size = sizeof s;
            OK(shmq_get_stats(a->q, &s));
            continue;
        }
        put_seq(buf, a->sent);
        shmq_status st = shmq_send(a->q, buf, sizeof buf, 0, 0, 0);
        if (st == SHMQ_OK)
            a->sent++;
        else
            CHECK(st == SHMQ_FULL);
    }
    return NULL;
}

static void test_fork(void) {
    char path[512];
    path_for(path, sizeof path, "fork");
    shmq_queue *own = create(path, 1u << 16);
    shmq_queue *q = NULL;
    OK(shmq_open(path, &q));
    struct fork_arg a;
    a.q = q;
    a.sent = 0;
    a.stop = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fork_sender, &a) == 0);
    uint8_t *seen = (uint8_t *)calloc(FORK_SEQS, 1);
    CHECK(seen != NULL);
    uint64_t got = 0;
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* The inherited handle: refused (it may have been inside a call
             * of the sending thread at the fork), closing it only forgets
             * it (or finds it busy). */
            int code = 0;
            shmq_status st = shmq_send(q, "x", 1, 0, 0, 0);
            if (st != SHMQ_INVALID_ARGUMENT || !has("fork"))
                code = 10;
            st = shmq_close(q);
            if (code == 0 && st != SHMQ_OK && st != SHMQ_CLOSED)
                code = 11;
            shmq_queue *mine = NULL;
            uint8_t buf[PAYLOAD] = {0};
            put_seq(buf, FORK_SEQS / 2 + (uint64_t)i);
            if (code == 0 && shmq_open(path, &mine) != SHMQ_OK)
                code = 12;
            else if (code == 0 && shmq_send(mine, buf, sizeof buf, 0, 0, -1) != SHMQ_OK)
                code = 13;
            else if (code == 0 && shmq_close(mine) != SHMQ_OK)
                code = 14;
            if (code != 0)
                fprintf(stderr, "fork child: code %d: %s\n", code, shmq_last_error());
            _exit(code);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        got += drain(own, seen, FORK_SEQS);
    }
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    CHECK(pthread_join(t, NULL) == 0);
    got += drain(own, seen, FORK_SEQS);
    CHECK(got == a.sent + FORKS);
    for (int i = 0; i < FORKS; i++)
        CHECK(seen[FORK_SEQS / 2 + (uint64_t)i]);
    /* The handle still works in the parent, from this thread too. */
    OK(shmq_send(q, "y", 1, 0, 0, 0));
    OK(shmq_close(q));
    shmq_message m;
    OK(shmq_claim(own, &m, 0));
    CHECK(m.len == 1 && m.data[0] == 'y');
    OK(shmq_ack(own, &m));
    OK(shmq_close(own));
    free(seen);
    unlink(path);
}

static void run(const char *name, void (*f)(void)) {
    printf("%s\n", name);
    fflush(stdout);
    f();
    g_passed++;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    run("hand_off", test_hand_off);
    run("race", test_race);
    run("close_race", test_close_race);
    run("fork", test_fork);
    printf("C: %d passed, 0 failed\n", g_passed);
    return 0;
}
