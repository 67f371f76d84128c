//! Claiming (borrowed and copying, one and batches) and the four outcomes of
//! a claim, each naming the claim by its token and the handle that made it.

use std::ffi::{c_char, c_void, CStr};
use std::mem::size_of;

use super::queue::{shmq_queue, with_queue, Inner};
use super::send::{opt_out, put};
use super::status::{invalid, shmq_status};
use engine::internals::sys::monotonic_ns;
use engine::Message;
use engine::Outcome;
use engine::Timeout;
use engine::{Error, Status};

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

fn to_c(inner: &Inner, m: &Message<'_>, data: *const u8) -> shmq_message {
    shmq_message {
        size: MESSAGE_SIZE,
        deliveries: m.deliveries(),
        data,
        len: m.len(),
        key: m.key(),
        version: m.version(),
        enqueued_ns: m.enqueued_ns(),
        position: m.position(),
        token: m.token(),
        handle_id: inner.id,
        reserved: [0; 3],
    }
}

/// The payload pointer of a borrowed claim: C reads it while it holds the
/// claim, as documented on shmq_message.data.
fn borrowed(m: &Message<'_>) -> *const u8 {
    m.payload_ptr()
}

fn check_msg_out(inner: &Inner, msg: *mut shmq_message, op: &str) -> Result<(), Error> {
    if msg.is_null() || !msg.is_aligned() {
        return Err(inner.err(invalid(op, "msg is NULL or misaligned")));
    }
    Ok(())
}

/// Claims the next message, waiting up to `timeout_ns` (0 = try once:
/// `SHMQ_EMPTY`; negative = forever; positive = up to that long:
/// `SHMQ_TIMEOUT`). `msg->data` points into the shared mapping and stays
/// valid while the claim is held and the handle open; a consumer whose
/// lease was lost learns it from `shmq_ack` returning `SHMQ_LEASE_LOST`.
///
/// Thread safety: one thread at a time per handle; the claim belongs to
/// this handle (give its outcome through the same handle).
///
/// # Safety
/// `q` is NULL or a handle; `msg` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_claim(
    q: *mut shmq_queue,
    msg: *mut shmq_message,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_claim";
    with_queue(q, OP, |inner| {
        check_msg_out(inner, msg, OP)?;
        // SAFETY: the message(s) are dropped at the end of this call, while
        // `inner` lives.
        let m = unsafe { inner.queue_static() }.claim(Timeout::from_nanos(timeout_ns))?;
        let c = to_c(inner, &m, borrowed(&m));
        inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
        // SAFETY: checked non-null and aligned.
        unsafe { msg.write(c) };
        Ok(())
    })
}

/// Reads a caller's writable buffer.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
pub(crate) unsafe fn buffer<'a>(
    buf: *mut c_void,
    len: usize,
    op: &str,
) -> Result<&'a mut [u8], Error> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(invalid(op, format!("buf is NULL with a length of {len}")));
    }
    if len > isize::MAX as usize {
        return Err(invalid(op, format!("buf has an impossible length {len}")));
    }
    // SAFETY: non-null; the caller guarantees `len` writable bytes.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) })
}

fn max_message_size(inner: &Inner) -> usize {
    inner.queue().layout().params.max_message_size as usize
}

/// Claims the next message like `shmq_claim`, and copies its payload into
/// `buf`, checking that the claim was still held after the copy (a copy
/// that may be torn is never returned: the call fails with
/// `SHMQ_LEASE_LOST` and the message is redelivered). `buf_len` must be at
/// least the queue's max_message_size (see `shmq_get_info`), else
/// `SHMQ_INVALID_ARGUMENT` and nothing is claimed. `msg->data` is `buf`.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `msg` NULL or writable; `buf` writable for
/// `buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_claim_copy(
    q: *mut shmq_queue,
    msg: *mut shmq_message,
    buf: *mut c_void,
    buf_len: usize,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_claim_copy";
    with_queue(q, OP, |inner| {
        check_msg_out(inner, msg, OP)?;
        // SAFETY: forwarded from the caller.
        let b = unsafe { buffer(buf, buf_len, OP) }.map_err(|e| inner.err(e))?;
        let max = max_message_size(inner);
        if b.len() < max {
            return Err(inner.err(invalid(
                OP,
                format!("buf_len {buf_len} is less than max_message_size {max}"),
            )));
        }
        // SAFETY: the message(s) are dropped at the end of this call, while
        // `inner` lives.
        let m = unsafe { inner.queue_static() }.claim(Timeout::from_nanos(timeout_ns))?;
        let n = m.read_into(b)?;
        let mut c = to_c(inner, &m, buf.cast::<u8>());
        c.len = n;
        inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
        // SAFETY: checked non-null and aligned.
        unsafe { msg.write(c) };
        Ok(())
    })
}

/// Copies the payload of the claim `msg` (held by this handle) into `buf`
/// and checks that the claim was still held after the copy: `SHMQ_OK` means
/// the copy is whole. `SHMQ_TOO_LARGE` when `buf_len` is less than the
/// payload; `SHMQ_LEASE_LOST` when the claim is gone. `*out_len` (if not
/// NULL) is the payload length.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `msg` NULL or readable; `buf` writable for
/// `buf_len` bytes; `out_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_read(
    q: *mut shmq_queue,
    msg: *const shmq_message,
    buf: *mut c_void,
    buf_len: usize,
    out_len: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_read";
    with_queue(q, OP, |inner| {
        opt_out(out_len, OP, "out_len").map_err(|e| inner.err(e))?;
        // SAFETY: forwarded from the caller.
        let m = unsafe { read_msg(inner, msg, OP) }?;
        // SAFETY: forwarded from the caller.
        let b = unsafe { buffer(buf, buf_len, OP) }.map_err(|e| inner.err(e))?;
        let n = inner.queue().read_payload(m.token, b)?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_len, n) };
        Ok(())
    })
}

/// Claims up to `max` messages: waits up to `timeout_ns` for the first
/// (as `shmq_claim`), then takes what is claimable now. `msgs[0..*out_count]`
/// are filled, borrowed like `shmq_claim`'s.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `msgs` writable for `max` entries; `out_count`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_claim_batch(
    q: *mut shmq_queue,
    msgs: *mut shmq_message,
    max: usize,
    out_count: *mut usize,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_claim_batch";
    with_queue(q, OP, |inner| {
        opt_out(out_count, OP, "out_count").map_err(|e| inner.err(e))?;
        if max == 0 {
            return Err(inner.err(invalid(OP, "max is 0")));
        }
        check_msg_out(inner, msgs, OP)?;
        // SAFETY: the message(s) are dropped at the end of this call, while
        // `inner` lives.
        let got =
            unsafe { inner.queue_static() }.claim_batch(max, Timeout::from_nanos(timeout_ns))?;
        for (i, m) in got.iter().enumerate() {
            let c = to_c(inner, m, borrowed(m));
            inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
            // SAFETY: i < got.len() <= max entries, from the caller.
            unsafe { msgs.add(i).write(c) };
        }
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, got.len()) };
        Ok(())
    })
}

/// Claims up to `max` messages like `shmq_claim_batch` and copies their
/// payloads one after another into `buf` (each checked for tearing; a
/// message whose claim was lost during its copy is left out and
/// redelivered). It claims no more messages than fit whole: at most
/// `buf_len / max_message_size`, so `buf_len` must be at least
/// max_message_size. `msgs[i].data` points into `buf`.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `buf` writable for `buf_len` bytes; `msgs`
/// writable for `max` entries; `out_count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_claim_packed(
    q: *mut shmq_queue,
    buf: *mut c_void,
    buf_len: usize,
    msgs: *mut shmq_message,
    max: usize,
    out_count: *mut usize,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_claim_packed";
    with_queue(q, OP, |inner| {
        opt_out(out_count, OP, "out_count").map_err(|e| inner.err(e))?;
        check_msg_out(inner, msgs, OP)?;
        // SAFETY: forwarded from the caller.
        let b = unsafe { buffer(buf, buf_len, OP) }.map_err(|e| inner.err(e))?;
        let size = max_message_size(inner).max(1);
        let fit = (b.len() / size).min(max);
        if fit == 0 {
            return Err(inner.err(invalid(
                OP,
                format!("max is 0 or buf_len {buf_len} is less than max_message_size {size}"),
            )));
        }
        // SAFETY: the message(s) are dropped at the end of this call, while
        // `inner` lives.
        let got =
            unsafe { inner.queue_static() }.claim_batch(fit, Timeout::from_nanos(timeout_ns))?;
        let mut at = 0usize;
        let mut n = 0usize;
        let mut lost = None;
        for m in &got {
            match m.read_into(&mut b[at..]) {
                Ok(len) => {
                    // SAFETY: `at <= buf_len`, inside the caller's buffer.
                    let mut c = to_c(inner, m, unsafe { buf.cast::<u8>().add(at) });
                    c.len = len;
                    inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
                    // SAFETY: n < got.len() <= max entries, from the caller.
                    unsafe { msgs.add(n).write(c) };
                    at += len;
                    n += 1;
                }
                Err(e) => lost = Some(e),
            }
        }
        if n == 0 {
            if let Some(e) = lost {
                return Err(e);
            }
        }
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, n) };
        Ok(())
    })
}

/// Reads the caller's message `what` (`msg`, `msgs[i]`) and checks that it
/// is one this handle claimed: its size first (read alone, so nothing past
/// a shorter struct is read), then `reserved` and `handle_id`.
///
/// # Safety
/// `msg` is non-null, aligned, and readable for its `size` (at least 4
/// bytes).
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
        return Err(inner.err(invalid(
            op,
            format!(
                "{what}->size is {size}, not sizeof(shmq_message) = {MESSAGE_SIZE}: \
                 not a message filled by a claim call of this library \
                 (ABI version {}); copy messages whole",
                super::SHMQ_ABI_VERSION
            ),
        )));
    }
    // SAFETY: the caller's struct is `size` = sizeof(shmq_message) bytes.
    let m = unsafe { msg.read() };
    if m.reserved != [0; 3] {
        return Err(inner.err(invalid(
            op,
            format!(
                "{what}->reserved is not zero: not a message filled by a claim call; \
                 copy messages whole"
            ),
        )));
    }
    if m.handle_id != inner.id {
        return Err(foreign(inner, &m, op, what));
    }
    Ok(m)
}

/// The error for a message this handle did not claim.
#[cold]
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
        // SAFETY: forwarded from the caller.
        let m = unsafe { read_msg(inner, msg, OP) }?;
        settle(inner, m.token, &Outcome::Ack)
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
            unsafe { read_own(inner, msgs.add(i), OP, &format_args!("msgs[{i}]")) }?;
        }
        let mut acked = 0;
        for i in 0..count {
            // SAFETY: i < count entries, from the caller, checked above.
            let m = unsafe { msgs.add(i).read() };
            match settle(inner, m.token, &Outcome::Ack) {
                Ok(()) => acked += 1,
                Err(e) if e.status() == Status::LeaseLost => {}
                Err(e) => return Err(e),
            }
        }
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
