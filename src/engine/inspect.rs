//! Typed snapshots of the file for reports: stats, verify, dead-letter
//! listings and `info` read these instead of loading raw words and decoding
//! them by hand. A snapshot's words are read one by one (not atomically
//! together), so it is for reporting, never for a decision of the protocol;
//! and like everything read from the mapping, nothing in it is trusted
//! (lengths come clamped, with the stored value kept for `verify`).

use super::*;
use crate::format::dlq::{self, DeadLetterWord};
use crate::format::key::{self as keyf, KeyHolder, WaitingRef};
use crate::format::part::{self, EntryState};
use crate::format::slot::{AttemptsWord, LeaseWord, LenWord};

/// One slot's header words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// The slot index.
    pub index: u64,
    /// The state word.
    pub word: SlotWord,
    /// The ring position of its message.
    pub position: u64,
    /// The lease word (deadline, not-before time or reservation deadline).
    pub lease: LeaseWord,
    /// The delivery count.
    pub attempts: AttemptsWord,
    /// The key (0 = none).
    pub key: u64,
    /// The version.
    pub version: u64,
    /// Monotonic time of the first commit.
    pub enqueued_ns: u64,
    /// The length word (stored length, unchecked, and flags).
    pub len: LenWord,
    /// The claim word.
    pub claim: ClaimWord,
}

impl SlotSnapshot {
    /// The state.
    pub fn state(&self) -> SlotState {
        self.word.state()
    }
    /// The lease word's time, whatever its tag: when a delayed message falls
    /// due, or a claim's lease ends.
    pub fn lease_time_ns(&self) -> u64 {
        self.lease.time_ns()
    }
}

/// A dead-letter record that holds a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The record index.
    pub index: u64,
    /// The record's word when it was read (`FULL`).
    pub word: DeadLetterWord,
    /// The dead letter's id (unique per file).
    pub id: u64,
    /// The token of the claim the message was taken from.
    pub source: u64,
    /// Key of the message.
    pub key: u64,
    /// Version of the message.
    pub version: u64,
    /// Monotonic time of its first enqueue.
    pub first_enqueued_ns: u64,
    /// Monotonic time it was dead-lettered.
    pub dead_ns: u64,
    /// Delivery attempts.
    pub attempts: u64,
    /// Pid of its last consumer.
    pub last_consumer_pid: u64,
    /// The payload length as stored (unchecked).
    pub stored_len: u64,
    /// The reason length as stored (unchecked).
    pub stored_reason_len: u64,
    /// The reason (at most [`dlq::REASON_MAX`] bytes).
    pub reason: Vec<u8>,
    /// The payload (at most the largest message).
    pub payload: Vec<u8>,
}

impl DeadLetterRecord {
    /// Whether the stored lengths fit the record (payload at most `max`,
    /// the largest message; reason at most [`dlq::REASON_MAX`]).
    pub fn lengths_fit(&self, max: u64) -> bool {
        self.stored_len <= max && self.stored_reason_len <= dlq::REASON_MAX as u64
    }
}

/// The header's cursors, hints and counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderCounters {
    /// Producers' position cursor.
    pub tail: u64,
    /// Consumers' position cursor.
    pub head: u64,
    /// Producers asleep or about to sleep.
    pub producers_waiting: u64,
    /// Consumers asleep or about to sleep.
    pub consumers_waiting: u64,
    /// The side path's dirty epoch.
    pub side_dirty: u64,
    /// The dirty epoch at which a full scan last found nothing.
    pub side_clean: u64,
    /// Earliest time a delayed message falls due (hint).
    pub side_next_due: u64,
    /// Messages waiting for room in the dead letters (hint).
    pub dlq_waiting: u64,
    /// Dead letters ever written.
    pub dlq_seq: u64,
    /// Slots freed by repairs outside any participant entry.
    pub freed_unowned: u64,
    /// Waiting messages removed by purges.
    pub purged: u64,
    /// Messages expired (dead-lettered or dropped past their deadline).
    pub expired: u64,
}

impl HeaderCounters {
    /// The lap of the tail cursor in a ring of `capacity` slots (as slot
    /// words count laps: wrapped to [`LAP_BITS`]).
    pub fn tail_lap(&self, capacity: u64) -> u64 {
        wrap_lap(self.tail / capacity.max(1))
    }
    /// Whether a slot word's `lap` is where the tail cursor allows: the
    /// tail's lap or up to two ahead (the cursor lags the slots).
    pub fn lap_near_tail(&self, lap: u64, capacity: u64) -> bool {
        let tail_lap = self.tail_lap(capacity);
        (0..=2).any(|d| wrap_lap(tail_lap + d) == lap)
    }
}

/// The header's identity: what `info` shows besides the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderIdentity {
    /// The file format version.
    pub format_version: u64,
    /// Wall-clock time of creation (ns since the Unix epoch).
    pub created_unix_ns: u64,
    /// The boot id the participant table belongs to.
    pub boot_id: [u64; 2],
    /// The file's random id, drawn at creation (0 in older files).
    pub file_id: u64,
}

/// A key-table entry in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEntrySnapshot {
    /// The entry index.
    pub index: u64,
    /// The key.
    pub key: u64,
    /// Last acked version.
    pub last_acked: u64,
    /// Last committed version.
    pub last_committed: u64,
    /// Highest version given or seen.
    pub next_version: u64,
    /// The holder word as stored (see [`KeyHolder`]; 0 = nobody).
    pub holder: u64,
    /// The waiting word as stored (see [`WaitingRef`]; 0 = none).
    pub waiting: u64,
    /// How many of the key's messages are pending (a hint).
    pub parked: u64,
    /// When the holder was last taken.
    pub holder_since: u64,
}

impl KeyEntrySnapshot {
    /// The holder, if any (its slot unchecked: read from the mapping).
    pub fn holder(&self) -> Option<KeyHolder> {
        KeyHolder::decode(self.holder)
    }
    /// The waiting reference, if any (its slot unchecked).
    pub fn waiting(&self) -> Option<WaitingRef> {
        WaitingRef::decode(self.waiting)
    }
}

/// A participant entry's bookkeeping words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParticipantSnapshot {
    /// The entry index.
    pub index: u64,
    /// The decoded state word.
    pub entry: EntryState,
    /// Process start time (clock ticks since boot).
    pub start_time: u64,
    /// Monotonic time of attachment.
    pub attached_ns: u64,
    /// Roles seen (bit 0 produced, bit 1 consumed).
    pub roles: u64,
    /// Wait points it sleeps on (bit 0 not-empty, bit 1 not-full).
    pub sleeping: u64,
    /// Slots it took from `FREE`, ever.
    pub took: u64,
    /// Slots it returned to `FREE`, ever.
    pub freed: u64,
}

impl<M: Loads> Engine<M> {
    /// A snapshot of slot `i`'s header words.
    pub fn slot_snapshot(&self, i: u64) -> SlotSnapshot {
        let word = self.slot_word(i);
        // Relaxed: a report; ordered after the word's acquire load, which is
        // all a snapshot promises.
        let rd = |f: usize| self.load_slot_field(i, f, Ordering::Relaxed);
        SlotSnapshot {
            index: i,
            word,
            position: rd(slot::POSITION),
            lease: LeaseWord(rd(slot::LEASE)),
            attempts: AttemptsWord(rd(slot::ATTEMPTS)),
            key: rd(slot::KEY),
            version: rd(slot::VERSION),
            enqueued_ns: rd(slot::ENQUEUED_NS),
            len: LenWord(rd(slot::LEN)),
            claim: ClaimWord(rd(slot::CLAIM)),
        }
    }

    /// The word of dead-letter record `r`.
    pub fn dead_letter_word(&self, r: u64) -> DeadLetterWord {
        // Acquire: pairs with the release that published the record.
        DeadLetterWord(
            self.mem
                .load_u64(self.layout.dead_letter(r) + dlq::WORD, Ordering::Acquire),
        )
    }

    /// Dead-letter record `r`, if it holds a dead letter that stayed put
    /// while it was copied (a record rewritten during the copy reads as
    /// gone).
    pub fn dead_letter_record(&self, r: u64) -> Option<DeadLetterRecord> {
        let l = &self.layout;
        let word = self.dead_letter_word(r);
        if !word.is_full() {
            return None;
        }
        let base = l.dead_letter(r);
        // Relaxed: ordered after the acquire of the word; checked again below.
        let rd = |f: usize| self.mem.load_u64(base + f, Ordering::Relaxed);
        let stored_len = rd(dlq::LEN);
        let stored_reason_len = rd(dlq::REASON_LEN);
        let mut reason = vec![0u8; stored_reason_len.min(dlq::REASON_MAX as u64) as usize];
        self.mem.read_bytes(base + dlq::REASON, &mut reason);
        let mut payload = vec![0u8; stored_len.min(l.params.max_message_size) as usize];
        self.mem.read_bytes(base + dlq::PAYLOAD, &mut payload);
        let d = DeadLetterRecord {
            index: r,
            word,
            id: rd(dlq::ID),
            source: rd(dlq::SOURCE),
            key: rd(dlq::KEY),
            version: rd(dlq::VERSION),
            first_enqueued_ns: rd(dlq::FIRST_ENQUEUED_NS),
            dead_ns: rd(dlq::DEAD_NS),
            attempts: rd(dlq::ATTEMPTS),
            last_consumer_pid: rd(dlq::LAST_CONSUMER),
            stored_len,
            stored_reason_len,
            reason,
            payload,
        };
        (self.dead_letter_word(r) == word).then_some(d)
    }

    /// The header's cursors, hints and counts.
    pub fn header_counters(&self) -> HeaderCounters {
        // Relaxed: a report.
        let rd = |f: usize| self.load_word(f, Ordering::Relaxed);
        HeaderCounters {
            tail: rd(hdr::TAIL),
            head: rd(hdr::HEAD),
            producers_waiting: rd(hdr::NOT_FULL_SLEEPERS),
            consumers_waiting: rd(hdr::NOT_EMPTY_SLEEPERS),
            side_dirty: rd(hdr::SIDE_DIRTY),
            side_clean: rd(hdr::SIDE_CLEAN),
            side_next_due: rd(hdr::SIDE_NEXT_DUE),
            dlq_waiting: rd(hdr::DLQ_WAITING),
            dlq_seq: rd(hdr::DLQ_SEQ),
            freed_unowned: rd(hdr::FREED_UNOWNED),
            purged: rd(hdr::PURGED),
            expired: rd(hdr::EXPIRED),
        }
    }

    /// The header's identity words.
    pub fn header_identity(&self) -> HeaderIdentity {
        // Relaxed: a report; the parameters were validated at open.
        let rd = |f: usize| self.load_word(f, Ordering::Relaxed);
        HeaderIdentity {
            format_version: rd(hdr::FORMAT_VERSION),
            created_unix_ns: rd(hdr::CREATED_UNIX_NS),
            boot_id: [rd(hdr::BOOT_ID), rd(hdr::BOOT_ID + 8)],
            file_id: rd(hdr::FILE_ID),
        }
    }

    /// Key-table entry `n`, or `None` if it holds no key.
    pub fn key_entry_snapshot(&self, n: u64) -> Option<KeyEntrySnapshot> {
        let keys = self.keys();
        // Relaxed: a report.
        let rd = |f: usize| keys.load_field(n, f, Ordering::Relaxed);
        let key = rd(keyf::KEY);
        (key != 0).then(|| KeyEntrySnapshot {
            index: n,
            key,
            last_acked: rd(keyf::LAST_ACKED),
            last_committed: rd(keyf::LAST_COMMITTED),
            next_version: rd(keyf::NEXT_VERSION),
            holder: rd(keyf::HOLDER),
            waiting: rd(keyf::WAITING),
            parked: rd(keyf::PARKED),
            holder_since: rd(keyf::HOLDER_SINCE),
        })
    }

    /// Participant entry `p`'s bookkeeping words.
    pub fn participant_snapshot(&self, p: u64) -> ParticipantSnapshot {
        let base = self.layout.participant(p);
        // Acquire: pairs with the release of registration and cleanup.
        let entry = EntryState::decode(self.mem.load_u64(base + part::STATE, Ordering::Acquire));
        // Relaxed: a report.
        let rd = |f: usize| self.mem.load_u64(base + f, Ordering::Relaxed);
        ParticipantSnapshot {
            index: p,
            entry,
            start_time: rd(part::START_TIME),
            attached_ns: rd(part::ATTACHED_NS),
            roles: rd(part::ROLES),
            sleeping: rd(part::SLEEPING),
            took: rd(part::TOOK),
            freed: rd(part::FREED),
        }
    }
}

impl<M: Memory> Engine<M> {
    /// Takes dead-letter record `r` from word `from` for `owner`, moving it
    /// to `state` (same sequence). False if the word moved.
    pub fn dead_letter_take(&self, r: u64, from: DeadLetterWord, owner: u64, state: u64) -> bool {
        // AcqRel: the taker sees the record it takes; whoever sees the new
        // word sees the take.
        self.dlq_word(r)
            .compare_exchange(
                from.0,
                from.with(owner, state).0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Sets dead-letter record `r`, which the caller took, to `state` (same
    /// sequence, no owner).
    pub fn dead_letter_set(&self, r: u64, state: u64) {
        let w = DeadLetterWord(self.dlq_word(r).load(Ordering::Relaxed));
        // Release: a FULL or EMPTY record is complete for its readers.
        self.dlq_word(r)
            .store(w.with(0, state).0, Ordering::Release);
    }
}
