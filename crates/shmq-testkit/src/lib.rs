//! What this repository's tests, fuzz targets and `shmq torture` share, so
//! that each piece of test scaffolding exists once:
//!
//! - [`scratch`]: queue files and directories under `/dev/shm` that are
//!   removed however a test ends;
//! - [`rng`]: a seeded xorshift generator;
//! - [`hash`]: FNV-1a, for payload checksums and choices every process makes
//!   alike;
//! - [`child`]: helper processes (a test binary running one of its own
//!   ignored helper tests), their lifeline to the parent, hand-shake files;
//!   the [`crew`] of producers and consumers a SIGKILL test kills;
//! - [`payload`]: self-checking message payloads;
//! - [`model`]: the reference model of the keyed API that the proptest
//!   state machine and the `model_ops` fuzz target share;
//! - [`ledger`], [`consumer`] and [`oracle`]: the one SIGKILL ledger that
//!   producers and consumers write outside the queue, the checks a consumer
//!   makes at every claim, and the checks that read the ledger once
//!   everybody is dead, under the [`rules`] of the run.
//!
//! Not published; nothing here is an API of shmq. Under `--cfg shmq_loom`
//! (the loom models) the engine has no `Queue`, and neither has the kit:
//! only the pieces that need none are built.

pub mod child;
#[cfg(not(shmq_loom))]
pub mod consumer;
#[cfg(not(shmq_loom))]
pub mod crew;
pub mod hash;
pub mod ledger;
#[cfg(not(shmq_loom))]
pub mod model;
#[cfg(not(shmq_loom))]
pub mod oracle;
pub mod payload;
pub mod rng;
pub mod rules;
pub mod scratch;

pub use hash::fnv1a;
pub use rng::Rng;
pub use scratch::{unique_path, Scratch, SmallTmpfs, TempFile};
