// Tests of bindings/cpp/shmq.hpp: RAII handles, scope-exit outcomes, results
// without exceptions (and with SHMQ_CPP_EXCEPTIONS), string_view/span
// payloads. Compiled by bindings/c/tests/c_abi.rs with g++ -Werror as C++17 and C++20.
//
// Usage: test_cpp_wrapper DIR
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "shmq.hpp"

using namespace std::chrono_literals;

static std::string g_dir;
static int g_passed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__, \
                         __LINE__, #cond, shmq_last_error());                          \
            std::exit(1);                                                              \
        }                                                                              \
    } while (0)

static std::string path_for(const char *name) {
    std::string p = g_dir + "/cpp-" + name + "-" + std::to_string(getpid());
    unlink(p.c_str());
    return p;
}

static void test_raii_and_results() {
    std::string p = path_for("raii");
    {
        auto q = shmq::Queue::create(p, shmq::Options().capacity(4).max_message_size(32));
        CHECK(q.ok() && q.status() == shmq::Status::Ok);
        auto again = shmq::Queue::create(p);
        CHECK(!again.ok() && again.status() == shmq::Status::Exists);
        CHECK(again.error().message.find(p) != std::string::npos);
        CHECK(std::string(shmq::status_name(again.status())) == "SHMQ_EXISTS");

        CHECK(q->send("hello") == shmq::Status::Ok);
        auto m = q->claim(shmq::try_once);
        CHECK(m.ok());
        CHECK(m->data() == "hello" && m->deliveries() == 1);
        auto c = m->copy();
        CHECK(c.ok() && *c == "hello");
        CHECK(m->ack() == shmq::Status::Ok);
        CHECK(m->ack() == shmq::Status::LeaseLost);
        auto e = q->claim(shmq::try_once);
        CHECK(e.status() == shmq::Status::Empty);
        CHECK(q->claim(5ms).status() == shmq::Status::Timeout);

        // Moving a queue keeps one owner.
        shmq::Queue moved = std::move(*q);
        CHECK(moved.handle() != nullptr && q->handle() == nullptr);
        CHECK(moved.send("x") == shmq::Status::Ok);
        CHECK(q->send("x") == shmq::Status::InvalidArgument); // moved-from: NULL handle
    } // closed here
    auto q = shmq::Queue::open(p);
    CHECK(q.ok());
    auto m = q->claim(shmq::try_once);
    CHECK(m.ok() && m->data() == "x");
    CHECK(m->ack() == shmq::Status::Ok);
    CHECK(q->close() == shmq::Status::Ok);
    CHECK(q->close() == shmq::Status::Ok); // idempotent in the wrapper
    unlink(p.c_str());
}

static void test_scope_exit_outcomes() {
    std::string p = path_for("scope");
    auto q = shmq::Queue::create(p, shmq::Options().capacity(4).max_message_size(32));
    CHECK(q.ok());
    CHECK(q->send("a") == shmq::Status::Ok);
    { auto m = q->claim(shmq::try_once); CHECK(m.ok()); } // default: nack
    {
        auto m = q->claim(shmq::try_once);
        CHECK(m.ok() && m->deliveries() == 2);
        m->on_exit(shmq::OnExit::Ack);
    }
    CHECK(q->claim(shmq::try_once).status() == shmq::Status::Empty);
    CHECK(q->send("b") == shmq::Status::Ok);
    { auto m = q->claim(shmq::try_once, shmq::OnExit::Keep); CHECK(m.ok()); }
    CHECK(q->claim(shmq::try_once).status() == shmq::Status::Empty); // still held
    auto s = q->stats();
    CHECK(s.ok() && s->in_flight == 1 && s->acked == 1 && s->nacked == 1);
    unlink(p.c_str());
}

static void test_batches_reserve_dlq() {
    std::string p = path_for("batch");
    auto q = shmq::Queue::create(p, shmq::Options().capacity(8).max_message_size(16).max_deliveries(1));
    CHECK(q.ok());
    auto n = q->send_batch({"one", "two", "three"});
    CHECK(n.ok() && *n == 3);
    auto ms = q->claim_batch(8, shmq::try_once);
    CHECK(ms.ok() && ms->size() == 3 && (*ms)[2].data() == "three");
    // Another queue used alike gives equal tokens: it refuses these.
    std::string p2 = path_for("batch-other");
    auto other = shmq::Queue::create(p2, shmq::Options().capacity(8).max_message_size(16));
    CHECK(other.ok() && other->send("mine") == shmq::Status::Ok);
    auto mine = other->claim(shmq::try_once, shmq::OnExit::Ack);
    CHECK(mine.ok() && mine->handle_id() != (*ms)[0].handle_id());
    CHECK(mine->raw().size == sizeof(shmq_message));
    auto refused = other->ack_batch(*ms);
    CHECK(refused.status() == shmq::Status::InvalidArgument);
    CHECK(refused.error().message.find("another handle") != std::string::npos);
    CHECK(!(*ms)[0].settled());
    auto acked = q->ack_batch(*ms);
    CHECK(acked.ok() && *acked == 3);
    CHECK(mine->ack() == shmq::Status::Ok);
    unlink(p2.c_str());

    {
        auto r = q->reserve(8);
        CHECK(r.ok() && r->capacity() == 8);
        std::memcpy(r->data(), "in place", 8);
        CHECK(r->commit(8) == shmq::Status::Ok);
    }
    { auto r = q->reserve(4); CHECK(r.ok()); } // aborted at scope exit
    auto m = q->claim(shmq::try_once);
    CHECK(m.ok() && m->data() == "in place");
    CHECK(m->reject("no thanks") == shmq::Status::Ok);
    CHECK(q->claim(shmq::try_once).status() == shmq::Status::Empty);

    auto dl = q->dead_letters();
    CHECK(dl.ok() && dl->size() == 1 && std::string((*dl)[0].reason) == "no thanks");
    auto payload = q->dead_letter_payload((*dl)[0].id);
    CHECK(payload.ok() && *payload == "in place");
    auto back = q->redrive();
    CHECK(back.ok() && *back == 1);
    auto again = q->claim(shmq::try_once, shmq::OnExit::Ack);
    CHECK(again.ok() && again->data() == "in place");

    shmq::SendOptions so;
    so.delay = 30ms;
    auto sent = q->send("later", so);
    CHECK(sent.ok());
    CHECK(q->verify() == shmq::Status::Ok);
    // A claim in flight stays with its consumer; the waiting ones go.
    CHECK(q->send("waiting") == shmq::Status::Ok);
    auto held = q->claim(shmq::try_once);
    CHECK(held.ok() && held->data() == "waiting");
    auto purged = q->purge();
    CHECK(purged.ok() && *purged == 1); // the delayed one
    CHECK(held->ack() == shmq::Status::Ok);
    CHECK(q->claim(shmq::try_once).status() == shmq::Status::Empty);
    CHECK(q->send("poison") == shmq::Status::Ok);
    auto bad = q->claim(shmq::try_once);
    CHECK(bad.ok() && bad->reject("bad") == shmq::Status::Ok);
    auto deleted = q->purge_dead_letters();
    CHECK(deleted.ok() && *deleted == 1);
    CHECK(q->dead_letters().ok() && q->dead_letters()->empty());
    auto info = q->info();
    CHECK(info.ok() && info->capacity == 8 && info->max_message_size == 16);
    unlink(p.c_str());
}

#if __cplusplus >= 202002L
static void test_span() {
    std::string p = path_for("span");
    auto q = shmq::Queue::create(p);
    CHECK(q.ok());
    const std::byte raw[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
    CHECK(q->send(std::span<const std::byte>(raw, 3)) == shmq::Status::Ok);
    auto m = q->claim(shmq::try_once, shmq::OnExit::Ack);
    CHECK(m.ok() && m->bytes().size() == 3 && m->bytes()[2] == std::byte{3});
    unlink(p.c_str());
}
#endif

#ifdef SHMQ_CPP_EXCEPTIONS
static void test_exceptions() {
    std::string p = path_for("exc");
    bool thrown = false;
    try {
        auto q = shmq::Queue::open(p).value();
    } catch (const shmq::Exception &e) {
        thrown = e.status() == shmq::Status::NotFound &&
                 std::string(e.what()).find(p) != std::string::npos;
    }
    CHECK(thrown);
    auto q = shmq::Queue::create(p).value();
    thrown = false;
    try {
        shmq::check(q.send(std::string(1000, 'x')));
    } catch (const shmq::Exception &e) {
        thrown = e.status() == shmq::Status::TooLarge;
    }
    CHECK(thrown);
    unlink(p.c_str());
}
#endif

static void test_read_only_and_group_shared() {
    std::string p = path_for("ro");
    {
        auto q = shmq::Queue::create(p, shmq::Options().capacity(4).group_shared(getegid()));
        CHECK(q.ok());
        CHECK(q->send("kept") == shmq::Status::Ok);
    }
    struct stat sb;
    CHECK(stat(p.c_str(), &sb) == 0 && (sb.st_mode & 0777) == 0660);
    CHECK(shmq::Queue::open(p).status() == shmq::Status::Permission);
    auto ro = shmq::Queue::open(p, shmq::OpenOptions().read_only().group_shared());
    CHECK(ro.ok());
    CHECK(ro->send("no") == shmq::Status::Permission);
    CHECK(ro->claim(shmq::try_once).status() == shmq::Status::Permission);
    auto q = shmq::Queue::open(p, shmq::OpenOptions().group_shared());
    CHECK(q.ok());
    auto m = q->claim(shmq::try_once);
    CHECK(m.ok() && m->data() == "kept");
    CHECK(m->ack() == shmq::Status::Ok);
    unlink(p.c_str());
}

static void run(const char *name, void (*f)()) {
    std::printf("test %s ... ", name);
    std::fflush(stdout);
    f();
    std::printf("ok\n");
    g_passed++;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    run("raii_and_results", test_raii_and_results);
    run("scope_exit_outcomes", test_scope_exit_outcomes);
    run("batches_reserve_dlq", test_batches_reserve_dlq);
#if __cplusplus >= 202002L
    run("span", test_span);
#endif
    run("read_only_and_group_shared", test_read_only_and_group_shared);
#ifdef SHMQ_CPP_EXCEPTIONS
    run("exceptions", test_exceptions);
#endif
    std::printf("C++: %d passed, 0 failed\n", g_passed);
    return 0;
}
