//! Peeking: private copies of the messages waiting in the queue (ready,
//! pending redelivery, delayed), read without changing a single word of the
//! file, so a read-only mapping can peek and a peek is never a delivery.
//!
//! # The copy is a seqlock read
//!
//! A waiting message's bytes change only after its slot word moves: a
//! producer writes a slot it reserved (`RESERVED`/`PASSED`), a latest-only
//! replacement first takes the slot out of `READY`/`PENDING`, a claim moves
//! it to `CLAIMED`. Every such step changes the word's state or sequence.
//! So the slot word is the seqlock's sequence: read it (acquire), copy the
//! metadata and the payload, fence (acquire), read it again, and keep the
//! copy only if the word still says the same state, owner and sequence.
//! The position and the claim word are compared too: a sequence wraps (21
//! bits, 4 in the narrow test build), but a slot reused for another
//! message has another position, and a claim in between counted up the
//! claim generation, so an ABA of the sequence alone is not taken for an
//! unchanged slot. A copy that fails the check is retried once, then
//! skipped: a message that moved was claimed or replaced while we looked.
//!
//! Nothing read is trusted: the length is clamped to the largest message,
//! a payload that would leave the memory is skipped, and every loop is
//! bounded by the capacity or by `max`.

use std::collections::BinaryHeap;

use super::*;
use crate::format::slot::{AttemptsWord, LeaseWord, LenWord};

/// How a peeked message waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeekState {
    /// Committed, waiting to be claimed in ring order.
    Ready,
    /// Waiting for redelivery (or committed after consumers passed it).
    Pending,
    /// Claimable once its not-before time has passed.
    Delayed,
}

impl PeekState {
    /// The state of a waiting slot; `None` for every other state (free,
    /// being written, in flight, dead-lettering, quarantined, invalid).
    fn of(s: SlotState) -> Option<PeekState> {
        match s {
            SlotState::Ready => Some(PeekState::Ready),
            SlotState::Pending => Some(PeekState::Pending),
            SlotState::Delayed => Some(PeekState::Delayed),
            _ => None,
        }
    }

    /// A readable name, as `SlotState::name` gives it.
    pub fn name(self) -> &'static str {
        match self {
            PeekState::Ready => "ready",
            PeekState::Pending => "pending",
            PeekState::Delayed => "delayed",
        }
    }
}

/// A copy of one waiting message, taken untorn (see the module's docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeekedSlot {
    /// The slot index.
    pub slot: u64,
    /// The ring position of the message.
    pub position: u64,
    /// How it waits.
    pub state: PeekState,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Deliveries so far (0 for a message never claimed).
    pub deliveries: u64,
    /// Monotonic time of the first commit.
    pub enqueued_ns: u64,
    /// When a delayed message falls due (`None` unless delayed).
    pub not_before_ns: Option<u64>,
    /// The message's deadline, if it has one.
    pub expires_ns: Option<u64>,
    /// The payload (a private copy, at most the largest message).
    pub payload: Vec<u8>,
}

/// What one attempt to copy a slot found.
enum Copy {
    /// A waiting message, copied untorn.
    Took(PeekedSlot),
    /// The slot holds no waiting message.
    NotWaiting,
    /// The slot changed during the copy.
    Moved,
}

impl<M: Loads> Engine<M> {
    /// Copies of up to `max` waiting messages (ready, pending, delayed), in
    /// ring position order, without changing anything: no claim, no
    /// delivery counted. A scan of every slot word (and `max` copies): for
    /// tools, not for a hot loop. A message claimed or replaced while it
    /// is copied is left out.
    pub fn peek(&self, max: usize) -> Vec<PeekedSlot> {
        let cap = self.capacity();
        let want = (max as u64).min(cap) as usize;
        if want == 0 {
            return Vec::new();
        }
        // Pass 1: the `want` waiting messages of lowest position, kept in a
        // max-heap of (position, slot) bounded by `want`.
        let mut lowest: BinaryHeap<(u64, u64)> = BinaryHeap::with_capacity(want.min(4096) + 1);
        for i in 0..cap {
            let s = self.at(i);
            if PeekState::of(self.word_at(s).state()).is_none() {
                continue;
            }
            // Relaxed: an ordering hint for the list; the copy checks again.
            let position = self.load_at(s, slot::POSITION, Ordering::Relaxed);
            if lowest.len() < want {
                lowest.push((position, i));
            } else if lowest.peek().is_some_and(|&(top, _)| position < top) {
                lowest.pop();
                lowest.push((position, i));
            }
        }
        // Pass 2: copy each, retrying once a copy that moved under us.
        let mut out: Vec<PeekedSlot> = Vec::with_capacity(lowest.len());
        for (_, i) in lowest.into_sorted_vec() {
            for _ in 0..2 {
                match self.peek_slot(i) {
                    Copy::Took(p) => {
                        out.push(p);
                        break;
                    }
                    Copy::NotWaiting => break,
                    Copy::Moved => continue,
                }
            }
        }
        // A retried copy may be another message with another position.
        out.sort_by_key(|p| p.position);
        out
    }

    /// One seqlock read of slot `i` (see the module's docs).
    fn peek_slot(&self, i: u64) -> Copy {
        let s = self.at(i);
        // Acquire: pairs with the release of the CAS that made the message
        // waiting (a commit, a nack), so its metadata and payload are seen.
        let w = self.word_at(s);
        let Some(state) = PeekState::of(w.state()) else {
            return Copy::NotWaiting;
        };
        // Relaxed: ordered after the acquire above, and checked against the
        // word read again after the acquire fence below.
        let rd = |f: usize| self.load_at(s, f, Ordering::Relaxed);
        let position = rd(slot::POSITION);
        let claim = rd(slot::CLAIM);
        let key = rd(slot::KEY);
        let version = rd(slot::VERSION);
        let enqueued_ns = rd(slot::ENQUEUED_NS);
        let deliveries = AttemptsWord(rd(slot::ATTEMPTS)).count();
        let lease = LeaseWord(rd(slot::LEASE));
        let len_word = LenWord(rd(slot::LEN));
        let expires_ns = len_word.expires().then(|| rd(slot::EXPIRES));
        let len = len_word.length_within(self.layout.params.max_message_size);
        let offset = self.payload_offset(i);
        if !offset
            .checked_add(len as usize)
            .is_some_and(|end| end <= self.mem.len())
        {
            // A layout and a memory that disagree: nothing to copy safely.
            return Copy::NotWaiting;
        }
        let mut payload = vec![0u8; len as usize];
        self.mem.read_bytes(offset, &mut payload);
        // Acquire fence: the loads and the copy above are ordered before
        // the loads below (the seqlock reader's rule), so a writer that
        // changed the slot during the copy has changed the word we read
        // next.
        crate::sync::fence(Ordering::Acquire);
        let again = self.word_at(s);
        if !again.is(w.state(), w.owner(), w.seq())
            || rd(slot::POSITION) != position
            || rd(slot::CLAIM) != claim
        {
            return Copy::Moved;
        }
        Copy::Took(PeekedSlot {
            slot: i,
            position,
            state,
            key,
            version,
            deliveries,
            enqueued_ns,
            not_before_ns: (state == PeekState::Delayed)
                .then(|| lease.time_for(w.seq()))
                .flatten(),
            expires_ns,
            payload,
        })
    }
}
