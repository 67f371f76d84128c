//! Administration: recover now, a watchdog thread, key eviction, flushing
//! the mapping, and the list of participants.

use std::fs::File;
use std::time::Duration;

use super::maintenance::{OfdLiveness, LIVENESS_PERIOD_NS};
use super::wait::Point;
use super::{read_engine, Queue, Store, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::error::{Error, Result, Status};
use crate::memory::Loads;
use crate::options::Access;
use crate::participants::Liveness;
use crate::ring::{Engine, Repairs, SlotState};
use crate::sync::Ordering;

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

impl Queue {
    /// The attached participants: index, pid, whether it is alive, and the
    /// roles it has had (bit 0 produced, bit 1 consumed).
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        read_engine!(self, |e| self.participants_in(e))
    }

    fn participants_in<M: Loads>(&self, engine: &Engine<M>) -> Vec<ParticipantInfo> {
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: self.stale_boot(),
        };
        (0..engine.layout.params.participant_capacity)
            .filter_map(|i| {
                let p = engine.participant_snapshot(i);
                let e = p.entry;
                if e.is_free() {
                    return None;
                }
                Some(ParticipantInfo {
                    index: i,
                    pid: e.pid,
                    alive: e.is_live() && (Some(i) == self.me || live.alive(i, e.pid)),
                    cleaning: e.is_cleaning(),
                    producer: p.roles & ROLE_PRODUCER != 0,
                    consumer: p.roles & ROLE_CONSUMER != 0,
                    attached_ns: p.attached_ns,
                })
            })
            .collect()
    }

    /// Cleans up after dead participants and repairs expired leases and
    /// stalled reservations now (what `shmq recover` runs). An inspection
    /// handle attaches for the time of the call, since repairs act as a
    /// participant.
    pub fn recover(&self) -> Result<Repairs> {
        let engine = self.writer("recover")?;
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
        let dead = engine.participants().claim_dead(me, &live);
        let r = self
            .clean_up(engine, me, now, &dead)
            .map_err(|e| self.err("recover", e))?;
        self.account_repairs(&r);
        Ok(r)
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
        self.writer("start_watchdog")?;
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
        let Ok((me, engine)) = self.me("watchdog") else {
            return;
        };
        let now = self.now();
        let _ = self.sweep_dead(engine, me, now);
        // The table was just swept: others need not for a period. Relaxed:
        // a due time (see `maintain`).
        engine.liveness_due_word().fetch_max(
            self.precise().saturating_add(LIVENESS_PERIOD_NS),
            Ordering::Relaxed,
        );
        let _ = self.maintain();
    }

    /// Evicts the key-table entries of keys that no message refers to,
    /// forgetting their versions. Refused while other participants are
    /// attached (the table is rebuilt in place). Returns how many.
    pub fn evict_keys(&self) -> Result<u64> {
        let e = self.writer("evict_keys")?;
        let table = e.participants();
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
            if e.slot_word(i).state() != SlotState::Free {
                used.insert(e.slot_snapshot(i).key);
            }
        }
        Ok(e.keys().evict_settled(&|k| used.contains(&k)))
    }

    /// Removes every waiting message: ready, pending redelivery and delayed
    /// ones. Messages in flight stay with their consumers (their outcome
    /// still counts: an ack of one succeeds). Returns how many were removed,
    /// also counted in the `purged` counter, and wakes producers waiting for
    /// room. A keyed message's key is released as by an ack, but its last
    /// acked version is not raised (the message was never processed).
    /// Messages committed while the purge runs may stay.
    pub fn purge(&self) -> Result<u64> {
        self.checked("purge", self.purge_unchecked())
    }

    fn purge_unchecked(&self) -> Result<u64> {
        let (me, engine) = self.me("purge")?;
        let now = self.now();
        let n = engine.purge(me, now).map_err(|e| self.err("purge", e))?;
        if n > 0 {
            self.notify(Point::NotFull);
        }
        self.tick(now);
        Ok(n)
    }

    /// Flushes the mapping to the file (for queues on a persistent file
    /// system; `/dev/shm` needs no flush and does not survive a reboot).
    pub fn flush(&self) -> Result<()> {
        self.intact("flush")?;
        // A read-only mapping has nothing to write back.
        let Store::Write(engine) = &self.store else {
            return Ok(());
        };
        engine
            .flush()
            .map_err(|e| Error::io(format!("{}: flush", self.path.display()), e))
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
