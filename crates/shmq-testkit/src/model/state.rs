//! The reference state: every message the queue holds (where it is, its
//! key, version, position and deliveries), the key table and the
//! dead-letter area, and the moves of a message both drivers model alike:
//! to the dead letters or to waiting for room there, back to redelivery
//! when a claim ends without an outcome, and the repair pass that moves
//! waiting messages once there is room.

use super::keys::KeyTable;
use std::collections::BTreeMap;

/// Where a message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum St {
    /// Reserved through handle `h`, not committed; `quarantined` once a
    /// repair abandoned the stalled reservation.
    Reserved {
        /// The handle.
        h: usize,
        /// Abandoned by a repair: its commit gets `ABANDONED`.
        quarantined: bool,
    },
    /// Committed and never claimed: waiting in ring order (or parked off it
    /// behind its busy key).
    Fresh,
    /// Redeliverable: nacked, or its claim ended without an outcome.
    Redeliver,
    /// Claimable from `due` (engine time, ns) on; `None`: not due within
    /// the case, and the time is not compared.
    Delayed {
        /// The not-before time stored in the slot.
        due: Option<u64>,
    },
    /// Held by handle `h` with `token` until `deadline` (in the driver's
    /// unit; `u64::MAX`: the lease never runs out within a case).
    Claimed {
        /// The handle.
        h: usize,
        /// The claim's token.
        token: u64,
        /// When the lease runs out.
        deadline: u64,
    },
    /// Out of deliveries or rejected, waiting for room in the dead letters.
    DlqWait,
}

impl St {
    /// Claimable now, by ring order or the side path (a delay aside).
    pub fn is_ready(&self) -> bool {
        matches!(self, St::Fresh | St::Redeliver)
    }

    /// Held by a claim.
    pub fn is_claimed(&self) -> bool {
        matches!(self, St::Claimed { .. })
    }
}

/// A message in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Its slot.
    pub slot: u64,
    /// Its ring position.
    pub position: u64,
    /// Its payload length.
    pub len: usize,
    /// Its key (0: none).
    pub key: u64,
    /// Its version (0 without a key).
    pub version: u64,
    /// How often it was claimed.
    pub deliveries: u32,
    /// Where it is.
    pub st: St,
}

/// A dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dead {
    /// Deliveries before it moved there.
    pub attempts: u64,
    /// The message's key.
    pub key: u64,
    /// The message's version.
    pub version: u64,
    /// The payload length.
    pub len: usize,
    /// The record's id, once seen in the file (it never changes).
    pub record: Option<u64>,
}

/// The queue's parameters the model depends on.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Slots.
    pub capacity: u64,
    /// Key table entries.
    pub key_capacity: u64,
    /// Dead-letter records.
    pub dlq_capacity: usize,
    /// Deliveries before a failed one dead-letters (0: unlimited).
    pub max_deliveries: u32,
    /// Latest-only mode.
    pub latest_only: bool,
}

impl Params {
    /// The parameters of a queue created with `o`.
    pub fn of(o: &shmq::Options) -> Params {
        Params {
            capacity: o.capacity,
            key_capacity: o.key_capacity,
            dlq_capacity: o.dlq_capacity as usize,
            max_deliveries: o.max_deliveries,
            latest_only: o.latest_only,
        }
    }
}

/// The reference state of one queue file.
#[derive(Clone, Debug)]
pub struct Model {
    /// The queue's parameters.
    pub p: Params,
    /// The messages in the queue, by message id (the id their payload
    /// names).
    pub msgs: BTreeMap<u64, Msg>,
    /// The key table.
    pub keys: KeyTable,
    /// The dead-letter area, by message id.
    pub dlq: BTreeMap<u64, Dead>,
    /// Tokens of claims that ended: an outcome with one is `LEASE_LOST`.
    pub ended_tokens: Vec<u64>,
}

impl Model {
    /// An empty queue.
    pub fn new(p: Params) -> Model {
        Model {
            p,
            msgs: BTreeMap::new(),
            keys: KeyTable::new(p.key_capacity),
            dlq: BTreeMap::new(),
            ended_tokens: Vec::new(),
        }
    }

    /// Slots held.
    pub fn occupied(&self) -> u64 {
        self.msgs.len() as u64
    }

    /// The message in `slot`, if any.
    pub fn slot_of(&self, slot: u64) -> Option<u64> {
        self.msgs
            .iter()
            .find(|(_, m)| m.slot == slot)
            .map(|(id, _)| *id)
    }

    /// The messages in slot order (the order of a repair pass).
    pub fn by_slot(&self) -> Vec<u64> {
        let mut v: Vec<(u64, u64)> = self.msgs.iter().map(|(id, m)| (m.slot, *id)).collect();
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Whether a failed delivery number `deliveries` was the last allowed.
    pub fn exhausted(&self, deliveries: u32) -> bool {
        self.p.max_deliveries != 0 && deliveries >= self.p.max_deliveries
    }

    /// Keys held by a claim, with the message holding each.
    pub fn held_keys(&self) -> BTreeMap<u64, u64> {
        self.msgs
            .iter()
            .filter(|(_, m)| m.key != 0 && m.st.is_claimed())
            .map(|(id, m)| (m.key, *id))
            .collect()
    }

    /// Whether a live claim holds `key`.
    pub fn key_busy(&self, key: u64) -> bool {
        key != 0
            && self
                .msgs
                .values()
                .any(|m| m.key == key && m.st.is_claimed())
    }

    /// A keyed message not newer than its key's last acked version:
    /// completed without delivery when a claim reaches it.
    pub fn doomed(&self, m: &Msg) -> bool {
        m.key != 0 && m.version <= self.keys.last_acked(m.key)
    }

    /// The message `id` leaves the queue (acked, replaced, skipped, moved
    /// to the dead letters): it waits for its key no more.
    pub fn remove(&mut self, id: u64) -> Msg {
        let m = self
            .msgs
            .remove(&id)
            .unwrap_or_else(|| panic!("model: message {id} is not in the queue"));
        self.keys.forget_waiting(m.key, id);
        m
    }

    /// Message `id` moves into the dead-letter area.
    fn move_to_dead_letters(&mut self, id: u64) -> Msg {
        let m = self.remove(id);
        let dead = Dead {
            attempts: m.deliveries as u64,
            key: m.key,
            version: m.version,
            len: m.len,
            record: None,
        };
        self.dlq.insert(id, dead);
        m
    }

    /// A held message goes to the dead letters (returned), or waits for
    /// room there (`None`).
    pub fn dead_letter(&mut self, id: u64) -> Option<Msg> {
        if self.dlq.len() < self.p.dlq_capacity {
            return Some(self.move_to_dead_letters(id));
        }
        self.msgs.get_mut(&id).expect("a held message").st = St::DlqWait;
        None
    }

    /// A message waiting for room that the file shows moved (a maintenance
    /// pass inside some call did it).
    pub fn waiting_moved(&mut self, id: u64) -> Msg {
        self.move_to_dead_letters(id)
    }

    /// A repair pass: messages waiting for room move while there is room,
    /// in slot order. Returns the moved ones.
    pub fn move_waiting(&mut self) -> Vec<(u64, Msg)> {
        let mut moved = Vec::new();
        for id in self.by_slot() {
            if self.msgs[&id].st == St::DlqWait && self.dlq.len() < self.p.dlq_capacity {
                moved.push((id, self.move_to_dead_letters(id)));
            }
        }
        moved
    }

    /// The claim of `id` ended without an outcome (its lease ran out, its
    /// handle closed): redelivered, or dead-lettered on its last delivery.
    /// Returns the message when it moved to the dead letters.
    pub fn claim_ended(&mut self, id: u64) -> Option<Msg> {
        let m = &self.msgs[&id];
        if let St::Claimed { token, .. } = m.st {
            self.ended_tokens.push(token);
        }
        if self.exhausted(m.deliveries) {
            return self.dead_letter(id);
        }
        self.msgs.get_mut(&id).expect("a held message").st = St::Redeliver;
        None
    }
}

/// Gives a driver's model type, which holds the shared [`Model`] in field
/// `$field` beside what only that driver tracks, the shared model's fields
/// and methods (`Deref` and `DerefMut` to it).
#[macro_export]
macro_rules! model_deref {
    ($driver:ty, $field:ident) => {
        impl std::ops::Deref for $driver {
            type Target = $crate::model::state::Model;
            fn deref(&self) -> &Self::Target {
                &self.$field
            }
        }

        impl std::ops::DerefMut for $driver {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.$field
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(dlq_capacity: usize, max_deliveries: u32) -> Model {
        Model::new(Params {
            capacity: 4,
            key_capacity: 2,
            dlq_capacity,
            max_deliveries,
            latest_only: false,
        })
    }

    fn claimed(m: &mut Model, id: u64, slot: u64, deliveries: u32) {
        let st = St::Claimed {
            h: 0,
            token: 100 + id,
            deadline: u64::MAX,
        };
        let msg = Msg {
            slot,
            position: slot,
            len: 8,
            key: 0,
            version: 0,
            deliveries,
            st,
        };
        m.msgs.insert(id, msg);
    }

    #[test]
    fn a_failed_last_delivery_waits_for_room_and_moves_in_slot_order() {
        let mut m = model(1, 1);
        claimed(&mut m, 1, 2, 1);
        claimed(&mut m, 2, 1, 1);
        claimed(&mut m, 3, 0, 1);
        assert!(m.claim_ended(1).is_some(), "room: moved");
        assert!(m.claim_ended(2).is_none() && m.claim_ended(3).is_none());
        assert_eq!(m.ended_tokens, [101, 102, 103]);
        m.dlq.clear();
        let moved: Vec<u64> = m.move_waiting().into_iter().map(|(id, _)| id).collect();
        assert_eq!(moved, [3], "slot 0 first, then no room");
        assert_eq!(m.msgs[&2].st, St::DlqWait);
        assert_eq!(m.dlq[&3].attempts, 1);
    }

    #[test]
    fn an_ended_claim_with_deliveries_left_is_redelivered() {
        let mut m = model(1, 2);
        claimed(&mut m, 1, 0, 1);
        assert!(m.claim_ended(1).is_none());
        assert_eq!(m.msgs[&1].st, St::Redeliver);
    }
}
