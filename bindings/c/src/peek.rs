//! Peeking: copies of the waiting messages, packed into the caller's
//! buffer, without claiming them or counting a delivery (`shmq_peek`).

use std::ffi::c_void;
use std::mem::size_of;

use super::claim::buffer;
use super::options::write_sized;
use super::queue::{shmq_queue, with_queue};
use super::send::{opt_out, put};
use super::status::{invalid, shmq_status};
use engine::{PeekState, Peeked};

/// `shmq_peeked.state`: committed, waiting to be claimed in ring order.
pub const SHMQ_PEEK_READY: u32 = 0;
/// `shmq_peeked.state`: waiting for redelivery (or committed after the
/// consumers passed its position).
pub const SHMQ_PEEK_PENDING: u32 = 1;
/// `shmq_peeked.state`: claimable once `not_before_ns` has passed.
pub const SHMQ_PEEK_DELAYED: u32 = 2;

/// A waiting message as `shmq_peek` copied it. Set `size =
/// sizeof(shmq_peeked)` in the first element before the call. Nothing in
/// it names a claim: a peeked message cannot be acked.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_peeked {
    /// `sizeof(shmq_peeked)` of the caller, for evolution.
    pub size: u32,
    /// `SHMQ_PEEK_READY`, `SHMQ_PEEK_PENDING` or `SHMQ_PEEK_DELAYED`.
    pub state: u32,
    /// The payload, in the caller's buffer.
    pub data: *const u8,
    /// Payload length.
    pub len: usize,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Deliveries so far (0 for a message never claimed; a peek counts none).
    pub deliveries: u64,
    /// CLOCK_MONOTONIC time of the first commit, ns.
    pub enqueued_ns: u64,
    /// CLOCK_MONOTONIC time a delayed message falls due, ns (0 unless
    /// delayed).
    pub not_before_ns: u64,
    /// Ring position.
    pub position: u64,
}

const PEEKED_V1: usize = size_of::<shmq_peeked>();

fn state_code(s: PeekState) -> u32 {
    match s {
        PeekState::Ready => SHMQ_PEEK_READY,
        PeekState::Pending => SHMQ_PEEK_PENDING,
        PeekState::Delayed => SHMQ_PEEK_DELAYED,
    }
}

fn to_c(p: &Peeked, data: *const u8) -> shmq_peeked {
    shmq_peeked {
        size: PEEKED_V1 as u32,
        state: state_code(p.state),
        data,
        len: p.payload.len(),
        key: p.key,
        version: p.version,
        deliveries: p.deliveries,
        enqueued_ns: p.enqueued_ns,
        not_before_ns: p.not_before_ns.unwrap_or(0),
        position: p.position,
    }
}

/// Copies up to `max` waiting messages (ready, pending redelivery,
/// delayed; not those claimed), in ring order, without claiming them or
/// counting a delivery: their payloads one after another into `buf`,
/// `msgs[i].data` pointing into it. Each copy is checked untorn (a message
/// claimed or replaced during its copy is left out). It copies no more
/// messages than fit whole: at most `buf_len / max_message_size`, so
/// `buf_len` must be at least max_message_size (else
/// `SHMQ_INVALID_ARGUMENT`). `*out_count` may be 0 (nothing waits: not an
/// error). Works on a read-only or inspection handle; writes nothing to the
/// file. A scan of every slot: not for a hot loop.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `buf` writable for `buf_len` bytes; `msgs`
/// writable for `max` entries of `msgs[0].size` bytes; `out_count` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_peek(
    q: *mut shmq_queue,
    buf: *mut c_void,
    buf_len: usize,
    msgs: *mut shmq_peeked,
    max: usize,
    out_count: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_peek";
    with_queue(q, OP, |inner| {
        opt_out(out_count, OP, "out_count").map_err(|e| inner.err(e))?;
        if msgs.is_null() || !msgs.is_aligned() {
            return Err(inner.err(invalid(OP, "msgs is NULL or misaligned")));
        }
        // SAFETY: forwarded from the caller.
        let b = unsafe { buffer(buf, buf_len, OP) }.map_err(|e| inner.err(e))?;
        let size = (inner.queue().layout().params.max_message_size as usize).max(1);
        let fit = (b.len() / size).min(max);
        if fit == 0 {
            return Err(inner.err(invalid(
                OP,
                format!("max is 0 or buf_len {buf_len} is less than max_message_size {size}"),
            )));
        }
        // SAFETY: non-null, aligned (checked above); the size field of the
        // caller's first entry (max >= fit > 0 entries).
        let stride = unsafe { msgs.cast::<u32>().read() } as usize;
        if stride < PEEKED_V1 || stride % std::mem::align_of::<shmq_peeked>() != 0 {
            return Err(inner.err(invalid(
                OP,
                format!("msgs[0].size {stride} is not sizeof(shmq_peeked)"),
            )));
        }
        let got = inner.queue().peek(fit)?;
        let mut at = 0usize;
        let mut n = 0usize;
        for (i, p) in got.iter().enumerate() {
            let len = p.payload.len();
            // Each payload is at most max_message_size and there are at
            // most `fit` of them: they fit; checked anyway.
            let Some(dst) = b.get_mut(at..at + len) else {
                break;
            };
            dst.copy_from_slice(&p.payload);
            // SAFETY: `at <= buf_len`, inside the caller's buffer.
            let data = unsafe { buf.cast::<u8>().add(at) }.cast_const();
            // SAFETY: entry i < fit <= max of the caller's array of
            // `stride`-byte entries.
            let e = unsafe { msgs.cast::<u8>().add(i * stride) }.cast::<shmq_peeked>();
            // SAFETY: in the caller's array; its size set so write_sized
            // copies this element whole.
            unsafe { e.cast::<u32>().write(stride as u32) };
            // SAFETY: as above.
            unsafe { write_sized(e, &to_c(p, data), PEEKED_V1, OP, "shmq_peeked") }
                .map_err(|e| inner.err(e))?;
            at += len;
            n = i + 1;
        }
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, n) };
        Ok(())
    })
}
