//! The fast path: the common case of each operation in straight-line code.
//!
//! A keyless message at the head of the ring, with nothing on the side path,
//! is claimed without the general walk ([`Engine::claim_head`]): one slot
//! read, one compare-and-swap, the claim stamped. A keyless claim is acked
//! with its check and one compare-and-swap. Each function makes exactly the
//! transitions the general path makes, with the same orderings, and answers
//! `None` at the first thing that is not the common case (a key, a delay,
//! a message off ring order, a lost race, a reservation at the head), having
//! changed nothing: the caller then runs the general path, which handles
//! every case. The general entry points call these first, so every test and
//! model of the general path runs them too.

use super::*;
use crate::error::Result;
use crate::format::part;
use crate::format::slot::{self, lap_diff, LeaseWord};
use crate::memory::Memory;
use crate::sync::{AtomicU64, Ordering};

/// What a fast path found.
pub(super) enum Fast<T> {
    /// It did the operation.
    Done(T),
    /// It found, as the general path would, that there is nothing to do
    /// (an empty queue).
    Empty,
    /// Not the common case, or a race lost: nothing changed; run the
    /// general path.
    Slow,
}

impl<M: Memory> Engine<M> {
    /// Claims the message at the head of the ring if it is a keyless
    /// message in ring order and nothing waits on the side path: what
    /// [`Engine::claim_counted`] would claim, found in one step.
    #[inline]
    pub(super) fn claim_fast(&self, me: u64, now: u64) -> Result<Fast<Claim>> {
        // Acquire: as in `side_needed`, whose test this is, keeping the
        // epoch to compare again before the claim (as `claim_counted` does).
        let dirty = self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire);
        if dirty != self.word(hdr::SIDE_CLEAN).load(Ordering::Acquire)
            || now >= self.word(hdr::SIDE_NEXT_DUE).load(Ordering::Relaxed)
        {
            return Ok(Fast::Slow);
        }
        let head = self.word(hdr::HEAD);
        let p = self.head_view.start(head);
        let (i, lap) = self.split(p);
        let s = self.at(i);
        let w = self.word_at(s);
        let d = lap_diff(w.lap(), lap + 1);
        if d == -1 && w.state() == state::FREE && !self.below_tail(p) {
            // Position p is not decided yet: nothing in ring order, as the
            // general walk would find (a consumer polling an empty queue).
            return Ok(Fast::Empty);
        }
        // Position p's message, committed: the word's lap is the one after
        // p's, and the position written before the commit is p itself (see
        // `later_than`). Relaxed loads: ordered after the word's acquire.
        if w.state() != state::READY
            || d != 0
            || self.field(s, slot::POSITION).load(Ordering::Relaxed) != p
        {
            return Ok(Fast::Slow);
        }
        if self.field(s, slot::KEY).load(Ordering::Relaxed) != 0 {
            // Keyed traffic: this handle's claims take the general path
            // until it claims a keyless message there.
            self.fast_claims_off
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(Fast::Slow);
        }
        // Something entered the side path meanwhile: it may be older than
        // this message (see `claim_head_from`).
        if self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire) != dirty {
            return Ok(Fast::Slow);
        }
        let Some(mine) = self.transit(i, w, state::CLAIMED, me) else {
            return Ok(Fast::Slow);
        };
        let claimed = self.finish_claim(i, mine, now);
        // The cursor moves after the claim is stamped, as in `claim_head`.
        self.head_view
            .leave(head, p.wrapping_add(1), self.lazy_every());
        Ok(match claimed? {
            Some(c) => Fast::Done(c),
            None => Fast::Slow,
        })
    }

    /// Reserves the slot of the next position in ring order if it is free
    /// for it: what [`Engine::reserve`] would reserve, in one step.
    #[inline]
    pub(super) fn reserve_fast(&self, me: u64, now: u64, len: usize) -> Fast<Reservation> {
        let tail = self.word(hdr::TAIL);
        let p = self.tail_view.start(tail);
        let (i, lap) = self.split(p);
        let s = self.at(i);
        let w = self.word_at(s);
        if w.state() != state::FREE || lap_diff(w.lap(), lap) != 0 {
            return Fast::Slow;
        }
        let mine = SlotWord::new(state::RESERVED, me, w.seq() + 1, lap + 1);
        if !self.cas_slot(i, w, mine) {
            return Fast::Slow;
        }
        // What `reserve_from` does after its CAS, and `reserve` after it
        // (the cursor moves last, as there).
        self.tally(me, part::TOOK);
        // Relaxed stores: we own the slot; the commit CAS publishes.
        self.field(s, slot::POSITION).store(p, Ordering::Relaxed);
        self.field(s, slot::LEASE).store(
            LeaseWord::at(
                mine.seq(),
                now.saturating_add(self.config.reservation_timeout_ns),
            )
            .0,
            Ordering::Relaxed,
        );
        self.field(s, slot::LEN)
            .store(len as u64, Ordering::Relaxed);
        self.tail_view
            .leave(tail, p.wrapping_add(1), self.lazy_every());
        Fast::Done(Reservation {
            slot: i,
            seq: mine.seq(),
            position: p,
        })
    }

    /// Acks the keyless claim `token` held by `me` (its lease not over at
    /// `now`): frees its slot. `None`: not the common case (a keyed claim,
    /// a claim no longer held, a race lost), nothing changed; run
    /// [`Engine::settle`], which also builds the errors.
    #[inline(always)]
    pub(crate) fn ack_fast(&self, me: u64, token: u64, now: u64) -> Option<Settled> {
        self.ack_fast_tallied(me, token, now, None)
    }

    /// The word `me`'s freed slots are tallied in (see [`Engine::tally`]),
    /// found once for a batch of [`Engine::ack_fast_tallied`]; `None` for
    /// a participant index past the table (which `tally` counts apart).
    #[inline]
    pub(crate) fn freed_tally(&self, me: u64) -> Option<&AtomicU64> {
        (me < self.layout.params.participant_capacity)
            .then(|| self.mem.u64_at(self.layout.participant(me) + part::FREED))
    }

    /// [`Engine::ack_fast`], tallying in `freed` (`me`'s word, from
    /// [`Engine::freed_tally`]) when given, as [`Engine::tally`] would.
    #[inline(always)]
    pub(crate) fn ack_fast_tallied(
        &self,
        me: u64,
        token: u64,
        now: u64,
        freed: Option<&AtomicU64>,
    ) -> Option<Settled> {
        let (i, generation) = self.split_token(token)?;
        let s = self.at(i);
        // Relaxed: decides only which path runs; a keyed claim takes the
        // general one, which records its version and releases its key.
        if self.field(s, slot::KEY).load(Ordering::Relaxed) != 0 {
            return None;
        }
        // The slot word, found once for the load and the CAS below.
        let word = self.field(s, slot::WORD);
        // Acquire: as in `word_at` (`held` loads it so).
        let w = SlotWord(word.load(Ordering::Acquire));
        // Acquire: as in `held`, whose checks these are.
        let c = ClaimWord(self.field(s, slot::CLAIM).load(Ordering::Acquire));
        // Relaxed: as in `held` and `settle`.
        let lease = LeaseWord(self.field(s, slot::LEASE).load(Ordering::Relaxed));
        if w.state() != state::CLAIMED
            || w.owner() != me
            || !c.stamped_for(w.seq())
            || !self.same_generation(c.generation(), generation)
            || lease
                .time_for(w.seq())
                .is_some_and(|deadline| deadline <= now)
        {
            return None;
        }
        // As `transit_free`: counted before the CAS, taken back if it fails.
        match freed {
            // Relaxed load + store: as in `tally_by` (single writer).
            Some(t) => t.store(t.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed),
            None => self.tally(me, part::FREED),
        }
        // The first try of `transit` (the same word, the same orderings:
        // SeqCst, as `cas_slot` says why), in line; a CAS that fails (the
        // lap moved, or the claim was lost) runs `transit` itself.
        let free = w.transition(state::FREE, 0);
        if word
            .compare_exchange(w.0, free.0, Ordering::SeqCst, Ordering::Acquire)
            .is_ok()
        {
            return Some(Settled::Acked);
        }
        self.ack_fast_retry(me, i, w)
    }

    /// The rest of [`Engine::ack_fast`] after its first compare-and-swap
    /// failed: [`Engine::transit`] from the same word (which retries while
    /// only the lap moved), the tally taken back if the slot left the claim.
    #[cold]
    #[inline(never)]
    fn ack_fast_retry(&self, me: u64, i: u64, w: SlotWord) -> Option<Settled> {
        if self.transit(i, w, state::FREE, 0).is_some() {
            return Some(Settled::Acked);
        }
        self.tally_by(me, part::FREED, u64::MAX);
        None
    }
}
