//! Purge of a queue's waiting messages, and message expiry (time to live).
//!
//! No assertion here is on speed: short TTLs and sleeps longer than them
//! only make a deadline pass.

use std::time::Duration;

use shmq::{Counter, Expiry, Options, Queue, SendOptions, Status, Timeout};
use shmq_testkit::{unique_path, TempFile};

fn sound(q: &Queue, when: &str) {
    let report = q.verify();
    assert!(report.problems.is_empty(), "{when}: {:?}", report.problems);
}

fn queue(name: &str, opts: Options) -> (TempFile, Queue) {
    let p = unique_path(name);
    let f = TempFile(p.clone());
    let q = Queue::create(&p, &opts).unwrap();
    (f, q)
}

#[test]
fn purge_removes_waiting_messages_and_leaves_claims_in_flight() {
    let (_f, q) = queue(
        "purge-waiting",
        Options {
            capacity: 16,
            max_message_size: 64,
            ..Options::default()
        },
    );
    for m in [b"a", b"b", b"c", b"d"] {
        q.send(m, Timeout::TryOnce).unwrap();
    }
    // "a" in flight, "b" pending redelivery, "c" ready, "d" ready; and one
    // delayed.
    let a = q.claim(Timeout::TryOnce).unwrap();
    q.claim(Timeout::TryOnce)
        .unwrap()
        .nack(Duration::ZERO)
        .unwrap();
    q.send_with(
        b"later",
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )
    .unwrap();
    let before = q.stats();
    assert_eq!((before.depth, before.delayed, before.in_flight), (3, 1, 1));

    assert_eq!(q.purge().unwrap(), 4);
    let after = q.stats();
    assert_eq!((after.depth, after.delayed, after.in_flight), (0, 0, 1));
    assert_eq!(after.counter(Counter::Purged), 4);
    // Nothing was delivered, acked or dead-lettered by the purge.
    assert_eq!(after.counter(Counter::Acked), 0);
    assert_eq!(after.counter(Counter::DeadLettered), 0);
    assert_eq!(after.dead_letters, 0);
    sound(&q, "after the purge");

    // The claim in flight is untouched: its ack succeeds.
    assert_eq!(a.data().unwrap(), b"a");
    a.ack().unwrap();
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    // The queue goes on as before.
    q.send(b"e", Timeout::TryOnce).unwrap();
    let e = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(e.data().unwrap(), b"e");
    e.ack().unwrap();
    assert_eq!(q.purge().unwrap(), 0);
    sound(&q, "at the end");
}

#[test]
fn purge_of_a_full_ring_lets_producers_fill_it_again() {
    let (_f, q) = queue(
        "purge-full",
        Options {
            capacity: 4,
            max_message_size: 16,
            ..Options::default()
        },
    );
    for round in 0..5u8 {
        for i in 0..4u8 {
            q.send(&[round, i], Timeout::TryOnce).unwrap();
        }
        assert_eq!(
            q.send(b"x", Timeout::TryOnce).unwrap_err().status(),
            Status::Full
        );
        // One claimed in round order, the rest purged.
        let m = q.claim(Timeout::TryOnce).unwrap();
        assert_eq!(m.data().unwrap(), vec![round, 0]);
        assert_eq!(q.purge().unwrap(), 3);
        m.ack().unwrap();
        sound(&q, "after a round");
    }
    assert_eq!(q.stats().counter(Counter::Purged), 15);
}

#[test]
fn purge_releases_keys_without_raising_their_versions() {
    let (_f, q) = queue(
        "purge-keys",
        Options {
            capacity: 16,
            max_message_size: 64,
            key_capacity: 16,
            ..Options::default()
        },
    );
    let keyed = |k: u64, v: u64| SendOptions::new().key(k).version(v);
    q.send_with(b"k1v1", &keyed(1, 1)).unwrap();
    q.send_with(b"k1v2", &keyed(1, 2)).unwrap();
    q.send_with(b"k2v5", &keyed(2, 5)).unwrap();
    // k1v1 in flight holds key 1; k1v2 waits behind it.
    let held = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(held.data().unwrap(), b"k1v1");
    assert_eq!(q.purge().unwrap(), 2);
    sound(&q, "after the purge");
    held.ack().unwrap();
    assert_eq!(q.latest_acked_version(1), 1);
    // Key 2's version 5 was never processed: it may be sent again.
    assert_eq!(q.latest_acked_version(2), 0);
    q.send_with(b"k2v5 again", &keyed(2, 5)).unwrap();
    q.send_with(b"k1v3", &keyed(1, 3)).unwrap();
    let mut got = Vec::new();
    while let Ok(m) = q.claim(Timeout::TryOnce) {
        got.push(m.data().unwrap());
        m.ack().unwrap();
    }
    got.sort();
    assert_eq!(got, vec![b"k1v3".to_vec(), b"k2v5 again".to_vec()]);
    sound(&q, "at the end");
}

#[test]
fn purge_wakes_a_producer_blocked_on_a_full_queue() {
    let (f, q) = queue(
        "purge-wake",
        Options {
            capacity: 2,
            max_message_size: 16,
            ..Options::default()
        },
    );
    q.send(b"1", Timeout::TryOnce).unwrap();
    q.send(b"2", Timeout::TryOnce).unwrap();
    let path = f.0.clone();
    let producer = std::thread::spawn(move || {
        let p = Queue::open(&path).unwrap();
        // Waits for room, with no deadline: only a wake ends it.
        p.send(b"3", Timeout::Forever).map(|_| ())
    });
    // Let the producer go to sleep (if it has not yet, it finds room at
    // once: the test passes either way, never by timing).
    while q.stats().producers_waiting == 0 && !producer.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(q.purge().unwrap(), 2);
    producer.join().unwrap().unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.data().unwrap(), b"3");
    m.ack().unwrap();
}

#[test]
fn purge_needs_a_participant() {
    let (f, _q) = queue(
        "purge-readonly",
        Options {
            capacity: 2,
            max_message_size: 16,
            ..Options::default()
        },
    );
    let ro = Queue::open_with(&f.0, &shmq::OpenOptions::read_only()).unwrap();
    assert!(ro.purge().is_err());
}

// ---------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------

/// Long enough past any TTL of these tests for its deadline to pass on the
/// coarse clock (a few kernel ticks), never a bound on speed.
const PAST: Duration = Duration::from_millis(60);
const SHORT: Duration = Duration::from_millis(10);

fn ttl_queue(name: &str, ttl: Duration, on_expiry: Expiry) -> (TempFile, Queue) {
    queue(
        name,
        Options {
            capacity: 8,
            max_message_size: 64,
            key_capacity: 8,
            ..Options::default()
        }
        .message_ttl(ttl)
        .on_expiry(on_expiry),
    )
}

fn drain(q: &Queue) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Ok(m) = q.claim(Timeout::TryOnce) {
        got.push(m.data().unwrap());
        m.ack().unwrap();
    }
    got
}

#[test]
fn an_expired_message_is_dead_lettered_with_reason_expired() {
    let (_f, q) = ttl_queue("ttl-dlq", SHORT, Expiry::DeadLetter);
    q.send(b"stale", Timeout::TryOnce).unwrap();
    std::thread::sleep(PAST);
    q.send(b"fresh", Timeout::TryOnce).unwrap();
    // The expired one is never delivered; the fresh one is.
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.data().unwrap(), b"fresh");
    assert!(m.expires_ns().is_some());
    m.ack().unwrap();
    let dl = q.dlq_list();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, "expired");
    assert_eq!(dl[0].payload, b"stale");
    assert_eq!(dl[0].attempts, 0, "an expired message was never delivered");
    let s = q.stats();
    assert_eq!(s.counter(Counter::Expired), 1);
    assert_eq!(s.counter(Counter::DeadLettered), 1);
    assert_eq!(s.counter(Counter::Claimed), 1);
    sound(&q, "after an expiry");
}

#[test]
fn an_expired_message_is_dropped_and_counted_when_the_queue_says_so() {
    let (_f, q) = ttl_queue("ttl-drop", SHORT, Expiry::Drop);
    for m in [b"a", b"b", b"c"] {
        q.send(m, Timeout::TryOnce).unwrap();
    }
    std::thread::sleep(PAST);
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    let s = q.stats();
    assert_eq!(s.counter(Counter::Expired), 3);
    assert_eq!((s.depth, s.dead_letters), (0, 0));
    // Their slots are free again.
    for _ in 0..8 {
        q.send(b"x", Timeout::TryOnce).unwrap();
    }
    sound(&q, "after drops");
}

#[test]
fn a_per_message_ttl_overrides_the_queues() {
    // The queue's default is long; one message's own TTL is short, and the
    // other way round.
    let (_f, q) = ttl_queue("ttl-override", Duration::from_secs(3600), Expiry::Drop);
    q.send_with(b"short", &SendOptions::new().ttl(SHORT))
        .unwrap();
    q.send(b"default", Timeout::TryOnce).unwrap();
    let (_g, r) = ttl_queue("ttl-override-2", SHORT, Expiry::Drop);
    r.send_with(b"long", &SendOptions::new().ttl(Duration::from_secs(3600)))
        .unwrap();
    r.send(b"default", Timeout::TryOnce).unwrap();
    std::thread::sleep(PAST);
    assert_eq!(drain(&q), vec![b"default".to_vec()]);
    assert_eq!(drain(&r), vec![b"long".to_vec()]);
    assert_eq!(q.stats().counter(Counter::Expired), 1);
    assert_eq!(r.stats().counter(Counter::Expired), 1);
}

#[test]
fn a_queue_without_ttl_keeps_its_messages_and_a_message_ttl_works_there() {
    let (_f, q) = queue(
        "ttl-none",
        Options {
            capacity: 8,
            max_message_size: 64,
            ..Options::default()
        },
    );
    q.send(b"kept", Timeout::TryOnce).unwrap();
    q.send_with(b"gone", &SendOptions::new().ttl(SHORT))
        .unwrap();
    std::thread::sleep(PAST);
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.expires_ns(), None);
    assert_eq!(m.data().unwrap(), b"kept");
    m.ack().unwrap();
    assert!(q.claim(Timeout::TryOnce).is_err());
    assert_eq!(q.dlq_list()[0].reason, "expired");
}

#[test]
fn a_redelivery_keeps_the_original_deadline() {
    let (_f, q) = ttl_queue(
        "ttl-redeliver",
        Duration::from_millis(150),
        Expiry::DeadLetter,
    );
    q.send(b"m", Timeout::TryOnce).unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    let deadline = m.expires_ns().unwrap();
    m.nack(Duration::ZERO).unwrap();
    // Redelivered before its deadline: the same deadline.
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.deliveries(), 2);
    assert_eq!(m.expires_ns(), Some(deadline));
    m.nack(Duration::ZERO).unwrap();
    // After it: never delivered again, dead-lettered with its 2 attempts.
    std::thread::sleep(Duration::from_millis(250));
    assert!(q.claim(Timeout::TryOnce).is_err());
    let dl = q.dlq_list();
    assert_eq!((dl.len(), dl[0].attempts), (1, 2));
    assert_eq!(dl[0].reason, "expired");
}

#[test]
fn a_message_in_flight_past_its_deadline_may_still_be_acked() {
    // Expiry decides delivery only: a claim made before the deadline is
    // the consumer's until its outcome.
    let (_f, q) = ttl_queue("ttl-inflight", SHORT, Expiry::DeadLetter);
    q.send(b"m", Timeout::TryOnce).unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    std::thread::sleep(PAST);
    m.ack().unwrap();
    assert_eq!(q.stats().counter(Counter::Expired), 0);
}

#[test]
fn an_expired_keyed_message_releases_its_key() {
    let (_f, q) = ttl_queue("ttl-keyed", Duration::from_secs(3600), Expiry::Drop);
    let keyed = |v: u64| SendOptions::new().key(7).version(v);
    q.send_with(b"v1", &keyed(1).ttl(SHORT)).unwrap();
    q.send_with(b"v2", &keyed(2)).unwrap();
    std::thread::sleep(PAST);
    // The scan expires v1; the key's last acked version stays 0.
    assert_eq!(q.recover().unwrap().expired, 1);
    assert_eq!(q.latest_acked_version(7), 0);
    // v1 expired: v2, the next version of the key, is claimable at once.
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.data().unwrap(), b"v2");
    m.ack().unwrap();
    assert_eq!(q.latest_acked_version(7), 2);
    sound(&q, "after a keyed expiry");
}

#[test]
fn an_expired_keyed_message_waiting_behind_its_busy_key_does_not_hold_it() {
    let (_f, q) = ttl_queue(
        "ttl-keyed-busy",
        Duration::from_secs(3600),
        Expiry::DeadLetter,
    );
    let keyed = |v: u64| SendOptions::new().key(3).version(v);
    q.send_with(b"v1", &keyed(1)).unwrap();
    q.send_with(b"v2", &keyed(2).ttl(SHORT)).unwrap();
    q.send_with(b"v3", &keyed(3)).unwrap();
    let v1 = q.claim(Timeout::TryOnce).unwrap();
    // v2 and v3 wait behind the busy key (a claim parks them).
    assert!(q.claim(Timeout::TryOnce).is_err());
    std::thread::sleep(PAST);
    v1.ack().unwrap();
    assert_eq!(drain(&q), vec![b"v3".to_vec()]);
    assert_eq!(q.dlq_list()[0].payload, b"v2");
    sound(&q, "at the end");
}

#[test]
fn maintenance_expires_messages_nobody_claims() {
    let (_f, q) = ttl_queue("ttl-maint", SHORT, Expiry::Drop);
    for m in [b"a", b"b"] {
        q.send(m, Timeout::TryOnce).unwrap();
    }
    q.send_with(
        b"delayed",
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )
    .unwrap();
    assert_eq!(q.stats().depth + q.stats().delayed, 3);
    std::thread::sleep(PAST);
    // No claim: the repair scan (run by `recover` here, by any call when
    // due otherwise) takes them out, the delayed one too.
    let r = q.recover().unwrap();
    assert_eq!(r.expired, 3);
    let s = q.stats();
    assert_eq!((s.depth, s.delayed), (0, 0));
    assert_eq!(s.counter(Counter::Expired), 3);
    sound(&q, "after the scan");
}

#[test]
fn peek_shows_the_deadline() {
    let (_f, q) = ttl_queue("ttl-peek", Duration::from_secs(60), Expiry::Drop);
    q.send(b"a", Timeout::TryOnce).unwrap();
    let before = shmq::monotonic_ns();
    let p = q.peek(10).unwrap();
    let e = p[0].expires_ns.unwrap();
    assert!(
        e > before && e <= before + 61_000_000_000,
        "{e} vs {before}"
    );
}

#[test]
fn latest_only_replacement_takes_the_new_messages_deadline() {
    let (_f, q) = queue(
        "ttl-latest",
        Options {
            capacity: 8,
            max_message_size: 64,
            key_capacity: 8,
            latest_only: true,
            ..Options::default()
        }
        .on_expiry(Expiry::Drop),
    );
    let keyed = |k: u64, v: u64| SendOptions::new().key(k).version(v);
    // Key 5: a short-lived message replaced in place by one without a
    // deadline; key 6: a long-lived one replaced by a short-lived one.
    q.send_with(b"5v1", &keyed(5, 1).ttl(SHORT)).unwrap();
    q.send_with(b"5v2", &keyed(5, 2)).unwrap();
    q.send_with(b"6v1", &keyed(6, 1).ttl(Duration::from_secs(3600)))
        .unwrap();
    q.send_with(b"6v2", &keyed(6, 2).ttl(SHORT)).unwrap();
    assert_eq!(q.stats().counter(Counter::Conflated), 2);
    std::thread::sleep(PAST);
    assert_eq!(drain(&q), vec![b"5v2".to_vec()]);
    assert_eq!(q.stats().counter(Counter::Expired), 1);
    sound(&q, "at the end");
}
