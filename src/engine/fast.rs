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
use crate::sync::Ordering;

/// What a fast path found.
pub enum Fast<T> {
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
    #[inline(always)]
    pub(super) fn claim_fast(&self, me: u64, now: u64) -> Result<Fast<Claim>> {
        let Some(dirty) = self.side_clean(now) else {
            return Ok(Fast::Slow);
        };
        self.claim_head_fast(me, now, dirty)
    }

    /// The side path's epoch if nothing waits there at `now` (no message
    /// off ring order, no delayed one due): then the next message in ring
    /// order is the one to claim.
    #[inline(always)]
    fn side_clean(&self, now: u64) -> Option<u64> {
        // Acquire: as in `side_needed`, whose test this is, keeping the
        // epoch to compare again before the claim (as `claim_counted` does).
        let dirty = self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire);
        if dirty != self.word(hdr::SIDE_CLEAN).load(Ordering::Acquire)
            || now >= self.word(hdr::SIDE_NEXT_DUE).load(Ordering::Relaxed)
        {
            return None;
        }
        Some(dirty)
    }

    /// [`Engine::claim_fast`] once the side path was found clean at epoch
    /// `dirty`: the epoch is compared again before the claim's CAS.
    #[inline(always)]
    fn claim_head_fast(&self, me: u64, now: u64, dirty: u64) -> Result<Fast<Claim>> {
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
        // The claim's CAS, inline, as `transit` makes it; a word that moved
        // meanwhile (a lost race, or only its lap: producers skipping the
        // slot) goes through `transit`, which retries or gives up.
        let next = w.transition(state::CLAIMED, me);
        let mine = if self.cas_slot(i, w, next) {
            next
        } else {
            let Some(mine) = self.transit(i, w, state::CLAIMED, me) else {
                return Ok(Fast::Slow);
            };
            mine
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

    /// The handle's fast claim (the C ABI's copying claims call it first):
    /// [`Engine::claim_fast`], unless this handle's fast claims are off
    /// (keyed traffic, as in [`Engine::claim_counted`]). A claim of a
    /// message past its deadline is disposed of as `claim_counted` does
    /// (counted in `tally`) and answers `Slow`: the general path then looks
    /// for the next message, as `claim_counted` goes on to.
    #[inline(always)]
    pub(crate) fn claim_quick(&self, me: u64, now: u64, tally: &mut Tally) -> Result<Fast<Claim>> {
        // Relaxed: a handle-private hint (see `fast_claims_off`).
        if self
            .fast_claims_off
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(Fast::Slow);
        }
        match self.claim_fast(me, now)? {
            Fast::Done(c) if c.expired() => {
                self.expire_claimed(me, &c, now, tally)?;
                Ok(Fast::Slow)
            }
            f => Ok(f),
        }
    }

    /// A run of fast claims for a batch: up to `max` claims like
    /// [`Engine::claim_quick`]'s, each given to `push`, with the side path
    /// checked once for the run (each claim still compares its epoch before
    /// its CAS, as `claim_fast` does: a message that entered the side path
    /// or a delay that fell due meanwhile moves it). Returns how many it
    /// claimed and what stopped it: `Done` at `max`, `Empty` when nothing
    /// more is in ring order, `Slow` at the first message that is not the
    /// common case (a claim of a message past its deadline disposed of as
    /// in `claim_quick`): the general claim takes the next one.
    #[inline]
    pub fn claim_fast_run(
        &self,
        me: u64,
        now: u64,
        max: usize,
        tally: &mut Tally,
        mut push: impl FnMut(Claim),
    ) -> Result<(usize, Fast<()>)> {
        // Relaxed: a handle-private hint (see `fast_claims_off`).
        if self
            .fast_claims_off
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok((0, Fast::Slow));
        }
        let Some(dirty) = self.side_clean(now) else {
            return Ok((0, Fast::Slow));
        };
        let mut n = 0;
        while n < max {
            match self.claim_head_fast(me, now, dirty)? {
                Fast::Done(c) if c.expired() => {
                    self.expire_claimed(me, &c, now, tally)?;
                    return Ok((n, Fast::Slow));
                }
                Fast::Done(c) => {
                    push(c);
                    n += 1;
                }
                Fast::Empty => return Ok((n, Fast::Empty)),
                Fast::Slow => return Ok((n, Fast::Slow)),
            }
        }
        Ok((n, Fast::Done(())))
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
    #[inline]
    pub(super) fn ack_fast(&self, me: u64, token: u64, now: u64) -> Option<Settled> {
        let (i, generation) = self.split_token(token)?;
        let s = self.at(i);
        // Relaxed: decides only which path runs; a keyed claim takes the
        // general one, which records its version and releases its key.
        if self.field(s, slot::KEY).load(Ordering::Relaxed) != 0 {
            return None;
        }
        let w = self.word_at(s);
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
        self.tally(me, part::FREED);
        if self.transit(i, w, state::FREE, 0).is_some() {
            return Some(Settled::Acked);
        }
        self.tally_by(me, part::FREED, u64::MAX);
        None
    }
}
