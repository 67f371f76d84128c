//! Dead letters: moving a message into the dead-letter area (or leaving it
//! waiting for room), and repairing moves and records the dead left half
//! done.

use super::*;
use crate::error::{Error, Result, Status};
use crate::format::dlq::{self, DeadLetterWord};
use crate::format::hdr;
use crate::format::part::{self, EntryState};
use crate::format::slot::{self, AttemptsWord, LeaseWord, LenWord};
use crate::memory::Memory;
use crate::sync::{AtomicU64, Ordering};

impl<M: Loads> Engine<M> {
    /// Whether slot `i`, a `DLQ_WAIT` slot with word `w`, waits for room
    /// in the dead-letter area (its mover found none and marked it, so any
    /// participant may take the move over), rather than being moved now.
    pub fn dlq_waiting(&self, i: u64, w: SlotWord) -> bool {
        // Acquire: pairs with the release store of the mark.
        self.load_slot_field(i, slot::LEASE, Ordering::Acquire) == LeaseWord::dlq_waiting(w.seq()).0
    }
}

impl<M: Memory> Engine<M> {
    /// Moves a held message (word `w`, owned by anyone) to the dead-letter
    /// area: `DeadLettered` when it moved, `DlqWaiting` when it found no
    /// room and waits. `None` if the word changed under us.
    pub(super) fn dead_letter(
        &self,
        me: u64,
        i: u64,
        w: SlotWord,
        reason: &str,
        now: u64,
    ) -> Result<Option<Settled>> {
        let Some(moving) = self.transit(i, w, state::DLQ_WAIT, me) else {
            return Ok(None);
        };
        // Told by the move itself, not by the slot read afterwards: once it
        // waits, another participant's repair may move it (and count it).
        Ok(Some(
            if self.finish_dead_letter(me, i, moving, reason, now)? {
                Settled::DeadLettered
            } else {
                Settled::DlqWaiting
            },
        ))
    }

    /// Copies a `DLQ_WAIT` slot owned by `me` into a dead-letter record and
    /// frees the slot. Returns whether it moved (false: no room, it waits).
    pub(super) fn finish_dead_letter(
        &self,
        me: u64,
        i: u64,
        w: SlotWord,
        reason: &str,
        now: u64,
    ) -> Result<bool> {
        let source = self.dlq_source(i);
        let Some(rec) = self.dlq_allocate(me)? else {
            // No room: mark the slot as waiting, so that any participant's
            // maintenance may take the move over once there is room.
            self.slot_field(i, slot::LEASE)
                .store(LeaseWord::dlq_waiting(w.seq()).0, Ordering::Release);
            // Relaxed: a hint for maintenance.
            self.word(hdr::DLQ_WAITING).fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        };
        let l = &self.layout;
        let base = l.dead_letter(rec);
        let len = LenWord(self.slot_field(i, slot::LEN).load(Ordering::Relaxed))
            .length_within(l.params.max_message_size) as usize;
        let put = |f: usize, v: u64| self.mem.u64_at(base + f).store(v, Ordering::Relaxed);
        put(dlq::SOURCE, source);
        put(
            dlq::KEY,
            self.slot_field(i, slot::KEY).load(Ordering::Relaxed),
        );
        put(
            dlq::VERSION,
            self.slot_field(i, slot::VERSION).load(Ordering::Relaxed),
        );
        put(
            dlq::FIRST_ENQUEUED_NS,
            self.slot_field(i, slot::ENQUEUED_NS)
                .load(Ordering::Relaxed),
        );
        put(dlq::DEAD_NS, now);
        put(
            dlq::ATTEMPTS,
            AttemptsWord(self.slot_field(i, slot::ATTEMPTS).load(Ordering::Relaxed)).count(),
        );
        // Relaxed: the pid is a report (the slot's owner wrote it at attach).
        let owner_entry = self
            .mem
            .u64_at(l.participant(w.owner().min(l.params.participant_capacity - 1)) + part::STATE)
            .load(Ordering::Relaxed);
        put(
            dlq::LAST_CONSUMER,
            EntryState::decode(owner_entry).pid as u64,
        );
        put(dlq::LEN, len as u64);
        let reason = &reason.as_bytes()[..reason.len().min(dlq::REASON_MAX)];
        put(dlq::REASON_LEN, reason.len() as u64);
        // SAFETY: record `rec` was taken for writing by us
        // (`dlq_allocate`); readers skip it until `dlq_publish`.
        unsafe { self.mem.write_bytes(base + dlq::REASON, reason) };
        // Wrapping: the counter is read from the mapping, and a damaged
        // header may hold any value; an id is a label, never an index.
        put(
            dlq::ID,
            self.word(hdr::DLQ_SEQ)
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1),
        );
        let mut buf = vec![0u8; len];
        self.mem.read_bytes(self.payload_offset(i), &mut buf);
        // SAFETY: as for the reason above.
        unsafe { self.mem.write_bytes(base + dlq::PAYLOAD, &buf) };
        self.dlq_publish(rec, me);
        // The record is complete; the slot is free. A crash between the two
        // is repaired by `repair_dlq_wait`, which finds the record by source.
        if !self.transit_free(me, i, w) {
            return Err(Error::new(
                Status::Corrupt,
                format!("slot {i} changed while owned by its dead-letter mover"),
            ));
        }
        Ok(true)
    }

    /// What a dead-letter record moved from slot `i` names as its source:
    /// the token of the claim the message was taken from. Stable while the
    /// slot is `DLQ_WAIT` (no claim re-stamps it), whoever takes the move
    /// over, so a taker finds a record its predecessor wrote.
    pub(super) fn dlq_source(&self, i: u64) -> u64 {
        // The claim was stamped before the move to `DLQ_WAIT`, which we
        // synchronised with through the word.
        self.claim_token(i)
    }

    pub(super) fn dlq_word(&self, rec: u64) -> &AtomicU64 {
        self.mem.u64_at(self.layout.dead_letter(rec) + dlq::WORD)
    }

    /// Takes an empty dead-letter record for writing.
    pub(super) fn dlq_allocate(&self, me: u64) -> Result<Option<u64>> {
        let cap = self.layout.params.dlq_capacity;
        let cursor = self.word(hdr::DLQ_CURSOR);
        // Relaxed: a hint of where to look.
        let start = cursor.load(Ordering::Relaxed) % cap;
        for k in 0..cap {
            let r = (start + k) % cap;
            let w = DeadLetterWord(self.dlq_word(r).load(Ordering::Acquire));
            if w.state() == dlq::EMPTY {
                let new = w.taken_for_writing(me);
                if self
                    .dlq_word(r)
                    .compare_exchange(w.0, new.0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    cursor.store(r + 1, Ordering::Relaxed);
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    pub(super) fn dlq_publish(&self, rec: u64, me: u64) {
        let w = DeadLetterWord(self.dlq_word(rec).load(Ordering::Relaxed));
        // Release: the record's fields are visible to whoever sees FULL.
        self.dlq_word(rec)
            .store(w.with(me, dlq::FULL).0, Ordering::Release);
    }

    /// Finishes a dead-letter move taken over from `old` (now `mine`): if the
    /// record was already written (the mover died after), only free the slot.
    pub(super) fn repair_dlq_wait(
        &self,
        me: u64,
        i: u64,
        old: SlotWord,
        mine: SlotWord,
        now: u64,
    ) -> Result<bool> {
        let _ = old;
        let source = self.dlq_source(i);
        for rec in 0..self.layout.params.dlq_capacity {
            let base = self.layout.dead_letter(rec);
            let w = DeadLetterWord(self.dlq_word(rec).load(Ordering::Acquire));
            if w.is_full() && self.mem.u64_at(base + dlq::SOURCE).load(Ordering::Relaxed) == source
            {
                if self.transit_free(me, i, mine) {
                    return Ok(true);
                }
                return Ok(false);
            }
        }
        self.finish_dead_letter(me, i, mine, "moved after its mover died", now)
    }

    /// Frees dead-letter records that the dead left half written, and puts
    /// back those they left half redriven.
    pub fn repair_dlq(&self, is_dead: &dyn Fn(u64) -> bool) {
        for rec in 0..self.layout.params.dlq_capacity {
            let w = DeadLetterWord(self.dlq_word(rec).load(Ordering::Acquire));
            let new = match w.state() {
                dlq::WRITING if is_dead(w.owner()) => w.with(0, dlq::EMPTY),
                dlq::REDRIVING if is_dead(w.owner()) => w.with(0, dlq::FULL),
                _ => continue,
            };
            let _ = self.dlq_word(rec).compare_exchange(
                w.0,
                new.0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Takes dead-letter record `r`, still at word `from` (`FULL`), for
    /// `owner` to send it back to the queue; false if the word moved.
    /// Finish with [`Engine::dead_letter_redriven`].
    pub fn dead_letter_take_for_redrive(&self, r: u64, from: DeadLetterWord, owner: u64) -> bool {
        self.dead_letter_take(r, from, owner, dlq::REDRIVING)
    }

    /// Ends the redrive of record `r` taken with
    /// [`Engine::dead_letter_take_for_redrive`]: emptied if the message was
    /// sent, a dead letter again if not.
    pub fn dead_letter_redriven(&self, r: u64, sent: bool) {
        self.dead_letter_set(r, if sent { dlq::EMPTY } else { dlq::FULL });
    }

    /// Deletes dead-letter record `r`, still at word `from` (`FULL`), for
    /// `owner`; false if the word moved.
    pub fn dead_letter_purge(&self, r: u64, from: DeadLetterWord, owner: u64) -> bool {
        self.dead_letter_take(r, from, owner, dlq::EMPTY)
    }
}
