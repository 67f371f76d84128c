//! The outcomes of a claim (`shmq_ack`, `shmq_nack`, `shmq_reject`,
//! `shmq_ack_batch`), the lease extension (`shmq_extend_lease`) and the
//! latest acked version of a key.

use std::ffi::{c_char, CStr};

use super::super::queue::{shmq_queue, with_queue, Inner};
use super::super::send::{opt_out, put};
use super::super::status::{invalid, shmq_status};
use engine::internals::sys::monotonic_ns;
use engine::Error;
use engine::Outcome;

use super::{read_msg, read_own, shmq_message, MESSAGE_SIZE};

/// The token of the caller's message `what` once it passed [`read_own`]'s
/// checks, reading only the words they look at and the token; a message
/// that fails them goes through `read_own` itself, which builds the error.
///
/// # Safety
/// As [`read_own`]: `msg` is non-null, aligned, and readable for its
/// `size` (at least 4 bytes).
#[inline(always)]
unsafe fn own_token(
    inner: &Inner,
    msg: *const shmq_message,
    op: &str,
    what: &dyn std::fmt::Display,
) -> Result<u64, Error> {
    // SAFETY: every shmq_message begins with its u32 size; the caller
    // guarantees those 4 bytes.
    if unsafe { msg.cast::<u32>().read() } == MESSAGE_SIZE {
        // SAFETY: the caller's struct is `size` = sizeof(shmq_message)
        // bytes, aligned; each field is read in place.
        let (reserved, handle_id, token) = unsafe {
            (
                std::ptr::addr_of!((*msg).reserved).read(),
                std::ptr::addr_of!((*msg).handle_id).read(),
                std::ptr::addr_of!((*msg).token).read(),
            )
        };
        if reserved == [0; 3] && handle_id == inner.id {
            return Ok(token);
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { own_token_refused(inner, msg, op, what) }
}

/// [`own_token`] for a message its checks refuse: [`read_own`]'s error.
///
/// # Safety
/// As [`own_token`].
#[cold]
#[inline(never)]
unsafe fn own_token_refused(
    inner: &Inner,
    msg: *const shmq_message,
    op: &str,
    what: &dyn std::fmt::Display,
) -> Result<u64, Error> {
    // SAFETY: forwarded from the caller.
    unsafe { read_own(inner, msg, op, what) }.map(|m| m.token)
}

/// `msgs[i]`, as an error names the message of a batch: written only when
/// an error is built.
struct MsgAt(usize);

impl std::fmt::Display for MsgAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "msgs[{}]", self.0)
    }
}

fn settle(inner: &mut Inner, token: u64, outcome: &Outcome<'_>) -> Result<(), Error> {
    let times = match outcome {
        Outcome::Extend { .. } => (None, None),
        _ => inner.take_claim(token),
    };
    inner
        .queue()
        .settle(token, outcome, times.0, times.1)
        .map(|_| ())
}

/// Done: the message is deleted. `SHMQ_LEASE_LOST` if the claim is no
/// longer held (lease expired and redelivered, or an outcome was already
/// given); a forged token is `SHMQ_INVALID_ARGUMENT` or `SHMQ_LEASE_LOST`.
///
/// Thread safety: one thread at a time per handle; the handle that claimed.
///
/// # Safety
/// `q` is NULL or a handle; `msg` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn shmq_ack(q: *mut shmq_queue, msg: *const shmq_message) -> shmq_status {
    const OP: &str = "shmq_ack";
    with_queue(q, OP, |inner| {
        if msg.is_null() || !msg.is_aligned() {
            // SAFETY: forwarded from the caller (`read_msg` refuses it).
            return unsafe { read_msg(inner, msg, OP) }.map(|_| ());
        }
        // SAFETY: non-null and aligned; readable as the caller guarantees.
        let token = unsafe { own_token(inner, msg, OP, &"msg") }?;
        let (claimed_ns, enqueued_ns) = inner.take_claim(token);
        // `with_queue` checked the handle just before (`check_intact`).
        inner
            .queue()
            .ack_token_entered(token, claimed_ns, enqueued_ns)
    })
}

/// Try again later: the message is redelivered after `delay_ns` (0 = at
/// once). Counts as a failed delivery: on the last of max_deliveries the
/// message goes to the dead letters instead.
///
/// Thread safety: one thread at a time per handle; the handle that claimed.
///
/// # Safety
/// `q` is NULL or a handle; `msg` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn shmq_nack(
    q: *mut shmq_queue,
    msg: *const shmq_message,
    delay_ns: u64,
) -> shmq_status {
    const OP: &str = "shmq_nack";
    with_queue(q, OP, |inner| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { read_msg(inner, msg, OP) }?;
        let not_before_ns = if delay_ns == 0 {
            0
        } else {
            monotonic_ns().saturating_add(delay_ns)
        };
        settle(inner, m.token, &Outcome::Nack { not_before_ns })
    })
}

/// Give up now: the message goes straight to the dead letters with
/// `reason` (NULL = "rejected"; kept up to 160 bytes).
///
/// Thread safety: one thread at a time per handle; the handle that claimed.
///
/// # Safety
/// `q` is NULL or a handle; `msg` NULL or readable; `reason` NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn shmq_reject(
    q: *mut shmq_queue,
    msg: *const shmq_message,
    reason: *const c_char,
) -> shmq_status {
    const OP: &str = "shmq_reject";
    with_queue(q, OP, |inner| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { read_msg(inner, msg, OP) }?;
        let reason = if reason.is_null() {
            "rejected".into()
        } else {
            // SAFETY: non-null, NUL-terminated, from the caller.
            unsafe { CStr::from_ptr(reason) }.to_string_lossy()
        };
        settle(inner, m.token, &Outcome::Reject { reason: &reason })
    })
}

/// Still working: the claim's lease now ends `lease_ns` from now.
/// `SHMQ_LEASE_LOST` if it already ended.
///
/// Thread safety: one thread at a time per handle; the handle that claimed.
///
/// # Safety
/// `q` is NULL or a handle; `msg` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn shmq_extend_lease(
    q: *mut shmq_queue,
    msg: *const shmq_message,
    lease_ns: u64,
) -> shmq_status {
    const OP: &str = "shmq_extend_lease";
    with_queue(q, OP, |inner| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { read_msg(inner, msg, OP) }?;
        if lease_ns == 0 {
            return Err(inner.err(invalid(OP, "lease_ns is 0")));
        }
        let deadline_ns = monotonic_ns().saturating_add(lease_ns);
        settle(inner, m.token, &Outcome::Extend { deadline_ns })
    })
}

/// Acks `count` claims; `*out_acked` is how many were acked. Every message
/// is checked first (as every call taking a message does): one that this
/// handle did not claim fails the whole batch with `SHMQ_INVALID_ARGUMENT`
/// before anything is acked. A claim whose lease was lost is skipped (not
/// an error, not counted); any other error stops the batch and is returned
/// (`*out_acked` is not written then).
///
/// Thread safety: one thread at a time per handle; the handle that claimed.
///
/// # Safety
/// `q` is NULL or a handle; `msgs` readable for `count` entries;
/// `out_acked` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_ack_batch(
    q: *mut shmq_queue,
    msgs: *const shmq_message,
    count: usize,
    out_acked: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_ack_batch";
    with_queue(q, OP, |inner| {
        opt_out(out_acked, OP, "out_acked").map_err(|e| inner.err(e))?;
        if count > 0 && (msgs.is_null() || !msgs.is_aligned()) {
            return Err(inner.err(invalid(OP, "msgs is NULL or misaligned")));
        }
        for i in 0..count {
            // SAFETY: i < count entries, from the caller; aligned as `msgs`.
            unsafe { own_token(inner, msgs.add(i), OP, &MsgAt(i)) }?;
        }
        let acked = if count == 0 {
            0
        } else {
            // SAFETY: the queue lives as long as `inner`, which outlives this
            // use; borrowed apart from `inner.claims`, which the acks take
            // the claim times from.
            let queue = unsafe { inner.queue_static() };
            queue.ack_tokens(count, |i| {
                // SAFETY: i < count entries, from the caller, checked above.
                let token = unsafe { (*msgs.add(i)).token };
                let (claimed_ns, enqueued_ns) = inner.take_claim(token);
                (token, claimed_ns, enqueued_ns)
            })?
        };
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_acked, acked) };
        Ok(())
    })
}

/// The last acked version of `key` (0 when none was acked yet) in
/// `*out`. `SHMQ_INVALID_ARGUMENT` for key 0 or a queue without a key table.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_latest_acked_version(
    q: *mut shmq_queue,
    key: u64,
    out: *mut u64,
) -> shmq_status {
    const OP: &str = "shmq_latest_acked_version";
    with_queue(q, OP, |inner| {
        if out.is_null() || !out.is_aligned() {
            return Err(inner.err(invalid(OP, "out is NULL or misaligned")));
        }
        if key == 0 {
            return Err(inner.err(invalid(OP, "key 0 means no key")));
        }
        if inner.queue().layout().params.key_capacity == 0 {
            return Err(inner.err(invalid(OP, "this queue has no key table (key_capacity 0)")));
        }
        let v = inner.queue().latest_acked_version(key);
        // SAFETY: checked non-null and aligned.
        unsafe { out.write(v) };
        Ok(())
    })
}
