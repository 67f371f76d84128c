"""Message.borrow(): the payload as a read-only memoryview of the queue's
shared memory, without a copy, released by the outcome."""

import multiprocessing
import pickle

import pytest

import shmq


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def test_a_view_of_the_slot_released_by_each_outcome(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=16) as q:
        for outcome in ("ack", "nack", "reject"):
            q.send(b"payload " + outcome.encode())
            m = q.claim(timeout=0)
            v = m.borrow()
            assert isinstance(v, memoryview) and v.readonly
            assert bytes(v) == m.data and v.nbytes == len(m.data)
            assert m.borrow() is v
            with pytest.raises(TypeError):
                v[0] = 1
            getattr(m, outcome)()
            with pytest.raises(ValueError):
                bytes(v)
            with pytest.raises(shmq.LeaseLost):
                m.borrow()
        m = q.claim(timeout=0)  # the nacked one, again
        v = m.borrow()
        assert q.ack_many([m]) == 1
        with pytest.raises(ValueError):
            v.tobytes()


def test_views_made_from_it_hold_the_outcome_and_the_close(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=16) as q:
        q.send(b"0123456789")
        m = q.claim(timeout=0)
        part = m.borrow()[2:5]
        assert bytes(part) == b"234"
        with pytest.raises(BufferError):
            m.ack()
        assert not m.settled and q.stats()["in_flight"] == 1
        with pytest.raises(BufferError):
            q.close()
        assert not q.closed
        part.release()
        m.ack()
        assert q.stats()["acked"] == 1


def test_the_empty_payload_and_the_closed_queue(path):
    q = shmq.Queue.create(path, capacity=8, max_message_size=16)
    q.send(b"")
    m = q.claim(timeout=0)
    assert m.borrow().tobytes() == b""
    m.ack()
    q.send(b"x")
    m = q.claim(timeout=0)
    q.close()  # the claim goes back; the message's view is refused
    with pytest.raises(shmq.Closed):
        m.borrow()


def test_the_copy_stays_the_default(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=16) as q:
        q.send(b"copy")
        m = q.claim(timeout=0)
        data = m.data
        m.ack()
        assert data == b"copy" and isinstance(data, bytes)


# What a forked worker inherits: the queue and a borrowed view.
_INHERITED = None


def _send_and_read():
    q, v = _INHERITED
    q.send(b"from child")  # the child's own handle, opened now
    return bytes(v)        # the inherited mapping stays mapped for the view


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_child_keeps_the_view_readable(path):
    global _INHERITED
    with shmq.Queue.create(path, capacity=8, max_message_size=16) as q:
        q.send(b"shared")
        m = q.claim(timeout=0)
        _INHERITED = (q, m.borrow())
        try:
            with multiprocessing.get_context("fork").Pool(1) as pool:
                assert pool.apply(_send_and_read) == b"shared"
        finally:
            _INHERITED = None
        m.ack()
        assert q.claim(timeout=0).data == b"from child"


def test_pickling_a_view_is_refused(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=16) as q:
        q.send(b"x")
        m = q.claim(timeout=0)
        with pytest.raises(TypeError):
            pickle.dumps(m.borrow())
        m.ack()


def test_borrowing_makes_no_copy(path):
    with shmq.Queue.create(path, capacity=8, max_message_size=16) as q:
        q.send(b"borrowed")
        q.send(b"copied")
        m = q.claim(timeout=0)
        assert m.borrow().tobytes() == b"borrowed"
        m.ack()
        with pytest.raises(shmq.LeaseLost, match="not read before the outcome"):
            m.data  # never copied
        m = q.claim(timeout=0)
        m.ack()
        assert m.data == b"copied"  # copied by the outcome
