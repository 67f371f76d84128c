//! The Rust API end to end on a real file, in one process.

use shmq::{Counter, Histogram, Options, Queue, SendOptions, Status, Timeout};
use std::time::Duration;

/// A fresh scratch path (each test removes its file at the end).
fn path(name: &str) -> std::path::PathBuf {
    shmq_testkit::unique_path(&format!("api-{name}"))
}

fn small() -> Options {
    Options {
        capacity: 8,
        max_message_size: 64,
        ..Options::default()
    }
}

#[test]
fn send_claim_ack_across_two_handles() {
    let p = path("basic");
    let producer = Queue::create(&p, &small()).unwrap();
    let consumer = Queue::open(&p).unwrap();
    for i in 0..8u8 {
        producer.send(&[i; 3], Timeout::TryOnce).unwrap();
    }
    let e = producer.send(b"x", Timeout::TryOnce).unwrap_err();
    assert_eq!(e.status(), Status::Full);
    assert!(e.message().contains(&*p.to_string_lossy()), "{e}");
    let e = producer.send(b"x", Duration::from_millis(20)).unwrap_err();
    assert_eq!(e.status(), Status::Timeout);
    for i in 0..8u8 {
        let m = consumer.claim(Timeout::TryOnce).unwrap();
        assert_eq!(m.data().unwrap(), vec![i; 3]);
        assert_eq!(m.deliveries(), 1);
        m.ack().unwrap();
    }
    assert_eq!(
        consumer.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    assert_eq!(
        consumer
            .claim(Duration::from_millis(10))
            .unwrap_err()
            .status(),
        Status::Timeout
    );
    let s = consumer.stats();
    assert_eq!(s.counter(Counter::Sent), 8);
    assert_eq!(s.counter(Counter::Acked), 8);
    assert_eq!(s.counter(Counter::Full), 1);
    assert_eq!(s.counter(Counter::Timeouts), 2);
    // Latencies are sampled: every message when they are a millisecond
    // apart, one in 16 in a burst; a sampled message is timed end to end.
    let sampled = s.histogram(Histogram::LeadTime).count;
    assert!((1..=8).contains(&sampled), "{sampled} sampled");
    assert_eq!(s.histogram(Histogram::Processing).count, sampled);
    assert_eq!(s.histogram(Histogram::EndToEnd).count, sampled);
    assert_eq!(
        (s.depth, s.in_flight, s.producers, s.consumers),
        (0, 0, 1, 1)
    );
    drop(consumer);
    drop(producer);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn create_refuses_existing_and_open_refuses_garbage() {
    let p = path("exists");
    let q = Queue::create(&p, &small()).unwrap();
    assert_eq!(
        Queue::create(&p, &small()).unwrap_err().status(),
        Status::Exists
    );
    drop(q);
    let mode = std::fs::metadata(&p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    std::fs::write(&p, vec![7u8; 8192]).unwrap();
    assert_eq!(Queue::open(&p).unwrap_err().status(), Status::Incompatible);
    std::fs::remove_file(&p).unwrap();
    assert_eq!(Queue::open(&p).unwrap_err().status(), Status::NotFound);
}

#[test]
fn nack_reject_and_dead_letters() {
    let p = path("dlq");
    let q = Queue::create(
        &p,
        &Options {
            max_deliveries: 2,
            ..small()
        },
    )
    .unwrap();
    q.send(b"poison", Timeout::TryOnce).unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    m.nack(Duration::ZERO).unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.deliveries(), 2);
    m.nack(Duration::ZERO).unwrap();
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    q.send(b"bad", Timeout::TryOnce).unwrap();
    q.claim(Timeout::TryOnce)
        .unwrap()
        .reject("cannot parse")
        .unwrap();
    let dl = q.dlq_list();
    assert_eq!(dl.len(), 2);
    assert_eq!(dl[0].payload, b"poison");
    assert!(dl[0].reason.contains("max_deliveries"), "{}", dl[0].reason);
    assert_eq!(dl[1].reason, "cannot parse");
    assert_eq!(q.dlq_redrive(Some(dl[1].id)).unwrap(), 1);
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!((m.data().unwrap(), m.deliveries()), (b"bad".to_vec(), 1));
    m.ack().unwrap();
    assert_eq!(q.dlq_purge(None).unwrap(), 1);
    assert!(q.dlq_list().is_empty());
    assert!(q.verify().problems.is_empty());
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn delayed_send_and_nack_delay() {
    let p = path("delay");
    let q = Queue::create(&p, &small()).unwrap();
    q.send_with(
        b"later",
        &SendOptions::new().delay(Duration::from_millis(30)),
    )
    .unwrap();
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    assert_eq!(q.stats().delayed, 1);
    let t = std::time::Instant::now();
    let m = q.claim(Duration::from_secs(2)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(20));
    m.nack(Duration::from_millis(20)).unwrap();
    let m = q.claim(Duration::from_secs(2)).unwrap();
    assert_eq!(m.deliveries(), 2);
    m.ack().unwrap();
    std::fs::remove_file(&p).unwrap();
}

/// A consumer waiting while only delayed messages are taken sleeps past the
/// liveness beat (nothing could be orphaned), yet a send wakes it, and the
/// first delayed message is claimed once due.
#[test]
fn a_consumer_sleeping_behind_delayed_messages_wakes_for_a_send_and_when_due() {
    let p = path("delay-sleep");
    let q = Queue::create(&p, &small()).unwrap();
    let far = SendOptions::new().delay(Duration::from_secs(60));
    q.send_with(b"far", &far).unwrap();
    let sender = {
        let p = p.clone();
        std::thread::spawn(move || {
            let s = Queue::open(&p).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.send(b"now", Timeout::TryOnce).unwrap();
        })
    };
    let m = q.claim(Duration::from_secs(10)).unwrap();
    assert_eq!(m.data().unwrap(), b"now");
    m.ack().unwrap();
    sender.join().unwrap();
    let soon = SendOptions::new().delay(Duration::from_millis(40));
    q.send_with(b"soon", &soon).unwrap();
    let t = std::time::Instant::now();
    let m = q.claim(Duration::from_secs(10)).unwrap();
    assert_eq!(m.data().unwrap(), b"soon");
    assert!(t.elapsed() >= Duration::from_millis(30));
    m.ack().unwrap();
    assert_eq!(q.stats().delayed, 1);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn lease_expiry_redelivers_and_late_ack_is_lease_lost() {
    let p = path("lease");
    let q = Queue::create(
        &p,
        &Options {
            lease: Duration::from_millis(20),
            ..small()
        },
    )
    .unwrap();
    let other = Queue::open(&p).unwrap();
    q.send(b"slow", Timeout::TryOnce).unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    let again = other.claim(Duration::from_secs(2)).unwrap();
    assert_eq!(again.deliveries(), 2);
    assert_eq!(m.ack().unwrap_err().status(), Status::LeaseLost);
    again.ack().unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn closing_a_handle_redelivers_what_it_held() {
    let p = path("close");
    let q = Queue::create(&p, &small()).unwrap();
    let c = Queue::open(&p).unwrap();
    q.send(b"held", Timeout::TryOnce).unwrap();
    let m = c.claim(Timeout::TryOnce).unwrap();
    let _ = m; // no outcome: the handle closes with the claim held
    drop(c);
    let m = q.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.deliveries(), 2);
    m.ack().unwrap();
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn zero_copy_reserve_commit_and_batches() {
    let p = path("batch");
    let q = Queue::create(&p, &small()).unwrap();
    let mut r = q.reserve(5, Timeout::TryOnce).unwrap();
    r.write(b"hello").unwrap();
    r.commit().unwrap();
    let r = q.reserve(5, Timeout::TryOnce).unwrap();
    r.abort().unwrap();
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
    assert_eq!(q.send_batch(&msgs, Timeout::TryOnce).unwrap(), 7);
    let got = q.claim_batch(100, Timeout::TryOnce).unwrap();
    assert_eq!(got.len(), 8);
    assert_eq!(got[0].data().unwrap(), b"hello");
    assert_eq!(got[7].data().unwrap(), vec![6]);
    assert_eq!(q.ack_batch(&got).unwrap(), 8);
    assert_eq!(
        q.send(&[0; 65], Timeout::TryOnce).unwrap_err().status(),
        Status::TooLarge
    );
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn a_new_boot_id_makes_every_old_participant_dead() {
    use std::sync::atomic::Ordering;
    let p = path("boot");
    let q = Queue::create(&p, &small()).unwrap();
    let old = Queue::open(&p).unwrap();
    q.send(b"held", Timeout::TryOnce).unwrap();
    let m = old.claim(Timeout::TryOnce).unwrap();
    // Simulate a reboot: the file says it was last attached under another
    // boot id. (The old handle's lock is still held here; after a real
    // reboot it would be gone too.)
    let mem = q.engine().mem();
    use shmq::internals::memory::Memory;
    mem.u64_at(shmq::internals::layout::hdr::BOOT_ID)
        .fetch_xor(1, Ordering::Relaxed);
    let fresh = Queue::open(&p).unwrap();
    // Every participant attached before the "reboot" was cleaned up: the
    // claim is claimable again, and the old holder's ack is refused.
    let again = fresh.claim(Timeout::TryOnce).unwrap();
    assert_eq!(
        (again.data().unwrap(), again.deliveries()),
        (b"held".to_vec(), 2)
    );
    assert_eq!(m.ack().unwrap_err().status(), Status::LeaseLost);
    again.ack().unwrap();
    assert!(fresh.stats().counter(Counter::DeadParticipants) >= 2);
    drop((old, q, fresh));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn each_file_gets_its_own_nonzero_file_id() {
    let (a, b) = (path("file-id-a"), path("file-id-b"));
    let qa = Queue::create(&a, &small()).unwrap();
    let qb = Queue::create(&b, &small()).unwrap();
    let (ia, ib) = (qa.info().file_id, qb.info().file_id);
    assert_ne!(ia, 0);
    assert_ne!(ib, 0);
    assert_ne!(ia, ib);
    // Kept by the file: another handle reads the same id.
    assert_eq!(Queue::inspect(&a).unwrap().info().file_id, ia);
    drop((qa, qb));
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
}

#[test]
fn acks_by_token_take_the_fast_path_or_the_general_one_and_skip_lost_leases() {
    let p = path("ack-tokens");
    let q = Queue::create(
        &p,
        &Options {
            key_capacity: 4,
            ..small()
        },
    )
    .unwrap();
    q.send(b"a", Timeout::TryOnce).unwrap();
    // A keyed claim is acked by the general path (it records its version).
    q.send_with(b"k", &SendOptions::new().key(3).version(5))
        .unwrap();
    q.send(b"b", Timeout::TryOnce).unwrap();
    let got = q.claim_batch(8, Timeout::TryOnce).unwrap();
    assert_eq!(got.len(), 3);
    let tokens: Vec<u64> = got.iter().map(|m| m.token()).collect();
    // The first is acked alone: in the batch its lease is lost, skipped.
    q.ack_token(tokens[0], None, None).unwrap();
    let mut asked = Vec::new();
    let acked = q
        .ack_tokens(tokens.len(), |i| {
            asked.push(i);
            (tokens[i], None, None)
        })
        .unwrap();
    assert_eq!((acked, asked), (2, vec![0, 1, 2]));
    assert_eq!(q.latest_acked_version(3), 5);
    let s = q.stats();
    assert_eq!(s.counter(Counter::Acked), 3);
    assert_eq!(s.counter(Counter::LeaseLost), 1);
    assert_eq!((s.depth, s.in_flight), (0, 0));
    // An ack of a claim no longer held is the general path's error, and a
    // forged token stops a batch before the claims after it.
    let e = q.ack_token(tokens[1], None, None).unwrap_err();
    assert_eq!(e.status(), Status::LeaseLost);
    assert!(e.message().contains(": ack: "), "{e}");
    q.send(b"c", Timeout::TryOnce).unwrap();
    let c = q.claim(Timeout::TryOnce).unwrap();
    let e = q
        .ack_tokens(2, |i| {
            if i == 0 {
                (0, None, None)
            } else {
                (c.token(), None, None)
            }
        })
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    assert!(e.message().contains(": ack: "), "{e}");
    c.ack().unwrap();
    assert_eq!(q.stats().counter(Counter::Acked), 4);
    drop(got);
    drop(q);
    std::fs::remove_file(&p).unwrap();
}
