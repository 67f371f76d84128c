"""Permissions and read-only handles through the Python binding."""

import os
import stat

import pytest

import shmq


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def test_mode_and_group_of_a_new_queue(path, tmp_path):
    old = os.umask(0o077)
    try:
        shmq.Queue.create(path, capacity=4, mode=0o660, group=os.getegid()).close()
    finally:
        os.umask(old)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getegid()
    with pytest.raises(shmq.NotFound):
        shmq.Queue.create(str(tmp_path / "other"), group="no-such-group-shmq")
    # Group-writable: refused unless the opener accepts a group-shared queue.
    with pytest.raises(shmq.PermissionDenied) as e:
        shmq.Queue.open(path)
    assert path in str(e.value) and "group_shared" in str(e.value)
    with shmq.Queue.open(path, group_shared=True) as q:
        q.send(b"shared", timeout=0)


def test_files_others_may_write_and_links_are_refused(path, tmp_path):
    shmq.Queue.create(path, capacity=4).close()
    os.chmod(path, 0o606)
    with pytest.raises(shmq.PermissionDenied):
        shmq.Queue.open(path)
    with pytest.raises(shmq.PermissionDenied):
        shmq.Queue.inspect(path, group_shared=True)
    shmq.Queue.open(path, trust_any_owner=True).close()
    os.chmod(path, 0o600)
    link = str(tmp_path / "link")
    os.symlink(path, link)
    with pytest.raises(shmq.PermissionDenied) as e:
        shmq.Queue.open(link, trust_any_owner=True)
    assert "symbolic link" in str(e.value)


def test_a_read_only_handle_reads_and_refuses_changes(path):
    with shmq.Queue.create(path, capacity=4) as q:
        q.send(b"a", timeout=0)
        before = open(path, "rb").read()
        with shmq.Queue.open(path, read_only=True) as ro:
            assert ro.read_only and not q.read_only
            assert ro.stats()["depth"] == 1
            ro.verify()
            for call in (lambda: ro.send(b"x", timeout=0), lambda: ro.claim(timeout=0),
                         lambda: ro.claim(), ro.recover):
                with pytest.raises(shmq.PermissionDenied) as e:
                    call()
                assert path in str(e.value) and "read-only" in str(e.value)
        assert open(path, "rb").read() == before
        assert q.claim(timeout=0).data == b"a"
