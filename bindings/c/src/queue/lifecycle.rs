//! A handle's lifecycle: `shmq_create`, `shmq_open`, `shmq_open_ex` and
//! `shmq_inspect` hand one out; `shmq_close` drops its queue and keeps the
//! closed shell.

use std::cell::UnsafeCell;
use std::ffi::{c_char, CStr};
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::super::options::{read_open_options, read_options, shmq_open_options, shmq_options};
use super::super::status::{call, invalid, shmq_status};
use engine::Queue;
use engine::{Error, Status};

use super::owner::enter_for_close;
use super::registry::{inherited, register, shell, watch_forks, FORKS};
use super::{shmq_queue, Inner, CLOSED, IDLE, MAGIC};

/// Reads a C path.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn read_path<'a>(path: *const c_char, op: &str) -> Result<&'a Path, Error> {
    if path.is_null() {
        return Err(invalid(op, "path is NULL"));
    }
    // SAFETY: non-null; the caller passes a NUL-terminated string.
    let c = unsafe { CStr::from_ptr(path) };
    use std::os::unix::ffi::OsStrExt;
    Ok(Path::new(std::ffi::OsStr::from_bytes(c.to_bytes())))
}

/// Hands a new handle to C.
///
/// # Safety
/// `out` is non-null, aligned and writable.
unsafe fn hand_out(q: Queue, out: *mut *mut shmq_queue) -> Result<(), Error> {
    watch_forks();
    let p = register(shmq_queue {
        magic: MAGIC,
        forks: FORKS.load(Ordering::Relaxed),
        state: AtomicU32::new(IDLE),
        owner: AtomicPtr::new(std::ptr::null_mut()),
        revocations: AtomicU32::new(0),
        #[cfg(debug_assertions)]
        inside: AtomicU32::new(0),
        inner: UnsafeCell::new(Some(Inner::new(q))),
    })?;
    // SAFETY: forwarded from the caller.
    unsafe { out.write(p) };
    Ok(())
}

pub(super) fn check_out<T>(out: *mut T, op: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(invalid(op, "the out-parameter is NULL"));
    }
    if !out.is_aligned() {
        return Err(invalid(op, "the out-parameter is misaligned"));
    }
    Ok(())
}

/// Creates a new queue file at `path` (it must not exist: `SHMQ_EXISTS`)
/// with `opts` (NULL = the defaults) and attaches to it. On success `*out`
/// is the new handle, to be released with `shmq_close`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `opts` is NULL or a `shmq_options`
/// filled by `shmq_options_init`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_create(
    path: *const c_char,
    opts: *const shmq_options,
    out: *mut *mut shmq_queue,
) -> shmq_status {
    const OP: &str = "shmq_create";
    call(OP, || {
        check_out(out, OP)?;
        // SAFETY: forwarded from the caller.
        let p = unsafe { read_path(path, OP) }?;
        let o = if opts.is_null() {
            shmq_options::default().engine_options(OP)?
        } else {
            if !opts.is_aligned() {
                return Err(invalid(OP, "opts is misaligned"));
            }
            // SAFETY: non-null, aligned; the caller's struct.
            unsafe { read_options(opts, OP) }
                .map_err(|e| Error::new(e.status(), format!("{}: {}", p.display(), e.message())))?
        };
        let q = Queue::create(p, &o)?;
        // SAFETY: checked above.
        unsafe { hand_out(q, out) }
    })
}

/// Opens an existing queue file and attaches to it as a participant (a
/// producer and/or consumer). On success `*out` is the new handle, to be
/// released with `shmq_close`. A forked child must open its own handle.
///
/// Thread safety: any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_open(path: *const c_char, out: *mut *mut shmq_queue) -> shmq_status {
    const OP: &str = "shmq_open";
    call(OP, || {
        check_out(out, OP)?;
        // SAFETY: forwarded from the caller.
        let p = unsafe { read_path(path, OP) }?;
        let q = Queue::open(p)?;
        // SAFETY: checked above.
        unsafe { hand_out(q, out) }
    })
}

/// Opens an existing queue file as `opts` says (NULL = the defaults, as
/// `shmq_open`): as a participant, for inspection, or read-only
/// (`SHMQ_ACCESS_*`), accepting a group-shared file or any owner
/// (`SHMQ_OPEN_*`). A file that fails the checks gives `SHMQ_PERMISSION`
/// with the cause in `shmq_last_error()`. On success `*out` is the new
/// handle, to be released with `shmq_close`.
///
/// Thread safety: any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `opts` is NULL or a
/// `shmq_open_options` filled by `shmq_open_options_init`; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_open_ex(
    path: *const c_char,
    opts: *const shmq_open_options,
    out: *mut *mut shmq_queue,
) -> shmq_status {
    const OP: &str = "shmq_open_ex";
    call(OP, || {
        check_out(out, OP)?;
        // SAFETY: forwarded from the caller.
        let p = unsafe { read_path(path, OP) }?;
        // SAFETY: forwarded from the caller.
        let o = unsafe { read_open_options(opts, OP) }
            .map_err(|e| Error::new(e.status(), format!("{}: {}", p.display(), e.message())))?;
        let q = Queue::open_with(p, &o)?;
        // SAFETY: checked above.
        unsafe { hand_out(q, out) }
    })
}

/// Opens a queue file without attaching, for stats, verify, recover and
/// dead-letter calls (read-only when the file is not writable). Sends and
/// claims through it fail with `SHMQ_INVALID_ARGUMENT`, or `SHMQ_PERMISSION`
/// when it is read-only.
///
/// Thread safety: any thread.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_inspect(
    path: *const c_char,
    out: *mut *mut shmq_queue,
) -> shmq_status {
    const OP: &str = "shmq_inspect";
    call(OP, || {
        check_out(out, OP)?;
        // SAFETY: forwarded from the caller.
        let p = unsafe { read_path(path, OP) }?;
        let q = Queue::inspect(p)?;
        // SAFETY: checked above.
        unsafe { hand_out(q, out) }
    })
}

/// Detaches and releases the handle: open reservations are aborted, claims
/// still held are redelivered at once, the file is unmapped (every
/// `msg->data` of this handle becomes invalid). Call it exactly once per
/// handle; later calls with it (including a second close) return
/// `SHMQ_CLOSED`. NULL returns `SHMQ_INVALID_ARGUMENT`. In a forked child, a
/// handle inherited from the parent (which every other call refuses with
/// `SHMQ_INVALID_ARGUMENT`) is only forgotten: the parent keeps its claims.
///
/// Thread safety: no other call on `q` may be running (one that is gets
/// `SHMQ_CLOSED` back from this close).
///
/// # Safety
/// `q` is NULL or a handle from `shmq_create`/`shmq_open`/`shmq_inspect`.
#[no_mangle]
pub unsafe extern "C" fn shmq_close(q: *mut shmq_queue) -> shmq_status {
    const OP: &str = "shmq_close";
    call(OP, || {
        let h = shell(q, OP)?;
        if inherited(h) {
            // A copy of the parent's handle: dropping its queue would give
            // up the parent's participant entry and locks. Forget it.
            if h.state
                .compare_exchange(IDLE, CLOSED, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return Err(Error::new(Status::Closed, format!("{OP}: already closed")));
            }
            // SAFETY: CLOSED was set by us from IDLE: nobody else uses `inner`.
            std::mem::forget(unsafe { (*h.inner.get()).take() });
            return Ok(());
        }
        // Takes the handle from its owner thread, if another one, and
        // leaves it with none: every later call takes the slow way and
        // finds CLOSED.
        let busy = enter_for_close(h, OP)?;
        // SAFETY: BUSY, with no owner, gives exclusive access to `inner`.
        let inner = unsafe { (*h.inner.get()).take() };
        // The handle is closed for good: CLOSED instead of IDLE.
        busy.close();
        drop(inner);
        Ok(())
    })
}
