//! Message expiry (time to live): a message whose deadline has passed is
//! never delivered.
//!
//! A message with a deadline carries it in its slot's `EXPIRES` word and
//! the deadline flag in its length word, both written by the producer
//! before its commit (so a message without one costs the fast path nothing
//! but a test of a word it reads anyway). Redeliveries keep it: nothing
//! but a commit writes it.
//!
//! Two places dispose of an expired message, each through the claim
//! transition every consumer makes, so that no new protocol step exists:
//!
//! - a claim that gets a message past its deadline
//!   ([`Engine::claim_counted`]) does not hand it out: it dead-letters it
//!   with the reason "expired" (as a reject would) or frees it (as an ack
//!   would, without raising its key's last acked version), as the queue
//!   chose at creation, and claims the next one;
//! - the maintenance scan ([`Engine::repair`]) takes every waiting message
//!   (ready, pending, delayed) past its deadline the same way, so that the
//!   depth falls without a consumer.
//!
//! A participant that dies between the claim and the disposal leaves an
//! ordinary claim, which the ordinary repair makes claimable again; the
//! next claim or scan finds it expired still.

use super::*;
use crate::error::Result;
use crate::format::hdr;
use crate::format::key::KeyHolder;
use crate::format::slot::{self, LenWord};
use crate::memory::Memory;
use crate::sync::Ordering;

/// The reason of an expired message's dead letter.
pub const EXPIRED_REASON: &str = "expired";

impl<M: Memory> Engine<M> {
    /// Disposes of the claim `c` ([`Claim::expired`]), which `me` made at
    /// `now` on a message past its deadline: dead-lettered or freed as the queue says, its key
    /// released, counted in the header and in `tally`. Does nothing if the
    /// claim is no longer `me`'s (it stalled past its lease and the message
    /// was reclaimed: the next claim finds it again).
    pub(super) fn expire_claimed(
        &self,
        me: u64,
        c: &Claim,
        now: u64,
        tally: &mut Tally,
    ) -> Result<()> {
        let i = c.slot;
        let w = self.slot_word(i);
        if !w.is(state::CLAIMED, me, c.seq) {
            return Ok(());
        }
        let gone = if self.config.expiry_drop {
            self.transit_free(me, i, w)
        } else {
            match self.dead_letter(me, i, w, EXPIRED_REASON, now)? {
                Some(Settled::DeadLettered) => {
                    tally.expired_dead_lettered += 1;
                    true
                }
                // Waiting for room in the dead letters: gone from the queue
                // all the same (the repair that moves it counts the move).
                Some(_) => true,
                None => false,
            }
        };
        if gone {
            // As an ack releases it, without raising the key's last acked
            // version: the message was never processed.
            self.release_key(
                c.key,
                KeyHolder {
                    slot: i,
                    seq: c.seq,
                    owner: me,
                },
            );
            tally.expired += 1;
            // Relaxed: a report, read by stats.
            self.word(hdr::EXPIRED).fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the waiting message of slot `i` (word `w`) is past its
    /// deadline at `now`. Its length word and deadline were published by
    /// the commit the caller's acquire load of `w` synchronised with.
    pub(super) fn waiting_expired(&self, i: u64, now: u64) -> bool {
        // Relaxed: ordered after the acquire of the slot word.
        let len = LenWord(self.slot_field(i, slot::LEN).load(Ordering::Relaxed));
        len.expires() && self.slot_field(i, slot::EXPIRES).load(Ordering::Relaxed) <= now
    }

    /// The maintenance scan's part: the waiting message of slot `i` (word
    /// `w`), past its deadline, is taken out of the queue as a claim that
    /// met it would do. Returns the tally of what it did (nothing if the
    /// word moved first: the scan looks again).
    pub(super) fn expire_waiting(&self, me: u64, i: u64, w: SlotWord, now: u64) -> Result<Tally> {
        let mut t = Tally::default();
        // Relaxed: ordered after the acquire of the slot word.
        let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
        match self.take_waiting_slot(me, i, w, key, now)? {
            Some(c) if c.expired() => self.expire_claimed(me, &c, now, &mut t)?,
            // The claim CAS went from the word whose message was found
            // expired, so this is that message; should a wrapped sequence
            // ever make it another one, it goes back, never dropped.
            Some(c) => {
                self.settle(me, c.token(), &Outcome::Nack { not_before_ns: 0 }, now)?;
            }
            None => {}
        }
        Ok(t)
    }
}
