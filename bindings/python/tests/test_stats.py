"""Queue.stats(): a typed, read-only object with the names and units of
`shmq stats --json`, which is also a read-only Mapping."""

import collections.abc
import json
import os
import shutil
import subprocess

import pytest

import shmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "q")


def _filled(path):
    q = shmq.Queue.create(path, capacity=16, max_message_size=8)
    for i in range(5):
        q.send(bytes([i]))
    q.claim(timeout=0).ack()
    q.claim(timeout=0).nack()
    held = q.claim(timeout=0)
    return q, held


def test_typed_and_a_read_only_mapping(path):
    q, held = _filled(path)
    with q:
        s = q.stats()
        assert isinstance(s, shmq.Stats) and isinstance(s, collections.abc.Mapping)
        assert s.queue == path and s.capacity == 16
        assert s.depth == 3 and s.in_flight == 1 and s.producers + s.consumers >= 1
        assert s.counters["sent"] == 5 and s.acked == 1 and s["acked"] == 1 and s["nacked"] == 1
        assert s["depth"] == s.depth and s["counters"] is s.counters
        h = s.histograms["time_in_queue"]
        assert isinstance(h, shmq.HistogramStats) and isinstance(h, collections.abc.Mapping)
        assert h.count >= 1 and h.p50_ns <= h.p99_ns <= h.max_ns and h["p99"] == h.p99_ns
        assert s["time_in_queue"]["count"] == h.count and h.mean_ns == h.sum_ns / h.count
        assert s.sent_per_s is None and s.acked_per_s is None  # the first call
        assert dict(s)["acked"] == 1 and "acked" in s and "nope" not in s
        with pytest.raises(KeyError):
            s["nope"]
        with pytest.raises(AttributeError):
            s.depth = 7
        with pytest.raises(TypeError):
            s.counters["acked"] = 7
        with pytest.raises(TypeError):
            s["depth"] = 7
        with pytest.raises(AttributeError):
            h.count = 7
        held.ack()


GAUGES = {"queue", "capacity", "depth", "delayed", "in_flight", "reserved", "dlq_waiting",
          "dead_letters", "oldest_claimable_age_ns", "oldest_in_flight_age_ns", "producers",
          "consumers", "participants", "waiting_producers", "waiting_consumers", "counters",
          "histograms"}
HISTOGRAM = {"count", "sum_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"}


def test_names_of_shmq_stats_json(path):
    q, held = _filled(path)
    with q:
        j = q.stats().to_json()
        assert set(j) == GAUGES
        assert set(j["histograms"]) == {"time_in_queue", "processing_time", "end_to_end_time"}
        assert all(set(h) == HISTOGRAM for h in j["histograms"].values())
        assert j["counters"]["sent"] == 5
        json.dumps(j)
        held.ack()


def _cli():
    exe = os.environ.get("SHMQ_CLI") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "shmq")
    return exe if os.path.exists(exe) else shutil.which("shmq")


def test_same_as_the_command_line(path):
    exe = _cli()
    if not exe:
        pytest.skip("no shmq binary (cargo build --release, or SHMQ_CLI)")
    q, held = _filled(path)
    with q:
        mine = q.stats().to_json()
        theirs = json.loads(subprocess.run([exe, "stats", "--json", path], check=True,
                                           capture_output=True, text=True).stdout)
        for h in theirs["histograms"].values():
            del h["buckets"]
        # Participants differ (the command line attaches as an inspector,
        # which is not one): compare everything else.
        assert set(mine) == set(theirs)
        for k in ("capacity", "depth", "in_flight", "delayed", "dead_letters", "counters"):
            assert mine[k] == theirs[k], k
        assert {k: set(v) for k, v in mine["histograms"].items()} == \
            {k: set(v) for k, v in theirs["histograms"].items()}
        held.ack()
