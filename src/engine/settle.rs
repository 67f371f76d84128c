//! The outcome of a claim: ack, nack, reject or extend, checked against the
//! claim's fencing token and lease first.

use super::*;
use crate::error::{Error, Result, Status};
use crate::format::key::{self as keyf, KeyHolder};
use crate::format::slot::{self, ClaimWord, LeaseWord, LenWord};
use crate::memory::Memory;
use crate::sync::Ordering;

/// How a claim ends (or goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'r> {
    /// Done.
    Ack,
    /// Try again, not before this monotonic time (0 = now).
    Nack {
        /// Not-before time.
        not_before_ns: u64,
    },
    /// Give up: straight to dead letters.
    Reject {
        /// Why, kept with the dead letter.
        reason: &'r str,
    },
    /// Still working: the lease now ends at this monotonic time.
    Extend {
        /// New deadline.
        deadline_ns: u64,
    },
}

/// What a settled claim did, for the caller's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Acked and freed.
    Acked,
    /// Back for redelivery (now or later).
    Requeued,
    /// Moved to the dead-letter area.
    DeadLettered,
    /// Out of deliveries or rejected, but the dead-letter area is full: the
    /// message waits in its slot (`DLQ_WAIT`) and a later repair moves it
    /// (and counts it in [`Repairs::dead_lettered`]).
    DlqWaiting,
    /// Lease extended.
    Extended,
}

impl<M: Memory> Engine<M> {
    /// Verifies that `token` names a claim `me` holds now; returns its slot
    /// and word. The slot word says `me` holds *a* claim of the slot; the
    /// claim word says which one (its generation never repeats), so a token
    /// of an earlier claim of `me`'s is refused however many transitions
    /// passed. `me` makes no other claim meanwhile (a handle is used by one
    /// thread at a time), so the word cannot become another claim of `me`'s
    /// between this check and the caller's CAS.
    ///
    /// With `now`, a claim whose lease ran out by then is no longer held
    /// either, even if no repair has taken it back yet: its outcome comes
    /// after the claim ended (G3), and the message will be redelivered.
    pub(super) fn held(&self, me: u64, token: u64, now: Option<u64>) -> Result<(u64, SlotWord)> {
        let Some((i, generation)) = self.split_token(token) else {
            return Err(no_such_token(token));
        };
        let s = self.at(i);
        let w = self.word_at(s);
        // Acquire: ordered after the word's acquire load anyway.
        let c = ClaimWord(self.field(s, slot::CLAIM).load(Ordering::Acquire));
        if w.state() != state::CLAIMED
            || w.owner() != me
            || !c.stamped_for(w.seq())
            || !self.same_generation(c.generation(), generation)
        {
            return Err(Error::new(
                Status::LeaseLost,
                "the claim is no longer held: its lease expired or its outcome was already given",
            ));
        }
        if let Some(now) = now {
            // Relaxed: the claimer stamped it before handing out the claim
            // (program order for `me`); a reclaimer's stamp has the same tag.
            let lease = LeaseWord(self.field(s, slot::LEASE).load(Ordering::Relaxed));
            if lease
                .time_for(w.seq())
                .is_some_and(|deadline| deadline <= now)
            {
                return Err(Error::new(
                    Status::LeaseLost,
                    "the claim is no longer held: its lease expired (the message will be redelivered)",
                ));
            }
        }
        Ok((i, w))
    }

    /// Copies the payload of the claim `token`, which `me` holds, into
    /// `buf`, and checks that the claim was still held after the copy (so
    /// the copy is not torn). Returns the payload length; `TooLarge` if
    /// `buf` is too small.
    pub fn read_claimed(&self, me: u64, token: u64, buf: &mut [u8]) -> Result<usize> {
        // Whether `me` holds the claim is checked before the copy (a token
        // that is not held, or no longer, leaves `buf` untouched) and again
        // after it (a claim lost during the copy is refused: the copy may
        // be torn).
        let Some((i, _)) = self.split_token(token) else {
            return Err(no_such_token(token));
        };
        self.held(me, token, None)?;
        let s = self.at(i);
        // Relaxed: what a held claim says was published by the commit the
        // claim synchronised with; if the claim is lost meanwhile, the check
        // after the copy refuses it.
        let len = LenWord(self.field(s, slot::LEN).load(Ordering::Relaxed))
            .length_within(self.layout.params.max_message_size) as usize;
        if buf.len() < len {
            return Err(too_small(buf.len(), len));
        }
        self.mem.read_bytes(self.payload_offset(i), &mut buf[..len]);
        // Acquire fence: the copy above is ordered before the check below
        // (the seqlock reader's rule), so a claim lost during the copy is
        // seen.
        crate::sync::fence(Ordering::Acquire);
        self.held(me, token, None).map_err(lost_during_copy)?;
        Ok(len)
    }

    /// [`Engine::read_claimed`] of the claim `c` that `me` made in this
    /// very call (the C ABI's copying claims): the claim is held when the
    /// copy starts (nothing ran since it was stamped), so only the check
    /// after the copy is made. A claim lost between the claim and the copy
    /// is the same race as one lost during the copy, and refused the same
    /// way (`LeaseLost`). Its length was checked against max_message_size
    /// when it was claimed.
    #[inline]
    pub fn read_fresh(&self, me: u64, c: &Claim, buf: &mut [u8]) -> Result<usize> {
        let len = c.len;
        if buf.len() < len {
            return Err(too_small(buf.len(), len));
        }
        self.mem
            .read_bytes(self.payload_offset(c.slot), &mut buf[..len]);
        // Acquire fence: the copy above is ordered before the check below
        // (the seqlock reader's rule), so a claim lost during the copy is
        // seen.
        crate::sync::fence(Ordering::Acquire);
        // What `held` checks, knowing the claim: the slot word still at the
        // step of our claim (a claim ends only with a transition, which
        // moves the step), and the claim word stamped for that step with
        // our generation (which never repeats: a word that came back to
        // the same step after its sequence wrapped is not taken for ours).
        let s = self.at(c.slot);
        let w = self.word_at(s);
        // Acquire: as in `held`.
        let cw = ClaimWord(self.field(s, slot::CLAIM).load(Ordering::Acquire));
        let held = w.is(state::CLAIMED, me, c.seq)
            && cw.stamped_for(c.seq)
            && self
                .split_token(c.token)
                .is_some_and(|(_, generation)| self.same_generation(cw.generation(), generation));
        if !held {
            // Built by `held`, as `read_claimed` builds it.
            self.held(me, c.token, None).map_err(lost_during_copy)?;
        }
        Ok(len)
    }

    /// Gives the outcome of a claim.
    pub fn settle(&self, me: u64, token: u64, outcome: &Outcome<'_>, now: u64) -> Result<Settled> {
        if *outcome == Outcome::Ack {
            if let Some(r) = self.ack_fast(me, token, now) {
                return Ok(r);
            }
        }
        let (i, first) = self.held(me, token, Some(now))?;
        let s = self.at(i);
        // Relaxed: we hold the claim; the metadata was published by the
        // commit we synchronised with when claiming.
        let key = self.field(s, slot::KEY).load(Ordering::Relaxed);
        if key != 0 && *outcome == Outcome::Ack {
            // Record the version before the slot is freed, so that a crash
            // in between never lets an older version through; if the ack
            // then fails, this message is completed as stale when it is
            // next claimed: its consumer finished with it (it called ack).
            let version = self.field(s, slot::VERSION).load(Ordering::Relaxed);
            if let Some(e) = self.keys().find(key) {
                self.keys()
                    .field(e, keyf::LAST_ACKED)
                    .fetch_max(version, Ordering::AcqRel);
            }
        }
        let to_pending =
            matches!(*outcome, Outcome::Nack { not_before_ns } if not_before_ns <= now);
        if to_pending {
            // Counted before the CAS, so a claimer never uncounts it first.
            self.pending_entered(key);
        }
        let r = self.settle_slot(me, token, outcome, now, Some((i, first)));
        if to_pending && !matches!(r, Ok(Settled::Requeued)) {
            self.pending_left(key);
        }
        let r = r?;
        if r != Settled::Extended {
            self.release_key(
                key,
                KeyHolder {
                    slot: i,
                    seq: first.seq(),
                    owner: me,
                },
            );
        }
        Ok(r)
    }

    pub(super) fn settle_slot(
        &self,
        me: u64,
        token: u64,
        outcome: &Outcome<'_>,
        now: u64,
        mut checked: Option<(u64, SlotWord)>,
    ) -> Result<Settled> {
        loop {
            // The caller's check stands for the first try (nothing ran
            // since); a retry (the word moved) checks again.
            let (i, w) = match checked.take() {
                Some(held) => held,
                None => self.held(me, token, Some(now))?,
            };
            let s = self.at(i);
            match *outcome {
                Outcome::Ack => {
                    if self.transit_free(me, i, w) {
                        return Ok(Settled::Acked);
                    }
                }
                Outcome::Extend { deadline_ns } => {
                    self.field(s, slot::LEASE)
                        .store(LeaseWord::at(w.seq(), deadline_ns).0, Ordering::SeqCst);
                    // SeqCst load: if a reclaimer's CAS came first we see it.
                    self.held(me, token, None)?;
                    return Ok(Settled::Extended);
                }
                Outcome::Nack { not_before_ns } => {
                    let deliveries = self.count_attempt(i, w.seq());
                    if self.exhausted(deliveries) {
                        let reason = format!(
                            "nacked on delivery {deliveries}, the last of max_deliveries {}",
                            self.config.max_deliveries
                        );
                        if let Some(s) = self.dead_letter(me, i, w, &reason, now)? {
                            return Ok(s);
                        }
                        continue;
                    }
                    let new = if not_before_ns > now {
                        self.field(s, slot::LEASE).store(
                            LeaseWord::at(w.next_seq(), not_before_ns).0,
                            Ordering::Relaxed,
                        );
                        w.transition(state::DELAYED, 0)
                    } else {
                        w.transition(state::PENDING, 0)
                    };
                    if self.cas_slot(i, w, new) {
                        if new.state() == state::DELAYED {
                            self.delay_entered(not_before_ns);
                        } else {
                            self.side_entered();
                        }
                        return Ok(Settled::Requeued);
                    }
                }
                Outcome::Reject { reason } => {
                    if let Some(s) = self.dead_letter(me, i, w, reason, now)? {
                        return Ok(s);
                    }
                }
            }
        }
    }

    #[inline]
    pub(super) fn exhausted(&self, deliveries: u32) -> bool {
        self.config.max_deliveries != 0 && deliveries >= self.config.max_deliveries
    }
}

/// The error of a token that names no claim of this queue.
#[cold]
#[inline(never)]
fn no_such_token(token: u64) -> Error {
    Error::new(
        Status::InvalidArgument,
        format!("token {token:#x} names no claim of this queue"),
    )
}

/// `TooLarge` for a read into a buffer of `have` bytes of a `len`-byte
/// payload.
#[cold]
#[inline(never)]
fn too_small(have: usize, len: usize) -> Error {
    Error::new(
        Status::TooLarge,
        format!("read: buffer of {have} bytes for a {len}-byte payload"),
    )
}

/// The error of a read whose claim was found lost after the copy.
#[cold]
#[inline(never)]
fn lost_during_copy(e: Error) -> Error {
    if e.status() == Status::LeaseLost {
        Error::new(
            Status::LeaseLost,
            "the claim was lost during the copy; the copy may be torn",
        )
    } else {
        e
    }
}
