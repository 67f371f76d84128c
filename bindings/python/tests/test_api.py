"""The Python API: the documented core (README, bindings/python/README.md) exactly as written, and the rest."""

import collections.abc
import errno
import os
import subprocess
import sys
import threading
import time

import pytest

import shmq


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def test_spec_core_as_written(path):
    with shmq.Queue.create(path, capacity=1024, max_message_size=256,
                           key_capacity=0, lease=30.0, max_deliveries=10) as q:
        q.send(b"order 7", key=0, version=0, timeout=0)
        assert q.send_many([b"a", b"b"]) == 2
        m = q.claim(timeout=1.0)
        assert (m.data, m.key, m.version, m.deliveries) == (b"order 7", 0, 0, 1)
        assert isinstance(m.data, bytes)
        m.ack()
        m = q.claim(timeout=1.0)
        m.nack(delay=0.05)
        m = q.claim(timeout=1.0)
        assert m.data == b"b"
        m.extend(10.0)
        m.reject("why")
        ms = q.claim_many(32, timeout=1.0)
        assert [x.data for x in ms] == [b"a"] and ms[0].deliveries == 2
        assert q.ack_many(ms) == 1
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)
        with pytest.raises(shmq.Timeout):
            q.claim(timeout=0.01)
        q.send(b"for iteration")
        for m in q:
            assert m.data == b"for iteration"
            m.ack()
            break
        s = q.stats()
        assert isinstance(s, collections.abc.Mapping)
        assert s["sent"] == 4 and s["acked"] == 3 and s["rejected"] == 1 and s["nacked"] == 1
        assert s["dead_letters"] == 1 and s["depth"] == 0 and s["in_flight"] == 0
        assert 1 <= s["processing_time"]["count"] <= 3 and s["time_in_queue"]["count"] <= 4
    with shmq.Queue.open(path) as q:
        assert q.capacity == 1024 and q.max_message_size == 256 and q.lease == 30.0
        assert [d.reason for d in q.dead_letters()] == ["why"]


def test_every_status_has_its_exception(path):
    names = ["Full", "Empty", "Timeout", "TooLarge", "LeaseLost", "Abandoned", "KeysFull",
             "Stale", "NotFound", "Exists", "Incompatible", "Corrupt", "PermissionDenied",
             "InvalidArgument"]
    for n in names:
        cls = getattr(shmq, n)
        assert issubclass(cls, shmq.Error)
        assert cls(n).name.startswith("SHMQ_")
    assert len({getattr(shmq, n).status for n in names}) == len(names)


def test_errors_name_file_operation_cause(path):
    with pytest.raises(shmq.NotFound) as e:
        shmq.Queue.open(path)
    assert path in str(e.value) and e.value.name == "SHMQ_NOT_FOUND"
    with shmq.Queue.create(path, capacity=2, max_message_size=8) as q:
        with pytest.raises(shmq.Exists):
            shmq.Queue.create(path)
        with pytest.raises(shmq.TooLarge) as e:
            q.send(b"x" * 9, timeout=0)
        assert path in str(e.value) and "send" in str(e.value)
        q.send(b"1", timeout=0)
        q.send(b"2", timeout=0)
        with pytest.raises(shmq.Full) as e:
            q.send(b"3", timeout=0)
        assert "full" in str(e.value)
        with pytest.raises(shmq.Timeout):
            q.send(b"3", timeout=0.01)
        m = q.claim(timeout=0)
        m.ack()
        with pytest.raises(shmq.LeaseLost):
            m.ack()
        with pytest.raises(shmq.InvalidArgument):
            q.claim_many(0)
        with pytest.raises(shmq.InvalidArgument):
            q.send(b"k", key=1, timeout=0)  # no key table
        with pytest.raises(shmq.InvalidArgument):
            shmq.Queue.create(path + "2", capacity=0)
        with pytest.raises(shmq.PermissionDenied):
            shmq.Queue.create("/sys/shmq-python-test")
    with open(path + ".junk", "wb") as f:
        f.write(b"x" * 8192)
    with pytest.raises((shmq.Incompatible, shmq.Corrupt)):
        shmq.Queue.open(path + ".junk")


def test_use_after_close(path):
    q = shmq.Queue.create(path)
    q.send(b"a", timeout=0)
    m = q.claim(timeout=0)
    q.close()
    q.close()  # idempotent
    assert q.closed
    with pytest.raises(shmq.Closed):
        q.send(b"a")
    with pytest.raises(shmq.Closed):
        m.ack()
    # The claim held at close was redelivered.
    with shmq.Queue.open(path) as q2:
        m = q2.claim(timeout=1.0)
        assert m.deliveries == 2


def test_bytes_bytearray_memoryview_payloads(path):
    with shmq.Queue.create(path, capacity=16, max_message_size=32) as q:
        q.send(b"bytes")
        q.send(bytearray(b"bytearray"))
        q.send(memoryview(b"xxmemoryview")[2:])
        q.send(memoryview(bytearray(b"writable view")))
        assert q.send_many([b"a", bytearray(b"bb"), memoryview(b"ccc")], timeout=0) == 3
        got = [m.data for m in q.claim_many(16, timeout=0)]
        assert got == [b"bytes", b"bytearray", b"memoryview", b"writable view", b"a", b"bb", b"ccc"]
        q.send(b"view")
        m = q.claim(timeout=0)
        assert m.view.tobytes() == b"view" and isinstance(m.view, memoryview)
        m.ack()


def test_send_many_sends_what_fits_and_waits(path):
    with shmq.Queue.create(path, capacity=4, max_message_size=8) as q:
        assert q.send_many([b"%d" % i for i in range(10)], timeout=0) == 4
        assert q.send_many([b"x"], timeout=0) == 0
        assert q.send_many([b"x"], timeout=0.01) == 0

        def drain():
            got = 0
            with shmq.Queue.open(path) as q2:
                while got < 12:
                    for m in q2.claim_many(4, timeout=5.0):
                        m.ack()
                        got += 1
        with shmq.Queue.open(path) as c:
            for m in c.claim_many(4, timeout=0):
                m.ack()
        t = threading.Thread(target=drain)
        t.start()
        assert q.send_many([b"%d" % i for i in range(12)]) == 12  # waits for room
        t.join()


def test_message_context_manager(path):
    with shmq.Queue.create(path) as q:
        q.send(b"ok")
        with q.claim(timeout=0) as m:
            pass
        assert m.settled
        q.send(b"fails")
        with pytest.raises(RuntimeError):
            with q.claim(timeout=0):
                raise RuntimeError("processing failed")
        m = q.claim(timeout=0)
        assert m.data == b"fails" and m.deliveries == 2
        m.ack()


def test_dead_letters_redrive_purge(path):
    with shmq.Queue.create(path, capacity=8, max_deliveries=2) as q:
        q.send(b"poison")
        q.claim(timeout=0).nack()
        q.claim(timeout=0).nack()
        q.send(b"bad")
        q.claim(timeout=0).reject("cannot parse")
        dls = q.dead_letters()
        assert [d.attempts for d in dls] == [2, 1]
        assert dls[1].reason == "cannot parse" and dls[1].last_consumer_pid == os.getpid()
        d = q.dead_letter(dls[1].id)
        assert d.data == b"bad"
        with pytest.raises(shmq.NotFound):
            q.dead_letter(987654)
        assert q.redrive(dls[0].id) == 1
        m = q.claim(timeout=0)
        assert m.data == b"poison" and m.deliveries == 1
        m.ack()
        assert q.purge_dead_letters() == 1
        assert q.dead_letters() == []
        q.verify()
        q.recover()


def test_lease_expiry_and_delay(path):
    with shmq.Queue.create(path, lease=0.1) as q:
        q.send(b"slow")
        m = q.claim(timeout=0)
        time.sleep(0.2)
        m2 = q.claim(timeout=1.0)
        assert m2.deliveries == 2
        with pytest.raises(shmq.LeaseLost):
            m.ack()
        m2.ack()
        q.send(b"later", delay=0.05)
        with pytest.raises(shmq.Empty):
            q.claim(timeout=0)
        assert q.claim(timeout=2.0).data == b"later"


def test_messages_iterator_stops_on_timeout(path):
    with shmq.Queue.create(path) as q:
        q.send_many([b"1", b"2", b"3"])
        got = []
        for m in q.messages(timeout=0.05):
            got.append(m.data)
            m.ack()
        assert got == [b"1", b"2", b"3"]


def test_stats_rates(path):
    with shmq.Queue.create(path) as q:
        assert q.stats()["sent_per_s"] is None
        q.send_many([b"x"] * 10)
        time.sleep(0.01)
        s = q.stats()
        assert s["sent_per_s"] > 0 and s["producers"] == 1


def test_keys(path):
    with shmq.Queue.create(path, key_capacity=4) as q:
        assert q.send(b"menu v1", key=7, version=1) == 1
        m = q.claim(timeout=0)
        assert (m.key, m.version) == (7, 1)
        m.ack()
        assert q.latest_acked_version(7) == 1
        with pytest.raises(shmq.Stale):
            q.send(b"menu v1 again", key=7, version=1)
        v = q.send(b"menu next", key=7)
        assert v >= 2
        s = q.stats()
        assert s["key_capacity"] == 4 and s["keys_in_use"] >= 1 and s["stale"] >= 1


def test_the_installed_package_carries_its_engine(tmp_path):
    """The package imports with no library installed and no environment
    variable: its extension module (the engine) sits inside it."""
    code = ("import os, shmq, shmq._native as n; "
            "print(os.path.dirname(shmq.__file__)); print(os.path.dirname(n.__file__)); "
            "print(shmq.__version__)")
    env = {k: v for k, v in os.environ.items() if k not in ("SHMQ_LIBRARY", "LD_LIBRARY_PATH")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    package, native, version = r.stdout.split()
    assert native == package
    assert version == shmq.__version__


def test_version():
    parts = shmq.__version__.split(".")
    assert len(parts) >= 3 and all(p.isdigit() for p in parts[:3]), shmq.__version__
    assert "__version__" in shmq.__all__


def test_errors_are_also_built_in_exceptions(path):
    """Where a built-in exception fits, shmq's is also that one, and keeps
    its message (str()), status and name."""
    assert issubclass(shmq.Timeout, TimeoutError)
    assert issubclass(shmq.NotFound, FileNotFoundError)
    assert issubclass(shmq.Exists, FileExistsError)
    assert issubclass(shmq.PermissionDenied, PermissionError)
    assert issubclass(shmq.InvalidArgument, ValueError)
    for cls in (shmq.Timeout, shmq.NotFound, shmq.Exists, shmq.PermissionDenied):
        assert issubclass(cls, shmq.Error) and issubclass(cls, OSError)
    with pytest.raises(FileNotFoundError) as e:
        shmq.Queue.open(path)
    assert isinstance(e.value, shmq.NotFound) and e.value.errno == errno.ENOENT
    assert str(e.value).startswith(path) and e.value.name == "SHMQ_NOT_FOUND"
    with shmq.Queue.create(path, capacity=1) as q:
        with pytest.raises(FileExistsError) as e:
            shmq.Queue.create(path)
        assert isinstance(e.value, shmq.Exists) and e.value.errno == errno.EEXIST
        assert path in str(e.value) and not str(e.value).startswith("[Errno")
        with pytest.raises(TimeoutError) as e:
            q.claim(timeout=0.001)
        assert isinstance(e.value, shmq.Timeout) and e.value.status == shmq.Timeout.status
        with shmq.Queue.open(path, read_only=True) as ro:
            with pytest.raises(PermissionError) as e:
                ro.send(b"x", timeout=0)
            assert isinstance(e.value, shmq.PermissionDenied) and "read-only" in str(e.value)
    # A key or version out of range is refused, never wrapped around.
    with shmq.Queue.open(path) as q:
        for bad in (dict(key=-1), dict(key=2**64), dict(version=-1), dict(key="7")):
            with pytest.raises(shmq.InvalidArgument, match="key|version"):
                q.send(b"x", timeout=0, **bad)
        assert q.stats()["sent"] == 0
    # Still caught as shmq errors, and not as the other built-ins.
    with pytest.raises(shmq.Error):
        shmq.Queue.open(path + ".missing")
    assert not issubclass(shmq.Empty, OSError) and not issubclass(shmq.Full, OSError)


def test_a_queue_used_by_two_threads_at_once_is_closed_to_the_second(path):
    """While one thread waits inside a Queue, another thread's call on the
    same Queue raises Closed (one thread at a time), and the waiting one
    is not disturbed."""
    with shmq.Queue.create(path) as q, shmq.Queue.open(path) as producer:
        got = []
        t = threading.Thread(target=lambda: got.append(q.claim(timeout=5.0).data))
        t.start()
        time.sleep(0.2)
        with pytest.raises(shmq.Closed, match="another thread"):
            q.send(b"from the second thread", timeout=0)
        # What never changes is read without waiting for the other thread.
        assert not q.closed and q.capacity == 1024 and path in repr(q)
        producer.send(b"for the waiter")
        t.join()
        assert got == [b"for the waiter"]


def test_a_message_of_another_queue_is_refused(tmp_path):
    """Two queues used alike give equal tokens: a message claimed from one
    is refused by the other (nothing acked on either)."""
    with shmq.Queue.create(str(tmp_path / "x")) as x, \
            shmq.Queue.create(str(tmp_path / "y")) as y:
        x.send(b"from x")
        y.send(b"from y")
        mx = x.claim(timeout=0)
        my = y.claim(timeout=0)
        with pytest.raises(shmq.InvalidArgument, match="another handle"):
            y.ack_many([mx])
        with pytest.raises(shmq.InvalidArgument, match="another handle"):
            y.ack_many([my, mx])
        assert not mx.settled and not my.settled
        assert y.stats()["acked"] == 0 and x.stats()["acked"] == 0
        assert y.ack_many([my]) == 1
        assert x.ack_many([mx]) == 1
