//! The loom harness shared by `tests/loom.rs` and `tests/loom_keys.rs`:
//! participants that stop for good after a memory-access budget (a crash),
//! the model builder, and the loops that explore a model without a crash and
//! with a crash after each of its steps.

use shmq::internals::memory::{Crashed, LoomMemory};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::time::Instant;

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
