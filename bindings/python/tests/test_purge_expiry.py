"""Purge of a queue's waiting messages, and message expiry (time to live)."""

import time

import pytest

import shmq


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def test_purge_leaves_claims_in_flight(path):
    with shmq.Queue.create(path, capacity=8) as q:
        q.send_many([b"a", b"b", b"c"])
        m = q.claim(timeout=0)
        assert q.purge() == 2
        m.ack()
        assert q.stats().purged == 2
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)


def test_expired_messages_are_dead_lettered_or_dropped(path):
    with shmq.Queue.create(path, capacity=8, message_ttl=0.01) as q:
        q.send(b"old")
        q.send(b"mine", ttl=3600.0)
        time.sleep(0.06)
        m = q.claim(timeout=0)
        assert m.data == b"mine" and m.expires_ns is not None
        m.ack()
        assert [d.reason for d in q.dead_letters()] == ["expired"]
        assert q.stats().expired == 1
    with shmq.Queue.create(path + "2", message_ttl=0.01, on_expiry="drop") as q:
        q.send(b"old")
        time.sleep(0.06)
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)
        assert q.dead_letters() == [] and q.stats().expired == 1
    with pytest.raises(shmq.InvalidArgument):
        shmq.Queue.create(path + "3", on_expiry="sometimes")
