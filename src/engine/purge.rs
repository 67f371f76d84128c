//! Purge: removing every waiting message (ready, pending, delayed) from the
//! queue, leaving the messages in flight with their consumers.
//!
//! No new protocol step: the purger takes each waiting message through the
//! claim transition every consumer makes (`READY`/`PENDING`/`DELAYED` to
//! `CLAIMED`, stamped as any claim), then frees it as an ack does, except
//! that a keyed message's last acked version is left alone (the message was
//! never processed: a later send of the same or an older version is not
//! stale because of it). Its key is released as an ack releases it. A
//! purger that dies or stalls between the two steps leaves an ordinary
//! claim behind, which the ordinary repair redelivers: the message stays
//! queued, never half removed.

use super::*;
use crate::error::Result;
use crate::format::hdr;
use crate::format::key::KeyHolder;
use crate::format::slot;
use crate::memory::Memory;
use crate::sync::Ordering;

impl<M: Memory> Engine<M> {
    /// Removes every message waiting in the queue at the time of the scan
    /// (those committed meanwhile may stay) and returns how many it
    /// removed; each is also counted in the header's purged counter.
    pub fn purge(&self, me: u64, now: u64) -> Result<u64> {
        let mut n = 0;
        for i in 0..self.capacity() {
            // A slot is looked at again while its word moves under us (a
            // lost race with a claimer or a skip), as the claim paths do;
            // bounded, so a slot another process keeps moving cannot hold
            // the purge forever.
            for _ in 0..64 {
                let w = self.slot_word(i);
                if !matches!(w.state(), state::READY | state::PENDING | state::DELAYED) {
                    break;
                }
                // Relaxed: ordered after the acquire of the word.
                let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
                if self.purge_one(me, i, w, key, now)? {
                    n += 1;
                    break;
                }
            }
        }
        if n > 0 {
            // Relaxed: a report, read by stats.
            self.word(hdr::PURGED).fetch_add(n, Ordering::Relaxed);
        }
        Ok(n)
    }

    /// Claims the waiting message of slot `i` (word `w`, of `key`) for `me`
    /// and frees it without delivery. False if the word moved first.
    fn purge_one(&self, me: u64, i: u64, w: SlotWord, key: u64, now: u64) -> Result<bool> {
        let Some(c) = self.take_waiting_slot(me, i, w, key, now)? else {
            return Ok(false);
        };
        let mine = self.slot_word(i);
        if !mine.is(state::CLAIMED, me, c.seq) || !self.transit_free(me, i, mine) {
            // Reclaimed meanwhile (a stall past the lease): redelivered.
            return Ok(false);
        }
        self.release_key(
            key,
            KeyHolder {
                slot: i,
                seq: c.seq,
                owner: me,
            },
        );
        Ok(true)
    }

    /// Claims the waiting message of slot `i` (word `w`: `READY`, `PENDING`
    /// or `DELAYED`, of `key`) for `me`, whatever its delay, as a consumer
    /// would claim it, to take it out of the queue without delivering it
    /// (a purge, an expiry found by the maintenance scan). `None` if the
    /// word moved first.
    pub(super) fn take_waiting_slot(
        &self,
        me: u64,
        i: u64,
        w: SlotWord,
        key: u64,
        now: u64,
    ) -> Result<Option<Claim>> {
        let was_pending = w.state() == state::PENDING;
        let claimed = if key == 0 {
            self.transit(i, w, state::CLAIMED, me)
        } else {
            // Take the key as a claim does, so that the key's holder is
            // this claim while it lasts. A key held by a claim in flight
            // (`Busy`) or being taken for this very message by a consumer
            // (`Contended`: that consumer's claim CAS then fails, as after
            // any lost race) does not stop it: the message is claimed
            // without it, never delivered, and the holder, naming another
            // claim, is left alone.
            let take = self.acquire_key(me, key, i, w, now);
            let claimed = self.transit(i, w, state::CLAIMED, me);
            if take == KeyTake::Taken {
                self.key_claimed(me, key, i, w, claimed.is_some());
            } else {
                self.set_taking_key(me, 0);
            }
            claimed
        };
        let Some(mine) = claimed else {
            return Ok(None);
        };
        if was_pending {
            self.pending_left(key);
        }
        // Stamped as any claim is, so that a repair of this claim (should
        // `me` die here) finds an ordinary claim to redeliver. `None`: lost
        // before it was stamped (`me` stalled past the lease), the message
        // is someone else's again.
        self.finish_claim(i, mine, now)
    }
}
