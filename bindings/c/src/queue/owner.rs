//! Who may use a handle during a call: biased ownership, so that the calls
//! of the thread that uses a handle take it without a locked instruction.
//!
//! The algorithm is the asymmetric Dekker protocol of biased locking
//! (Dice, Moir and Scherer, "Quickly reacquirable locks", 2003; the
//! `membarrier(2)` form is folly's `asymmetricLightBarrier` /
//! `asymmetricHeavyBarrier`, and the Linux man page's example).
//!
//! Each shell has an owner (the id of a thread of this process, or 0) and an
//! "in call" flag that only its owner writes.
//!
//! - **The owner's call** (the fast path): it stores 1 to the flag (a plain
//!   store, no read-modify-write), keeps the compiler from moving the next
//!   load above that store, loads the owner word again and, when it still
//!   names this thread, runs; at the end it stores 0 to the flag (Release).
//!   The flag store and the owner load are not ordered by the CPU (a
//!   store-load pair needs a full fence, which is what this path avoids);
//!   the other side pays for it.
//! - **Anyone else** (another thread calling, `shmq_close`, or any call when
//!   biasing is off) takes the shell's state word IDLE -> BUSY with a CAS,
//!   as every call did before; the state word serialises these slow calls.
//!   If an owner other than this thread is set, it *revokes* it: stores 0 to
//!   the owner word, then runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
//!   which makes every running thread of the process execute a full memory
//!   barrier (a thread that is not running passes one when it is scheduled
//!   again) before it returns; then it reads the flag. Either the owner's
//!   flag store came before its barrier, and the revoker sees the flag set:
//!   the owner is inside a call, so the revoker gives the owner word back
//!   and refuses with the "in use by another thread" error; or the owner's
//!   owner load comes after its barrier and sees 0 (or another thread's id):
//!   it does not run, and falls back to the slow path, where the BUSY state
//!   stops it. Never both inside. When the flag is clear, the revoker has
//!   the handle: it runs its call holding BUSY and becomes the new owner
//!   (a handle handed to another thread between calls keeps working; the
//!   hand-over costs one `membarrier`).
//!
//! The first call on a handle (no owner yet) makes its thread the owner
//! without a barrier: no thread can be in an owner's call then. A handle
//! whose owner was revoked [`MAX_REVOCATIONS`] times (a handle shared by a
//! pool of threads, say) gets no owner any more: every call takes the CAS,
//! which is cheaper than a `membarrier` per call.
//!
//! When `membarrier` is not available (a kernel before 4.14, a seccomp
//! filter, or `SHMQ_NO_MEMBARRIER` set in the environment, for tests), no
//! handle gets an owner and every call takes the CAS; this is decided once
//! per process, by the first call that would make an owner.
//!
//! After fork(), the thread that forked gets a new id in the child (from the
//! `pthread_atfork` hook), so no thread of the child owns a handle it
//! inherited: its calls take the slow path, which refuses them.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, AtomicU64, AtomicU8, Ordering};

use super::super::status::{call, shmq_status};
use super::registry::{inherited, shell};
use super::{shmq_queue, Inner, BUSY, CLOSED, IDLE};
use engine::{Error, Status};

/// Revocations after which a handle gets no owner any more.
pub(super) const MAX_REVOCATIONS: u32 = 64;

/// The id of the next thread that calls (0 is never handed out: it means
/// "no owner").
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's id (0 until its first call). A const-initialised
    /// `Cell<u64>`: reading it is one thread-local load, with no lazy
    /// initialisation and no destructor.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// This thread's id: unique among the threads of this process, never 0,
/// never reused.
#[inline(always)]
fn thread_id() -> u64 {
    let id = THREAD.with(Cell::get);
    if id != 0 {
        id
    } else {
        new_thread_id()
    }
}

#[cold]
#[inline(never)]
fn new_thread_id() -> u64 {
    // Relaxed: a unique number is all that is needed.
    let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    THREAD.with(|t| t.set(id));
    id
}

/// In a forked child: the thread that forked takes a new id at its next
/// call, so it owns none of the handles it inherited. The child's counter
/// goes on from the parent's value at the fork, so the new id was never an
/// owner in the parent.
pub(super) fn forget_thread_id() {
    // try_with: never panics (this runs in the fork hook); with a const
    // initialiser and no destructor it does not fail anyway.
    let _ = THREAD.try_with(|t| t.set(0));
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier(cmd, flags, cpu_id) reads and writes no memory of
    // ours; a kernel without it returns ENOSYS.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    }
}

/// [`BIAS`]: not decided yet.
const BIAS_UNDECIDED: u8 = 0;
/// [`BIAS`]: `membarrier` works; handles get owners.
const BIAS_ON: u8 = 1;
/// [`BIAS`]: no `membarrier`; every call takes the CAS.
const BIAS_OFF: u8 = 2;

/// Whether handles get owners in this process, decided once. A forked
/// child inherits the decision and the registration (the kernel keeps it in
/// the address space, which the child copies).
static BIAS: AtomicU8 = AtomicU8::new(BIAS_UNDECIDED);

/// Whether handles get owners (registers with `membarrier` on first use).
fn biasing() -> bool {
    // Acquire: pairs with the Release in `decide`: the registration is
    // done before any thread relies on the barrier.
    match BIAS.load(Ordering::Acquire) {
        BIAS_ON => true,
        BIAS_OFF => false,
        _ => decide(),
    }
}

#[cold]
#[inline(never)]
fn decide() -> bool {
    let wanted = MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
    let on = std::env::var_os("SHMQ_NO_MEMBARRIER").is_none() && {
        let cmds = membarrier(MEMBARRIER_CMD_QUERY);
        cmds >= 0
            && cmds & wanted as libc::c_long == wanted as libc::c_long
            && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    };
    // Two threads deciding at once both register (which is idempotent) and
    // store the same answer. Release: see `biasing`.
    BIAS.store(if on { BIAS_ON } else { BIAS_OFF }, Ordering::Release);
    on
}

/// What a call holds on its handle; dropping it lets the handle go (also
/// on a panic).
pub(super) enum Guard<'a> {
    /// The owner's call: its in-call flag is set.
    Owner(&'a shmq_queue),
    /// A slow call: the state word is BUSY.
    Busy(&'a shmq_queue),
}

/// Debug builds: marks the handle occupied while a call holds it, and
/// panics (`SHMQ_INTERNAL`) if another call already does. Taken after the
/// guard, so it does not order the owner's flag store and owner load: the
/// check must not hide a missing barrier.
#[cfg(debug_assertions)]
struct Inside<'a>(&'a shmq_queue);

#[cfg(debug_assertions)]
impl<'a> Inside<'a> {
    fn new(h: &'a shmq_queue) -> Inside<'a> {
        let before = h.inside.swap(1, Ordering::SeqCst);
        assert_eq!(before, 0, "two calls inside one handle at once");
        Inside(h)
    }
}

#[cfg(debug_assertions)]
impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.inside.store(0, Ordering::SeqCst);
    }
}

impl Drop for Guard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        match self {
            // Release: the call's writes to the handle happen before those
            // of whoever next reads the flag (a revoker, with Acquire).
            Guard::Owner(h) => h.in_call.store(0, Ordering::Release),
            // Release: our writes to the handle happen before the next
            // user's (who takes BUSY with Acquire).
            Guard::Busy(h) => h.state.store(IDLE, Ordering::Release),
        }
    }
}

/// Takes the handle `h` for a call of this thread: the owner's way when it
/// owns it, else the slow way ([`enter_slow`]), which may make it the owner
/// for the next calls.
#[inline(always)]
fn enter<'a>(h: &'a shmq_queue, op: &str) -> Result<Guard<'a>, Error> {
    let me = thread_id();
    // Relaxed: only this thread ever stores its own id there (in
    // `enter_slow`, earlier in this thread), so a load that returns it is
    // the latest word or a stale copy of our own store; either way the
    // check below decides.
    if h.owner.load(Ordering::Relaxed) == me {
        // A plain store: the revoker's membarrier orders it before our
        // load below, as the module header explains.
        h.in_call.store(1, Ordering::Relaxed);
        // The asymmetric light barrier: the compiler must not move the load
        // above the store (the CPU may; the revoker's barrier covers that).
        compiler_fence(Ordering::SeqCst);
        // Acquire: the call's reads of the handle stay after this check.
        if h.owner.load(Ordering::Acquire) == me {
            return Ok(Guard::Owner(h));
        }
        // Revoked meanwhile: not inside after all.
        h.in_call.store(0, Ordering::Release);
    }
    enter_slow(h, op, me, true)
}

/// Takes the handle the slow way: IDLE -> BUSY with a CAS, then revokes
/// another thread's ownership (refusing when that thread is inside a call).
/// With `take`, this thread becomes the owner (when biasing is on and the
/// handle was not revoked too often); else the handle is left without an
/// owner (close).
#[cold]
#[inline(never)]
pub(super) fn enter_slow<'a>(
    h: &'a shmq_queue,
    op: &str,
    me: u64,
    take: bool,
) -> Result<Guard<'a>, Error> {
    if inherited(h) {
        return Err(Error::new(
            Status::InvalidArgument,
            format!(
                "{op}: the queue handle was opened by the parent before fork(): \
                 a forked child must open its own handle (shmq_close on this one \
                 only forgets it)"
            ),
        ));
    }
    // Acquire: we see the previous slow user's writes to the handle.
    match h
        .state
        .compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed)
    {
        Ok(_) => {}
        Err(CLOSED) => {
            return Err(Error::new(
                Status::Closed,
                format!("{op}: the queue handle was closed (use after close)"),
            ))
        }
        Err(_) => return Err(in_use(op)),
    }
    let guard = Guard::Busy(h);
    // Relaxed: the owner word is written only by the holder of BUSY (us
    // now), so this is the latest value.
    let owner = h.owner.load(Ordering::Relaxed);
    if owner != 0 && owner != me {
        // On an error `guard` drops: the handle is IDLE again.
        revoke(h, owner, op)?;
    }
    // Relaxed (both): written only under BUSY, which we hold.
    let revocations = h.revocations.load(Ordering::Relaxed);
    let keep = take && revocations < MAX_REVOCATIONS && biasing();
    h.owner.store(if keep { me } else { 0 }, Ordering::Relaxed);
    Ok(guard)
}

/// Takes the handle away from its owner `owner`, holding BUSY: fails when
/// the owner is inside a call (the owner word is given back).
fn revoke(h: &shmq_queue, owner: u64, op: &str) -> Result<(), Error> {
    // Relaxed (the counter and the owner word): written only under BUSY.
    let n = h.revocations.load(Ordering::Relaxed);
    h.revocations.store(n.saturating_add(1), Ordering::Relaxed);
    h.owner.store(0, Ordering::Relaxed);
    // The asymmetric heavy barrier: after it, either the owner's in-call
    // store is visible to us, or the owner's next load of the owner word
    // sees the 0 we stored (module header). Registered by `biasing`, which
    // said yes before this owner was made.
    if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
        let err = std::io::Error::last_os_error();
        h.owner.store(owner, Ordering::Relaxed);
        return Err(Error::new(
            Status::Internal,
            format!("{op}: the queue handle could not be taken from the thread that used it: membarrier: {err}"),
        ));
    }
    // Acquire: pairs with the Release store of 0 that ended the owner's last
    // call: its writes to the handle happen before ours.
    if h.in_call.load(Ordering::Acquire) != 0 {
        h.owner.store(owner, Ordering::Relaxed);
        return Err(in_use(op));
    }
    Ok(())
}

#[cold]
fn in_use(op: &str) -> Error {
    Error::new(
        Status::Closed,
        format!(
            "{op}: the queue handle is in use by another thread at this moment; \
             a handle is used by one thread at a time (open one per thread)"
        ),
    )
}

/// Takes the handle for close: the slow way, without making an owner
/// (the owner word is left 0 for good).
pub(super) fn enter_for_close<'a>(h: &'a shmq_queue, op: &str) -> Result<Guard<'a>, Error> {
    enter_slow(h, op, thread_id(), false)
}

/// Runs `f` with the live handle `q`, behind the panic boundary.
#[inline(always)]
pub(crate) fn with_queue(
    q: *mut shmq_queue,
    op: &'static str,
    f: impl FnOnce(&mut Inner) -> Result<(), Error>,
) -> shmq_status {
    call(op, || {
        let h = shell(q, op)?;
        let _guard = enter(h, op)?;
        // Declared after `_guard`: dropped before it.
        #[cfg(debug_assertions)]
        let _inside = Inside::new(h);
        // SAFETY: `_guard` gives this thread exclusive access to `inner`
        // until it drops at the end of this closure: as the owner (no other
        // thread runs a call until it revoked us, which it cannot while our
        // in-call flag is set) or holding BUSY.
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
