//! The fast path: the common case of each operation in straight-line code.
//!
//! A keyless message at the head of the ring, with nothing on the side path,
//! is claimed without the general walk ([`Engine::claim_head`]): one slot
//! read, one compare-and-swap, the claim stamped. A keyless claim is acked
//! with its check and one compare-and-swap. A plain message (no key, delay
//! or time to live) is sent in one body ([`Engine::send_fast`], and
//! [`Engine::send_run_fast`] for a batch): the reservation of the free slot
//! at the tail, the copy, the commit, with what a run of them reads of the
//! layout read once. Each function makes exactly the
//! transitions the general path makes, with the same orderings, and answers
//! `None` at the first thing that is not the common case (a key, a delay,
//! a message off ring order, a lost race, a reservation at the head), having
//! changed nothing: the caller then runs the general path, which handles
//! every case. The general entry points call these first, so every test and
//! model of the general path runs them too (a whole send is called first by
//! the handle's sends instead; its steps are the reservation and commit
//! that the engine's own entry points run).

use super::*;
use crate::error::Result;
use crate::format::part;
use crate::format::slot::{self, lap_diff, LeaseWord};
use crate::memory::Memory;
use crate::sync::{AtomicU64, Ordering};

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

/// What a run of reservations reads once (see [`Engine::producer_run`]).
struct ProducerRun<'a> {
    /// The word `me`'s reservations are tallied in, if any.
    took: Option<&'a AtomicU64>,
    /// [`Engine::lazy_every`].
    lazy: u64,
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
    // Always inlined: into a send's fast path, where the reservation, the
    // copy and the commit are then one straight-line body.
    #[inline(always)]
    pub(super) fn reserve_fast(&self, me: u64, now: u64, len: usize) -> Fast<Reservation> {
        match self.reserve_fast_in(None, me, now, len) {
            Fast::Done((r, _)) => Fast::Done(r),
            Fast::Empty => Fast::Empty,
            Fast::Slow => Fast::Slow,
        }
    }

    /// What the reservations of `me` read of the handle and the layout,
    /// read once for a run of them ([`Engine::send_run_fast`]).
    #[inline(always)]
    fn producer_run(&self, me: u64) -> ProducerRun<'_> {
        ProducerRun {
            // What `tally(me, part::TOOK)` counts in: `me`'s entry, or
            // nothing for a handle outside the table (see `tally_by`).
            took: (me < self.layout.params.participant_capacity)
                .then(|| self.mem.u64_at(self.layout.participant(me) + part::TOOK)),
            lazy: self.lazy_every(),
        }
    }

    /// [`Engine::reserve_fast`] with what it reads once per run in `run`
    /// (`None`: read here, once the slot is ours, so that a reservation that
    /// fails reads none of it); also gives the reserved slot's location,
    /// for its commit.
    #[inline(always)]
    fn reserve_fast_in(
        &self,
        run: Option<&ProducerRun<'_>>,
        me: u64,
        now: u64,
        len: usize,
    ) -> Fast<(Reservation, SlotAt)> {
        let tail = self.word(hdr::TAIL);
        let p = self.tail_view.start(tail);
        let (i, lap) = self.split(p);
        let s = self.at(i);
        let w = self.word_at(s);
        if w.state() != state::FREE || lap_diff(w.lap(), lap) != 0 {
            return Fast::Slow;
        }
        let mine = SlotWord::new(state::RESERVED, me, w.seq() + 1, lap + 1);
        if !self.cas_slot_at(s, w, mine) {
            return Fast::Slow;
        }
        // What `reserve_from` does after its CAS, and `reserve` after it
        // (the cursor moves last, as there): the tally first, as
        // `tally(me, part::TOOK)`. Relaxed load + store: as in `tally_by`
        // (single writer, read only by `occupied`, whose answer is a hint).
        let here;
        let run = match run {
            Some(run) => run,
            None => {
                here = self.producer_run(me);
                &here
            }
        };
        if let Some(took) = run.took {
            took.store(
                took.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
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
        self.tail_view.leave(tail, p.wrapping_add(1), run.lazy);
        Fast::Done((
            Reservation {
                slot: i,
                seq: mine.seq(),
                position: p,
            },
            s,
        ))
    }

    /// A whole send of a plain message (no key, no delay, no time to live:
    /// neither its own nor the queue's), in one step: the reservation of
    /// [`Engine::reserve_fast`], the copy, and the commit that
    /// [`Engine::send`] makes of such a message (its commit, with the
    /// constants folded in and the slot located once for both steps). `stamp` as in [`Engine::send`], asked once the
    /// message has a place. `None`: not the common case (a payload over the
    /// maximum, a queue with a default time to live, the next slot not free
    /// for its position, a race lost), nothing changed; run the general
    /// path. `Some(Err(Abandoned))` as [`Engine::commit`] (the reservation
    /// stalled past its timeout between the two steps). `Some(Ok(p))`: sent
    /// at ring position `p`.
    #[inline(always)]
    pub fn send_fast(
        &self,
        me: u64,
        now: u64,
        payload: &[u8],
        stamp: impl FnOnce() -> Option<u64>,
    ) -> Option<Result<u64>> {
        if payload.len() as u64 > self.layout.params.max_message_size
            || self.config.message_ttl_ns != 0
        {
            return None;
        }
        self.send_one_fast(&self.producer_run(me), me, now, payload, stamp)
    }

    /// [`Engine::send_fast`] of each message of `run` in turn, all committed
    /// at `now`, the first one sampled if `stamp` says so (as a batch does).
    /// Stops at the first message that is not the common case, having
    /// changed nothing for it: returns how many it sent (a prefix of `run`),
    /// and the error of a commit found abandoned, which ends the run too.
    /// Also returns the bytes it sent. The queue's check (no default time
    /// to live) is made once per run.
    #[inline]
    pub fn send_run_fast<B: AsRef<[u8]>>(
        &self,
        me: u64,
        now: u64,
        run: &[B],
        stamp: impl FnOnce() -> Option<u64>,
    ) -> (usize, u64, Result<()>) {
        let mut bytes = 0u64;
        if self.config.message_ttl_ns != 0 {
            return (0, bytes, Ok(()));
        }
        let max = self.layout.params.max_message_size;
        let producer = self.producer_run(me);
        let mut stamp = Some(stamp);
        for (n, m) in run.iter().enumerate() {
            let payload = m.as_ref();
            if payload.len() as u64 > max {
                return (n, bytes, Ok(()));
            }
            let first = stamp.take();
            match self.send_one_fast(&producer, me, now, payload, || first.and_then(|f| f())) {
                None => return (n, bytes, Ok(())),
                Some(Ok(_)) => bytes += payload.len() as u64,
                Some(Err(e)) => return (n, bytes, Err(e)),
            }
        }
        (run.len(), bytes, Ok(()))
    }

    /// [`Engine::send_fast`] once the queue-wide conditions are checked (a
    /// payload within the maximum, no default time to live).
    #[inline(always)]
    fn send_one_fast(
        &self,
        producer: &ProducerRun<'_>,
        me: u64,
        now: u64,
        payload: &[u8],
        stamp: impl FnOnce() -> Option<u64>,
    ) -> Option<Result<u64>> {
        let Fast::Done((r, s)) = self.reserve_fast_in(Some(producer), me, now, payload.len())
        else {
            return None;
        };
        // SAFETY: `r` was just reserved here and is committed only below;
        // the payload is at most max_message_size (checked by the callers).
        unsafe { self.write_payload(&r, payload) };
        let (len, enqueued) = super::send::enqueue_stamp(payload.len(), now, stamp());
        // What `Engine::send` commits for a message without key, version,
        // delay or deadline (`commit_stamped`, whose key bookkeeping is
        // nothing without a key).
        Some(
            self.commit_in(s, me, &r, len.0 as usize, 0, 0, None, now, enqueued, false)
                .map(|_| r.position),
        )
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
