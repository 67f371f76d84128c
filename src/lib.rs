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
//! dead-letter area; see [`format`](mod@format), which owns every offset and every
//! packed word. The protocol over it is the [`engine`].
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

#[cfg(not(shmq_loom))]
pub mod clock;
pub mod engine;
pub mod error;
pub mod format;
pub mod keys;
#[cfg(not(shmq_loom))]
pub mod mapping;
pub mod memory;
pub mod metrics;
pub mod options;
pub mod participants;
#[cfg(not(shmq_loom))]
pub mod permissions;
pub(crate) mod sync;
pub mod wait;

/// The engine under its former name (see [`engine`]).
pub use engine as ring;
/// The file format under its former name (see [`format`](mod@format)).
pub use format as layout;

#[cfg(not(shmq_loom))]
pub mod queue;
#[cfg(not(shmq_loom))]
pub mod sigbus;
#[cfg(not(shmq_loom))]
pub mod sys;

pub use error::{Error, Result, Status};
pub use metrics::{Counter, Histogram};
pub use options::{Access, OpenOptions, Options, SendOptions, Timeout, WaitStrategy};
#[cfg(not(shmq_loom))]
pub use queue::{
    DeadLetter, Message, ParticipantInfo, Queue, Reserved, Sent, Stats, VerifyReport, Watchdog,
};

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
