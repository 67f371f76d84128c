//! `shmq_queue`: the opaque handle, its lifecycle (create, open, inspect,
//! close), and the guard every call on a handle goes through.
//!
//! A handle is a small shell that is never freed: `shmq_close` drops the
//! queue inside it (unmapping the file) and marks the shell closed, so a
//! late call through a stale pointer finds `SHMQ_CLOSED` instead of freed
//! memory. The shell costs 40 bytes per handle ever opened.
//!
//! Shells live in a registry of chunks that are never freed either, and a
//! pointer is taken for a handle only when it is the address of a shell in
//! the registry: any other pointer (into the caller's memory, a copy of a
//! handle's bytes, a misaligned or unmapped address) is refused with
//! `SHMQ_INVALID_ARGUMENT` before anything behind it is read.
//!
//! A handle is used by one thread at a time: the thread that uses it owns
//! it (biased ownership), and its calls take it without a locked
//! instruction; a call from another thread takes it over between calls,
//! or, when the owner is inside a call at that moment, gets `SHMQ_CLOSED`
//! ("in use by another thread") rather than a data race (`owner`).
//!
//! One file per part: `registry` (the registry of shells and the fork
//! watch), `owner` (who may use a handle during a call: the guard every
//! call goes through), `lifecycle` (create, open, inspect,
//! close), `info` (what a queue is, and verify, recover, flush), and
//! `claim_times` (when this handle's claims were made). This file holds the
//! handle itself: the shell and what a live handle owns.

mod claim_times;
mod owner;
mod registry;

// cbindgen writes the functions in the order it reads them: `lifecycle`
// before `info` keeps their order in include/shmq.h.
mod lifecycle;

mod info;

use std::cell::UnsafeCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use engine::Error;
use engine::{Queue, Reserved};

pub(crate) use claim_times::ClaimTable;
// The sources are also compiled into tests (tests/damaged.rs, the fuzz
// target), which call only some of these.
#[allow(unused_imports)]
pub use info::{shmq_flush, shmq_get_info, shmq_info, shmq_recover, shmq_verify};
#[allow(unused_imports)]
pub use lifecycle::{shmq_close, shmq_create, shmq_inspect, shmq_open, shmq_open_ex};
pub(crate) use owner::with_queue;

/// A tag in every shell, to tell a shmq handle from a stray pointer.
const MAGIC: u32 = 0x5348_4d51; // "SHMQ"
/// `shmq_queue.state`: open, no slow call running.
const IDLE: u32 = 0;
/// `shmq_queue.state`: a slow call (not the owner's) is running.
const BUSY: u32 = 1;
/// `shmq_queue.state`: closed for good.
const CLOSED: u32 = 2;

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
    /// IDLE, BUSY or CLOSED: the lock of the slow calls (`owner`).
    state: AtomicU32,
    /// [`FORKS`] when the handle was made: a handle copied into a forked
    /// child is refused there.
    forks: u64,
    /// The in-call slot of the thread that owns the handle (its calls take
    /// the fast way), or NULL. Written only by the holder of BUSY.
    owner: AtomicPtr<owner::Slot>,
    /// How many times an owner was revoked (saturating); written only by
    /// the holder of BUSY.
    revocations: AtomicU32,
    /// Debug builds: 1 while a call holds the handle, to catch two calls
    /// inside at once (the stress tests run against a debug build too).
    #[cfg(debug_assertions)]
    inside: AtomicU32,
    inner: UnsafeCell<Option<Box<Inner>>>,
}

// The shell's size, as the docs give it (a debug build adds `inside`).
const _: () = assert!(cfg!(debug_assertions) || std::mem::size_of::<shmq_queue>() == 40);
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
    #[inline(always)]
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
