//! Repairs: the maintenance scan that frees or quarantines what dead and
//! stalled participants left (reservations, claims, dead-letter moves).

use super::*;
use crate::error::Result;
use crate::format::hdr;
use crate::format::key::KeyHolder;
use crate::format::replace;
use crate::format::slot::{self, prev_seq};
use crate::memory::Memory;
use crate::sync::Ordering;

/// What a maintenance scan repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Reservations abandoned (owner dead or stalled).
    pub abandoned: u64,
    /// Claims made claimable again (lease expired or owner dead).
    pub redelivered: u64,
    /// Claims taken back (lease expired or owner dead): those redelivered,
    /// and those out of deliveries, dead-lettered or left waiting for room
    /// (also counted in `dead_lettered` or `dlq_waiting`).
    pub reclaimed: u64,
    /// Messages moved to the dead-letter area, each once: by this scan's
    /// own dead-lettering, or after they waited for room.
    pub dead_lettered: u64,
    /// Messages still waiting for room in the dead-letter area.
    pub dlq_waiting: u64,
    /// Messages found claimable off ring order (pending, or delayed and
    /// due).
    pub side_waiting: u64,
    /// Latest-only replacements whose producer died or stalled midway:
    /// finished from its replacement record, or undone (the old message
    /// put back in place).
    pub replacements: u64,
    /// Waiting messages found past their deadline and dropped or
    /// dead-lettered (those moved to the dead-letter area now are also
    /// counted in `dead_lettered`).
    pub expired: u64,
}

impl Repairs {
    /// Adds another scan's repairs.
    pub fn add(&mut self, o: &Repairs) {
        self.abandoned += o.abandoned;
        self.redelivered += o.redelivered;
        self.reclaimed += o.reclaimed;
        self.dead_lettered += o.dead_lettered;
        self.dlq_waiting += o.dlq_waiting;
        self.side_waiting += o.side_waiting;
        self.replacements += o.replacements;
        self.expired += o.expired;
    }
}

impl<M: Memory> Engine<M> {
    /// Scans every slot and repairs what the dead and the stalled left:
    /// reservations past their deadline or owned by the dead are abandoned,
    /// claims past their lease or owned by the dead are made claimable again
    /// (or dead-lettered when out of deliveries), and messages waiting for the
    /// dead-letter area are moved when there is room.
    pub fn repair(&self, me: u64, now: u64, is_dead: &dyn Fn(u64) -> bool) -> Result<Repairs> {
        let mut r = Repairs::default();
        for i in 0..self.capacity() {
            self.repair_slot(me, i, now, is_dead, &mut r)?;
        }
        for d in 0..self.layout.params.participant_capacity {
            if is_dead(d) {
                self.release_taken_key(d);
                self.clear_replacement(d);
            }
        }
        // Relaxed: the hint is recomputed from the scan.
        self.word(hdr::DLQ_WAITING)
            .store(r.dlq_waiting, Ordering::Relaxed);
        // Also when a message waits on the side path that nobody announced:
        // its mover may have died between its CAS and the announcement.
        if r.redelivered > 0 || r.side_waiting > 0 {
            self.side_entered();
        }
        Ok(r)
    }

    /// Repairs one slot (see [`Engine::repair`]).
    pub fn repair_slot(
        &self,
        me: u64,
        i: u64,
        now: u64,
        is_dead: &dyn Fn(u64) -> bool,
        r: &mut Repairs,
    ) -> Result<()> {
        for _ in 0..16 {
            let w = self.slot_word(i);
            match w.state() {
                state::RESERVED | state::PASSED => {
                    // A replacement in place keeps its deadline in its
                    // record (see `take_waiting`).
                    let phase = self.replacement_phase(
                        w.owner(),
                        SlotRef {
                            slot: i,
                            seq: w.seq(),
                        },
                    );
                    let deadline = match (phase, self.layout.replacement(w.owner())) {
                        (Some(_), Some(rec)) => self
                            .mem
                            .u64_at(rec + replace::DEADLINE)
                            .load(Ordering::Relaxed),
                        _ => self.stamp(
                            i,
                            w.seq(),
                            now.saturating_add(self.config.reservation_timeout_ns),
                        ),
                    };
                    let dead = is_dead(w.owner());
                    if dead || deadline <= now {
                        match phase {
                            // Its old message is whole: put it back.
                            Some(replace::INTENT | replace::ABORTED) => {
                                if self.undo_replacement(
                                    w,
                                    SlotRef {
                                        slot: i,
                                        seq: w.seq(),
                                    },
                                    dead,
                                ) {
                                    r.replacements += 1;
                                    return Ok(());
                                }
                                continue;
                            }
                            // Its new message is whole in its record, and
                            // its producer writes no more: finish it.
                            Some(replace::COPY) if dead => {
                                if self.finish_replacement(
                                    w,
                                    SlotRef {
                                        slot: i,
                                        seq: w.seq(),
                                    },
                                ) {
                                    r.replacements += 1;
                                    return Ok(());
                                }
                                continue;
                            }
                            // An ordinary reservation, or a stalled copy
                            // (quarantined below).
                            _ => {}
                        }
                        // A dead producer writes no more: free the slot. A
                        // stalled one may still write: quarantine it.
                        let (to, owner) = if dead {
                            (state::FREE, 0)
                        } else {
                            (state::ABANDONED, w.owner())
                        };
                        let moved = if dead {
                            self.transit_free(me, i, w)
                        } else {
                            self.transit(i, w, to, owner).is_some()
                        };
                        if moved {
                            r.abandoned += 1;
                            return Ok(());
                        }
                        continue;
                    }
                }
                state::ABANDONED if is_dead(w.owner()) => {
                    // A quarantined replacement keeps a message: the old
                    // one (record not complete) or the new one.
                    // Its reservation's sequence is the one before the
                    // quarantine's.
                    let taken = SlotRef {
                        slot: i,
                        seq: prev_seq(w.seq()),
                    };
                    let done = match self.replacement_phase(w.owner(), taken) {
                        Some(replace::INTENT | replace::ABORTED) => {
                            Some(self.undo_replacement(w, taken, true))
                        }
                        Some(replace::COPY) => Some(self.finish_replacement(w, taken)),
                        _ => None,
                    };
                    match done {
                        Some(true) => {
                            r.replacements += 1;
                            return Ok(());
                        }
                        Some(false) => continue,
                        None => {}
                    }
                    if self.transit_free(me, i, w) {
                        return Ok(());
                    }
                    continue;
                }
                state::READY | state::PENDING | state::DELAYED if self.waiting_expired(i, now) => {
                    // Past its deadline: out of the queue, as a claim that
                    // met it would do (see `expiry`).
                    let t = self.expire_waiting(me, i, w, now)?;
                    if t.expired > 0 {
                        r.expired += 1;
                        r.dead_lettered += t.expired_dead_lettered;
                        return Ok(());
                    }
                    continue;
                }
                state::PENDING => r.side_waiting += 1,
                state::DELAYED if self.due_of(i, w) <= now => r.side_waiting += 1,
                state::CLAIMED => {
                    let deadline = self.stamp(i, w.seq(), now.saturating_add(self.config.lease_ns));
                    let dead = is_dead(w.owner());
                    if dead || deadline <= now {
                        // The claim's generation is stamped before it ends
                        // (its claimer may have died or stalled first), so
                        // that its token and its dead letter's source are
                        // fixed and a stalled claimer cannot stamp it late.
                        if self.stamp_claim(i, w).is_none() {
                            continue;
                        }
                        // Relaxed: ordered after the acquire of the word.
                        let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
                        let deliveries = self.count_attempt(i, w.seq());
                        if self.exhausted(deliveries) {
                            let why = if dead {
                                "its consumer died"
                            } else {
                                "its lease expired"
                            };
                            let reason = format!(
                                "delivery {deliveries} failed ({why}), the last of max_deliveries {}",
                                self.config.max_deliveries
                            );
                            match self.dead_letter(me, i, w, &reason, now)? {
                                Some(s) => {
                                    self.release_key(key, KeyHolder::of_claim(i, w));
                                    r.reclaimed += 1;
                                    if s == Settled::DlqWaiting {
                                        r.dlq_waiting += 1;
                                    } else {
                                        r.dead_lettered += 1;
                                    }
                                    return Ok(());
                                }
                                None => continue,
                            }
                        }
                        self.pending_entered(key);
                        if self.transit(i, w, state::PENDING, 0).is_some() {
                            self.release_key(key, KeyHolder::of_claim(i, w));
                            r.redelivered += 1;
                            r.reclaimed += 1;
                            return Ok(());
                        }
                        self.pending_left(key);
                        continue;
                    }
                }
                state::DLQ_WAIT => {
                    // Take the move over from ourselves, from the dead, or
                    // from a mover that found no room and left it waiting.
                    let waiting = self.dlq_waiting(i, w);
                    if w.owner() == me || is_dead(w.owner()) || waiting {
                        let Some(mine) = self.transit(i, w, state::DLQ_WAIT, me) else {
                            continue;
                        };
                        if self.repair_dlq_wait(me, i, w, mine, now)? {
                            r.dead_lettered += 1;
                        } else {
                            r.dlq_waiting += 1;
                        }
                        return Ok(());
                    }
                    r.dlq_waiting += 1;
                }
                _ => {}
            }
            return Ok(());
        }
        Ok(())
    }
}
