//! The one door to the engine's insides, for this repository's tests, fuzz
//! targets, bench, command line and C ABI (feature `internals`; without it
//! this module is private). Nothing behind it is a stable API, and none of
//! it is needed to use a queue: that is [`crate::Queue`] and the types its
//! operations take and give.

#[cfg(not(shmq_loom))]
#[path = "clock.rs"]
pub mod clock;
#[path = "engine/mod.rs"]
pub mod engine;
#[path = "error.rs"]
pub mod error;
#[path = "format/mod.rs"]
pub mod format;
#[path = "keys.rs"]
pub mod keys;
#[cfg(not(shmq_loom))]
#[path = "mapping.rs"]
pub mod mapping;
#[path = "memory.rs"]
pub mod memory;
#[path = "metrics.rs"]
pub mod metrics;
#[path = "options.rs"]
pub mod options;
#[path = "participants.rs"]
pub mod participants;
#[cfg(not(shmq_loom))]
#[path = "permissions.rs"]
pub mod permissions;
#[cfg(not(shmq_loom))]
#[path = "queue/mod.rs"]
pub mod queue;
#[cfg(not(shmq_loom))]
#[path = "space.rs"]
pub mod space;
#[cfg(not(shmq_loom))]
#[path = "sys.rs"]
pub mod sys;
#[path = "wait.rs"]
pub mod wait;
#[cfg(all(feature = "async", not(shmq_loom)))]
#[path = "waker.rs"]
pub mod waker;

/// The engine under its former name (see [`engine`]).
pub use self::engine as ring;
/// The file format under its former name (see [`format`](mod@format)).
pub use self::format as layout;
