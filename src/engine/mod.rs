//! The slot state machine: reserve, commit, abort, claim, ack, nack, reject,
//! extend, and the repairs (abandon, reclaim) that survivors make after a
//! participant dies or stalls.
//!
//! # The algorithm
//!
//! The ring is Vyukov's bounded MPMC queue (as in crossbeam's
//! `ArrayQueue`), changed in three ways:
//!
//! 1. **The slot word is the only truth.** Every state change of a slot is
//!    one compare-and-swap on its [`SlotWord`]; the `tail` and `head` cursors
//!    are hints that anyone may advance after seeing that a slot word already
//!    records the step. A process killed between any two instructions leaves
//!    every slot in a state that a survivor can read and repair.
//! 2. **Positions are decided, not just taken.** The word's `lap` is the lap
//!    of the next position at this slot that no producer has decided yet. A
//!    producer decides position `p` either by reserving the slot (it was
//!    free) or, when the slot still holds a message of an earlier lap that
//!    is out of ring order (claimed, delayed, waiting for redelivery), by
//!    *skipping* it: bumping the lap and leaving the message alone. That is
//!    how a message held for a long time costs its own slot only (G2):
//!    producers and consumers pass it every lap.
//! 3. **Claims leave ring order when they fail.** A message whose claim ends
//!    without an ack (nack, lease expiry, death of its consumer), or whose
//!    producer committed after consumers had already passed its position,
//!    becomes `PENDING` (or `DELAYED` until a time) in place. Consumers find
//!    such messages by scanning the slots, which they do only when the
//!    header's side-path epoch says something entered that path (or a delay
//!    fell due), before taking the next message in ring order.
//!
//! Fresh messages are therefore claimed in position order, which is commit
//! order for each producer (G6); redeliveries come first when present.
//!
//! # Fencing
//!
//! Every transition except a skip increments the word's sequence (21 bits;
//! 4 in the narrow test build), which keeps each CAS from acting on a word
//! that moved on. A sequence wraps, so it names nothing for long: a claim's
//! token is made from the slot's claim generation instead ([`ClaimWord`],
//! counted once per claim for the life of the file), and ack, nack, reject
//! and extend compare it, the word's owner and state, and the claim's lease
//! deadline, so a late call after the claim ended gets
//! [`Status::LeaseLost`](crate::Status::LeaseLost) and changes nothing (G3), however many transitions
//! passed. A commit compares its reservation's sequence with the word (the
//! reservation is the committer's own, and a stalled one is quarantined, not
//! reused), so a commit after the reservation was abandoned gets
//! [`Status::Abandoned`](crate::Status::Abandoned) (G5).
//!
//! # Latest-only replacement in place
//!
//! In latest-only mode a newer send of a key rewrites the key's waiting
//! (unclaimed) message in its slot, keeping its position, so that a key
//! updated faster than consumers reach it is not starved at the tail. The
//! old message's send returned `OK`, so a replacer that dies or stalls at
//! any instruction must leave the old or the new message deliverable (G4),
//! never neither and never a torn mix. Each participant of a latest-only
//! queue has a *replacement record* ([`crate::format::replace`]): a word
//! naming the slot and the sequence its take gives it, with a phase, and
//! room for one message. A replacement is:
//!
//! 1. [`Engine::take_waiting`]: the record says `INTENT` (slot, sequence)
//!    and then the slot moves from `READY`/`PENDING` to `RESERVED`/`PASSED`
//!    owned by the replacer. The old message is still whole in the slot.
//! 2. [`Engine::stage_replacement`]: the new message goes into the record,
//!    which then moves from `INTENT` to `COPY` (one CAS): the record is
//!    complete.
//! 3. [`Engine::commit_replacement`]: the record is copied into the slot,
//!    which is committed as a fresh commit would be; the record is cleared.
//!
//! Whoever repairs a reservation looks at its owner's record first. If it
//! names this reservation in `INTENT` (the owner died, or stalled past the
//! reservation timeout, before its record was complete), the repair moves
//! the record to `ABORTED` and puts the old message back in place (its
//! bytes were never touched): a stalled replacer's move to `COPY` then
//! fails, and it sends its message as a new one instead of writing the
//! slot. If it says `COPY` and the owner is dead, the repair finishes the
//! replacement from the record. If it says `COPY` and the owner only
//! stalled, the slot is quarantined (`ABANDONED`, see G5), because the
//! owner may still be copying into it; when it comes back, its commit
//! finds its quarantined slot and commits it `PENDING` (it reports
//! success), and if it dies first, its cleaner finishes from the record.
//! A stalled replacer's message is therefore not delivered before it comes
//! back or dies when it stalled in the copy itself (finishing for a live
//! copier could let its late stores tear a later message of the slot).
//!
//! # Lazily stamped metadata
//!
//! The lease deadline and the delivery count of a claim are written by the
//! claimer after its CAS. If it dies before, the word still says `CLAIMED`
//! with a sequence that the metadata's *tag* does not match; whoever reclaims
//! then stamps the metadata itself, so the lease runs from when it was first
//! seen and the delivery is still counted.

use crate::format::slot::{self, wrap_lap, ClaimWord, TokenCodec};
use crate::format::{hdr, Layout};
use crate::memory::{Loads, Memory};
use crate::sync::{AtomicU64, Ordering};

mod claim;
mod cursor;
mod dead_letters;
mod expiry;
mod fast;
mod handle_words;
pub mod header;
mod inspect;
mod keyed;
mod peek;
mod produce;
mod purge;
mod repair;
mod replace;
mod send;
mod settle;
mod side;
#[cfg(all(test, not(shmq_loom)))]
mod tests;

pub use crate::format::dlq::DeadLetterWord;
pub use crate::format::slot::{state, SlotState, SlotWord, LAP_BITS, SEQ_BITS, SEQ_MASK};
pub use claim::{Claim, Tally, PASS_AFTER_NS};
use cursor::{FullSearch, HeadWait, LazyCursor, FULL_SEARCH_EVERY, LAZY_CURSOR_EVERY};
pub use fast::Fast;
pub use handle_words::{Quiet, WaitOn};
pub use inspect::{
    DeadLetterRecord, HeaderCounters, HeaderIdentity, KeyEntrySnapshot, ParticipantSnapshot,
    SlotSnapshot,
};
use keyed::KeyTake;
pub use peek::{PeekState, PeekedSlot};
pub use produce::Reservation;
pub use repair::Repairs;
pub use send::{Committed, SendSpec};
pub use settle::{Outcome, Settled};

/// A slot at one sequence of its word: one state of the slot (a
/// reservation, a claim), named for as long as the word has not moved on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    /// Slot index.
    pub slot: u64,
    /// Sequence of the word.
    pub seq: u64,
}

/// Where slot `index`'s header words are: the offset computed, and checked
/// against the memory, once per operation rather than at every word (see
/// [`Engine::at`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotAt {
    /// Byte offset of the slot.
    offset: usize,
    /// Whether the slot lies inside the memory (`index < slots_in_bounds`).
    inside: bool,
}

/// The protocol's settings, read once from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Default lease of a claim.
    pub lease_ns: u64,
    /// Failed deliveries before dead-lettering (0 = unlimited).
    pub max_deliveries: u32,
    /// Age after which an uncommitted reservation is abandoned.
    pub reservation_timeout_ns: u64,
    /// The queue's default time to live of a message (0 = none).
    pub message_ttl_ns: u64,
    /// An expired message is dropped (and counted) rather than moved to
    /// the dead letters.
    pub expiry_drop: bool,
}

/// The protocol over a region of memory laid out by a [`Layout`].
pub struct Engine<M: Loads> {
    /// The memory.
    pub(crate) mem: M,
    /// Where everything is (validated, private copy).
    pub(crate) layout: Layout,
    /// Settings.
    pub(crate) config: Config,
    /// The key-table entry + 1 this handle looked up last (0: none), so the
    /// several lookups of one keyed operation hash and probe once. A hint in
    /// process memory, checked against the entry's key word at every use.
    key_hint: std::sync::atomic::AtomicU64,
    /// This handle's view of the tail cursor (see [`LazyCursor`]).
    tail_view: LazyCursor,
    /// This handle's view of the head cursor (see [`LazyCursor`]).
    head_view: LazyCursor,
    /// How often this handle searched a full queue (see [`FullSearch`]).
    full_search: FullSearch,
    /// The reservation that stopped this handle's claims (see [`HeadWait`]).
    head_wait: HeadWait,
    /// The number of slots whose header words were found inside the memory
    /// when the engine was built: the capacity, or 0 if the layout and the
    /// memory disagree. [`Engine::slot_field`] checks only that the slot
    /// index is below it (the layout is a private copy: it cannot change).
    slots_in_bounds: u64,
    /// How tokens are made from a slot and a claim generation.
    tokens: TokenCodec,
    /// Set when this handle's fast claim met a keyed message, cleared when
    /// its general claim takes a keyless one: keyed traffic skips the fast
    /// path's try (see `fast`). A hint in process memory.
    fast_claims_off: std::sync::atomic::AtomicBool,
}

impl<M: Loads> Engine<M> {
    /// An engine over memory that already holds a valid queue.
    pub fn new(mem: M, layout: Layout, config: Config) -> Engine<M> {
        let slots_end = (layout.params.capacity as usize)
            .checked_mul(layout.slot_stride)
            .and_then(|n| n.checked_add(layout.slots_offset));
        let slots_in_bounds = if layout.slots_offset % 8 == 0
            && layout.slots_offset >= crate::format::HEADER_SIZE
            && layout.slot_stride % 8 == 0
            && layout.slot_stride >= slot::PAYLOAD
            && slots_end.is_some_and(|end| end <= mem.len())
        {
            layout.params.capacity
        } else {
            0
        };
        let tokens = TokenCodec::for_capacity(layout.params.capacity);
        Engine {
            slots_in_bounds,
            tokens,
            mem,
            layout,
            config,
            key_hint: std::sync::atomic::AtomicU64::new(0),
            tail_view: LazyCursor::default(),
            head_view: LazyCursor::default(),
            full_search: FullSearch::default(),
            head_wait: HeadWait::default(),
            fast_claims_off: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The memory (for this repository's tests and tools).
    #[inline]
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Where everything is.
    #[inline]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The settings.
    #[inline]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Loads header word `offset` (one of [`hdr`]'s offsets) with `order`.
    #[inline]
    fn load_word(&self, offset: usize, order: Ordering) -> u64 {
        if self.slots_in_bounds > 0 && offset % 8 == 0 && offset + 8 <= crate::format::HEADER_SIZE {
            // SAFETY: as in `Engine::word`.
            unsafe { self.mem.load_u64_unchecked(offset, order) }
        } else {
            self.mem.load_u64(offset, order)
        }
    }

    /// Where slot `index`'s words are, for the accesses of one operation.
    #[inline(always)]
    pub(crate) fn at(&self, index: u64) -> SlotAt {
        let inside = index < self.slots_in_bounds;
        SlotAt {
            // Wrapping: an index past the capacity (a bug) is only used by
            // the checked accesses below, which refuse it.
            offset: self
                .layout
                .slots_offset
                .wrapping_add((index as usize).wrapping_mul(self.layout.slot_stride)),
            inside,
        }
    }

    /// Loads header word `field` (one of [`slot`]'s offsets below
    /// `PAYLOAD`) of the slot at `s` with `order`.
    #[inline(always)]
    pub(crate) fn load_at(&self, s: SlotAt, field: usize, order: Ordering) -> u64 {
        debug_assert!(field % 8 == 0 && field + 8 <= slot::PAYLOAD);
        if s.inside {
            // SAFETY: as in `Engine::slot_field` (`inside` is
            // `index < slots_in_bounds`, computed by `Engine::at`).
            unsafe { self.mem.load_u64_unchecked(s.offset + field, order) }
        } else {
            self.mem.load_u64(s.offset.wrapping_add(field), order)
        }
    }

    /// The state word of the slot at `s`.
    #[inline(always)]
    pub(crate) fn word_at(&self, s: SlotAt) -> SlotWord {
        // Acquire: as in `Engine::slot_word`.
        SlotWord(self.load_at(s, slot::WORD, Ordering::Acquire))
    }

    /// Loads header word `field` of slot `slot` with `order` (see
    /// [`Engine::slot_field`]).
    #[inline]
    fn load_slot_field(&self, slot: u64, field: usize, order: Ordering) -> u64 {
        debug_assert!(field % 8 == 0 && field + 8 <= slot::PAYLOAD);
        let offset = self.layout.slot(slot) + field;
        if slot < self.slots_in_bounds {
            // SAFETY: as in `Engine::slot_field`.
            unsafe { self.mem.load_u64_unchecked(offset, order) }
        } else {
            // A bad index (a bug) fails loudly here.
            self.mem.load_u64(offset, order)
        }
    }

    /// The state word of `slot`.
    #[inline]
    pub fn slot_word(&self, slot: u64) -> SlotWord {
        // Acquire: pairs with the release of the CAS that wrote it, so the
        // metadata written before that CAS is visible.
        SlotWord(self.load_slot_field(slot, slot::WORD, Ordering::Acquire))
    }

    /// Number of slots.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.layout.params.capacity
    }

    /// The fencing token of the claim of `slot` with generation
    /// `generation` (see [`TokenCodec`]): unique for the life of the file
    /// until one slot has been claimed 2^(64 - slot bits) times.
    #[inline]
    pub fn token_of(&self, slot: u64, generation: u64) -> u64 {
        self.tokens.token(slot, generation)
    }

    /// Splits a token into slot and generation (truncated to the bits a
    /// token has). `None` if it names no slot.
    #[inline]
    pub fn split_token(&self, token: u64) -> Option<(u64, u64)> {
        let (slot, generation) = self.tokens.split(token);
        (slot < self.capacity() && generation != 0).then_some((slot, generation))
    }

    /// The token of slot `slot`'s current (or last) claim, as its claim word
    /// says: for `verify`, models and tests.
    pub fn claim_token(&self, slot: u64) -> u64 {
        // Acquire: pairs with the stamper's CAS.
        let c = ClaimWord(self.load_slot_field(slot, slot::CLAIM, Ordering::Acquire));
        self.token_of(slot, c.generation())
    }

    /// Whether generation `stored` (56 bits, from a claim word) is the one a
    /// token carries (`64 - slot_bits` bits).
    #[inline]
    fn same_generation(&self, stored: u64, from_token: u64) -> bool {
        self.tokens.same_generation(stored, from_token)
    }

    /// Most cursor steps one call takes: a few laps, however the slots read.
    #[inline]
    fn walk_limit(&self) -> u64 {
        self.capacity().saturating_mul(4).saturating_add(64)
    }

    #[inline]
    fn split(&self, position: u64) -> (u64, u64) {
        let cap = self.capacity();
        (position % cap, wrap_lap(position / cap))
    }

    /// Offset of a slot's payload.
    #[inline]
    pub fn payload_offset(&self, slot: u64) -> usize {
        self.layout.slot(slot) + slot::PAYLOAD
    }
}

impl<M: Memory> Engine<M> {
    /// Writes an empty queue's mutable state into zeroed memory (the header
    /// parameters are written by the caller). Slot words start `FREE`, lap 0.
    pub fn format(&self) {
        // Relaxed: the memory is private to the creator until the magic
        // number is published with release ordering.
        self.word(hdr::SIDE_NEXT_DUE)
            .store(u64::MAX, Ordering::Relaxed);
    }

    /// Header word `offset` (one of [`hdr`]'s offsets).
    #[inline(always)]
    fn word(&self, offset: usize) -> &AtomicU64 {
        if self.slots_in_bounds > 0 && offset % 8 == 0 && offset + 8 <= crate::format::HEADER_SIZE {
            // SAFETY: `slots_in_bounds` says the slots, which start after
            // the header, lie inside the memory, so the whole header does;
            // the offset is 8-aligned and inside the header (checked above:
            // the compiler folds both checks for the constant offsets).
            unsafe { self.mem.u64_at_unchecked(offset) }
        } else {
            self.mem.u64_at(offset)
        }
    }

    /// Header word `field` (one of [`slot`]'s offsets below `PAYLOAD`) of
    /// slot `slot`: one compare on the hot path instead of a bounds check
    /// of the offset (a fifth of the instructions of a message were those).
    #[inline(always)]
    fn slot_field(&self, slot: u64, field: usize) -> &AtomicU64 {
        debug_assert!(field % 8 == 0 && field + 8 <= slot::PAYLOAD);
        let offset = self.layout.slot(slot) + field;
        if slot < self.slots_in_bounds {
            // SAFETY: `slots_in_bounds` says every slot `0..capacity` lies
            // inside the memory, 8-aligned, with its header words below
            // `PAYLOAD <= slot_stride`; `field` is such a word (a constant
            // of `format::slot`); the layout never changes after `new`.
            unsafe { self.mem.u64_at_unchecked(offset) }
        } else {
            // A bad index (a bug) fails loudly here.
            self.mem.u64_at(offset)
        }
    }

    /// Header word `field` (one of [`slot`]'s offsets below `PAYLOAD`) of
    /// the slot at `s` (see [`Engine::at`]).
    #[inline(always)]
    pub(crate) fn field(&self, s: SlotAt, field: usize) -> &AtomicU64 {
        debug_assert!(field % 8 == 0 && field + 8 <= slot::PAYLOAD);
        if s.inside {
            // SAFETY: `inside` says the slot's index is below
            // `slots_in_bounds` (see `Engine::at`), so, as in
            // `Engine::slot_field`, its header words lie inside the memory,
            // 8-aligned, and `field` is one of them.
            unsafe { self.mem.u64_at_unchecked(s.offset + field) }
        } else {
            // A bad index (a bug) fails loudly here.
            self.mem.u64_at(s.offset.wrapping_add(field))
        }
    }

    #[inline]
    fn cas_slot(&self, slot: u64, old: SlotWord, new: SlotWord) -> bool {
        let s = self.at(slot);
        // SeqCst: the commit and free transitions are followed by a load of
        // the sleeper counts (see `wait`), which needs a single total order
        // with the sleepers' registration; on x86 this costs nothing over
        // AcqRel since a locked instruction is a full barrier anyway.
        self.field(s, slot::WORD)
            .compare_exchange(old.0, new.0, Ordering::SeqCst, Ordering::Acquire)
            .is_ok()
    }

    /// Moves slot `i` from `from` (matched by state, owner and sequence,
    /// whatever its lap) to `to_state` owned by `to_owner`, with the next
    /// sequence and the current lap. Retries while only the lap moves
    /// (producers skipping the slot). `None` if the slot left `from`.
    fn transit(
        &self,
        i: u64,
        from: SlotWord,
        to_state: SlotState,
        to_owner: u64,
    ) -> Option<SlotWord> {
        let s = self.at(i);
        let mut cur = from;
        loop {
            let next = cur.transition(to_state, to_owner);
            match self.field(s, slot::WORD).compare_exchange(
                cur.0,
                next.0,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(actual) => {
                    let a = SlotWord(actual);
                    if !a.same_step(from) {
                        return None;
                    }
                    cur = a;
                }
            }
        }
    }

    /// Stamps the claim generation of the claim of slot `i` whose word is
    /// `claim` unless it is stamped already, and returns it; `None` if the
    /// slot no longer holds that claim and it was never stamped (a stalled
    /// claimer that lost its claim before stamping it).
    fn stamp_claim(&self, i: u64, claim: SlotWord) -> Option<u64> {
        let s = self.at(i);
        let seq = claim.seq();
        let f = self.field(s, slot::CLAIM);
        loop {
            // Acquire: pairs with the AcqRel of another stamper's CAS.
            let c = ClaimWord(f.load(Ordering::Acquire));
            if c.stamped_for(seq) {
                return Some(c.generation());
            }
            // Stamp only while the claim is still current: whoever ends a
            // claim stamps it before its transition, so once it has ended
            // the word differs from `c` and the CAS below fails.
            if !self
                .slot_word(i)
                .is(state::CLAIMED, claim.owner(), claim.seq())
            {
                return None;
            }
            let next = c.next_claim(seq);
            if f.compare_exchange(c.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(next.generation());
            }
        }
    }

    /// A pointer to slot `slot`'s payload, `len` bytes long (`None` if that
    /// leaves the memory): for payloads used in place.
    #[inline]
    pub fn payload_ptr(&self, slot: u64, len: usize) -> Option<*mut u8> {
        self.mem.byte_ptr(self.payload_offset(slot), len)
    }
}
