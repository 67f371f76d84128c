//! `shmq migrate` through the real binary, on the checked-in fixtures made
//! by the shmq of each format version (tests/fixtures/README.md): a file
//! of an older version is refused with the command that moves it; migrate
//! moves its messages, keys, versions and dead letters into a new file;
//! a stale version stays stale; a live OLD and an existing NEW are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::*;

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
        let out = shmq(&["peek", p(&old), "--read-only"]);
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
    let out = shmq(&["recv", p(path), "--count", "20", "--timeout", "0", "--json"]);
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
        let out = shmq(&["migrate", p(&old), p(&new), "--json"]);
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
        let verify = shmq(&["verify", p(&new)]);
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );

        // The options came along.
        let info: Value =
            serde_json::from_slice(&shmq(&["info", p(&new), "--json"]).stdout).unwrap();
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
        let peek = shmq(&["peek", p(&new), "-n", "0", "--json"]);
        let delayed: Vec<Value> = String::from_utf8_lossy(&peek.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v["state"] == "delayed")
            .collect();
        assert_eq!(delayed.len(), 1);
        assert_eq!(delayed[0]["data"], "later");
        assert!(delayed[0]["due_in_ns"].as_u64().unwrap() > 3_600_000_000_000);

        // The dead letter, with its reason.
        let dl = shmq(&["dlq", p(&new), "list", "--json"]);
        let dl = String::from_utf8_lossy(&dl.stdout);
        assert!(
            dl.contains("doomed") && dl.contains("fixture: rejected on purpose"),
            "{dl}"
        );

        // Key 9's version 5 was acked in OLD: stale in NEW too.
        let out = shmq(&["send", p(&new), "--key", "9", "--version", "5", "stale"]);
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
        let out = shmq(&["send", p(&new), "--key", "9", "--json", "next"]);
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
    let out = shmq(&["migrate", p(&old), p(&new)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read(&new).unwrap(), b"mine");

    // A queue of this version, with a consumer attached.
    let live = d.path("live");
    assert!(shmq(&["create", p(&live), "--capacity", "4"])
        .status
        .success());
    let mut follower = Command::new(BIN)
        .args(["recv", p(&live), "--follow"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let out = shmq(&["migrate", p(&live), p(&d.path("copy"))]);
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
    let out = shmq(&["migrate", p(&live), p(&d.path("copy")), "--capacity", "8"]);
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
        p(&old),
        p(&new),
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
        p(&old),
        "--capacity",
        "8",
        "--max-deliveries",
        "3",
    ]));
    // Three failed deliveries (nacks): dead-lettered with 3 attempts.
    ok(shmq(&["send", p(&old), "doomed"]));
    for _ in 0..3 {
        ok(shmq(&["recv", p(&old), "--no-ack", "--timeout", "0"]));
    }
    // Two failed deliveries of another: the next is its last.
    ok(shmq(&["send", p(&old), "twice refused"]));
    for _ in 0..2 {
        ok(shmq(&["recv", p(&old), "--no-ack", "--timeout", "0"]));
    }
    ok(shmq(&["migrate", p(&old), p(&new)]));
    let dl: Value =
        serde_json::from_slice(&shmq(&["dlq", p(&new), "list", "--json"]).stdout).unwrap();
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

/// The waiting messages of `path` as `peek --json` shows them.
fn peek_all(path: &Path) -> Vec<Value> {
    let out = shmq(&["peek", p(path), "-n", "0", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The time to live left of the waiting message `data` of `path`, ns.
fn ttl_left(path: &Path, data: &str) -> u64 {
    let all = peek_all(path);
    let m = all
        .iter()
        .find(|v| v["data"] == data)
        .unwrap_or_else(|| panic!("{data} is not in {all:?}"));
    m["expires_in_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("{data} has no deadline: {m}"))
}

const HOUR: u64 = 3_600_000_000_000;
/// Slack for the time the commands take (a loaded machine).
const SLACK: u64 = 120_000_000_000;

#[test]
fn deadlines_and_the_queues_time_to_live_carry_over() {
    let d = Dir::new("ttl");
    let old = d.path("old");
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(shmq(&[
        "create",
        p(&old),
        "--capacity",
        "8",
        "--message-ttl",
        "1h",
    ]));
    ok(shmq(&["send", p(&old), "queue ttl"]));
    ok(shmq(&["send", p(&old), "--ttl", "10h", "own ttl"]));
    // Past its deadline by the migration: OLD dead-letters expired messages.
    ok(shmq(&["send", p(&old), "--ttl", "10ms", "short"]));
    std::thread::sleep(std::time::Duration::from_millis(60));

    let new = d.path("new");
    let out = ok(shmq(&["migrate", p(&old), p(&new), "--json"]));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["old_format_version"], current(), "{j}");
    assert_eq!(j["messages"], 2, "{j}");
    assert_eq!(j["deadlines"], 2, "{j}");
    assert_eq!(j["expired"], 1, "{j}");
    assert_eq!(j["expired_dropped"], 0, "{j}");
    assert_eq!(j["dead_letters"], 1, "{j}");
    // Each message keeps the rest of its time to live.
    let q = ttl_left(&new, "queue ttl");
    assert!((HOUR - SLACK..=HOUR).contains(&q), "{q}");
    let own = ttl_left(&new, "own ttl");
    assert!((10 * HOUR - SLACK..=10 * HOUR).contains(&own), "{own}");
    // The expired one is a dead letter with the engine's reason.
    let dl: Value =
        serde_json::from_slice(&shmq(&["dlq", p(&new), "list", "--json"]).stdout).unwrap();
    assert_eq!(dl[0]["data"], "short", "{dl}");
    assert_eq!(dl[0]["reason"], "expired", "{dl}");
    // The queue's time to live came along: a new message gets its hour.
    ok(shmq(&["send", p(&new), "fresh"]));
    let fresh = ttl_left(&new, "fresh");
    assert!((HOUR - SLACK..=HOUR).contains(&fresh), "{fresh}");
    // recv shows the deadlines too.
    let out = ok(shmq(&[
        "recv",
        p(&new),
        "--count",
        "5",
        "--timeout",
        "0",
        "--json",
    ]));
    let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|v| v["expires_ns"].as_u64().is_some()),
        "{got:?}"
    );

    // Overridden: NEW's default and choice change, each message's own
    // deadline stays; the expired one goes as OLD said (dead letters).
    let other = d.path("other");
    let out = ok(shmq(&[
        "migrate",
        p(&old),
        p(&other),
        "--message-ttl",
        "2h",
        "--on-expiry",
        "drop",
        "--json",
    ]));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&j["expired"], &j["dead_letters"]),
        (&1.into(), &1.into()),
        "{j}"
    );
    assert!(ttl_left(&other, "queue ttl") <= HOUR);
    ok(shmq(&["send", p(&other), "fresh"]));
    let fresh = ttl_left(&other, "fresh");
    assert!((2 * HOUR - SLACK..=2 * HOUR).contains(&fresh), "{fresh}");
    // `--message-ttl 0`: none for new messages.
    let none = d.path("none");
    ok(shmq(&["migrate", p(&old), p(&none), "--message-ttl", "0"]));
    ok(shmq(&["send", p(&none), "fresh"]));
    let all = peek_all(&none);
    let fresh = all.iter().find(|v| v["data"] == "fresh").unwrap();
    assert!(fresh["expires_in_ns"].is_null(), "{fresh}");
    assert!(ttl_left(&none, "own ttl") > 9 * HOUR);

    // A queue that drops expired messages: dropped, counted, not moved.
    let drops = d.path("drops");
    ok(shmq(&[
        "create",
        p(&drops),
        "--message-ttl",
        "10ms",
        "--on-expiry",
        "drop",
    ]));
    ok(shmq(&["send", p(&drops), "a", "b"]));
    std::thread::sleep(std::time::Duration::from_millis(60));
    let dropped = d.path("dropped");
    let out = ok(shmq(&["migrate", p(&drops), p(&dropped)]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 messages past their deadline: dropped"),
        "{text}"
    );
    let out = ok(shmq(&[
        "migrate",
        p(&drops),
        p(&d.path("dropped2")),
        "--json",
    ]));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["messages"], 0, "{j}");
    assert_eq!(j["expired"], 2, "{j}");
    assert_eq!(j["expired_dropped"], 2, "{j}");
    assert_eq!(j["dead_letters"], 0, "{j}");
    // The choice came along: NEW drops expired messages too.
    ok(shmq(&["send", p(&dropped), "c"]));
    std::thread::sleep(std::time::Duration::from_millis(60));
    let none = shmq(&["recv", p(&dropped), "--timeout", "0s"]);
    assert_eq!(none.status.code(), Some(3));
    let st: Value =
        serde_json::from_slice(&shmq(&["stats", p(&dropped), "--json"]).stdout).unwrap();
    assert_eq!(st["counters"]["expired"], 1, "{st}");
    assert_eq!(st["dead_letters"], 0, "{st}");
}
