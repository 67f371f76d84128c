//! `shmq torture` through the real binary: a short run with real SIGKILLs
//! passes and reports kills and messages; and each fault the harness can
//! inject on purpose (a lost message, a double first delivery, a torn
//! payload) makes a run fail naming it, so a passing run means something.
//! No timing is asserted: a run ends after a number of kills, however long
//! they take on a loaded machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

/// A scratch directory for the runs of one test, removed when dropped
/// (a failed run keeps its files there).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("shmq-torture-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create the scratch directory");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn torture(s: &Scratch, extra: &[&str]) -> (Output, Value) {
    let json =
        s.0.join(format!("report-{}.json", extra.join("_").replace('/', "_")));
    let out = Command::new(BIN)
        .arg("torture")
        .arg("--dir")
        .arg(&s.0)
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

/// About 60 SIGKILLs of two producers and two consumers on the three kinds
/// of queue: the run passes, and it did kill and did carry messages.
#[test]
fn a_short_run_with_kills_passes() {
    let s = Scratch::new("pass");
    let (out, v) = torture(&s, &["--kills", "60", "--max-interval", "40ms"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASSED"), "{stdout}");
    assert_eq!(v["passed"], Value::Bool(true), "{v}");
    assert!(n(&v, &["kills_total"]) >= 60, "{v}");
    assert_eq!(
        n(&v, &["kills_total"]),
        n(&v, &["kills", "producers"]) + n(&v, &["kills", "consumers"])
    );
    assert_eq!(n(&v, &["kills", "restarts"]), n(&v, &["kills_total"]));
    assert!(n(&v, &["messages", "sent"]) > 0, "{v}");
    assert!(n(&v, &["messages", "acked"]) > 0, "{v}");
    for k in [
        "lost",
        "torn",
        "double-fresh",
        "double-claim",
        "key-overlap",
        "verify",
    ] {
        assert_eq!(n(&v, &["violations", k]), 0, "{k}: {v}");
    }
    // Every queue carried messages, and what was sent is accounted for.
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
    }
    // Passed runs leave nothing behind.
    let left: Vec<_> = std::fs::read_dir(&s.0)
        .expect("read the scratch directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Runs with an injected fault fail, exit non-zero, and name it.
#[test]
fn injected_faults_are_caught_and_named() {
    let s = Scratch::new("faults");
    for (fault, kind) in [
        ("lose", "lost"),
        ("double-fresh", "double-fresh"),
        ("tear", "torn"),
    ] {
        let (out, v) = torture(
            &s,
            &["--kills", "30", "--queues", "keyless", "--inject", fault],
        );
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
