//! `shmq migrate` through the real binary, on the checked-in fixtures made
//! by the shmq of each format version (tests/fixtures/README.md): a file
//! of an older version is refused with the command that moves it; migrate
//! moves its messages, keys, versions and dead letters into a new file;
//! a stale version stays stale; a live OLD and an existing NEW are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

/// A fresh directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("shmq-migrate-{}-{name}", std::process::id()));
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
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Fixture `migrate-vN` decompressed into `dir` (mode 0600), or `None`
/// when gzip is missing.
fn fixture(dir: &Dir, version: u64) -> Option<PathBuf> {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/fixtures/migrate-v{version}.shmq.gz"));
    let out = Command::new("gzip").arg("-dc").arg(&gz).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let p = dir.path(&format!("old-v{version}"));
    std::fs::write(&p, out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    Some(p)
}

const VERSIONS: [u64; 2] = [1, 2];

fn current() -> u64 {
    shmq::internals::format::FORMAT_VERSION
}

#[test]
fn an_older_file_is_refused_with_the_command_that_moves_it() {
    let d = Dir::new("refused");
    for v in VERSIONS {
        let Some(old) = fixture(&d, v) else {
            eprintln!("skipped: gzip is not installed");
            return;
        };
        let out = shmq(&["peek", s(&old), "--read-only"]);
        let err = String::from_utf8_lossy(&out.stderr);
        if v == current() {
            assert!(out.status.success(), "{err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{err}");
        let want = format!(
            "the file was made by format version {v}, this shmq reads version {}: \
             move its messages into a new file with `shmq migrate OLD NEW`",
            current()
        );
        assert!(err.contains(&want), "{err}");
        // The library's error is the same.
        let e = shmq::Queue::inspect(&old).err().unwrap();
        assert!(e.message().contains(&want), "{}", e.message());
    }
}

fn recv_all(path: &Path) -> Vec<(String, u64, u64, u64)> {
    let out = shmq(&["recv", s(path), "--count", "20", "--timeout", "0", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["data"].as_str().unwrap().to_string(),
                v["key"].as_u64().unwrap(),
                v["version"].as_u64().unwrap(),
                v["deliveries"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn migrate_moves_messages_keys_versions_and_dead_letters() {
    let d = Dir::new("moves");
    for v in VERSIONS {
        let Some(old) = fixture(&d, v) else { return };
        let before = std::fs::read(&old).unwrap();
        let new = d.path(&format!("new-v{v}"));
        let out = shmq(&["migrate", s(&old), s(&new), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["old_format_version"], v);
        assert_eq!(j["messages"], 6);
        assert_eq!(j["reclaimed"], 1, "the dead consumer's claim");
        assert_eq!(j["delayed"], 1);
        assert_eq!(j["dead_letters"], 1);
        assert_eq!(std::fs::read(&old).unwrap(), before, "OLD is never written");
        let leftovers: Vec<_> = std::fs::read_dir(&d.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("migrating"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left");

        // Sound, and nobody left attached.
        let verify = shmq(&["verify", s(&new)]);
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );

        // The options came along.
        let info: Value =
            serde_json::from_slice(&shmq(&["info", s(&new), "--json"]).stdout).unwrap();
        assert_eq!(info["format_version"], current(), "{info}");
        let (l, o) = (&info["layout"], &info["options"]);
        assert_eq!(l["capacity"], 16, "{info}");
        assert_eq!(l["max_message_size"], 64, "{info}");
        assert_eq!(l["key_capacity"], 8, "{info}");
        assert_eq!(l["dlq_capacity"], 4, "{info}");
        assert_eq!(l["participant_capacity"], 4, "{info}");
        assert_eq!(o["max_deliveries"], 3, "{info}");
        assert_eq!(o["lease_ns"], 3_600_000_000_000u64, "{info}");

        // The delayed message waits, with (most of) its 9000 hours left.
        let peek = shmq(&["peek", s(&new), "-n", "0", "--json"]);
        let delayed: Vec<Value> = String::from_utf8_lossy(&peek.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v["state"] == "delayed")
            .collect();
        assert_eq!(delayed.len(), 1);
        assert_eq!(delayed[0]["data"], "later");
        assert!(delayed[0]["due_in_ns"].as_u64().unwrap() > 3_600_000_000_000);

        // The dead letter, with its reason.
        let dl = shmq(&["dlq", s(&new), "list", "--json"]);
        let dl = String::from_utf8_lossy(&dl.stdout);
        assert!(
            dl.contains("doomed") && dl.contains("fixture: rejected on purpose"),
            "{dl}"
        );

        // Key 9's version 5 was acked in OLD: stale in NEW too.
        let out = shmq(&["send", s(&new), "--key", "9", "--version", "5", "stale"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("STALE"));

        // Delivery counts came along: the dead consumer's claim was
        // delivery 1, so its next claim is delivery 2.
        let peeked: Vec<Value> = String::from_utf8_lossy(&peek.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let abandoned = peeked.iter().find(|v| v["data"] == "abandoned").unwrap();
        assert_eq!(abandoned["deliveries"], 1, "{abandoned}");
        let dl: Value = serde_json::from_str(&dl).unwrap();
        assert_eq!(dl[0]["attempts"], 1, "{dl}");

        // The same messages, keys and versions, in ring order.
        let got = recv_all(&new);
        let want: Vec<(String, u64, u64, u64)> = [
            ("abandoned", 0, 0, 2),
            ("keyless one", 0, 0, 1),
            ("keyless two", 0, 0, 1),
            ("seven v3", 7, 3, 1),
            ("nine v6", 9, 6, 1),
        ]
        .iter()
        .map(|(t, k, v, n)| (t.to_string(), *k, *v, *n))
        .collect();
        assert_eq!(got, want, "version {v}");
        // Automatic versions continue above the old ones.
        let out = shmq(&["send", s(&new), "--key", "9", "--json", "next"]);
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(j["version"].as_u64().unwrap() > 6, "{j}");
    }
}

#[test]
fn migrate_refuses_an_existing_new_and_a_live_old() {
    let d = Dir::new("refuses");
    let Some(old) = fixture(&d, 1) else { return };
    let new = d.path("taken");
    std::fs::write(&new, b"mine").unwrap();
    let out = shmq(&["migrate", s(&old), s(&new)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read(&new).unwrap(), b"mine");

    // A queue of this version, with a consumer attached.
    let live = d.path("live");
    assert!(shmq(&["create", s(&live), "--capacity", "4"])
        .status
        .success());
    let mut follower = Command::new(BIN)
        .args(["recv", s(&live), "--follow"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let out = shmq(&["migrate", s(&live), s(&d.path("copy"))]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if err.contains("BUSY") || std::time::Instant::now() > deadline {
            break err;
        }
        // Not attached yet: the copy was made; remove it and try again.
        let _ = std::fs::remove_file(d.path("copy"));
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        refused.contains("BUSY") && refused.contains("attached"),
        "{refused}"
    );
    assert!(!d.path("copy").exists());
    // Once it is gone, the same migration goes through.
    let out = shmq(&["migrate", s(&live), s(&d.path("copy")), "--capacity", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn migrate_refuses_a_new_file_too_small_and_writes_nothing() {
    let d = Dir::new("small");
    let Some(old) = fixture(&d, 2) else { return };
    let new = d.path("small");
    let out = shmq(&[
        "migrate",
        s(&old),
        s(&new),
        "--capacity",
        "2",
        "--max-message-size",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too small") && err.contains("--capacity is 2"),
        "{err}"
    );
    assert!(!new.exists());
}

#[test]
fn delivery_counts_and_dead_letter_attempts_carry_over() {
    let d = Dir::new("counts");
    let old = d.path("old");
    let new = d.path("new");
    let ok = |o: Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(shmq(&[
        "create",
        s(&old),
        "--capacity",
        "8",
        "--max-deliveries",
        "3",
    ]));
    // Three failed deliveries (nacks): dead-lettered with 3 attempts.
    ok(shmq(&["send", s(&old), "doomed"]));
    for _ in 0..3 {
        ok(shmq(&["recv", s(&old), "--no-ack", "--timeout", "0"]));
    }
    // Two failed deliveries of another: the next is its last.
    ok(shmq(&["send", s(&old), "twice refused"]));
    for _ in 0..2 {
        ok(shmq(&["recv", s(&old), "--no-ack", "--timeout", "0"]));
    }
    ok(shmq(&["migrate", s(&old), s(&new)]));
    let dl: Value =
        serde_json::from_slice(&shmq(&["dlq", s(&new), "list", "--json"]).stdout).unwrap();
    let doomed: Vec<&Value> = dl
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["data"] == "doomed" || v["data"] == "twice refused")
        .collect();
    assert_eq!(doomed.len(), 1, "{dl}");
    assert_eq!(doomed[0]["data"], "doomed", "{dl}");
    assert_eq!(doomed[0]["attempts"], 3, "{dl}");
    let got = recv_all(&new);
    assert_eq!(got, vec![("twice refused".to_string(), 0, 0, 3)]);
}
