//! Dead letters: listing, fetching, redriving to the queue and purging the
//! records of the dead-letter area.

use super::Queue;
use crate::error::{Error, Result, Status};
use crate::layout::dlq;
use crate::memory::{Loads, Memory};
use crate::options::SendOptions;
use crate::sync::{AtomicU64, Ordering};

/// A dead letter, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Record index.
    pub index: u64,
    /// Unique id within the file.
    pub id: u64,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Delivery attempts.
    pub attempts: u64,
    /// Monotonic time of first enqueue.
    pub first_enqueued_ns: u64,
    /// Monotonic time it was dead-lettered.
    pub dead_ns: u64,
    /// Pid of the last consumer (0 if none).
    pub last_consumer_pid: u64,
    /// Key.
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The state of a dead-letter record, from its word
/// (`seq << 16 | owner << 4 | state`).
// raw read: to move into the engine's typed snapshot
fn record_state(w: u64) -> u64 {
    w & 0xf
}

/// Record word `w` with its owner and state replaced, its sequence kept.
// raw write: to move into the engine
fn with_owner_state(w: u64, owner: u64, state: u64) -> u64 {
    (w >> 16) << 16 | owner << 4 | state
}

impl Queue {
    /// The word of dead-letter record `r` (see [`record_state`]).
    // raw read: to move into the engine's typed snapshot
    fn record_word(&self, r: u64) -> &AtomicU64 {
        self.engine
            .mem
            .u64_at(self.engine.layout.dead_letter(r) + dlq::WORD)
    }

    /// Record `r`'s word if the record holds a dead letter now.
    fn full_record_word(&self, r: u64) -> Option<u64> {
        // Acquire: pairs with the release that published the record.
        let w = self.record_word(r).load(Ordering::Acquire);
        (record_state(w) == dlq::FULL).then_some(w)
    }

    /// A copy of dead-letter record `r`, or `None` when it holds none or
    /// was rewritten during the copy. Lengths read from the file are
    /// clamped to the record's room.
    // raw read: to move into the engine's typed snapshot
    fn dead_letter_record(&self, r: u64) -> Option<DeadLetter> {
        let e = &self.engine;
        let l = &e.layout;
        let base = l.dead_letter(r);
        let w = self.full_record_word(r)?;
        // Relaxed: ordered after the acquire above, and checked against the
        // word again after the copy.
        let rd = |f: usize| e.mem.u64_at(base + f).load(Ordering::Relaxed);
        let len = rd(dlq::LEN).min(l.params.max_message_size) as usize;
        let rl = rd(dlq::REASON_LEN).min(dlq::REASON_MAX as u64) as usize;
        let mut reason = vec![0u8; rl];
        e.mem.read_bytes(base + dlq::REASON, &mut reason);
        let mut payload = vec![0u8; len];
        e.mem.read_bytes(base + dlq::PAYLOAD, &mut payload);
        let d = DeadLetter {
            index: r,
            id: rd(dlq::ID),
            reason: String::from_utf8_lossy(&reason).into_owned(),
            attempts: rd(dlq::ATTEMPTS),
            first_enqueued_ns: rd(dlq::FIRST_ENQUEUED_NS),
            dead_ns: rd(dlq::DEAD_NS),
            last_consumer_pid: rd(dlq::LAST_CONSUMER),
            key: rd(dlq::KEY),
            version: rd(dlq::VERSION),
            payload,
        };
        // A record rewritten during the copy reads as gone.
        // Acquire: as above.
        (self.record_word(r).load(Ordering::Acquire) == w).then_some(d)
    }

    /// How many records hold a dead letter (racy: for stats).
    pub(super) fn dead_letter_count(&self) -> u64 {
        (0..self.engine.layout.params.dlq_capacity)
            // Relaxed: a count for stats, nothing read through it.
            .filter(|&r| record_state(self.record_word(r).load(Ordering::Relaxed)) == dlq::FULL)
            .count() as u64
    }

    /// Record `r` as verify checks it: its state, and for a full record
    /// its payload and reason lengths as stored (unclamped).
    // raw read: to move into the engine's typed snapshot
    pub(super) fn dead_letter_shape(&self, r: u64) -> (u64, Option<(u64, u64)>) {
        let e = &self.engine;
        let base = e.layout.dead_letter(r);
        // Relaxed: verify reports what it sees; a record changing under it
        // is checked again at the next run.
        let state = record_state(self.record_word(r).load(Ordering::Relaxed));
        if state != dlq::FULL {
            return (state, None);
        }
        let len = e.mem.u64_at(base + dlq::LEN).load(Ordering::Relaxed);
        let rl = e.mem.u64_at(base + dlq::REASON_LEN).load(Ordering::Relaxed);
        (state, Some((len, rl)))
    }

    /// Every dead letter, oldest id first.
    pub fn dlq_list(&self) -> Vec<DeadLetter> {
        let mut v: Vec<_> = (0..self.engine.layout.params.dlq_capacity)
            .filter_map(|r| self.dead_letter_record(r))
            .collect();
        v.sort_by_key(|d| d.id);
        v
    }

    /// The dead letter with this id.
    pub fn dlq_get(&self, id: u64) -> Result<DeadLetter> {
        self.dlq_list()
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| {
                Error::new(
                    Status::NotFound,
                    format!("{}: dlq: no dead letter with id {id}", self.path.display()),
                )
            })
    }

    /// Moves record `r` from word `w` to state `to`, as ours; false if the
    /// record changed since `w` was read.
    fn dlq_take(&self, r: u64, w: u64, to: u64) -> bool {
        let me = self.me.unwrap_or(0);
        let new = with_owner_state(w, me, to);
        // AcqRel: pairs with the release that published the record, and
        // our copy of it comes before whoever reuses the record once it is
        // empty. Relaxed on failure: nothing is read then.
        self.record_word(r)
            .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Sets record `r`, which we took, to `state`.
    fn dlq_set(&self, r: u64, state: u64) {
        let word = self.record_word(r);
        // Relaxed: we took the record; only we write it while it is ours.
        let w = word.load(Ordering::Relaxed);
        // Release: a FULL or EMPTY record is complete for its readers.
        word.store(with_owner_state(w, 0, state), Ordering::Release);
    }

    /// Sends the dead letter `id` (or every one, with `None`) back to the
    /// queue with its delivery count reset. Returns how many went back; stops
    /// early when the queue is full.
    pub fn dlq_redrive(&self, id: Option<u64>) -> Result<usize> {
        self.me("dlq redrive")?;
        let mut n = 0;
        for d in self.dlq_list() {
            if id.is_some_and(|id| id != d.id) {
                continue;
            }
            let Some(w) = self.full_record_word(d.index) else {
                continue;
            };
            if !self.dlq_take(d.index, w, dlq::REDRIVING) {
                continue;
            }
            let opts = SendOptions::new().key(d.key).version(d.version);
            match self.send_with(&d.payload, &opts) {
                Ok(_) => {
                    self.dlq_set(d.index, dlq::EMPTY);
                    n += 1;
                }
                Err(e) => {
                    self.dlq_set(d.index, dlq::FULL);
                    if e.status() == Status::Full {
                        break;
                    }
                    // Redriving them all: a letter older than its key's last
                    // acked version stays a dead letter (it would be refused
                    // for ever), and the others go on.
                    if id.is_none() && e.status() == Status::Stale {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        if id.is_some() && n == 0 {
            self.dlq_get(id.unwrap_or(0))?;
        }
        Ok(n)
    }

    /// Deletes the dead letter `id` (or every one). Returns how many.
    pub fn dlq_purge(&self, id: Option<u64>) -> Result<usize> {
        self.writable("dlq purge")?;
        let mut n = 0;
        for d in self.dlq_list() {
            if id.is_some_and(|id| id != d.id) {
                continue;
            }
            let Some(w) = self.full_record_word(d.index) else {
                continue;
            };
            if self.dlq_take(d.index, w, dlq::EMPTY) {
                n += 1;
            }
        }
        if n > 0 {
            // Messages waiting for room can move now.
            let now = self.now();
            if let Some(me) = self.me {
                let r = self.engine.repair(me, now, &|_| false)?;
                self.account_repairs(&r);
            }
        } else if let Some(id) = id {
            self.dlq_get(id)?;
        }
        Ok(n)
    }
}
