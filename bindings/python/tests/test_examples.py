"""The Python examples run as documented in examples/README.md, with the
installed package (no environment variable, no library to install)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def run_example(name, *args):
    env = {k: v for k, v in os.environ.items() if k != "SHMQ_LIBRARY"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", "python", name), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_quickstart():
    r = run_example("quickstart.py")
    assert r.returncode == 0, r.stderr
    assert "sent 4 acked 4 depth 0" in r.stdout


def test_restaurant(tmp_path):
    r = run_example("restaurant.py", str(tmp_path / "restaurant"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "again (delivery 2)" in r.stdout and "cooked 601" in r.stdout
