"""multiprocessing as users write it: a Queue handed to a Pool's workers,
inherited through fork or pickled for spawn and forkserver, opens a handle
of the worker's own on first use; the parent's claims stay the parent's;
a Message cannot be pickled."""

import multiprocessing
import pickle

import pytest

import shmq

MODES = [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]
COUNT = 200

# The worker's queue: set by the pool's initializer (inherited through fork,
# pickled for spawn and forkserver).
_Q = None


def _init(q):
    global _Q
    _Q = q


def _send(i):
    return _Q.send(i.to_bytes(4, "little"))


def _send_through(q, i):
    """The queue as a task's argument: pickled in every start method."""
    q.send(i.to_bytes(4, "little"))
    return True


def _take(_):
    """Claims one message, acks it, returns its payload (None on timeout)."""
    try:
        m = _Q.claim(timeout=10.0)
    except shmq.Timeout:
        return None
    data = m.data
    m.ack()
    return int.from_bytes(data, "little")


def _claim_everything(_):
    """Claims all that is claimable now and acks it: how many."""
    n = 0
    while True:
        try:
            m = _Q.claim(timeout=0)
        except shmq.Empty:
            return n
        m.ack()
        n += 1


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def _pool(mode, q):
    return multiprocessing.get_context(mode).Pool(2, initializer=_init, initargs=(q,))


@pytest.mark.parametrize("mode", MODES)
def test_workers_send_parent_claims(path, mode):
    with shmq.Queue.create(path, capacity=COUNT * 2, max_message_size=8) as q:
        with _pool(mode, q) as pool:
            pool.map(_send, range(COUNT))
            pool.starmap(_send_through, [(q, i) for i in range(COUNT, 2 * COUNT)])
        got = sorted(int.from_bytes(m.data, "little") for m in q.claim_many(4 * COUNT, timeout=0))
        assert got == list(range(2 * COUNT))
        s = q.stats()
        assert s["sent"] == 2 * COUNT and s["in_flight"] == 2 * COUNT


@pytest.mark.parametrize("mode", MODES)
def test_parent_sends_workers_claim(path, mode):
    with shmq.Queue.create(path, capacity=COUNT, max_message_size=8) as q:
        for i in range(COUNT):
            q.send(i.to_bytes(4, "little"))
        with _pool(mode, q) as pool:
            got = pool.map(_take, range(COUNT))
        assert sorted(got) == list(range(COUNT))
        s = q.stats()
        assert s["acked"] == COUNT and s["depth"] == 0 and s["in_flight"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_the_parents_claims_stay_the_parents(path, mode):
    with shmq.Queue.create(path, capacity=64, max_message_size=8) as q:
        for i in range(10):
            q.send(bytes([i]))
        held = q.claim_many(3, timeout=0)
        with _pool(mode, q) as pool:
            # Each worker takes what it can; the parent's three are not
            # claimable, and a worker's exit does not release them.
            assert sum(pool.map(_claim_everything, range(4))) == 7
        assert q.stats()["in_flight"] == 3
        assert q.ack_many(held) == 3
        s = q.stats()
        assert s["acked"] == 10 and s["in_flight"] == 0 and s["redelivered"] == 0


def _ack_inherited(m):
    """In a forked child: the parent's Message, acked through the child's
    own handle, is refused."""
    try:
        m.ack()
    except shmq.Error as e:
        return type(e).__name__
    return "acked"


@pytest.mark.skipif("fork" not in MODES, reason="no fork")
def test_an_inherited_message_is_not_the_childs(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=8) as q:
        q.send(b"x")
        m = q.claim(timeout=0)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1, initializer=_init, initargs=(m,)) as pool:
            outcome = pool.apply(_ack_held)
        assert outcome != "acked"
        assert q.stats()["in_flight"] == 1
        m.ack()
        assert q.stats()["acked"] == 1


def _ack_held():
    return _ack_inherited(_Q)


def test_pickled_queue_is_opened_again(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=8) as q:
        copy = pickle.loads(pickle.dumps(q))
        try:
            assert copy is not q and copy.path == q.path and copy.capacity == 8
            copy.send(b"hi")
            m = q.claim(timeout=0)
            assert m.data == b"hi"
            m.ack()
        finally:
            copy.close()
        ro = shmq.Queue.open(path, read_only=True)
        try:
            assert pickle.loads(pickle.dumps(ro)).read_only
        finally:
            ro.close()
    with pytest.raises(shmq.Closed):
        pickle.dumps(q)


def test_a_message_cannot_be_pickled(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=8) as q:
        q.send(b"x")
        m = q.claim(timeout=0)
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(m)
        m.ack()
