//! `shmq purge` and message expiry (`create --message-ttl`, `send --ttl`)
//! through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

/// A fresh directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("shmq-cli-pe-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shmq(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn json(o: Output) -> Value {
    serde_json::from_str(ok(o).trim()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn purge_removes_waiting_messages() {
    let d = Dir::new("purge");
    let q = d.path("q");
    ok(shmq(&["create", p(&q), "--capacity", "8"]));
    ok(shmq(&["send", p(&q), "one", "two", "three"]));
    let help = ok(shmq(&["purge", "--help"]));
    assert!(help.contains("Examples:"), "{help}");
    let r = json(shmq(&["purge", p(&q), "--yes", "--json"]));
    assert_eq!(r["purged"], 3, "{r}");
    let s = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(s["depth"], 0, "{s}");
    assert_eq!(s["counters"]["purged"], 3, "{s}");
    let prom = ok(shmq(&["stats", p(&q), "--prometheus"]));
    assert!(prom.contains("purged"), "{prom}");
    let r = ok(shmq(&["purge", p(&q), "--yes"]));
    assert!(r.contains("purged 0 waiting messages"), "{r}");
    let none = shmq(&["recv", p(&q), "--timeout", "0s"]);
    assert_eq!(none.status.code(), Some(3));
}
