//! The guarantees on rare paths, through the public API: each test is named
//! after the guarantee it protects and reproduces a hole a review found
//! (docs/RELIABILITY.md lists them). Each failed on the engine before its
//! fix.

use shmq::internals::ring::Outcome;
use shmq::{Options, Queue, Status, Timeout};
use std::time::Duration;

/// A fresh scratch path (each test removes its file at the end).
fn path(name: &str) -> std::path::PathBuf {
    shmq_testkit::unique_path(&format!("rare-{name}"))
}

/// G3: a consumer keeps the token of a claim that ended (here by its own
/// nack). However many transitions the slot goes through afterwards (the
/// slot word's sequence wraps), that token never settles a later claim, not
/// even one made by the same consumer at the same slot sequence, whose lease
/// is still running.
#[test]
fn g3_a_late_ack_never_settles_a_later_claim_of_the_slot() {
    let p = path("g3-wrap");
    let opts = Options {
        capacity: 1,
        max_message_size: 16,
        lease: Duration::from_secs(60),
        ..Options::default()
    };
    let q = Queue::create(&p, &opts).unwrap();
    let other = Queue::open(&p).unwrap();
    q.send(b"old", Timeout::TryOnce).unwrap();
    let stale = q.claim(Timeout::TryOnce).unwrap();
    let stale_seq = q.engine().slot_word(0).seq();
    let stale_token = stale.token();
    stale.nack(Duration::ZERO).unwrap();
    // The other consumer gets the message and acks it.
    let m = other.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.data().unwrap(), b"old");
    assert_eq!(m.deliveries(), 2);
    m.ack().unwrap();
    // Messages flow through the one slot until `q` holds a claim whose slot
    // word shows the ended claim's sequence again; an aborted reservation
    // now and then shifts the sequence so that every value comes round.
    let mut rounds = 0u64;
    let fresh = loop {
        rounds += 1;
        assert!(rounds < 1 << 24, "the slot sequence never came round");
        if rounds % 7 == 0 {
            q.reserve(1, Timeout::TryOnce).unwrap().abort().unwrap();
        }
        q.send(b"new", Timeout::TryOnce).unwrap();
        let c = q.claim(Timeout::TryOnce).unwrap();
        if q.engine().slot_word(0).seq() == stale_seq {
            break c;
        }
        c.ack().unwrap();
    };
    assert_ne!(fresh.token(), stale_token);
    let late = q.settle(stale_token, &Outcome::Ack, None, None);
    assert_eq!(late.unwrap_err().status(), Status::LeaseLost);
    // The fresh claim was not touched: still held, its payload readable.
    assert_eq!(fresh.data().unwrap(), b"new");
    fresh.ack().unwrap();
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    drop((q, other));
    let _ = std::fs::remove_file(&p);
}

/// G1: `Full` only when the queue really holds `capacity` messages. With a
/// run of unclaimed messages at the tail longer than the producer's
/// lookahead and the rest of the ring freed out of order (reservations given
/// back), every send finds room until the ring is full, and nothing is lost
/// or reordered.
#[test]
fn g1_room_freed_out_of_order_is_found_beyond_the_lookahead() {
    let p = path("g1-room");
    let opts = Options {
        capacity: 1024,
        max_message_size: 16,
        ..Options::default()
    };
    let q = Queue::create(&p, &opts).unwrap();
    for n in 0..17u32 {
        q.send(&n.to_le_bytes(), Timeout::TryOnce).unwrap();
    }
    let reserved: Vec<_> = (0..1007)
        .map(|_| q.reserve(4, Timeout::TryOnce).unwrap())
        .collect();
    assert_eq!(
        q.send(b"full", Timeout::TryOnce).unwrap_err().status(),
        Status::Full
    );
    for r in reserved {
        r.abort().unwrap();
    }
    for n in 17..1024u32 {
        if let Err(e) = q.send(&n.to_le_bytes(), Timeout::TryOnce) {
            panic!("send {n} with {} messages queued: {e}", n);
        }
    }
    assert_eq!(
        q.send(b"full", Timeout::TryOnce).unwrap_err().status(),
        Status::Full
    );
    for n in 0..1024u32 {
        let m = q.claim(Timeout::TryOnce).unwrap();
        assert_eq!(m.data().unwrap(), n.to_le_bytes());
        m.ack().unwrap();
    }
    drop(q);
    let _ = std::fs::remove_file(&p);
}

/// G3: a queue whose lease is zero would take every claim back at the next
/// repair: it is refused at creation.
#[test]
fn g3_a_zero_lease_is_refused() {
    let p = path("g3-lease0");
    let opts = Options {
        lease: Duration::ZERO,
        ..Options::default()
    };
    let e = Queue::create(&p, &opts).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("lease"), "{e}");
    assert!(!p.exists());
}

/// G7: redriving every dead letter sends back all it can: a letter of a key
/// whose newer version was acked since stays a dead letter (it would be
/// refused as stale for ever) and does not stop the others.
#[test]
fn g7_redriving_all_dead_letters_passes_over_stale_ones() {
    let p = path("g7-redrive");
    let opts = Options {
        capacity: 8,
        max_message_size: 16,
        key_capacity: 8,
        ..Options::default()
    };
    let q = Queue::create(&p, &opts).unwrap();
    let send = |key: u64, version: u64, data: &[u8]| {
        q.send_with(data, &shmq::SendOptions::new().key(key).version(version))
            .unwrap();
    };
    send(1, 1, b"k1 v1");
    q.claim(Timeout::TryOnce).unwrap().reject("bad").unwrap();
    send(2, 1, b"k2 v1");
    q.claim(Timeout::TryOnce).unwrap().reject("bad").unwrap();
    send(1, 2, b"k1 v2");
    q.claim(Timeout::TryOnce).unwrap().ack().unwrap();
    assert_eq!(q.dlq_list().len(), 2);
    assert_eq!(q.dlq_redrive(None).unwrap(), 1);
    let left = q.dlq_list();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].key, left[0].version), (1, 1));
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!((m.key(), m.data().unwrap()), (2, b"k2 v1".to_vec()));
    m.ack().unwrap();
    drop(q);
    let _ = std::fs::remove_file(&p);
}
