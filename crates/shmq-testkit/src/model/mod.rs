//! The reference model of the queue's keyed API, shared by its two drivers:
//! the proptest state machine `tests/model_keys.rs` (real clock, several
//! handles, per-key order, delays, stats) and the fuzz target
//! `fuzz/src/model_ops.rs` (byte-driven, engine time moved forward to force
//! repairs, reservations, raw and foreign tokens, dead-letter get and
//! redrive).
//!
//! What lives here is what both drivers model alike, once:
//!
//! - [`mod@payload`]: payloads that name their message;
//! - [`keys`]: the engine's key table as the model sees it: the version a
//!   keyed send gets or the refusal it must get (`KEYS_FULL`, `STALE`), the
//!   last acked version of each key, the latest-only waiting message, and
//!   what `evict_keys` removes;
//! - [`state`]: the reference state (every message, the key table, the
//!   dead letters) and the moves both drivers make alike: to the dead
//!   letters or to waiting for room there, the repair pass that moves the
//!   waiting ones, a claim ended without an outcome;
//! - [`claim`]: the expected answer of a claim, message by message;
//! - [`settle`]: the model's side of an ack, a nack or a reject;
//! - [`compare`]: the comparison of that state with the file after every
//!   step (each slot's state, owner, token, key, version, payload and due
//!   time; the dead letters);
//! - [`mod@file`]: reading what the model is compared with in the queue file
//!   (slot words and fields, payloads, the dead letters), and the checks both
//!   drivers make after every step (`latest_acked_version` of every key,
//!   `verify`).
//!
//! The expected outcome of the other calls (sends, which claims and outcomes
//! a call must refuse or find nothing for, redrives)
//! and the operations themselves are still each driver's own.

pub mod claim;
pub mod compare;
pub mod file;
pub mod keys;
pub mod payload;
pub mod settle;
pub mod state;

pub use keys::{Expect, KeyEntry, KeyTable};
pub use payload::{id_of, payload};
