//! `shmq_queue`: the opaque handle, its lifecycle (create, open, inspect,
//! close), and the guard every call on a handle goes through.
//!
//! A handle is a small shell that is never freed: `shmq_close` drops the
//! queue inside it (unmapping the file) and marks the shell closed, so a
//! late call through a stale pointer finds `SHMQ_CLOSED` instead of freed
//! memory. The shell costs 32 bytes per handle ever opened.
//!
//! Shells live in a registry of chunks that are never freed either, and a
//! pointer is taken for a handle only when it is the address of a shell in
//! the registry: any other pointer (into the caller's memory, a copy of a
//! handle's bytes, a misaligned or unmapped address) is refused with
//! `SHMQ_INVALID_ARGUMENT` before anything behind it is read.
//!
//! The shell's state word is also a lock that is never waited for: a call
//! moves it from IDLE to BUSY and back, so two threads using one handle at
//! once get `SHMQ_CLOSED` ("in use by another thread") rather than a data
//! race.

use std::cell::UnsafeCell;
use std::ffi::{c_char, CStr};
use std::mem::{size_of, MaybeUninit};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use super::options::SHMQ_FLAG_LATEST_ONLY;
use super::options::{read_open_options, read_options, shmq_open_options, shmq_options};
use super::options::{SHMQ_ACCESS_INSPECT, SHMQ_ACCESS_PARTICIPANT, SHMQ_ACCESS_READ_ONLY};
use super::status::{call, invalid, shmq_status};
use engine::{Error, Status};
use engine::{Queue, Reserved};

/// A tag in every shell, to tell a shmq handle from a stray pointer.
const MAGIC: u32 = 0x5348_4d51; // "SHMQ"
const IDLE: u32 = 0;
const BUSY: u32 = 1;
const CLOSED: u32 = 2;

/// Claim times kept per handle (for the processing-time histogram): twice
/// the queue's capacity, rounded up to a power of two, at most this.
const CLAIM_TABLE_MAX: u64 = 8192;
/// Entries of the claim-time table a token may be kept in (from its hash on).
const CLAIM_PROBES: usize = 4;

/// The id of the next handle: every handle this process makes gets its own,
/// never reused (not even after close), so a message names the handle that
/// claimed it even when another handle is later made at the same address.
/// A forked child counts on from the parent's value at the fork, so its new
/// handles never take the id of a handle (or message) it inherited. 0 is
/// never handed out.
static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// One attachment to a queue file (opaque). Created by `shmq_create`,
/// `shmq_open` or `shmq_inspect`, released exactly once by `shmq_close`.
/// Used by one thread at a time; it may move between threads.
#[allow(non_camel_case_types)]
pub struct shmq_queue {
    magic: u32,
    state: AtomicU32,
    /// [`FORKS`] when the handle was made: a handle copied into a forked
    /// child is refused there.
    forks: u64,
    inner: UnsafeCell<Option<Box<Inner>>>,
}

/// A claim this handle handed out: when, for the processing-time histogram.
#[derive(Clone, Copy, Default)]
pub(crate) struct ClaimTime {
    pub token: u64,
    pub claimed_ns: u64,
    pub enqueued_ns: u64,
}

/// The claims a handle handed out, by token: when each was made and its
/// message enqueued, for the processing-time histogram. A small hash table
/// of [`CLAIM_PROBES`]-entry buckets; losing an entry loses one sample.
pub(crate) struct ClaimTable {
    entries: Vec<ClaimTime>,
    /// `64 - log2(entries.len())`: the hash's top bits index `entries`.
    shift: u32,
}

impl ClaimTable {
    /// A table for a queue of `capacity` slots: twice that many entries,
    /// a power of two, between [`CLAIM_PROBES`] and [`CLAIM_TABLE_MAX`].
    fn new(capacity: u64) -> ClaimTable {
        let len = (capacity.clamp(1, CLAIM_TABLE_MAX / 2) * 2)
            .next_power_of_two()
            .clamp(CLAIM_PROBES as u64, CLAIM_TABLE_MAX);
        ClaimTable {
            entries: vec![ClaimTime::default(); len as usize],
            shift: 64 - len.trailing_zeros(),
        }
    }

    /// Where `token`'s entries begin. The token is opaque (its encoding
    /// belongs to the engine), so all of it is mixed: the high half folded
    /// onto the low one, then a multiplicative (Fibonacci) hash, whose top
    /// bits (the index) depend on every bit below them.
    fn home(&self, token: u64) -> usize {
        let folded = token ^ (token >> 32);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Remembers when `token` was claimed (and its message enqueued), in
    /// the first free one of its entries, else over the oldest of them (a
    /// claim never settled through this handle, most likely).
    fn note(&mut self, token: u64, claimed_ns: u64, enqueued_ns: u64) {
        let mask = self.entries.len() - 1;
        let home = self.home(token);
        let mut at = home;
        for k in 0..CLAIM_PROBES {
            let i = (home + k) & mask;
            let c = &self.entries[i];
            if c.claimed_ns == 0 || c.token == token {
                at = i;
                break;
            }
            if c.claimed_ns < self.entries[at].claimed_ns {
                at = i;
            }
        }
        self.entries[at] = ClaimTime {
            token,
            claimed_ns,
            enqueued_ns,
        };
    }

    /// The claim and enqueue times of `token`, if remembered; forgets them.
    fn take(&mut self, token: u64) -> (Option<u64>, Option<u64>) {
        let mask = self.entries.len() - 1;
        let home = self.home(token);
        for k in 0..CLAIM_PROBES {
            let i = (home + k) & mask;
            let c = self.entries[i];
            if c.token == token && c.claimed_ns != 0 {
                self.entries[i] = ClaimTime::default();
                return (Some(c.claimed_ns), Some(c.enqueued_ns));
            }
        }
        (None, None)
    }
}

/// An open reservation; `gen` tells a reused entry from a stale id.
pub(crate) struct ReservationEntry {
    pub gen: u32,
    pub r: Option<Reserved<'static>>,
}

/// What a live handle owns.
pub(crate) struct Inner {
    /// Open reservations, indexed by the low half of their id. Declared
    /// before `queue`'s owner so they drop (abort) first; they borrow it.
    pub reservations: Vec<ReservationEntry>,
    /// Free entries of `reservations`.
    pub free: Vec<u32>,
    /// When recent claims were made, by token.
    pub claims: ClaimTable,
    /// This handle's id ([`NEXT_HANDLE_ID`]), carried by every message it
    /// claims as `shmq_message.handle_id`.
    pub id: u64,
    /// The queue, from `Box::into_raw`; freed in `Drop` after the
    /// reservations. A raw pointer because reservations borrow it.
    queue: *mut Queue,
    /// The path, for messages.
    pub path: PathBuf,
}

impl Inner {
    fn new(q: Queue) -> Box<Inner> {
        let claims = ClaimTable::new(q.layout().params.capacity);
        let path = q.path().to_path_buf();
        Box::new(Inner {
            reservations: Vec::new(),
            free: Vec::new(),
            claims,
            // Relaxed: a unique number is all that is needed.
            id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
            queue: Box::into_raw(Box::new(q)),
            path,
        })
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        // SAFETY: `queue` came from Box::into_raw and is freed only in Drop.
        unsafe { &*self.queue }
    }

    /// The queue with an unbounded lifetime, for a reservation stored in
    /// this Inner (dropped before the queue, see Drop), or a message used
    /// while `self` is borrowed mutably.
    ///
    /// # Safety
    /// The reference (and whatever borrows it: a `Reserved`, a `Message`)
    /// is used only while this `Inner` lives: dropped before it is, or
    /// stored in its `reservations`, which its `Drop` clears before it
    /// frees the queue.
    pub unsafe fn queue_static(&self) -> &'static Queue {
        // SAFETY: `queue` came from Box::into_raw and is freed only in Drop,
        // after the reservations; the caller keeps every other use of the
        // reference inside this Inner's life.
        unsafe { &*self.queue }
    }

    pub fn note_claim(&mut self, token: u64, claimed_ns: u64, enqueued_ns: u64) {
        self.claims.note(token, claimed_ns, enqueued_ns);
    }

    /// The claim and enqueue times of `token`, if remembered; forgets them.
    pub fn take_claim(&mut self, token: u64) -> (Option<u64>, Option<u64>) {
        self.claims.take(token)
    }

    /// Prefixes an FFI-level error with the file.
    pub fn err(&self, e: Error) -> Error {
        Error::new(
            e.status(),
            format!("{}: {}", self.path.display(), e.message()),
        )
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Reservations first: they borrow the queue.
        self.reservations.clear();
        // SAFETY: from Box::into_raw in `new`; nothing borrows it any more.
        drop(unsafe { Box::from_raw(self.queue) });
    }
}

/// How many times this process is a fork child of the process that made
/// its older handles: incremented in the child by a `pthread_atfork` hook.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    // Relaxed: the child has one thread now.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the fork hook once, before the first handle is made.
fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a hook that only bumps an atomic, which is
        // async-signal-safe as the child side of fork requires.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
}

/// Holds a handle BUSY; sets it IDLE again on drop (also on a panic).
struct Busy<'a>(&'a shmq_queue);

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
fn register(shell: shmq_queue) -> Result<*mut shmq_queue, Error> {
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
fn shell<'a>(q: *mut shmq_queue, op: &str) -> Result<&'a shmq_queue, Error> {
    if q.is_null() {
        return Err(invalid(op, "the queue handle is NULL"));
    }
    if !registered(q) {
        return Err(invalid(
            op,
            "the queue handle is not one shmq gave out (a stray, forged or copied pointer)",
        ));
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
fn inherited(h: &shmq_queue) -> bool {
    // Relaxed: a counter of this process only; one load per call.
    h.forks != FORKS.load(Ordering::Relaxed)
}

/// Checks the pointer and takes the handle for this call.
fn enter<'a>(q: *mut shmq_queue, op: &str) -> Result<(&'a shmq_queue, Busy<'a>), Error> {
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
        inner: UnsafeCell::new(Some(Inner::new(q))),
    })?;
    // SAFETY: forwarded from the caller.
    unsafe { out.write(p) };
    Ok(())
}

fn check_out<T>(out: *mut T, op: &str) -> Result<(), Error> {
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
        let (h, busy) = enter(q, OP)?;
        // SAFETY: BUSY gives exclusive access to `inner`.
        let inner = unsafe { (*h.inner.get()).take() };
        // Release: the handle is closed for good; `busy` must not reset it.
        h.state.store(CLOSED, Ordering::Release);
        std::mem::forget(busy);
        drop(inner);
        Ok(())
    })
}

/// What a queue is: fixed at creation.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_info {
    /// `sizeof(shmq_info)` of the caller: set it before the call.
    pub size: u32,
    /// Number of slots.
    pub capacity: u64,
    /// Largest payload in bytes.
    pub max_message_size: u32,
    /// Entries of the key table.
    pub key_capacity: u64,
    /// Default lease.
    pub lease_ns: u64,
    /// Failed deliveries before dead-lettering (0 = unlimited).
    pub max_deliveries: u32,
    /// `SHMQ_FLAG_*` bits.
    pub flags: u32,
    /// Records of the dead-letter area.
    pub dlq_capacity: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// How this handle is attached: `SHMQ_ACCESS_PARTICIPANT`,
    /// `SHMQ_ACCESS_INSPECT` (not attached, mapped read-write) or
    /// `SHMQ_ACCESS_READ_ONLY`.
    pub access: u32,
}

/// The size of the first published `shmq_info` (up to `file_size`): the
/// smallest `size` accepted.
const INFO_V1: usize = std::mem::offset_of!(shmq_info, file_size) + std::mem::size_of::<u64>();

/// Describes the queue: capacity, max_message_size and the other
/// parameters fixed at creation. Set `out->size = sizeof(shmq_info)` first.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` is NULL or a writable `shmq_info`.
#[no_mangle]
pub unsafe extern "C" fn shmq_get_info(q: *mut shmq_queue, out: *mut shmq_info) -> shmq_status {
    const OP: &str = "shmq_get_info";
    with_queue(q, OP, |inner| {
        check_out(out, OP).map_err(|e| inner.err(e))?;
        let queue = inner.queue();
        let l = queue.layout();
        let info = shmq_info {
            size: std::mem::size_of::<shmq_info>() as u32,
            capacity: l.params.capacity,
            max_message_size: l.params.max_message_size as u32,
            key_capacity: l.params.key_capacity,
            lease_ns: queue.lease().as_nanos() as u64,
            max_deliveries: queue.max_deliveries(),
            flags: if queue.latest_only() {
                SHMQ_FLAG_LATEST_ONLY
            } else {
                0
            },
            dlq_capacity: l.params.dlq_capacity,
            file_size: l.file_size as u64,
            access: if queue.read_only() {
                SHMQ_ACCESS_READ_ONLY
            } else if queue.participant().is_some() {
                SHMQ_ACCESS_PARTICIPANT
            } else {
                SHMQ_ACCESS_INSPECT
            },
        };
        // SAFETY: checked non-null and aligned; the caller's struct.
        unsafe { super::options::write_sized(out, &info, INFO_V1, OP, "shmq_info") }
            .map_err(|e| inner.err(e))
    })
}

/// Checks every invariant of the file. `SHMQ_OK` when it holds; otherwise
/// `SHMQ_CORRUPT`, with the problems listed in `shmq_last_error()`.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_verify(q: *mut shmq_queue) -> shmq_status {
    with_queue(q, "shmq_verify", |inner| {
        let r = inner.queue().verify();
        if r.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                Status::Corrupt,
                format!(
                    "{}: shmq_verify: {}",
                    inner.path.display(),
                    r.problems.join("; ")
                ),
            ))
        }
    })
}

/// Cleans up after dead participants now: abandons their reservations and
/// redelivers their claims (also done by every handle as it goes).
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_recover(q: *mut shmq_queue) -> shmq_status {
    with_queue(q, "shmq_recover", |inner| {
        inner.queue().recover().map(|_| ())
    })
}

/// Flushes the mapping to the file (for queues on a persistent file system;
/// a queue in /dev/shm needs none and does not survive a reboot).
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_flush(q: *mut shmq_queue) -> shmq_status {
    with_queue(q, "shmq_flush", |inner| inner.queue().flush())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every claim in flight is found again, whatever the token's encoding:
    /// the old `slot << 32 | seq`, a generation over a slot index in the
    /// low bits, and tokens that differ only in their top bits.
    #[test]
    fn claim_times_are_found_whatever_the_token_encoding() {
        type Encode = fn(u64, u64) -> u64;
        let encodings: [(&str, Encode); 3] = [
            ("slot<<32|seq", |slot, gen| slot << 32 | gen),
            ("gen<<20|slot", |slot, gen| gen << 20 | slot),
            ("top bits only", |slot, gen| (slot << 48) ^ (gen << 60)),
        ];
        for cap in [1u64, 4, 1000, 4096, 1 << 20] {
            for (name, token) in encodings {
                let mut t = ClaimTable::new(cap);
                let in_flight = cap.min(CLAIM_TABLE_MAX / 2);
                for gen in 1..4u64 {
                    for slot in 0..in_flight {
                        t.note(token(slot, gen), 10 + slot, 5);
                    }
                    let mut found = 0u64;
                    for slot in 0..in_flight {
                        if t.take(token(slot, gen)) == (Some(10 + slot), Some(5)) {
                            found += 1;
                        }
                    }
                    // A few may share a crowded bucket; nearly all are kept.
                    assert!(
                        found * 100 >= in_flight * 97,
                        "{name}, capacity {cap}: {found} of {in_flight} found"
                    );
                    assert_eq!(t.take(token(0, gen)), (None, None), "{name}: taken twice");
                }
            }
        }
    }

    #[test]
    fn a_full_bucket_gives_up_its_oldest_entry() {
        let mut t = ClaimTable::new(1);
        assert_eq!(t.entries.len(), CLAIM_PROBES);
        for k in 0..CLAIM_PROBES as u64 {
            t.note(100 + k, 1000 + k, 1);
        }
        t.note(7, 5000, 1);
        assert_eq!(t.take(100), (None, None), "the oldest was replaced");
        assert_eq!(t.take(7), (Some(5000), Some(1)));
        assert_eq!(t.take(101), (Some(1001), Some(1)));
        // The same token noted again keeps one entry.
        t.note(9, 6000, 2);
        t.note(9, 6001, 2);
        assert_eq!(t.take(9), (Some(6001), Some(2)));
        assert_eq!(t.take(9), (None, None));
    }
}
