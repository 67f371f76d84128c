"""The Python side of `shmq bench`'s python scenario: a producer or a
consumer of one queue through the Python binding's batch calls
(``Queue.send_packed`` and ``Queue.take_packed``). `shmq bench` embeds this
file and runs it with the interpreter named by SHMQ_BENCH_PYTHON (python3
by default), which has the package installed (pip install ./bindings/python).

The producer stamps each 64-byte payload with its sequence number (the
first 8 bytes, little-endian) and sends BATCH of them per call; the
consumer takes up to BATCH per call (claimed, copied and acked in one
call) and checks every sequence number. Each pins itself to CPU.

The protocol is that of the bench's Rust peers: print "ready" once
attached, then "done COUNT ELAPSED_NS" (the consumer's time runs from its
first message); exit non-zero on a failed check.

    python3 py_peer.py produce|consume PATH COUNT PAYLOAD CPU BATCH
"""

import array
import os
import sys
import time

import shmq


def column(first, n):
    """The sequence numbers first .. first + n - 1 as one int whose
    little-endian bytes are n uint64 words: a batch's stamps are made (and
    checked) by one addition of big ints and one conversion, with no Python
    object per message."""
    return sum((first + k) << (64 * k) for k in range(n))


def produce(q, count, payload, batch):
    words = payload // 8
    buf = array.array("Q", [0xA5A5A5A5A5A5A5A5]) * (words * batch)
    stamps = column(0, batch)
    step = column(batch, batch) - stamps  # batch added to every word
    print("ready", flush=True)
    t0 = time.perf_counter_ns()
    i = 0
    while i < count:
        n = min(batch, count - i)
        if n < batch:
            buf = buf[: words * n]
            stamps = column(i, n)
        buf[0::words] = array.array("Q", stamps.to_bytes(8 * n, "little"))
        sent = q.send_packed(buf, payload)
        if sent != n:
            raise SystemExit(f"py_peer: sent {sent} of {n}")
        i += n
        stamps += step
    print(f"done {count} {time.perf_counter_ns() - t0}", flush=True)


def consume(q, count, payload, batch):
    words = payload // 8
    expected = {}  # n: (column(0, n), 1 in each of n words)
    print("ready", flush=True)
    got = 0
    t0 = None
    while got < count:
        try:
            data, lens = q.take_packed(batch, timeout=0)
        except shmq.Empty:
            continue
        if t0 is None:
            t0 = time.perf_counter_ns()
        n = len(lens)
        if n not in expected:
            expected[n] = (column(0, n), column(1, n) - column(0, n))
        first, ones = expected[n]
        seqs = array.array("Q", data)[0::words].tobytes()
        if len(data) != n * payload or seqs != (first + got * ones).to_bytes(8 * n, "little"):
            raise SystemExit(f"py_peer: messages {got}..{got + n} arrived out of order or torn")
        got += n
    print(f"done {got} {time.perf_counter_ns() - t0}", flush=True)


def main():
    role, path, count, payload, cpu, batch = sys.argv[1:7]
    count, payload, cpu, batch = int(count), int(payload), int(cpu), int(batch)
    if payload % 8:
        raise SystemExit("py_peer: the payload must be a multiple of 8 bytes")
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass  # no such CPU: run anywhere
    with shmq.Queue.open(path) as q:
        if role == "produce":
            produce(q, count, payload, batch)
        elif role == "consume":
            consume(q, count, payload, batch)
        else:
            raise SystemExit(f"py_peer: unknown role {role}")


if __name__ == "__main__":
    main()
