//! The claim calls: one message (borrowed, `shmq_claim`, or copied,
//! `shmq_claim_copy`), a batch (`shmq_claim_batch`, `shmq_claim_packed`), and
//! `shmq_read` of a claimed message.

use std::ffi::c_void;

use super::super::queue::{shmq_queue, with_queue, Inner};
use super::super::send::{opt_out, put};
use super::super::status::{invalid, shmq_status};
use engine::Error;
use engine::Message;
use engine::Timeout;

use super::{read_msg, shmq_message, MESSAGE_SIZE};

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
        // Only a sampled claim is timed (as the Rust API does).
        if m.sampled() {
            inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
        }
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
        let q = unsafe { inner.queue_static() };
        q.claim_copy(b, Timeout::from_nanos(timeout_ns), |m, n| {
            let mut c = to_c(inner, m, buf.cast::<u8>());
            c.len = n;
            // Only a sampled claim is timed (as the Rust API does).
            if m.sampled() {
                inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
            }
            // SAFETY: checked non-null and aligned.
            unsafe { msg.write(c) };
        })
    })
}

/// Copies the payload of the claim `msg` (held by this handle) into `buf`
/// and checks that the claim was still held after the copy: `SHMQ_OK` means
/// the copy is whole. `SHMQ_TOO_LARGE` when `buf_len` is less than the
/// payload; `SHMQ_LEASE_LOST` when the claim is gone. `*out_len` (if not
/// NULL) is the payload length. A claim not held when the call starts leaves
/// `buf` untouched; one lost during the copy (its lease ran out and another
/// consumer took it) returns `SHMQ_LEASE_LOST` with a possibly torn copy in
/// `buf`.
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
            // Only a sampled claim is timed (as the Rust API does).
            if m.sampled() {
                inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
            }
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
        let q = unsafe { inner.queue_static() };
        let mut n = 0usize;
        q.claim_packed(b, fit, Timeout::from_nanos(timeout_ns), |m, at, len| {
            // SAFETY: `at <= buf_len`, inside the caller's buffer.
            let mut c = to_c(inner, m, unsafe { buf.cast::<u8>().add(at) });
            c.len = len;
            // Only a sampled claim is timed (as the Rust API does).
            if m.sampled() {
                inner.note_claim(c.token, m.claimed_ns(), c.enqueued_ns);
            }
            // SAFETY: n < fit <= max entries, from the caller.
            unsafe { msgs.add(n).write(c) };
            n += 1;
        })?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, n) };
        Ok(())
    })
}
