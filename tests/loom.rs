//! Loom models of the slot protocol ([`shmq::internals::ring`]) and of the sleep/wake
//! handshake ([`shmq::internals::wait`]), each also run with one participant that stops
//! for good after its k-th memory access, for every k.
//!
//! Run them with:
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg shmq_loom" cargo test --release --test loom
//! ```
//!
//! (add `-- --nocapture` to see how many crash points and executions each
//! model explored and how long it took; without `LOOM_MAX_PREEMPTIONS` the
//! models use 2). The ignored models fail: `-- --ignored` shows the engine
//! bug they document and the loom limitation of `sleep_wake_without_fence`.
//!
//! # What is modelled
//!
//! An [`Engine`] over [`LoomMemory`], shared by loom threads through an
//! `Arc`; each thread is a participant (a process) with its own index. The
//! memory models only the words the protocol touches (the header's hot
//! words, the liveness and tally words of each participant entry, the slots
//! and the dead-letter record): see [`LoomMemory::with_regions`] for why.
//!
//! # Crashes
//!
//! loom cannot kill a process, so a crash is a participant whose thread
//! stops for good between two of its memory accesses: the model gives it a
//! step budget of k accesses ([`LoomMemory::set_step_budget`]), the access
//! after the k-th unwinds with [`Crashed`] before it touches loom state, and
//! the participant's operations run inside `catch_unwind`, so its thread
//! just ends. The same thread then becomes a survivor process that found the
//! dead one (through its lock, in the real queue) and runs
//! [`Engine::repair`] with it declared dead, concurrently with the other
//! participants. Every crash test loops k = 0, 1, 2, ... until the
//! participant completes without crashing in every execution loom explored.
//!
//! # Outcomes
//!
//! As in Agrona's concurrency tests, each model lists the outcomes it allows
//! and fails on any other: after every thread ended, a checker repairs once
//! more, drains the queue, and compares what each side saw.
#![cfg(shmq_loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use shmq::internals::layout::{hdr, Layout, Params};
use shmq::internals::memory::{Loads, LoomMemory, Memory};
use shmq::internals::ring::{state, Claim, Engine, Fast, Outcome, Repairs, Settled, Tally};
use shmq::internals::wait::{Futex, WaitPoint};
use shmq::Status;
use std::cell::{Cell, RefCell};
use std::time::Duration;

type Shared = Arc<Engine<LoomMemory>>;

// ---------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------

fn layout(capacity: u64) -> Layout {
    Layout::new(Params {
        capacity,
        max_message_size: MSG as u64,
        key_capacity: 0,
        dlq_capacity: 1,
        participant_capacity: PARTICIPANTS,
    })
    .unwrap()
}

/// An empty queue without keys (see [`harness::engine_in`]).
fn engine(capacity: u64) -> Shared {
    Arc::new(engine_in(layout(capacity), &[]))
}

#[path = "common/loom_harness.rs"]
mod harness;
use harness::{
    assert_acked_once_despite_the_stall, body, check, check_crashes, check_stalls, engine_in,
    participant, read, stalling, Got, CHECKER, CONSUMER, LEASE_NS, MSG, OTHER, PARTICIPANTS,
    PRODUCER,
};

// ---------------------------------------------------------------------
// Participants' operations
// ---------------------------------------------------------------------

/// Sends message `n` (its version is `n`).
fn send(e: &Engine<LoomMemory>, me: u64, n: u64) -> shmq::Result<()> {
    let r = e.reserve(me, 0, MSG)?;
    // SAFETY: a reservation this test just made (or one a repair abandoned), not committed; the payload fits.
    unsafe { e.write_payload(&r, &body(n)) };
    e.commit(me, &r, MSG, 0, n, None, 0).map(|_| ())
}

/// The checker, after every thread ended: repairs once more (declaring
/// `dead` dead), claims and acks everything claimable, checks that every
/// slot is free afterwards and that the queue still takes and gives a
/// message (nothing wedged). Returns the drained messages in claim order.
fn drain(e: &Engine<LoomMemory>, dead: &[u64]) -> (Repairs, Vec<Got>) {
    drain_at(e, 0, dead)
}

/// [`drain`] at time `now` (for expired leases).
fn drain_at(e: &Engine<LoomMemory>, now: u64, dead: &[u64]) -> (Repairs, Vec<Got>) {
    let rep = e.repair(CHECKER, now, &|o| dead.contains(&o)).unwrap();
    let mut out = Vec::new();
    while let Some(c) = e.claim(CHECKER, now).unwrap() {
        out.push(read(e, &c));
        assert_eq!(
            e.settle(CHECKER, c.token(), &Outcome::Ack, now).unwrap(),
            Settled::Acked
        );
        assert!(
            out.len() <= 4,
            "claimed more messages than were sent: {out:?}"
        );
    }
    let cap = e.layout().params.capacity;
    for i in 0..cap {
        let w = e.slot_word(i);
        assert_eq!(w.state(), state::FREE, "slot {i} left {w:?} after {out:?}");
    }
    send(e, CHECKER, 99).expect("the queue takes a message after repair");
    let c = e.claim(CHECKER, now).unwrap().expect("and gives it back");
    assert_eq!(read(e, &c).n, 99);
    e.settle(CHECKER, c.token(), &Outcome::Ack, now).unwrap();
    (rep, out)
}

fn sum(a: Repairs, b: Repairs) -> Repairs {
    let mut s = a;
    s.add(&b);
    s
}

// ---------------------------------------------------------------------
// Model 1: reserve/commit against claim
// ---------------------------------------------------------------------

/// Messages the producer sends in model 1.
const SENDS: u64 = 2;
/// Sends the producer of model 1 tries on a full queue.
const SEND_TRIES: usize = 2;
/// Claims the consumer tries in model 1.
const CLAIM_TRIES: usize = 3;

/// What the producer of model 1 did.
struct ProducerEnd {
    /// Sends that returned Ok.
    sent: u64,
    /// Its survivor's repair, if it crashed.
    repair: Option<Repairs>,
}

/// What a consumer saw.
#[derive(Default)]
struct Seen {
    /// Claims that returned, in order.
    claimed: RefCell<Vec<Got>>,
    /// A claim whose ack had begun and not returned.
    acking: Cell<Option<Got>>,
    /// Claims acked, in order.
    acked: RefCell<Vec<Got>>,
}

impl Seen {
    /// Reads a claimed message, records it and acks it.
    fn consume(&self, e: &Engine<LoomMemory>, me: u64, c: Claim) {
        let g = read(e, &c);
        self.claimed.borrow_mut().push(g);
        self.acking.set(Some(g));
        let s = e.settle(me, c.token(), &Outcome::Ack, 0);
        assert_eq!(s.unwrap(), Settled::Acked);
        self.acking.set(None);
        self.acked.borrow_mut().push(g);
    }

    fn end(self, repair: Option<Repairs>) -> ConsumerEnd {
        ConsumerEnd {
            acked: self.acked.take(),
            acking: self.acking.get(),
            claimed: self.claimed.take(),
            repair,
        }
    }
}

/// What a consumer did.
#[derive(Debug)]
struct ConsumerEnd {
    /// Messages claimed, read and acked, in order.
    acked: Vec<Got>,
    /// A claim whose ack had begun when it crashed.
    acking: Option<Got>,
    /// Claims that returned.
    claimed: Vec<Got>,
    /// Its survivor's repair, if it crashed.
    repair: Option<Repairs>,
}

impl ConsumerEnd {
    fn crashed(&self) -> bool {
        self.repair.is_some()
    }
}

/// The allowed outcomes for messages 1..=sends, all committed, when the
/// consumers `ends` (at most one of which crashed) acked what they claimed
/// and the checker drained the rest: every message is delivered to the end
/// (acked by a consumer or drained by the checker) exactly once, except the
/// one whose ack a crashed consumer had begun, which may also be gone (the
/// ack took effect before the crash). A message that a crashed consumer had
/// claimed and not acked reaches its end on delivery 2; one whose claim was
/// cut short (the claim did not return) on delivery 1 or 2.
fn check_accounted(sends: u64, ends: &[&ConsumerEnd], drained: &[Got]) {
    for n in 1..=sends {
        let ended: Vec<Got> = ends
            .iter()
            .flat_map(|c| c.acked.iter())
            .chain(drained)
            .filter(|g| g.n == n)
            .copied()
            .collect();
        let dead = || ends.iter().filter(|c| c.crashed());
        let acking = dead().any(|c| c.acking.map(|g| g.n) == Some(n));
        let held_by_dead =
            dead().any(|c| c.claimed.iter().any(|g| g.n == n) && !c.acked.iter().any(|g| g.n == n));
        let why = || format!("message {n}: consumers {ends:?}, checker {drained:?}");
        match ended.as_slice() {
            [] => assert!(acking, "lost {}", why()),
            [g] if held_by_dead => assert_eq!(g.deliveries, 2, "{}", why()),
            [g] => assert!(g.deliveries <= 2, "{}", why()),
            _ => panic!("delivered twice: {}", why()),
        }
    }
}

fn producer_thread(e: Shared, budget: Option<u64>, sends: u64) -> thread::JoinHandle<ProducerEnd> {
    thread::spawn(move || {
        let sent = Cell::new(0);
        let done = participant(budget, || {
            'sends: for n in 1..=sends {
                // On a full queue, retry a few times, then stop sending.
                for _ in 0..SEND_TRIES {
                    match send(&e, PRODUCER, n) {
                        Ok(()) => {
                            sent.set(n);
                            continue 'sends;
                        }
                        Err(err) => assert_eq!(err.status(), Status::Full),
                    }
                    thread::yield_now();
                }
                break;
            }
        });
        let repair = done
            .is_none()
            .then(|| e.repair(OTHER, 0, &|o| o == PRODUCER).unwrap());
        ProducerEnd {
            sent: sent.get(),
            repair,
        }
    })
}

fn consumer_thread(
    e: Shared,
    budget: Option<u64>,
    tries: usize,
) -> thread::JoinHandle<ConsumerEnd> {
    thread::spawn(move || {
        let seen = Seen::default();
        let done = participant(budget, || {
            for _ in 0..tries {
                match e.claim(CONSUMER, 0).unwrap() {
                    Some(c) => seen.consume(&e, CONSUMER, c),
                    None => thread::yield_now(),
                }
            }
        });
        let repair = done
            .is_none()
            .then(|| e.repair(OTHER, 0, &|o| o == CONSUMER).unwrap());
        seen.end(repair)
    })
}

/// Model 1, with capacity 2 (both messages fit) or 1 (the second send may
/// find the queue full; the producer retries, then stops, so `sent` may be
/// less than SENDS, and the slot's second lap is exercised). Allowed
/// outcomes:
/// - nobody crashes: the consumer acked a prefix of 1..=SENDS, each on its
///   first delivery, and the checker drains the rest, in order;
/// - the producer crashed after `sent` sends returned: the messages seen
///   are 1..=m in order, first deliveries, with m = sent (its next send, if
///   it had begun, was abandoned or never reserved) or m = sent + 1 (it
///   crashed after its commit took effect); at most one reservation was
///   abandoned, and only when m = sent;
/// - the consumer crashed: see [`check_accounted`].
fn send_claim(budget: Option<u64>, crash_producer: bool, capacity: u64) -> bool {
    send_claim_with(budget, crash_producer, capacity, consumer_thread)
}

/// [`consumer_thread`] claiming in runs, as a batch of the C ABI's
/// `shmq_claim_packed` does: [`Engine::claim_fast_run`] (the side path
/// checked once for the run), and the general claim when the run stops at
/// something that is not the common case.
fn run_consumer_thread(
    e: Shared,
    budget: Option<u64>,
    tries: usize,
) -> thread::JoinHandle<ConsumerEnd> {
    thread::spawn(move || {
        let seen = Seen::default();
        let done = participant(budget, || {
            for _ in 0..tries {
                let mut got = Vec::new();
                let mut tally = Tally::default();
                let (n, stop) = e
                    .claim_fast_run(CONSUMER, 0, SENDS as usize, &mut tally, |c| got.push(c))
                    .unwrap();
                assert_eq!(n, got.len());
                if n == 0 && matches!(stop, Fast::Slow) {
                    got.extend(e.claim(CONSUMER, 0).unwrap());
                }
                if got.is_empty() {
                    thread::yield_now();
                }
                for c in got {
                    seen.consume(&e, CONSUMER, c);
                }
            }
        });
        let repair = done
            .is_none()
            .then(|| e.repair(OTHER, 0, &|o| o == CONSUMER).unwrap());
        seen.end(repair)
    })
}

fn send_claim_with(
    budget: Option<u64>,
    crash_producer: bool,
    capacity: u64,
    consumer_thread: fn(Shared, Option<u64>, usize) -> thread::JoinHandle<ConsumerEnd>,
) -> bool {
    let e = engine(capacity);
    let (pb, cb) = if crash_producer {
        (budget, None)
    } else {
        (None, budget)
    };
    let p = producer_thread(e.clone(), pb, SENDS);
    let c = consumer_thread(e.clone(), cb, CLAIM_TRIES);
    let p = p.join().unwrap();
    let c = c.join().unwrap();
    let mut dead = Vec::new();
    if p.repair.is_some() {
        dead.push(PRODUCER);
    }
    if c.repair.is_some() {
        dead.push(CONSUMER);
    }
    let (rep, drained) = drain(&e, &dead);
    let rep = sum(
        rep,
        sum(p.repair.unwrap_or_default(), c.repair.unwrap_or_default()),
    );
    assert_eq!(rep.dead_lettered + rep.dlq_waiting, 0);

    if c.repair.is_none() {
        // The consumer finished: it acked what it claimed.
        assert_eq!(c.acked, c.claimed);
        let seen: Vec<Got> = c.acked.iter().chain(&drained).copied().collect();
        let m = seen.len() as u64;
        let expect: Vec<Got> = (1..=m).map(|n| Got { n, deliveries: 1 }).collect();
        assert_eq!(seen, expect, "consumer {:?}, checker {drained:?}", c.acked);
        assert_eq!(rep.redelivered, 0);
        if p.repair.is_none() {
            assert_eq!((m, rep.abandoned), (p.sent, 0));
            // Only a full queue stops the producer early.
            assert!(capacity < SENDS || p.sent == SENDS);
        } else {
            assert!(
                (m == p.sent && rep.abandoned <= 1) || (m == p.sent + 1 && rep.abandoned == 0),
                "producer sent {}, {m} seen, {rep:?}",
                p.sent
            );
        }
    } else {
        // The consumer crashed; the producer finished (maybe early, on a
        // full queue).
        assert!(capacity < SENDS || p.sent == SENDS);
        assert_eq!(rep.abandoned, 0);
        check_accounted(p.sent, &[&c], &drained);
    }
    p.repair.is_some() || c.repair.is_some()
}

#[test]
fn send_claim_no_crash() {
    check("send_claim_no_crash", |b| send_claim(b, true, 2));
}

#[test]
fn send_claim_capacity_1_no_crash() {
    check("send_claim_capacity_1_no_crash", |b| send_claim(b, true, 1));
}

#[test]
fn send_claim_capacity_1_producer_crash() {
    check_crashes("send_claim_capacity_1_producer_crash", |b| {
        send_claim(b, true, 1)
    });
}

#[test]
fn send_claim_capacity_1_consumer_crash() {
    check_crashes("send_claim_capacity_1_consumer_crash", |b| {
        send_claim(b, false, 1)
    });
}

#[test]
fn send_claim_producer_crash() {
    check_crashes("send_claim_producer_crash", |b| send_claim(b, true, 2));
}

#[test]
fn send_claim_consumer_crash() {
    check_crashes("send_claim_consumer_crash", |b| send_claim(b, false, 2));
}

#[test]
fn send_claim_runs_no_crash() {
    check("send_claim_runs_no_crash", |b| {
        send_claim_with(b, true, 2, run_consumer_thread)
    });
}

#[test]
fn send_claim_runs_capacity_1_no_crash() {
    check("send_claim_runs_capacity_1_no_crash", |b| {
        send_claim_with(b, true, 1, run_consumer_thread)
    });
}

#[test]
fn send_claim_runs_consumer_crash() {
    check_crashes("send_claim_runs_consumer_crash", |b| {
        send_claim_with(b, false, 2, run_consumer_thread)
    });
}

// ---------------------------------------------------------------------
// Model 2: claim against ack against reclaim; two claimers
// ---------------------------------------------------------------------

/// Who crashes in a model.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Crash {
    Nobody,
    /// The participant `CONSUMER`.
    Consumer,
    /// The participant `OTHER` (a repairer, or a second consumer).
    Other,
    /// The participant `PRODUCER`.
    Producer,
}

impl Crash {
    fn budget(self, who: Crash, budget: Option<u64>) -> Option<u64> {
        if self == who {
            budget
        } else {
            None
        }
    }
}

/// A committed message 1, claimed by `CONSUMER`, set up before the threads
/// start.
fn claimed_one() -> (Shared, Claim) {
    let e = engine(2);
    send(&e, PRODUCER, 1).unwrap();
    let c = e.claim(CONSUMER, 0).unwrap().unwrap();
    assert_eq!(
        read(&e, &c),
        Got {
            n: 1,
            deliveries: 1
        }
    );
    (e, c)
}

/// Model 2a: `CONSUMER` acks its claim while `OTHER` runs `repair` at `now`
/// with the consumer declared dead (`expired` false: now = 0) or with its
/// lease expired (`expired` true: now = twice the lease). Allowed outcomes:
/// - the ack returned `Acked` and no repair redelivered: nothing is left;
/// - the ack returned `LeaseLost` and one repair redelivered: the checker
///   claims the message, intact, with deliveries 2.
///
/// When the consumer crashes, its ack's result is unknown: either outcome
/// (by what the checker finds). When the repairer crashes, a survivor
/// repairs again (with the repairer dead too), and the same two outcomes
/// must hold by the ack's result.
fn ack_vs_repair(budget: Option<u64>, crash: Crash, expired: bool) -> bool {
    let (e, c) = claimed_one();
    let now = if expired { 2 * LEASE_NS } else { 0 };
    let consumer_dead = move |o: u64| !expired && o == CONSUMER;
    let token = c.token();
    let e1 = e.clone();
    let acker = thread::spawn(move || {
        let r = participant(crash.budget(Crash::Consumer, budget), || {
            e1.settle(CONSUMER, token, &Outcome::Ack, 0)
                .map_err(|e| e.status())
        });
        let survivor = r
            .is_none()
            .then(|| e1.repair(PRODUCER, now, &|o| o == CONSUMER).unwrap());
        (r, survivor)
    });
    let e2 = e.clone();
    let repairer = thread::spawn(move || {
        let r = participant(crash.budget(Crash::Other, budget), || {
            e2.repair(OTHER, now, &consumer_dead).unwrap()
        });
        let survivor = r.is_none().then(|| {
            e2.repair(PRODUCER, now, &|o| o == OTHER || consumer_dead(o))
                .unwrap()
        });
        (r, survivor)
    });
    let (ack, s1) = acker.join().unwrap();
    let (rep, s2) = repairer.join().unwrap();
    let mut dead = vec![];
    if ack.is_none() || !expired {
        dead.push(CONSUMER);
    }
    if rep.is_none() {
        dead.push(OTHER);
    }
    let (last, drained) = drain_at(&e, now, &dead);
    let redelivered = rep.map_or(0, |r| r.redelivered)
        + s1.map_or(0, |r| r.redelivered)
        + s2.map_or(0, |r| r.redelivered)
        + last.redelivered;
    let again = [Got {
        n: 1,
        deliveries: 2,
    }];
    match ack {
        Some(Ok(s)) => {
            assert_eq!(s, Settled::Acked);
            assert_eq!(drained, [], "acked and redelivered");
            if rep.is_some() {
                assert_eq!(redelivered, 0);
            }
        }
        Some(Err(Status::LeaseLost)) => {
            assert_eq!(drained, again, "lease lost and not redelivered");
            if rep.is_some() {
                assert_eq!(redelivered, 1);
            }
        }
        Some(Err(s)) => panic!("ack returned {s:?}"),
        None => assert!(
            drained.is_empty() || drained == again,
            "crashed ack: {drained:?}"
        ),
    }
    ack.is_none() || rep.is_none()
}

/// Model 2b: `CONSUMER` and `OTHER` both try to claim the one committed
/// message (and ack it if they get it). Allowed outcomes: exactly one of
/// them claims it (never both) and the checker finds nothing; when one of
/// them crashes, see [`check_accounted`] (after the survivor's repair).
fn two_claimers(budget: Option<u64>, crash: Crash) -> bool {
    let e = engine(2);
    send(&e, PRODUCER, 1).unwrap();
    let spawn = |me: u64, who: Crash| {
        let e = e.clone();
        thread::spawn(move || {
            let seen = Seen::default();
            let done = participant(crash.budget(who, budget), || {
                if let Some(c) = e.claim(me, 0).unwrap() {
                    seen.consume(&e, me, c);
                }
            });
            let repair = done
                .is_none()
                .then(|| e.repair(PRODUCER, 0, &|o| o == me).unwrap());
            seen.end(repair)
        })
    };
    let a = spawn(CONSUMER, Crash::Consumer);
    let b = spawn(OTHER, Crash::Other);
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    let dead: Vec<u64> = [(CONSUMER, &a), (OTHER, &b)]
        .iter()
        .filter(|(_, c)| c.crashed())
        .map(|(i, _)| *i)
        .collect();
    let (_, drained) = drain(&e, &dead);
    let first = |c: &ConsumerEnd| c.claimed.iter().filter(|g| g.deliveries == 1).count();
    assert!(first(&a) + first(&b) <= 1, "both claimed it: {a:?}, {b:?}");
    if dead.is_empty() {
        assert_eq!(a.claimed.len() + b.claimed.len(), 1, "{a:?}, {b:?}");
        assert_eq!(drained, []);
    } else {
        check_accounted(1, &[&a, &b], &drained);
    }
    !dead.is_empty()
}

/// Model 2c: `CONSUMER` claims and acks the one committed message while
/// `OTHER` purges the queue. Allowed outcomes: without a crash, the message
/// is acked by the consumer or removed (and counted) by the purge, exactly
/// one of the two. When the purger dies midway, the survivor's repair
/// redelivers a claim it left, so the message is acked by the consumer or
/// the checker, or it was removed before the death: at most once in all,
/// and never a slot left held.
fn purge_vs_claim(budget: Option<u64>) -> bool {
    let e = engine(2);
    send(&e, PRODUCER, 1).unwrap();
    let consumer = {
        let e = e.clone();
        thread::spawn(move || match e.claim(CONSUMER, 0).unwrap() {
            Some(c) => {
                assert_eq!(read(&e, &c).n, 1);
                assert_eq!(
                    e.settle(CONSUMER, c.token(), &Outcome::Ack, 0).unwrap(),
                    Settled::Acked,
                    "a purge never takes a claim in flight"
                );
                1u64
            }
            None => 0,
        })
    };
    let purger = {
        let e = e.clone();
        thread::spawn(move || {
            let done = participant(budget, || e.purge(OTHER, 0).unwrap());
            if done.is_none() {
                e.repair(PRODUCER, 0, &|o| o == OTHER).unwrap();
            }
            done
        })
    };
    let consumed = consumer.join().unwrap();
    let purged = purger.join().unwrap();
    let dead: Vec<u64> = if purged.is_none() {
        vec![OTHER]
    } else {
        vec![]
    };
    let (_, drained) = drain(&e, &dead);
    let delivered = consumed + drained.len() as u64;
    match purged {
        Some(n) => assert_eq!(
            delivered + n,
            1,
            "consumed {consumed}, purged {n}, drained {drained:?}"
        ),
        None => assert!(
            delivered <= 1,
            "consumed {consumed}, drained {drained:?} after the purger died"
        ),
    }
    purged.is_none()
}

#[test]
fn purge_vs_claim_no_crash() {
    check("purge_vs_claim_no_crash", purge_vs_claim);
}

#[test]
fn purge_vs_claim_purger_crash() {
    check_crashes("purge_vs_claim_purger_crash", purge_vs_claim);
}

#[test]
fn ack_vs_repair_dead_no_crash() {
    check("ack_vs_repair_dead_no_crash", |b| {
        ack_vs_repair(b, Crash::Nobody, false)
    });
}

#[test]
fn ack_vs_repair_expired_no_crash() {
    check("ack_vs_repair_expired_no_crash", |b| {
        ack_vs_repair(b, Crash::Nobody, true)
    });
}

#[test]
fn ack_vs_repair_consumer_crash() {
    check_crashes("ack_vs_repair_consumer_crash", |b| {
        ack_vs_repair(b, Crash::Consumer, true)
    });
}

/// Fails (crash after 5 steps) on the engine bug shown by
/// [`repair_crash_strands_redelivery`].
#[test]
fn ack_vs_repair_repairer_crash() {
    check_crashes("ack_vs_repair_repairer_crash", |b| {
        ack_vs_repair(b, Crash::Other, true)
    });
}

#[test]
fn two_claimers_no_crash() {
    check("two_claimers_no_crash", |b| two_claimers(b, Crash::Nobody));
}

#[test]
fn two_claimers_one_crashes() {
    check_crashes("two_claimers_one_crashes", |b| {
        two_claimers(b, Crash::Consumer)
    });
}

// ---------------------------------------------------------------------
// Model 3: the sleep/wake handshake
// ---------------------------------------------------------------------

/// A futex for loom: a mutex and a condition variable. `wait` blocks only
/// while the word still equals `expected` (checked under the mutex, so a
/// `wake` after the word changed cannot slip between the check and the
/// wait). A wait with a timeout models a bounded sleep: it returns after
/// letting the others run, woken or not.
#[derive(Default)]
struct LoomFutex {
    lock: Mutex<()>,
    cond: Condvar,
}

impl Futex for LoomFutex {
    fn wait(&self, word: &loom::sync::atomic::AtomicU32, expected: u32, timeout: Option<Duration>) {
        if timeout.is_some() {
            thread::yield_now();
            return;
        }
        let mut g = self.lock.lock().unwrap();
        // SeqCst like the kernel's futex check (it is a full barrier).
        while word.load(loom::sync::atomic::Ordering::SeqCst) == expected {
            g = self.cond.wait(g).unwrap();
        }
    }

    fn wake(&self, _word: &loom::sync::atomic::AtomicU32) {
        let _g = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}

fn not_empty(e: &Engine<LoomMemory>) -> WaitPoint<'_> {
    WaitPoint::new(
        e.mem().u32_at(hdr::NOT_EMPTY_FUTEX),
        e.mem().u64_at(hdr::NOT_EMPTY_SLEEPERS),
    )
}

/// Model 3: a consumer claims, and when nothing is there it prepares to
/// sleep, claims again, and sleeps until woken (no timeout); the producer
/// sends one message and notifies. Allowed outcome without crashes: the
/// consumer gets the message, and the sleeper count is back to 0 — a lost
/// wake-up would leave it asleep for ever, which loom reports as a
/// deadlock. With the producer crashing, the consumer sleeps with a timeout
/// (a real sleep is bounded) and the message is delivered at most once,
/// exactly once if the send returned. With the consumer crashing, see
/// [`check_accounted`]; the sleeper count is at most 1 (a crash between
/// registering and unregistering leaves it there, costing wakers a system
/// call until the dead participant's cleanup, which is outside the engine).
fn sleep_wake(budget: Option<u64>, crash: Crash, fence: bool) -> bool {
    let e = engine(2);
    let f = Arc::new(LoomFutex::default());
    let timeout = (crash == Crash::Producer).then_some(Duration::from_millis(1));
    let (e1, f1) = (e.clone(), f.clone());
    let consumer = thread::spawn(move || {
        let e = e1;
        let seen = Seen::default();
        let done = participant(crash.budget(Crash::Consumer, budget), || {
            let wp = not_empty(&e);
            for _ in 0..3 {
                if let Some(c) = e.claim(CONSUMER, 0).unwrap() {
                    return seen.consume(&e, CONSUMER, c);
                }
                let seen_futex = wp.prepare();
                if let Some(c) = e.claim(CONSUMER, 0).unwrap() {
                    wp.done();
                    return seen.consume(&e, CONSUMER, c);
                }
                wp.sleep(&*f1, seen_futex, timeout);
                wp.done();
            }
        });
        let repair = done
            .is_none()
            .then(|| e.repair(OTHER, 0, &|o| o == CONSUMER).unwrap());
        seen.end(repair)
    });
    let e2 = e.clone();
    let producer = thread::spawn(move || {
        let sent = Cell::new(false);
        let done = participant(crash.budget(Crash::Producer, budget), || {
            send(&e2, PRODUCER, 1).unwrap();
            sent.set(true);
            if fence {
                // Stands in for the single total order S of SeqCst
                // operations, which loom does not model for accesses (it
                // treats them as AcqRel; only fences are SeqCst): see
                // `sleep_wake_without_fence`.
                loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
            }
            not_empty(&e2).notify(&*f);
        });
        let repair = done
            .is_none()
            .then(|| e2.repair(OTHER, 0, &|o| o == PRODUCER).unwrap());
        (sent.get(), repair)
    });
    let c = consumer.join().unwrap();
    let (sent, prep) = producer.join().unwrap();
    let sleepers = not_empty(&e).sleepers();
    let mut dead = vec![];
    if c.crashed() {
        dead.push(CONSUMER);
    }
    if prep.is_some() {
        dead.push(PRODUCER);
    }
    let (_, drained) = drain(&e, &dead);
    match crash {
        Crash::Nobody => {
            assert_eq!(
                c.acked,
                [Got {
                    n: 1,
                    deliveries: 1
                }],
                "{drained:?}"
            );
            assert_eq!(sleepers, 0);
        }
        Crash::Producer => {
            assert_eq!(sleepers, 0);
            let n = c.acked.len() + drained.len();
            assert!(n <= 1 && (n == 1 || !sent), "{c:?}, {drained:?}");
            assert!(c.acked.iter().chain(&drained).all(|g| g.deliveries == 1));
        }
        _ => {
            assert!(sent);
            assert!(sleepers <= 1 && (sleepers == 0 || c.crashed()));
            check_accounted(1, &[&c], &drained);
        }
    }
    c.crashed() || prep.is_some()
}

#[test]
fn sleep_wake_no_crash() {
    check("sleep_wake_no_crash", |b| {
        sleep_wake(b, Crash::Nobody, true)
    });
}

/// The handshake exactly as the engine has it: the waker's commit CAS and
/// its load of the sleeper count are both SeqCst, and by the C++20 rules
/// (the CAS precedes the load in S; the load reads 0, so it precedes the
/// sleeper's increment in S, which precedes the sleeper's SeqCst fence; a
/// load sequenced after that fence sees the CAS) no wake-up is lost. loom
/// models SeqCst accesses as AcqRel, so it finds the store-buffering
/// outcome (both sides read the old value) and reports a deadlock: the
/// consumer sleeps with the message committed. Not an engine bug by the
/// C++ model, but loom cannot check this form of the handshake.
#[test]

fn sleep_wake_without_fence() {
    check("sleep_wake_without_fence", |b| {
        sleep_wake(b, Crash::Nobody, false)
    });
}

#[test]
fn sleep_wake_producer_crash() {
    check_crashes("sleep_wake_producer_crash", |b| {
        sleep_wake(b, Crash::Producer, true)
    });
}

#[test]
fn sleep_wake_consumer_crash() {
    check_crashes("sleep_wake_consumer_crash", |b| {
        sleep_wake(b, Crash::Consumer, true)
    });
}

// ---------------------------------------------------------------------
// Engine bug: a crash between a move to PENDING and the side-path bump
// ---------------------------------------------------------------------

/// One participant does `op` with a step budget; afterwards a survivor
/// repairs with it (`who`) declared dead, and the checker drains at `now`.
/// Allowed outcomes: `ok(drained)` holds and nothing is left in any slot.
fn crash_then_drain(
    budget: Option<u64>,
    e: Shared,
    who: u64,
    now: u64,
    op: impl FnOnce(&Engine<LoomMemory>),
    ok: impl FnOnce(bool, &[Got]) -> bool,
) -> bool {
    let done = participant(budget, || op(&e)).is_some();
    let dead = if done { vec![] } else { vec![who] };
    if !done {
        e.repair(CHECKER, now, &|o| o == who).unwrap();
    }
    let (_, drained) = drain_at(&e, now, &dead);
    assert!(ok(done, &drained), "done {done}, drained {drained:?}");
    !done
}

/// A repair that dies after its CAS made an expired claim `PENDING` and
/// before `side_entered` bumped `SIDE_DIRTY` leaves the message where no
/// claim looks (`side_needed` is false, the head has moved past it), and
/// no later repair bumps the epoch either (it only does when it redelivers
/// something itself). Allowed: the checker claims the message with
/// deliveries 2. Found: the slot stays `PENDING` (crash after 5 steps).
#[test]
fn repair_crash_strands_redelivery() {
    check_crashes("repair_crash_strands_redelivery", |b| {
        let (e, _) = claimed_one();
        let now = 2 * LEASE_NS;
        crash_then_drain(
            b,
            e,
            OTHER,
            now,
            |e| {
                e.repair(OTHER, now, &|_| false).unwrap();
            },
            |_, d| {
                d == [Got {
                    n: 1,
                    deliveries: 2,
                }]
            },
        )
    });
}

/// The same window in a nack: a consumer that dies after its nack's CAS and
/// before the bump strands its message. Allowed: the checker claims it with
/// deliveries 2 (whether or not the nack took effect).
#[test]
fn nack_crash_strands_message() {
    check_crashes("nack_crash_strands_message", |b| {
        let (e, c) = claimed_one();
        crash_then_drain(
            b,
            e,
            CONSUMER,
            0,
            |e| {
                e.settle(CONSUMER, c.token(), &Outcome::Nack { not_before_ns: 0 }, 0)
                    .unwrap();
            },
            |_, d| {
                d == [Got {
                    n: 1,
                    deliveries: 2,
                }]
            },
        )
    });
}

/// And in a late commit: a producer whose reservation consumers passed
/// (`PASSED`) commits it to `PENDING`; dying before the bump strands the
/// message. Allowed: delivered once (deliveries 1), or abandoned when the
/// commit had not taken effect. Found: the slot stays `PENDING` (crash
/// after 9 steps: the payload, five metadata words, the word, the CAS).
#[test]
fn late_commit_crash_strands_message() {
    check_crashes("late_commit_crash_strands_message", |b| {
        let e = engine(2);
        let r = e.reserve(PRODUCER, 0, MSG).unwrap();
        // The consumer gives the producer its spins, then passes it.
        assert!(e.claim(CONSUMER, 0).unwrap().is_none());
        assert_eq!(e.slot_word(r.slot).state(), state::PASSED);
        crash_then_drain(
            b,
            e,
            PRODUCER,
            0,
            |e| {
                // SAFETY: a reservation this test just made (or one a repair abandoned), not committed; the payload fits.
                unsafe { e.write_payload(&r, &body(1)) };
                e.commit(PRODUCER, &r, MSG, 0, 1, None, 0).unwrap();
            },
            |done, d| {
                d == [Got {
                    n: 1,
                    deliveries: 1,
                }] || (!done && d.is_empty())
            },
        )
    });
}

// ---------------------------------------------------------------------
// Stalls: a participant stopped between two of its steps past its lease
// or reservation timeout, that comes back afterwards
// ---------------------------------------------------------------------

/// A consumer stalls after each of its steps (claim, read, ack) for longer
/// than its lease, its clock still reading the time before the stall;
/// meanwhile another participant repairs with the lease run out, then
/// claims and acks whatever it can. Allowed: message 1 acked exactly once
/// in all (by the staller, the other consumer or the final drain), never
/// torn; the staller's late ack never lands once another consumer claimed
/// the message (G3: its token names a claim that ended).
#[test]
fn stalled_consumer_against_expiry() {
    check_stalls("stalled_consumer_against_expiry", |k| {
        let e = engine(2);
        send(&e, PRODUCER, 1).unwrap();
        let gate = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let t = {
            let (e, gate) = (e.clone(), gate.clone());
            thread::spawn(move || {
                stalling(k, gate, || {
                    let c = e.claim(CONSUMER, 0).unwrap()?;
                    let got = read(&e, &c);
                    Some((got, e.settle(CONSUMER, c.token(), &Outcome::Ack, 0)))
                })
            })
        };
        let late = 2 * LEASE_NS;
        e.repair(OTHER, late, &|_| false).unwrap();
        let other = e.claim(OTHER, late).unwrap().map(|c| {
            let got = read(&e, &c);
            (got, e.settle(OTHER, c.token(), &Outcome::Ack, late))
        });
        gate.store(true, loom::sync::atomic::Ordering::SeqCst);
        let (mine, stalled) = t.join().unwrap();
        let (_, drained) = drain_at(&e, 3 * late, &[]);
        assert_acked_once_despite_the_stall(&mine, &other, &drained);
        stalled
    });
}

/// A producer stalls after each of its steps (reserve, write, commit) past
/// the reservation timeout; meanwhile another participant repairs (the
/// reservation is quarantined, not freed: the producer may still write)
/// and claims what it can. Allowed (G5): the commit succeeded and message 1
/// is delivered once, whole; or the commit got `Abandoned` and nothing is
/// delivered; and every slot is free at the end (the producer frees its
/// quarantined slot when it learns of the abandonment).
#[test]
fn stalled_producer_against_abandonment() {
    check_stalls("stalled_producer_against_abandonment", |k| {
        let e = engine(2);
        let gate = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let t = {
            let (e, gate) = (e.clone(), gate.clone());
            thread::spawn(move || stalling(k, gate, || send(&e, PRODUCER, 1)))
        };
        let late = 2 * LEASE_NS;
        e.repair(OTHER, late, &|_| false).unwrap();
        let other = e.claim(OTHER, late).unwrap().map(|c| {
            let got = read(&e, &c);
            e.settle(OTHER, c.token(), &Outcome::Ack, late).unwrap();
            got
        });
        gate.store(true, loom::sync::atomic::Ordering::SeqCst);
        let (sent, stalled) = t.join().unwrap();
        let (_, drained) = drain_at(&e, 3 * late, &[]);
        let delivered: Vec<Got> = other.into_iter().chain(drained).collect();
        match sent {
            Ok(()) => assert_eq!(
                delivered,
                [Got {
                    n: 1,
                    deliveries: 1
                }],
                "a committed message delivered other than once"
            ),
            Err(e) => {
                assert_eq!(e.status(), Status::Abandoned, "{e}");
                assert!(
                    delivered.is_empty(),
                    "an abandoned message was delivered: {delivered:?}"
                );
            }
        }
        stalled
    });
}

/// Two deaths during one dead-letter move: a consumer rejects its message
/// and dies after `k1` steps of the move; a repairer takes the move over and
/// dies after `k2` steps; a third participant repairs after both. For every
/// `k1` and `k2`. Allowed: exactly one dead letter, whole, and the slot free
/// (the area holds one record: a second write would leave the message
/// waiting for room, and the drain would find the slot taken).
#[test]
fn two_deaths_in_one_dead_letter_move() {
    let mut models = 0u64;
    let mut k1 = 0u64;
    loop {
        let mut k2 = 0u64;
        let first_died = loop {
            let (died1, died2) = two_deaths_model(k1, k2);
            models += 1;
            if !(died1 && died2) {
                break died1;
            }
            k2 += 1;
            assert!(k2 < 1000, "the second repairer never completes");
        };
        if !first_died {
            break;
        }
        k1 += 1;
        assert!(k1 < 1000, "the first mover never completes");
    }
    eprintln!("two_deaths_in_one_dead_letter_move: {models} models, k1 up to {k1}");
}

/// One model of [`two_deaths_in_one_dead_letter_move`]: whether the mover
/// and the repairer died.
fn two_deaths_model(k1: u64, k2: u64) -> (bool, bool) {
    let flags = std::sync::Arc::new(std::sync::Mutex::new((false, false)));
    let f = flags.clone();
    loom::model(move || {
        let e = engine(2);
        send(&e, PRODUCER, 1).unwrap();
        let c = e.claim(CONSUMER, 0).unwrap().unwrap();
        let died1 = participant(Some(k1), || {
            e.settle(CONSUMER, c.token(), &Outcome::Reject { reason: "bad" }, 0)
                .unwrap();
        })
        .is_none();
        // A survivor cleans up as `Queue` does: the dead's half-written
        // dead-letter records first, then the slots.
        let clean_up = |me: u64, dead: &dyn Fn(u64) -> bool| {
            e.repair_dlq(dead);
            e.repair(me, 0, dead).unwrap();
        };
        let died2 =
            died1 && participant(Some(k2), || clean_up(OTHER, &|o| o == CONSUMER)).is_none();
        clean_up(CHECKER, &|o| o == CONSUMER || (died2 && o == OTHER));
        let at = format!("mover dead after {k1} steps, taker after {k2}");
        let rec = e.layout().dead_letter(0);
        let w = e
            .mem()
            .u64_at(rec + shmq::internals::layout::dlq::WORD)
            .load(std::sync::atomic::Ordering::Relaxed);
        let (_, drained) = drain(&e, &[CONSUMER, OTHER]);
        if w & 0xf == shmq::internals::layout::dlq::FULL {
            // The reject took effect: one dead letter, whole, and nothing
            // left to deliver (a second record would have found no room
            // and left the message waiting: the drain finds its slot taken).
            let mut b = [0u8; MSG];
            e.mem()
                .read_bytes(rec + shmq::internals::layout::dlq::PAYLOAD, &mut b);
            assert_eq!(b, body(1), "{at}: the dead letter is not the message");
            assert!(
                drained.is_empty(),
                "{at}: dead-lettered and delivered: {drained:?}"
            );
        } else {
            // It never got under way: the claim of the dead consumer is
            // delivered again, once.
            assert_eq!(
                drained,
                [Got {
                    n: 1,
                    deliveries: 2
                }],
                "{at}: no dead letter, and the message was not redelivered once"
            );
        }
        *f.lock().unwrap() = (died1, died2);
    });
    let r = *flags.lock().unwrap();
    r
}
