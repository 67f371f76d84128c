//! The public handle: a queue file mapped into this process, attached as one
//! participant. Owns the file, the mapping and the participant entry; the
//! protocol itself lives in [`crate::ring`].

use std::cell::Cell;
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::{Error, Result, Status};
use crate::layout::{self, dlq, hdr, part, slot, Layout, Params};
pub use crate::mapping::Mapping;
use crate::memory::Memory;
use crate::metrics::{Counter, Histogram, HistogramSnapshot, Recorder};
use crate::options::{Access, OpenOptions, Options, SendOptions, Timeout, WaitStrategy};
use crate::participants::{hooks, EntryState, Liveness, Table, LOCK_BASE};
use crate::permissions;
use crate::ring::{self, state, Claim, Config, Engine, Outcome, Repairs, Reservation, Settled};
use crate::sync::Ordering;
use crate::sys;
use crate::wait::{OsFutex, WaitPoint};

/// The cause given by every operation on a queue whose file shrank under
/// its mapping (see [`crate::sigbus`]).
const TRUNCATED: &str = "file was truncated while mapped (pages past its new end read as zeros); \
                         the queue cannot be trusted any more: recreate it";

/// How often (at most) a participant sweeps the table for dead participants.
const LIVENESS_PERIOD_NS: u64 = 2_000_000;
/// Longest single sleep, so sleepers also run the liveness sweep (its
/// period: an idle queue notices a dead consumer within about that).
const MAX_SLEEP: Duration = Duration::from_millis(2);
/// How long a waiter spins before it sleeps.
const SPIN_NS: u64 = 50_000;

/// One message in this many is sampled for the latency histograms (at
/// high rates; slower traffic is sampled fully). A precise timestamp costs
/// about as much as a message here.
const SAMPLE_EVERY: u32 = 16;

/// How long a claim waits for a producer that is still writing the next
/// message at the head before it passes that reservation. A copy takes
/// nanoseconds to microseconds; a preempted producer, milliseconds.
const PASS_AFTER_NS: u64 = 50_000;

/// Role bits of a participant.
const ROLE_PRODUCER: u64 = 1;
const ROLE_CONSUMER: u64 = 2;

/// How many slots past its tail a producer waiting on a full queue asks to
/// be free before it tries again (a quarter of the ring at most): it then
/// sends a run of messages while the consumers work further on.
const ROOM_RUN: u64 = 32;

/// Which way a caller waits.
#[derive(Clone, Copy)]
enum Point {
    NotEmpty,
    NotFull,
}

/// A queue file attached as one participant.
///
/// A handle is used by one thread at a time (it is `Send`, not `Sync`); open
/// one handle per thread, each is its own participant with its own metrics.
/// Dropping the handle detaches it; messages it still holds are redelivered
/// at once. A handle copied into a child by `fork()` stays its parent's: in
/// the child every operation through it fails (naming the cause) and
/// dropping it does nothing; the child opens its own handle.
pub struct Queue {
    engine: Engine<Mapping>,
    file: File,
    path: PathBuf,
    /// Our participant index, or `None` for an inspection handle.
    me: Option<u64>,
    /// The state word we stored when we took our entry: released at close
    /// only if the entry still holds it.
    registration: Option<EntryState>,
    /// Mapped `PROT_READ`: every operation that changes the queue is
    /// refused with `Permission` before it touches the mapping.
    read_only: bool,
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
    roles: Cell<u64>,
    sample_count: Cell<u32>,
    /// The messages of `Empty` and `Full`, built once.
    empty_msg: std::sync::Arc<str>,
    full_msg: std::sync::Arc<str>,
    /// The reservation at the head that stopped our last claim, and since
    /// when (slot, word, precise time).
    blocked: Cell<Option<(u64, u64, u64)>>,
    last_sample: Cell<u64>,
    /// What this handle repaired while attaching (cleaning up after the
    /// dead participant whose entry it took).
    attach_repairs: Cell<Repairs>,
    _not_sync: PhantomData<Cell<()>>,
}

/// What [`Queue::send_with`] sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The ring position.
    pub position: u64,
    /// The version the message carries.
    pub version: u64,
}

/// A snapshot of a queue's metrics (the README lists them).
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Monotonic time of the snapshot.
    pub taken_ns: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Messages claimable now (ready, pending redelivery, due delayed).
    pub depth: u64,
    /// Messages delayed (not yet due).
    pub delayed: u64,
    /// Messages claimed and not yet settled.
    pub in_flight: u64,
    /// Slots reserved by producers and not yet committed.
    pub reserved: u64,
    /// Messages waiting for room in the dead-letter area.
    pub dlq_waiting: u64,
    /// Records in the dead-letter area.
    pub dead_letters: u64,
    /// Age of the oldest claimable message (delayed ones excluded), ns.
    pub oldest_claimable_age_ns: u64,
    /// Age of the oldest claim in flight, ns.
    pub oldest_in_flight_age_ns: u64,
    /// Live participants that have sent.
    pub producers: u64,
    /// Live participants that have claimed.
    pub consumers: u64,
    /// Live participants.
    pub participants: u64,
    /// Producers asleep waiting for room (back-pressure felt now).
    pub producers_waiting: u64,
    /// Consumers asleep waiting for messages.
    pub consumers_waiting: u64,
    /// Entries of the key table in use.
    pub keys_in_use: u64,
    /// Entries of the key table.
    pub key_capacity: u64,
    /// Counters, indexed by [`Counter`].
    pub counters: Vec<u64>,
    /// Histograms, indexed by [`Histogram`].
    pub histograms: Vec<HistogramSnapshot>,
}

impl Stats {
    /// The value of a counter.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }
    /// A histogram.
    pub fn histogram(&self, h: Histogram) -> &HistogramSnapshot {
        &self.histograms[h as usize]
    }
}

/// A participant, as listed by [`Queue::participants`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Entry index.
    pub index: u64,
    /// Registered process.
    pub pid: u32,
    /// Whether it is alive (its lock is held and its process exists).
    pub alive: bool,
    /// Whether a survivor is cleaning up after it.
    pub cleaning: bool,
    /// Whether it has sent.
    pub producer: bool,
    /// Whether it has claimed.
    pub consumer: bool,
    /// Monotonic time it attached.
    pub attached_ns: u64,
}

/// A dead letter, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Record index.
    pub index: u64,
    /// Unique id within the file.
    pub id: u64,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Delivery attempts.
    pub attempts: u64,
    /// Monotonic time of first enqueue.
    pub first_enqueued_ns: u64,
    /// Monotonic time it was dead-lettered.
    pub dead_ns: u64,
    /// Pid of the last consumer (0 if none).
    pub last_consumer_pid: u64,
    /// Key.
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Payload.
    pub payload: Vec<u8>,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every broken invariant, one line each; empty when the file is sound.
    pub problems: Vec<String>,
    /// Things worth knowing that are not wrong (e.g. dead participants not
    /// yet cleaned up).
    pub notes: Vec<String>,
}

struct OfdLiveness<'a> {
    file: &'a File,
    stale_boot: bool,
}

impl Liveness for OfdLiveness<'_> {
    fn alive(&self, index: u64, pid: u32) -> bool {
        if self.stale_boot {
            return false;
        }
        match sys::ofd_locked_by_other(self.file.as_fd(), LOCK_BASE + index) {
            Ok(true) => sys::pid_exists(pid),
            Ok(false) => false,
            // Cannot tell: count it alive, a lease will still expire.
            Err(_) => true,
        }
    }
}

impl Queue {
    /// Creates a new queue file (it must not exist) and attaches to it.
    pub fn create(path: impl AsRef<Path>, opts: &Options) -> Result<Queue> {
        let path = path.as_ref();
        let ctx = |what: &str| format!("{}: {what}", path.display());
        opts.validate()
            .map_err(|e| Error::new(e.status(), ctx(&format!("create: {}", e.message()))))?;
        let dlq_capacity = if opts.dlq_capacity == 0 {
            opts.capacity.max(1)
        } else {
            opts.dlq_capacity
        };
        let flags = if opts.latest_only {
            layout::flags::LATEST_ONLY
        } else {
            0
        };
        let layout = Layout::with_flags(
            Params {
                capacity: opts.capacity,
                max_message_size: opts.max_message_size as u64,
                key_capacity: opts.key_capacity,
                dlq_capacity,
                participant_capacity: opts.participant_capacity as u64,
            },
            flags,
        )
        .map_err(|e| {
            Error::new(
                e.status(),
                format!("{}: create: {}", path.display(), e.message()),
            )
        })?;
        // O_CREAT | O_EXCL | O_NOFOLLOW, then fchmod and fchown.
        let file = permissions::create_file(path, opts)?;
        let cleanup = |e: Error| {
            let _ = std::fs::remove_file(path);
            e
        };
        file.set_len(layout.file_size as u64).map_err(|e| {
            cleanup(Error::io(
                ctx(&format!("create: sizing to {} bytes", layout.file_size)),
                e,
            ))
        })?;
        let map = Mapping::new(&file, layout.file_size, path, true).map_err(cleanup)?;
        // Relaxed stores: nobody else reads the file until the magic number
        // is stored with release ordering below.
        let put = |off: usize, v: u64| map.u64_at(off).store(v, Ordering::Relaxed);
        for (off, v) in layout.header_words() {
            put(off, v);
        }
        put(
            hdr::LEASE_NS,
            opts.lease.as_nanos().min(u64::MAX as u128) as u64,
        );
        put(hdr::MAX_DELIVERIES, opts.max_deliveries as u64);
        put(hdr::FLAGS, flags);
        put(hdr::WAIT_STRATEGY, opts.wait_strategy as u64);
        put(
            hdr::RESERVATION_TIMEOUT_NS,
            opts.reservation_timeout.as_nanos().min(u64::MAX as u128) as u64,
        );
        put(hdr::CREATED_UNIX_NS, sys::unix_ns());
        put(
            hdr::CHECKSUM,
            layout::header_checksum(&|off| map.u64_at(off).load(Ordering::Relaxed)),
        );
        let boot = sys::boot_id();
        put(hdr::BOOT_ID, boot[0]);
        put(hdr::BOOT_ID + 8, boot[1]);
        let engine = Engine::new(map, layout, opts_config(opts));
        engine.format();
        // Release: everything above is visible to whoever sees the magic.
        engine
            .mem
            .u64_at(hdr::MAGIC)
            .store(layout::MAGIC, Ordering::Release);
        Self::attach(engine, file, path.to_path_buf(), true).map_err(cleanup)
    }

    /// Opens an existing queue file and attaches to it as a participant,
    /// with the default checks of [`OpenOptions`] (a regular file of ours
    /// that nobody else may write).
    pub fn open(path: impl AsRef<Path>) -> Result<Queue> {
        Self::open_with(path, &OpenOptions::new())
    }

    /// Opens a queue file without attaching: for stats, verify, recover and
    /// dead-letter calls. Read-only when the file is not writable.
    pub fn inspect(path: impl AsRef<Path>) -> Result<Queue> {
        Self::open_with(path, &OpenOptions::new().access(Access::Inspect))
    }

    /// Opens an existing queue file as `opts` says: as a participant, for
    /// inspection, or read-only, and accepting which owners and modes.
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Queue> {
        let (engine, file, path) = Self::open_engine(path.as_ref(), opts)?;
        let register = opts.access == Access::Participant;
        let mut q = Self::attach(engine, file, path, register)?;
        q.open_opts = *opts;
        Ok(q)
    }

    fn open_engine(path: &Path, opts: &OpenOptions) -> Result<(Engine<Mapping>, File, PathBuf)> {
        let ctx = |what: &str| format!("{}: open: {what}", path.display());
        let (file, writable) = permissions::open_file(path, opts.access)?;
        // fstat on the descriptor: type, owner and mode of what we opened.
        let meta = permissions::check_file(&file, path, opts)?;
        let len = meta.len();
        if len < layout::HEADER_SIZE as u64 || len > layout::limits::MAX_FILE_SIZE {
            return Err(Error::new(
                Status::Incompatible,
                ctx(&format!("{len} bytes is not the size of a queue file")),
            ));
        }
        let map = Mapping::new(&file, len as usize, path, writable)?;
        // A creator stores the magic last: wait briefly for one in progress.
        let mut tries = 0;
        while map.u64_at(hdr::MAGIC).load(Ordering::Acquire) == 0 && tries < 200 && !map.broken() {
            std::thread::sleep(Duration::from_millis(5));
            tries += 1;
        }
        // Acquire on the magic above orders these relaxed reads.
        let layout =
            Layout::from_header(len as usize, |off| map.u64_at(off).load(Ordering::Relaxed));
        if map.broken() {
            // Shrunk between the fstat above and reading the header.
            return Err(Error::new(Status::Corrupt, ctx(TRUNCATED)));
        }
        let layout = layout.map_err(|e| Error::new(e.status(), ctx(e.message())))?;
        let get = |off: usize| map.u64_at(off).load(Ordering::Relaxed);
        let config = Config {
            lease_ns: get(hdr::LEASE_NS),
            max_deliveries: get(hdr::MAX_DELIVERIES).min(u32::MAX as u64) as u32,
            reservation_timeout_ns: get(hdr::RESERVATION_TIMEOUT_NS),
        };
        Ok((Engine::new(map, layout, config), file, path.to_path_buf()))
    }

    fn attach(engine: Engine<Mapping>, file: File, path: PathBuf, register: bool) -> Result<Queue> {
        let get = |off: usize| engine.mem.u64_at(off).load(Ordering::Relaxed);
        let latest_only = get(hdr::FLAGS) & layout::flags::LATEST_ONLY != 0;
        let wait = WaitStrategy::from_u64(get(hdr::WAIT_STRATEGY));
        let empty_msg = format!("{}: claim: nothing to claim", path.display()).into();
        let full_msg = format!("{}: send: the queue is full", path.display()).into();
        let read_only = !engine.mem.writable();
        let mut q = Queue {
            engine,
            file,
            path,
            me: None,
            registration: None,
            read_only,
            open_opts: OpenOptions::new(),
            pid: sys::watch_forks(),
            latest_only,
            wait,
            clock: Clock::new(),
            metrics: Cell::new(true),
            next_check: Cell::new(0),
            roles: Cell::new(0),
            sample_count: Cell::new(0),
            empty_msg,
            full_msg,
            blocked: Cell::new(None),
            last_sample: Cell::new(0),
            attach_repairs: Cell::new(Repairs::default()),
            _not_sync: PhantomData,
        };
        if register {
            q.register()?;
        }
        Ok(q)
    }

    fn stale_boot(&self) -> bool {
        let boot = sys::boot_id();
        let get = |off: usize| self.engine.mem.u64_at(off).load(Ordering::Relaxed);
        [get(hdr::BOOT_ID), get(hdr::BOOT_ID + 8)] != boot
    }

    /// Decides, before we take an entry, whether the participants in the
    /// table belong to a previous boot, and publishes the new boot id at
    /// once. Exactly one attacher wins the compare-and-swap on the boot id's
    /// first word; it gets the table's words as they were before the new
    /// boot id was published, that is, the old boot's entries only: every
    /// attacher takes its entry after it saw the new boot id (it returns
    /// from here only then), so no entry taken under the new boot is in
    /// the winner's snapshot.
    fn elect_boot(&self) -> Option<Vec<(u64, u64)>> {
        let boot = sys::boot_id();
        let lo = self.engine.mem.u64_at(hdr::BOOT_ID);
        let hi = self.engine.mem.u64_at(hdr::BOOT_ID + 8);
        let table = Table::new(&self.engine.mem, &self.engine.layout);
        loop {
            // Acquire: pairs with the winner's release below, so our entry
            // is taken after the winner's snapshot was read.
            let seen = lo.load(Ordering::Acquire);
            if seen == boot[0] {
                // Relaxed: every writer stores the same value; this heals a
                // winner that died between its CAS and its store.
                if hi.load(Ordering::Relaxed) != boot[1] {
                    hi.store(boot[1], Ordering::Relaxed);
                }
                return None;
            }
            let snapshot = table.snapshot();
            // AcqRel: the snapshot's loads come before the publication
            // (release), which the others acquire above.
            if lo
                .compare_exchange(seen, boot[0], Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Relaxed: informative (`stale_boot`), healed above.
                hi.store(boot[1], Ordering::Relaxed);
                return Some(snapshot);
            }
        }
    }

    fn register(&mut self) -> Result<()> {
        let old_boot = self.elect_boot();
        let now = sys::monotonic_ns();
        let start_time = sys::process_start_time(self.pid).unwrap_or(0);
        let table = Table::new(&self.engine.mem, &self.engine.layout);
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: false,
        };
        for i in 0..table.capacity() {
            let got = sys::ofd_try_lock(self.file.as_fd(), LOCK_BASE + i).map_err(|e| {
                Error::io(
                    format!("{}: open: locking participant byte", self.path.display()),
                    e,
                )
            })?;
            if !got {
                continue;
            }
            table.raise_bound(i);
            let engine = &self.engine;
            let mut repairs = Repairs::default();
            let mut cleaned = 0u64;
            // We hold entry i's lock, so its previous owner is dead: repair
            // what it left, acting as entry i (ours once taken).
            let mut clean = |dead: u64| {
                // Dead-letter records first: a record the dead left half
                // written is freed, so that a move it left half done finds
                // room when the slots are repaired.
                engine.repair_dlq(&|o| o == dead);
                if let Ok(r) = engine.repair(dead, now, &|o| o == dead) {
                    repairs.add(&r);
                }
                clear_sleeper_counts(engine, dead);
                cleaned += 1;
            };
            if let Some(mine) = table.take(i, self.pid, start_time, now, &live, &mut clean) {
                self.me = Some(i);
                self.registration = Some(mine);
                self.count(Counter::DeadParticipants, cleaned);
                if let Some(snapshot) = old_boot {
                    hooks::fire(hooks::Point::BeforeBootRecovery, i);
                    // Every participant of the previous boot is dead, its
                    // lock held or not (a lock cannot outlive a reboot; a
                    // file copied from elsewhere may say so all the same).
                    let dead = table.claim_unchanged(i, &snapshot);
                    repairs.add(&self.clean_up(i, now, &dead)?);
                }
                // Then the dead of this boot, and any cleanup a previous
                // holder of our entry left unfinished (it names our index
                // as its cleaner: nobody else would take it over).
                let dead = table.claim_dead(i, &live);
                if !dead.is_empty() {
                    repairs.add(&self.clean_up(i, now, &dead)?);
                }
                self.account_repairs(&repairs);
                self.attach_repairs.set(repairs);
                return Ok(());
            }
            let _ = sys::ofd_unlock(self.file.as_fd(), LOCK_BASE + i);
        }
        Err(Error::new(
            Status::Full,
            format!(
                "{}: open: all {} participant entries are in use",
                self.path.display(),
                table.capacity()
            ),
        ))
    }

    /// The attached participants: index, pid, whether it is alive, and the
    /// roles it has had (bit 0 produced, bit 1 consumed).
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        let table = Table::new(&self.engine.mem, &self.engine.layout);
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: self.stale_boot(),
        };
        (0..table.capacity())
            .filter_map(|i| {
                let e = table.entry(i);
                if e.state == part::FREE {
                    return None;
                }
                let base = self.engine.layout.participant(i);
                let rd = |f: usize| self.engine.mem.u64_at(base + f).load(Ordering::Relaxed);
                let roles = rd(part::ROLES);
                Some(ParticipantInfo {
                    index: i,
                    pid: e.pid,
                    alive: e.state == part::LIVE && (Some(i) == self.me || live.alive(i, e.pid)),
                    cleaning: e.state == part::CLEANING,
                    producer: roles & ROLE_PRODUCER != 0,
                    consumer: roles & ROLE_CONSUMER != 0,
                    attached_ns: rd(part::ATTACHED_NS),
                })
            })
            .collect()
    }

    /// The path the queue was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout of the file.
    pub fn layout(&self) -> &Layout {
        &self.engine.layout
    }

    /// Default lease, read from the file.
    pub fn lease(&self) -> Duration {
        Duration::from_nanos(self.engine.config.lease_ns)
    }

    /// Failed deliveries before dead-lettering (0 = unlimited).
    pub fn max_deliveries(&self) -> u32 {
        self.engine.config.max_deliveries
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

    /// Detaches: redelivers nothing by itself, but frees the participant
    /// entry, so survivors treat what it still holds as a dead participant's.
    pub fn close(self) -> Result<()> {
        drop(self);
        Ok(())
    }

    /// Our participant index, after the checks of every operation that
    /// changes the queue ([`Queue::writable`]). The checks are three loads
    /// of handle memory; the errors are built out of line.
    #[inline(always)]
    fn me(&self, op: &str) -> Result<u64> {
        match self.me {
            Some(me) if !self.read_only && !self.engine.mem.broken() && !self.inherited() => Ok(me),
            _ => Err(self.not_me(op)),
        }
    }

    /// Whether this handle was copied into this process by `fork()` (one
    /// load of a process-wide word; see [`sys::current_pid`]). Such a handle
    /// is its parent's participant: it refuses every operation, and
    /// dropping it leaves the file alone.
    #[inline(always)]
    fn inherited(&self) -> bool {
        self.pid != sys::current_pid()
    }

    #[cold]
    #[inline(never)]
    fn forked_err(&self, op: &str) -> Error {
        Error::new(
            Status::InvalidArgument,
            format!(
                "{}: {op}: the queue handle was opened by process {} before fork(): a forked \
                 child must open its own handle (dropping this one in the child leaves the \
                 queue alone)",
                self.path.display(),
                self.pid
            ),
        )
    }

    #[cold]
    #[inline(never)]
    fn not_me(&self, op: &str) -> Error {
        if let Err(e) = self.writable(op) {
            return e;
        }
        Error::new(
            Status::InvalidArgument,
            format!(
                "{}: {op}: this handle was opened for inspection only",
                self.path.display()
            ),
        )
    }

    /// `Permission` on a read-only handle, `Corrupt` on a broken one: the
    /// check of every operation that changes the queue, before it touches
    /// the mapping.
    #[inline(always)]
    fn writable(&self, op: &str) -> Result<()> {
        if self.read_only {
            return Err(self.read_only_err(op));
        }
        self.intact(op)
    }

    #[cold]
    #[inline(never)]
    fn read_only_err(&self, op: &str) -> Error {
        Error::new(
            Status::Permission,
            format!(
                "{}: {op}: this handle is read-only (opened read-only, or this process \
                 may not write the file): it cannot change the queue",
                self.path.display()
            ),
        )
    }

    /// `Corrupt` once the file shrank under the mapping. One relaxed load
    /// of process memory: checked when an operation starts and again before
    /// it reports success, since the fault may hit in between.
    #[inline(always)]
    fn intact(&self, op: &str) -> Result<()> {
        if self.inherited() {
            return Err(self.forked_err(op));
        }
        if self.engine.mem.broken() {
            return Err(self.truncated_err(op));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn truncated_err(&self, op: &str) -> Error {
        Error::new(
            Status::Corrupt,
            format!("{}: {op}: {TRUNCATED}", self.path.display()),
        )
    }

    /// Whether this handle is read-only: mapped `PROT_READ`, not attached,
    /// refusing every change with `Permission`.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the file was truncated while mapped; every operation then
    /// returns `Corrupt`. [`Queue::stats`] and the listings cannot return an
    /// error: check this after them when it matters.
    pub fn is_broken(&self) -> bool {
        self.engine.mem.broken()
    }

    /// `r`, or `Corrupt` if the file shrank under the mapping while the
    /// operation ran: whatever it read or wrote may have been zero pages,
    /// so neither its success nor its error (`Full`, `Empty`, `LeaseLost`,
    /// ...) can be trusted.
    #[inline]
    fn checked<T>(&self, op: &str, r: Result<T>) -> Result<T> {
        match self.intact(op) {
            Ok(()) => r,
            Err(e) => Err(e),
        }
    }

    /// `Corrupt` when the file was truncated while mapped, naming the file
    /// and `op`; for callers of the calls that cannot fail.
    pub fn check_intact(&self, op: &str) -> Result<()> {
        self.intact(op)
    }

    fn err(&self, op: &str, e: Error) -> Error {
        Error::new(
            e.status(),
            format!("{}: {op}: {}", self.path.display(), e.message()),
        )
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
        match (self.me, self.metrics.get()) {
            (Some(me), true) => Some(Recorder::new(
                &self.engine.mem,
                self.engine.layout.participant(me),
            )),
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
            if let Some(me) = self.me {
                self.roles.set(self.roles.get() | role);
                let w = self
                    .engine
                    .mem
                    .u64_at(self.engine.layout.participant(me) + part::ROLES);
                // Relaxed: informative only.
                w.fetch_or(role, Ordering::Relaxed);
            }
        }
    }

    fn wait_point(&self, p: Point) -> WaitPoint<'_> {
        let (f, s) = match p {
            Point::NotEmpty => (hdr::NOT_EMPTY_FUTEX, hdr::NOT_EMPTY_SLEEPERS),
            Point::NotFull => (hdr::NOT_FULL_FUTEX, hdr::NOT_FULL_SLEEPERS),
        };
        WaitPoint::new(self.engine.mem.u32_at(f), self.engine.mem.u64_at(s))
    }

    #[inline]
    fn notify(&self, p: Point) {
        self.wait_point(p).notify(&OsFutex);
    }

    /// Runs whatever maintenance is due: the liveness sweep every couple of
    /// milliseconds, the slot scan for expired leases and stalled
    /// reservations at a fraction of the lease. Cheap when nothing is due.
    ///
    /// Two clocks, each for one job: the liveness sweep is due by the
    /// precise clock (the coarse one moves in steps of the kernel's tick,
    /// 4 ms here, which alone would more than double the time to notice a
    /// death), and repairs compare leases and deadlines by the coarse clock,
    /// on which they were stamped.
    fn maintain(&self) -> Result<bool> {
        let Some(me) = self.me else { return Ok(false) };
        let mut repaired = false;
        let now = self.now();
        let live_next = self.engine.mem.u64_at(hdr::LIVENESS_NEXT_NS);
        // Relaxed: a due time; the CAS below elects one sweeper.
        let due = live_next.load(Ordering::Relaxed);
        let precise = self.precise();
        if precise >= due
            && live_next
                .compare_exchange(
                    due,
                    precise.saturating_add(LIVENESS_PERIOD_NS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            repaired |= self.sweep_dead(me, now)? > 0;
        }
        let maint_next = self.engine.mem.u64_at(hdr::MAINT_NEXT_NS);
        let due = maint_next.load(Ordering::Relaxed);
        if now >= due {
            let cfg = &self.engine.config;
            let period =
                (cfg.lease_ns.min(cfg.reservation_timeout_ns) / 4).clamp(1_000_000, 100_000_000);
            if maint_next
                .compare_exchange(
                    due,
                    now.saturating_add(period),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                let r = self.engine.repair(me, now, &|_| false)?;
                repaired |= self.account_repairs(&r);
            }
        }
        Ok(repaired)
    }

    fn account_repairs(&self, r: &Repairs) -> bool {
        self.count(Counter::Abandoned, r.abandoned);
        self.count(Counter::Reclaimed, r.reclaimed);
        self.count(Counter::DeadLettered, r.dead_lettered);
        // A replacement finished or undone for its producer made a message
        // claimable again.
        if r.redelivered + r.replacements > 0 {
            self.notify(Point::NotEmpty);
        }
        if r.abandoned + r.dead_lettered > 0 {
            self.notify(Point::NotFull);
        }
        r.abandoned + r.redelivered + r.dead_lettered + r.replacements > 0
    }

    /// Finds dead participants, repairs what they left, frees their entries.
    fn sweep_dead(&self, me: u64, now: u64) -> Result<usize> {
        let table = Table::new(&self.engine.mem, &self.engine.layout);
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: false,
        };
        let dead = table.claim_dead(me, &live);
        if dead.is_empty() {
            return Ok(0);
        }
        let r = self.clean_up(me, now, &dead)?;
        self.account_repairs(&r);
        Ok(dead.len())
    }

    /// Repairs every slot (expired leases, stalled reservations) and what
    /// the participants in `dead` left; then frees their entries, which
    /// `me` marked as being cleaned by it. Entries of a repair that fails
    /// stay marked, and the next sweep of `me` takes them up again.
    fn clean_up(&self, me: u64, now: u64, dead: &[u64]) -> Result<Repairs> {
        let table = Table::new(&self.engine.mem, &self.engine.layout);
        // Dead-letter records first: a record the dead left half written is
        // freed, so that a move they left half done finds room below.
        self.engine.repair_dlq(&|o| dead.contains(&o));
        let r = self.engine.repair(me, now, &|o| dead.contains(&o))?;
        for &d in dead {
            clear_sleeper_counts(&self.engine, d);
            table.finish_cleaning(d, me);
        }
        self.count(Counter::DeadParticipants, dead.len() as u64);
        Ok(r)
    }

    /// Cleans up after dead participants and repairs expired leases and
    /// stalled reservations now (what `shmq recover` runs). An inspection
    /// handle attaches for the time of the call, since repairs act as a
    /// participant.
    pub fn recover(&self) -> Result<Repairs> {
        self.writable("recover")?;
        let Some(me) = self.me else {
            let opts = self.open_opts.access(Access::Participant);
            let q = Queue::open_with(&self.path, &opts)?;
            let mut r = q.recover()?;
            r.add(&q.attach_repairs.get());
            return Ok(r);
        };
        let now = self.now();
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: false,
        };
        let dead = Table::new(&self.engine.mem, &self.engine.layout).claim_dead(me, &live);
        let r = self
            .clean_up(me, now, &dead)
            .map_err(|e| self.err("recover", e))?;
        self.account_repairs(&r);
        Ok(r)
    }

    /// Spins, then sleeps, until `attempt` yields a value or the timeout
    /// passes. `attempt` gets the current time.
    fn wait_for<T>(
        &self,
        point: Point,
        timeout: Timeout,
        op: &str,
        mut attempt: impl FnMut(u64) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let start = self.now();
        if let Some(x) = attempt(start)? {
            return Ok(Some(x));
        }
        if self.maintain()? {
            if let Some(x) = attempt(start)? {
                return Ok(Some(x));
            }
        }
        if matches!(timeout, Timeout::TryOnce) {
            return Ok(None);
        }
        // From here on the caller waits: time it precisely.
        let start = self.precise();
        let deadline = match timeout {
            Timeout::TryOnce => return Ok(None),
            Timeout::Forever => u64::MAX,
            Timeout::For(d) => start.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        };
        let spin_until = match self.wait {
            WaitStrategy::Sleep => start,
            WaitStrategy::SpinThenSleep => start + SPIN_NS,
            WaitStrategy::Spin => u64::MAX,
        };
        let mut spins = 0u32;
        loop {
            // A waiter on a broken queue returns instead of waiting on
            // words that are now zeros.
            self.intact(op)?;
            let now = self.precise();
            if now >= deadline {
                self.count(Counter::Timeouts, 1);
                return Err(Error::new(
                    Status::Timeout,
                    format!("{}: {op}: timed out", self.path.display()),
                ));
            }
            if now < spin_until {
                spins += 1;
                if spins % 64 == 0 {
                    self.maintain()?;
                    std::thread::yield_now();
                } else {
                    // Back off a little more each time (up to 32 pauses), so
                    // that a waiter does not hammer the lines the other side
                    // is writing.
                    for _ in 0..(1u32 << (spins % 64).min(5)) {
                        crate::sync::spin_hint();
                    }
                    // A producer waits for a run of room, polling a slot
                    // ahead (see `Engine::room_ahead`); it tries its own
                    // slot every few polls all the same, for a queue that
                    // frees out of order.
                    if matches!(point, Point::NotFull)
                        && spins % 16 != 0
                        && !self
                            .engine
                            .room_ahead(ROOM_RUN.min(self.engine.capacity() / 4))
                    {
                        continue;
                    }
                }
                if let Some(x) = attempt(now)? {
                    return Ok(Some(x));
                }
                continue;
            }
            let wp = self.wait_point(point);
            let bit = match point {
                Point::NotEmpty => 1,
                Point::NotFull => 2,
            };
            let sleeping = self
                .engine
                .mem
                .u64_at(self.engine.layout.participant(self.me(op)?) + part::SLEEPING);
            // Relaxed: read only by a cleaner after our death.
            sleeping.fetch_or(bit, Ordering::Relaxed);
            let seen = wp.prepare();
            let got = attempt(now);
            if !matches!(got, Ok(None)) {
                wp.done();
                sleeping.fetch_and(!bit, Ordering::Relaxed);
                return got;
            }
            let left = Duration::from_nanos(deadline - now).min(MAX_SLEEP);
            wp.sleep(&OsFutex, seen, Some(left));
            wp.done();
            sleeping.fetch_and(!bit, Ordering::Relaxed);
            let now = self.precise();
            self.maintain()?;
            if let Some(x) = attempt(now)? {
                return Ok(Some(x));
            }
        }
    }

    /// Runs whatever maintenance is due, from every operation whatever its
    /// rate: a consumer busy for hundreds of milliseconds per message
    /// still sweeps for the dead at its next call when the last sweep (by
    /// anyone) is over [`LIVENESS_PERIOD_NS`] old. `now` is the time the
    /// operation already read (coarse, up to a kernel tick behind: a sweep
    /// can come that much late); until the due time remembered from the
    /// header this is one compare.
    #[inline]
    fn tick(&self, now: u64) {
        if now >= self.next_check.get() {
            self.tick_due(now);
        }
    }

    #[cold]
    #[inline(never)]
    fn tick_due(&self, now: u64) {
        let live = self.engine.mem.u64_at(hdr::LIVENESS_NEXT_NS);
        let maint = self.engine.mem.u64_at(hdr::MAINT_NEXT_NS);
        // Relaxed: due times, hints; `maintain` elects one runner of each
        // job with a CAS on the word itself.
        if now >= live.load(Ordering::Relaxed) || now >= maint.load(Ordering::Relaxed) {
            let _ = self.maintain();
        }
        let next = live
            .load(Ordering::Relaxed)
            .min(maint.load(Ordering::Relaxed));
        self.next_check.set(next);
    }

    /// Starts a thread that sweeps for dead participants every `period`
    /// (clamped to 100 µs ..= 1 s; 1 to 2 ms is the intent), and runs the
    /// other maintenance when due, so that a dead participant's claims
    /// come back within a few milliseconds even while every survivor is
    /// busy in its own code and none calls into shmq. The thread attaches
    /// its own handle to the same file (a participant entry of its own: a
    /// handle is not `Sync`); dropping the returned guard stops and joins
    /// it, and detaches that handle.
    pub fn start_watchdog(&self, period: Duration) -> Result<Watchdog> {
        self.writable("start_watchdog")?;
        let opts = self.open_opts.access(Access::Participant);
        let q =
            Queue::open_with(&self.path, &opts).map_err(|e| self.err_once("start_watchdog", e))?;
        if !q.same_file(&self.file) {
            return Err(Error::new(
                Status::NotFound,
                format!(
                    "{}: start_watchdog: the path names another file than this handle's \
                     (replaced since it was opened)",
                    self.path.display()
                ),
            ));
        }
        let period = period.clamp(Duration::from_micros(100), Duration::from_secs(1));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shmq-watchdog".into())
            .spawn(move || {
                // Acquire: pairs with the release of `Watchdog::drop`.
                while !stopped.load(std::sync::atomic::Ordering::Acquire) {
                    q.watch();
                    std::thread::park_timeout(period);
                }
            })
            .map_err(|e| Error::io(format!("{}: start_watchdog", self.path.display()), e))?;
        Ok(Watchdog {
            stop,
            thread: Some(thread),
            pid: self.pid,
        })
    }

    /// Whether this handle's file is `other` (same device and inode).
    fn same_file(&self, other: &File) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.metadata()) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }

    /// One pass of a watchdog: a liveness sweep now, then what else is due.
    fn watch(&self) {
        let Ok(me) = self.me("watchdog") else { return };
        let now = self.now();
        let _ = self.sweep_dead(me, now);
        // The table was just swept: others need not for a period. Relaxed:
        // a due time (see `maintain`).
        self.engine.mem.u64_at(hdr::LIVENESS_NEXT_NS).fetch_max(
            self.precise().saturating_add(LIVENESS_PERIOD_NS),
            Ordering::Relaxed,
        );
        let _ = self.maintain();
    }

    // ----------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------

    /// Sends one message without a key, waiting for room up to `timeout`.
    pub fn send(&self, data: &[u8], timeout: impl Into<Timeout>) -> Result<Sent> {
        self.send_with(data, &SendOptions::new().timeout(timeout))
    }

    /// Sends one message with a key, version, timeout and delay.
    ///
    /// With a key (non-zero): the version must be newer than the key's last
    /// acked version, else `Stale` and nothing is queued; version 0 takes
    /// the key's next version, returned in [`Sent::version`]. In latest-only
    /// mode a waiting (unclaimed) message of the key is replaced in place.
    pub fn send_with(&self, data: &[u8], opts: &SendOptions) -> Result<Sent> {
        self.checked("send", self.send_with_unchecked(data, opts))
    }

    fn send_with_unchecked(&self, data: &[u8], opts: &SendOptions) -> Result<Sent> {
        self.me("send")?;
        self.check_len(data.len(), "send")?;
        let mut opts = *opts;
        // Version 0 ("the key's next version") is assigned once the send
        // has a place: a send refused `Full` uses no version.
        let auto = opts.key != 0 && opts.version == 0;
        if opts.key != 0 {
            if auto {
                self.engine
                    .keys()
                    .find_or_insert(opts.key)
                    .map_err(|e| self.err("send", e))?;
            } else {
                opts.version = self.resolve_version(opts.key, opts.version, "send")?;
            }
            if self.latest_only && opts.delay.is_zero() {
                if let Some(sent) = self.replace_waiting(data, &opts, "send")? {
                    return Ok(sent);
                }
            }
        }
        let (r, at) = self.reserve_inner(data.len(), opts.timeout, "send")?;
        if auto {
            match self.resolve_version(opts.key, 0, "send") {
                Ok(v) => opts.version = v,
                Err(e) => {
                    let _ = self.engine.abort(self.me("send")?, &r);
                    self.notify(Point::NotFull);
                    return Err(e);
                }
            }
        }
        self.engine.write_payload(&r, data);
        self.commit_inner(&r, data.len(), &opts, "send", Some(at))
    }

    /// Latest-only: replaces the waiting message of `opts.key` in place with
    /// `data` (see `ring`'s module doc: the new message goes into this
    /// participant's replacement record first, so that a death or a stall
    /// at any point leaves the old message or the new one). `Ok(None)` when
    /// there is nothing to replace, or the replacement stalled past the
    /// reservation timeout before its copy and a repair undid it: send a
    /// new message instead. Version 0 is assigned after the take.
    fn replace_waiting(&self, data: &[u8], opts: &SendOptions, op: &str) -> Result<Option<Sent>> {
        let me = self.me(op)?;
        let now = self.now();
        let taken = self
            .engine
            .take_waiting(me, opts.key, opts.version, now, Some(data))
            .map_err(|e| self.keyed_err(op, e))?;
        let Some(r) = taken else {
            return Ok(None);
        };
        let mut opts = *opts;
        if opts.version == 0 {
            match self.resolve_version(opts.key, 0, op) {
                Ok(v) => opts.version = v,
                Err(e) => {
                    self.engine.abort_replacement(me, &r);
                    return Err(e);
                }
            }
        }
        let (len_word, enqueued) = self.enqueue_stamp(data.len(), now);
        if !self.engine.stage_replacement(
            me,
            &r,
            opts.key,
            opts.version,
            len_word as u64,
            enqueued,
            None,
        ) {
            return Ok(None);
        }
        self.engine
            .commit_replacement(me, &r, now)
            .map_err(|e| self.err(op, e))?;
        let sent = self.committed(&r, data.len(), &opts, None, now);
        self.count(Counter::Conflated, 1);
        Ok(Some(sent))
    }

    fn keyed_err(&self, op: &str, e: Error) -> Error {
        if e.status() == Status::Stale {
            self.count(Counter::Stale, 1);
        }
        self.err(op, e)
    }

    /// Finds (or takes) the key's entry and gives the version of a send.
    fn resolve_version(&self, key: u64, version: u64, op: &str) -> Result<u64> {
        let keys = self.engine.keys();
        let e = keys.find_or_insert(key).map_err(|e| self.err(op, e))?;
        keys.assign_version(e, version).map_err(|e| {
            self.keyed_err(
                op,
                Error::new(e.status(), format!("key {key}: {}", e.message())),
            )
        })
    }

    /// The last acked version of `key` (0 if none), for a consumer that
    /// guards its own store too.
    pub fn latest_acked_version(&self, key: u64) -> u64 {
        let keys = self.engine.keys();
        keys.find(key).map_or(0, |e| keys.last_acked(e))
    }

    /// Evicts the key-table entries of keys that no message refers to,
    /// forgetting their versions. Refused while other participants are
    /// attached (the table is rebuilt in place). Returns how many.
    pub fn evict_keys(&self) -> Result<u64> {
        self.writable("evict_keys")?;
        let e = &self.engine;
        let table = Table::new(&e.mem, &e.layout);
        let others = table
            .live()
            .into_iter()
            .filter(|(i, _)| Some(*i) != self.me)
            .count();
        if others > 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "{}: evict_keys: {others} other participant(s) attached; eviction needs the queue to itself",
                    self.path.display()
                ),
            ));
        }
        let mut used = std::collections::HashSet::new();
        for i in 0..e.layout.params.capacity {
            if e.slot_word(i).state() != state::FREE {
                used.insert(
                    e.mem
                        .u64_at(e.layout.slot(i) + slot::KEY)
                        .load(Ordering::Relaxed),
                );
            }
        }
        Ok(e.keys().evict_settled(&|k| used.contains(&k)))
    }

    #[inline(always)]
    fn check_len(&self, len: usize, op: &str) -> Result<()> {
        if len as u64 > self.engine.layout.params.max_message_size {
            return Err(self.too_large(len, op));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self, len: usize, op: &str) -> Error {
        let max = self.engine.layout.params.max_message_size;
        Error::new(
            Status::TooLarge,
            format!(
                "{}: {op}: {len} bytes is more than max_message_size {max}",
                self.path.display()
            ),
        )
    }

    /// Reserves a slot, waiting as `timeout` allows; returns it with the
    /// time of the reservation.
    fn reserve_inner(&self, len: usize, timeout: Timeout, op: &str) -> Result<(Reservation, u64)> {
        let me = self.me(op)?;
        self.check_len(len, op)?;
        let got = self.wait_for(Point::NotFull, timeout, op, |now| {
            match self.engine.reserve(me, now, len) {
                Ok(r) => Ok(Some((r, now))),
                Err(e) if e.status() == Status::Full => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                self.count(Counter::Full, 1);
                // Built once per handle: a producer polling a full queue
                // meets it at every poll.
                Err(Error::new(Status::Full, self.full_msg.clone()))
            }
            Err(e) => Err(self.err_once(op, e)),
        }
    }

    /// Prefixes an error with the file and operation unless it already is.
    fn err_once(&self, op: &str, e: Error) -> Error {
        let prefix = format!("{}: ", self.path.display());
        if e.message().starts_with(&prefix) {
            e
        } else {
            self.err(op, e)
        }
    }

    fn commit_inner(
        &self,
        r: &Reservation,
        len: usize,
        opts: &SendOptions,
        op: &str,
        at: Option<u64>,
    ) -> Result<Sent> {
        let me = self.me(op)?;
        // One clock read per send: a commit that directly follows its
        // reservation uses the reservation's time.
        let now = at.unwrap_or_else(|| self.now());
        let (len_word, enqueued) = self.enqueue_stamp(len, now);
        let not_before = if opts.delay.is_zero() {
            None
        } else {
            Some(now.saturating_add(opts.delay.as_nanos().min(u64::MAX as u128) as u64))
        };
        // The delay is compared with the coarse time it was computed from;
        // a sampled message's precise enqueue time (up to a tick ahead) made
        // short delays look over at once (found by tests/model_keys.rs).
        self.engine
            .commit_at(
                me,
                r,
                len_word,
                opts.key,
                opts.version,
                not_before,
                now,
                enqueued,
            )
            .map_err(|e| self.err(op, e))?;
        Ok(self.committed(r, len, opts, not_before, now))
    }

    /// The length word (with the sampling flag) and enqueue time of a
    /// message committed at `now`.
    fn enqueue_stamp(&self, len: usize, now: u64) -> (usize, u64) {
        let sampled = self.sample(now);
        let enqueued = if sampled { self.precise() } else { now };
        let len_word = if sampled {
            len | layout::slot::LEN_SAMPLED as usize
        } else {
            len
        };
        (len_word, enqueued)
    }

    /// The bookkeeping after the commit of reservation `r`.
    fn committed(
        &self,
        r: &Reservation,
        len: usize,
        opts: &SendOptions,
        not_before: Option<u64>,
        now: u64,
    ) -> Sent {
        if opts.key != 0 {
            let keys = self.engine.keys();
            if let Some(e) = keys.find(opts.key) {
                // A racy maximum, not an atomic one: the field is
                // informative (no decision reads it), and a locked RMW on
                // the key's line costs more than the rest of the commit's
                // bookkeeping.
                let committed = keys.field(e, layout::key::LAST_COMMITTED);
                if committed.load(Ordering::Relaxed) < opts.version {
                    committed.store(opts.version, Ordering::Relaxed);
                }
            }
            if self.latest_only && not_before.is_none() {
                self.engine.set_waiting(opts.key, r.slot, r.position);
            }
        }
        self.notify(Point::NotEmpty);
        self.note_role(ROLE_PRODUCER);
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Sent, 1);
            rec.add(Counter::BytesSent, len as u64);
        }
        self.tick(now);
        Sent {
            position: r.position,
            version: opts.version,
        }
    }

    /// Reserves a slot for a payload of up to `len` bytes, to be written in
    /// place and then committed (zero-copy send).
    pub fn reserve(&self, len: usize, timeout: impl Into<Timeout>) -> Result<Reserved<'_>> {
        let r = self.reserve_inner(len, timeout.into(), "reserve");
        let (r, _) = self.checked("reserve", r)?;
        Ok(Reserved {
            q: self,
            r,
            len,
            done: false,
        })
    }

    /// Sends several messages; waits up to `timeout` for room for the first,
    /// then sends as many as fit now. Returns how many were sent: always a
    /// prefix of `messages`. An error (a message too large, a reservation
    /// abandoned before its commit, a damaged file) stops the batch where
    /// it happens; it is returned only when nothing was sent, so that a
    /// caller never resends what went out (the next call meets the error
    /// again if it lasts).
    pub fn send_batch<B: AsRef<[u8]>>(
        &self,
        messages: &[B],
        timeout: impl Into<Timeout>,
    ) -> Result<usize> {
        self.checked(
            "send_batch",
            self.send_batch_unchecked(messages, timeout.into()),
        )
    }

    fn send_batch_unchecked<B: AsRef<[u8]>>(
        &self,
        messages: &[B],
        timeout: Timeout,
    ) -> Result<usize> {
        let me = self.me("send_batch")?;
        let mut timeout = timeout;
        let mut sent = 0usize;
        let mut bytes = 0u64;
        let mut now = self.now();
        let mut failed = None;
        for m in messages {
            let data = m.as_ref();
            if let Err(e) = self.check_len(data.len(), "send_batch") {
                failed = Some(e);
                break;
            }
            let r = if sent == 0 {
                match self.reserve_inner(data.len(), timeout, "send_batch") {
                    Ok((r, at)) => {
                        now = at;
                        r
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            } else {
                match self.engine.reserve(me, now, data.len()) {
                    Ok(r) => r,
                    Err(e) if e.status() == Status::Full => break,
                    Err(e) => {
                        failed = Some(self.err("send_batch", e));
                        break;
                    }
                }
            };
            timeout = Timeout::TryOnce;
            self.engine.write_payload(&r, data);
            if let Err(e) = self.engine.commit(me, &r, data.len(), 0, 0, None, now) {
                failed = Some(self.err("send_batch", e));
                break;
            }
            sent += 1;
            bytes += data.len() as u64;
        }
        if sent == 0 {
            if let Some(e) = failed {
                return Err(e);
            }
            return Ok(0);
        }
        self.notify(Point::NotEmpty);
        self.note_role(ROLE_PRODUCER);
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Sent, sent as u64);
            rec.add(Counter::BytesSent, bytes);
        }
        self.tick(now);
        Ok(sent)
    }

    // ----------------------------------------------------------------
    // Claiming
    // ----------------------------------------------------------------

    fn claim_once(&self, me: u64, now: u64) -> Result<Option<Claim>> {
        let mut tally = ring::Tally {
            patient: true,
            ..ring::Tally::default()
        };
        let mut got = self.engine.claim_counted(me, now, &mut tally);
        if let (Ok(None), Some((i, w))) = (&got, tally.blocked) {
            // A producer is still writing the next message. Wait for it
            // (the caller retries), but not for long: pass a reservation
            // that blocks the head for more than PASS_AFTER_NS.
            let t = self.precise();
            match self.blocked.get() {
                // The same reservation (slot, sequence and owner): a skip
                // by producers lapping the ring moves only its lap, and must
                // not restart the timer (found by review: with producers
                // lapping a small ring faster than the pass, the head waited
                // for the reservation timeout instead).
                Some((bi, bw, since))
                    if bi == i
                        && ring::SlotWord(bw).seq() == w.seq()
                        && ring::SlotWord(bw).owner() == w.owner() =>
                {
                    if t.saturating_sub(since) >= PASS_AFTER_NS {
                        self.engine.pass_reservation(i, w);
                        self.blocked.set(None);
                        got = self.engine.claim_counted(me, now, &mut tally);
                    }
                }
                _ => self.blocked.set(Some((i, w.0, t))),
            }
        }
        if tally.stale > 0 {
            self.count(Counter::Stale, tally.stale);
            self.notify(Point::NotFull);
        }
        if tally.key_waits > 0 {
            self.count(Counter::KeyWaits, tally.key_waits);
        }
        got
    }

    fn claimed(&self, c: Claim, now: u64) -> Message<'_> {
        self.note_role(ROLE_CONSUMER);
        // A sampled message is timed precisely from here to its ack.
        let claimed_ns = if c.sampled && self.metrics.get() {
            self.precise()
        } else {
            now
        };
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Claimed, 1);
            if c.deliveries > 1 {
                rec.add(Counter::Redelivered, 1);
            } else if c.sampled {
                rec.record(
                    Histogram::LeadTime,
                    claimed_ns.saturating_sub(c.enqueued_ns),
                );
            }
        }
        Message {
            q: self,
            claim: c,
            claimed_ns,
        }
    }

    /// Claims the next message, waiting up to `timeout`. `Empty` when
    /// nothing is claimable and the call may not wait; `Timeout` after
    /// waiting.
    pub fn claim(&self, timeout: impl Into<Timeout>) -> Result<Message<'_>> {
        self.checked("claim", self.claim_unchecked(timeout.into()))
    }

    fn claim_unchecked(&self, timeout: Timeout) -> Result<Message<'_>> {
        let me = self.me("claim")?;
        let mut at = 0;
        let got = self
            .wait_for(Point::NotEmpty, timeout, "claim", |now| {
                at = now;
                self.claim_once(me, now)
            })
            .map_err(|e| self.err_once("claim", e))?;
        match got {
            Some(c) => {
                self.tick(at);
                Ok(self.claimed(c, at))
            }
            None => Err(Error::new(
                Status::Empty,
                // Built once per handle: a polling consumer meets it at
                // every poll.
                self.empty_msg.clone(),
            )),
        }
    }

    /// Claims up to `max` messages: waits up to `timeout` for the first, then
    /// takes what is claimable now.
    pub fn claim_batch(&self, max: usize, timeout: impl Into<Timeout>) -> Result<Vec<Message<'_>>> {
        let mut out = Vec::with_capacity(max.min(1024));
        self.claim_batch_into(max, timeout, &mut out)?;
        Ok(out)
    }

    /// Like [`Queue::claim_batch`], appending to `out`; returns how many.
    pub fn claim_batch_into<'q>(
        &'q self,
        max: usize,
        timeout: impl Into<Timeout>,
        out: &mut Vec<Message<'q>>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let before = out.len();
        let r = self.claim_batch_unchecked(max, timeout.into(), out);
        if r.is_ok() && self.engine.mem.broken() {
            // Claims made from zero pages are no claims.
            out.truncate(before);
        }
        self.checked("claim_batch", r)
    }

    fn claim_batch_unchecked<'q>(
        &'q self,
        max: usize,
        timeout: Timeout,
        out: &mut Vec<Message<'q>>,
    ) -> Result<usize> {
        let me = self.me("claim_batch")?;
        let first = self.claim(timeout)?;
        // The coarse clock, on which leases and delays are stamped (the
        // first claim's time may be the precise one, up to a tick ahead,
        // which took delayed messages early).
        let now = self.now();
        out.push(first);
        let mut n = 1;
        while n < max {
            match self
                .claim_once(me, now)
                .map_err(|e| self.err("claim_batch", e))?
            {
                Some(c) => {
                    out.push(self.claimed(c, now));
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }

    // ----------------------------------------------------------------
    // Outcomes
    // ----------------------------------------------------------------

    /// Gives the outcome of the claim named by `token`. `claimed_ns`, when
    /// known, feeds the processing-time histogram.
    pub fn settle(
        &self,
        token: u64,
        outcome: &Outcome<'_>,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<Settled> {
        let op = match outcome {
            Outcome::Ack => "ack",
            Outcome::Nack { .. } => "nack",
            Outcome::Reject { .. } => "reject",
            Outcome::Extend { .. } => "extend_lease",
        };
        let r = self.settle_unchecked(op, token, outcome, claimed_ns, enqueued_ns);
        self.checked(op, r)
    }

    fn settle_unchecked(
        &self,
        op: &str,
        token: u64,
        outcome: &Outcome<'_>,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<Settled> {
        let me = self.me(op)?;
        let now = self.now();
        let r = match self.engine.settle(me, token, outcome, now) {
            Ok(r) => r,
            Err(e) => {
                if e.status() == Status::LeaseLost {
                    self.count(Counter::LeaseLost, 1);
                }
                return Err(self.err(op, e));
            }
        };
        if let Some(rec) = self.recorder() {
            match r {
                Settled::Acked => {
                    rec.add(Counter::Acked, 1);
                    if claimed_ns.is_some() || enqueued_ns.is_some() {
                        let t = self.precise();
                        if let Some(c) = claimed_ns {
                            rec.record(Histogram::Processing, t.saturating_sub(c));
                        }
                        if let Some(e) = enqueued_ns {
                            rec.record(Histogram::EndToEnd, t.saturating_sub(e));
                        }
                    }
                }
                Settled::Requeued => rec.add(Counter::Nacked, 1),
                Settled::DeadLettered | Settled::DlqWaiting => {
                    match outcome {
                        Outcome::Reject { .. } => rec.add(Counter::Rejected, 1),
                        _ => rec.add(Counter::Nacked, 1),
                    }
                    // A message waiting for room is counted by the repair
                    // that moves it (`Repairs::dead_lettered`), not here.
                    if r == Settled::DeadLettered {
                        rec.add(Counter::DeadLettered, 1);
                    }
                }
                Settled::Extended => rec.add(Counter::Extended, 1),
            }
        }
        match r {
            Settled::Acked | Settled::DeadLettered => self.notify(Point::NotFull),
            Settled::Requeued => self.notify(Point::NotEmpty),
            Settled::Extended | Settled::DlqWaiting => {}
        }
        self.tick(now);
        Ok(r)
    }

    /// Acks several claims; returns how many were acked (a lost lease is
    /// skipped, not an error, and not counted).
    pub fn ack_batch(&self, messages: &[Message<'_>]) -> Result<usize> {
        self.checked("ack_batch", self.ack_batch_unchecked(messages))
    }

    fn ack_batch_unchecked(&self, messages: &[Message<'_>]) -> Result<usize> {
        let me = self.me("ack_batch")?;
        let now = self.now();
        let mut precise = None;
        let mut acked = 0;
        for m in messages {
            match self.engine.settle(me, m.claim.token(), &Outcome::Ack, now) {
                Ok(_) => {
                    acked += 1;
                    if let Some(rec) = self.recorder() {
                        rec.add(Counter::Acked, 1);
                        if m.claim.sampled {
                            let t = *precise.get_or_insert_with(|| self.precise());
                            rec.record(Histogram::Processing, t.saturating_sub(m.claimed_ns));
                            rec.record(Histogram::EndToEnd, t.saturating_sub(m.claim.enqueued_ns));
                        }
                    }
                }
                Err(e) if e.status() == Status::LeaseLost => self.count(Counter::LeaseLost, 1),
                Err(e) => return Err(self.err("ack_batch", e)),
            }
        }
        if acked > 0 {
            self.notify(Point::NotFull);
        }
        self.tick(now);
        Ok(acked)
    }

    /// Copies the payload of a claim we hold into `buf` and checks that the
    /// claim was still held after the copy (so the copy is not torn).
    /// Returns the payload length; `TooLarge` if `buf` is too small.
    pub fn read_payload(&self, token: u64, buf: &mut [u8]) -> Result<usize> {
        self.checked("read", self.read_payload_unchecked(token, buf))
    }

    fn read_payload_unchecked(&self, token: u64, buf: &mut [u8]) -> Result<usize> {
        let me = self.me("read")?;
        self.engine
            .read_claimed(me, token, buf)
            .map_err(|e| self.err("read", e))
    }

    // ----------------------------------------------------------------
    // Stats, verify, dead letters
    // ----------------------------------------------------------------

    /// A snapshot of every metric (a scan of the file: not for a hot loop).
    pub fn stats(&self) -> Stats {
        let e = &self.engine;
        let l = &e.layout;
        let now = self.now();
        let mut s = Stats {
            taken_ns: now,
            capacity: l.params.capacity,
            depth: 0,
            delayed: 0,
            in_flight: 0,
            reserved: 0,
            dlq_waiting: 0,
            dead_letters: 0,
            oldest_claimable_age_ns: 0,
            oldest_in_flight_age_ns: 0,
            producers: 0,
            consumers: 0,
            participants: 0,
            producers_waiting: e.mem.u64_at(hdr::NOT_FULL_SLEEPERS).load(Ordering::Relaxed),
            consumers_waiting: e
                .mem
                .u64_at(hdr::NOT_EMPTY_SLEEPERS)
                .load(Ordering::Relaxed),
            keys_in_use: e.keys().in_use(),
            key_capacity: l.params.key_capacity,
            counters: vec![0; crate::metrics::COUNTERS.len()],
            histograms: vec![HistogramSnapshot::default(); 3],
        };
        let rd = |off: usize| e.mem.u64_at(off).load(Ordering::Relaxed);
        for i in 0..l.params.capacity {
            let w = e.slot_word(i);
            let base = l.slot(i);
            match w.state() {
                state::READY | state::PENDING => {
                    s.depth += 1;
                    let age = now.saturating_sub(rd(base + slot::ENQUEUED_NS));
                    s.oldest_claimable_age_ns = s.oldest_claimable_age_ns.max(age);
                }
                state::DELAYED => {
                    let lease = rd(base + slot::LEASE);
                    let due = (lease & ((1 << 42) - 1)) << 16;
                    if due <= now {
                        s.depth += 1;
                    } else {
                        s.delayed += 1;
                    }
                }
                state::CLAIMED => {
                    s.in_flight += 1;
                    let lease = rd(base + slot::LEASE);
                    let deadline = (lease & ((1 << 42) - 1)) << 16;
                    let claimed_at = deadline.saturating_sub(e.config.lease_ns);
                    s.oldest_in_flight_age_ns = s
                        .oldest_in_flight_age_ns
                        .max(now.saturating_sub(claimed_at));
                }
                state::RESERVED | state::PASSED | state::ABANDONED => s.reserved += 1,
                state::DLQ_WAIT => s.dlq_waiting += 1,
                _ => {}
            }
        }
        for r in 0..l.params.dlq_capacity {
            if rd(l.dead_letter(r) + dlq::WORD) & 0xf == dlq::FULL {
                s.dead_letters += 1;
            }
        }
        let table = Table::new(&e.mem, l);
        for p in 0..l.params.participant_capacity {
            let base = l.participant(p);
            let entry = table.entry(p);
            if entry.state == part::LIVE {
                s.participants += 1;
                let roles = rd(base + part::ROLES);
                s.producers += (roles & ROLE_PRODUCER != 0) as u64;
                s.consumers += (roles & ROLE_CONSUMER != 0) as u64;
            }
            for (c, v) in s.counters.iter_mut().enumerate() {
                *v = v.wrapping_add(rd(base + part::COUNTERS + c * 8));
            }
            for (h, snap) in s.histograms.iter_mut().enumerate() {
                let which = crate::metrics::HISTOGRAMS[h].0;
                snap.add_from(&e.mem, base, which);
            }
        }
        s
    }

    /// Checks every invariant of the file that can be checked while it is in
    /// use, and reports what is wrong.
    pub fn verify(&self) -> VerifyReport {
        let mut rep = VerifyReport::default();
        if self.engine.mem.broken() {
            rep.problems.push(TRUNCATED.to_string());
        }
        let e = &self.engine;
        let l = &e.layout;
        let table = Table::new(&e.mem, l);
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: self.stale_boot(),
        };
        let mut entries = Vec::new();
        for p in 0..l.params.participant_capacity {
            let en = table.entry(p);
            if en.state > part::CLEANING {
                rep.problems
                    .push(format!("participant {p}: invalid state {}", en.state));
            }
            let alive = en.state == part::LIVE && (Some(p) == self.me || live.alive(p, en.pid));
            if en.state == part::LIVE && !alive {
                rep.notes.push(format!(
                    "participant {p} (pid {}) is dead and not yet cleaned up (run recover)",
                    en.pid
                ));
            }
            entries.push(en);
        }
        let cap = l.params.capacity;
        let tail = e.mem.u64_at(hdr::TAIL).load(Ordering::Relaxed);
        let head = e.mem.u64_at(hdr::HEAD).load(Ordering::Relaxed);
        let tail_lap = (tail / cap) & ((1 << 28) - 1);
        for i in 0..cap {
            let w = e.slot_word(i);
            let base = l.slot(i);
            if w.state() >= state::COUNT {
                rep.problems
                    .push(format!("slot {i}: invalid state {}", w.state()));
                continue;
            }
            let lap_ok = (0..=2).any(|d| (tail_lap + d) & ((1 << 28) - 1) == w.lap());
            if !lap_ok {
                rep.problems.push(format!(
                    "slot {i}: at lap {}, but the tail cursor is at lap {tail_lap}",
                    w.lap()
                ));
            }
            let owned = matches!(
                w.state(),
                state::RESERVED
                    | state::PASSED
                    | state::CLAIMED
                    | state::DLQ_WAIT
                    | state::ABANDONED
            );
            if owned {
                if w.owner() >= l.params.participant_capacity {
                    rep.problems
                        .push(format!("slot {i}: owner {} out of range", w.owner()));
                } else if entries[w.owner() as usize].state == part::FREE
                    && !(w.state() == state::DLQ_WAIT && self.dlq_parked(i, w))
                {
                    // A message left waiting for room in the dead letters is
                    // sound whoever moved it there: any participant's repair
                    // takes the move over once there is room.
                    rep.problems.push(format!(
                        "slot {i}: {} by participant {}, which is not attached (run recover)",
                        state::name(w.state()),
                        w.owner()
                    ));
                }
            }
            if w.state() != state::FREE {
                let len = e.mem.u64_at(base + slot::LEN).load(Ordering::Relaxed) & 0xffff_ffff;
                if len > l.params.max_message_size
                    && !matches!(w.state(), state::RESERVED | state::PASSED)
                {
                    rep.problems
                        .push(format!("slot {i}: payload length {len} over the maximum"));
                }
            }
        }
        self.verify_keys(&mut rep);
        if head > tail.saturating_add(cap) {
            rep.problems
                .push(format!("head cursor {head} is past the tail cursor {tail}"));
        }
        for r in 0..l.params.dlq_capacity {
            let base = l.dead_letter(r);
            let w = e.mem.u64_at(base + dlq::WORD).load(Ordering::Relaxed);
            if w & 0xf > dlq::REDRIVING {
                rep.problems
                    .push(format!("dead letter {r}: invalid state {}", w & 0xf));
            }
            if w & 0xf == dlq::FULL {
                let len = e.mem.u64_at(base + dlq::LEN).load(Ordering::Relaxed);
                let rl = e.mem.u64_at(base + dlq::REASON_LEN).load(Ordering::Relaxed);
                if len > l.params.max_message_size || rl > dlq::REASON_MAX as u64 {
                    rep.problems.push(format!(
                        "dead letter {r}: length {len} or reason length {rl} out of range"
                    ));
                }
            }
        }
        rep
    }

    /// Whether `DLQ_WAIT` slot `i` (word `w`) is marked as waiting for room
    /// in the dead letters: its lease word is `seq << 42 | 1`, as
    /// `Engine::finish_dead_letter` marks it (ring.rs's private `tagged`
    /// and `DLQ_WAITING_MARK`; keep in step).
    fn dlq_parked(&self, i: u64, w: ring::SlotWord) -> bool {
        self.engine.dlq_waiting(i, w)
    }

    /// The key table's part of [`Queue::verify`].
    fn verify_keys(&self, rep: &mut VerifyReport) {
        let e = &self.engine;
        let l = &e.layout;
        let keys = e.keys();
        let cap = l.params.capacity;
        let mut pending: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for i in 0..cap {
            if e.slot_word(i).state() == state::PENDING {
                let k = e.mem.u64_at(l.slot(i) + slot::KEY).load(Ordering::Relaxed);
                if k != 0 {
                    *pending.entry(k).or_default() += 1;
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for n in 0..keys.capacity() {
            let f = |off: usize| keys.field(n, off).load(Ordering::Relaxed);
            let k = f(layout::key::KEY);
            if k == 0 {
                continue;
            }
            if !seen.insert(k) {
                rep.problems.push(format!(
                    "key entry {n}: key {k} appears twice in the key table"
                ));
            } else if keys.find(k) != Some(n) {
                rep.problems.push(format!(
                    "key entry {n}: key {k} cannot be found from its hash (a broken probe chain)"
                ));
            }
            for (what, off) in [
                ("holder", layout::key::HOLDER),
                ("waiting", layout::key::WAITING),
            ] {
                if let Some((s, _)) = crate::keys::unref(f(off)) {
                    if s >= cap {
                        rep.problems.push(format!("key entry {n} (key {k}): {what} names slot {s}, beyond the {cap} slots"));
                    }
                }
            }
            let (acked, next) = (f(layout::key::LAST_ACKED), f(layout::key::NEXT_VERSION));
            if acked > next {
                rep.problems.push(format!(
                    "key entry {n} (key {k}): last acked version {acked} is above the highest version given, {next}"
                ));
            }
            let parked = f(layout::key::PARKED);
            let actual = pending.get(&k).copied().unwrap_or(0);
            if parked != actual {
                rep.notes.push(format!(
                    "key {k}: parked count {parked}, but {actual} of its messages are pending (a hint left off by a crash; harmless)"
                ));
            }
        }
    }

    fn dlq_read(&self, r: u64) -> Option<DeadLetter> {
        let e = &self.engine;
        let l = &e.layout;
        let base = l.dead_letter(r);
        // Acquire: pairs with the release that published the record.
        let w = e.mem.u64_at(base + dlq::WORD).load(Ordering::Acquire);
        if w & 0xf != dlq::FULL {
            return None;
        }
        let rd = |f: usize| e.mem.u64_at(base + f).load(Ordering::Relaxed);
        let len = rd(dlq::LEN).min(l.params.max_message_size) as usize;
        let rl = rd(dlq::REASON_LEN).min(dlq::REASON_MAX as u64) as usize;
        let mut reason = vec![0u8; rl];
        e.mem.read_bytes(base + dlq::REASON, &mut reason);
        let mut payload = vec![0u8; len];
        e.mem.read_bytes(base + dlq::PAYLOAD, &mut payload);
        let d = DeadLetter {
            index: r,
            id: rd(dlq::ID),
            reason: String::from_utf8_lossy(&reason).into_owned(),
            attempts: rd(dlq::ATTEMPTS),
            first_enqueued_ns: rd(dlq::FIRST_ENQUEUED_NS),
            dead_ns: rd(dlq::DEAD_NS),
            last_consumer_pid: rd(dlq::LAST_CONSUMER),
            key: rd(dlq::KEY),
            version: rd(dlq::VERSION),
            payload,
        };
        // A record rewritten during the copy reads as gone.
        (e.mem.u64_at(base + dlq::WORD).load(Ordering::Acquire) == w).then_some(d)
    }

    /// Every dead letter, oldest id first.
    pub fn dlq_list(&self) -> Vec<DeadLetter> {
        let mut v: Vec<_> = (0..self.engine.layout.params.dlq_capacity)
            .filter_map(|r| self.dlq_read(r))
            .collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// The dead letter with this id.
    pub fn dlq_get(&self, id: u64) -> Result<DeadLetter> {
        self.dlq_list()
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| {
                Error::new(
                    Status::NotFound,
                    format!("{}: dlq: no dead letter with id {id}", self.path.display()),
                )
            })
    }

    fn dlq_take(&self, r: u64, w: u64, to: u64) -> bool {
        let me = self.me.unwrap_or(0);
        let new = (w >> 16) << 16 | me << 4 | to;
        self.engine
            .mem
            .u64_at(self.engine.layout.dead_letter(r) + dlq::WORD)
            .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn dlq_set(&self, r: u64, state: u64) {
        let word = self
            .engine
            .mem
            .u64_at(self.engine.layout.dead_letter(r) + dlq::WORD);
        let w = word.load(Ordering::Relaxed);
        // Release: a FULL or EMPTY record is complete for its readers.
        word.store((w >> 16) << 16 | state, Ordering::Release);
    }

    /// Sends the dead letter `id` (or every one, with `None`) back to the
    /// queue with its delivery count reset. Returns how many went back; stops
    /// early when the queue is full.
    pub fn dlq_redrive(&self, id: Option<u64>) -> Result<usize> {
        self.me("dlq redrive")?;
        let mut n = 0;
        for d in self.dlq_list() {
            if id.is_some_and(|id| id != d.id) {
                continue;
            }
            let base = self.engine.layout.dead_letter(d.index);
            let w = self
                .engine
                .mem
                .u64_at(base + dlq::WORD)
                .load(Ordering::Acquire);
            if w & 0xf != dlq::FULL || !self.dlq_take(d.index, w, dlq::REDRIVING) {
                continue;
            }
            let opts = SendOptions::new().key(d.key).version(d.version);
            match self.send_with(&d.payload, &opts) {
                Ok(_) => {
                    self.dlq_set(d.index, dlq::EMPTY);
                    n += 1;
                }
                Err(e) => {
                    self.dlq_set(d.index, dlq::FULL);
                    if e.status() == Status::Full {
                        break;
                    }
                    // Redriving them all: a letter older than its key's last
                    // acked version stays a dead letter (it would be refused
                    // for ever), and the others go on.
                    if id.is_none() && e.status() == Status::Stale {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        if id.is_some() && n == 0 {
            self.dlq_get(id.unwrap_or(0))?;
        }
        Ok(n)
    }

    /// Deletes the dead letter `id` (or every one). Returns how many.
    pub fn dlq_purge(&self, id: Option<u64>) -> Result<usize> {
        self.writable("dlq purge")?;
        let mut n = 0;
        for d in self.dlq_list() {
            if id.is_some_and(|id| id != d.id) {
                continue;
            }
            let base = self.engine.layout.dead_letter(d.index);
            let w = self
                .engine
                .mem
                .u64_at(base + dlq::WORD)
                .load(Ordering::Acquire);
            if w & 0xf == dlq::FULL && self.dlq_take(d.index, w, dlq::EMPTY) {
                n += 1;
            }
        }
        if n > 0 {
            // Messages waiting for room can move now.
            let now = self.now();
            if let Some(me) = self.me {
                let r = self.engine.repair(me, now, &|_| false)?;
                self.account_repairs(&r);
            }
        } else if let Some(id) = id {
            self.dlq_get(id)?;
        }
        Ok(n)
    }

    /// Flushes the mapping to the file (for queues on a persistent file
    /// system; `/dev/shm` needs no flush and does not survive a reboot).
    pub fn flush(&self) -> Result<()> {
        self.intact("flush")?;
        self.engine
            .mem
            .flush()
            .map_err(|e| Error::io(format!("{}: flush", self.path.display()), e))
    }

    /// The engine, for tests and tools in this crate.
    #[doc(hidden)]
    pub fn engine(&self) -> &Engine<Mapping> {
        &self.engine
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("participant", &self.me)
            .field("capacity", &self.engine.layout.params.capacity)
            .finish()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // A copy inherited through fork() is the parent's participant: the
        // parent still holds our entry, our claims, our reservations and
        // (through the shared open file description) our lock. Touch
        // nothing. The real pid here, not the cached one: this is rare.
        if std::process::id() != self.pid {
            return;
        }
        if let (Some(me), true) = (self.me, self.engine.mem.broken()) {
            // The mapping is partly zero pages: repairs would act on what
            // they read there. Only give up the lock; survivors see us dead.
            let _ = sys::ofd_unlock(self.file.as_fd(), LOCK_BASE + me);
            return;
        }
        if let Some(me) = self.me {
            let now = self.now();
            // What we still hold goes back now rather than after a lease.
            if let Ok(r) = self.engine.repair(me, now, &|_| false) {
                self.account_repairs(&r);
            }
            let mut r = Repairs::default();
            for i in 0..self.engine.layout.params.capacity {
                let w = self.engine.slot_word(i);
                if w.owner() == me
                    && matches!(
                        w.state(),
                        state::CLAIMED | state::RESERVED | state::PASSED | state::ABANDONED
                    )
                {
                    let _ = self.engine.repair_slot(me, i, now, &|o| o == me, &mut r);
                }
            }
            if r.redelivered + r.replacements > 0 {
                self.engine
                    .mem
                    .u64_at(hdr::SIDE_DIRTY)
                    .fetch_add(1, Ordering::SeqCst);
                self.notify(Point::NotEmpty);
            }
            // Our own claims given back do not count as reclaimed (no lease
            // expired, no consumer died); a last delivery moved to the dead
            // letters counts as dead-lettered (one left waiting for room is
            // counted by the repair that moves it).
            self.count(Counter::DeadLettered, r.dead_lettered);
            if r.abandoned + r.dead_lettered > 0 {
                self.notify(Point::NotFull);
            }
            if let Some(mine) = self.registration {
                Table::new(&self.engine.mem, &self.engine.layout).release(me, mine);
            }
            let _ = sys::ofd_unlock(self.file.as_fd(), LOCK_BASE + me);
        }
    }
}

fn clear_sleeper_counts(engine: &Engine<Mapping>, dead: u64) {
    let sleeping = engine
        .mem
        .u64_at(engine.layout.participant(dead) + part::SLEEPING);
    let bits = sleeping.swap(0, Ordering::Relaxed);
    if bits & 1 != 0 {
        WaitPoint::new(
            engine.mem.u32_at(hdr::NOT_EMPTY_FUTEX),
            engine.mem.u64_at(hdr::NOT_EMPTY_SLEEPERS),
        )
        .done();
    }
    if bits & 2 != 0 {
        WaitPoint::new(
            engine.mem.u32_at(hdr::NOT_FULL_FUTEX),
            engine.mem.u64_at(hdr::NOT_FULL_SLEEPERS),
        )
        .done();
    }
}

fn opts_config(o: &Options) -> Config {
    Config {
        lease_ns: o.lease.as_nanos().min(u64::MAX as u128) as u64,
        max_deliveries: o.max_deliveries,
        reservation_timeout_ns: o.reservation_timeout.as_nanos().min(u64::MAX as u128) as u64,
    }
}

/// A thread sweeping a queue for dead participants, started by
/// [`Queue::start_watchdog`]. Dropping it stops and joins the thread.
pub struct Watchdog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The process that started it.
    pid: u32,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").field("pid", &self.pid).finish()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if std::process::id() != self.pid {
            // A forked child has no copy of the thread: nothing to stop or
            // join (and its handle, inherited, is the parent's).
            std::mem::forget(thread);
            return;
        }
        // Release: see the thread's loop.
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        thread.thread().unpark();
        let _ = thread.join();
    }
}

/// A reserved slot being written in place.
pub struct Reserved<'q> {
    q: &'q Queue,
    r: Reservation,
    len: usize,
    done: bool,
}

impl<'q> Reserved<'q> {
    /// The reserved capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Copies `data` (at most the reserved length) into the slot.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.len() > self.len {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "{}: write: {} bytes into a {}-byte reservation",
                    self.q.path.display(),
                    data.len(),
                    self.len
                ),
            ));
        }
        self.q.engine.write_payload(&self.r, data);
        self.len = data.len();
        Ok(())
    }

    /// A pointer to the slot's payload, `capacity()` bytes long, valid until
    /// commit or abort. Writing through it is the zero-copy path.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.q
            .engine
            .mem
            .byte_ptr(self.q.engine.payload_offset(self.r.slot), self.len)
            .unwrap_or(std::ptr::null_mut())
    }

    /// Sets the payload length (after writing through the pointer).
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        self.q.check_len(len, "commit")?;
        self.len = len;
        Ok(())
    }

    /// The ring position.
    pub fn position(&self) -> u64 {
        self.r.position
    }

    /// Commits without key.
    pub fn commit(self) -> Result<Sent> {
        self.commit_with(&SendOptions::new())
    }

    /// Commits with key, version and delay (the timeout is ignored).
    pub fn commit_with(mut self, opts: &SendOptions) -> Result<Sent> {
        let mut opts = *opts;
        if opts.key != 0 {
            // On error, dropping `self` aborts the reservation.
            opts.version = self.q.resolve_version(opts.key, opts.version, "commit")?;
        }
        self.done = true;
        if opts.key != 0 && self.q.latest_only && opts.delay.is_zero() {
            // Latest-only: a waiting older message of the key is replaced in
            // place, as by `send_with`: the payload moves from this
            // reservation into the waiting message's slot, and this
            // reservation is given back.
            let r = self.replace_waiting(&opts);
            if let Some(r) = r.transpose() {
                return self.q.checked("commit", r);
            }
        }
        let r = self
            .q
            .commit_inner(&self.r, self.len, &opts, "commit", None);
        self.q.checked("commit", r)
    }

    /// Latest-only: moves this reservation's payload into the key's waiting
    /// message, if there is one to replace (`Ok(None)`: there is not, or
    /// the replacement was undone; commit this reservation instead). The
    /// payload goes through the replacement record like a `send_with`'s.
    fn replace_waiting(&self, opts: &SendOptions) -> Result<Option<Sent>> {
        let q = self.q;
        let me = q.me("commit")?;
        // A reservation abandoned meanwhile (it stalled past the
        // reservation timeout) sends nothing: `commit_inner` answers
        // `Abandoned` (G5). Found by the model_ops fuzz target.
        let mine = q.engine.slot_word(self.r.slot);
        let held = matches!(mine.state(), state::RESERVED | state::PASSED)
            && mine.owner() == me
            && mine.seq() == self.r.seq;
        if !held {
            return Ok(None);
        }
        let mut data = vec![0u8; self.len];
        q.engine
            .mem
            .read_bytes(q.engine.payload_offset(self.r.slot), &mut data);
        let sent = q.replace_waiting(&data, opts, "commit").inspect_err(|_| {
            // Stale (or a damaged key table): nothing is sent; give the
            // reservation back.
            let _ = q.engine.abort(me, &self.r);
            q.notify(Point::NotFull);
        })?;
        if sent.is_some() {
            let _ = q.engine.abort(me, &self.r);
            q.notify(Point::NotFull);
        }
        Ok(sent)
    }

    /// Gives the slot back without sending.
    pub fn abort(mut self) -> Result<()> {
        self.done = true;
        let me = self.q.me("abort")?;
        self.q
            .engine
            .abort(me, &self.r)
            .map_err(|e| self.q.err("abort", e))?;
        self.q.count(Counter::Aborted, 1);
        self.q.notify(Point::NotFull);
        Ok(())
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        // In a forked child the reservation is the parent's: leave it.
        if !self.done && std::process::id() == self.q.pid {
            if let Some(me) = self.q.me {
                let _ = self.q.engine.abort(me, &self.r);
                self.q.notify(Point::NotFull);
            }
        }
    }
}

/// A claimed message. Give its outcome with [`Message::ack`],
/// [`Message::nack`], [`Message::reject`] or keep it with
/// [`Message::extend`]; dropping it without an outcome leaves it claimed
/// until its lease expires (or this handle closes), then it is redelivered.
pub struct Message<'q> {
    q: &'q Queue,
    claim: Claim,
    claimed_ns: u64,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("position", &self.claim.position)
            .field("len", &self.claim.len)
            .field("key", &self.claim.key)
            .field("version", &self.claim.version)
            .field("deliveries", &self.claim.deliveries)
            .finish()
    }
}

impl<'q> Message<'q> {
    /// A private copy of the payload, checked for tearing (`LeaseLost` if the
    /// claim was lost while copying).
    pub fn data(&self) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.claim.len];
        let n = self.q.read_payload(self.claim.token(), &mut v)?;
        v.truncate(n);
        Ok(v)
    }

    /// Copies the payload into `buf`, checked for tearing; returns its length.
    pub fn read_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.q.read_payload(self.claim.token(), buf)
    }

    /// The payload in place, without a copy.
    ///
    /// # Safety
    /// The bytes live in the shared mapping. They stay unchanged only while
    /// the claim is held: the caller must finish with the slice before the
    /// lease can expire, and must accept that a misbehaving process with
    /// write access to the file could change them.
    pub unsafe fn payload_unchecked(&self) -> &[u8] {
        let off = self.q.engine.payload_offset(self.claim.slot);
        match self.q.engine.mem.byte_ptr(off, self.claim.len) {
            // SAFETY: in bounds of the mapping (checked by byte_ptr); the
            // caller upholds that nobody writes the bytes meanwhile.
            Some(p) => unsafe { std::slice::from_raw_parts(p, self.claim.len) },
            None => &[],
        }
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.claim.len
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.claim.len == 0
    }
    /// Key (0 = none).
    pub fn key(&self) -> u64 {
        self.claim.key
    }
    /// Version.
    pub fn version(&self) -> u64 {
        self.claim.version
    }
    /// 1 on the first delivery, counting up with each redelivery.
    pub fn deliveries(&self) -> u32 {
        self.claim.deliveries
    }
    /// Monotonic time (CLOCK_MONOTONIC, ns) of the first commit.
    pub fn enqueued_ns(&self) -> u64 {
        self.claim.enqueued_ns
    }
    /// Monotonic time of this claim.
    pub fn claimed_ns(&self) -> u64 {
        self.claimed_ns
    }
    /// Ring position of the message.
    pub fn position(&self) -> u64 {
        self.claim.position
    }
    /// The fencing token of this claim.
    pub fn token(&self) -> u64 {
        self.claim.token()
    }

    fn settle(&self, o: &Outcome<'_>) -> Result<Settled> {
        // Only a sampled message is timed (see `Queue::sample`).
        let sampled = self.claim.sampled;
        self.q.settle(
            self.claim.token(),
            o,
            sampled.then_some(self.claimed_ns),
            sampled.then_some(self.claim.enqueued_ns),
        )
    }

    /// Done: the message is deleted.
    pub fn ack(self) -> Result<()> {
        self.settle(&Outcome::Ack).map(|_| ())
    }

    /// Try again after `delay` (counts as a failed delivery; dead-lettered
    /// when it was the last allowed one).
    pub fn nack(self, delay: Duration) -> Result<()> {
        let not_before_ns = if delay.is_zero() {
            0
        } else {
            self.q
                .now()
                .saturating_add(delay.as_nanos().min(u64::MAX as u128) as u64)
        };
        self.settle(&Outcome::Nack { not_before_ns }).map(|_| ())
    }

    /// Give up: the message goes to the dead letters with `reason`.
    pub fn reject(self, reason: &str) -> Result<()> {
        self.settle(&Outcome::Reject { reason }).map(|_| ())
    }

    /// Still working: the lease now ends `lease` from now.
    pub fn extend(&self, lease: Duration) -> Result<()> {
        let deadline_ns = self
            .q
            .now()
            .saturating_add(lease.as_nanos().min(u64::MAX as u128) as u64);
        self.settle(&Outcome::Extend { deadline_ns }).map(|_| ())
    }
}
