//! Creating, opening and inspecting a queue file; attaching to it as a
//! participant (taking an entry in the participant table and cleaning up
//! after its dead previous owner) and detaching at drop.

use std::cell::Cell;
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::TRUNCATED;
use super::maintenance::OfdLiveness;
use super::wait::{clear_sleeper_counts, Point};
use super::{Mapping, Queue, ReadOnlyMapping, Store};
use crate::clock::Clock;
use crate::error::{Error, Result, Status};
use crate::layout::{self, Layout, Params};
use crate::memory::Loads;
use crate::metrics::Counter;
use crate::options::{Access, Expiry, OpenOptions, Options};
use crate::participants::{hooks, LOCK_BASE};
use crate::permissions;
use crate::ring::{header, Config, Engine, Repairs, SlotState};
use crate::space;
use crate::sync::Ordering;
use crate::sys;

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
        let flags = header::flags_of(opts.latest_only, opts.on_expiry == Expiry::Drop);
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
        let size = layout.file_size as u64;
        if !opts.sparse {
            // Every block of the file now, while it cannot yet be taken for
            // a queue (the magic is stored last, by `publish`): a file
            // system that cannot hold the queue refuses here with the bytes
            // needed and free, instead of a SIGBUS at some later send. A
            // file system that cannot allocate ahead leaves the file sparse.
            space::reserve(&file, path, size).map_err(cleanup)?;
        }
        // Sparse: the size only (a no-op after a reservation).
        file.set_len(size).map_err(|e| {
            cleanup(Error::io(
                ctx(&format!("create: sizing to {size} bytes")),
                e,
            ))
        })?;
        let map = Mapping::new(&file, layout.file_size, path).map_err(cleanup)?;
        header::write_header(
            &map,
            &layout,
            opts,
            flags,
            sys::unix_ns(),
            sys::random_file_id(),
            sys::boot_id(),
        );
        let engine = Engine::new(map, layout, opts_config(opts));
        engine.format();
        if engine.broken() {
            // A sparse file on a file system already full: the header's
            // pages could not be allocated (they read as zeros now). Not
            // published, so nobody takes it for a queue.
            let cause =
                space::full_file_system(&file, size).unwrap_or_else(|| TRUNCATED.to_string());
            return Err(cleanup(Error::new(
                Status::Io,
                ctx(&format!("create: no space: {cause}")),
            )));
        }
        engine.publish();
        Self::attach(Store::Write(engine), file, path.to_path_buf(), true).map_err(cleanup)
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
        let (store, file, path) = Self::open_engine(path.as_ref(), opts)?;
        let register = opts.access == Access::Participant;
        let mut q = Self::attach(store, file, path, register)?;
        q.open_opts = *opts;
        Ok(q)
    }

    /// Opens the file and maps it: read-write when this process may write
    /// it (and `opts` asks to), else as a mapping that only loads.
    fn open_engine(path: &Path, opts: &OpenOptions) -> Result<(Store, File, PathBuf)> {
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
        let len = len as usize;
        let store = if writable {
            let map = Mapping::new(&file, len, path)?;
            Store::Write(engine_over(map, Mapping::broken, len, &ctx)?)
        } else {
            let map = ReadOnlyMapping::new(&file, len, path)?;
            Store::Read(engine_over(map, ReadOnlyMapping::broken, len, &ctx)?)
        };
        Ok((store, file, path.to_path_buf()))
    }

    fn attach(store: Store, file: File, path: PathBuf, register: bool) -> Result<Queue> {
        let (latest_only, wait) = match &store {
            Store::Write(e) => e.stored_modes(),
            Store::Read(e) => e.stored_modes(),
        };
        let empty_msg = format!("{}: claim: nothing to claim", path.display()).into();
        let full_msg = format!("{}: send: the queue is full", path.display()).into();
        let mut q = Queue {
            store,
            file,
            path,
            me: None,
            registration: None,
            open_opts: OpenOptions::new(),
            pid: sys::watch_forks(),
            latest_only,
            wait,
            clock: Clock::new(),
            metrics: Cell::new(true),
            next_check: Cell::new(0),
            quiet_hint: Cell::new(0),
            roles: Cell::new(0),
            sample_count: Cell::new(0),
            empty_msg,
            full_msg,
            last_sample: Cell::new(0),
            attach_repairs: Cell::new(Repairs::default()),
            #[cfg(feature = "async")]
            async_sleepers: Default::default(),
            _not_sync: PhantomData,
        };
        if register {
            q.register()?;
        }
        Ok(q)
    }

    /// Whether the file's participants belong to a previous boot (its boot
    /// id is not this boot's).
    pub(super) fn stale_boot(&self) -> bool {
        // Informative; `elect_boot` decides with a CAS.
        super::read_engine!(self, |e| e.stored_boot_id()) != sys::boot_id()
    }

    /// Decides, before we take an entry, whether the participants in the
    /// table belong to a previous boot, and publishes the new boot id at
    /// once. Exactly one attacher wins the compare-and-swap on the boot id's
    /// first word; it gets the table's words as they were before the new
    /// boot id was published, that is, the old boot's entries only: every
    /// attacher takes its entry after it saw the new boot id (it returns
    /// from here only then), so no entry taken under the new boot is in
    /// the winner's snapshot.
    fn elect_boot(engine: &Engine<Mapping>) -> Option<Vec<(u64, u64)>> {
        let boot = sys::boot_id();
        let (lo, hi) = engine.boot_id_words();
        let table = engine.participants();
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
        // The field itself, not `writer`'s borrow of the whole handle: the
        // entry taken below is stored in the handle.
        let Store::Write(engine) = &self.store else {
            return Err(self.read_only_err("open"));
        };
        self.intact("open")?;
        let old_boot = Self::elect_boot(engine);
        let now = sys::monotonic_ns();
        let start_time = sys::process_start_time(self.pid).unwrap_or(0);
        let table = engine.participants();
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
                    repairs.add(&self.clean_up(engine, i, now, &dead)?);
                }
                // Then the dead of this boot, and any cleanup a previous
                // holder of our entry left unfinished (it names our index
                // as its cleaner: nobody else would take it over).
                let dead = table.claim_dead(i, &live);
                if !dead.is_empty() {
                    repairs.add(&self.clean_up(engine, i, now, &dead)?);
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

    /// Detaches: redelivers nothing by itself, but frees the participant
    /// entry, so survivors treat what it still holds as a dead participant's.
    pub fn close(self) -> Result<()> {
        drop(self);
        Ok(())
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
        // A participant's handle is read-write: a read-only one holds no
        // entry.
        let (Some(me), Store::Write(engine)) = (self.me, &self.store) else {
            return;
        };
        if engine.broken() {
            // The mapping is partly zero pages: repairs would act on what
            // they read there. Only give up the lock; survivors see us dead.
            let _ = sys::ofd_unlock(self.file.as_fd(), LOCK_BASE + me);
            return;
        }
        let now = self.now();
        // What we still hold goes back now rather than after a lease.
        if let Ok(r) = engine.repair(me, now, &|_| false) {
            self.account_repairs(&r);
        }
        let mut r = Repairs::default();
        for i in 0..engine.layout.params.capacity {
            let w = engine.slot_word(i);
            if w.owner() == me
                && matches!(
                    w.state(),
                    SlotState::Claimed
                        | SlotState::Reserved
                        | SlotState::Passed
                        | SlotState::Abandoned
                )
            {
                let _ = engine.repair_slot(me, i, now, &|o| o == me, &mut r);
            }
        }
        if r.redelivered + r.replacements > 0 {
            // Claims given back: the consumers look beyond the head.
            engine.mark_side_dirty();
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
            engine.participants().release(me, mine);
        }
        let _ = sys::ofd_unlock(self.file.as_fd(), LOCK_BASE + me);
    }
}

fn opts_config(o: &Options) -> Config {
    Config {
        lease_ns: o.lease.as_nanos().min(u64::MAX as u128) as u64,
        max_deliveries: o.max_deliveries,
        reservation_timeout_ns: o.reservation_timeout.as_nanos().min(u64::MAX as u128) as u64,
        message_ttl_ns: o.message_ttl.as_nanos().min(u64::MAX as u128) as u64,
        expiry_drop: o.on_expiry == Expiry::Drop,
    }
}

/// An engine over `map`, a mapping of `len` bytes of a queue file (`broken`
/// tells whether it shrank since), once its creator published it: waits
/// briefly for a creator in progress, then reads and checks the layout and
/// the settings. `ctx` names the file in errors.
fn engine_over<M: Loads>(
    map: M,
    broken: fn(&M) -> bool,
    len: usize,
    ctx: &dyn Fn(&str) -> String,
) -> Result<Engine<M>> {
    // A creator stores the magic last: wait briefly for one in progress.
    let mut tries = 0;
    while !header::magic_published(&map) && tries < 200 && !broken(&map) {
        std::thread::sleep(Duration::from_millis(5));
        tries += 1;
    }
    // Acquire on the magic above orders these relaxed reads.
    let layout = Layout::from_header(len, |off| header::header_word(&map, off));
    if broken(&map) {
        // Shrunk between the fstat above and reading the header.
        return Err(Error::new(Status::Corrupt, ctx(TRUNCATED)));
    }
    let layout = layout.map_err(|e| Error::new(e.status(), ctx(e.message())))?;
    let config = header::stored_config(&map);
    Ok(Engine::new(map, layout, config))
}
