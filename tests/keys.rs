//! Per-key versions and exclusivity (G7) through the Rust API.

use shmq::{Counter, Options, Queue, SendOptions, Status, Timeout};
use std::time::Duration;

/// A fresh scratch path (each test removes its file at the end).
fn path(name: &str) -> std::path::PathBuf {
    shmq_testkit::unique_path(&format!("keys-{name}"))
}

fn keyed(latest_only: bool) -> Options {
    Options {
        capacity: 16,
        max_message_size: 64,
        key_capacity: 8,
        latest_only,
        ..Options::default()
    }
}

fn send(q: &Queue, key: u64, version: u64, data: &[u8]) -> shmq::Result<shmq::Sent> {
    q.send_with(data, &SendOptions::new().key(key).version(version))
}

#[test]
fn versions_stale_and_automatic() {
    let p = path("versions");
    let q = Queue::create(&p, &keyed(false)).unwrap();
    assert_eq!(send(&q, 7, 0, b"a").unwrap().version, 1);
    assert_eq!(send(&q, 7, 5, b"b").unwrap().version, 5);
    assert_eq!(send(&q, 7, 0, b"c").unwrap().version, 6);
    for v in [1, 5, 6] {
        let m = q.claim(Timeout::TryOnce).unwrap();
        assert_eq!((m.key(), m.version()), (7, v));
        m.ack().unwrap();
    }
    assert_eq!(q.latest_acked_version(7), 6);
    assert_eq!(q.latest_acked_version(8), 0);
    for v in [3, 6] {
        let e = send(&q, 7, v, b"old").unwrap_err();
        assert_eq!(e.status(), Status::Stale, "{e}");
    }
    assert_eq!(q.stats().counter(Counter::Stale), 2);
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn one_claim_per_key_and_other_keys_flow() {
    let p = path("exclusive");
    let q = Queue::create(&p, &keyed(false)).unwrap();
    let c2 = Queue::open(&p).unwrap();
    send(&q, 1, 1, b"1a").unwrap();
    send(&q, 1, 2, b"1b").unwrap();
    send(&q, 2, 1, b"2a").unwrap();
    let m1 = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m1.data().unwrap(), b"1a");
    // Key 1 is busy: the other consumer passes 1b and gets 2a.
    let m2 = c2.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m2.data().unwrap(), b"2a");
    assert_eq!(
        c2.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    assert!(c2.stats().counter(Counter::KeyWaits) >= 1);
    m1.ack().unwrap();
    let m3 = c2.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m3.data().unwrap(), b"1b");
    m3.ack().unwrap();
    m2.ack().unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn nacked_message_keeps_its_place_in_key_order() {
    let p = path("order");
    let q = Queue::create(&p, &keyed(false)).unwrap();
    for v in 1..=3 {
        send(&q, 4, v, &[v as u8]).unwrap();
    }
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.version(), 1);
    m.nack(Duration::ZERO).unwrap();
    for v in 1..=3 {
        let m = q.claim(Timeout::TryOnce).unwrap();
        assert_eq!(m.version(), v);
        m.ack().unwrap();
    }
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn queued_message_made_stale_is_skipped_and_counted() {
    let p = path("skipstale");
    let q = Queue::create(&p, &keyed(false)).unwrap();
    q.send_with(
        b"v1",
        &SendOptions::new()
            .key(3)
            .version(1)
            .delay(Duration::from_millis(30)),
    )
    .unwrap();
    send(&q, 3, 2, b"v2").unwrap();
    // A delayed message does not hold its key: v2 is claimed first.
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.version(), 2);
    m.ack().unwrap();
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    let s = q.stats();
    assert_eq!(s.counter(Counter::Stale), 1);
    assert_eq!((s.depth, s.delayed, s.in_flight), (0, 0, 0));
    std::fs::remove_file(&p).unwrap();
}

/// A version sent twice while the first copy waits (a producer retrying,
/// a bridge given the message again) is queued twice; once one copy is
/// acked the other is not newer, and is completed without delivery.
#[test]
fn second_copy_of_an_acked_version_is_skipped() {
    let p = path("twice");
    let q = Queue::create(&p, &keyed(false)).unwrap();
    send(&q, 4, 1, b"v1").unwrap();
    send(&q, 4, 2, b"v2").unwrap();
    send(&q, 4, 2, b"v2 again").unwrap();
    send(&q, 4, 3, b"v3").unwrap();
    let mut got = Vec::new();
    while let Ok(m) = q.claim(Timeout::TryOnce) {
        got.push(m.data().unwrap());
        m.ack().unwrap();
    }
    assert_eq!(got, [b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]);
    let s = q.stats();
    assert_eq!(s.counter(Counter::Stale), 1);
    assert_eq!((s.depth, s.in_flight), (0, 0));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn latest_only_replaces_the_waiting_message_in_place() {
    let p = path("latest");
    let q = Queue::create(&p, &keyed(true)).unwrap();
    let a = send(&q, 9, 1, b"price 1").unwrap();
    let b = send(&q, 9, 2, b"price 2").unwrap();
    assert_eq!(a.position, b.position, "replaced in place");
    assert_eq!(
        send(&q, 9, 1, b"older").unwrap_err().status(),
        Status::Stale
    );
    send(&q, 5, 1, b"other key").unwrap();
    let s = q.stats();
    assert_eq!((s.depth, s.counter(Counter::Conflated)), (2, 1));
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!((m.data().unwrap(), m.version()), (b"price 2".to_vec(), 2));
    // The waiting one is claimed: a newer one queues behind it.
    let c = send(&q, 9, 3, b"price 3").unwrap();
    assert_ne!(c.position, a.position);
    let other = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(other.key(), 5);
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    m.ack().unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.version(), 3);
    m.ack().unwrap();
    other.ack().unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn full_key_table_is_refused_and_eviction_frees_it() {
    let p = path("keysfull");
    let q = Queue::create(
        &p,
        &Options {
            key_capacity: 2,
            ..keyed(false)
        },
    )
    .unwrap();
    send(&q, 1, 1, b"a").unwrap();
    send(&q, 2, 1, b"b").unwrap();
    assert_eq!(send(&q, 3, 1, b"c").unwrap_err().status(), Status::KeysFull);
    assert_eq!(q.stats().keys_in_use, 2);
    q.claim(Timeout::TryOnce).unwrap().ack().unwrap();
    assert_eq!(q.evict_keys().unwrap(), 1);
    send(&q, 3, 1, b"c").unwrap();
    let other = Queue::open(&p).unwrap();
    assert_eq!(
        q.evict_keys().unwrap_err().status(),
        Status::InvalidArgument
    );
    drop(other);
    let keyless = Queue::create(path("nokeys"), &Options::default()).unwrap();
    assert_eq!(
        send(&keyless, 1, 1, b"x").unwrap_err().status(),
        Status::InvalidArgument
    );
    std::fs::remove_file(keyless.path()).unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn lease_lost_claim_releases_the_key() {
    let p = path("leasekey");
    let q = Queue::create(
        &p,
        &Options {
            lease: Duration::from_millis(20),
            ..keyed(false)
        },
    )
    .unwrap();
    send(&q, 6, 1, b"x").unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    let again = q.claim(Duration::from_secs(2)).unwrap();
    assert_eq!((again.version(), again.deliveries()), (1, 2));
    assert_eq!(m.ack().unwrap_err().status(), Status::LeaseLost);
    again.ack().unwrap();
    assert_eq!(q.latest_acked_version(6), 1);
    std::fs::remove_file(&p).unwrap();
}

/// G7 (hole: a keyed send refused `Full` used up a version): version 0
/// ("the key's next version") is assigned once the send has a place, so a
/// send refused `Full` gives no version away, in FIFO and latest-only mode.
#[test]
fn g7_a_keyed_send_refused_full_uses_no_version() {
    for latest_only in [false, true] {
        let p = path(&format!("full-version-{latest_only}"));
        let q = Queue::create(
            &p,
            &Options {
                capacity: 1,
                ..keyed(latest_only)
            },
        )
        .unwrap();
        let try_once =
            |key: u64| q.send_with(b"x", &SendOptions::new().key(key).timeout(Timeout::TryOnce));
        assert_eq!(try_once(7).unwrap().version, 1);
        // Held by a consumer: nothing to replace, and no room.
        let m = q.claim(Timeout::TryOnce).unwrap();
        for key in [7, 8] {
            let e = try_once(key).unwrap_err();
            assert_eq!(e.status(), Status::Full, "{e}");
        }
        m.ack().unwrap();
        assert_eq!(try_once(7).unwrap().version, 2, "latest_only {latest_only}");
        q.claim(Timeout::TryOnce).unwrap().ack().unwrap();
        assert_eq!(try_once(8).unwrap().version, 1, "latest_only {latest_only}");
        drop(q);
        std::fs::remove_file(&p).unwrap();
    }
}
