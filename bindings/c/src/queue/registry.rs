//! The registry of every shell handed out (chunks never freed, so a pointer
//! is a handle only when it is a shell's address in them), and the fork
//! watch (a handle inherited by a forked child is refused).

use std::mem::{size_of, MaybeUninit};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use super::super::status::invalid;
use engine::{Error, Status};

use super::owner::forget_thread_id;
use super::{shmq_queue, MAGIC};

/// How many times this process is a fork child of the process that made
/// its older handles: incremented in the child by a `pthread_atfork` hook.
pub(super) static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    // Relaxed: the child has one thread now.
    FORKS.fetch_add(1, Ordering::Relaxed);
    // The forking thread owns none of the handles the child inherited.
    forget_thread_id();
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

/// The last address found in the registry: an address, once there, is
/// there for good (shells are never freed), so a program calling with the
/// same handle again skips the search. 0 until a handle is found.
static LAST_FOUND: AtomicUsize = AtomicUsize::new(0);

/// Checks that `q` is a handle shmq gave out (live or closed).
#[inline(always)]
pub(super) fn shell<'a>(q: *mut shmq_queue, op: &str) -> Result<&'a shmq_queue, Error> {
    // Acquire: pairs with the Release store in `shell_searched`, made after
    // `registered` synchronised with the shell's making, so the shell is
    // initialised for us too.
    if q.is_null() || q as usize != LAST_FOUND.load(Ordering::Acquire) {
        return shell_searched(q, op);
    }
    // SAFETY: the address of an initialised shell in the registry (it was
    // found there), which is never freed, so it stays readable after close.
    let h = unsafe { &*q };
    if h.magic != MAGIC {
        return Err(not_a_queue(op));
    }
    Ok(h)
}

/// [`shell`] for an address other than the last one found: searches the
/// registry.
#[cold]
#[inline(never)]
fn shell_searched<'a>(q: *mut shmq_queue, op: &str) -> Result<&'a shmq_queue, Error> {
    if q.is_null() {
        return Err(invalid(op, "the queue handle is NULL"));
    }
    if !registered(q) {
        return Err(invalid(
            op,
            "the queue handle is not one shmq gave out (a stray, forged or copied pointer)",
        ));
    }
    // Release: see the Acquire in `shell`.
    LAST_FOUND.store(q as usize, Ordering::Release);
    // SAFETY: the address of an initialised shell in the registry, which
    // is never freed, so it stays readable after close.
    let h = unsafe { &*q };
    if h.magic != MAGIC {
        return Err(not_a_queue(op));
    }
    Ok(h)
}

#[cold]
fn not_a_queue(op: &str) -> Error {
    invalid(op, "the queue handle is not a shmq_queue")
}

/// Whether `h` was copied into this process by fork().
pub(super) fn inherited(h: &shmq_queue) -> bool {
    // Relaxed: a counter of this process only; one load per call.
    h.forks != FORKS.load(Ordering::Relaxed)
}
