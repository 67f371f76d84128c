//! The public handle: a queue file mapped into this process, attached as one
//! participant. Owns the file, the mapping and the participant entry; the
//! protocol itself lives in [`crate::ring`].
//!
//! One concern per file: `open` (creating, opening, attaching, detaching),
//! `checks` (what every operation checks first, and its errors), `send`
//! (sending and reserving), `claim` (claiming), `settle` (the outcome of a
//! claim), `wait` (waiting for room or for messages), `maintenance` (the
//! liveness sweep and the repairs it starts), `admin` (recover, watchdog,
//! key eviction, flush, the participant list), `dead_letters`,
//! `inspect` (stats and verify), `peek` (copies of the waiting
//! messages) and `migrate` (a key's versions seeded by `shmq migrate`). This file holds the handle itself and its small accessors.

mod admin;
#[cfg(feature = "async")]
mod asynchronous;
mod checks;
mod claim;
mod dead_letters;
mod inspect;
mod maintenance;
pub mod migrate;
mod open;
mod peek;
mod send;
mod settle;
mod wait;

pub use admin::{ParticipantInfo, Watchdog};
#[cfg(feature = "async")]
pub use asynchronous::{AsyncWait, ClaimAsync, HandleRef, SendAsync};
pub use claim::Message;
pub use dead_letters::DeadLetter;
pub use inspect::{Info, InfoParticipant, Stats, VerifyReport};
pub use peek::{PeekState, Peeked};
pub use send::{Reserved, Sent};

pub use crate::mapping::{Mapping, ReadOnlyMapping};

use std::cell::Cell;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Clock;
use crate::layout::Layout;
use crate::metrics::{Counter, Recorder};
use crate::options::{OpenOptions, WaitStrategy};
use crate::participants::EntryState;
use crate::ring::{Engine, Repairs};

/// One message in this many is sampled for the latency histograms (at
/// high rates; slower traffic is sampled fully). A precise timestamp costs
/// about as much as a message here.
const SAMPLE_EVERY: u32 = 16;

/// The engine of a handle, over the memory its mapping allows: a
/// read-only handle's engine is over a [`ReadOnlyMapping`], which only
/// loads, so no operation that changes the queue can be built for it.
pub(crate) enum Store {
    /// Mapped read-write: participants, and inspection handles of a file
    /// this process may write.
    Write(Engine<Mapping>),
    /// Mapped `PROT_READ`.
    Read(Engine<ReadOnlyMapping>),
}

impl Store {
    /// Whether the file was truncated under the mapping.
    #[inline(always)]
    fn broken(&self) -> bool {
        match self {
            Store::Write(e) => e.broken(),
            Store::Read(e) => e.broken(),
        }
    }
}

/// Evaluates `$body` with `$e` bound to the handle `$q`'s engine, whichever
/// memory it is over (the body is built once per memory type): for the
/// operations that only read.
macro_rules! read_engine {
    ($q:expr, |$e:ident| $body:expr) => {
        match &$q.store {
            $crate::queue::Store::Write($e) => $body,
            $crate::queue::Store::Read($e) => $body,
        }
    };
}
use read_engine;

/// Role bits of a participant.
const ROLE_PRODUCER: u64 = 1;
const ROLE_CONSUMER: u64 = 2;

/// A queue file attached as one participant.
///
/// A handle is used by one thread at a time (it is `Send`, not `Sync`); open
/// one handle per thread, each is its own participant with its own metrics.
/// Dropping the handle detaches it; messages it still holds are redelivered
/// at once. A handle copied into a child by `fork()` stays its parent's: in
/// the child every operation through it fails (naming the cause) and
/// dropping it does nothing; the child opens its own handle.
pub struct Queue {
    store: Store,
    file: File,
    path: PathBuf,
    /// Our participant index, or `None` for an inspection handle.
    me: Option<u64>,
    /// The state word we stored when we took our entry: released at close
    /// only if the entry still holds it.
    registration: Option<EntryState>,
    /// The checks this handle was opened with, for a later attach.
    open_opts: OpenOptions,
    pid: u32,
    latest_only: bool,
    wait: WaitStrategy,
    clock: Clock,
    metrics: Cell<bool>,
    /// Coarse time before which no maintenance is due, as last read from
    /// the header (see [`Queue::tick`]): until then an operation checks
    /// for maintenance with one compare of the time it already read.
    next_check: Cell<u64>,
    /// Where a consumer about to sleep starts its scan for a claim in
    /// flight: the slot where it found one last time (see `wait::beat`).
    quiet_hint: Cell<u64>,
    roles: Cell<u64>,
    sample_count: Cell<u32>,
    /// The messages of `Empty` and `Full`, built once.
    empty_msg: std::sync::Arc<str>,
    full_msg: std::sync::Arc<str>,
    last_sample: Cell<u64>,
    /// What this handle repaired while attaching (cleaning up after the
    /// dead participant whose entry it took).
    attach_repairs: Cell<Repairs>,
    /// This handle's async waiters at each wait point.
    #[cfg(feature = "async")]
    async_sleepers: asynchronous::AsyncSleepers,
    _not_sync: PhantomData<Cell<()>>,
}

impl Queue {
    /// The path the queue was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device and inode of the file this handle has open (`fstat`),
    /// for a tool that watches whether the path still names it (behind the
    /// `internals` door).
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn file_id(&self) -> std::io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        Ok((m.dev(), m.ino()))
    }

    /// The layout of the file (behind the `internals` door).
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn layout(&self) -> &Layout {
        self.file_layout()
    }

    /// Why the mapping is broken (once [`Queue::is_broken`]): the file
    /// was truncated under it, or, when the file still covers the mapping,
    /// a page could not be allocated because its file system is full (a
    /// sparse file; see [`Options::sparse`](crate::Options::sparse)). Reads
    /// the file's size (`fstat`): for the cold path of an error only.
    #[cold]
    pub(super) fn broken_cause(&self) -> String {
        let mapped = self.file_layout().file_size as u64;
        crate::space::full_file_system(&self.file, mapped)
            .unwrap_or_else(|| checks::TRUNCATED.to_string())
    }

    /// The layout of the file.
    #[inline]
    fn file_layout(&self) -> &Layout {
        read_engine!(self, |e| &e.layout)
    }

    /// Default lease, read from the file.
    pub fn lease(&self) -> Duration {
        Duration::from_nanos(read_engine!(self, |e| e.config.lease_ns))
    }

    /// Failed deliveries before dead-lettering (0 = unlimited).
    pub fn max_deliveries(&self) -> u32 {
        read_engine!(self, |e| e.config.max_deliveries)
    }

    /// The queue's default time to live of a message, read from the file
    /// (`None`: messages do not expire unless sent with their own).
    pub fn message_ttl(&self) -> Option<Duration> {
        let ns = read_engine!(self, |e| e.config.message_ttl_ns);
        (ns != 0).then(|| Duration::from_nanos(ns))
    }

    /// What happens to an expired message, read from the file.
    pub fn on_expiry(&self) -> crate::Expiry {
        if read_engine!(self, |e| e.config.expiry_drop) {
            crate::Expiry::Drop
        } else {
            crate::Expiry::DeadLetter
        }
    }

    /// Whether the queue is in latest-only mode.
    pub fn latest_only(&self) -> bool {
        self.latest_only
    }

    /// The wait strategy stored in the file.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Our participant index (`None` for an inspection handle).
    pub fn participant(&self) -> Option<u64> {
        self.me
    }

    /// Turns this handle's metrics recording on or off (on by default).
    pub fn set_metrics(&self, on: bool) {
        self.metrics.set(on);
    }

    /// Whether this handle is read-only: mapped `PROT_READ`, not attached,
    /// refusing every change with `Permission`.
    pub fn read_only(&self) -> bool {
        matches!(self.store, Store::Read(_))
    }

    /// Whether the file was truncated while mapped; every operation then
    /// returns `Corrupt`. [`Queue::stats`] and the listings cannot return an
    /// error: check this after them when it matters.
    pub fn is_broken(&self) -> bool {
        self.store.broken()
    }

    /// The engine of a read-write handle, for this repository's tests and
    /// tools (behind the `internals` door).
    ///
    /// # Panics
    /// On a read-only handle, whose engine only loads: see
    /// [`Queue::read_only_engine`].
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn engine(&self) -> &Engine<Mapping> {
        match &self.store {
            Store::Write(e) => e,
            Store::Read(_) => panic!(
                "{}: the engine of a read-only handle only loads: use read_only_engine",
                self.path.display()
            ),
        }
    }

    /// The engine of a read-only handle (`None` for a read-write one), for
    /// this repository's tests and tools (behind the `internals` door). Its
    /// memory only loads.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn read_only_engine(&self) -> Option<&Engine<ReadOnlyMapping>> {
        match &self.store {
            Store::Write(_) => None,
            Store::Read(e) => Some(e),
        }
    }

    /// The time for leases, delays and the enqueue time of unsampled
    /// messages: `CLOCK_MONOTONIC_COARSE` (a few ns to read, a few ms
    /// behind).
    #[inline]
    fn now(&self) -> u64 {
        crate::clock::coarse_ns()
    }

    /// The precise time, for sampled latencies and for timing waits.
    #[inline]
    fn precise(&self) -> u64 {
        self.clock.now()
    }

    /// Whether the next message this handle commits is sampled for the
    /// latency histograms: one in [`SAMPLE_EVERY`], and every message when
    /// they are more than a millisecond apart, so that slow queues are
    /// measured fully and fast ones cheaply.
    #[inline]
    fn sample(&self, coarse: u64) -> bool {
        if !self.metrics.get() {
            return false;
        }
        let n = self.sample_count.get().wrapping_add(1);
        self.sample_count.set(n);
        if n % SAMPLE_EVERY == 0 || coarse >= self.last_sample.get().saturating_add(1_000_000) {
            self.last_sample.set(coarse);
            return true;
        }
        false
    }

    #[inline]
    fn recorder(&self) -> Option<Recorder<'_, Mapping>> {
        match (self.me, self.metrics.get(), &self.store) {
            (Some(me), true, Store::Write(e)) => Some(e.recorder(me)),
            _ => None,
        }
    }

    #[inline]
    fn count(&self, c: Counter, by: u64) {
        if let Some(r) = self.recorder() {
            r.add(c, by);
        }
    }

    fn note_role(&self, role: u64) {
        if self.roles.get() & role == 0 {
            if let (Some(me), Store::Write(e)) = (self.me, &self.store) {
                self.roles.set(self.roles.get() | role);
                e.add_roles(me, role);
            }
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("participant", &self.me)
            .field("capacity", &self.file_layout().params.capacity)
            .finish()
    }
}
