//! `shmq torture` through the real binary: a short run with real SIGKILLs
//! and stalls passes and reports events, messages, late outcomes, the
//! capacity bound and the death-to-claim latency; and each fault the harness
//! can inject on purpose (a lost message, a double first delivery, a torn
//! payload, deaths hidden from the engine for a lease as if liveness
//! detection were off, a late outcome taken as accepted, a queue one slot
//! larger than asked) makes a run fail naming it, so a passing run means
//! something. A run ends after a number of events, however long they take
//! on a loaded machine; the one timing asserted is the run's own oracle:
//! death to claimed again under 10 ms at the median and 100 ms at p99, with
//! a lease of 200 ms.

use std::process::{Command, Output};

use serde_json::Value;

use shmq_testkit::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

fn torture(s: &Scratch, extra: &[&str]) -> (Output, Value) {
    let json = s
        .dir
        .join(format!("report-{}.json", extra.join("_").replace('/', "_")));
    let out = Command::new(BIN)
        .arg("torture")
        .arg("--dir")
        .arg(&s.dir)
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .expect("run shmq torture");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: Value = serde_json::from_str(&text).expect("the report is JSON");
    (out, v)
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

/// About 120 events (SIGKILLs, double kills, stalls) of two producers and
/// three consumers on the three kinds of queue: the run passes, and it did
/// kill, stall, carry messages, refuse late outcomes, measure deaths and
/// sample the capacity.
#[test]
fn a_short_run_with_kills_and_stalls_passes() {
    let s = Scratch::new("pass");
    let (out, v) = torture(
        &s,
        &[
            "--events",
            "120",
            "--max-interval",
            "40ms",
            "--stall-one-in",
            "3",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASSED"), "{stdout}");
    assert_eq!(v["passed"], Value::Bool(true), "{v}");
    assert!(n(&v, &["events_total"]) >= 120, "{v}");
    assert_eq!(
        n(&v, &["events_total"]),
        n(&v, &["kills_total"]) + n(&v, &["stalls_total"])
    );
    assert_eq!(
        n(&v, &["kills_total"]),
        n(&v, &["kills", "producers"]) + n(&v, &["kills", "consumers"])
    );
    assert_eq!(n(&v, &["kills", "restarts"]), n(&v, &["kills_total"]));
    assert!(n(&v, &["stalls_total"]) > 0, "{v}");
    assert_eq!(
        n(&v, &["stalls_total"]),
        n(&v, &["stalls", "producers"]) + n(&v, &["stalls", "consumers"])
    );
    // The figures that must be zero, and the oracles were exercised.
    for k in [
        "lost",
        "torn",
        "double_fresh",
        "late_accepted",
        "capacity_violations",
    ] {
        assert_eq!(n(&v, &["bad", k]), 0, "{k}: {v}");
    }
    assert_eq!(v["bad"]["death_to_claim_over_limit"], Value::Bool(false));
    assert!(
        n(&v, &["late", "outcomes_refused"]) + n(&v, &["late", "commits_abandoned"]) > 0,
        "no late outcome was refused: {v}"
    );
    assert!(n(&v, &["death_to_claim", "samples"]) > 0, "{v}");
    assert!(n(&v, &["death_to_claim", "p99_ns"]) < 100_000_000, "{v}");
    assert!(n(&v, &["capacity", "samples"]) > 0, "{v}");
    assert!(n(&v, &["capacity", "max_seen"]) <= 64, "{v}");
    let probes = v["capacity"]["probes"].as_array().expect("probes");
    assert_eq!(probes.len(), 3, "{v}");
    for p in probes {
        assert_eq!((n(p, &["sent"]), n(p, &["claimed"])), (64, 64), "{p}");
    }
    assert!(n(&v, &["messages", "sent"]) > 0, "{v}");
    assert!(n(&v, &["messages", "acked"]) > 0, "{v}");
    for k in [
        "lost",
        "torn",
        "double-fresh",
        "double-claim",
        "key-overlap",
        "verify",
        "late-accepted",
        "early-repair",
        "capacity",
        "latency",
        "counters",
        "unexercised",
    ] {
        assert_eq!(n(&v, &["violations", k]), 0, "{k}: {v}");
    }
    // Every queue carried messages, what was sent is accounted for, and
    // the engine counted the acks the ledger saw (and at most those under
    // way at a kill more).
    let queues = v["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 3);
    for q in queues {
        let sent = n(q, &["sent"]);
        assert!(sent > 0, "{q}");
        assert_eq!(
            sent,
            n(q, &["acked"]) + n(q, &["dead_lettered"]) + n(q, &["superseded"]),
            "{q}"
        );
        let (engine, ledger) = (n(q, &["engine_acked"]), n(q, &["ledger_acks"]));
        assert!(
            ledger <= engine && engine <= ledger + n(q, &["acked_at_kill"]),
            "{q}"
        );
    }
    // Passed runs leave nothing behind.
    let left: Vec<_> = std::fs::read_dir(&s.dir)
        .expect("read the scratch directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Runs with an injected fault fail, exit non-zero, and name it:
/// `hide-death` keeps each victim stopped for a lease before its SIGKILL, as
/// an engine without liveness detection would see it (death to claimed
/// again becomes a lease); `late-accept` takes a refused late outcome for an
/// accepted one; `extra-slot` builds the queues one slot larger than the
/// run checks for.
#[test]
fn injected_faults_are_caught_and_named() {
    let s = Scratch::new("faults");
    let kills = ["--kills", "30", "--queues", "keyless"];
    let stalls = [
        "--events",
        "150",
        "--queues",
        "keyless",
        "--stall-one-in",
        "2",
        "--max-interval",
        "30ms",
    ];
    for (fault, kind, args) in [
        ("lose", "lost", &kills[..]),
        ("double-fresh", "double-fresh", &kills[..]),
        ("tear", "torn", &kills[..]),
        (
            "hide-death",
            "latency",
            &["--kills", "30", "--stall-one-in", "0"][..],
        ),
        ("late-accept", "late-accepted", &stalls[..]),
        (
            "extra-slot",
            "capacity",
            &["--kills", "5", "--queues", "keyless"][..],
        ),
    ] {
        let mut a = args.to_vec();
        a.extend(["--inject", fault]);
        let (out, v) = torture(&s, &a);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault}: {stderr}");
        assert_eq!(v["passed"], Value::Bool(false), "{fault}: {v}");
        assert!(n(&v, &["violations", kind]) > 0, "{fault}: {v}");
        assert!(
            stderr.contains("FAILED") && stderr.contains(kind),
            "{fault}: {stderr}"
        );
    }
}

/// `shmq help torture` has examples; the worker subcommand is hidden.
#[test]
fn help_has_examples_and_hides_the_worker() {
    let top = Command::new(BIN).arg("--help").output().expect("run shmq");
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(top.contains("torture"), "{top}");
    assert!(!top.contains("__torture-worker"), "{top}");
    let h = Command::new(BIN)
        .args(["help", "torture"])
        .output()
        .expect("run shmq");
    assert!(h.status.success());
    let h = String::from_utf8_lossy(&h.stdout);
    assert!(
        h.contains("Examples:") && h.contains("shmq torture --kills"),
        "{h}"
    );
}
