//! The one place that imports atomics and spin hints.
//!
//! Everything else in the crate imports from here, so that building with
//! `RUSTFLAGS="--cfg shmq_loom"` swaps the whole protocol onto loom's model
//! checker without touching its code (the pattern of tokio's `src/loom`).

#[cfg(not(shmq_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(shmq_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A hint that we are spinning on a word another participant will change.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(shmq_loom))]
    std::hint::spin_loop();
    #[cfg(shmq_loom)]
    loom::thread::yield_now();
}

/// A SeqCst fence that only the model checker needs.
///
/// The wake-up handshake (see `wait`) is correct under the C++20 rules for
/// SeqCst operations without a fence on the waker's side, but loom models
/// SeqCst loads and stores as acquire/release and would report a lost
/// wake-up that cannot happen; under loom the waker therefore fences.
#[inline]
pub(crate) fn loom_only_seqcst_fence() {
    #[cfg(shmq_loom)]
    fence(Ordering::SeqCst);
}
