//! Maintenance run from every operation when due: the liveness sweep (dead
//! participants found through the lock the kernel drops at their death,
//! their leftovers repaired, their entries freed) and the slot scan for
//! expired leases and stalled reservations.

use std::fs::File;
use std::os::fd::AsFd;

use super::wait::{clear_sleeper_counts, Point};
use super::{Mapping, Queue, Store};
use crate::error::Result;
use crate::metrics::Counter;
use crate::participants::{Liveness, LOCK_BASE};
use crate::ring::{Engine, Repairs};
use crate::sync::Ordering;
use crate::sys;

/// How often (at most) a participant sweeps the table for dead participants.
pub(super) const LIVENESS_PERIOD_NS: u64 = 2_000_000;

/// Whether a participant is alive, by its lock byte in the file (an open
/// file description lock, which the kernel drops when its process dies)
/// and its pid; everyone counts as dead when the table is from a previous
/// boot.
pub(super) struct OfdLiveness<'a> {
    pub(super) file: &'a File,
    pub(super) stale_boot: bool,
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
    /// Runs whatever maintenance is due: the liveness sweep every couple of
    /// milliseconds, the slot scan for expired leases and stalled
    /// reservations at a fraction of the lease. Cheap when nothing is due.
    ///
    /// Two clocks, each for one job: the liveness sweep is due by the
    /// precise clock (the coarse one moves in steps of the kernel's tick,
    /// 4 ms here, which alone would more than double the time to notice a
    /// death), and repairs compare leases and deadlines by the coarse clock,
    /// on which they were stamped.
    pub(super) fn maintain(&self) -> Result<bool> {
        // Only a participant maintains, and its handle is read-write.
        let (Some(me), Store::Write(engine)) = (self.me, &self.store) else {
            return Ok(false);
        };
        let mut repaired = false;
        let now = self.now();
        let live_next = engine.liveness_due_word();
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
            repaired |= self.sweep_dead(engine, me, now)? > 0;
        }
        let maint_next = engine.repairs_due_word();
        let due = maint_next.load(Ordering::Relaxed);
        if now >= due {
            let cfg = &engine.config;
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
                let r = engine.repair(me, now, &|_| false)?;
                repaired |= self.account_repairs(&r);
            }
        }
        Ok(repaired)
    }

    pub(super) fn account_repairs(&self, r: &Repairs) -> bool {
        self.count(Counter::Abandoned, r.abandoned);
        self.count(Counter::Reclaimed, r.reclaimed);
        self.count(Counter::DeadLettered, r.dead_lettered);
        // A replacement finished or undone for its producer made a message
        // claimable again.
        if r.redelivered + r.replacements > 0 {
            self.notify(Point::NotEmpty);
        }
        if r.abandoned + r.dead_lettered + r.expired > 0 {
            self.notify(Point::NotFull);
        }
        r.abandoned + r.redelivered + r.dead_lettered + r.replacements + r.expired > 0
    }

    /// Finds dead participants, repairs what they left, frees their entries.
    pub(super) fn sweep_dead(&self, engine: &Engine<Mapping>, me: u64, now: u64) -> Result<usize> {
        let table = engine.participants();
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: false,
        };
        let dead = table.claim_dead(me, &live);
        if dead.is_empty() {
            return Ok(0);
        }
        let r = self.clean_up(engine, me, now, &dead)?;
        self.account_repairs(&r);
        Ok(dead.len())
    }

    /// Repairs every slot (expired leases, stalled reservations) and what
    /// the participants in `dead` left; then frees their entries, which
    /// `me` marked as being cleaned by it. Entries of a repair that fails
    /// stay marked, and the next sweep of `me` takes them up again.
    pub(super) fn clean_up(
        &self,
        engine: &Engine<Mapping>,
        me: u64,
        now: u64,
        dead: &[u64],
    ) -> Result<Repairs> {
        let table = engine.participants();
        // Dead-letter records first: a record the dead left half written is
        // freed, so that a move they left half done finds room below.
        engine.repair_dlq(&|o| dead.contains(&o));
        let r = engine.repair(me, now, &|o| dead.contains(&o))?;
        for &d in dead {
            clear_sleeper_counts(engine, d);
            table.finish_cleaning(d, me);
        }
        self.count(Counter::DeadParticipants, dead.len() as u64);
        Ok(r)
    }

    /// Runs whatever maintenance is due, from every operation whatever its
    /// rate: a consumer busy for hundreds of milliseconds per message
    /// still sweeps for the dead at its next call when the last sweep (by
    /// anyone) is over [`LIVENESS_PERIOD_NS`] old. `now` is the time the
    /// operation already read (coarse, up to a kernel tick behind: a sweep
    /// can come that much late); until the due time remembered from the
    /// header this is one compare.
    #[inline]
    pub(super) fn tick(&self, now: u64) {
        if now >= self.next_check.get() {
            self.tick_due(now);
        }
    }

    #[cold]
    #[inline(never)]
    fn tick_due(&self, now: u64) {
        let Store::Write(engine) = &self.store else {
            return;
        };
        let live = engine.liveness_due_word();
        let maint = engine.repairs_due_word();
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
}
