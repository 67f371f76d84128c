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
