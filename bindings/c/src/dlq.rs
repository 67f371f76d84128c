//! Dead letters: list, get (with the payload), redrive, purge; and the
//! purge of the queue itself (its waiting messages).

use std::ffi::{c_char, c_void};
use std::mem::size_of;

use super::claim::buffer;
use super::options::write_sized;
use super::queue::{shmq_queue, with_queue};
use super::send::{opt_out, put};
use super::status::{invalid, shmq_status};
use engine::DeadLetter;
use engine::{Error, Status};

/// `id` for `shmq_dlq_redrive` and `shmq_dlq_purge`: every dead letter.
pub const SHMQ_DLQ_ALL: u64 = 0;

/// Room for a dead letter's reason, NUL included.
pub const SHMQ_REASON_MAX: usize = 256;

/// A dead letter (without its payload: see `shmq_dlq_get`). Set `size =
/// sizeof(shmq_dead_letter)` (in the first element, for a list) before the
/// call.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_dead_letter {
    /// `sizeof(shmq_dead_letter)` of the caller, for evolution.
    pub size: u32,
    /// Unique id within the file (never 0).
    pub id: u64,
    /// Delivery attempts.
    pub attempts: u64,
    /// CLOCK_MONOTONIC time of the first enqueue, ns.
    pub first_enqueued_ns: u64,
    /// CLOCK_MONOTONIC time it was dead-lettered, ns.
    pub dead_ns: u64,
    /// Pid of the last consumer (0 if none).
    pub last_consumer_pid: u64,
    /// Key.
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Payload length.
    pub len: usize,
    /// Why it was dead-lettered, NUL-terminated.
    pub reason: [c_char; SHMQ_REASON_MAX],
}

impl Default for shmq_dead_letter {
    fn default() -> Self {
        shmq_dead_letter {
            size: size_of::<shmq_dead_letter>() as u32,
            id: 0,
            attempts: 0,
            first_enqueued_ns: 0,
            dead_ns: 0,
            last_consumer_pid: 0,
            key: 0,
            version: 0,
            len: 0,
            reason: [0; SHMQ_REASON_MAX],
        }
    }
}

const DEAD_LETTER_V1: usize = size_of::<shmq_dead_letter>();

fn to_c(d: &DeadLetter) -> shmq_dead_letter {
    let mut c = shmq_dead_letter {
        id: d.id,
        attempts: d.attempts,
        first_enqueued_ns: d.first_enqueued_ns,
        dead_ns: d.dead_ns,
        last_consumer_pid: d.last_consumer_pid,
        key: d.key,
        version: d.version,
        len: d.payload.len(),
        ..Default::default()
    };
    for (dst, src) in c.reason.iter_mut().zip(
        d.reason
            .bytes()
            .filter(|b| *b != 0)
            .take(SHMQ_REASON_MAX - 1),
    ) {
        *dst = src as c_char;
    }
    c
}

/// Lists the dead letters, oldest id first: writes `min(max, total)` of them
/// to `out` and the total number to `*out_total` (so `max` 0 and `out` NULL
/// ask for the count). The stride is `out[0].size`.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` writable for `max` entries of
/// `out[0].size` bytes; `out_total` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_dlq_list(
    q: *mut shmq_queue,
    out: *mut shmq_dead_letter,
    max: usize,
    out_total: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_dlq_list";
    with_queue(q, OP, |inner| {
        opt_out(out_total, OP, "out_total").map_err(|e| inner.err(e))?;
        if max > 0 && (out.is_null() || !out.is_aligned()) {
            return Err(inner.err(invalid(OP, "out is NULL or misaligned")));
        }
        let stride = if max > 0 {
            // SAFETY: non-null, aligned; the size field of the caller's first entry.
            let s = unsafe { out.cast::<u32>().read() } as usize;
            if s < DEAD_LETTER_V1 || s % std::mem::align_of::<shmq_dead_letter>() != 0 {
                return Err(inner.err(invalid(
                    OP,
                    format!("out[0].size {s} is not sizeof(shmq_dead_letter)"),
                )));
            }
            s
        } else {
            0
        };
        let list = inner.queue().dlq_list();
        for (i, d) in list.iter().take(max).enumerate() {
            // SAFETY: entry i < max of the caller's array of `stride`-byte entries.
            let p = unsafe { out.cast::<u8>().add(i * stride) }.cast::<shmq_dead_letter>();
            // SAFETY: in the caller's array; set the size so write_sized
            // copies this element whole.
            unsafe { p.cast::<u32>().write(stride as u32) };
            // SAFETY: as above.
            unsafe { write_sized(p, &to_c(d), DEAD_LETTER_V1, OP, "shmq_dead_letter") }
                .map_err(|e| inner.err(e))?;
        }
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_total, list.len()) };
        Ok(())
    })
}

/// The dead letter `id`: its record in `*out` (set `out->size` first) and
/// its payload in `buf` (`*out_len` its length). `SHMQ_NOT_FOUND` if there
/// is none; `SHMQ_TOO_LARGE` if `buf_len` is less than the payload (see
/// `len` in `shmq_dlq_list`); nothing is written then.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` NULL or writable; `buf` writable for
/// `buf_len` bytes; `out_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_dlq_get(
    q: *mut shmq_queue,
    id: u64,
    out: *mut shmq_dead_letter,
    buf: *mut c_void,
    buf_len: usize,
    out_len: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_dlq_get";
    with_queue(q, OP, |inner| {
        opt_out(out_len, OP, "out_len").map_err(|e| inner.err(e))?;
        if out.is_null() || !out.is_aligned() {
            return Err(inner.err(invalid(OP, "out is NULL or misaligned")));
        }
        // SAFETY: forwarded from the caller.
        let b = unsafe { buffer(buf, buf_len, OP) }.map_err(|e| inner.err(e))?;
        let d = inner.queue().dlq_get(id)?;
        if d.payload.len() > b.len() {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "{}: {OP}: buffer of {buf_len} bytes for a {}-byte payload",
                    inner.path.display(),
                    d.payload.len()
                ),
            ));
        }
        // SAFETY: the caller's struct of its `size`.
        unsafe { write_sized(out, &to_c(&d), DEAD_LETTER_V1, OP, "shmq_dead_letter") }
            .map_err(|e| inner.err(e))?;
        b[..d.payload.len()].copy_from_slice(&d.payload);
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_len, d.payload.len()) };
        Ok(())
    })
}

/// Sends the dead letter `id` (or every one, with `SHMQ_DLQ_ALL`) back to
/// the queue with its delivery count reset; `*out_count` is how many went
/// back (it stops early when the queue is full). `SHMQ_NOT_FOUND` for an
/// unknown id.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out_count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_dlq_redrive(
    q: *mut shmq_queue,
    id: u64,
    out_count: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_dlq_redrive";
    with_queue(q, OP, |inner| {
        opt_out(out_count, OP, "out_count").map_err(|e| inner.err(e))?;
        let n = inner
            .queue()
            .dlq_redrive((id != SHMQ_DLQ_ALL).then_some(id))?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, n) };
        Ok(())
    })
}

/// Deletes the dead letter `id` (or every one, with `SHMQ_DLQ_ALL`);
/// `*out_count` is how many. `SHMQ_NOT_FOUND` for an unknown id.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out_count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_dlq_purge(
    q: *mut shmq_queue,
    id: u64,
    out_count: *mut usize,
) -> shmq_status {
    const OP: &str = "shmq_dlq_purge";
    with_queue(q, OP, |inner| {
        opt_out(out_count, OP, "out_count").map_err(|e| inner.err(e))?;
        let n = inner
            .queue()
            .dlq_purge((id != SHMQ_DLQ_ALL).then_some(id))?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, n) };
        Ok(())
    })
}

/// Removes every waiting message of the queue (ready, pending redelivery,
/// delayed); messages in flight stay with their consumers, whose outcomes
/// still count. `*out_count` is how many were removed (also counted in
/// `shmq_stats.purged`). Producers waiting for room are woken.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out_count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_purge(q: *mut shmq_queue, out_count: *mut u64) -> shmq_status {
    const OP: &str = "shmq_purge";
    with_queue(q, OP, |inner| {
        opt_out(out_count, OP, "out_count").map_err(|e| inner.err(e))?;
        let n = inner.queue().purge()?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_count, n) };
        Ok(())
    })
}
