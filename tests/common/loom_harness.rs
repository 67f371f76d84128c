//! The loom harness shared by `tests/loom.rs` and `tests/loom_keys.rs`:
//! participants that stop for good after a memory-access budget (a crash),
//! the model builder, and the loops that explore a model without a crash and
//! with a crash after each of its steps.

use shmq::internals::layout::{hdr, part, Layout};
use shmq::internals::memory::{Crashed, Loads, LoomMemory};
use shmq::internals::ring::{Claim, Config, Engine};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::time::Instant;

/// Payload size of every model: two words, so that a torn copy can show.
pub const MSG: usize = 16;
/// The lease and the reservation timeout of every model.
pub const LEASE_NS: u64 = 1_000_000;
/// Participant indices.
pub const PRODUCER: u64 = 0;
pub const CONSUMER: u64 = 1;
pub const OTHER: u64 = 2;
pub const CHECKER: u64 = 3;
pub const PARTICIPANTS: u64 = 4;

/// An empty queue laid out as `l`, in loom memory that models only the
/// words the protocol touches: the header's hot words, each participant's
/// state word and tallies (not its metrics), the slots, the first
/// dead-letter record, and `more` (the key table, replacement records).
pub fn engine_in(l: Layout, more: &[Range<usize>]) -> Engine<LoomMemory> {
    let mut regions = Vec::new();
    regions.push(hdr::TAIL..hdr::PURGED + 8);
    for p in 0..PARTICIPANTS {
        let base = l.participant(p);
        regions.push(base..base + part::COUNTERS);
    }
    regions.push(l.slot(0)..l.slot(l.params.capacity - 1) + l.slot_stride);
    regions.push(l.dead_letter(0)..l.dead_letter(0) + l.dlq_stride);
    regions.extend_from_slice(more);
    let futexes = [
        hdr::NOT_EMPTY_FUTEX..hdr::NOT_EMPTY_FUTEX + 4,
        hdr::NOT_FULL_FUTEX..hdr::NOT_FULL_FUTEX + 4,
    ];
    let mem = LoomMemory::with_regions(l.file_size, &regions, &futexes);
    let e = Engine::new(
        mem,
        l,
        Config {
            lease_ns: LEASE_NS,
            max_deliveries: 3,
            reservation_timeout_ns: LEASE_NS,
            message_ttl_ns: 0,
            expiry_drop: false,
        },
    );
    e.format();
    e
}

/// The payload of message (version) `n`: two different words.
pub fn body(n: u64) -> [u8; MSG] {
    let mut b = [0u8; MSG];
    b[..8].copy_from_slice(&(0x1111_1111_0000_0000 | n).to_le_bytes());
    b[8..].copy_from_slice(&(0x2222_2222_0000_0000 | n).to_le_bytes());
    b
}

/// What a consumer saw of one claim: the message's version and its
/// delivery count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Got {
    pub n: u64,
    pub deliveries: u32,
}

/// Reads a claim's message and checks that it is whole: the length, the
/// version and both payload words agree.
pub fn read(e: &Engine<LoomMemory>, c: &Claim) -> Got {
    assert_eq!(c.len, MSG, "length of {c:?}");
    let mut b = [0u8; MSG];
    e.mem().read_bytes(e.payload_offset(c.slot), &mut b);
    assert_eq!(b, body(c.version), "torn or foreign payload in {c:?}");
    assert!(c.deliveries >= 1, "{c:?}");
    Got {
        n: c.version,
        deliveries: c.deliveries,
    }
}

/// Runs `f` as a participant that stops for good after `budget` memory
/// accesses (None: never). Returns `None` if it stopped.
pub fn participant<R>(budget: Option<u64>, f: impl FnOnce() -> R) -> Option<R> {
    LoomMemory::set_step_budget(budget);
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    LoomMemory::set_step_budget(None);
    match r {
        Ok(v) => Some(v),
        Err(p) if p.is::<Crashed>() => None,
        // A real failure (an assertion, or loom's own report): keep it.
        Err(p) => std::panic::resume_unwind(p),
    }
}

pub fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    // A consumer spins (with `yield_now`) on a reservation before it passes
    // it; every spin is a branch.
    b.max_branches = 20_000;
    b
}

/// Explores `model` once with nobody crashing.
pub fn check(name: &str, model: fn(Option<u64>) -> bool) {
    let start = Instant::now();
    let runs = std::sync::Arc::new(StdAtomicU64::new(0));
    let r = runs.clone();
    builder().check(move || {
        r.fetch_add(1, StdOrdering::Relaxed);
        assert!(!model(None), "crashed without a budget");
    });
    eprintln!(
        "{name}: {} executions, {:.1?}",
        runs.load(StdOrdering::Relaxed),
        start.elapsed()
    );
}

/// Explores `model(Some(k))` for k = 0, 1, 2, ... until the participant that
/// has the budget completed in every execution. `model` returns whether it
/// crashed.
pub fn check_crashes(name: &str, model: fn(Option<u64>) -> bool) {
    every_step(name, "crash", move |k| model(Some(k)));
}

/// Explores `model(k)` for k = 0, 1, 2, ... until it returns false (the
/// participant whose budget is k steps went through without its `what`, a
/// crash or a stall, taking effect) in every execution loom explored.
fn every_step(
    name: &str,
    what: &str,
    model: impl Fn(u64) -> bool + Copy + Send + Sync + std::panic::UnwindSafe + 'static,
) {
    let start = Instant::now();
    let runs = std::sync::Arc::new(StdAtomicU64::new(0));
    let mut k = 0u64;
    loop {
        let hit = std::sync::Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        let r = runs.clone();
        let explored = std::panic::catch_unwind(move || {
            builder().check(move || {
                r.fetch_add(1, StdOrdering::Relaxed);
                if model(k) {
                    h.store(true, StdOrdering::Relaxed);
                }
            })
        });
        if let Err(p) = explored {
            eprintln!("{name}: FAILED with a {what} after {k} steps");
            std::panic::resume_unwind(p);
        }
        if !hit.load(StdOrdering::Relaxed) {
            break;
        }
        k += 1;
        assert!(k < 1000, "{name}: the participant never completes");
    }
    eprintln!(
        "{name}: a {what} after each of 0..{k} steps, then none: {} executions, {:.1?}",
        runs.load(StdOrdering::Relaxed),
        start.elapsed()
    );
}

/// Runs `f` as a participant that stalls after `steps` memory accesses
/// until `gate` is set (see `LoomMemory::set_stall`), then goes on. Returns
/// `f`'s result and whether the participant reached its stall.
pub fn stalling<R>(
    steps: u64,
    gate: loom::sync::Arc<loom::sync::atomic::AtomicBool>,
    f: impl FnOnce() -> R,
) -> (R, bool) {
    LoomMemory::set_stall(steps, gate);
    let r = f();
    let stalled = !LoomMemory::take_pending_stall();
    (r, stalled)
}

/// Explores `model(k)` for k = 0, 1, 2, ... until the participant that
/// stalls after k steps completed before its stall in every execution.
/// `model` returns whether the participant stalled.
pub fn check_stalls(name: &str, model: fn(u64) -> bool) {
    every_step(name, "stall", model);
}

/// The end of a stall model over one message: a staller and another
/// consumer may each have claimed and acked it, and a final drain took what
/// was left. Holds when the message was acked exactly once in all, and the
/// staller's late ack did not land once the other consumer had claimed it
/// (its token named a claim that had ended).
pub fn assert_acked_once_despite_the_stall<G: std::fmt::Debug, D: std::fmt::Debug>(
    mine: &Option<(G, shmq::Result<shmq::Settled>)>,
    other: &Option<(G, shmq::Result<shmq::Settled>)>,
    drained: &[D],
) {
    let acked = |x: &Option<(G, shmq::Result<shmq::Settled>)>| {
        matches!(x, Some((_, Ok(shmq::Settled::Acked))))
    };
    let acks = usize::from(acked(mine)) + usize::from(acked(other)) + drained.len();
    assert_eq!(
        acks, 1,
        "acked {acks} times: staller {mine:?}, other {other:?}, drained {drained:?}"
    );
    assert!(
        !(acked(mine) && other.is_some()),
        "the staller's late ack landed after another consumer claimed the message: {mine:?} {other:?}"
    );
}
