"""Durations and timeouts in seconds are checked before they reach C: a value
that does not fit the C integer (or is negative, NaN or infinite where that
means nothing) raises ValueError instead of wrapping around; a timeout too
long to count in nanoseconds, or infinite, waits forever, as None does."""

import math
import threading
import time

import pytest

import shmq

# 2**64 ns: wraps to 0 in a uint64_t/int64_t ("at once", "try once").
WRAPS_TO_ZERO = 2**64 / 1e9
# 2**64 ns + about 1 s: wraps to about one second.
WRAPS_TO_ONE_SECOND = 2**64 / 1e9 + 1
BAD_DURATIONS = [WRAPS_TO_ZERO, WRAPS_TO_ONE_SECOND, 1e300, 10**30, -1, -1e-9,
                 math.nan, math.inf, -math.inf]
BAD_TIMEOUTS = [-1, -0.001, math.nan, -math.inf]
FOREVER_TIMEOUTS = [WRAPS_TO_ZERO, WRAPS_TO_ONE_SECOND, 1e300, math.inf]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def later(seconds, f):
    t = threading.Timer(seconds, f)
    t.start()
    return t


@pytest.mark.parametrize("delay", BAD_DURATIONS)
def test_nack_delay_out_of_range_raises_and_keeps_the_claim(path, delay):
    with shmq.Queue.create(path) as q:
        q.send(b"job")
        m = q.claim(timeout=0)
        with pytest.raises(ValueError, match="delay"):
            m.nack(delay=delay)
        assert not m.settled
        # Not redelivered: the claim is still held and can be acked.
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)
        m.ack()
        assert q.stats()["nacked"] == 0


@pytest.mark.parametrize("lease", BAD_DURATIONS)
def test_extend_out_of_range_raises_and_keeps_the_lease(path, lease):
    with shmq.Queue.create(path, lease=30.0) as q:
        q.send(b"job")
        m = q.claim(timeout=0)
        with pytest.raises(ValueError, match="lease"):
            m.extend(lease)
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)
        m.ack()


@pytest.mark.parametrize("delay", BAD_DURATIONS)
def test_send_delay_out_of_range_raises_and_sends_nothing(path, delay):
    with shmq.Queue.create(path) as q:
        with pytest.raises(ValueError, match="delay"):
            q.send(b"x", delay=delay)
        with pytest.raises(ValueError, match="delay"):
            q.send(b"x", key=0, timeout=0, delay=delay)
        assert q.stats()["sent"] == 0


@pytest.mark.parametrize("name", ["lease", "reservation_timeout"])
@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_create_durations_out_of_range_raise(tmp_path, name, value):
    p = tmp_path / "q"
    with pytest.raises(ValueError, match=name):
        shmq.Queue.create(p, **{name: value})
    assert not p.exists()


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_bad_timeouts_raise(path, timeout):
    with shmq.Queue.create(path, capacity=1) as q, shmq.Queue.open(path) as producer:
        # Were a timeout taken for "forever", the claims below would end
        # (and fail the test) when this sends, instead of hanging.
        rescue = later(2.0, lambda: producer.send(b"rescue", timeout=0))
        try:
            bad_timeouts_raise(q, timeout)
        finally:
            rescue.cancel()
            rescue.join()


def bad_timeouts_raise(q, timeout):
    with pytest.raises(ValueError, match="timeout"):
        q.claim(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        q.claim_many(4, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        q.take_packed(4, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        next(q.messages(timeout=timeout))
    with pytest.raises(ValueError, match="timeout"):
        q.send(b"x", timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        q.send(b"x", key=0, delay=0.5, timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        q.send_many([b"x"], timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        q.send_packed(b"xy", 1, timeout=timeout)
    assert q.stats()["sent"] == 0


CLAIMS = {
    "claim": lambda q, t: [q.claim(timeout=t).data],
    "claim_many": lambda q, t: [m.data for m in q.claim_many(4, timeout=t)],
    "take_many": lambda q, t: q.take_many(4, timeout=t),
}


@pytest.mark.parametrize("how", sorted(CLAIMS))
@pytest.mark.parametrize("timeout", FOREVER_TIMEOUTS)
def test_a_huge_claim_timeout_waits_forever(path, how, timeout):
    with shmq.Queue.create(path) as q, shmq.Queue.open(path) as producer:
        t0 = time.monotonic()
        t = later(0.3, lambda: producer.send(b"late", timeout=0))
        try:
            assert CLAIMS[how](q, timeout) == [b"late"]
        finally:
            t.join()
        assert time.monotonic() - t0 >= 0.25


SENDS = {
    "send": lambda q, t: q.send(b"y", timeout=t) == 0,
    "send_delayed": lambda q, t: q.send(b"y", delay=0.001, timeout=t) == 0,
    "send_many": lambda q, t: q.send_many([b"y"], timeout=t) == 1,
    "send_packed": lambda q, t: q.send_packed(b"y", 1, timeout=t) == 1,
}


@pytest.mark.parametrize("how", sorted(SENDS))
@pytest.mark.parametrize("timeout", FOREVER_TIMEOUTS)
def test_a_huge_send_timeout_waits_forever(path, how, timeout):
    with shmq.Queue.create(path, capacity=1) as q, shmq.Queue.open(path) as consumer:
        q.send(b"x", timeout=0)
        t0 = time.monotonic()
        t = later(0.3, lambda: consumer.claim(timeout=0).ack())
        try:
            assert SENDS[how](q, timeout)
        finally:
            t.join()
        assert time.monotonic() - t0 >= 0.25


def test_good_durations_still_work(path):
    with shmq.Queue.create(path, lease=1e-12, reservation_timeout=0.5) as q:
        assert q.lease == 1e-9  # rounded up to 1 ns, not to the refused 0
    with shmq.Queue.create(path + "2", lease=2, reservation_timeout=1e-12) as q:
        assert q.lease == 2.0
        q.send(b"a", delay=0)
        q.send(b"b", delay=1e-12)
        m = q.claim(timeout=1.0)
        m.extend(60)
        m.nack(delay=0.0)
        got = sorted(m.data for m in q.claim_many(4, timeout=5.0))
        assert got in ([b"a", b"b"], [b"a"], [b"b"])


def test_a_zero_lease_or_reservation_timeout_is_refused(path):
    # Every claim would be taken back at once, every reservation abandoned.
    with pytest.raises(shmq.InvalidArgument):
        shmq.Queue.create(path, lease=0)
    with pytest.raises(shmq.InvalidArgument):
        shmq.Queue.create(path + "2", reservation_timeout=0)
