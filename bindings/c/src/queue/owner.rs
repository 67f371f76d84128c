//! Who may use a handle during a call: biased ownership, so that the calls
//! of the thread that uses a handle take it without a locked instruction.
//!
//! The algorithm is the asymmetric Dekker protocol of biased locking
//! (Dice, Moir and Scherer, "Quickly reacquirable locks", 2003; the
//! `membarrier(2)` form is folly's `asymmetricLightBarrier` /
//! `asymmetricHeavyBarrier`, and the Linux man page's example).
//!
//! Each thread that calls has an "in call" word of its own (a [`Slot`],
//! allocated at its first call and never freed, so its address is also the
//! thread's id): the handle it is inside a call of, or NULL. Only that
//! thread writes it. Each shell has an owner: the slot of a thread, or
//! NULL.
//!
//! - **The owner's call** (the fast path): it stores the handle to its slot
//!   (a plain store, no read-modify-write), keeps the compiler from moving
//!   the next load above that store, loads the owner word again and, when
//!   it still names this thread, runs; at the end it stores NULL to its
//!   slot (Release). The word is the thread's, not the handle's, so that a
//!   thread that was revoked while it checked, and backs out late, clears
//!   only its own word and never that of the handle's next owner. The slot
//!   store and the owner load are not ordered by the CPU (a
//!   store-load pair needs a full fence, which is what this path avoids);
//!   the other side pays for it.
//! - **Anyone else** (another thread calling, `shmq_close`, or any call when
//!   biasing is off) takes the shell's state word IDLE -> BUSY with a CAS,
//!   as every call did before; the state word serialises these slow calls.
//!   If an owner other than this thread is set, it *revokes* it: stores NULL
//!   to the owner word, then runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
//!   which makes every running thread of the process execute a full memory
//!   barrier (a thread that is not running passes one when it is scheduled
//!   again) before it returns; then it reads the owner's slot. Either the
//!   owner's slot store came before its barrier, and the revoker sees this
//!   handle there: the owner is inside a call, so the revoker gives the
//!   owner word back and refuses with the "in use by another thread"
//!   error; or the owner's owner load comes after its barrier and sees
//!   NULL (or another thread): it does not run, and falls back to the slow
//!   path, where the BUSY state stops it. Never both inside. When the slot
//!   does not hold this handle, the revoker has the handle: it runs its
//!   call holding BUSY and becomes the new owner (a handle handed to
//!   another thread between calls keeps working; the hand-over costs one
//!   `membarrier`).
//!
//! Before its barrier, a revoker looks at the owner's slot: when it already
//! shows this handle, it refuses at once (refusing is always safe; only
//! taking needs the barrier), so a thread that keeps calling while the
//! owner works does not pay a `membarrier` per attempt.
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
//! A slow call also stores its handle to the thread's slot while it runs,
//! and a call that finds its thread's slot already set (a call from a
//! signal handler that interrupted a call) takes the slow path and is
//! refused as "in use", as it was before ownership.
//!
//! After fork(), the thread that forked gets a new slot in the child (from
//! the `pthread_atfork` hook), so no thread of the child owns a handle it
//! inherited: its calls take the slow path, which refuses them.

use std::cell::Cell;
use std::ptr::null_mut;
use std::sync::atomic::{compiler_fence, AtomicPtr, AtomicU8, Ordering};

use super::super::status::{call, shmq_status};
use super::registry::{inherited, shell};
use super::{shmq_queue, Inner, BUSY, CLOSED, IDLE};
use engine::{Error, Status};

/// Revocations after which a handle gets no owner any more.
pub(super) const MAX_REVOCATIONS: u32 = 64;

/// A thread's in-call word: the handle it is inside a call of, or NULL.
/// Written only by its thread; read by a revoker. Never freed, so its
/// address names the thread for good (the owner word holds it).
pub(super) type Slot = AtomicPtr<shmq_queue>;

thread_local! {
    /// This thread's slot (NULL until its first call). A const-initialised
    /// `Cell`: reading it is one thread-local load, with no lazy
    /// initialisation and no destructor.
    static SLOT: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
}

/// This thread's slot: allocated at its first call, never freed, never
/// another thread's.
#[inline(always)]
fn my_slot() -> &'static Slot {
    let p = SLOT.with(Cell::get);
    if p.is_null() {
        return new_slot();
    }
    // SAFETY: from Box::leak in `new_slot`: valid for the life of the
    // process.
    unsafe { &*p }
}

#[cold]
#[inline(never)]
fn new_slot() -> &'static Slot {
    // Leaked on purpose: 8 bytes per thread that ever calls, so that an
    // owner word never names freed memory, even after its thread exits.
    let slot: &'static Slot = Box::leak(Box::new(AtomicPtr::new(null_mut())));
    SLOT.with(|t| t.set(slot));
    slot
}

/// In a forked child: the thread that forked takes a new slot at its next
/// call, so it owns none of the handles it inherited.
pub(super) fn forget_thread_id() {
    // try_with: never panics (this runs in the fork hook); with a const
    // initialiser and no destructor it does not fail anyway.
    let _ = SLOT.try_with(|t| t.set(std::ptr::null()));
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

/// What a call holds on its handle, with its thread's slot set to the
/// handle; dropping it lets the handle go (also on a panic).
pub(super) enum Guard<'a> {
    /// The owner's call (its slot names the handle).
    Owner(&'static Slot),
    /// A slow call: the state word is BUSY.
    Busy(&'a shmq_queue, &'static Slot),
}

impl Guard<'_> {
    /// Closes the handle for good: CLOSED instead of IDLE.
    pub(super) fn close(self) {
        if let Guard::Busy(h, slot) = &self {
            // Release (both): as in `drop`.
            slot.store(null_mut(), Ordering::Release);
            h.state.store(CLOSED, Ordering::Release);
        }
        std::mem::forget(self);
    }
}

impl Drop for Guard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        match self {
            // Release: the call's writes to the handle happen before those
            // of whoever next reads the slot (a revoker, with Acquire).
            Guard::Owner(slot) => slot.store(null_mut(), Ordering::Release),
            Guard::Busy(h, slot) => {
                slot.store(null_mut(), Ordering::Release);
                // Release: our writes to the handle happen before the next
                // user's (who takes BUSY with Acquire).
                h.state.store(IDLE, Ordering::Release);
            }
        }
    }
}

/// Debug builds: marks the handle occupied while a call holds it, and
/// panics (`SHMQ_INTERNAL`) if another call already does. Taken after the
/// guard, so it does not order the owner's slot store and owner load: the
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

/// The owner word's value for `slot`.
#[inline(always)]
fn id(slot: &'static Slot) -> *mut Slot {
    (slot as *const Slot).cast_mut()
}

/// Takes the handle `h` for a call of this thread: the owner's way when it
/// owns it, else the slow way ([`enter_slow`]), which may make it the owner
/// for the next calls.
#[inline(always)]
fn enter<'a>(h: &'a shmq_queue, op: &str) -> Result<Guard<'a>, Error> {
    let slot = my_slot();
    // Relaxed (both): only this thread ever stores its own slot to the
    // owner word (in `enter_slow`, earlier in this thread), and only this
    // thread writes its slot, so either load returns our own last store or
    // a value the check below rejects. A set slot means a call of ours is
    // running (we are in a signal handler that interrupted it): slow path.
    if h.owner.load(Ordering::Relaxed) == id(slot) && slot.load(Ordering::Relaxed).is_null() {
        // A plain store: the revoker's membarrier orders it before our
        // load below, as the module header explains.
        slot.store((h as *const shmq_queue).cast_mut(), Ordering::Relaxed);
        // The asymmetric light barrier: the compiler must not move the load
        // above the store (the CPU may; the revoker's barrier covers that).
        compiler_fence(Ordering::SeqCst);
        // Acquire: the call's reads of the handle stay after this check.
        if h.owner.load(Ordering::Acquire) == id(slot) {
            return Ok(Guard::Owner(slot));
        }
        // Revoked meanwhile: not inside after all. Our own slot only: the
        // handle's next owner has its own.
        slot.store(null_mut(), Ordering::Release);
    }
    enter_slow(h, op, slot, true)
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
    slot: &'static Slot,
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
    // Relaxed: only this thread writes its slot. Set: a call of ours is
    // running (we interrupted it from a signal handler).
    if !slot.load(Ordering::Relaxed).is_null() {
        // Release: as in Guard's drop (we wrote nothing).
        h.state.store(IDLE, Ordering::Release);
        return Err(in_use(op));
    }
    // Relaxed: the owner word is written only by the holder of BUSY (us
    // now), so this is the latest value.
    let owner = h.owner.load(Ordering::Relaxed);
    if !owner.is_null() && owner != id(slot) {
        if let Err(e) = revoke(h, owner, op) {
            // Release: as in Guard's drop (we wrote nothing).
            h.state.store(IDLE, Ordering::Release);
            return Err(e);
        }
    }
    // Relaxed (both): written only under BUSY, which we hold.
    let revocations = h.revocations.load(Ordering::Relaxed);
    let keep = take && revocations < MAX_REVOCATIONS && biasing();
    h.owner
        .store(if keep { id(slot) } else { null_mut() }, Ordering::Relaxed);
    // Relaxed: read only by a revoker, which cannot run while we hold BUSY,
    // and by this thread.
    slot.store((h as *const shmq_queue).cast_mut(), Ordering::Relaxed);
    Ok(Guard::Busy(h, slot))
}

/// Takes the handle away from the thread whose slot is `owner`, holding
/// BUSY: fails when that thread is inside a call of it (the owner word is
/// given back).
fn revoke(h: &shmq_queue, owner: *mut Slot, op: &str) -> Result<(), Error> {
    // SAFETY: an owner word is NULL or the address of a slot, leaked by
    // `new_slot` and never freed.
    let theirs = unsafe { &*owner };
    let this = (h as *const shmq_queue).cast_mut();
    // A first look, without the barrier: when the owner's slot already shows
    // this handle, it is (or was just) inside a call, and refusing is always
    // safe; so a thread that keeps calling while the owner works does not
    // pay a membarrier each time. Relaxed: only a hint; taking the handle
    // waits for the barrier below.
    if theirs.load(Ordering::Relaxed) == this {
        return Err(in_use(op));
    }
    // Relaxed (the counter and the owner word): written only under BUSY.
    let n = h.revocations.load(Ordering::Relaxed);
    h.revocations.store(n.saturating_add(1), Ordering::Relaxed);
    h.owner.store(null_mut(), Ordering::Relaxed);
    // The asymmetric heavy barrier: after it, either the owner's slot store
    // is visible to us, or the owner's next load of the owner word sees the
    // NULL we stored (module header). Registered by `biasing`, which said
    // yes before this owner was made.
    if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
        let err = std::io::Error::last_os_error();
        h.owner.store(owner, Ordering::Relaxed);
        return Err(Error::new(
            Status::Internal,
            format!(
                "{op}: the queue handle could not be taken from the thread that used it: \
                 membarrier: {err}"
            ),
        ));
    }
    // Acquire: pairs with the Release store of NULL that ended the owner's
    // last call: its writes to the handle happen before ours.
    if theirs.load(Ordering::Acquire) == this {
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
/// (the owner word is left NULL for good). Release it with
/// [`Guard::close`].
pub(super) fn enter_for_close<'a>(h: &'a shmq_queue, op: &str) -> Result<Guard<'a>, Error> {
    enter_slow(h, op, my_slot(), false)
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
        // slot holds this handle) or holding BUSY.
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
