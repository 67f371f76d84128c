//! Sending: copying sends (one, a batch of buffers, a packed batch) and the
//! zero-copy path (reserve a slot, write into the mapping, commit or abort).

use std::ffi::c_void;
use std::mem::MaybeUninit;

use super::options::{read_send_options, shmq_send_options};
use super::queue::{shmq_queue, with_queue, Inner, ReservationEntry};
use super::status::{invalid, shmq_status};
use engine::{Error, Status};
use engine::{SendOptions, Timeout};

/// Makes a byte slice of a C buffer (NULL is fine when `len` is 0).
///
/// # Safety
/// `data` is NULL or readable for `len` bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(
    data: *const c_void,
    len: usize,
    what: &str,
) -> Result<&'a [u8], String> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(format!("{what} is NULL with a length of {len}"));
    }
    if len > isize::MAX as usize {
        return Err(format!("{what} has an impossible length {len}"));
    }
    // SAFETY: non-null, the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// Checks an optional out-parameter before the call acts: NULL (not
/// wanted) or aligned. A misaligned one is refused rather than silently not
/// written (the caller would not learn, say, how many messages it claimed).
pub(crate) fn opt_out<T>(p: *mut T, op: &str, what: &str) -> Result<(), Error> {
    if !p.is_null() && !p.is_aligned() {
        return Err(invalid(op, format!("{what} is misaligned")));
    }
    Ok(())
}

/// Writes an optional out-parameter (checked by [`opt_out`] first).
///
/// # Safety
/// `p` is NULL or writable.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() && p.is_aligned() {
        // SAFETY: non-null, aligned; the caller's.
        unsafe { p.write(v) };
    }
}

/// Sends one copy of `data[0..len]` with a key (0 = none) and a version
/// (0 on a keyed send = the key's next version). `timeout_ns`: 0 = try once
/// (`SHMQ_FULL`), negative = wait forever, positive = wait up to that long
/// (`SHMQ_TIMEOUT`). A keyed send may return `SHMQ_STALE` or
/// `SHMQ_KEYS_FULL`; a payload over max_message_size `SHMQ_TOO_LARGE`.
///
/// Thread safety: one thread at a time per handle. `data` is only read
/// during the call.
///
/// # Safety
/// `q` is NULL or a handle; `data` is readable for `len` bytes (NULL is
/// allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmq_send(
    q: *mut shmq_queue,
    data: *const c_void,
    len: usize,
    key: u64,
    version: u64,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_send";
    with_queue(q, OP, |inner| {
        // SAFETY: forwarded from the caller.
        let d = unsafe { bytes(data, len, "data") }.map_err(|c| inner.err(invalid(OP, c)))?;
        let timeout = Timeout::from_nanos(timeout_ns);
        if key == 0 && version == 0 {
            // A plain message: no options to convert.
            return inner.queue().send(d, timeout).map(|_| ());
        }
        let opts = SendOptions {
            key,
            version,
            timeout,
            delay: std::time::Duration::ZERO,
            ttl: std::time::Duration::ZERO,
        };
        inner.queue().send_with(d, &opts).map(|_| ())
    })
}

/// Sends one copy of `data[0..len]` with the options `opts` (NULL = no key,
/// try once, no delay). On success writes the ring position and the
/// version the message carries to `out_position` and `out_version` when
/// they are not NULL.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `data` is readable for `len` bytes; `opts` is
/// NULL or a `shmq_send_options` set up by `shmq_send_options_init`; the
/// out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_send_ex(
    q: *mut shmq_queue,
    data: *const c_void,
    len: usize,
    opts: *const shmq_send_options,
    out_position: *mut u64,
    out_version: *mut u64,
) -> shmq_status {
    const OP: &str = "shmq_send_ex";
    with_queue(q, OP, |inner| {
        opt_out(out_position, OP, "out_position").map_err(|e| inner.err(e))?;
        opt_out(out_version, OP, "out_version").map_err(|e| inner.err(e))?;
        // SAFETY: forwarded from the caller.
        let d = unsafe { bytes(data, len, "data") }.map_err(|c| inner.err(invalid(OP, c)))?;
        // SAFETY: forwarded from the caller.
        let o = unsafe { read_send_options(opts, OP) }.map_err(|e| inner.err(e))?;
        let sent = inner.queue().send_with(d, &o)?;
        // SAFETY: NULL or writable, from the caller.
        unsafe {
            put(out_position, sent.position);
            put(out_version, sent.version);
        }
        Ok(())
    })
}

/// One buffer of a batch.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_iovec {
    /// The payload (NULL allowed when `len` is 0).
    pub data: *const c_void,
    /// Its length.
    pub len: usize,
}

/// Sends `count` messages without keys: waits up to `timeout_ns` for room
/// for the first, then sends as many as fit now, in order. `*out_sent` is
/// how many were sent (the first `*out_sent` of `msgs`). `SHMQ_FULL` or
/// `SHMQ_TIMEOUT` when not even the first fits.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `msgs` is readable for `count` entries whose
/// buffers are readable; `out_sent` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_send_batch(
    q: *mut shmq_queue,
    msgs: *const shmq_iovec,
    count: usize,
    out_sent: *mut usize,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_send_batch";
    with_queue(q, OP, |inner| {
        opt_out(out_sent, OP, "out_sent").map_err(|e| inner.err(e))?;
        {
            let total = count
                .checked_mul(size_of_iovec())
                .ok_or_else(|| inner.err(invalid(OP, format!("count {count} is impossible"))))?;
            // SAFETY: forwarded from the caller (an array of `count` iovecs).
            let iov = unsafe { bytes(msgs.cast(), total, "msgs") }
                .map_err(|c| inner.err(invalid(OP, c)))?;
            if !iov.is_empty() && !msgs.is_aligned() {
                return Err(inner.err(invalid(OP, "msgs is misaligned")));
            }
        }
        // A batch of up to STACK_BATCH is gathered on the stack (only its
        // first `count` entries are written and read), a larger one in a Vec.
        let mut stack = [MaybeUninit::<&[u8]>::uninit(); STACK_BATCH];
        let mut heap = Vec::new();
        if count > STACK_BATCH {
            heap.reserve_exact(count);
        }
        for i in 0..count {
            // SAFETY: i < count, within the caller's array.
            let m = unsafe { msgs.add(i).read() };
            // SAFETY: the caller's buffer.
            let d = unsafe { bytes(m.data, m.len, "msgs[i].data") }
                .map_err(|c| inner.err(invalid(OP, format!("message {i}: {c}"))))?;
            match stack.get_mut(i) {
                Some(slot) if count <= STACK_BATCH => {
                    slot.write(d);
                }
                _ => heap.push(d),
            }
        }
        let v: &[&[u8]] = if count <= STACK_BATCH {
            // SAFETY: the first `count` entries were written above, and
            // MaybeUninit<T> has the layout of T.
            unsafe { std::slice::from_raw_parts(stack.as_ptr().cast(), count) }
        } else {
            &heap
        };
        let n = send_all(inner, v, timeout_ns)?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_sent, n) };
        Ok(())
    })
}

/// Batches of up to this many messages are gathered on the stack: a batch
/// send allocates nothing unless it is larger.
const STACK_BATCH: usize = 64;

fn size_of_iovec() -> usize {
    std::mem::size_of::<shmq_iovec>()
}

fn send_all(inner: &Inner, v: &[&[u8]], timeout_ns: i64) -> Result<usize, Error> {
    if v.is_empty() {
        return Ok(0);
    }
    inner.queue().send_batch(v, Timeout::from_nanos(timeout_ns))
}

/// Sends `count` messages packed one after another in `data[0..data_len]`,
/// message `i` being `lens[i]` bytes long; otherwise as `shmq_send_batch`.
/// This is the fastest way to send many small messages from a language
/// binding (one buffer and one array instead of `count` objects).
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `data` readable for `data_len` bytes; `lens`
/// readable for `count` entries; `out_sent` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_send_packed(
    q: *mut shmq_queue,
    data: *const c_void,
    data_len: usize,
    lens: *const usize,
    count: usize,
    out_sent: *mut usize,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_send_packed";
    with_queue(q, OP, |inner| {
        opt_out(out_sent, OP, "out_sent").map_err(|e| inner.err(e))?;
        // SAFETY: forwarded from the caller.
        let all =
            unsafe { bytes(data, data_len, "data") }.map_err(|c| inner.err(invalid(OP, c)))?;
        if count > 0 && (lens.is_null() || !lens.is_aligned()) {
            return Err(inner.err(invalid(OP, "lens is NULL or misaligned")));
        }
        let lens: &[usize] = if count == 0 {
            &[]
        } else {
            // SAFETY: non-null, aligned, `count` entries from the caller.
            unsafe { std::slice::from_raw_parts(lens, count) }
        };
        // Gathered as in shmq_send_batch: on the stack up to STACK_BATCH.
        let mut stack = [MaybeUninit::<&[u8]>::uninit(); STACK_BATCH];
        let mut heap = Vec::new();
        if count > STACK_BATCH {
            heap.reserve_exact(count);
        }
        let mut at = 0usize;
        for (i, &l) in lens.iter().enumerate() {
            let end = at
                .checked_add(l)
                .filter(|e| *e <= all.len())
                .ok_or_else(|| {
                    inner.err(invalid(
                        OP,
                        format!("lens[{i}] = {l} runs past data_len {data_len}"),
                    ))
                })?;
            match stack.get_mut(i) {
                Some(slot) if count <= STACK_BATCH => {
                    slot.write(&all[at..end]);
                }
                _ => heap.push(&all[at..end]),
            }
            at = end;
        }
        let v: &[&[u8]] = if count <= STACK_BATCH {
            // SAFETY: the first `count` entries were written above, and
            // MaybeUninit<T> has the layout of T.
            unsafe { std::slice::from_raw_parts(stack.as_ptr().cast(), count) }
        } else {
            &heap
        };
        let n = send_all(inner, v, timeout_ns)?;
        // SAFETY: NULL or writable, from the caller.
        unsafe { put(out_sent, n) };
        Ok(())
    })
}

/// A reserved slot to write a message in place (zero-copy send).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_reservation {
    /// Where to write the payload: `capacity` bytes in the shared mapping.
    /// Valid until `shmq_commit`/`shmq_abort` of this reservation or
    /// `shmq_close` of its handle.
    pub data: *mut u8,
    /// Bytes reserved (the `len` asked for).
    pub capacity: usize,
    /// Ring position of the slot.
    pub position: u64,
    /// Names the reservation to `shmq_commit`/`shmq_abort`.
    pub id: u64,
}

/// Reserves a slot for a payload of up to `len` bytes (at most
/// max_message_size), waiting for room like `shmq_send`. Write the payload
/// to `out->data`, then `shmq_commit` (or `shmq_abort`). A reservation left
/// uncommitted longer than the queue's reservation timeout is abandoned and
/// its commit returns `SHMQ_ABANDONED`; consumers never wait for it.
///
/// Thread safety: one thread at a time per handle; the reservation belongs
/// to this handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_reserve(
    q: *mut shmq_queue,
    len: usize,
    out: *mut shmq_reservation,
    timeout_ns: i64,
) -> shmq_status {
    const OP: &str = "shmq_reserve";
    with_queue(q, OP, |inner| {
        if out.is_null() || !out.is_aligned() {
            return Err(inner.err(invalid(OP, "out is NULL or misaligned")));
        }
        // SAFETY: the reservation is stored in `inner.reservations` (or
        // dropped on an error below), which `Inner::drop` clears first.
        let mut r =
            unsafe { inner.queue_static() }.reserve(len, Timeout::from_nanos(timeout_ns))?;
        let data = r.as_mut_ptr();
        let position = r.position();
        let index = match inner.free.pop() {
            Some(i) => i,
            None => {
                inner
                    .reservations
                    .push(ReservationEntry { gen: 0, r: None });
                (inner.reservations.len() - 1) as u32
            }
        };
        let e = &mut inner.reservations[index as usize];
        e.gen = e.gen.wrapping_add(1);
        e.r = Some(r);
        let id = (e.gen as u64) << 32 | index as u64;
        // SAFETY: checked non-null and aligned.
        unsafe {
            out.write(shmq_reservation {
                data,
                capacity: len,
                position,
                id,
            })
        };
        Ok(())
    })
}

/// Takes the reservation `r` names out of the handle.
///
/// # Safety
/// `r` is NULL or readable.
unsafe fn take(
    inner: &mut Inner,
    r: *const shmq_reservation,
    op: &str,
) -> Result<(engine::Reserved<'static>, usize), Error> {
    if r.is_null() || !r.is_aligned() {
        return Err(inner.err(invalid(op, "the reservation is NULL or misaligned")));
    }
    // SAFETY: non-null, aligned; the caller's struct.
    let r = unsafe { r.read() };
    let (gen, index) = ((r.id >> 32) as u32, r.id as u32 as usize);
    match inner.reservations.get_mut(index) {
        Some(e) if e.gen == gen && e.r.is_some() => {
            let res =
                e.r.take()
                    .ok_or_else(|| Error::new(Status::Internal, "taken"))?;
            inner.free.push(index as u32);
            Ok((res, r.capacity))
        }
        _ => Err(Error::new(
            Status::NotFound,
            format!(
                "{}: {op}: no open reservation with id {:#x} on this handle \
                 (already committed or aborted, or forged)",
                inner.path.display(),
                r.id
            ),
        )),
    }
}

/// Commits `len` bytes (at most the reserved capacity) of the reservation
/// `r` with a key and version (as in `shmq_send`). The reservation is
/// finished whatever the result: `SHMQ_ABANDONED` means it was abandoned
/// first and nothing was sent (retry with a new reservation); a second
/// commit or abort of it is `SHMQ_NOT_FOUND`.
///
/// Thread safety: one thread at a time per handle; the handle that reserved.
///
/// # Safety
/// `q` is NULL or a handle; `r` is NULL or a reservation from `shmq_reserve`.
#[no_mangle]
pub unsafe extern "C" fn shmq_commit(
    q: *mut shmq_queue,
    r: *const shmq_reservation,
    len: usize,
    key: u64,
    version: u64,
) -> shmq_status {
    const OP: &str = "shmq_commit";
    with_queue(q, OP, |inner| {
        // SAFETY: forwarded from the caller.
        let (res, cap) = unsafe { take(inner, r, OP) }?;
        commit(
            inner,
            res,
            cap,
            len,
            &SendOptions::new().key(key).version(version),
            OP,
        )
        .map(|_| ())
    })
}

fn commit(
    inner: &Inner,
    mut res: engine::Reserved<'static>,
    cap: usize,
    len: usize,
    opts: &SendOptions,
    op: &str,
) -> Result<engine::Sent, Error> {
    if len > cap.min(res.capacity()) {
        // Dropping `res` aborts the reservation.
        return Err(Error::new(
            Status::TooLarge,
            format!(
                "{}: {op}: commit of {len} bytes from a {}-byte reservation (it was aborted)",
                inner.path.display(),
                res.capacity()
            ),
        ));
    }
    res.set_len(len)?;
    res.commit_with(opts)
}

/// Like `shmq_commit`, with `opts` (key, version, delay; the timeout is
/// ignored) and the position and version written to the out-pointers that
/// are not NULL.
///
/// Thread safety: one thread at a time per handle; the handle that reserved.
///
/// # Safety
/// As `shmq_commit`; `opts` NULL or initialised; out-pointers NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_commit_ex(
    q: *mut shmq_queue,
    r: *const shmq_reservation,
    len: usize,
    opts: *const shmq_send_options,
    out_position: *mut u64,
    out_version: *mut u64,
) -> shmq_status {
    const OP: &str = "shmq_commit_ex";
    with_queue(q, OP, |inner| {
        opt_out(out_position, OP, "out_position").map_err(|e| inner.err(e))?;
        opt_out(out_version, OP, "out_version").map_err(|e| inner.err(e))?;
        // SAFETY: forwarded from the caller.
        let o = unsafe { read_send_options(opts, OP) }.map_err(|e| inner.err(e))?;
        // SAFETY: forwarded from the caller.
        let (res, cap) = unsafe { take(inner, r, OP) }?;
        let sent = commit(inner, res, cap, len, &o, OP)?;
        // SAFETY: NULL or writable, from the caller.
        unsafe {
            put(out_position, sent.position);
            put(out_version, sent.version);
        }
        Ok(())
    })
}

/// Gives the reserved slot back without sending. A second commit or abort
/// of it is `SHMQ_NOT_FOUND`.
///
/// Thread safety: one thread at a time per handle; the handle that reserved.
///
/// # Safety
/// `q` is NULL or a handle; `r` is NULL or a reservation from `shmq_reserve`.
#[no_mangle]
pub unsafe extern "C" fn shmq_abort(q: *mut shmq_queue, r: *const shmq_reservation) -> shmq_status {
    const OP: &str = "shmq_abort";
    with_queue(q, OP, |inner| {
        // SAFETY: forwarded from the caller.
        let (res, _) = unsafe { take(inner, r, OP) }?;
        res.abort()
    })
}
