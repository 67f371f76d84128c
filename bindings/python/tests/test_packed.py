"""The packed batch calls: send_packed, take_packed and take_many (one C
call per batch, no Python object per message)."""

import array
import os
import subprocess
import sys

import pytest

import shmq


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def test_fixed_size_round_trip_in_order(path):
    with shmq.Queue.create(path, capacity=64, max_message_size=16) as q:
        data = b"".join(i.to_bytes(8, "little") * 2 for i in range(40))
        assert q.send_packed(data, 16) == 40
        got, lens = q.take_packed(32, timeout=0)
        assert lens == [16] * 32 and got == data[:32 * 16]
        rest = q.take_many(32, timeout=0)
        assert rest == [data[i * 16:(i + 1) * 16] for i in range(32, 40)]
        with pytest.raises(shmq.Empty):
            q.take_packed(8, timeout=0)
        s = q.stats()
        assert s["sent"] == 40 and s["acked"] == 40 and s["in_flight"] == 0 and s["depth"] == 0


def test_variable_sizes_and_buffer_kinds(path):
    with shmq.Queue.create(path, capacity=64, max_message_size=32) as q:
        msgs = [b"", b"a", b"bc", bytes(range(32))]
        blob = b"".join(msgs)
        sizes = [len(m) for m in msgs]
        assert q.send_packed(blob, sizes) == 4
        assert q.send_packed(bytearray(blob), sizes) == 4
        assert q.send_packed(memoryview(blob), sizes) == 4
        words = array.array("Q", [7, 8, 9])
        assert q.send_packed(words, 8) == 3
        assert q.take_many(64, timeout=0) == msgs * 3 + [
            w.to_bytes(8, sys.byteorder) for w in (7, 8, 9)]


def test_bad_arguments(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=8) as q:
        with pytest.raises(shmq.InvalidArgument):
            q.send_packed(b"abc", 2)          # not a whole number of messages
        with pytest.raises(shmq.InvalidArgument):
            q.send_packed(b"abc", [1, 1])     # sizes do not add up
        with pytest.raises(shmq.InvalidArgument):
            q.take_packed(0)
        with pytest.raises(shmq.TooLarge):
            q.send_packed(b"x" * 16, 16)
        assert q.send_packed(b"", 8) == 0


def test_full_queue_sends_what_fits(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=8) as q:
        assert q.send_packed(bytes(8 * 20), 8, timeout=0) == 8
        assert q.send_packed(bytes(8), 8, timeout=0.01) == 0
        data, lens = q.take_packed(100, timeout=0)
        assert len(lens) == 8 and len(data) == 64


def test_take_after_claim_many_and_growing_batches(path):
    with shmq.Queue.create(path, capacity=1024, max_message_size=8) as q:
        q.send_packed(array.array("Q", range(600)), 8)
        held = q.claim_many(4, timeout=0)
        assert [int.from_bytes(m.data, "little") for m in held] == [0, 1, 2, 3]
        seqs = []
        for n in (1, 7, 300, 500):   # the batch buffers grow as needed
            data, lens = q.take_packed(n, timeout=0)
            seqs += array.array("Q", data).tolist()
        assert seqs == list(range(4, 600))
        assert q.ack_many(held) == 4
        assert q.stats()["acked"] == 600


def test_between_processes(path):
    """A producer process sends 20000 stamped messages in packed batches;
    this process takes them all, in order."""
    n = 20000
    with shmq.Queue.create(path, capacity=256, max_message_size=8) as q:
        code = (
            "import array, shmq, sys\n"
            "q = shmq.Queue.open(sys.argv[1])\n"
            f"for i in range(0, {n}, 100):\n"
            "    assert q.send_packed(array.array('Q', range(i, i + 100)), 8) == 100\n"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        p = subprocess.Popen([sys.executable, "-c", code, path], env=env)
        got = []
        while len(got) < n:
            try:
                data, _ = q.take_packed(128, timeout=10.0)
            except shmq.Timeout:
                break
            got += array.array("Q", data).tolist()
        assert p.wait() == 0
        assert got == list(range(n))
