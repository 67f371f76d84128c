//! The side path: messages claimable off ring order (pending, or delayed
//! and due), announced by the header's dirty epoch and found by a scan.

use super::*;
use crate::error::Result;
use crate::format::hdr;
use crate::format::slot::{self, LeaseWord};
use crate::memory::Memory;
use crate::sync::Ordering;

impl<M: Memory> Engine<M> {
    /// Whether the side path may hold something claimable.
    #[inline]
    pub fn side_needed(&self, now: u64) -> bool {
        // Acquire: pairs with the release increment in `side_entered`, which
        // follows the CAS that put a message on the side path.
        self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire)
            != self.word(hdr::SIDE_CLEAN).load(Ordering::Acquire)
            || now >= self.word(hdr::SIDE_NEXT_DUE).load(Ordering::Relaxed)
    }

    pub(super) fn side_entered(&self) {
        // SeqCst: sleepers re-check after registering; see `wait`.
        self.word(hdr::SIDE_DIRTY).fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn delay_entered(&self, due: u64) {
        // Relaxed: the dirty epoch bump after it is what scanners synchronise
        // with; a scan that misses this minimum runs again because of it.
        self.word(hdr::SIDE_NEXT_DUE)
            .fetch_min(due, Ordering::Relaxed);
        self.side_entered();
    }

    /// Scans the slots for a pending message or a due delayed one. A keyless
    /// one is claimed at once; of keyed ones, the oldest of each key whose
    /// key is free is claimed, oldest first (per-key order).
    pub fn claim_side(&self, me: u64, now: u64, tally: &mut Tally) -> Result<Option<Claim>> {
        // Acquire: see `side_needed`.
        let epoch = self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire);
        let cap = self.capacity();
        let cursor = self.word(hdr::SIDE_CURSOR);
        // Relaxed: where to start is only a hint.
        let start = cursor.load(Ordering::Relaxed) % cap;
        let mut next_due = u64::MAX;
        let mut keyed: Vec<(u64, u64, u64)> = Vec::new();
        for k in 0..cap {
            let i = (start + k) % cap;
            loop {
                let w = self.slot_word(i);
                let claimable = match w.state() {
                    state::PENDING => true,
                    state::DELAYED => {
                        let due = self.due_of(i, w);
                        if due <= now {
                            true
                        } else {
                            next_due = next_due.min(due);
                            false
                        }
                    }
                    _ => false,
                };
                if !claimable {
                    break;
                }
                let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
                if key != 0 {
                    let pos = self.slot_field(i, slot::POSITION).load(Ordering::Relaxed);
                    keyed.push((pos, i, key));
                    break;
                }
                let mine = w.transition(state::CLAIMED, me);
                if self.cas_slot(i, w, mine) {
                    cursor.store(i + 1, Ordering::Relaxed);
                    match self.finish_claim(i, mine, now)? {
                        Some(c) => return Ok(Some(c)),
                        None => break,
                    }
                }
                // The word changed (a skip, or another claimer): look again.
            }
        }
        keyed.sort_unstable();
        let mut tried: Vec<u64> = Vec::new();
        for (_, i, key) in keyed {
            if tried.contains(&key) {
                continue;
            }
            tried.push(key);
            let w = self.slot_word(i);
            let was_pending = w.state() == state::PENDING;
            let due = w.state() == state::DELAYED && self.due_of(i, w) <= now;
            if !(was_pending || due) || self.slot_field(i, slot::KEY).load(Ordering::Relaxed) != key
            {
                continue;
            }
            match self.acquire_key(me, key, i, w, now) {
                KeyTake::Taken => {}
                KeyTake::Busy => {
                    tally.key_waits += 1;
                    if due {
                        // Not counted as parked: look again at the next claim.
                        next_due = next_due.min(now);
                    } else {
                        // Its holder's release announces it; should the
                        // holder be a taker that stalled in transit, look
                        // again once its lease is over.
                        next_due = next_due.min(now.saturating_add(self.config.lease_ns));
                    }
                    continue;
                }
                // Another consumer is claiming this very message: it is
                // gone in a moment, unless that consumer stalled; then look
                // again once its lease is over.
                KeyTake::Contended => {
                    next_due = next_due.min(now.saturating_add(self.config.lease_ns));
                    continue;
                }
            }
            let claimed = self.transit(i, w, state::CLAIMED, me);
            self.key_claimed(me, key, i, w, claimed.is_some());
            let Some(mine) = claimed else {
                // The slot moved while we took its key (another claimer,
                // or a stalled taker's transit ended): look again.
                tally.side_moved = true;
                continue;
            };
            if was_pending {
                self.pending_left(key);
            }
            if let Some(c) = self.finish_claim(i, mine, now)? {
                return Ok(Some(c));
            }
        }
        // Nothing claimable: everything that entered the side path before
        // `epoch` was seen. Relaxed: a stale clean epoch only costs a scan.
        self.word(hdr::SIDE_CLEAN)
            .fetch_max(epoch, Ordering::Relaxed);
        self.word(hdr::SIDE_NEXT_DUE)
            .store(next_due, Ordering::Relaxed);
        Ok(None)
    }

    /// The not-before time of a delayed slot (0 if never stamped: due).
    pub(super) fn due_of(&self, i: u64, w: SlotWord) -> u64 {
        LeaseWord(self.slot_field(i, slot::LEASE).load(Ordering::Relaxed))
            .time_for(w.seq())
            .unwrap_or(0)
    }
}
