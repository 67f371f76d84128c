//! Crash tests with real processes and real SIGKILL (G3, G4, G5, G8, G9).
//!
//! The test binary re-executes itself: a child runs only the [`helper`]
//! test (`--ignored --exact helper`, ignored in a normal run), which reads
//! its [`Work`] (role and parameters) from the environment. Parents kill
//! children with `Child::kill` (SIGKILL) at random moments.
//!
//! What the torture test's children saw is recorded outside the queue, in
//! the test kit's SIGKILL ledger (`shmq_testkit::ledger`, the one `shmq
//! torture` uses too): a producer records each message id's intent before
//! it first tries to send it and the result after; a consumer checks and
//! records every claim, its intent to ack before it calls ack, and the
//! outcome after (`shmq_testkit::consumer`). The parent marks a child
//! killed in the ledger before it sends the SIGKILL, so a consumer that
//! finds a message still held by another tells a dead holder (a
//! redelivery) from a live one (a violation). Once everybody is dead and
//! the queue drained, the oracle (`shmq_testkit::oracle`) checks every id:
//! nothing lost, no delivery twice, nothing torn, every poison message
//! dead-lettered once, the engine's counters between what the ledger
//! recorded and what was under way at a kill, a file that verifies.
//!
//! A claim of a killed consumer with an intent and no result is "maybe
//! acked" only if the engine agrees: it is the message's last claim (never
//! redelivered), the queue drained empty and the message is no dead letter.
//! A claim a killed consumer held without an intent must have been
//! redelivered (or dead-lettered).
//!
//! Every child also watches its parent: when the test process is gone (the
//! child was re-parented) or after [`CHILD_LIFETIME`], it exits by itself, so
//! a failing test never leaves processes behind.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use shmq::{Counter, Options, Queue, Status, Timeout};
use shmq_testkit::child::{await_file, kill, put_file, Children, Lifeline, Work};
use shmq_testkit::consumer::Consumer;
use shmq_testkit::crew::{attach, create_ledger, fail, Crew};
use shmq_testkit::ledger::{kind, phase, send_state, Event, Sizes, DRAINER};
use shmq_testkit::oracle::Oracle;
use shmq_testkit::rules::{Order, Rules};
use shmq_testkit::{payload, Rng, Scratch};

// ---------------------------------------------------------------------------
// Shared pieces.
// ---------------------------------------------------------------------------

/// A child exits by itself after this long, whatever it is doing.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// How long a parent waits for a child's hand-shake file.
const HANDSHAKE: Duration = Duration::from_secs(20);

/// Largest payload of the torture test's queue.
const MAX_MSG: usize = 128;
/// One in this many messages is poison when a run has poison: every
/// consumer nacks it, so it ends in the dead letters after `max_deliveries`.
const POISON_ONE_IN: u64 = 2048;
/// The torture test's lease: long, so that only death detection brings
/// redeliveries.
const LEASE: Duration = Duration::from_secs(30);

/// The rules the torture test's consumers and oracle check: one keyless
/// queue, poison or not.
fn rules(poison: bool) -> Rules {
    Rules {
        queues: vec![("kill", Order::Keyless)],
        keys: 0,
        lease_ns: LEASE.as_nanos() as u64,
        max_message_size: MAX_MSG,
        poison_one_in: if poison { POISON_ONE_IN } else { 0 },
        fault: None,
    }
}

/// Waits for a child's hand-shake file.
fn handshake(path: &Path, child: &mut Child) -> String {
    await_file(path, child, HANDSHAKE)
}

fn open(work: &Work) -> Queue {
    Queue::open(&work.queue).unwrap_or_else(|e| panic!("helper: open: {e}"))
}

// ---------------------------------------------------------------------------
// The children.
// ---------------------------------------------------------------------------

shmq_testkit::helper_test!(CHILD_LIFETIME, {
    "producer" => producer,
    "consumer" => consumer,
    "hold-claims" => hold_claims,
    "poll-claim" => poll_claim,
    "hold-reservation" => hold_reservation,
    "stall-reservation" => stall_reservation,
    "clean-and-stall" => clean_and_stall,
});

/// Writes `data` into a reservation in two halves with a yield between
/// them (a kill can land on a half-written reservation), then commits.
fn reserve_in_halves(q: &Queue, data: &[u8], wait: Duration) -> shmq::Result<()> {
    let mut r = q.reserve(data.len(), wait)?;
    let half = data.len() / 2;
    let dst = r.as_mut_ptr();
    assert!(!dst.is_null());
    // SAFETY: `dst` points to the reservation's payload, `capacity() ==
    // data.len()` bytes that this process owns until it commits; both
    // halves are in bounds.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, half) };
    std::thread::yield_now();
    // SAFETY: as above, the second half.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr().add(half), dst.add(half), data.len() - half)
    };
    r.set_len(data.len()).and_then(|_| r.commit()).map(|_| ())
}

/// Sends forever (until killed): single sends, zero-copy reservations
/// written in two halves, and batches; every message id's intent is in the
/// ledger before its first try, its result after.
fn producer(work: &Work, life: &Lifeline) {
    let (q, ledger) = attach(work);
    let me = work.index as u32;
    let mut rng = Rng::new(work.seed);
    let wait = Duration::from_millis(50);
    for round in 0u64.. {
        if round % 64 == 0 {
            life.check();
        }
        let op = rng.below(10);
        let n = if op >= 8 { 2 + rng.below(7) } else { 1 };
        let Some(first) = ledger.alloc(n) else {
            // The ledger is full: nothing more to send.
            life.idle();
        };
        for id in first..first + n {
            ledger.intent(id, 0, me, 0, 0);
        }
        let data: Vec<Vec<u8>> = (first..first + n)
            .map(|id| payload::encode(id, 0, 0, MAX_MSG))
            .collect();
        let sent = match op {
            0..=5 => q.send(&data[0], wait).map(|_| 1),
            6 | 7 => reserve_in_halves(&q, &data[0], wait).map(|_| 1),
            _ => q.send_batch(&data, wait).map(|k| k as u64),
        };
        match sent {
            Ok(k) => {
                for id in first..first + n {
                    let state = if id < first + k {
                        send_state::SENT
                    } else {
                        send_state::NOT_SENT
                    };
                    ledger.sent(id, state, 0);
                }
            }
            Err(e) if matches!(e.status(), Status::Timeout | Status::Full) => {
                for id in first..first + n {
                    ledger.sent(id, send_state::NOT_SENT, 0);
                }
            }
            // A commit abandoned by a repair (or one of a batch's): what
            // went out is unknown, the intents stay.
            Err(e) if e.status() == Status::Abandoned => {}
            Err(e) => fail(&ledger, work, &format!("send: {e}")),
        }
    }
}

/// Claims forever (until killed, or until the drain flag is set and nothing
/// is left): single claims and batches, checked and settled by the kit's
/// consumer (poison nacked, the rest acked), holding a quarter of them for
/// a millisecond.
fn consumer(work: &Work, life: &Lifeline) {
    let (q, ledger) = attach(work);
    let rules = rules(work.count != 0);
    let c = Consumer::new(&rules, &ledger, work.index as u32, false);
    let mut rng = Rng::new(work.seed);
    let drain_flag = work.file("drain");
    let mut draining = false;
    for round in 0u64.. {
        if round % 32 == 0 {
            life.check();
            draining = draining || drain_flag.exists();
        }
        let wait = Duration::from_millis(if draining { 300 } else { 50 });
        let called = shmq::internals::sys::monotonic_ns();
        let got = if rng.below(10) < 4 {
            q.claim_batch(1 + rng.below(8) as usize, wait)
        } else {
            q.claim(wait).map(|m| vec![m])
        };
        let claimed = shmq::internals::sys::monotonic_ns();
        let msgs = match got {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => {
                // Finish after one whole wait found nothing once draining.
                if draining {
                    return;
                }
                draining = drain_flag.exists();
                continue;
            }
            Err(e) => fail(&ledger, work, &format!("claim: {e}")),
        };
        let hold = rng.below(4) == 0;
        if let Err(what) = c.handle(&q, 0, msgs, called, claimed, hold) {
            fail(&ledger, work, &what);
        }
    }
}

/// Claims `count` messages, reports them in `held`, and waits to be killed.
fn hold_claims(work: &Work, life: &Lifeline) {
    let q = open(work);
    let mut report = String::new();
    // The claims stay held (in flight) until this process dies.
    let mut held = Vec::new();
    for _ in 0..work.count {
        let m = q
            .claim(Duration::from_secs(10))
            .expect("hold-claims: claim");
        let data = m.data().expect("hold-claims: data");
        report.push_str(&format!(
            "{} {}\n",
            String::from_utf8_lossy(&data),
            m.deliveries()
        ));
        held.push(m);
    }
    put_file(&work.file("held"), &report);
    life.idle();
}

/// Attaches (says so in `polling`), then polls without waiting until it
/// claims a message (or for two seconds), reports it in `held` (`none` if
/// another consumer took it), and holds it until killed.
fn poll_claim(work: &Work, life: &Lifeline) {
    let q = open(work);
    put_file(&work.file("polling"), "attached\n");
    let until = Instant::now() + Duration::from_secs(2);
    let held = loop {
        match q.claim(Timeout::TryOnce) {
            Ok(m) => break Some(m),
            Err(_) if Instant::now() < until => {}
            Err(_) => break None,
        }
    };
    let report = match &held {
        Some(m) => format!(
            "{} {}\n",
            String::from_utf8_lossy(&m.data().expect("poll-claim: data")),
            m.deliveries()
        ),
        None => "none\n".into(),
    };
    put_file(&work.file("held"), &report);
    life.idle();
}

/// Attaches and reports its participant index in `ready`; after the
/// parent's `go`, sweeps for the dead and stops in the middle of the first
/// cleanup (right after marking the dead entry as being cleaned by it,
/// before any repair): reports the entry in `cleaning` and waits to be
/// killed there.
fn clean_and_stall(work: &Work, life: &Lifeline) {
    let q = open(work);
    let me = q.participant().expect("clean-and-stall: attached");
    put_file(&work.file("ready"), &format!("{me}\n"));
    life.await_path(&work.file("go"));
    let (cleaning, life) = (work.file("cleaning"), *life);
    shmq::internals::participants::hooks::set(
        shmq::internals::participants::hooks::Point::AfterClaim,
        Some(Box::new(move |i| {
            put_file(&cleaning, &format!("{i}\n"));
            life.idle()
        })),
    );
    let _ = q.recover();
    life.idle();
}

/// Reserves a slot, writes half a payload, reports the position, and waits
/// to be killed.
fn hold_reservation(work: &Work, life: &Lifeline) {
    let q = open(work);
    let mut r = q
        .reserve(32, Duration::from_secs(10))
        .expect("hold-reservation: reserve");
    r.write(b"half-written: never deliver")
        .expect("hold-reservation: write");
    put_file(&work.file("reserved"), &format!("{}\n", r.position()));
    std::mem::forget(r);
    life.idle();
}

/// Reserves a slot and writes a whole payload, reports, waits for the
/// parent's `go` (by then the reservation has timed out and been abandoned),
/// commits, and reports the commit's status.
fn stall_reservation(work: &Work, life: &Lifeline) {
    let q = open(work);
    let mut r = q
        .reserve(40, Duration::from_secs(10))
        .expect("stall-reservation: reserve");
    r.write(&[b'S'; 40]).expect("stall-reservation: write");
    put_file(&work.file("reserved"), &format!("{}\n", r.position()));
    life.await_path(&work.file("go"));
    let status = match r.commit() {
        Ok(_) => "ok".to_string(),
        Err(e) => e.status().name().to_string(),
    };
    put_file(&work.file("committed"), &format!("{status}\n"));
}

// ---------------------------------------------------------------------------
// The torture test.
// ---------------------------------------------------------------------------

/// Three producers and three consumers share a 64-slot queue for a few
/// seconds (`SHMQ_KILL_SECS`, 5 by default) while one of them is SIGKILLed
/// and restarted every 50-200 ms; leases and reservation timeouts are 30 s,
/// so only death detection brings redeliveries. Then the producers are
/// killed, the consumers drain, the parent drains what is left, and the
/// ledger must show: nothing lost, no delivery twice, nothing torn, nobody
/// wedged, a file that verifies. Deliveries are unlimited here, so nothing is
/// dead-lettered (see the poison variant below).
#[test]
fn torture_random_sigkill_of_producers_and_consumers() {
    torture("torture", false, 0);
}

/// The torture test with poison messages that every consumer nacks (one in
/// [`POISON_ONE_IN`]) and `max_deliveries` 5: each must end in the dead
/// letters, exactly once.
#[test]
fn torture_with_poison_and_dead_letters() {
    torture("poison", true, 5);
}

fn torture(name: &str, poison: bool, max_deliveries: u32) {
    let s = Scratch::new(name);
    let secs: u64 = std::env::var("SHMQ_KILL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let opts = Options {
        capacity: 64,
        max_message_size: MAX_MSG as u32,
        dlq_capacity: 4096,
        lease: LEASE,
        reservation_timeout: LEASE,
        max_deliveries,
        ..Options::default()
    };
    drop(Queue::create(&s.queue, &opts).expect("create"));
    let ledger = create_ledger(
        &s,
        Sizes {
            // Sparse: only the records written take memory.
            records: (secs * 500_000).max(2_000_000),
            // A start every 50 ms at the most, and the first six.
            instances: 64 + secs * 20,
            queues: 1,
            keys: 0,
            samples: 1 << 16,
        },
    );
    let rules = rules(poison);
    let rng = Rng::from_clock();
    eprintln!("{name}: seed {:#x}, {secs} s", rng.0);
    let mut crew = Crew::new(&s, &ledger, poison as u64, rng);
    for i in 0..3 {
        crew.start(true, i);
        crew.start(false, i);
    }
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(50 + crew.rng.below(151)));
        let k = crew.rng.below(crew.members.len() as u64) as usize;
        crew.restart(k);
    }
    let ran = run.elapsed();
    let consumer_kills = crew.kills.1;

    // Stop: kill the producers wherever they are, let the consumers drain.
    crew.kill_all(true);
    put_file(&s.file("drain"), "drain\n");
    let drain = Instant::now();
    for p in crew.members.iter_mut().filter(|p| !p.producer) {
        loop {
            match p.child.try_wait().expect("wait for a consumer") {
                Some(status) if status.success() => break,
                Some(status) => {
                    crew.early_exits
                        .push(format!("{} failed: {status}", p.name()));
                    break;
                }
                None => {
                    assert!(
                        drain.elapsed() < Duration::from_secs(30),
                        "{} wedged: still running 30 s after the drain began",
                        p.name()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    let consumers_drained = drain.elapsed();

    // The parent drains what is left (redeliveries of the last kills).
    let q = Queue::open(&s.queue).expect("open for the final drain");
    let drainer = Consumer::new(&rules, &ledger, DRAINER, false);
    let mut parent_drained = 0usize;
    loop {
        let called = shmq::internals::sys::monotonic_ns();
        match q.claim_batch(16, Duration::from_millis(300)) {
            Ok(msgs) => {
                parent_drained += msgs.len();
                let claimed = shmq::internals::sys::monotonic_ns();
                if let Err(what) = drainer.handle(&q, 0, msgs, called, claimed, false) {
                    ledger.violation(kind::WORKER, &format!("drain: {what}"));
                    break;
                }
            }
            Err(e) if e.status() == Status::Timeout => break,
            Err(e) => panic!("final drain: {e}"),
        }
        assert!(
            drain.elapsed() < Duration::from_secs(60),
            "the final drain never ends"
        );
    }

    let mut problems = std::mem::take(&mut crew.early_exits);
    let st = q.stats();
    let shape = (
        st.depth,
        st.delayed,
        st.in_flight,
        st.reserved,
        st.dlq_waiting,
    );
    if shape != (0, 0, 0, 0, 0) {
        problems.push(format!(
            "after the drain (depth, delayed, in_flight, reserved, dlq_waiting) = {shape:?}"
        ));
    }
    let listed = q.dlq_list().len() as u64;
    if st.dead_letters != listed {
        problems.push(format!(
            "stats count {} dead letters, the list has {listed}",
            st.dead_letters
        ));
    }
    drainer
        .take_dead_letters(&q, 0)
        .unwrap_or_else(|e| panic!("dead letters: {e}"));
    let queues = [q];
    let oracle = Oracle {
        rules: &rules,
        ledger: &ledger,
        queues: &queues,
        drained: &[shape == (0, 0, 0, 0, 0)],
    };
    let (outcomes, acks) = oracle.verdict();
    let o = outcomes[0];
    // A claim a killed consumer held without an intent comes back: some
    // were claimed again after the death, unless none was held at a kill.
    let events = ledger.events();
    let redelivered = events[Event::RedeliveredAfterDeath as usize];
    let never_back = (0..ledger.next_id())
        .filter(|&id| {
            let c = ledger.claim_of(id);
            c.phase == phase::CLAIMED && ledger.killed_at(c.instance).is_some()
        })
        .count() as u64;
    if consumer_kills > 0 && never_back > 0 && redelivered == 0 {
        problems.push(format!(
            "{consumer_kills} consumer kills, {never_back} claims held at a kill, and not one redelivered"
        ));
    }
    problems.extend(ledger.problems());
    let st = queues[0].stats();
    eprintln!(
        "{name}: {} kills ({} producers, {consumer_kills} consumers) in {:.1} s; \
         {} messages sent, {} claims, {} redeliveries ({redelivered} after a death, {} after a nack), \
         {} acked ({} maybe acked at a kill; engine {}, ledger {}), {} dead letters ({} poison); \
         consumers drained in {} ms, the parent then took {parent_drained}; {} dead participants cleaned",
        crew.kills.0 + crew.kills.1,
        crew.kills.0,
        ran.as_secs_f64(),
        o.sent,
        st.counter(Counter::Claimed),
        st.counter(Counter::Redelivered),
        events[Event::RedeliveredAfterNack as usize],
        o.acked,
        o.acked_at_kill,
        st.counter(Counter::Acked),
        acks[0].0,
        o.dead_lettered,
        o.poison,
        consumers_drained.as_millis(),
        st.counter(Counter::DeadParticipants),
    );
    assert!(o.sent > 0, "no message was sent at all");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A consumer holding a message is SIGKILLed; with a 60 s lease the message
/// must be claimable again at once (death detection, not lease expiry), with
/// deliveries == 2.
#[test]
fn dead_consumers_message_is_redelivered_within_milliseconds() {
    let s = Scratch::new("redeliver");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    q.send(b"order-7", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    children
        .0
        .push(Work::new("hold-claims", &s.queue, &s.dir).count(1).spawn());
    let held = handshake(&s.file("held"), &mut children.0[0]);
    assert_eq!(held, "order-7 1\n");
    assert_eq!(q.stats().in_flight, 1);

    let t0 = Instant::now();
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    let m = q
        .claim(Duration::from_secs(5))
        .expect("the dead consumer's message is claimable again");
    let latency = t0.elapsed();
    eprintln!(
        "redelivery after SIGKILL: {:.3} ms (kill, reap, detect, claim; lease 60 s)",
        latency.as_secs_f64() * 1e3
    );
    assert_eq!(m.data().expect("data"), b"order-7");
    assert_eq!(m.deliveries(), 2);
    assert!(latency < Duration::from_secs(5), "took {latency:?}");
    m.ack().expect("ack");
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight), (0, 0));
    assert!(st.counter(Counter::DeadParticipants) >= 1);
    assert!(st.counter(Counter::Reclaimed) >= 1);
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// A consumer asleep while nothing could be orphaned (only a message
/// delayed by a minute is taken, so it sleeps past the liveness beat) is
/// woken by a send, finds the message claimed by a polling consumer, and
/// that consumer is SIGKILLed: the sleeper must go back to the short beat,
/// notice the death and claim the message again (G8). The sleeper may win
/// the race for the message instead; then the round is run again (up to
/// ten rounds, until three had the polling consumer win).
#[test]
fn a_claim_made_while_a_consumer_sleeps_long_is_still_redelivered_after_death() {
    let s = Scratch::new("late-claim");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    let later = shmq::SendOptions::new().delay(Duration::from_secs(60));
    q.send_with(b"later", &later).expect("send delayed");
    let mut measured = 0;
    for round in 0..10 {
        if measured == 3 {
            break;
        }
        let dir = s.dir.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).expect("round dir");
        let sleeper = {
            let path = s.queue.clone();
            std::thread::spawn(move || {
                let w = Queue::open(&path).expect("open");
                let m = w.claim(Duration::from_secs(10)).expect("sleeper: claim");
                let got = (m.data().expect("data"), m.deliveries());
                m.ack().expect("ack");
                got
            })
        };
        let mut children = Children::default();
        children
            .0
            .push(Work::new("poll-claim", &s.queue, &dir).spawn());
        handshake(&dir.join("polling"), &mut children.0[0]);
        // Let the sleeper go past its spin into the long sleep.
        std::thread::sleep(Duration::from_millis(50));
        q.send(b"order-7", Timeout::TryOnce).expect("send");
        let held = handshake(&dir.join("held"), &mut children.0[0]);
        if held == "none\n" {
            // The sleeper took it: not the case under test.
            assert_eq!(sleeper.join().expect("sleeper"), (b"order-7".to_vec(), 1));
            continue;
        }
        assert_eq!(held, "order-7 1\n");
        let t0 = Instant::now();
        assert!(
            kill(&mut children.0[0]).is_none(),
            "the holder exited early"
        );
        let (data, deliveries) = sleeper.join().expect("sleeper");
        eprintln!(
            "round {round}: claimed again by the long sleeper {:.3} ms after the SIGKILL",
            t0.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!((data.as_slice(), deliveries), (&b"order-7"[..], 2));
        measured += 1;
    }
    eprintln!("{measured} rounds had the polling consumer win the race");
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight, st.delayed), (0, 0, 1));
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// A producer dies between reserve and commit (G5). While it lives, and after
/// its death, messages sent after it stay claimable; its half-written
/// reservation is never delivered, and once its death is noticed (here by a
/// survivor's waiting claims) the slot is reclaimed.
#[test]
fn dead_producer_between_reserve_and_commit_does_not_wedge_consumers() {
    let s = Scratch::new("reserve");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            reservation_timeout: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    q.send(b"m0", Timeout::TryOnce).expect("send m0");
    let mut children = Children::default();
    children
        .0
        .push(Work::new("hold-reservation", &s.queue, &s.dir).spawn());
    let pos = handshake(&s.file("reserved"), &mut children.0[0]);
    assert_eq!(pos.trim(), "1", "the child reserved right after m0");
    assert_eq!(q.stats().reserved, 1);

    // While the producer lives, later messages pass its reservation.
    for m in [b"m1", b"m2", b"m3"] {
        q.send(m, Timeout::TryOnce)
            .expect("send behind a reservation");
    }
    for want in [&b"m0"[..], b"m1", b"m2", b"m3"] {
        let m = q
            .claim(Duration::from_secs(5))
            .expect("claim past a reservation");
        assert_eq!(m.data().expect("data"), want);
        assert_eq!(m.deliveries(), 1);
        m.ack().expect("ack");
    }

    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );
    for m in [b"m4", b"m5", b"m6"] {
        q.send(m, Timeout::TryOnce).expect("send after the death");
    }
    for want in [&b"m4"[..], b"m5", b"m6"] {
        let m = q
            .claim(Duration::from_secs(5))
            .expect("claim after the death");
        assert_eq!(m.data().expect("data"), want);
        m.ack().expect("ack");
    }
    // Nothing else is ever delivered (the half-written payload least of all);
    // waiting claims run the liveness sweep that abandons the reservation.
    let start = Instant::now();
    while q.stats().reserved != 0 {
        match q.claim(Duration::from_millis(20)) {
            Err(e) => assert_eq!(e.status(), Status::Timeout),
            Ok(m) => panic!("delivered {:?}", m.data()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dead producer's reservation was never abandoned"
        );
    }
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight, st.reserved), (0, 0, 0));
    assert!(st.counter(Counter::Abandoned) >= 1);
    assert!(st.counter(Counter::DeadParticipants) >= 1);
    // Every slot is usable again.
    for i in 0..8u8 {
        q.send(&[i], Timeout::TryOnce)
            .expect("the whole capacity is free");
    }
    assert_eq!(
        q.send(b"x", Timeout::TryOnce).unwrap_err().status(),
        Status::Full
    );
    for i in 0..8u8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!(m.data().expect("data"), [i]);
        m.ack().expect("ack");
    }
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// The same death, repaired by an explicit `recover()` of the surviving
/// participant, which sat idle until then: `verify` notes the dead producer,
/// the reservation is abandoned at once and the queue's whole capacity serves
/// sends again.
#[test]
fn recover_abandons_a_dead_producers_reservation() {
    let s = Scratch::new("recover");
    let opts = Options {
        capacity: 4,
        max_message_size: 64,
        reservation_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let q = Queue::create(&s.queue, &opts).expect("create");
    let mut children = Children::default();
    children
        .0
        .push(Work::new("hold-reservation", &s.queue, &s.dir).spawn());
    handshake(&s.file("reserved"), &mut children.0[0]);
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );

    // `q` stayed attached but idle: nothing has noticed the death yet.
    assert_eq!(q.stats().reserved, 1);
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        report.notes.iter().any(|n| n.contains("dead")),
        "verify does not mention the dead producer: {:?}",
        report.notes
    );
    let r = q.recover().expect("recover");
    assert_eq!(r.abandoned, 1, "{r:?}");
    assert_eq!(q.stats().reserved, 0);
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    for i in 0..4u8 {
        q.send(&[i], Timeout::TryOnce)
            .expect("the whole capacity is free");
    }
    for i in 0..4u8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!((m.data().expect("data"), m.deliveries()), (vec![i], 1));
        m.ack().expect("ack");
    }
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
}

/// A consumer holding 5 of 8 messages is SIGKILLed. A survivor that waits
/// (here a producer blocked on the full queue) notices the death and cleans
/// up: all 8 messages are back in depth, none in flight, and the survivors'
/// counters record a dead participant. Then the 5 come back with
/// deliveries == 2 and the other 3 with deliveries == 1.
#[test]
fn survivors_clean_up_after_a_dead_consumer() {
    let s = Scratch::new("survivors");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    for i in 0..8 {
        q.send(format!("msg-{i}").as_bytes(), Timeout::TryOnce)
            .expect("send");
    }
    let mut children = Children::default();
    children
        .0
        .push(Work::new("hold-claims", &s.queue, &s.dir).count(5).spawn());
    let held = handshake(&s.file("held"), &mut children.0[0]);
    let held: Vec<&str> = held.lines().collect();
    assert_eq!(
        held,
        ["msg-0 1", "msg-1 1", "msg-2 1", "msg-3 1", "msg-4 1"]
    );
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight, st.consumers), (3, 5, 1));

    assert!(
        kill(&mut children.0[0]).is_none(),
        "the consumer exited early"
    );
    let other = Queue::inspect(&s.queue).expect("inspect");
    let start = Instant::now();
    loop {
        // A producer waiting for room runs the liveness sweep.
        let e = q.send(b"more", Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.status(), Status::Timeout, "{e}");
        if q.stats().in_flight == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dead consumer's claims were never cleaned up"
        );
    }
    for st in [q.stats(), other.stats()] {
        assert_eq!((st.depth, st.in_flight, st.reserved), (8, 0, 0));
        assert!(st.counter(Counter::DeadParticipants) >= 1);
        assert_eq!(st.counter(Counter::Reclaimed), 5);
        assert_eq!(st.consumers, 0, "the dead consumer still counts as live");
    }
    let mut got = Vec::new();
    for _ in 0..8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        got.push(format!(
            "{} {}",
            String::from_utf8_lossy(&m.data().expect("data")),
            m.deliveries()
        ));
        m.ack().expect("ack");
    }
    got.sort();
    assert_eq!(
        got,
        ["msg-0 2", "msg-1 2", "msg-2 2", "msg-3 2", "msg-4 2", "msg-5 1", "msg-6 1", "msg-7 1"]
    );
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// Options of the stalled-producer tests: two slots, reservations abandoned
/// after 50 ms.
fn stall_options() -> Options {
    Options {
        capacity: 2,
        max_message_size: 64,
        reservation_timeout: Duration::from_millis(50),
        ..Options::default()
    }
}

/// Waits (running maintenance through claims that find nothing) until a
/// survivor has abandoned the stalled reservation.
fn await_abandoned(q: &Queue) {
    let start = Instant::now();
    while q.stats().counter(Counter::Abandoned) == 0 {
        match q.claim(Duration::from_millis(20)) {
            Err(e) => assert_eq!(e.status(), Status::Timeout),
            Ok(m) => panic!("delivered {:?}", m.data()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the stalled reservation was never abandoned"
        );
    }
}

/// A producer process stalls past the reservation timeout with a whole
/// payload written (G5). Consumers pass its reservation, a survivor abandons
/// it, the producer's late commit gets `Abandoned` (nothing sent), and no
/// message, before or after, is torn by its late writes: the slot is not
/// reused until the producer came back.
#[test]
fn stalled_producers_late_commit_is_abandoned_and_harms_nobody() {
    let s = Scratch::new("stall");
    let q = Queue::create(&s.queue, &stall_options()).expect("create");
    let mut children = Children::default();
    children
        .0
        .push(Work::new("stall-reservation", &s.queue, &s.dir).spawn());
    handshake(&s.file("reserved"), &mut children.0[0]);
    q.send(b"fresh", Timeout::TryOnce)
        .expect("send past the stall");
    let m = q
        .claim(Duration::from_secs(5))
        .expect("claim past the stall");
    assert_eq!(
        (m.data().expect("data"), m.deliveries()),
        (b"fresh".to_vec(), 1)
    );
    m.ack().expect("ack");
    await_abandoned(&q);
    assert_eq!(q.stats().reserved, 1, "the abandoned slot is quarantined");
    q.send(b"m1", Timeout::TryOnce)
        .expect("send while quarantined");

    put_file(&s.file("go"), "go\n");
    let status = handshake(&s.file("committed"), &mut children.0[0]);
    assert_eq!(status.trim(), Status::Abandoned.name());
    let m = q.claim(Timeout::TryOnce).expect("claim");
    assert_eq!(
        m.data().expect("data"),
        b"m1",
        "the late commit tore a message"
    );
    assert_eq!(m.deliveries(), 1);
    m.ack().expect("ack");
    // The producer freed its slot: the whole capacity works, lap after lap,
    // and only what was sent is ever delivered.
    assert_eq!(q.stats().reserved, 0);
    for lap in 0..4u8 {
        for k in 0..2u8 {
            q.send(&[lap, k], Timeout::TryOnce).expect("send");
        }
        for k in 0..2u8 {
            let m = q.claim(Timeout::TryOnce).expect("claim");
            assert_eq!(m.data().expect("data"), [lap, k]);
            m.ack().expect("ack");
        }
    }
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// A producer stalls past the reservation timeout, is abandoned, and is then
/// SIGKILLed before it comes back: survivors free its quarantined slot.
#[test]
fn stalled_producer_killed_after_abandonment_frees_its_slot() {
    let s = Scratch::new("stall-kill");
    let q = Queue::create(&s.queue, &stall_options()).expect("create");
    let mut children = Children::default();
    children
        .0
        .push(Work::new("stall-reservation", &s.queue, &s.dir).spawn());
    handshake(&s.file("reserved"), &mut children.0[0]);
    await_abandoned(&q);
    assert_eq!(q.stats().reserved, 1, "the abandoned slot is quarantined");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );
    let start = Instant::now();
    while q.stats().reserved != 0 {
        match q.claim(Duration::from_millis(20)) {
            Err(e) => assert_eq!(e.status(), Status::Timeout),
            Ok(m) => panic!("delivered {:?}", m.data()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dead producer's quarantined slot was never freed"
        );
    }
    assert!(q.stats().counter(Counter::DeadParticipants) >= 1);
    for k in 0..2u8 {
        q.send(&[k], Timeout::TryOnce)
            .expect("the whole capacity is free");
    }
    for k in 0..2u8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!(m.data().expect("data"), [k]);
        m.ack().expect("ack");
    }
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// Dead-lettering while producers skip the slot, in one process: one thread
/// keeps a 4-slot queue full, the other claims and rejects. A full queue's
/// producer stands at the slot a consumer just claimed and skips it (bumping
/// the lap in the slot word) while the reject moves the message to the dead
/// letters; the move must retry over the lap change, not fail with `Corrupt`.
/// (Found by the poison torture test; failed within a few hundred rejects
/// before the engine's transitions retried over skips.)
#[test]
fn dead_lettering_survives_producers_skipping_the_slot() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let s = Scratch::new("dlqskip");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 4,
            max_message_size: 16,
            dlq_capacity: 1024,
            ..Options::default()
        },
    )
    .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, path) = (stop.clone(), s.queue.clone());
        std::thread::spawn(move || {
            let p = Queue::open(&path).expect("open");
            while !stop.load(Ordering::Relaxed) {
                let _ = p.send(b"poison", Timeout::TryOnce);
            }
        })
    };
    let start = Instant::now();
    let mut rejected = 0u64;
    let mut failure = None;
    while rejected < 20_000 && start.elapsed() < Duration::from_secs(2) {
        let m = match q.claim(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(e) if e.status() == Status::Timeout => continue,
            Err(e) => panic!("claim: {e}"),
        };
        if let Err(e) = m.reject("poison") {
            failure = Some(e);
            break;
        }
        rejected += 1;
        if rejected % 512 == 0 {
            q.dlq_purge(None).expect("purge");
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("the producer thread");
    if let Some(e) = failure {
        panic!("reject failed after {rejected} good rejects: {e}");
    }
}

/// `recover()` from an inspection handle, which is what `shmq recover` runs,
/// after a producer died holding a reservation and nobody else is attached:
/// the dead producer is cleaned up and the counters say so. (It used to
/// overflow `me + 1` with `me == u64::MAX` in `Table::claim_dead`; now the
/// call attaches for its duration, and the cleanup may happen as it takes
/// the dead one's entry, so the returned `Repairs` may be empty.)
#[test]
fn recover_from_an_inspection_handle_cleans_up_a_dead_producer() {
    let s = Scratch::new("inspect-recover");
    let opts = Options {
        capacity: 4,
        max_message_size: 64,
        reservation_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    drop(Queue::create(&s.queue, &opts).expect("create"));
    let mut children = Children::default();
    children
        .0
        .push(Work::new("hold-reservation", &s.queue, &s.dir).spawn());
    handshake(&s.file("reserved"), &mut children.0[0]);
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );
    let tool = Queue::inspect(&s.queue).expect("inspect");
    let before = tool.verify();
    assert!(
        before.notes.iter().any(|n| n.contains("dead")),
        "verify does not mention the dead producer: {:?}",
        before.notes
    );
    let r = tool.recover().expect("recover");
    assert!(r.abandoned <= 1, "{r:?}");
    let st = tool.stats();
    assert_eq!(st.reserved, 0);
    assert_eq!(st.counter(Counter::Abandoned), 1);
    assert!(st.counter(Counter::DeadParticipants) >= 1);
    let report = tool.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

// ---------------------------------------------------------------------------
// G8/G3: liveness sweeps never take the living for dead, and notice the dead
// soon enough.
// ---------------------------------------------------------------------------

/// A queue for the liveness tests: a 60 s lease, so a claim comes back only
/// by death detection.
fn liveness_options() -> Options {
    Options {
        capacity: 16,
        max_message_size: 64,
        lease: Duration::from_secs(60),
        participant_capacity: 8,
        ..Options::default()
    }
}

/// Starts a `hold-claims` child that claims `count` messages and waits in a
/// directory of its own; returns once it holds them.
fn holder(s: &Scratch, name: &str, count: u64, children: &mut Children) -> String {
    let dir = s.file(name);
    std::fs::create_dir(&dir).expect("a directory for the child");
    children.0.push(
        Work::new("hold-claims", &s.queue, &dir)
            .count(count)
            .spawn(),
    );
    let last = children.0.len() - 1;
    handshake(&dir.join("held"), &mut children.0[last])
}

/// A sweep marks a dead participant's entry as being cleaned and then
/// repairs every slot the dead one owned. While it does, a newcomer attaches
/// (and another attaches and detaches): none of them may be given that
/// entry, or the repair would take the newcomer's claim and reservation for
/// the dead one's. The sweeper is stopped at that point by a test hook.
#[test]
fn g8_a_sweep_never_takes_a_live_newcomer_for_dead() {
    use std::sync::mpsc;
    let s = Scratch::new("sweep-newcomer");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    q.send(b"x", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    assert_eq!(holder(&s, "d", 1, &mut children), "x 1\n");
    // Sent before the kill: any call of `q` after it may run the liveness
    // sweep (every call, every 2 ms) and clean the dead holder up before
    // the stopped sweep below gets to it.
    q.send(b"y", Timeout::TryOnce).expect("send");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );

    let (claimed_tx, claimed_rx) = mpsc::channel::<u64>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let sweeper = std::thread::spawn(move || {
        shmq::internals::participants::hooks::set(
            shmq::internals::participants::hooks::Point::AfterClaim,
            Some(Box::new(move |i| {
                let _ = claimed_tx.send(i);
                let _ = go_rx.recv_timeout(Duration::from_secs(30));
            })),
        );
        let r = q.recover();
        shmq::internals::participants::hooks::set(
            shmq::internals::participants::hooks::Point::AfterClaim,
            None,
        );
        (q, r)
    });
    let dead = claimed_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the sweeper found the dead holder");

    // The sweeper is between marking entry `dead` and repairing its slots.
    let n = Queue::open(&s.queue).expect("a newcomer attaches");
    assert_ne!(
        n.participant(),
        Some(dead),
        "the newcomer was given the entry being cleaned"
    );
    let m = n.claim(Timeout::TryOnce).expect("the newcomer claims");
    assert_eq!(m.data().expect("data"), b"y");
    let mut r = n
        .reserve(16, Timeout::TryOnce)
        .expect("the newcomer reserves");
    r.write(b"z").expect("write");
    let passer = Queue::open(&s.queue).expect("another newcomer attaches");
    assert_ne!(passer.participant(), Some(dead));
    drop(passer);
    go_tx.send(()).expect("let the sweeper go on");
    let (q, swept) = sweeper.join().expect("the sweeper");
    swept.expect("recover");

    // The repair acted only on what the dead holder left.
    assert_eq!(m.data().expect("the claim is still held"), b"y");
    m.ack().expect("the newcomer's claim survived the sweep");
    r.commit()
        .expect("the newcomer's reservation survived the sweep");
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        got.push((m.data().expect("data"), m.deliveries()));
        m.ack().expect("ack");
    }
    got.sort();
    assert_eq!(got, [(b"x".to_vec(), 2), (b"z".to_vec(), 1)]);
    // Once the repair is over, the entry is free for the next newcomer.
    let later = Queue::open(&s.queue).expect("attach");
    assert_eq!(later.participant(), Some(dead));
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    drop(n);
}

/// A cleaner dies in the middle of cleaning up after a dead consumer. While
/// it lives nobody else cleans that entry or reuses it; once it is dead, a
/// survivor takes the work over and the dead consumer's claim comes back.
#[test]
fn g8_a_cleaner_that_dies_mid_clean_is_taken_over_only_once_dead() {
    let s = Scratch::new("cleaner-dies");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    q.send(b"x", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    assert_eq!(holder(&s, "d", 1, &mut children), "x 1\n");
    let cdir = s.file("c");
    std::fs::create_dir(&cdir).expect("a directory for the cleaner");
    children
        .0
        .push(Work::new("clean-and-stall", &s.queue, &cdir).spawn());
    let cleaner: u64 = handshake(&cdir.join("ready"), &mut children.0[1])
        .trim()
        .parse()
        .expect("the cleaner's index");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    put_file(&cdir.join("go"), "go\n");
    let dead: u64 = handshake(&cdir.join("cleaning"), &mut children.0[1])
        .trim()
        .parse()
        .expect("the entry being cleaned");
    assert_ne!(dead, cleaner);

    // The cleaner is alive, stopped before its repairs.
    let n = Queue::open(&s.queue).expect("a newcomer attaches");
    assert_ne!(
        n.participant(),
        Some(dead),
        "the entry being cleaned was given to a newcomer"
    );
    drop(n);
    q.recover().expect("recover");
    let st = q.stats();
    assert_eq!(
        (st.in_flight, st.depth),
        (1, 0),
        "a survivor took over the work of a live cleaner"
    );

    // The cleaner dies: its work is taken over.
    assert!(
        kill(&mut children.0[1]).is_none(),
        "the cleaner exited early"
    );
    q.recover().expect("recover");
    let m = q
        .claim(Timeout::TryOnce)
        .expect("the dead consumer's claim is back");
    assert_eq!(
        (m.data().expect("data"), m.deliveries()),
        (b"x".to_vec(), 2)
    );
    m.ack().expect("ack");
    let live: Vec<u64> = q.participants().iter().map(|p| p.index).collect();
    assert_eq!(live, [q.participant().unwrap()]);
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

/// How long a dead consumer's claim may take to come back once a survivor
/// calls into shmq (or, with a watchdog, once the consumer is dead).
const BACK_WITHIN: Duration = Duration::from_millis(10);

/// Polls `probe` (an inspection handle: it repairs nothing itself) until
/// `in_flight` claims are left, for at most `limit`; returns how long it took.
fn until_in_flight(probe: &Queue, in_flight: u64, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if probe.stats().in_flight == in_flight {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::hint::spin_loop();
    }
}

/// A consumer is SIGKILLed holding a claim while the survivor is busy in its
/// own code (200 ms, as a cook with an order). The survivor's next call into
/// shmq, a claim that finds another message at once, sweeps: the dead one's
/// message is claimable again within 10 ms of that call, not 32 operations
/// later.
#[test]
fn g8_a_busy_survivors_next_call_returns_a_dead_consumers_claim() {
    let s = Scratch::new("busy-survivor");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    q.send(b"order-1", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    assert_eq!(holder(&s, "d", 1, &mut children), "order-1 1\n");
    for i in 2..6 {
        q.send(format!("order-{i}").as_bytes(), Timeout::TryOnce)
            .expect("send");
    }
    let probe = Queue::inspect(&s.queue).expect("inspect");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(probe.stats().in_flight, 1, "nobody called, nobody swept");

    let t0 = Instant::now();
    let m = q.claim(Duration::from_secs(1)).expect("claim");
    // Ours is in flight; the dead one's is not any more.
    let back = until_in_flight(&probe, 1, Duration::from_secs(1)).map(|_| t0.elapsed());
    eprintln!("a dead consumer's claim back {back:?} after a busy survivor's call");
    let back = back.expect("the dead consumer's claim is still held after the survivor's call");
    assert!(
        back < BACK_WITHIN,
        "the claim came back {back:?} after the call"
    );
    m.ack().expect("ack");
    let mut seen = Vec::new();
    while let Ok(m) = q.claim(Timeout::TryOnce) {
        seen.push((
            String::from_utf8(m.data().expect("data")).unwrap(),
            m.deliveries(),
        ));
        m.ack().expect("ack");
    }
    assert!(seen.contains(&("order-1".to_string(), 2)), "{seen:?}");
}

/// With a watchdog started (period 1 ms), a consumer SIGKILLed holding a
/// claim has it back within 10 ms although nobody calls into shmq at all.
/// Timed from the reaping of the child (its lock is gone by then); on a
/// loaded machine a scheduling delay can exceed the budget, so the best of
/// three deaths is judged.
#[test]
fn g8_a_watchdog_returns_a_dead_consumers_claim_without_any_call() {
    let s = Scratch::new("watchdog");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    let dog = q
        .start_watchdog(Duration::from_millis(1))
        .expect("start the watchdog");
    let probe = Queue::inspect(&s.queue).expect("inspect");
    let mut children = Children::default();
    let mut times = Vec::new();
    for round in 0..3 {
        q.send(format!("order-{round}").as_bytes(), Timeout::TryOnce)
            .expect("send");
        let held = holder(&s, &format!("d{round}"), 1, &mut children);
        assert_eq!(held, format!("order-{round} 1\n"));
        assert_eq!(probe.stats().in_flight, 1);
        assert!(
            kill(&mut children.0[round]).is_none(),
            "the holder exited early"
        );
        let back = until_in_flight(&probe, 0, Duration::from_secs(2));
        eprintln!("a dead consumer's claim back {back:?} after its death, with a watchdog");
        times.push(back.expect("the watchdog did not return the dead consumer's claim"));
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!(m.deliveries(), 2);
        m.ack().expect("ack");
        if back.is_some_and(|t| t < BACK_WITHIN) {
            break;
        }
    }
    let best = times.iter().min().copied().unwrap();
    assert!(best < BACK_WITHIN, "claims back after {times:?}");
    // Dropping the guard stops the thread and detaches its handle.
    drop(dog);
    let attached: Vec<u64> = probe.participants().iter().map(|p| p.index).collect();
    assert_eq!(attached, [q.participant().unwrap()]);
    let report = probe.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}
