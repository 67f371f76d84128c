//! The engine's key table as the model sees it: per key the last acked
//! version, the highest version given (what version 0 counts from), and in
//! latest-only mode the key's waiting message; and the answer a keyed send
//! must get from it.
//!
//! The rules (G7): a new key on a full table is `KEYS_FULL`, never a silent
//! eviction; version 0 gives `max(highest given, last acked) + 1`; a version
//! not newer than the last acked one is `STALE` and queues nothing; in
//! latest-only mode a send without delay while the key's last message waits
//! unclaimed replaces it in place when newer, and is `STALE` when not.

use shmq::Status;
use std::collections::{BTreeMap, BTreeSet};

/// What the key table holds for one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyEntry {
    /// The highest version acked.
    pub last_acked: u64,
    /// The highest version given or seen (the engine's next-version count).
    pub next: u64,
    /// Latest-only: the key's last message committed without delay, which
    /// a newer send replaces while it waits unclaimed.
    pub waiting: Option<u64>,
    /// Latest-only: a claim met the waiting message while its key was busy
    /// and may have parked it (moved it off ring order); a driver that does
    /// not read the file to know sets this and accepts either answer.
    pub maybe_parked: bool,
}

/// The key table: at most `capacity` keys.
#[derive(Clone, Debug)]
pub struct KeyTable {
    capacity: u64,
    entries: BTreeMap<u64, KeyEntry>,
}

/// What a keyed send must do, decided before the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Fail with this status, queueing nothing: `KEYS_FULL`, `STALE`
    /// against the last acked version, `INVALID_ARGUMENT` without a key
    /// table.
    Refused(Status),
    /// Latest-only: `STALE`, not newer than the waiting message.
    StaleAgainstWaiting {
        /// The waiting message.
        waiting: u64,
    },
    /// Latest-only: replace the waiting message `old` in place (when
    /// `maybe_parked`, queueing anew, or `STALE` when not newer, is right
    /// too).
    Replace {
        /// The waiting message.
        old: u64,
        /// See [`KeyEntry::maybe_parked`].
        maybe_parked: bool,
    },
    /// Queue a new message.
    Queue,
}

impl Expect {
    /// The status the send must fail with, when it must fail.
    pub fn refusal(self) -> Option<Status> {
        match self {
            Expect::Refused(s) => Some(s),
            Expect::StaleAgainstWaiting { .. } => Some(Status::Stale),
            _ => None,
        }
    }
}

impl KeyTable {
    /// An empty table of `capacity` keys (0: the queue has no key table).
    pub fn new(capacity: u64) -> KeyTable {
        KeyTable {
            capacity,
            entries: BTreeMap::new(),
        }
    }

    /// How many keys the table holds at most.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The keys in use.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is in use.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `key`, if it has one.
    pub fn get(&self, key: u64) -> Option<&KeyEntry> {
        self.entries.get(&key)
    }

    /// The entry of `key`, to change, if it has one.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut KeyEntry> {
        self.entries.get_mut(&key)
    }

    /// Every key and its entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &KeyEntry)> {
        self.entries.iter().map(|(k, e)| (*k, e))
    }

    /// The last acked version of `key` (0: none, or no entry).
    pub fn last_acked(&self, key: u64) -> u64 {
        self.entries.get(&key).map_or(0, |k| k.last_acked)
    }

    /// The highest version given to `key`, if it has an entry.
    pub fn given(&self, key: u64) -> Option<u64> {
        self.entries.get(&key).map(|k| k.next)
    }

    /// The version a send of `key` asking `version` (0: the next one) gets,
    /// or the status it must fail with; takes the key's entry (a new one
    /// when there is room) and counts the version as given, as the engine
    /// does before it looks for a place.
    pub fn resolve(&mut self, key: u64, version: u64) -> Result<u64, Status> {
        if self.capacity == 0 {
            return Err(Status::InvalidArgument);
        }
        if !self.entries.contains_key(&key) {
            if self.entries.len() as u64 >= self.capacity {
                return Err(Status::KeysFull);
            }
            self.entries.insert(key, KeyEntry::default());
        }
        let k = self.entries.get_mut(&key).expect("entry just taken");
        let v = if version == 0 {
            k.next.max(k.last_acked) + 1
        } else {
            version
        };
        k.next = k.next.max(v);
        if v <= k.last_acked {
            return Err(Status::Stale);
        }
        Ok(v)
    }

    /// A send asking version 0 that was refused `FULL` gives no version
    /// away (it is assigned once the send has a place): the highest given
    /// goes back to `before` ([`KeyTable::given`] before the send; `None`:
    /// the key was new).
    pub fn restore_given(&mut self, key: u64, before: Option<u64>) {
        if let Some(k) = self.entries.get_mut(&key) {
            k.next = before.unwrap_or(0);
        }
    }

    /// What a send of `key` asking `version` must do, and its version (the
    /// asked one when refused by the table). `latest_only`: the queue is
    /// latest-only and the send has no delay. `unclaimed(id)`: the version
    /// of message `id` when it is still the key's message waiting unclaimed,
    /// in the driver's terms. Key 0 (no key) is always queued, version 0.
    pub fn expect_send(
        &mut self,
        key: u64,
        version: u64,
        latest_only: bool,
        unclaimed: impl Fn(u64) -> Option<u64>,
    ) -> (Expect, u64) {
        if key == 0 {
            return (Expect::Queue, 0);
        }
        let v = match self.resolve(key, version) {
            Ok(v) => v,
            Err(s) => return (Expect::Refused(s), version),
        };
        if !latest_only {
            return (Expect::Queue, v);
        }
        let k = &self.entries[&key];
        let Some(w) = k.waiting else {
            return (Expect::Queue, v);
        };
        let Some(wv) = unclaimed(w) else {
            return (Expect::Queue, v);
        };
        if v <= wv && !k.maybe_parked {
            return (Expect::StaleAgainstWaiting { waiting: w }, v);
        }
        (
            Expect::Replace {
                old: w,
                maybe_parked: k.maybe_parked,
            },
            v,
        )
    }

    /// Message `id` is now the waiting message of `key` (latest-only).
    pub fn set_waiting(&mut self, key: u64, id: u64) {
        if let Some(k) = self.entries.get_mut(&key) {
            k.waiting = Some(id);
            k.maybe_parked = false;
        }
    }

    /// Message `id` of `key` ended: it waits no more.
    pub fn forget_waiting(&mut self, key: u64, id: u64) {
        if let Some(k) = self.entries.get_mut(&key) {
            if k.waiting == Some(id) {
                k.waiting = None;
            }
        }
    }

    /// An ack of `version` of `key`: the last acked version never goes
    /// back.
    pub fn acked(&mut self, key: u64, version: u64) {
        if let Some(k) = self.entries.get_mut(&key) {
            k.last_acked = k.last_acked.max(version);
        }
    }

    /// `evict_keys`: removes and returns the keys no message in the queue
    /// carries (`in_use`).
    pub fn evict_unused(&mut self, in_use: &BTreeSet<u64>) -> Vec<u64> {
        let gone: Vec<u64> = self
            .entries
            .keys()
            .copied()
            .filter(|k| !in_use.contains(k))
            .collect();
        for k in &gone {
            self.entries.remove(k);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_key_table_rules() {
        let mut t = KeyTable::new(1);
        assert_eq!(t.resolve(7, 0), Ok(1));
        assert_eq!(t.resolve(7, 5), Ok(5));
        assert_eq!(t.resolve(7, 0), Ok(6));
        assert_eq!(t.resolve(8, 1), Err(Status::KeysFull));
        t.acked(7, 6);
        assert_eq!(t.resolve(7, 6), Err(Status::Stale));
        assert_eq!(t.resolve(7, 0), Ok(7));
        t.restore_given(7, Some(6));
        assert_eq!(t.given(7), Some(6));
        assert_eq!(KeyTable::new(0).resolve(1, 0), Err(Status::InvalidArgument));
    }

    #[test]
    fn latest_only_replaces_only_an_older_waiting_message() {
        let mut t = KeyTable::new(2);
        assert_eq!(t.expect_send(1, 3, true, |_| None), (Expect::Queue, 3));
        t.set_waiting(1, 10);
        let stale = t.expect_send(1, 3, true, |_| Some(3));
        assert_eq!(stale, (Expect::StaleAgainstWaiting { waiting: 10 }, 3));
        let newer = t.expect_send(1, 4, true, |_| Some(3)).0;
        assert_eq!(
            newer,
            Expect::Replace {
                old: 10,
                maybe_parked: false
            }
        );
        assert_eq!(t.expect_send(1, 5, false, |_| Some(3)).0, Expect::Queue);
        assert_eq!(t.evict_unused(&BTreeSet::new()), vec![1]);
    }
}
