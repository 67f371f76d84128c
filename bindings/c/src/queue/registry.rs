//! The registry of every shell handed out (chunks never freed, so a pointer
//! is a handle only when it is a shell's address in them), the fork watch
//! (a handle inherited by a forked child is refused), and the guard every
//! call on a handle goes through ([`with_queue`]).

use std::mem::{size_of, MaybeUninit};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use super::super::status::{call, invalid, shmq_status};
use engine::{Error, Status};

use super::{shmq_queue, Inner, BUSY, CLOSED, IDLE, MAGIC};

/// How many times this process is a fork child of the process that made
/// its older handles: incremented in the child by a `pthread_atfork` hook.
pub(super) static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    // Relaxed: the child has one thread now.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the fork hook once, before the first handle is made.
pub(super) fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a hook that only bumps an atomic, which is
        // async-signal-safe as the child side of fork requires.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
}

/// Holds a handle BUSY; sets it IDLE again on drop (also on a panic).
pub(super) struct Busy<'a>(&'a shmq_queue);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        // Release: our writes to the handle happen before the next user's.
        self.0.state.store(IDLE, Ordering::Release);
    }
}

/// Shells in the first chunk of the registry; chunk `k` holds
/// `FIRST_CHUNK << k`.
const FIRST_CHUNK: usize = 16;
/// Chunks of the registry (room for 16 * (2^40 - 1) handles).
const CHUNKS: usize = 40;

/// The registry of every shell handed out: chunks allocated on demand and
/// never freed. A chunk pointer, once set, never changes.
static CHUNK: [AtomicPtr<shmq_queue>; CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];
/// Shells initialised so far (global indices `0..HANDED`).
static HANDED: AtomicUsize = AtomicUsize::new(0);
/// Serialises the making of shells (not on any hot path).
static MAKING: Mutex<()> = Mutex::new(());

/// The chunk of global shell index `n`, and the first index in that chunk.
fn chunk_of(n: usize) -> (usize, usize) {
    let k = (n / FIRST_CHUNK + 1).ilog2() as usize;
    (k, FIRST_CHUNK * ((1 << k) - 1))
}

/// Stores a new shell in the registry and returns its address.
pub(super) fn register(shell: shmq_queue) -> Result<*mut shmq_queue, Error> {
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    // Relaxed: only shell makers store it, and they hold MAKING.
    let n = HANDED.load(Ordering::Relaxed);
    let (k, start) = chunk_of(n);
    if k >= CHUNKS {
        return Err(Error::new(Status::Internal, "out of queue handles"));
    }
    // Relaxed: written under MAKING, which we hold.
    let mut base = CHUNK[k].load(Ordering::Relaxed);
    if base.is_null() {
        let chunk: Box<[MaybeUninit<shmq_queue>]> = (0..FIRST_CHUNK << k)
            .map(|_| MaybeUninit::uninit())
            .collect();
        base = Box::into_raw(chunk).cast::<shmq_queue>();
        // Release: the chunk is allocated before anyone sees its address.
        CHUNK[k].store(base, Ordering::Release);
    }
    // SAFETY: index n - start < FIRST_CHUNK << k, inside the chunk; the
    // slot was never written (indices are handed out once).
    let p = unsafe { base.add(n - start) };
    // SAFETY: as above; an uninitialised slot of the right type.
    unsafe { p.write(shell) };
    // Release: the shell is written before its index counts as handed out.
    HANDED.store(n + 1, Ordering::Release);
    Ok(p)
}

/// Whether `q` is the address of a shell in the registry. Reads only the
/// registry, never what `q` points to.
fn registered(q: *const shmq_queue) -> bool {
    // Acquire: pairs with the Release store in `register`.
    let handed = HANDED.load(Ordering::Acquire);
    let addr = q as usize;
    let size = size_of::<shmq_queue>();
    for (k, chunk) in CHUNK.iter().enumerate() {
        let start = FIRST_CHUNK * ((1 << k) - 1);
        if start >= handed {
            return false;
        }
        // Acquire: pairs with the Release store of the chunk pointer.
        let base = chunk.load(Ordering::Acquire) as usize;
        let len = (FIRST_CHUNK << k) * size;
        if base != 0 && addr >= base && addr - base < len {
            let off = addr - base;
            return off % size == 0 && start + off / size < handed;
        }
    }
    false
}

/// Checks that `q` is a handle shmq gave out (live or closed).
pub(super) fn shell<'a>(q: *mut shmq_queue, op: &str) -> Result<&'a shmq_queue, Error> {
    if q.is_null() {
        return Err(invalid(op, "the queue handle is NULL"));
    }
    // The last address found in the registry: an address, once there, is
    // there for good (shells are never freed), so a program calling with
    // the same handle again skips the search.
    static LAST_FOUND: AtomicUsize = AtomicUsize::new(0);
    // Acquire: pairs with the Release store below, made after `registered`
    // synchronised with the shell's making, so the shell is initialised
    // for us too.
    if q as usize != LAST_FOUND.load(Ordering::Acquire) {
        if !registered(q) {
            return Err(invalid(
                op,
                "the queue handle is not one shmq gave out (a stray, forged or copied pointer)",
            ));
        }
        // Release: see the Acquire above.
        LAST_FOUND.store(q as usize, Ordering::Release);
    }
    // SAFETY: the address of an initialised shell in the registry, which
    // is never freed, so it stays readable after close.
    let h = unsafe { &*q };
    if h.magic != MAGIC {
        return Err(invalid(op, "the queue handle is not a shmq_queue"));
    }
    Ok(h)
}

/// Whether `h` was copied into this process by fork().
pub(super) fn inherited(h: &shmq_queue) -> bool {
    // Relaxed: a counter of this process only; one load per call.
    h.forks != FORKS.load(Ordering::Relaxed)
}

/// Checks the pointer and takes the handle for this call.
pub(super) fn enter<'a>(q: *mut shmq_queue, op: &str) -> Result<(&'a shmq_queue, Busy<'a>), Error> {
    let h = shell(q, op)?;
    if inherited(h) {
        return Err(invalid(
            op,
            "the queue handle was opened by the parent before fork(): \
             a forked child must open its own handle (shmq_close on this one \
             only forgets it)",
        ));
    }
    // Acquire: we see the previous user's writes to the handle.
    match h
        .state
        .compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed)
    {
        Ok(_) => Ok((h, Busy(h))),
        Err(CLOSED) => Err(Error::new(
            Status::Closed,
            format!("{op}: the queue handle was closed (use after close)"),
        )),
        Err(_) => Err(Error::new(
            Status::Closed,
            format!(
                "{op}: the queue handle is in use by another thread at this moment; \
                 a handle is used by one thread at a time (open one per thread)"
            ),
        )),
    }
}

/// Runs `f` with the live handle `q`, behind the panic boundary.
pub(crate) fn with_queue(
    q: *mut shmq_queue,
    op: &'static str,
    f: impl FnOnce(&mut Inner) -> Result<(), Error>,
) -> shmq_status {
    call(op, || {
        let (h, _busy) = enter(q, op)?;
        // SAFETY: BUSY gives this thread exclusive access to `inner` until
        // `_busy` drops at the end of this closure.
        let inner = unsafe { &mut *h.inner.get() };
        match inner.as_deref_mut() {
            // A queue whose file shrank under its mapping answers CORRUPT
            // to every call but close (the engine checks again inside).
            Some(inner) => {
                inner.queue().check_intact(op)?;
                f(inner)
            }
            None => Err(Error::new(
                Status::Internal,
                format!("{op}: live handle without queue"),
            )),
        }
    })
}
