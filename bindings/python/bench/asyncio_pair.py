"""A producer and a consumer of 64-byte messages through a 1024-slot queue,
in one process: as two asyncio coroutines on one event loop
(``send_async``/``claim_async``, the consumer woken by the engine's waker
thread when it finds the queue empty, the producer when it finds it full),
and as two threads with the blocking calls. Prints messages per second for
each, the best of RUNS runs of N messages.

    python bindings/python/bench/asyncio_pair.py [N] [RUNS]

Run it with the package installed (``pip install ./bindings/python``) from a
directory where the source tree's ``shmq`` is not importable.
"""

import asyncio
import os
import sys
import tempfile
import threading
import time

import shmq

PAYLOAD = b"x" * 64


def fresh(path: str) -> shmq.Queue:
    if os.path.exists(path):
        os.unlink(path)
    return shmq.Queue.create(path, capacity=1024, max_message_size=64)


def run_asyncio(path: str, n: int) -> float:
    with fresh(path) as q, shmq.Queue.open(path) as p:

        async def producer() -> None:
            for _ in range(n):
                await p.send_async(PAYLOAD)

        async def consumer() -> None:
            for _ in range(n):
                m = await q.claim_async()
                m.ack()

        async def main() -> None:
            await asyncio.gather(producer(), consumer())

        t0 = time.perf_counter()
        asyncio.run(main())
        return n / (time.perf_counter() - t0)


def run_threads(path: str, n: int) -> float:
    with fresh(path) as q:

        def producer() -> None:
            with shmq.Queue.open(path) as p:
                for _ in range(n):
                    p.send(PAYLOAD)

        t0 = time.perf_counter()
        t = threading.Thread(target=producer)
        t.start()
        for _ in range(n):
            q.claim().ack()
        t.join()
        return n / (time.perf_counter() - t0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    path = os.path.join(tempfile.gettempdir(), f"shmq-asyncio-pair-{os.getpid()}")
    if os.path.isdir("/dev/shm"):
        path = f"/dev/shm/shmq-asyncio-pair-{os.getpid()}"
    try:
        for name, f in (("asyncio, two coroutines", run_asyncio),
                        ("blocking, two threads", run_threads)):
            best = max(f(path, n) for _ in range(runs))
            print(f"{name:<26} {best / 1e3:8.0f} k msgs/s")
    finally:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
