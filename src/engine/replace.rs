//! Latest-only replacement in place (see the engine's module doc): take the
//! waiting message, stage the new one in the participant's record, copy it
//! in and commit; and the repairs that finish or undo a replacement whose
//! producer died or stalled.

use super::*;
use crate::error::{Error, Result, Status};
use crate::format::key::{self as keyf, WaitingRef};
use crate::format::replace::{self, ReplaceWord};
use crate::format::slot::{self, next_seq, AttemptsWord, ClaimWord, LenWord};
use crate::memory::Memory;
use crate::sync::{spin_hint, Ordering};

impl<M: Memory> Engine<M> {
    /// Latest-only mode, step 1 of a replacement in place (see the module
    /// doc): takes the waiting message of `key` for replacement by a send of
    /// `version` (0: the key's next version, which the caller assigns after
    /// the take and which is newer than any waiting one). `Ok(None)` when
    /// there is nothing to replace (no waiting message, or it is claimed,
    /// delayed, or being replaced by a producer that stalled): queue a new
    /// one. `Stale` when the waiting one is not older.
    ///
    /// The waiting message is the one the key's waiting reference names
    /// (slot and position), if it is unclaimed: `READY` or `PENDING` (never
    /// delivered, parked behind a busy key, or back from a failed delivery:
    /// the replacement's delivery count starts again, and its claim tokens
    /// stay unique, since the slot's claim generation never goes back).
    ///
    /// `data`, if given, goes into `me`'s replacement record once there is
    /// a message to replace and before it is taken, so the slot is taken
    /// for less time. Needs the layout's replacement records (latest-only
    /// queues): without them, `Ok(None)`.
    pub fn take_waiting(
        &self,
        me: u64,
        key: u64,
        version: u64,
        now: u64,
        data: Option<&[u8]>,
    ) -> Result<Option<Reservation>> {
        let Some(rec) = self.layout.replacement(me) else {
            return Ok(None);
        };
        let Some(e) = self.keys().find(key) else {
            return Ok(None);
        };
        let got = self.take_waiting_at(me, rec, e, key, version, now, data);
        if !matches!(got, Ok(Some(_))) {
            // Release: a repair that reads it reads a complete record.
            self.mem
                .u64_at(rec + replace::WORD)
                .store(0, Ordering::Release);
        }
        got
    }

    #[allow(clippy::too_many_arguments)] // take_waiting's, with its record
    pub(super) fn take_waiting_at(
        &self,
        me: u64,
        rec: usize,
        e: u64,
        key: u64,
        version: u64,
        now: u64,
        mut data: Option<&[u8]>,
    ) -> Result<Option<Reservation>> {
        let waiting = self.keys().field(e, keyf::WAITING);
        for _ in 0..1000 {
            // Acquire: the slot word check below validates the reference.
            let Some(waiting_ref) = WaitingRef::decode(waiting.load(Ordering::Acquire)) else {
                return Ok(None);
            };
            let i = waiting_ref.slot;
            if i >= self.capacity() {
                return Ok(None);
            }
            let w = self.slot_word(i);
            let st = w.state();
            // Relaxed: written before the commit whose word we acquired;
            // the CAS below fails if the slot changed since. The position
            // tells the waiting message from a later one in its slot.
            if self.slot_field(i, slot::KEY).load(Ordering::Relaxed) != key
                || !waiting_ref
                    .names_position(self.slot_field(i, slot::POSITION).load(Ordering::Relaxed))
            {
                return Ok(None);
            }
            match st {
                state::READY | state::PENDING => {}
                state::RESERVED | state::PASSED
                    if matches!(
                        self.replacement_phase(
                            w.owner(),
                            SlotRef {
                                slot: i,
                                seq: w.seq()
                            }
                        ),
                        Some(replace::INTENT | replace::COPY)
                    ) =>
                {
                    // Another producer is replacing it right now: let it
                    // finish (bounded: after the loop, queue a new one).
                    spin_hint();
                    continue;
                }
                _ => return Ok(None),
            }
            let old = self.slot_field(i, slot::VERSION).load(Ordering::Relaxed);
            if version != 0 && version <= old {
                return Err(Error::new(
                    Status::Stale,
                    format!("version {version} is not newer than the waiting version {old}"),
                ));
            }
            if let Some(d) = data.take() {
                let n = d.len().min(self.layout.params.max_message_size as usize);
                // SAFETY: `rec` is participant `me`'s own replacement
                // record, which only its owner writes, and only its owner's
                // cleaner reads after the owner is gone or its `COPY` CAS
                // published the bytes.
                unsafe { self.mem.write_bytes(rec + replace::PAYLOAD, &d[..n]) };
            }
            let st2 = if st == state::READY {
                state::RESERVED
            } else {
                state::PASSED
            };
            // The skip mark stays: it belongs to the position, which the
            // replacement keeps.
            let mine = w.transition(st2, me);
            // The reservation's deadline is kept in the record, not in the
            // slot's lease word: a replacer stalled here must not write
            // into a slot that a repair may give back meanwhile. Relaxed:
            // published by the release store of the word below.
            self.mem.u64_at(rec + replace::DEADLINE).store(
                now.saturating_add(self.config.reservation_timeout_ns),
                Ordering::Relaxed,
            );
            // Release, and before the CAS (whose release publishes it to
            // whoever sees the slot taken): a repair after our death at any
            // point from here on finds what to do in the record.
            self.mem.u64_at(rec + replace::WORD).store(
                ReplaceWord::new(i, mine.seq(), replace::INTENT).encode(),
                Ordering::Release,
            );
            if self.cas_slot(i, w, mine) {
                if st == state::PENDING {
                    self.pending_left(key);
                }
                return Ok(Some(Reservation {
                    slot: i,
                    seq: mine.seq(),
                    position: self.slot_field(i, slot::POSITION).load(Ordering::Relaxed),
                }));
            }
        }
        Ok(None)
    }

    /// Latest-only mode, step 2 of a replacement (see the module doc):
    /// writes the new message into `me`'s replacement record (`data`,
    /// unless [`Engine::take_waiting`] wrote it already) with its metadata
    /// (`len` as in [`slot::LEN`]), then marks the record complete. From
    /// then on a repair after `me`'s death finishes the replacement from the
    /// record. Returns false if a repair undid the take meanwhile (`me`
    /// stalled past the reservation timeout): the old message is back in
    /// place, untouched, and `me` must send its message as a new one.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub fn stage_replacement(
        &self,
        me: u64,
        r: &Reservation,
        key: u64,
        version: u64,
        len: u64,
        enqueued_ns: u64,
        data: Option<&[u8]>,
    ) -> bool {
        let Some(rec) = self.layout.replacement(me) else {
            return false;
        };
        // Relaxed: published by the CAS to COPY below.
        let put = |f: usize, v: u64| self.mem.u64_at(rec + f).store(v, Ordering::Relaxed);
        put(replace::KEY, key);
        put(replace::VERSION, version);
        put(replace::LEN, len);
        put(replace::ENQUEUED_NS, enqueued_ns);
        if let Some(d) = data {
            let n = d.len().min(self.layout.params.max_message_size as usize);
            // SAFETY: as in `take_waiting_at`: our own record, still in
            // `INTENT`, published by the CAS to `COPY` below.
            unsafe { self.mem.write_bytes(rec + replace::PAYLOAD, &d[..n]) };
        }
        // AcqRel: whoever sees COPY sees the record complete; a repair that
        // moved it to ABORTED first wins, and we then leave the slot alone.
        if self
            .mem
            .u64_at(rec + replace::WORD)
            .compare_exchange(
                ReplaceWord::new(r.slot, r.seq, replace::INTENT).encode(),
                ReplaceWord::new(r.slot, r.seq, replace::COPY).encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            return true;
        }
        self.abort_replacement(me, r);
        false
    }

    /// Latest-only mode, step 3 of a replacement (see the module doc):
    /// copies `me`'s complete replacement record into the taken slot and
    /// commits it in place (`READY`, or `PENDING` if consumers passed it or
    /// it was quarantined while `me` stalled), then clears the record.
    /// Returns the committed sequence. Never `Abandoned`: a replacement
    /// that got this far is delivered, by this call or by a repair after
    /// `me`'s death.
    pub fn commit_replacement(&self, me: u64, r: &Reservation, now: u64) -> Result<u64> {
        let Some(rec) = self.layout.replacement(me) else {
            return Err(Error::new(
                Status::InvalidArgument,
                "a replacement in place needs a latest-only queue",
            ));
        };
        let (key, version, len, enqueued) = self.copy_record(rec, r.slot);
        self.copy_record_expiry(rec, r.slot, len);
        let res = self.commit_from(me, r, len as usize, key, version, None, now, enqueued, true);
        // Release: see `take_waiting`.
        self.mem
            .u64_at(rec + replace::WORD)
            .store(0, Ordering::Release);
        res
    }

    /// Writes the deadline of the replacement `me` is staging into its
    /// record, before [`Engine::stage_replacement`] (whose length word then
    /// has the deadline flag) publishes the record.
    pub(super) fn stage_replacement_expiry(&self, me: u64, deadline: u64) {
        if let Some(rec) = self.layout.replacement(me) {
            // Relaxed: published by `stage_replacement`'s CAS to COPY.
            self.mem
                .u64_at(rec + replace::EXPIRES)
                .store(deadline, Ordering::Relaxed);
        }
    }

    /// Copies the deadline of replacement record `rec` into slot `i` when
    /// the record's length word `len` says it has one (the slot is held
    /// as for [`Engine::copy_record`]; the commit that follows publishes it).
    pub(super) fn copy_record_expiry(&self, rec: usize, i: u64, len: u64) {
        if LenWord(len).expires() {
            // Relaxed: as in `copy_record`.
            let deadline = self
                .mem
                .u64_at(rec + replace::EXPIRES)
                .load(Ordering::Relaxed);
            self.slot_field(i, slot::EXPIRES)
                .store(deadline, Ordering::Relaxed);
        }
    }

    /// Copies the message of replacement record `rec` into slot `i`'s
    /// payload; returns its key, version, length word (flags kept, length
    /// clamped: it is read from the mapping) and enqueue time.
    pub(super) fn copy_record(&self, rec: usize, i: u64) -> (u64, u64, u64, u64) {
        // Relaxed: ordered after the acquire that saw the record complete
        // (or written by this very participant).
        let get = |f: usize| self.mem.u64_at(rec + f).load(Ordering::Relaxed);
        let len_word = LenWord(get(replace::LEN)).clamped(self.layout.params.max_message_size);
        let mut buf = vec![0u8; len_word.length() as usize];
        self.mem.read_bytes(rec + replace::PAYLOAD, &mut buf);
        // SAFETY: slot `i` is reserved by the record's owner, whose
        // replacement this finishes (the owner itself, or its cleaner once
        // it is dead); nobody reads its payload before the commit that
        // follows publishes it.
        unsafe { self.mem.write_bytes(self.payload_offset(i), &buf) };
        (
            get(replace::KEY),
            get(replace::VERSION),
            len_word.0,
            get(replace::ENQUEUED_NS),
        )
    }

    /// Gives up a replacement that `me` took and has not started copying
    /// (its record never reached `COPY`): the old message goes back in
    /// place, as it was, unless a repair already put it back. Clears the
    /// record.
    pub fn abort_replacement(&self, me: u64, r: &Reservation) {
        for _ in 0..64 {
            let w = self.slot_word(r.slot);
            let ours = w.owner() == me
                && match w.state() {
                    state::RESERVED | state::PASSED => w.seq() == r.seq,
                    state::ABANDONED => w.seq() == next_seq(r.seq),
                    _ => false,
                };
            if !ours || self.restore_waiting(r.slot, w) {
                break;
            }
        }
        if let Some(rec) = self.layout.replacement(me) {
            // Release: see `take_waiting`.
            self.mem
                .u64_at(rec + replace::WORD)
                .store(0, Ordering::Release);
        }
    }

    /// Puts the old message of an undone replacement back in slot `i`
    /// (word `w`: taken, `RESERVED` or `PASSED`, or quarantined,
    /// `ABANDONED`), with its metadata, which nobody touched: `READY` if
    /// consumers have not passed it, else `PENDING`. False if the word
    /// moved.
    pub(super) fn restore_waiting(&self, i: u64, w: SlotWord) -> bool {
        // Relaxed: ordered after the acquire of the word.
        let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
        let to = if w.state() == state::RESERVED {
            state::READY
        } else {
            state::PENDING
        };
        self.enter(i, w, to, key)
    }

    /// Moves taken slot `i` (word `w`) to `to` (`READY` or `PENDING`),
    /// keeping the counts of a keyed pending message. False if the word
    /// moved.
    pub(super) fn enter(&self, i: u64, w: SlotWord, to: SlotState, key: u64) -> bool {
        if to == state::PENDING {
            // Counted before the CAS, so a claimer never uncounts it first.
            self.pending_entered(key);
        }
        if self.transit(i, w, to, 0).is_some() {
            if to == state::PENDING {
                self.side_entered();
            }
            return true;
        }
        if to == state::PENDING {
            self.pending_left(key);
        }
        false
    }

    /// The phase of `owner`'s replacement record if it names its
    /// reservation `taken`.
    pub(super) fn replacement_phase(&self, owner: u64, taken: SlotRef) -> Option<u64> {
        let rec = self.layout.replacement(owner)?;
        // Acquire: pairs with the owner's release stores and CASes.
        let r = ReplaceWord::decode(self.mem.u64_at(rec + replace::WORD).load(Ordering::Acquire))?;
        (r == ReplaceWord::new(taken.slot, taken.seq, r.phase)).then_some(r.phase)
    }

    /// A repair of slot `taken.slot` (word `w`, its owner's reservation
    /// `taken`, for a replacement whose record is not complete), after the
    /// owner died
    /// or stalled past the reservation timeout: the old message is whole in
    /// the slot; put it back. The record moves to `ABORTED` first, so that
    /// a stalled owner learns it (its `stage_replacement` fails) and never
    /// writes the slot. False if the word or the record moved (look again).
    pub(super) fn undo_replacement(&self, w: SlotWord, taken: SlotRef, dead: bool) -> bool {
        let (i, seq, owner) = (taken.slot, taken.seq, w.owner());
        let Some(rec) = self.layout.replacement(owner) else {
            return false;
        };
        let word = self.mem.u64_at(rec + replace::WORD);
        let intent = ReplaceWord::new(i, seq, replace::INTENT).encode();
        let aborted = ReplaceWord::new(i, seq, replace::ABORTED).encode();
        // Acquire: pairs with the owner's release store.
        let cur = word.load(Ordering::Acquire);
        if cur == intent {
            if word
                .compare_exchange(intent, aborted, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
        } else if cur != aborted {
            return false;
        }
        if !self.restore_waiting(i, w) {
            return false;
        }
        if dead {
            let _ = word.compare_exchange(aborted, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        true
    }

    /// A repair of slot `taken.slot` (word `w`, its owner's reservation
    /// `taken`, for a replacement whose record is complete) after the owner
    /// died: copies the record into the slot and commits it as the owner's
    /// `commit_replacement` would, keeping the position, and clears the
    /// record. Only for a dead owner: a live one may still be copying into
    /// the slot (a stalled one is quarantined instead). False if the word
    /// moved (look again).
    pub(super) fn finish_replacement(&self, w: SlotWord, taken: SlotRef) -> bool {
        let (i, seq, owner) = (taken.slot, taken.seq, w.owner());
        let Some(rec) = self.layout.replacement(owner) else {
            return false;
        };
        let (key, version, len, enqueued) = self.copy_record(rec, i);
        self.copy_record_expiry(rec, i, len);
        // Relaxed stores: the owner is dead and wrote its last; the CAS
        // below publishes them (as `commit_at`'s).
        self.slot_field(i, slot::KEY).store(key, Ordering::Relaxed);
        self.slot_field(i, slot::VERSION)
            .store(version, Ordering::Relaxed);
        self.slot_field(i, slot::ENQUEUED_NS)
            .store(enqueued, Ordering::Relaxed);
        self.slot_field(i, slot::LEN).store(len, Ordering::Relaxed);
        self.slot_field(i, slot::ATTEMPTS)
            .store(AttemptsWord::new(seq, 0).0, Ordering::Relaxed);
        let claim = self.slot_field(i, slot::CLAIM);
        let retagged = ClaimWord(claim.load(Ordering::Relaxed)).retagged(seq);
        claim.store(retagged.0, Ordering::Relaxed);
        let to = if w.state() == state::RESERVED {
            state::READY
        } else {
            state::PENDING
        };
        if !self.enter(i, w, to, key) {
            return false;
        }
        let _ = self.mem.u64_at(rec + replace::WORD).compare_exchange(
            ReplaceWord::new(i, seq, replace::COPY).encode(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        true
    }

    /// Clears a dead participant's replacement record once it names no
    /// reservation of it any more (finished, undone, or never taken).
    pub(super) fn clear_replacement(&self, dead: u64) {
        let Some(rec) = self.layout.replacement(dead) else {
            return;
        };
        let word = self.mem.u64_at(rec + replace::WORD);
        let cur = word.load(Ordering::Acquire);
        if cur == 0 {
            return;
        }
        if let Some(ReplaceWord { slot: i, seq, .. }) = ReplaceWord::decode(cur) {
            if i < self.capacity() {
                let w = self.slot_word(i);
                let held = w.owner() == dead
                    && match w.state() {
                        state::RESERVED | state::PASSED => w.seq() == seq,
                        state::ABANDONED => w.seq() == next_seq(seq),
                        _ => false,
                    };
                if held {
                    return;
                }
            }
        }
        let _ = word.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}
