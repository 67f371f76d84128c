//! Claiming (borrowed and copying, one and batches) and the four outcomes of
//! a claim, each naming the claim by its token and the handle that made it.
//!
//! One file per side: `claiming` (the claim calls and `shmq_read`) and
//! `outcomes` (ack, nack, reject, extend the lease, and the latest acked
//! version). This file holds the message (`shmq_message`) and the checks
//! that a message given back is one this handle claimed.

mod claiming;
mod outcomes;

use std::mem::size_of;

use super::queue::Inner;
use super::status::invalid;
use engine::{Error, Status};

pub(crate) use claiming::buffer;
pub use claiming::{shmq_claim, shmq_claim_batch, shmq_claim_copy, shmq_claim_packed, shmq_read};
pub use outcomes::{
    shmq_ack, shmq_ack_batch, shmq_extend_lease, shmq_latest_acked_version, shmq_nack, shmq_reject,
};

/// A claimed message. Filled by the claim calls; give it back, through the
/// handle that claimed it, to exactly one outcome call (`shmq_ack`,
/// `shmq_nack`, `shmq_reject`), with any number of `shmq_extend_lease` and
/// `shmq_read` before. `token` and `handle_id` name the claim; the other
/// fields are for the reader.
///
/// Every call that takes a message first checks `size`, `handle_id` and
/// `reserved`: a message claimed through another handle (of another queue,
/// or another or closed handle of the same one), or not filled by a claim,
/// is refused with `SHMQ_INVALID_ARGUMENT` (`SHMQ_PERMISSION` on a read-only
/// handle) and nothing changes. Copy a message whole (e.g. into the array
/// for `shmq_ack_batch`); never build one field by field.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_message {
    /// `sizeof(shmq_message)`, written by the claim calls (the caller need
    /// not set it). The calls that take a message read it alone first and
    /// refuse any other value without reading further. New fields go into
    /// `reserved`, so the size is not expected to change.
    pub size: u32,
    /// 1 on the first delivery, counting up with each redelivery.
    pub deliveries: u32,
    /// The payload. From `shmq_claim`/`shmq_claim_batch`: in the shared
    /// mapping, unchanged while the claim is held (use `shmq_read` for a copy
    /// checked for tearing); from the copying claims: in the caller's buffer.
    pub data: *const u8,
    /// Payload length.
    pub len: usize,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// CLOCK_MONOTONIC time of the first commit, ns.
    pub enqueued_ns: u64,
    /// Ring position.
    pub position: u64,
    /// The fencing token of this claim (opaque: compare it, never decode
    /// it).
    pub token: u64,
    /// The handle that claimed the message: an id of its own among every
    /// handle this process has made, never reused, not even after close.
    /// Never 0.
    pub handle_id: u64,
    /// Zero (room for future fields). A message whose reserved words are
    /// not all zero is refused.
    pub reserved: [u64; 3],
}

/// The only `shmq_message.size` this version accepts.
const MESSAGE_SIZE: u32 = size_of::<shmq_message>() as u32;
/// Reads the caller's message `what` (`msg`, `msgs[i]`) and checks that it
/// is one this handle claimed: its size first (read alone, so nothing past
/// a shorter struct is read), then `reserved` and `handle_id`. Inlined, with
/// the errors out of line: a caller that uses only the token reads only
/// the words it checks.
///
/// # Safety
/// `msg` is non-null, aligned, and readable for its `size` (at least 4
/// bytes).
#[inline(always)]
unsafe fn read_own(
    inner: &Inner,
    msg: *const shmq_message,
    op: &str,
    what: &dyn std::fmt::Display,
) -> Result<shmq_message, Error> {
    // SAFETY: every shmq_message begins with its u32 size; the caller
    // guarantees those 4 bytes.
    let size = unsafe { msg.cast::<u32>().read() };
    if size != MESSAGE_SIZE {
        return Err(wrong_size(inner, size, op, what));
    }
    // SAFETY: the caller's struct is `size` = sizeof(shmq_message) bytes.
    let m = unsafe { msg.read() };
    if m.reserved != [0; 3] {
        return Err(not_zero(inner, op, what));
    }
    if m.handle_id != inner.id {
        return Err(foreign(inner, &m, op, what));
    }
    Ok(m)
}

/// The error for a message whose size is not `sizeof(shmq_message)`.
#[cold]
#[inline(never)]
fn wrong_size(inner: &Inner, size: u32, op: &str, what: &dyn std::fmt::Display) -> Error {
    inner.err(invalid(
        op,
        format!(
            "{what}->size is {size}, not sizeof(shmq_message) = {MESSAGE_SIZE}: \
             not a message filled by a claim call of this library \
             (ABI version {}); copy messages whole",
            super::SHMQ_ABI_VERSION
        ),
    ))
}

/// The error for a message whose reserved words are not zero.
#[cold]
#[inline(never)]
fn not_zero(inner: &Inner, op: &str, what: &dyn std::fmt::Display) -> Error {
    inner.err(invalid(
        op,
        format!(
            "{what}->reserved is not zero: not a message filled by a claim call; \
             copy messages whole"
        ),
    ))
}

/// The error for a message this handle did not claim.
#[cold]
#[inline(never)]
fn foreign(inner: &Inner, m: &shmq_message, op: &str, what: &dyn std::fmt::Display) -> Error {
    if inner.queue().read_only() {
        // A read-only handle holds no claim and refuses every change.
        return Error::new(
            Status::Permission,
            format!(
                "{}: {op}: this handle is read-only: it holds no claim and cannot change \
                 the queue",
                inner.path.display()
            ),
        );
    }
    let cause = if m.handle_id == 0 {
        format!("{what}->handle_id is 0: not a message filled by a claim call")
    } else {
        format!(
            "{what} was claimed through another handle (handle_id {}; this handle is {}): \
             a handle of another queue, or another or closed handle of this one; give a \
             message's outcome through the handle that claimed it",
            m.handle_id, inner.id
        )
    };
    inner.err(invalid(op, cause))
}

/// Reads the caller's message, checked by [`read_own`].
///
/// # Safety
/// `msg` is NULL or readable for its `size`.
#[inline(always)]
unsafe fn read_msg(
    inner: &Inner,
    msg: *const shmq_message,
    op: &str,
) -> Result<shmq_message, Error> {
    if msg.is_null() || !msg.is_aligned() {
        return Err(inner.err(invalid(op, "msg is NULL or misaligned")));
    }
    // SAFETY: non-null and aligned; readable as the caller guarantees.
    unsafe { read_own(inner, msg, op, &"msg") }
}
