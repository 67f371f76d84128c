"""Waiters (producer processes) place orders; cooks (consumer processes)
compete for them; one cook is killed mid-order and its order is delivered
again to another cook. Prints the live metrics at the end.

    python examples/python/restaurant.py [PATH]
"""

import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.sharedctypes import Synchronized

import shmq

ORDERS_PER_WAITER = 200


def waiter(path: str, n: int) -> None:
    with shmq.Queue.open(path) as q:
        sent = q.send_many([f"waiter {n} order {i}".encode() for i in range(ORDERS_PER_WAITER)])
        assert sent == ORDERS_PER_WAITER


def cook(path: str, n: int, done: "Synchronized[int]") -> None:
    with shmq.Queue.open(path) as q:
        for m in q.messages(timeout=1.0):
            with m:  # acked at the end of the block, nacked on an exception
                if m.deliveries > 1:
                    print(f"cook {n}: {m.data.decode()} again (delivery {m.deliveries})")
                time.sleep(0.0005)
            done.value += 1


def slow_cook(path: str) -> None:
    with shmq.Queue.open(path) as q:
        m = q.claim()
        print(f"slow cook: took {m.data.decode()} and freezes")
        time.sleep(3600)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else f"/dev/shm/shmq-restaurant-{os.getpid()}"
    if os.path.exists(path):
        os.unlink(path)
    with shmq.Queue.create(path, capacity=64, max_message_size=64, lease=60.0) as q:
        q.send(b"the first order")
        frozen = mp.Process(target=slow_cook, args=(path,))
        frozen.start()
        while q.stats()["in_flight"] == 0:
            time.sleep(0.01)
        assert frozen.pid is not None  # started
        os.kill(frozen.pid, signal.SIGKILL)  # dies holding its order
        frozen.join()
        done = mp.Value("i", 0)
        procs = [mp.Process(target=waiter, args=(path, i)) for i in range(3)]
        procs += [mp.Process(target=cook, args=(path, i, done)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        s = q.stats()
        print(f"orders sent {s['sent']}, cooked {s['acked']}, redelivered {s['redelivered']}, "
              f"dead participants {s['dead_participants']}")
        print(f"time in queue p50 {s['time_in_queue']['p50'] / 1e3:.0f} us, "
              f"p99 {s['time_in_queue']['p99'] / 1e3:.0f} us; "
              f"processing p50 {s['processing_time']['p50'] / 1e3:.0f} us")
        assert s["acked"] == s["sent"] == 3 * ORDERS_PER_WAITER + 1, s
    os.unlink(path)


if __name__ == "__main__":
    main()
