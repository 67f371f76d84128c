//! The key table side of the engine: per-key exclusivity (a key's holder),
//! per-key order (messages parked behind a busy key), stale versions, and
//! the latest-only waiting reference.

use super::*;
use crate::format::key::{self as keyf, KeyHolder, WaitingRef};
use crate::format::part;
use crate::keys::KeyTable;
use crate::memory::Memory;
use crate::sync::Ordering;

/// How taking a message's key for a claim went ([`Engine::acquire_key`]).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum KeyTake {
    /// The key's holder names the claim about to be made.
    Taken,
    /// Another claim holds the key, or is being made on another of its
    /// messages.
    Busy,
    /// Another consumer is taking the key for this very message.
    Contended,
}

/// What a key's holder word means now ([`Engine::holder_state`]).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum HolderState {
    /// Nobody holds the key (or the holder's claim ended).
    Free,
    /// A claim holds the key: its slot shows it.
    Held,
    /// A consumer took the key and has not yet made the claim CAS on
    /// `slot`, which still shows the sequence before `seq`.
    InTransit { slot: u64, seq: u64 },
}

impl<M: Loads> Engine<M> {
    /// The key table.
    #[inline]
    pub fn keys(&self) -> KeyTable<'_, M> {
        KeyTable::with_hint(&self.mem, &self.layout, &self.key_hint)
    }
}

impl<M: Memory> Engine<M> {
    /// A claimed keyed message not newer than its key's last acked version
    /// is completed without delivery. Returns whether it was.
    ///
    /// Equal counts: it is either a second copy of the acked version (a
    /// producer that sent it again, e.g. a bridge given the message twice)
    /// or the acked message itself, redelivered because its ack recorded
    /// the version and then lost the claim (a crash or a lease running out
    /// mid-ack); its consumer finished with it when it called ack.
    pub(super) fn drop_if_stale(&self, me: u64, c: &Claim) -> bool {
        let keys = self.keys();
        let Some(e) = keys.find(c.key) else {
            return false;
        };
        if c.version > keys.last_acked(e) {
            return false;
        }
        let i = c.slot;
        let w = self.slot_word(i);
        if w.state() != state::CLAIMED || w.owner() != me || w.seq() != c.seq {
            return false;
        }
        if self.transit_free(me, i, w) {
            self.release_key(
                c.key,
                KeyHolder {
                    slot: i,
                    seq: c.seq,
                    owner: me,
                },
            );
            return true;
        }
        false
    }

    /// Counts a keyed message entering `PENDING`.
    pub(super) fn pending_entered(&self, key: u64) {
        if key == 0 {
            return;
        }
        if let Some(e) = self.keys().find(key) {
            // AcqRel: a claimer that sees the count parks behind it.
            self.keys()
                .field(e, keyf::PARKED)
                .fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Counts a keyed message leaving `PENDING` (never below zero: a crash
    /// can leave the count off by one).
    pub(super) fn pending_left(&self, key: u64) {
        if key == 0 {
            return;
        }
        if let Some(e) = self.keys().find(key) {
            let _ = self.keys().field(e, keyf::PARKED).fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |n| n.checked_sub(1),
            );
        }
    }

    /// Takes `key` for the claim that slot `i`, now claimable as `w`, gets
    /// from the next claim CAS: the holder names that claim (its sequence is
    /// `w`'s next) *before* the CAS, so no other message of the key can be
    /// claimed between the two, and claims of one key stay in commit order.
    /// On [`KeyTake::Taken`] the caller makes the claim CAS and then calls
    /// [`Engine::key_claimed`] with its result.
    ///
    /// A holder in transit (taken, its claim CAS not made yet) for longer
    /// than a lease belongs to a taker that stalled between the two steps
    /// (G2, G7: a stalled taker must not wedge its key): its slot's
    /// sequence is moved on (same state), so that its claim CAS can never
    /// succeed, and the key is taken over.
    pub(super) fn acquire_key(&self, me: u64, key: u64, i: u64, w: SlotWord, now: u64) -> KeyTake {
        let keys = self.keys();
        let Some(e) = keys.find(key) else {
            // A committed key always has an entry; without one (a scribbled
            // file) there is nothing to hold.
            return KeyTake::Taken;
        };
        let holder = keys.field(e, keyf::HOLDER);
        let claim_seq = w.next_seq();
        let mine = KeyHolder {
            slot: i,
            seq: claim_seq,
            owner: me,
        }
        .encode();
        self.set_taking_key(me, e + 1);
        loop {
            // Acquire: pairs with the AcqRel CAS of whoever took it.
            let cur = holder.load(Ordering::Acquire);
            if cur == mine {
                return KeyTake::Taken;
            }
            match self.holder_state(cur) {
                HolderState::Held => {
                    self.set_taking_key(me, 0);
                    return KeyTake::Busy;
                }
                HolderState::InTransit { slot, seq } => {
                    // Acquire: written before the holder CAS it dates.
                    let since = keys.field(e, keyf::HOLDER_SINCE).load(Ordering::Acquire);
                    if now >= since.saturating_add(self.config.lease_ns) {
                        let sw = self.slot_word(slot);
                        if matches!(sw.state(), state::READY | state::PENDING | state::DELAYED)
                            && sw.next_seq() == seq
                        {
                            // Same state, next sequence: the stalled taker's
                            // CAS (from the sequence before) fails for good.
                            let _ = self.transit(slot, sw, sw.state(), sw.owner());
                        }
                        // The holder now names no claim: take it over.
                        continue;
                    }
                    self.set_taking_key(me, 0);
                    return if slot == i && seq == claim_seq {
                        KeyTake::Contended
                    } else {
                        KeyTake::Busy
                    };
                }
                HolderState::Free => {}
            }
            // Relaxed: dated before the CAS that publishes the holder
            // (AcqRel); a loser's date is as recent.
            keys.field(e, keyf::HOLDER_SINCE)
                .store(now, Ordering::Relaxed);
            if holder
                .compare_exchange(cur, mine, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return KeyTake::Taken;
            }
        }
    }

    /// After the claim CAS that followed a [`KeyTake::Taken`]: keeps the key
    /// if the CAS succeeded (`claimed`), gives it back if not.
    pub(super) fn key_claimed(&self, me: u64, key: u64, i: u64, w: SlotWord, claimed: bool) {
        if !claimed {
            self.release_key(
                key,
                KeyHolder {
                    slot: i,
                    seq: w.next_seq(),
                    owner: me,
                },
            );
        }
        self.set_taking_key(me, 0);
    }

    /// Records (or clears, with 0) the key entry + 1 that `me` is taking.
    #[inline]
    pub(super) fn set_taking_key(&self, me: u64, entry_plus_one: u64) {
        if me < self.layout.params.participant_capacity {
            // Relaxed: read only by whoever cleans up after `me`, once `me`
            // is dead and wrote nothing more.
            self.mem
                .u64_at(self.layout.participant(me) + part::TAKING_KEY)
                .store(entry_plus_one, Ordering::Relaxed);
        }
    }

    /// What a holder word read from the key table means now.
    pub(super) fn holder_state(&self, h: u64) -> HolderState {
        let Some(KeyHolder { slot, seq, owner }) = KeyHolder::decode(h) else {
            return HolderState::Free;
        };
        if slot >= self.capacity() {
            // Scribbled: names no slot, holds nothing.
            return HolderState::Free;
        }
        let w = self.slot_word(slot);
        if w.state() == state::CLAIMED && w.seq() == seq && w.owner() == owner {
            return HolderState::Held;
        }
        let claimable = matches!(w.state(), state::READY | state::PENDING | state::DELAYED);
        if claimable && w.next_seq() == seq {
            return HolderState::InTransit { slot, seq };
        }
        HolderState::Free
    }

    /// Releases `key` if `holder` (a claim) holds it, and
    /// lets parked messages of the key be claimed.
    pub(super) fn release_key(&self, key: u64, holder: KeyHolder) {
        if key == 0 {
            return;
        }
        let Some(e) = self.keys().find(key) else {
            return;
        };
        let _ = self.keys().field(e, keyf::HOLDER).compare_exchange(
            holder.encode(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        if self.keys().field(e, keyf::PARKED).load(Ordering::Acquire) > 0 {
            self.side_entered();
        }
    }

    /// Frees the key a dead participant was taking when it died, if it died
    /// between the holder CAS and the slot's claim CAS (a holder it got to
    /// claim with is freed by the slot's own repair).
    pub(super) fn release_taken_key(&self, dead: u64) {
        if dead >= self.layout.params.participant_capacity {
            return;
        }
        let f = self
            .mem
            .u64_at(self.layout.participant(dead) + part::TAKING_KEY);
        // Acquire: the dead wrote it before its holder CAS.
        let taking = f.load(Ordering::Acquire);
        if taking == 0 {
            return;
        }
        // Read from the mapping: check the entry index.
        if let Some(e) = (taking - 1 < self.keys().capacity()).then_some(taking - 1) {
            let holder = self.keys().field(e, keyf::HOLDER);
            let h = holder.load(Ordering::Acquire);
            if let Some(taker) = KeyHolder::decode(h) {
                if taker.owner == dead && self.holder_state(h) != HolderState::Held {
                    let _ = holder.compare_exchange(h, 0, Ordering::AcqRel, Ordering::Relaxed);
                    if self.keys().field(e, keyf::PARKED).load(Ordering::Acquire) > 0 {
                        self.side_entered();
                    }
                }
            }
        }
        f.store(0, Ordering::Relaxed);
    }

    /// Moves the message at the head (position `*p`, slot `i`, word `w`,
    /// `READY`) to `PENDING` because its key is busy or has older messages
    /// parked, and walks on.
    pub(super) fn park_ready(&self, i: u64, w: SlotWord, key: u64, p: &mut u64, tally: &mut Tally) {
        // Counted before the CAS, so a claimer never uncounts it first.
        self.pending_entered(key);
        if self.cas_slot(i, w, w.transition(state::PENDING, 0)) {
            self.side_entered();
            tally.key_waits += 1;
            // If nothing later is claimable, the claim looks at the side
            // path again: the message may be claimable there at once (its
            // key came free, or a crash left the parked count one too high).
            tally.side_moved = true;
            *p = p.wrapping_add(1);
        } else {
            self.pending_left(key);
        }
    }

    /// Whether `key` has messages parked off ring order.
    pub(super) fn has_parked(&self, key: u64) -> bool {
        self.keys()
            .find(key)
            .is_some_and(|e| self.keys().field(e, keyf::PARKED).load(Ordering::Acquire) > 0)
    }

    /// Latest-only mode: records the message committed in `slot` at ring
    /// `position` as the key's waiting one. The position (its low 32 bits)
    /// names the message for as long as it lives: it stays through claims
    /// that fail and through replacements in place, and the next message of
    /// the slot has another.
    pub fn set_waiting(&self, key: u64, slot: u64, position: u64) {
        if let Some(e) = self.keys().find(key) {
            // Release: the reference is checked against the slot anyway.
            self.keys()
                .field(e, keyf::WAITING)
                .store(WaitingRef::new(slot, position).encode(), Ordering::Release);
        }
    }
}
