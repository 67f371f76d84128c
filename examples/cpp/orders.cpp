// The C++ wrapper: a kitchen that takes orders, with RAII and scope-exit
// outcomes. Creates a fresh queue at PATH, sends a few orders, and cooks
// them; a dish that burns (an exception-free error path) is nacked at scope
// exit and cooked again.
//
//   orders PATH
#include <cstdio>
#include <string>
#include <unistd.h>

#include <shmq.hpp>

using namespace std::chrono_literals;

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PATH\n", argv[0]);
        return 2;
    }
    std::string path = argv[1];
    unlink(path.c_str());
    auto q = shmq::Queue::create(path, shmq::Options().capacity(16).max_message_size(64));
    if (!q) {
        std::fprintf(stderr, "orders: %s\n", q.error().message.c_str());
        return 1;
    }
    for (const char *dish : {"soup", "steak", "pie"})
        if (q->send(dish) != shmq::Status::Ok)
            return 1;

    bool burnt_once = false;
    for (;;) {
        // Nacked at scope exit unless acked: a failure path needs no cleanup.
        auto m = q->claim(100ms, shmq::OnExit::Nack);
        if (m.status() == shmq::Status::Timeout)
            break;
        if (!m) {
            std::fprintf(stderr, "orders: %s\n", m.error().message.c_str());
            return 1;
        }
        std::string dish(m->data());
        if (dish == "steak" && !burnt_once) {
            burnt_once = true;
            std::printf("burnt the %s (delivery %u), it goes back\n", dish.c_str(), m->deliveries());
            continue; // nacked here
        }
        std::printf("cooked %s (delivery %u)\n", dish.c_str(), m->deliveries());
        m->ack();
    }
    auto s = q->stats();
    if (s)
        std::printf("sent %llu, acked %llu, nacked %llu, p50 time in queue %llu ns\n",
                    (unsigned long long)s->sent, (unsigned long long)s->acked,
                    (unsigned long long)s->nacked, (unsigned long long)s->time_in_queue.p50);
    q->close();
    unlink(path.c_str());
    return 0;
}
