//! The C ABI of shmq: `libshmq.so.0` and `libshmq.a`, described by
//! `include/shmq.h` (generated from this crate by cbindgen, checked in, and
//! compared with a fresh one by `bindings/c/tests/header.rs`).
//!
//! Conventions, kept by every function (after rustls-ffi and hyper's ffi):
//!
//! - Handles are opaque. What `shmq_create`/`shmq_open`/`shmq_inspect`
//!   returns is released exactly once by `shmq_close`. A closed handle
//!   answers `SHMQ_CLOSED` instead of crashing (its 40-byte shell is kept).
//!   A pointer that is not a handle shmq gave out (a stray pointer, a copy
//!   of a handle's bytes) is refused with `SHMQ_INVALID_ARGUMENT` without
//!   being read.
//! - Every fallible function returns a `shmq_status`; out-parameters are
//!   written only on success; a buffer pointer is always followed by its
//!   length.
//! - Structs the caller fills or allocates for output (`shmq_options`,
//!   `shmq_send_options`, `shmq_stats`, `shmq_info`, `shmq_dead_letter`)
//!   begin with their `size`, so they can grow without breaking old
//!   programs. `shmq_message` begins with its `size` too, but the claim
//!   calls write it; it keeps reserved words for new fields, and carries
//!   the id of the handle that claimed it, so that a message given to
//!   another handle (of another queue) is refused. `shmq_reservation` is
//!   fixed.
//! - Statuses coming from C are read as integers and converted totally.
//! - No panic crosses the boundary: a panic becomes `SHMQ_INTERNAL`.
//! - `shmq_last_error()` holds, per thread, the detail of the last failed
//!   call: the file, the operation and the cause.
//! - A handle is used by one thread at a time (two at once get
//!   `SHMQ_CLOSED` rather than a race); open one handle per thread. A forked
//!   child opens its own handle.
//!
//! One file per concern: [`status`] (codes, last error, panic boundary),
//! [`options`], [`queue`] (the handle's lifecycle), [`send`], [`claim`]
//! (claims and outcomes), [`peek`] (copies without claiming), [`stats`],
//! [`dlq`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

pub mod claim;
pub mod dlq;
pub mod options;
pub mod peek;
pub mod queue;
pub mod send;
pub mod stats;
pub mod status;
#[cfg(test)]
mod tests;

/// The ABI version of this header. `shmq_abi_version()` returns the
/// library's; a program may refuse to run when they differ.
///
/// 2: `shmq_message` begins with `size` and carries `handle_id` and
/// `reserved` words (its fields were reordered).
///
/// 3: `shmq_purge`; `shmq_stats` ends with `purged` and `expired`;
/// `shmq_options` ends with `message_ttl_ns` (and `SHMQ_FLAG_EXPIRY_DROP`),
/// `shmq_send_options` with `ttl_ns` (message expiry). The sized structs
/// of version 2 are still accepted.
pub const SHMQ_ABI_VERSION: u32 = 3;
