"""The single-message loop of the Python binding, in one process: send one
64-byte payload, claim it, read its data, ack it; N times. Prints messages
per second for the default timeouts (None: wait forever, which releases the
GIL around a send that may wait) and for try-once calls (timeout=0), by the
wall clock and by the CPU time of the thread (the steadier figure on a
machine shared with other work: the loop never sleeps, so the two agree on
an idle machine).

    python bindings/python/bench/single.py [N] [RUNS]

Run it with the package installed (``pip install ./bindings/python``) from a
directory where the source tree's ``shmq`` is not importable. Each figure
is the best of RUNS runs (3 by default) of N messages (1,000,000).
"""

import os
import sys
import tempfile
import time

import shmq

PAYLOAD = 64


def loop_default(q, n, payload):
    send, claim = q.send, q.claim
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        send(payload)
        m = claim()
        m.data
        m.ack()
    return time.perf_counter() - t0, time.thread_time() - c0


def loop_try_once(q, n, payload):
    send, claim = q.send, q.claim
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        send(payload, timeout=0)
        m = claim(timeout=0)
        m.data
        m.ack()
    return time.perf_counter() - t0, time.thread_time() - c0


def loop_with(q, n, payload):
    """The idiomatic consumer: the message as a context manager (acked at the
    end of the block)."""
    send, claim = q.send, q.claim
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        send(payload)
        with claim() as m:
            m.data
    return time.perf_counter() - t0, time.thread_time() - c0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    path = os.path.join(base, f"shmq-py-bench-{os.getpid()}")
    payload = b"x" * PAYLOAD
    print(f"shmq {getattr(shmq, '__version__', '?')} ({shmq.__file__}), Python {sys.version.split()[0]}, "
          f"{n} messages of {PAYLOAD} B, best of {runs}")
    try:
        with shmq.Queue.create(path, capacity=1024, max_message_size=256) as q:
            for name, loop in [("send/claim/data/ack, timeout=None", loop_default),
                               ("send/claim/data/ack, timeout=0", loop_try_once),
                               ("send; with claim() as m: m.data", loop_with)]:
                loop(q, min(n, 100_000), payload)  # warm up
                times = [loop(q, n, payload) for _ in range(runs)]
                wall = min(t[0] for t in times)
                cpu = min(t[1] for t in times)
                print(f"  {name:34s} wall {n / wall / 1e6:5.2f} M msgs/s ({wall / n * 1e9:5.0f} ns)"
                      f"   cpu {n / cpu / 1e6:5.2f} M msgs/s ({cpu / n * 1e9:5.0f} ns)")
    finally:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
