//! Purge of a queue's waiting messages, and message expiry (time to live).
//!
//! No assertion here is on speed: short TTLs and sleeps longer than them
//! only make a deadline pass.

use std::time::Duration;

use shmq::{Counter, Options, Queue, SendOptions, Status, Timeout};
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
