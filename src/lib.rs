//! # shmq — a lock-free, crash-safe queue engine for one host
//!
//! Producers and consumers in separate processes share a bounded queue that
//! lives in a memory-mapped file, with no broker in between. Every state
//! change of a message is one compare-and-swap on its slot's word, so a
//! process killed at any instruction leaves a file that the survivors repair:
//! reservations of dead producers are abandoned, claims of dead consumers are
//! redelivered (detected at once through a lock the kernel drops at death),
//! and claims whose lease ran out are redelivered too.
//!
//! ```text
//!  producer ──reserve──► slot ──commit──► READY ──claim──► CLAIMED ──ack──► FREE
//!                                                   │  nack/expiry/death
//!                                                   └──► PENDING / DELAYED ──claim──► …
//!                                                   └──► dead letters (reject, max deliveries)
//! ```
//!
//! The file: a header (parameters, cursors, futex words), a participant table
//! (liveness and per-participant metrics), the slots, the key table and the
//! dead-letter area. Every offset and packed word of the file is owned by
//! one private module (`format`), and the protocol over it by another
//! (`engine`); neither is part of the API, which is [`Queue`] and the types
//! its operations take and give.
//!
//! ```no_run
//! use shmq::{Options, Queue};
//! use std::time::Duration;
//!
//! let q = Queue::create("/dev/shm/orders", &Options::default())?;
//! q.send(b"order 7", Duration::ZERO)?;
//! let m = q.claim(Duration::from_secs(1))?;
//! assert_eq!(m.data()?, b"order 7");
//! m.ack()?;
//! # Ok::<(), shmq::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]
// Without the `internals` door, the items (and re-exports) that only this
// repository's tests, fuzz targets and tools use, through the door, are
// unused here.
#![cfg_attr(not(feature = "internals"), allow(dead_code, unused_imports))]
// Under loom only the engine is built (for the models), not the queue that
// uses the rest.
#![cfg_attr(shmq_loom, allow(dead_code, unused_imports))]

// The engine's insides live in `internals`: public (and hidden from the
// docs) with the feature `internals`, private without it. The crate
// reaches them under their own names.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
#[cfg(not(feature = "internals"))]
mod internals;

#[cfg(all(feature = "async", not(shmq_loom)))]
pub(crate) use internals::waker;
#[cfg(not(shmq_loom))]
pub(crate) use internals::{clock, mapping, permissions, queue, space, sys};
pub(crate) use internals::{
    engine, error, format, keys, memory, metrics, options, participants, wait,
};
pub(crate) use internals::{layout, ring};

pub(crate) mod sync;

#[cfg(doctest)]
mod closed_routes;

#[cfg(not(shmq_loom))]
pub mod sigbus;

pub use engine::{Outcome, Repairs, Settled};
pub use error::{Error, Result, Status};
pub use metrics::{Counter, Histogram, HistogramSnapshot};
pub use options::{Access, Expiry, OpenOptions, Options, SendOptions, Timeout, WaitStrategy};
#[cfg(not(shmq_loom))]
pub use permissions::group_id;
#[cfg(all(feature = "async", not(shmq_loom)))]
pub use queue::{AsyncWait, ClaimAsync, HandleRef, SendAsync};
#[cfg(not(shmq_loom))]
pub use queue::{
    DeadLetter, Info, InfoParticipant, Message, ParticipantInfo, PeekState, Peeked, Queue,
    Reserved, Sent, Stats, VerifyReport, Watchdog,
};
#[cfg(not(shmq_loom))]
pub use sys::monotonic_ns;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
