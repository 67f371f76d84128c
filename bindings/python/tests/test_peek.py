"""Peeking: waiting messages seen without claiming them or counting a delivery."""

import time

import shmq


def test_peek_counts_no_delivery_and_skips_claimed(tmp_path):
    path = tmp_path / "q"
    with shmq.Queue.create(path, capacity=16, max_deliveries=2, key_capacity=8) as q:
        q.send(b"a")
        q.send(b"b", key=7)
        q.send(b"later", delay=3600)
        for _ in range(3):
            seen = q.peek()
            assert [p.data for p in seen] == [b"a", b"b", b"later"]
        assert [p.state for p in seen] == ["ready", "ready", "delayed"]
        assert seen[1].key == 7 and seen[1].version == 1
        assert seen[0].deliveries == 0 and seen[0].not_before_ns is None
        assert seen[2].not_before_ns is not None
        assert len(q.peek(1)) == 1
        # Peeking twice with max_deliveries 2 dead-lettered nothing: the
        # first claim is the first delivery.
        m = q.claim(timeout=0)
        assert m.data == b"a" and m.deliveries == 1
        assert [p.data for p in q.peek()] == [b"b", b"later"]
        m.nack()
        pending = q.peek()
        assert pending[0].data == b"a" and pending[0].deliveries == 1
        assert pending[0].state in ("ready", "pending")
        assert q.stats()["dead_lettered"] == 0


def test_peek_through_a_read_only_handle(tmp_path):
    path = tmp_path / "q"
    with shmq.Queue.create(path, capacity=8) as q:
        q.send(b"x")
        with shmq.Queue.open(path, read_only=True) as ro:
            assert [p.data for p in ro.peek()] == [b"x"]
        assert q.claim(timeout=0).data == b"x"


def test_sparse_create(tmp_path):
    path = tmp_path / "q"
    with shmq.Queue.create(path, capacity=1024, max_message_size=4096, sparse=True) as q:
        q.send(b"x")
        assert q.peek()[0].data == b"x"
    st = path.stat()
    assert st.st_blocks * 512 < st.st_size


def test_peek_shows_the_deadline(tmp_path):
    path = tmp_path / "q"
    with shmq.Queue.create(path, capacity=8) as q:
        q.send(b"forever")
        before = time.monotonic_ns()
        q.send(b"mortal", ttl=3600.0)
        q.send(b"later", delay=3600, ttl=7200.0)
        after = time.monotonic_ns()
        seen = q.peek()
        assert [p.expires_ns is None for p in seen] == [True, False, False]
        # The deadline is the commit time plus the ttl (a delay does not
        # move it); the engine may stamp it with the coarse clock.
        for p, ttl in ((seen[1], 3600), (seen[2], 7200)):
            committed = p.expires_ns - ttl * 10**9
            assert before - 100_000_000 <= committed <= after
        # The same deadline as the claimed message's.
        assert q.claim(timeout=0).data == b"forever"
        m = q.claim(timeout=0)
        assert m.data == b"mortal" and m.expires_ns == seen[1].expires_ns
    with shmq.Queue.create(tmp_path / "q2", capacity=8, message_ttl=60.0) as q:
        q.send(b"default")
        [p] = q.peek()
        assert p.expires_ns is not None
        assert abs(p.expires_ns - p.enqueued_ns - 60 * 10**9) <= 100_000_000
