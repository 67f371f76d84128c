"""A Python producer process, a C consumer process and a Rust consumer process
on one queue: every message arrives exactly once.

The C consumer is built against the C library, libshmq.so (`cargo build
--release -p shmq-c`), named by SHMQ_LIBRARY or found in this checkout's
target directory; the test is skipped without it. The Python side is the
installed package, which carries its own engine."""

import glob
import os
import subprocess
import sys

import pytest

import shmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
COUNT = 3000


def _library() -> str:
    """The C library for the C consumer: SHMQ_LIBRARY, else the newest
    libshmq.so cargo built in this checkout."""
    lib = os.environ.get("SHMQ_LIBRARY")
    if lib:
        if not os.path.exists(lib):
            pytest.fail(f"SHMQ_LIBRARY names no file: {lib}")
        return os.path.realpath(lib)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    found = [p for prof in ("release", "debug") for sub in ("", "deps")
             for p in glob.glob(os.path.join(target, prof, sub, "libshmq.so"))]
    if not found:
        pytest.skip("no libshmq.so for the C consumer: `cargo build --release -p shmq-c` "
                    "or set SHMQ_LIBRARY")
    return os.path.realpath(max(found, key=os.path.getmtime))


def _c_consumer(tmp_path) -> str:
    """examples/c/consumer.c, built against include/shmq.h and the library
    (through its soname, as an installed program would find it)."""
    libdir = tmp_path / "lib"
    libdir.mkdir()
    os.symlink(_library(), libdir / "libshmq.so.0")
    os.symlink("libshmq.so.0", libdir / "libshmq.so")
    exe = str(tmp_path / "consumer")
    cmd = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror",
           "-I" + os.path.join(ROOT, "include"), os.path.join(ROOT, "examples/c/consumer.c"),
           "-L" + str(libdir), "-lshmq", "-Wl,-rpath," + str(libdir), "-o", exe]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def _rust_consumer() -> str:
    """The crate's c_abi test binary, whose ignored test `rust_consumer` is a
    consumer (built by `cargo test`), from the same target dir as the
    library."""
    lib = os.path.dirname(_library())
    pats = [os.path.join(lib, "c_abi-*"), os.path.join(lib, "deps", "c_abi-*")]
    found = [p for pat in pats for p in glob.glob(pat)
             if os.access(p, os.X_OK) and not p.endswith(".d")]
    if os.environ.get("SHMQ_RUST_CONSUMER"):
        found = [os.environ["SHMQ_RUST_CONSUMER"]]
    if not found:
        pytest.skip("no c_abi test binary beside the library: run `cargo test --test c_abi` "
                    "(same profile) first, or set SHMQ_RUST_CONSUMER")
    return max(found, key=os.path.getmtime)


def test_python_producer_c_and_rust_consumers(tmp_path):
    path = str(tmp_path / "queue")
    c_exe = _c_consumer(tmp_path)
    rust_exe = _rust_consumer()
    env = dict(os.environ, SHMQ_LIBRARY=_library())
    with shmq.Queue.create(path, capacity=64, max_message_size=64) as q:
        c_out = open(tmp_path / "c.txt", "w")
        c = subprocess.Popen([c_exe, path], stdout=c_out, env=env)
        rust_txt = str(tmp_path / "rust.txt")
        rust = subprocess.Popen(
            [rust_exe, "--ignored", "--exact", "rust_consumer", "--nocapture"],
            env=dict(env, SHMQ_CONSUME_PATH=path, SHMQ_CONSUME_OUT=rust_txt),
            stdout=subprocess.DEVNULL)
        producer = subprocess.run(
            [sys.executable, "-c",
             "import shmq, sys\n"
             "with shmq.Queue.open(sys.argv[1]) as q:\n"
             f"    for i in range(0, {COUNT}, 100):\n"
             "        assert q.send_many([b'msg %d' % j for j in range(i, i + 100)]) == 100\n"
             "    q.send(b'stop')\n"
             "    q.send(b'stop')\n",
             path],
            env=env, capture_output=True, text=True, timeout=120)
        assert producer.returncode == 0, producer.stderr
        assert c.wait(timeout=120) == 0
        assert rust.wait(timeout=120) == 0
        c_out.close()
        got_c = [x for x in (tmp_path / "c.txt").read_text().splitlines() if x]
        got_rust = [x for x in open(rust_txt).read().splitlines() if x]
        every = got_c + got_rust
        print(f"C consumer: {len(got_c)}, Rust consumer: {len(got_rust)}")
        assert len(every) == COUNT, (len(got_c), len(got_rust))
        assert sorted(every) == sorted(f"msg {i}" for i in range(COUNT))
        s = q.stats()
        assert s["sent"] == COUNT + 2 and s["acked"] == COUNT + 2
        assert s["depth"] == 0 and s["in_flight"] == 0
        q.verify()
