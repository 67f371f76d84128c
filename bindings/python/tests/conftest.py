"""Test setup: test the package in this source tree, against the library
named by SHMQ_LIBRARY (or the newest one cargo built in this checkout)."""

import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))


def target_dirs():
    dirs = []
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(os.environ["CARGO_TARGET_DIR"])
    dirs.append(os.path.join(ROOT, "target"))
    return dirs


def _newest(patterns):
    found = [p for pat in patterns for p in glob.glob(pat)
             if os.path.isfile(p) and os.access(p, os.X_OK)]
    return max(found, key=os.path.getmtime) if found else None


if not os.environ.get("SHMQ_LIBRARY"):
    lib = _newest([os.path.join(t, prof, sub, "libshmq.so")
                   for t in target_dirs() for prof in ("release", "debug")
                   for sub in ("", "deps")])
    if lib:
        os.environ["SHMQ_LIBRARY"] = lib
