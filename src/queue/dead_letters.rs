//! Dead letters: listing, fetching, redriving to the queue and purging the
//! records of the dead-letter area.

use super::Queue;
use crate::error::{Error, Result, Status};
use crate::options::SendOptions;
use crate::ring::{DeadLetterRecord, DeadLetterWord};

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

impl Queue {
    /// Record `r`'s word if the record holds a dead letter now.
    fn full_record_word(&self, r: u64) -> Option<DeadLetterWord> {
        let w = self.engine.dead_letter_word(r);
        w.is_full().then_some(w)
    }

    /// A copy of dead-letter record `r`, or `None` when it holds none or
    /// was rewritten during the copy. Lengths read from the file are
    /// clamped to the record's room.
    fn dead_letter_record(&self, r: u64) -> Option<DeadLetter> {
        let d = self.engine.dead_letter_record(r)?;
        Some(DeadLetter {
            index: r,
            id: d.id,
            reason: String::from_utf8_lossy(&d.reason).into_owned(),
            attempts: d.attempts,
            first_enqueued_ns: d.first_enqueued_ns,
            dead_ns: d.dead_ns,
            last_consumer_pid: d.last_consumer_pid,
            key: d.key,
            version: d.version,
            payload: d.payload,
        })
    }

    /// How many records hold a dead letter (racy: for stats).
    pub(super) fn dead_letter_count(&self) -> u64 {
        (0..self.engine.layout.params.dlq_capacity)
            .filter(|&r| self.engine.dead_letter_word(r).is_full())
            .count() as u64
    }

    /// Record `r` as verify checks it: its word, and for a full record
    /// the record (with its lengths as stored, unclamped).
    pub(super) fn dead_letter_shape(&self, r: u64) -> (DeadLetterWord, Option<DeadLetterRecord>) {
        let w = self.engine.dead_letter_word(r);
        if !w.is_full() {
            return (w, None);
        }
        (w, self.engine.dead_letter_record(r))
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
            if !self
                .engine
                .dead_letter_take_for_redrive(d.index, w, self.me.unwrap_or(0))
            {
                continue;
            }
            let opts = SendOptions::new().key(d.key).version(d.version);
            match self.send_with(&d.payload, &opts) {
                Ok(_) => {
                    self.engine.dead_letter_redriven(d.index, true);
                    n += 1;
                }
                Err(e) => {
                    self.engine.dead_letter_redriven(d.index, false);
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
            if self
                .engine
                .dead_letter_purge(d.index, w, self.me.unwrap_or(0))
            {
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
