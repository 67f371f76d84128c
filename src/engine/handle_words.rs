//! The words a handle keeps beside the protocol, by name: the futex words
//! and sleeper counts of the two wait points, a participant's sleeping and
//! role bits, the header's maintenance schedule and boot id, and the
//! metrics of a participant entry. The handle waits, schedules and reports
//! with these; it never computes an offset into the file.

use super::*;
use crate::format::part;
use crate::metrics::{Histogram, HistogramSnapshot};
use crate::wait::WaitPoint;

/// Which way a caller waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// Consumers, for a message.
    NotEmpty,
    /// Producers, for room.
    NotFull,
}

/// What a consumer about to sleep may sleep through, by
/// [`Engine::quiet_until`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Slot `.0` holds a claim, a reservation, a message waiting or being
    /// dead-lettered, or a word that is none of the states: a death could
    /// orphan it, or it needs a hand soon. The next scan starts there (a
    /// claim held long is then found at the first load).
    Busy(u64),
    /// Every taken slot holds a delayed message: nothing can be orphaned,
    /// and nothing becomes claimable by time before the earliest due time
    /// (coarse clock, ns; `u64::MAX` when no slot is taken).
    Until(u64),
}

impl WaitOn {
    /// The bit a sleeper sets in its participant's sleeping word while it
    /// counts as a sleeper here, so that a cleaner can take it off after
    /// its death.
    pub fn sleeping_bit(self) -> u64 {
        match self {
            WaitOn::NotEmpty => 1,
            WaitOn::NotFull => 2,
        }
    }
}

impl<M: Loads> Engine<M> {
    /// The modes stored in the header (see [`header::stored_modes`]).
    pub fn stored_modes(&self) -> (bool, crate::options::WaitStrategy) {
        header::stored_modes(&self.mem)
    }

    /// The boot id the participant table belongs to, as stored.
    pub fn stored_boot_id(&self) -> [u64; 2] {
        // Relaxed: informative; attachers decide with a CAS on the first
        // word.
        [
            self.load_word(hdr::BOOT_ID, Ordering::Relaxed),
            self.load_word(hdr::BOOT_ID + 8, Ordering::Relaxed),
        ]
    }

    /// How many sleep at wait point `on` now (racy: for stats).
    pub fn sleepers(&self, on: WaitOn) -> u64 {
        let s = match on {
            WaitOn::NotEmpty => hdr::NOT_EMPTY_SLEEPERS,
            WaitOn::NotFull => hdr::NOT_FULL_SLEEPERS,
        };
        // Relaxed: a report, as `WaitPoint::sleepers`.
        self.load_word(s, Ordering::Relaxed)
    }

    /// Adds participant `p`'s counters (indexed by
    /// [`Counter`](crate::metrics::Counter)) and histograms (indexed by
    /// [`Histogram`]) to the sums given.
    pub fn add_participant_metrics(
        &self,
        p: u64,
        counters: &mut [u64],
        histograms: &mut [HistogramSnapshot],
    ) {
        let base = self.layout.participant(p);
        for (c, v) in counters.iter_mut().enumerate().take(part::COUNTER_COUNT) {
            // Relaxed: counters are informative sums.
            let n = self
                .mem
                .load_u64(base + part::COUNTERS + c * 8, Ordering::Relaxed);
            *v = v.wrapping_add(n);
        }
        for (h, snap) in histograms.iter_mut().enumerate() {
            let which: Histogram = crate::metrics::HISTOGRAMS[h].0;
            snap.add_from(&self.mem, base, which);
        }
    }
}

impl<M: Memory> Engine<M> {
    /// The metrics recorder of participant `p`'s entry.
    #[inline(always)]
    pub fn recorder(&self, p: u64) -> crate::metrics::Recorder<'_, M> {
        crate::metrics::Recorder::new(&self.mem, self.layout.participant(p))
    }

    /// Publishes a newly formatted file (see [`header::publish_magic`]).
    pub fn publish(&self) {
        header::publish_magic(&self.mem);
    }

    /// The participant table (registration, liveness, cleanup).
    pub fn participants(&self) -> crate::participants::Table<'_, M> {
        crate::participants::Table::new(&self.mem, &self.layout)
    }

    /// The futex word and sleeper count of wait point `on`.
    pub fn wait_point(&self, on: WaitOn) -> WaitPoint<'_> {
        let (f, s) = match on {
            WaitOn::NotEmpty => (hdr::NOT_EMPTY_FUTEX, hdr::NOT_EMPTY_SLEEPERS),
            WaitOn::NotFull => (hdr::NOT_FULL_FUTEX, hdr::NOT_FULL_SLEEPERS),
        };
        WaitPoint::new(self.mem.u32_at(f), self.word(s))
    }

    /// Wakes the sleepers at `on`, if any ([`WaitPoint::notify`]): one load
    /// of the sleeper count when nobody sleeps.
    #[inline]
    pub fn notify(&self, on: WaitOn, f: &impl crate::wait::Futex) {
        let sleepers = match on {
            WaitOn::NotEmpty => hdr::NOT_EMPTY_SLEEPERS,
            WaitOn::NotFull => hdr::NOT_FULL_SLEEPERS,
        };
        crate::sync::loom_only_seqcst_fence();
        // SeqCst: as in `WaitPoint::notify`, which re-checks it.
        if self.word(sleepers).load(Ordering::SeqCst) != 0 {
            self.wait_point(on).notify(f);
        }
    }

    /// Whether a consumer may sleep long: a scan of the slot words from
    /// `start` that stops at the first slot a death could orphan (see
    /// [`Quiet`]). The caller registered as a sleeper first and tried its
    /// claim after that; `queue::wait` explains why a claim made after
    /// this scan cannot go unnoticed. Loads only: a racy answer costs a
    /// wake too early or a short beat, never a message.
    pub fn quiet_until(&self, start: u64) -> Quiet {
        let cap = self.capacity();
        let start = start % cap.max(1);
        let mut due = u64::MAX;
        for k in 0..cap {
            let i = (start + k) % cap;
            // Acquire (`slot_word`): a delayed slot's due time, read after
            // it, is the one its delaying CAS published.
            let w = self.slot_word(i);
            match w.state() {
                state::FREE => {}
                state::DELAYED => due = due.min(self.due_of(i, w)),
                _ => return Quiet::Busy(i),
            }
        }
        Quiet::Until(due)
    }

    /// Participant `p`'s sleeping word: which wait points it counts as a
    /// sleeper on ([`WaitOn::sleeping_bit`]).
    pub fn sleeping_word(&self, p: u64) -> &AtomicU64 {
        self.mem.u64_at(self.layout.participant(p) + part::SLEEPING)
    }

    /// Adds role bits (bit 0 produced, bit 1 consumed) to participant `p`'s.
    pub fn add_roles(&self, p: u64, roles: u64) {
        // Relaxed: informative only.
        self.mem
            .u64_at(self.layout.participant(p) + part::ROLES)
            .fetch_or(roles, Ordering::Relaxed);
    }

    /// When the next liveness sweep is due (precise clock), in the header.
    pub fn liveness_due_word(&self) -> &AtomicU64 {
        self.word(hdr::LIVENESS_NEXT_NS)
    }

    /// When the next slot scan for expired leases and stalled reservations
    /// is due (coarse clock), in the header.
    pub fn repairs_due_word(&self) -> &AtomicU64 {
        self.word(hdr::MAINT_NEXT_NS)
    }

    /// The two words of the boot id the participant table belongs to.
    pub fn boot_id_words(&self) -> (&AtomicU64, &AtomicU64) {
        (self.word(hdr::BOOT_ID), self.word(hdr::BOOT_ID + 8))
    }

    /// Tells the consumers that messages went to the side path by other
    /// means than a protocol step (claims given back at detach), so that
    /// they look beyond the head.
    pub fn mark_side_dirty(&self) {
        self.side_entered();
    }
}

#[cfg(not(shmq_loom))]
impl Engine<crate::mapping::Mapping> {
    /// Whether the file was truncated under the mapping: whatever was read
    /// since may be zero pages.
    #[inline(always)]
    pub fn broken(&self) -> bool {
        self.mem.broken()
    }

    /// Flushes the mapping to its file.
    pub fn flush(&self) -> std::io::Result<()> {
        self.mem.flush()
    }
}

#[cfg(not(shmq_loom))]
impl Engine<crate::mapping::ReadOnlyMapping> {
    /// Whether the file was truncated under the mapping (see the read-write
    /// engine's `broken`).
    #[inline(always)]
    pub fn broken(&self) -> bool {
        self.mem.broken()
    }
}
