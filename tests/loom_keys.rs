//! Loom models of the per-key protocol (guarantee G7: [`shmq::internals::ring`] with
//! [`shmq::internals::keys`]), issue #3. Same harness as `tests/loom.rs` (copied, not
//! shared): an [`Engine`] over [`LoomMemory`] that models only the words the
//! protocol touches, here plus the one entry of a key table of capacity 1;
//! crashes by step budget and `catch_unwind`.
//!
//! Run them with:
//!
//! ```text
//! LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg shmq_loom" cargo test --release --test loom_keys -- --nocapture
//! ```
//!
//! A keyed send is, as in `Queue::send_with`: `find_or_insert` and
//! `assign_version`; in latest-only mode `take_waiting`, `stage_replacement`
//! and `commit_replacement` first (replace in place, through the producer's
//! replacement record) and `set_waiting` after the commit of a fresh
//! message.
#![cfg(shmq_loom)]

use loom::sync::atomic::Ordering;
use loom::thread;
use shmq::internals::layout::{flags, key, replace, Layout, Params};
use shmq::internals::memory::{LoomMemory, Memory};
use shmq::internals::ring::{state, Engine, Outcome, Repairs, Settled};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::Mutex as StdMutex;

/// The key every model uses.
const K: u64 = 7;

type Shared = loom::sync::Arc<Engine<LoomMemory>>;

// ---------------------------------------------------------------------
// Harness (from tests/loom.rs, with a key table of one entry)
// ---------------------------------------------------------------------

/// A latest-only layout (with replacement records); the FIFO models use it
/// too, they never replace.
fn layout(capacity: u64) -> Layout {
    Layout::with_flags(
        Params {
            capacity,
            max_message_size: MSG as u64,
            key_capacity: 1,
            dlq_capacity: 1,
            participant_capacity: PARTICIPANTS,
        },
        flags::LATEST_ONLY,
    )
    .unwrap()
}

/// An empty queue with a key table of one entry and the replacement
/// records (word, deadline, metadata and payload), see
/// [`harness::engine_in`].
fn engine(capacity: u64) -> Shared {
    let l = layout(capacity);
    let mut more = Vec::new();
    more.push(l.key_entry(0)..l.key_entry(0) + key::SIZE);
    for p in 0..PARTICIPANTS {
        let rec = l.replacement(p).unwrap();
        more.push(rec..rec + replace::PAYLOAD + MSG);
    }
    loom::sync::Arc::new(engine_in(l, &more))
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

/// A keyed send of version `v` of key `K` (see the module doc).
fn send_keyed(e: &Engine<LoomMemory>, me: u64, v: u64, latest_only: bool) -> shmq::Result<Sent> {
    let keys = e.keys();
    let ent = keys.find_or_insert(K)?;
    let v = keys.assign_version(ent, v)?;
    if latest_only {
        if let Some(r) = e.take_waiting(me, K, v, 0, Some(&body(v)))? {
            if e.stage_replacement(me, &r, K, v, MSG as u64, 0, None) {
                e.commit_replacement(me, &r, 0)?;
                return Ok(Sent::Replaced);
            }
            // Undone by a repair (a stall): send it as a new message.
        }
    }
    let r = e.reserve(me, 0, MSG)?;
    // SAFETY: a reservation this test just made (or one a repair abandoned), not committed; the payload fits.
    unsafe { e.write_payload(&r, &body(v)) };
    e.commit(me, &r, MSG, K, v, None, 0)?;
    if latest_only {
        e.set_waiting(K, r.slot, r.position);
    }
    Ok(Sent::Queued)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    /// Replaced the waiting message in place.
    Replaced,
    /// Queued a fresh message.
    Queued,
}

/// A keyless send (the checker's probe).
fn send_plain(e: &Engine<LoomMemory>, me: u64, n: u64) {
    let r = e.reserve(me, 0, MSG).expect("reserve");
    // SAFETY: a reservation this test just made (or one a repair abandoned), not committed; the payload fits.
    unsafe { e.write_payload(&r, &body(n)) };
    e.commit(me, &r, MSG, 0, n, None, 0).expect("commit");
}

fn last_acked(e: &Engine<LoomMemory>) -> u64 {
    let keys = e.keys();
    keys.find(K).map_or(0, |ent| keys.last_acked(ent))
}

fn holder(e: &Engine<LoomMemory>) -> u64 {
    let keys = e.keys();
    keys.find(K).map_or(0, |ent| {
        keys.field(ent, key::HOLDER).load(Ordering::Acquire)
    })
}

/// The checker, after every thread ended: repairs (declaring `dead` dead),
/// claims and acks everything claimable, checks that every slot is free and
/// that the key is free afterwards, and that the queue still works (a keyed
/// message of a newer version goes through). Returns the drained messages
/// and LAST_ACKED after the drain (before that probe).
fn drain(e: &Engine<LoomMemory>, dead: &[u64]) -> (Repairs, Vec<Got>, u64) {
    let rep = e.repair(CHECKER, 0, &|o| dead.contains(&o)).unwrap();
    let mut out = Vec::new();
    while let Some(c) = e.claim(CHECKER, 0).unwrap() {
        out.push(read(e, &c));
        assert_eq!(
            e.settle(CHECKER, c.token(), &Outcome::Ack, 0).unwrap(),
            Settled::Acked
        );
        assert!(out.len() <= 4, "claimed more than was sent: {out:?}");
    }
    for i in 0..e.layout().params.capacity {
        let w = e.slot_word(i);
        assert_eq!(w.state(), state::FREE, "slot {i} left {w:?} after {out:?}");
    }
    // The holder may still name a claim that ended (its owner crashed
    // between the slot's outcome CAS and the release, or it was stale):
    // that is a free key. A live claim holding it is not.
    if let Some(h) = key::KeyHolder::decode(holder(e)) {
        let hw = e.slot_word(h.slot);
        assert!(
            !(hw.state() == state::CLAIMED && hw.seq() == h.seq && hw.owner() == h.owner),
            "key still held by slot {} ({hw:?}) after the drain {out:?}",
            h.slot
        );
    }
    let acked = last_acked(e);
    // The key is not wedged: a newer version is claimable at once.
    send_keyed(e, CHECKER, 50, false).expect("a keyed send after repair");
    let Some(c) = e.claim(CHECKER, 0).unwrap() else {
        let keys = e.keys();
        let ent = keys.find(K).unwrap();
        let f = |o| keys.field(ent, o).load(Ordering::Relaxed);
        let slots: Vec<_> = (0..e.layout().params.capacity)
            .map(|i| e.slot_word(i))
            .collect();
        panic!(
            "the newer keyed message is not claimable: holder {:x}, parked {}, slots {slots:?}, drained {out:?}",
            f(key::HOLDER),
            f(key::PARKED)
        );
    };
    assert_eq!(read(e, &c).n, 50);
    e.settle(CHECKER, c.token(), &Outcome::Ack, 0).unwrap();
    send_plain(e, CHECKER, 99);
    let c = e.claim(CHECKER, 0).unwrap().expect("a keyless claim");
    assert_eq!(read(e, &c).n, 99);
    e.settle(CHECKER, c.token(), &Outcome::Ack, 0).unwrap();
    (rep, out, acked)
}

/// Shared observations of one execution, outside loom (plain std: loom runs
/// one thread at a time, and these accesses are no scheduling points).
#[derive(Default)]
struct Watch {
    /// Consumers between a claim of key K returning and the start of its
    /// ack: a subset of the time each one holds the key, so two at once
    /// means the key was held twice.
    holding: StdAtomicU64,
    /// Versions of K in the order their claims returned.
    order: StdMutex<Vec<u64>>,
}

/// What a consumer did.
#[derive(Debug, Default)]
struct ConsumerEnd {
    claimed: Vec<Got>,
    acked: Vec<Got>,
    /// An ack begun and not returned when it crashed.
    acking: Option<Got>,
    /// Its survivor's repair, if it crashed.
    repair: Option<Repairs>,
}

fn consumer_thread(
    e: Shared,
    w: std::sync::Arc<Watch>,
    me: u64,
    budget: Option<u64>,
    tries: usize,
) -> thread::JoinHandle<ConsumerEnd> {
    thread::spawn(move || {
        let claimed = RefCell::new(Vec::new());
        let acked = RefCell::new(Vec::new());
        let acking = Cell::new(None);
        let done = participant(budget, || {
            for _ in 0..tries {
                match e.claim(me, 0).unwrap() {
                    Some(c) => {
                        let g = read(&e, &c);
                        assert_eq!(c.key, K);
                        let before = w.holding.fetch_add(1, StdOrdering::SeqCst);
                        w.order.lock().unwrap().push(g.n);
                        assert_eq!(
                            before, 0,
                            "consumer {me} claimed {g:?} of key {K} while another held it"
                        );
                        claimed.borrow_mut().push(g);
                        w.holding.fetch_sub(1, StdOrdering::SeqCst);
                        acking.set(Some(g));
                        let s = e.settle(me, c.token(), &Outcome::Ack, 0);
                        assert_eq!(s.unwrap(), Settled::Acked);
                        acking.set(None);
                        acked.borrow_mut().push(g);
                    }
                    None => thread::yield_now(),
                }
            }
        });
        let repair = done
            .is_none()
            .then(|| e.repair(CHECKER, 0, &|o| o == me).unwrap());
        ConsumerEnd {
            claimed: claimed.take(),
            acked: acked.take(),
            acking: acking.get(),
            repair,
        }
    })
}

// ---------------------------------------------------------------------
// Model 1: two consumers, two committed messages of one key
// ---------------------------------------------------------------------

/// Versions 1 and 2 of key K are committed before two consumers (two claim
/// tries each, each claim acked) start. Allowed outcomes: never two claims
/// of K at once (checked as they happen); every claim of K comes in version
/// order (G6: claims of one key are in its commit order); each version is
/// delivered (acked by a consumer or drained by the checker) exactly once,
/// on its first delivery; LAST_ACKED ends at 2 and the key free.
fn two_consumers(strict_order: bool) -> bool {
    let e = engine(2);
    assert_eq!(send_keyed(&e, PRODUCER, 1, false).unwrap(), Sent::Queued);
    assert_eq!(send_keyed(&e, PRODUCER, 2, false).unwrap(), Sent::Queued);
    let w = std::sync::Arc::new(Watch::default());
    let a = consumer_thread(e.clone(), w.clone(), CONSUMER, None, 2);
    let b = consumer_thread(e.clone(), w.clone(), OTHER, None, 2);
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    let (rep, drained, acked) = drain(&e, &[]);
    assert_eq!(rep.redelivered + rep.abandoned + rep.dead_lettered, 0);
    let order = w.order.lock().unwrap().clone();
    let mut all: Vec<u64> = order.clone();
    all.extend(drained.iter().map(|g| g.n));
    let why = format!("claims of key {K}: consumers {a:?} {b:?}, checker {drained:?}");
    if strict_order {
        assert_eq!(all, vec![1, 2], "out of order or lost: {why}");
    } else {
        // What the engine does today: 2 may be claimed (and acked) first,
        // and then 1 is completed as stale, never delivered.
        assert!(all == [1, 2] || all == [2], "{why}");
    }
    for g in a.acked.iter().chain(&b.acked).chain(&drained) {
        assert_eq!(g.deliveries, 1, "{g:?}");
    }
    assert_eq!(acked, 2);
    false
}

/// The exclusivity half of model 1 (at most one claim of the key at a
/// time, each version delivered at most once, 2 delivered, key free);
/// version order is checked by `keyed_two_consumers_in_order`.
#[test]
fn keyed_two_consumers_exclusive() {
    check("keyed_two_consumers_exclusive", |_| two_consumers(false));
}

/// Model 1 in full: claims of the key come in version order. This model
/// found a bug in the first design, which took the key *after* the slot's
/// claim CAS: consumer A claimed slot 0 (version 1) and moved the head on,
/// consumer B claimed slot 1 (version 2) and took the free key before A
/// could, A parked version 1, B acked 2, and 1 was then completed as stale,
/// never delivered. The key is now taken first, naming the claim to come
/// (an "in transit" holder that counts as held).
#[test]
fn keyed_two_consumers_in_order() {
    check("keyed_two_consumers_in_order", |_| two_consumers(true));
}

// ---------------------------------------------------------------------
// Model 2: latest-only, an ack racing a newer send of the same key
// ---------------------------------------------------------------------

/// Latest-only mode. Version 1 of K is queued (and recorded as waiting);
/// then a consumer claims and acks (one try) while a producer sends version
/// 2. Allowed outcomes:
/// - the consumer had claimed 1: the send replaces nothing (Queued), and 2
///   is delivered after it;
/// - 1 was still waiting: the send replaces it in place (Replaced), 1 is
///   never delivered, 2 is delivered once (by the consumer or the checker).
///
/// In every case version 2 is delivered exactly once, version 1 at most
/// once and before 2, and LAST_ACKED is the highest acked version (2).
fn latest_only(_budget: Option<u64>) -> bool {
    let e = engine(2);
    assert_eq!(send_keyed(&e, PRODUCER, 1, true).unwrap(), Sent::Queued);
    let w = std::sync::Arc::new(Watch::default());
    let c = consumer_thread(e.clone(), w.clone(), CONSUMER, None, 1);
    let pe = e.clone();
    let p = thread::spawn(move || send_keyed(&pe, PRODUCER, 2, true));
    let sent = p.join().unwrap().expect("the newer send");
    let c = c.join().unwrap();
    let (rep, drained, acked) = drain(&e, &[]);
    assert_eq!(rep.redelivered + rep.abandoned + rep.dead_lettered, 0);
    let delivered: Vec<Got> = c.acked.iter().chain(&drained).copied().collect();
    let versions: Vec<u64> = delivered.iter().map(|g| g.n).collect();
    let why = format!("sent {sent:?}, consumer {c:?}, checker {drained:?}");
    assert!(delivered.iter().all(|g| g.deliveries == 1), "{why}");
    match sent {
        Sent::Queued => assert_eq!(versions, vec![1, 2], "{why}"),
        Sent::Replaced => assert_eq!(versions, vec![2], "{why}"),
    }
    SEEN_OUTCOMES.fetch_or(
        if sent == Sent::Queued { 1 } else { 2 },
        StdOrdering::Relaxed,
    );
    assert_eq!(acked, 2, "{why}");
    false
}

/// Which outcomes of model 2 the exploration reached (1: queued behind, 2:
/// replaced in place).
static SEEN_OUTCOMES: StdAtomicU64 = StdAtomicU64::new(0);

#[test]
fn keyed_latest_only_ack_vs_send() {
    check("keyed_latest_only_ack_vs_send", latest_only);
    assert_eq!(
        SEEN_OUTCOMES.load(StdOrdering::Relaxed),
        3,
        "both outcomes reached"
    );
}

// ---------------------------------------------------------------------
// Model 3: a consumer crashes while it holds the key
// ---------------------------------------------------------------------

/// Versions 1 and 2 of K are committed; a consumer that stops after its
/// k-th memory access claims and acks (two tries), for every k (among them
/// a stop after taking the key and before the slot's claim CAS, which
/// must not leave the key held by nobody's claim); when it
/// stopped, a survivor repairs with it declared dead. Then the checker
/// drains. Allowed outcomes: the key comes free (no claim hangs on a dead
/// holder: the drain delivers every version not acked and frees every
/// slot, and a newer keyed message is claimable at once); each version is
/// delivered exactly once, in version order, except the one whose ack the
/// crashed consumer had begun (which may be gone); a version the crashed
/// consumer had claimed and not acked is delivered on delivery 2; one whose
/// claim it had begun without returning on delivery 1 or 2.
fn consumer_crash(budget: Option<u64>) -> bool {
    let e = engine(2);
    send_keyed(&e, PRODUCER, 1, false).unwrap();
    send_keyed(&e, PRODUCER, 2, false).unwrap();
    let w = std::sync::Arc::new(Watch::default());
    let c = consumer_thread(e.clone(), w.clone(), CONSUMER, budget, 2);
    let c = c.join().unwrap();
    let crashed = c.repair.is_some();
    let dead: &[u64] = if crashed { &[CONSUMER] } else { &[] };
    let (_rep, drained, _) = drain(&e, dead);
    let why = || format!("consumer {c:?}, checker {drained:?}");
    let mut seen: Vec<u64> = c.acked.iter().map(|g| g.n).collect();
    if let Some(g) = c.acking {
        seen.push(g.n);
    }
    seen.extend(drained.iter().map(|g| g.n));
    seen.dedup();
    assert_eq!(seen, vec![1, 2], "{}", why());
    for v in 1..=2u64 {
        let ended: Vec<Got> = c
            .acked
            .iter()
            .chain(&drained)
            .filter(|g| g.n == v)
            .copied()
            .collect();
        let acking = c.acking.map(|g| g.n) == Some(v);
        let held = c.claimed.iter().any(|g| g.n == v) && !c.acked.iter().any(|g| g.n == v);
        match ended.as_slice() {
            [] => assert!(acking, "lost {v}: {}", why()),
            [g] if held => assert_eq!(g.deliveries, 2, "{v}: {}", why()),
            [g] => assert!(g.deliveries <= 2, "{v}: {}", why()),
            _ => panic!("{v} delivered twice: {}", why()),
        }
    }
    crashed
}

#[test]
fn keyed_consumer_crash() {
    check_crashes("keyed_consumer_crash", consumer_crash);
}

/// Model 3 with a second, live consumer (one claim try) running
/// concurrently with the crashing one and its survivor's repair: the live
/// one must never claim K while the crashed one holds it, and the key must
/// come free after the repair.
fn consumer_crash_live(budget: Option<u64>) -> bool {
    let e = engine(2);
    send_keyed(&e, PRODUCER, 1, false).unwrap();
    let w = std::sync::Arc::new(Watch::default());
    let c = consumer_thread(e.clone(), w.clone(), CONSUMER, budget, 1);
    let o = consumer_thread(e.clone(), w.clone(), OTHER, None, 1);
    let c = c.join().unwrap();
    let o = o.join().unwrap();
    let crashed = c.repair.is_some();
    let dead: &[u64] = if crashed { &[CONSUMER] } else { &[] };
    let (_rep, drained, _) = drain(&e, dead);
    let why = || format!("crashing {c:?}, live {o:?}, checker {drained:?}");
    let ended: Vec<Got> = c
        .acked
        .iter()
        .chain(&o.acked)
        .chain(&drained)
        .copied()
        .collect();
    let acking = c.acking.is_some();
    let held = !c.claimed.is_empty() && c.acked.is_empty();
    match ended.as_slice() {
        [] => assert!(acking, "lost: {}", why()),
        [g] if held => assert_eq!(g.deliveries, 2, "{}", why()),
        [g] => assert!(g.deliveries <= 2 && g.n == 1, "{}", why()),
        _ => panic!("delivered twice: {}", why()),
    }
    crashed
}

#[test]
fn keyed_consumer_crash_live_peer() {
    check_crashes("keyed_consumer_crash_live_peer", consumer_crash_live);
}

/// Message 1 of key K failed a first delivery and waits on the side path.
fn nacked_once() -> Shared {
    let e = engine(2);
    send_keyed(&e, PRODUCER, 1, false).unwrap();
    let c = e.claim(OTHER, 0).unwrap().unwrap();
    e.settle(OTHER, c.token(), &Outcome::Nack { not_before_ns: 0 }, 0)
        .unwrap();
    e
}

/// Model 5: a consumer claims a keyed message from the side path (it was
/// nacked once) and acks it, crashing after each of its steps, including
/// between taking the key and its claim CAS. Allowed: version 1 acked once
/// (by it or the checker, or its ack was under way), never twice, and the
/// key free afterwards (the checker's drain claims a newer version at once):
/// a taker that dies in transit on the side path must not strand the key.
fn consumer_crash_side_path(budget: Option<u64>) -> bool {
    let e = nacked_once();
    let mut acking = false;
    let mine = participant(budget, || {
        let c = e.claim(CONSUMER, 0).unwrap()?;
        let g = read(&e, &c);
        acking = true;
        e.settle(CONSUMER, c.token(), &Outcome::Ack, 0).unwrap();
        Some(g)
    });
    let crashed = mine.is_none();
    let dead: &[u64] = if crashed { &[CONSUMER] } else { &[] };
    let (_, drained, _) = drain(&e, dead);
    let acked = usize::from(matches!(mine, Some(Some(_)))) + drained.len();
    assert!(
        acked == 1 || (acked == 0 && crashed && acking),
        "version 1 acked {acked} times (consumer {mine:?}, crashed {crashed}, acking {acking}), drained {drained:?}"
    );
    crashed
}

#[test]
fn keyed_consumer_crash_side_path() {
    check_crashes("keyed_consumer_crash_side_path", consumer_crash_side_path);
}

/// Model 6: a consumer claiming the nacked keyed message stalls after each
/// of its steps (the holder taken and its claim CAS not made, among them)
/// for longer than a lease; another consumer, whose clock says the lease is
/// over, claims meanwhile. Allowed: version 1 acked exactly once in all;
/// the staller's ack never lands once the other consumer claimed it; the
/// key is never wedged (G2, G7: a holder in transit is bounded by the lease).
fn stalled_key_taker(k: u64) -> bool {
    let e = nacked_once();
    let gate = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
    let t = {
        let (e, gate) = (e.clone(), gate.clone());
        thread::spawn(move || {
            stalling(k, gate, || {
                let c = e.claim(CONSUMER, 0).unwrap()?;
                let g = read(&e, &c);
                Some((g, e.settle(CONSUMER, c.token(), &Outcome::Ack, 0)))
            })
        })
    };
    let late = 2 * LEASE_NS;
    let other = e.claim(OTHER, late).unwrap().map(|c| {
        let g = read(&e, &c);
        (g, e.settle(OTHER, c.token(), &Outcome::Ack, late))
    });
    gate.store(true, Ordering::SeqCst);
    let (mine, stalled) = t.join().unwrap();
    let (_, drained, _) = drain(&e, &[]);
    assert_acked_once_despite_the_stall(&mine, &other, &drained);
    stalled
}

#[test]
fn keyed_stalled_key_taker() {
    check_stalls("keyed_stalled_key_taker", stalled_key_taker);
}

// ---------------------------------------------------------------------
// Model 4: latest-only, a replacement crashed at every step, racing a claim
// ---------------------------------------------------------------------

/// Latest-only mode. Version 1 of K is queued (and recorded as waiting);
/// then a consumer claims and acks (one try) while a producer that stops
/// after its k-th memory access sends version 2, for every k (among them a
/// stop after taking the waiting message and before its record is
/// complete, and one in the middle of copying the record into the slot);
/// when it stopped, a survivor repairs with it declared dead, racing the
/// consumer. Then the checker drains. Allowed outcomes: the send returned
/// `Replaced`: version 2 is delivered, 1 never; it returned `Queued`: 1
/// then 2; it crashed: 1, 2, or 1 then 2 -- never nothing (G4: version 1's
/// send returned OK), never a torn payload (`read` checks each one), each
/// at most once and on its first delivery, and the producer's replacement
/// record is left clear.
fn replacement_crash(budget: Option<u64>) -> bool {
    let e = engine(2);
    assert_eq!(send_keyed(&e, OTHER, 1, true).unwrap(), Sent::Queued);
    let w = std::sync::Arc::new(Watch::default());
    let c = consumer_thread(e.clone(), w.clone(), CONSUMER, None, 1);
    let pe = e.clone();
    let p = thread::spawn(move || {
        let sent = participant(budget, || send_keyed(&pe, PRODUCER, 2, true));
        if sent.is_none() {
            pe.repair(CHECKER, 0, &|o| o == PRODUCER).unwrap();
        }
        sent
    });
    let sent = p.join().unwrap();
    let c = c.join().unwrap();
    let crashed = sent.is_none();
    let dead: &[u64] = if crashed { &[PRODUCER] } else { &[] };
    let (_rep, drained, _) = drain(&e, dead);
    let delivered: Vec<Got> = c.acked.iter().chain(&drained).copied().collect();
    let versions: Vec<u64> = delivered.iter().map(|g| g.n).collect();
    let why = format!("sent {sent:?}, consumer {c:?}, checker {drained:?}");
    assert!(delivered.iter().all(|g| g.deliveries == 1), "{why}");
    match sent {
        Some(Ok(Sent::Replaced)) => assert_eq!(versions, vec![2], "{why}"),
        Some(Ok(Sent::Queued)) => assert_eq!(versions, vec![1, 2], "{why}"),
        Some(Err(err)) => panic!("the send failed: {err}; {why}"),
        None => assert!(
            versions == [1] || versions == [2] || versions == [1, 2],
            "lost, repeated or out of order: {why}"
        ),
    }
    let rec = e.layout().replacement(PRODUCER).unwrap();
    assert_eq!(
        e.mem().u64_at(rec + replace::WORD).load(Ordering::Acquire),
        0,
        "replacement record left set: {why}"
    );
    crashed
}

#[test]
fn keyed_latest_only_replacement_crash() {
    check_crashes("keyed_latest_only_replacement_crash", replacement_crash);
}
