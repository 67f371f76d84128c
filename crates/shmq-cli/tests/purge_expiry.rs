//! `shmq purge` and message expiry (`create --message-ttl`, `send --ttl`)
//! through the real binary.

use serde_json::Value;

mod common;
use common::*;

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

#[test]
fn expiry_through_create_and_send() {
    let d = Dir::new("expiry");
    let q = d.path("q");
    ok(shmq(&[
        "create",
        p(&q),
        "--capacity",
        "8",
        "--message-ttl",
        "1h",
    ]));
    let info = json(shmq(&["info", p(&q), "--json"]));
    assert_eq!(
        info["options"]["message_ttl_ns"], 3_600_000_000_000u64,
        "{info}"
    );
    assert_eq!(info["options"]["on_expiry"], "dead-letter", "{info}");
    let text = ok(shmq(&["info", p(&q)]));
    assert!(text.contains("expired messages dead-lettered"), "{text}");
    // One message expires at once (its own TTL wins over the queue's).
    ok(shmq(&["send", p(&q), "--ttl", "10ms", "short-lived"]));
    ok(shmq(&["send", p(&q), "kept"]));
    let peeked = ok(shmq(&["peek", p(&q), "--json"]));
    let first: Value = serde_json::from_str(peeked.lines().next().unwrap()).unwrap();
    assert!(first["expires_ns"].as_u64().is_some(), "{peeked}");
    std::thread::sleep(std::time::Duration::from_millis(60));
    let got = ok(shmq(&[
        "recv",
        p(&q),
        "--count",
        "5",
        "--timeout",
        "0s",
        "--json",
    ]));
    let lines: Vec<Value> = got
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{got}");
    assert_eq!(lines[0]["data"], "kept");
    assert!(lines[0]["expires_ns"].as_u64().is_some(), "{got}");
    let s = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(s["counters"]["expired"], 1, "{s}");
    let dl = ok(shmq(&["dlq", p(&q), "list", "--json"]));
    assert!(dl.contains("expired"), "{dl}");

    // A queue that drops them.
    let r = d.path("r");
    ok(shmq(&[
        "create",
        p(&r),
        "--message-ttl",
        "10ms",
        "--on-expiry",
        "drop",
    ]));
    let info = json(shmq(&["info", p(&r), "--json"]));
    assert_eq!(info["options"]["on_expiry"], "drop", "{info}");
    ok(shmq(&["send", p(&r), "a", "b"]));
    std::thread::sleep(std::time::Duration::from_millis(60));
    let none = shmq(&["recv", p(&r), "--timeout", "0s"]);
    assert_eq!(none.status.code(), Some(3));
    let s = json(shmq(&["stats", p(&r), "--json"]));
    assert_eq!(s["counters"]["expired"], 2, "{s}");
    assert_eq!(s["dead_letters"], 0, "{s}");
    let bad = shmq(&["create", p(&d.path("x")), "--on-expiry", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
}
