//! Peeking: copies of the waiting messages without claiming them, counting
//! a delivery or writing to the file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shmq::{OpenOptions, Options, PeekState, Queue, SendOptions, Timeout};
use shmq_testkit::TempFile;

fn scratch(name: &str) -> TempFile {
    TempFile(shmq_testkit::unique_path(&format!("peek-{name}")))
}

fn small() -> Options {
    Options {
        capacity: 8,
        max_message_size: 64,
        ..Options::default()
    }
}

#[test]
fn peeking_twice_counts_no_delivery_and_dead_letters_nothing() {
    let f = scratch("twice");
    let q = Queue::create(
        &f.0,
        &Options {
            max_deliveries: 2,
            ..small()
        },
    )
    .unwrap();
    for m in [&b"a"[..], b"b", b"c"] {
        q.send(m, Timeout::TryOnce).unwrap();
    }
    let first = q.peek(10).unwrap();
    let second = q.peek(10).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        first.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        [&b"a"[..], b"b", b"c"]
    );
    assert!(first
        .iter()
        .all(|p| p.state == PeekState::Ready && p.deliveries == 0));
    // Positions are in ring order.
    assert!(first.windows(2).all(|w| w[0].position < w[1].position));
    let s = q.stats();
    assert_eq!((s.depth, s.in_flight, s.dead_letters), (3, 0, 0));
    assert_eq!(q.peek(2).unwrap(), first[..2]);
    assert!(q.peek(0).unwrap().is_empty());
    // The first claim is the first delivery.
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!((m.data().unwrap(), m.deliveries()), (b"a".to_vec(), 1));
    m.ack().unwrap();
}

#[test]
fn claimed_messages_are_not_peeked_pending_and_delayed_ones_are() {
    let f = scratch("states");
    let q = Queue::create(&f.0, &small()).unwrap();
    for m in [&b"held"[..], b"nacked", b"ready"] {
        q.send(m, Timeout::TryOnce).unwrap();
    }
    q.send_with(
        b"later",
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )
    .unwrap();
    let held = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(held.data().unwrap(), b"held");
    let nacked = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(nacked.data().unwrap(), b"nacked");
    nacked.nack(Duration::ZERO).unwrap();
    let got = q.peek(usize::MAX).unwrap();
    let seen: Vec<_> = got
        .iter()
        .map(|p| (&p.payload[..], p.state, p.deliveries))
        .collect();
    assert_eq!(
        seen,
        [
            (&b"nacked"[..], PeekState::Pending, 1),
            (b"ready", PeekState::Ready, 0),
            (b"later", PeekState::Delayed, 0),
        ]
    );
    let now = shmq::monotonic_ns();
    let due = got[2].not_before_ns.expect("a delayed message's due time");
    assert!(due > now + 3000 * 1_000_000_000, "due {due}, now {now}");
    assert!(got[..2].iter().all(|p| p.not_before_ns.is_none()));
    held.ack().unwrap();
}

#[test]
fn a_read_only_handle_peeks_and_changes_nothing() {
    let f = scratch("read-only");
    let q = Queue::create(&f.0, &small()).unwrap();
    q.send_with(b"k", &SendOptions::new()).unwrap();
    q.send(b"x", Timeout::TryOnce).unwrap();
    let before = std::fs::read(&f.0).unwrap();
    let ro = Queue::open_with(&f.0, &OpenOptions::read_only()).unwrap();
    assert!(ro.read_only());
    let got = ro.peek(8).unwrap();
    assert_eq!(got, q.peek(8).unwrap());
    assert_eq!(got.len(), 2);
    drop(ro);
    assert!(std::fs::read(&f.0).unwrap() == before, "the file changed");
    let inspect = Queue::inspect(&f.0).unwrap();
    assert_eq!(inspect.peek(8).unwrap(), got);
}

/// A payload whose every byte can be checked: an 8-byte counter, then a
/// byte pattern of a length the counter gives, then a checksum of both.
fn pattern(n: u64) -> Vec<u8> {
    let mut v = n.to_le_bytes().to_vec();
    v.extend(vec![n as u8; 8 + (n % 40) as usize]);
    let sum = v
        .iter()
        .fold(0u32, |a, &b| a.wrapping_mul(31).wrapping_add(b as u32));
    v.extend(sum.to_le_bytes());
    v
}

fn check_pattern(p: &[u8]) {
    assert!(p.len() >= 12, "torn: {p:?}");
    let n = u64::from_le_bytes(p[..8].try_into().unwrap());
    assert_eq!(p, pattern(n), "torn payload");
}

/// Sends (and claims, or replaces) from other threads while this one
/// peeks: no copy may be torn.
fn peek_under_traffic(name: &str, opts: Options, keyed: bool) {
    let f = scratch(name);
    let q = Queue::create(&f.0, &opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let path = f.0.clone();
    let producer = {
        let stop = stop.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            let q = Queue::open(&path).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let o = SendOptions::new()
                    .key(if keyed { 1 + n % 2 } else { 0 })
                    .timeout(Timeout::TryOnce);
                if q.send_with(&pattern(n), &o).is_ok() {
                    n += 1;
                }
            }
            n
        })
    };
    let consumer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let q = Queue::open(&path).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = q.claim(Timeout::TryOnce) {
                    check_pattern(&m.data().unwrap());
                    if n % 5 == 0 {
                        m.nack(Duration::ZERO).unwrap();
                    } else {
                        m.ack().unwrap();
                    }
                    n += 1;
                }
                if keyed {
                    // Let the replacements pile up in place.
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let mut peeked = 0u64;
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        for p in q.peek(usize::MAX).unwrap() {
            check_pattern(&p.payload);
            peeked += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().unwrap();
    consumer.join().unwrap();
    eprintln!("{name}: {sent} sent, {peeked} copies peeked and checked");
    assert!(sent > 0 && peeked > 0, "{sent} sent, {peeked} peeked");
}

#[test]
fn peeks_under_sends_claims_and_nacks_are_never_torn() {
    peek_under_traffic("traffic", small(), false);
}

#[test]
fn peeks_under_latest_only_replacement_in_place_are_never_torn() {
    peek_under_traffic(
        "latest-only",
        Options {
            latest_only: true,
            key_capacity: 8,
            ..small()
        },
        true,
    );
}
