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
//! [`Status::LeaseLost`] and changes nothing (G3), however many transitions
//! passed. A commit compares its reservation's sequence with the word (the
//! reservation is the committer's own, and a stalled one is quarantined, not
//! reused), so a commit after the reservation was abandoned gets
//! [`Status::Abandoned`] (G5).
//!
//! # Latest-only replacement in place
//!
//! In latest-only mode a newer send of a key rewrites the key's waiting
//! (unclaimed) message in its slot, keeping its position, so that a key
//! updated faster than consumers reach it is not starved at the tail. The
//! old message's send returned `OK`, so a replacer that dies or stalls at
//! any instruction must leave the old or the new message deliverable (G4),
//! never neither and never a torn mix. Each participant of a latest-only
//! queue has a *replacement record* ([`crate::layout::replace`]): a word
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

use crate::error::{Error, Result, Status};
use crate::keys::KeyTable;
use crate::layout::{dlq, hdr, key as keyf, part, replace, slot, Layout};
use crate::memory::Memory;
use crate::sync::{spin_hint, AtomicU64, Ordering};

/// Slot states (4 bits of the word).
pub mod state {
    /// No message; the next undecided position at this slot may take it.
    pub const FREE: u64 = 0;
    /// A producer is writing the message (owner = producer).
    pub const RESERVED: u64 = 1;
    /// A producer is writing, and consumers have already passed its
    /// position: its commit makes it `PENDING` instead of `READY`.
    pub const PASSED: u64 = 2;
    /// Committed, waiting to be claimed in ring order.
    pub const READY: u64 = 3;
    /// Claimable out of ring order (redelivery, late commit).
    pub const PENDING: u64 = 4;
    /// Held by a consumer (owner = consumer).
    pub const CLAIMED: u64 = 5;
    /// Claimable once its not-before time has passed.
    pub const DELAYED: u64 = 6;
    /// On its way to the dead-letter area (owner = mover), or waiting for
    /// room there.
    pub const DLQ_WAIT: u64 = 7;
    /// A reservation abandoned because its producer stalled past the
    /// reservation timeout (owner = that producer, still alive). The slot is
    /// quarantined, not reused, so a late write by the producer can never
    /// tear another message; the producer frees it when it comes back
    /// (its commit gets `Abandoned`), or survivors do when it dies.
    pub const ABANDONED: u64 = 8;
    /// Number of valid states.
    pub const COUNT: u64 = 9;

    /// A readable name.
    pub fn name(s: u64) -> &'static str {
        match s {
            FREE => "free",
            RESERVED => "reserved",
            PASSED => "reserved-passed",
            READY => "ready",
            PENDING => "pending",
            CLAIMED => "claimed",
            DELAYED => "delayed",
            DLQ_WAIT => "dead-lettering",
            ABANDONED => "abandoned",
            _ => "invalid",
        }
    }
}

const STATE_MASK: u64 = 0xf;
const OWNER_SHIFT: u32 = 4;
const OWNER_MASK: u64 = 0x3ff;
const SEQ_SHIFT: u32 = 14;

/// Width of the word's sequence. Built with `--cfg shmq_narrow`, the tests
/// shrink it (and the lap) so that wrap-around happens within a few dozen
/// operations: nothing may rely on a sequence or lap being unique, only on
/// it differing from the last few.
#[cfg(not(shmq_narrow))]
pub const SEQ_BITS: u32 = 21;
/// Width of the word's sequence (narrow test build).
#[cfg(shmq_narrow)]
pub const SEQ_BITS: u32 = 4;
/// Width of the word's lap.
#[cfg(not(shmq_narrow))]
pub const LAP_BITS: u32 = 28;
/// Width of the word's lap (narrow test build).
#[cfg(shmq_narrow)]
pub const LAP_BITS: u32 = 4;

/// Mask of the sequence.
pub const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Set when a producer skipped the slot while it held its message: the
/// message's position is then older than `lap - 1` says.
const SKIPPED: u64 = 1 << (SEQ_SHIFT + SEQ_BITS);
const LAP_SHIFT: u32 = SEQ_SHIFT + SEQ_BITS + 1;
const LAP_MASK: u64 = (1 << LAP_BITS) - 1;
const _: () = assert!(LAP_SHIFT + LAP_BITS <= 64);

/// A slot's state word: `lap:28 | skipped:1 | seq:21 | owner:10 | state:4`
/// (high to low; [`LAP_BITS`] and [`SEQ_BITS`] are narrower in the
/// `shmq_narrow` test build).
///
/// - `state`: one of [`state`].
/// - `owner`: the participant index that owns a `RESERVED`, `PASSED`,
///   `CLAIMED` or `DLQ_WAIT` slot (0 otherwise).
/// - `seq`: incremented (mod 2^[`SEQ_BITS`]) by every transition except a
///   skip; CASes and metadata tags compare with it (tokens use the claim
///   generation, see [`ClaimWord`]).
/// - `skipped`: a producer skipped the slot while it held its message (set by
///   a skip, kept until the slot is freed); without it the message's
///   position is at lap `lap - 1`.
/// - `lap`: the lap (mod 2^[`LAP_BITS`]) of the next position at this slot that no
///   producer has decided.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct SlotWord(pub u64);

impl SlotWord {
    /// Packs a word.
    #[inline]
    pub fn new(state: u64, owner: u64, seq: u64, lap: u64) -> SlotWord {
        SlotWord(
            (state & STATE_MASK)
                | (owner & OWNER_MASK) << OWNER_SHIFT
                | (seq & SEQ_MASK) << SEQ_SHIFT
                | (lap & LAP_MASK) << LAP_SHIFT,
        )
    }
    /// The state.
    #[inline]
    pub fn state(self) -> u64 {
        self.0 & STATE_MASK
    }
    /// The owner.
    #[inline]
    pub fn owner(self) -> u64 {
        (self.0 >> OWNER_SHIFT) & OWNER_MASK
    }
    /// The sequence.
    #[inline]
    pub fn seq(self) -> u64 {
        (self.0 >> SEQ_SHIFT) & SEQ_MASK
    }
    /// The next undecided lap.
    #[inline]
    pub fn lap(self) -> u64 {
        (self.0 >> LAP_SHIFT) & LAP_MASK
    }
    /// The word after a transition to `state` owned by `owner`: the sequence
    /// moves on, the lap stays.
    #[inline]
    pub fn transition(self, state: u64, owner: u64) -> SlotWord {
        let w = SlotWord::new(state, owner, self.seq() + 1, self.lap());
        // The skip mark belongs to the message: it goes when the slot frees.
        if state == state::FREE {
            w
        } else {
            SlotWord(w.0 | (self.0 & SKIPPED))
        }
    }
    /// The same word with the lap moved on by one and the skip mark set.
    #[inline]
    fn skipped(self) -> SlotWord {
        SlotWord(SlotWord::new(self.state(), self.owner(), self.seq(), self.lap() + 1).0 | SKIPPED)
    }
    /// Whether a producer skipped the slot since its message arrived; if not,
    /// the message's position is at lap `lap - 1`.
    #[inline]
    pub fn was_skipped(self) -> bool {
        self.0 & SKIPPED != 0
    }
}

impl std::fmt::Debug for SlotWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}(owner {}, seq {}, lap {}{})",
            state::name(self.state()),
            self.owner(),
            self.seq(),
            self.lap(),
            if self.was_skipped() { ", skipped" } else { "" }
        )
    }
}

/// Signed distance `a - b` between two laps (mod 2^[`LAP_BITS`]).
#[inline]
fn lap_diff(a: u64, b: u64) -> i64 {
    (((a.wrapping_sub(b)) << (64 - LAP_BITS)) as i64) >> (64 - LAP_BITS)
}

/// A replacement record's word ([`replace::WORD`]): the slot, the sequence
/// of the replacement's reservation, and the phase.
#[inline]
fn replacing_word(slot: u64, seq: u64, phase: u64) -> u64 {
    (slot + 1) << 32 | phase << 28 | (seq & SEQ_MASK)
}

/// Unpacks a replacement record's word into `(slot, seq, phase)` (`None`
/// for 0 or a word that is no replacement: it is read from the mapping).
#[inline]
fn unpack_replacing(w: u64) -> Option<(u64, u64, u64)> {
    let slot = (w >> 32).checked_sub(1)?;
    let phase = (w >> 28) & 0xf;
    matches!(phase, replace::INTENT | replace::COPY | replace::ABORTED).then_some((
        slot,
        w & SEQ_MASK,
        phase,
    ))
}

const TAG_SHIFT: u32 = 42;
const VALUE_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// The lease value of a `DLQ_WAIT` slot whose mover found no room.
const DLQ_WAITING_MARK: u64 = 1;
/// Deadlines are stored in units of 2^16 ns (65.5 µs).
const TIME_SHIFT: u32 = 16;

#[inline]
fn tagged(tag: u64, value: u64) -> u64 {
    (tag & SEQ_MASK) << TAG_SHIFT | (value & VALUE_MASK)
}
#[inline]
fn tag_of(word: u64) -> u64 {
    word >> TAG_SHIFT
}
#[inline]
fn to_units(ns: u64) -> u64 {
    // Rounded up: a delay never ends early, a lease never ends early.
    (ns.saturating_add((1 << TIME_SHIFT) - 1) >> TIME_SHIFT).min(VALUE_MASK)
}
#[inline]
fn from_units(units: u64) -> u64 {
    units << TIME_SHIFT
}

/// Bits of a [`ClaimWord`] that tag it with the claim it was stamped for.
const CLAIM_TAG_BITS: u32 = if SEQ_BITS < 8 { SEQ_BITS } else { 8 };
const CLAIM_TAG_MASK: u64 = (1 << CLAIM_TAG_BITS) - 1;

/// A slot's claim word ([`slot::CLAIM`]): `generation:56 | tag:8`.
///
/// - `generation`: counted up by one for every claim of the slot, for the
///   life of the file (2^56 claims of one slot before it wraps). A claim's
///   fencing token is made from it ([`Engine::token_of`]), so a late
///   outcome can never name a later claim, however many transitions the
///   slot went through in between (the word's sequence wraps; this does
///   not).
/// - `tag`: the low bits of the slot word's sequence of the claim the
///   generation was stamped for. The stamp is lazy, like the lease: the
///   claimer stamps right after its claim CAS, and whoever takes a claim out
///   of `CLAIMED` without being its owner (a reclaimer, a dead-letter mover)
///   stamps it first if the claimer did not. Every commit re-tags the word
///   with its reservation's sequence, and every claim stamps it, so the tag
///   is never more than a few transitions old and cannot be mistaken for a
///   later claim's, whatever the width of the sequence.
///
/// A claimer that stalls between its claim CAS and its stamp cannot stamp
/// a claim it lost: it stamps with one CAS from the value it read while the
/// claim was still its own, and whoever ended the claim stamped (changed
/// the word) before that.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct ClaimWord(pub u64);

impl ClaimWord {
    /// Packs a claim word.
    #[inline]
    pub fn new(generation: u64, seq: u64) -> ClaimWord {
        ClaimWord(generation << CLAIM_TAG_BITS | (seq & CLAIM_TAG_MASK))
    }
    /// The generation.
    #[inline]
    pub fn generation(self) -> u64 {
        self.0 >> CLAIM_TAG_BITS
    }
    /// Whether the word was stamped for the claim with sequence `seq`.
    #[inline]
    pub fn stamped_for(self, seq: u64) -> bool {
        self.0 & CLAIM_TAG_MASK == seq & CLAIM_TAG_MASK
    }
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
}

/// A reservation: the slot a producer is writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Slot index.
    pub slot: u64,
    /// Sequence of the reserved word.
    pub seq: u64,
    /// Ring position.
    pub position: u64,
}

/// A claim: what a consumer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Slot index.
    pub slot: u64,
    /// Sequence of the claimed word.
    pub seq: u64,
    /// Ring position the message was reserved at.
    pub position: u64,
    /// Payload length (validated against `max_message_size`).
    pub len: usize,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// 1 on the first delivery.
    pub deliveries: u32,
    /// Monotonic time of the first commit.
    pub enqueued_ns: u64,
    /// Whether the message is sampled for the latency histograms.
    pub sampled: bool,
    /// The fencing token (see [`Engine::token_of`]).
    pub token: u64,
}

impl Claim {
    /// The fencing token: the claim's generation and its slot, unique for
    /// the life of the file.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// How a claim ends (or goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'r> {
    /// Done.
    Ack,
    /// Try again, not before this monotonic time (0 = now).
    Nack {
        /// Not-before time.
        not_before_ns: u64,
    },
    /// Give up: straight to dead letters.
    Reject {
        /// Why, kept with the dead letter.
        reason: &'r str,
    },
    /// Still working: the lease now ends at this monotonic time.
    Extend {
        /// New deadline.
        deadline_ns: u64,
    },
}

/// What a settled claim did, for the caller's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Acked and freed.
    Acked,
    /// Back for redelivery (now or later).
    Requeued,
    /// Moved to the dead-letter area.
    DeadLettered,
    /// Out of deliveries or rejected, but the dead-letter area is full: the
    /// message waits in its slot (`DLQ_WAIT`) and a later repair moves it
    /// (and counts it in [`Repairs::dead_lettered`]).
    DlqWaiting,
    /// Lease extended.
    Extended,
}

/// What a claim skipped on its way, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages completed without delivery because a newer version of
    /// their key was acked.
    pub stale: u64,
    /// Messages skipped because their key was busy.
    pub key_waits: u64,
    /// Input: when set, a claim that meets a reservation at the head (a
    /// producer still writing the next message) returns `None` at once and
    /// reports it in `blocked`, so that the caller decides when to pass it
    /// (see [`Engine::pass_reservation`]); when unset, the claim spins a
    /// little and then passes it.
    pub patient: bool,
    /// Output: the reservation that stopped a patient claim.
    pub blocked: Option<(u64, SlotWord)>,
    /// Internal: the side-path epoch seen before this claim looked at the
    /// side path; a head claim that sees it moved since goes back there
    /// first (a message committed off ring order before the one at the head
    /// must be claimed first).
    pub side_epoch: Option<u64>,
    /// Internal: the side path moved while the head was being read.
    pub side_moved: bool,
}

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
    }
}

/// The protocol over a region of memory laid out by a [`Layout`].
pub struct Engine<M: Memory> {
    /// The memory.
    pub mem: M,
    /// Where everything is (validated, private copy).
    pub layout: Layout,
    /// Settings.
    pub config: Config,
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
    /// The number of slots whose header words were found inside the memory
    /// when the engine was built: the capacity, or 0 if the layout and the
    /// memory disagree. [`Engine::slot_field`] checks only that the slot
    /// index is below it (the layout is a private copy: it cannot change).
    slots_in_bounds: u64,
    /// Bits of a token that name the slot: enough for `capacity - 1`.
    slot_bits: u32,
}

/// How often a producer polling a full queue searches it anyway.
///
/// A producer whose tail slot still holds a message looks ahead for a slot
/// freed out of ring order (G2: a held message costs its own slot only).
/// On a full queue whose consumer works in order there is none, and reading
/// a lap of slot words for every message cost the producer most of its time
/// and the consumer a cache-line invalidation for every slot it then wrote
/// (`perf`: 20% of a one-to-one run in that search). So the producer first
/// sums the participants' tallies ([`Engine::occupied`]): when every slot
/// is taken, there is nothing to find. A crash between a slot CAS and its
/// tally can only leave the tallies too low (see [`Engine::transit_free`]),
/// which costs a search; should they ever read too high (a scribbled
/// entry), every this many answers from the tallies the producer searches
/// the slots themselves, and searches every time while that finds room.
#[derive(Default)]
struct FullSearch {
    /// Answers given from the tallies since the last search.
    uses: std::sync::atomic::AtomicU64,
    /// The last search found a free slot while the tallies said every slot
    /// was taken (a crash left them one too high): search every time until
    /// a search agrees with them again, instead of answering `Full` from
    /// them with a slot free.
    tallies_wrong: std::sync::atomic::AtomicBool,
}

/// How many polls the tallies answer before the search runs again.
const FULL_SEARCH_EVERY: u64 = 256;

/// A handle's private view of a shared cursor (`TAIL` or `HEAD`), so that a
/// lone producer or consumer does not pay a locked CAS on the shared cursor
/// line for every message.
///
/// Every position below a cursor is decided; the shared cursor is only a
/// lower bound of the true one (readers walk on from it, slot by slot, over
/// decided positions: that is how a crash between a slot CAS and the cursor
/// move is tolerated already). The position after the last one this handle
/// decided is a lower bound too, so a walk starts at the larger of the two.
/// The shared cursor is moved on (never back: one CAS from the value read,
/// only forward) after every decision while others move it too, and every
/// [`LAZY_CURSOR_EVERY`] positions while this handle is alone on it, so
/// that it lags the truth by less than that and readers that come and go
/// walk only a few decided slots.
///
/// Process memory, one per handle; std atomics only because `Engine` is
/// shared between the threads of the loom models.
#[derive(Default)]
struct LazyCursor {
    /// The next position after the last one this handle decided.
    next: std::sync::atomic::AtomicU64,
    /// The value this handle last stored into the shared cursor.
    published: std::sync::atomic::AtomicU64,
}

/// How many positions a lone handle decides between two moves of the
/// shared cursor (fewer for tiny rings, where `verify` expects the cursor
/// within a lap of the slots).
const LAZY_CURSOR_EVERY: u64 = 16;

impl LazyCursor {
    /// Where a walk starts: the shared cursor or this handle's next
    /// position, whichever is further.
    #[inline]
    fn start(&self, shared: &AtomicU64) -> u64 {
        // Relaxed (both): lower bounds; the slot words decide.
        let mine = self.next.load(std::sync::atomic::Ordering::Relaxed);
        shared.load(Ordering::Relaxed).max(mine)
    }

    /// Records that every position below `p` is decided and moves the
    /// shared cursor on when due.
    #[inline]
    fn leave(&self, shared: &AtomicU64, p: u64, every: u64) {
        use std::sync::atomic::Ordering as O;
        // Relaxed: private to this handle.
        self.next.store(p, O::Relaxed);
        // Relaxed: the shared cursor is a hint (see above).
        let cur = shared.load(Ordering::Relaxed);
        if cur >= p {
            return;
        }
        let alone = cur == self.published.load(O::Relaxed);
        if !alone || p - cur >= every {
            // One try: if it fails, someone else moved the cursor on.
            // Release: a reader that sees the cursor past a position and
            // then reads its slot sees the decision (see `below_tail`).
            if shared
                .compare_exchange(cur, p, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                self.published.store(p, O::Relaxed);
            }
        }
    }
}

/// How far past a fresh message at the tail a producer looks for a slot
/// freed out of order. Queues of at most this many slots are therefore full
/// exactly when every slot is taken; larger ones may report `Full` while a
/// slot further on is free, until consumers catch up.
const LOOKAHEAD: u64 = 16;

/// How many times a consumer re-reads a `RESERVED` slot at the head before
/// it passes it (the producer is most likely copying its payload), or a
/// message another consumer is taking the key for before it parks it. (A
/// few under loom, where each re-read is a scheduling point to explore.)
const RESERVED_SPINS: u32 = if cfg!(shmq_loom) { 4 } else { 128 };

/// How taking a message's key for a claim went ([`Engine::acquire_key`]).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum KeyTake {
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
enum HolderState {
    /// Nobody holds the key (or the holder's claim ended).
    Free,
    /// A claim holds the key: its slot shows it.
    Held,
    /// A consumer took the key and has not yet made the claim CAS on
    /// `slot`, which still shows the sequence before `seq`.
    InTransit { slot: u64, seq: u64 },
}

impl<M: Memory> Engine<M> {
    /// An engine over memory that already holds a valid queue.
    pub fn new(mem: M, layout: Layout, config: Config) -> Engine<M> {
        let slots_end = (layout.params.capacity as usize)
            .checked_mul(layout.slot_stride)
            .and_then(|n| n.checked_add(layout.slots_offset));
        let slots_in_bounds = if layout.slots_offset % 8 == 0
            && layout.slots_offset >= crate::layout::HEADER_SIZE
            && layout.slot_stride % 8 == 0
            && layout.slot_stride >= slot::PAYLOAD
            && slots_end.is_some_and(|end| end <= mem.len())
        {
            layout.params.capacity
        } else {
            0
        };
        let slot_bits = 64 - (layout.params.capacity.max(1) - 1).leading_zeros();
        Engine {
            slots_in_bounds,
            slot_bits,
            mem,
            layout,
            config,
            key_hint: std::sync::atomic::AtomicU64::new(0),
            tail_view: LazyCursor::default(),
            head_view: LazyCursor::default(),
            full_search: FullSearch::default(),
        }
    }

    /// Writes an empty queue's mutable state into zeroed memory (the header
    /// parameters are written by the caller). Slot words start `FREE`, lap 0.
    pub fn format(&self) {
        // Relaxed: the memory is private to the creator until the magic
        // number is published with release ordering.
        self.word(hdr::SIDE_NEXT_DUE)
            .store(u64::MAX, Ordering::Relaxed);
    }

    /// Header word `offset` (one of [`hdr`]'s offsets).
    #[inline]
    fn word(&self, offset: usize) -> &AtomicU64 {
        if self.slots_in_bounds > 0 && offset % 8 == 0 && offset + 8 <= crate::layout::HEADER_SIZE {
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
    #[inline]
    fn slot_field(&self, slot: u64, field: usize) -> &AtomicU64 {
        debug_assert!(field % 8 == 0 && field + 8 <= slot::PAYLOAD);
        let offset = self.layout.slot(slot) + field;
        if slot < self.slots_in_bounds {
            // SAFETY: `slots_in_bounds` says every slot `0..capacity` lies
            // inside the memory, 8-aligned, with its header words below
            // `PAYLOAD <= slot_stride`; `field` is such a word (a constant
            // of `layout::slot`); the layout never changes after `new`.
            unsafe { self.mem.u64_at_unchecked(offset) }
        } else {
            // A bad index (a bug) fails loudly here.
            self.mem.u64_at(offset)
        }
    }

    /// The state word of `slot`.
    #[inline]
    pub fn slot_word(&self, slot: u64) -> SlotWord {
        // Acquire: pairs with the release of the CAS that wrote it, so the
        // metadata written before that CAS is visible.
        SlotWord(self.slot_field(slot, slot::WORD).load(Ordering::Acquire))
    }

    #[inline]
    fn cas_slot(&self, slot: u64, old: SlotWord, new: SlotWord) -> bool {
        // SeqCst: the commit and free transitions are followed by a load of
        // the sleeper counts (see `wait`), which needs a single total order
        // with the sleepers' registration; on x86 this costs nothing over
        // AcqRel since a locked instruction is a full barrier anyway.
        self.slot_field(slot, slot::WORD)
            .compare_exchange(old.0, new.0, Ordering::SeqCst, Ordering::Acquire)
            .is_ok()
    }

    /// Moves slot `i` from `from` (matched by state, owner and sequence,
    /// whatever its lap) to `to_state` owned by `to_owner`, with the next
    /// sequence and the current lap. Retries while only the lap moves
    /// (producers skipping the slot). `None` if the slot left `from`.
    fn transit(&self, i: u64, from: SlotWord, to_state: u64, to_owner: u64) -> Option<SlotWord> {
        let mut cur = from;
        loop {
            let next = cur.transition(to_state, to_owner);
            match self.slot_field(i, slot::WORD).compare_exchange(
                cur.0,
                next.0,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(actual) => {
                    let a = SlotWord(actual);
                    if a.state() != from.state()
                        || a.owner() != from.owner()
                        || a.seq() != from.seq()
                    {
                        return None;
                    }
                    cur = a;
                }
            }
        }
    }

    /// Number of slots.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.layout.params.capacity
    }

    /// The fencing token of the claim of `slot` with generation
    /// `generation`: `generation << slot_bits | slot`, where `slot_bits`
    /// is just enough for the capacity. Unique for the life of the file
    /// until one slot has been claimed 2^(64 - slot_bits) times (2^56 for
    /// up to 256 slots; 2^34 for the largest capacity, whose slots each see
    /// 2^-30 of the traffic).
    #[inline]
    pub fn token_of(&self, slot: u64, generation: u64) -> u64 {
        generation << self.slot_bits | slot
    }

    /// Splits a token into slot and generation (truncated to the bits a
    /// token has). `None` if it names no slot.
    #[inline]
    pub fn split_token(&self, token: u64) -> Option<(u64, u64)> {
        let slot = if self.slot_bits == 0 {
            0
        } else {
            token & (u64::MAX >> (64 - self.slot_bits))
        };
        let generation = if self.slot_bits == 0 {
            token
        } else {
            token >> self.slot_bits
        };
        (slot < self.capacity() && generation != 0).then_some((slot, generation))
    }

    /// The token of slot `slot`'s current (or last) claim, as its claim word
    /// says: for `verify`, models and tests.
    pub fn claim_token(&self, slot: u64) -> u64 {
        // Acquire: pairs with the stamper's CAS.
        let c = ClaimWord(self.slot_field(slot, slot::CLAIM).load(Ordering::Acquire));
        self.token_of(slot, c.generation())
    }

    /// Whether generation `stored` (56 bits, from a claim word) is the one a
    /// token carries (`64 - slot_bits` bits).
    #[inline]
    fn same_generation(&self, stored: u64, from_token: u64) -> bool {
        (stored << self.slot_bits) >> self.slot_bits == from_token
    }

    /// Stamps the claim generation of claim `seq` of slot `i` unless it is
    /// stamped already, and returns it; `None` if the slot no longer holds
    /// that claim and it was never stamped (a stalled claimer that lost its
    /// claim before stamping it).
    fn stamp_claim(&self, i: u64, seq: u64, owner: u64) -> Option<u64> {
        let f = self.slot_field(i, slot::CLAIM);
        loop {
            // Acquire: pairs with the AcqRel of another stamper's CAS.
            let c = ClaimWord(f.load(Ordering::Acquire));
            if c.stamped_for(seq) {
                return Some(c.generation());
            }
            // Stamp only while the claim is still current: whoever ends a
            // claim stamps it before its transition, so once it has ended
            // the word differs from `c` and the CAS below fails.
            let w = self.slot_word(i);
            if w.state() != state::CLAIMED || w.seq() != seq || w.owner() != owner {
                return None;
            }
            let next = ClaimWord::new(c.generation() + 1, seq);
            if f.compare_exchange(c.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(next.generation());
            }
        }
    }

    /// Most cursor steps one call takes: a few laps, however the slots read.
    #[inline]
    fn walk_limit(&self) -> u64 {
        self.capacity().saturating_mul(4).saturating_add(64)
    }

    #[inline]
    fn split(&self, position: u64) -> (u64, u64) {
        let cap = self.capacity();
        (position % cap, (position / cap) & LAP_MASK)
    }

    /// Offset of a slot's payload.
    #[inline]
    pub fn payload_offset(&self, slot: u64) -> usize {
        self.layout.slot(slot) + slot::PAYLOAD
    }

    // ----------------------------------------------------------------
    // Producers
    // ----------------------------------------------------------------

    /// Reserves the next free slot in ring order for a payload of `len`
    /// bytes. `Err(Full)` when the next slot in ring order still holds a
    /// message not yet claimed, or every slot is held.
    pub fn reserve(&self, me: u64, now: u64, len: usize) -> Result<Reservation> {
        let tail = self.word(hdr::TAIL);
        let mut p = self.tail_view.start(tail);
        let r = self.reserve_from(me, now, len, &mut p);
        self.tail_view.leave(tail, p, self.lazy_every());
        r
    }

    /// Whether the slot `ahead` positions past this handle's tail has been
    /// freed for its position (loads only). A producer waiting on a full
    /// queue polls this instead of retrying its next slot: consumers free
    /// slots about in ring order, so it comes back with room for a run of
    /// messages instead of one, and while it waits it reads a line the
    /// consumers are not working on (retrying the next slot at every poll
    /// pulled away the very line a consumer was about to ack).
    pub fn room_ahead(&self, ahead: u64) -> bool {
        let tail = self.word(hdr::TAIL);
        let p = self
            .tail_view
            .start(tail)
            .wrapping_add(ahead.min(self.capacity() - 1));
        let (i, lap) = self.split(p);
        let w = self.slot_word(i);
        lap_diff(w.lap(), lap) > 0 || (w.state() == state::FREE && w.lap() == lap)
    }

    /// How many positions a lone handle decides between two moves of a
    /// shared cursor.
    #[inline]
    fn lazy_every(&self) -> u64 {
        LAZY_CURSOR_EVERY.min(self.capacity() / 2).max(1)
    }

    /// [`Engine::reserve`] from position `p`, leaving `p` after the last
    /// position decided.
    fn reserve_from(&self, me: u64, now: u64, len: usize, p: &mut u64) -> Result<Reservation> {
        let tail = self.word(hdr::TAIL);
        let mut skips = 0u64;
        let mut stalls = 0u32;
        // Fresh messages this call may still skip to reach a free slot.
        let mut room = 0u64;
        // Held messages this call may still skip to reach a free slot.
        let mut held_room = 0u64;
        let mut walked = 0u64;
        loop {
            // Relaxed: the cursor is a hint; the slot CAS below decides.
            *p = (*p).max(tail.load(Ordering::Relaxed));
            let (i, lap) = self.split(*p);
            let w = self.slot_word(i);
            let d = lap_diff(w.lap(), lap);
            if d > 0 {
                // Bounded: the cursor lags the slots by at most the
                // producers that died or stalled between their two steps.
                walked += 1;
                if walked > self.walk_limit() {
                    return Err(Error::new(
                        Status::Corrupt,
                        format!("the tail cursor found no undecided position in {walked} steps: slot laps are scribbled"),
                    ));
                }
                // Someone already decided position p: walk on.
                *p = p.wrapping_add(1);
                continue;
            }
            if d < 0 {
                // The slot lags the cursor: only a scribbled cursor or slot
                // can do that. Re-read a few times, then report it.
                stalls += 1;
                if stalls > 64 {
                    return Err(Error::new(
                        Status::Corrupt,
                        format!(
                            "slot {i} is at lap {} behind the tail cursor at lap {lap}",
                            w.lap()
                        ),
                    ));
                }
                spin_hint();
                continue;
            }
            match w.state() {
                state::FREE => {
                    let mine = SlotWord::new(state::RESERVED, me, w.seq() + 1, lap + 1);
                    if !self.cas_slot(i, w, mine) {
                        continue;
                    }
                    let position = *p;
                    *p = p.wrapping_add(1);
                    self.tally(me, part::TOOK);
                    // Relaxed stores: we own the slot; the commit CAS publishes.
                    self.slot_field(i, slot::POSITION)
                        .store(position, Ordering::Relaxed);
                    self.slot_field(i, slot::LEASE).store(
                        tagged(
                            mine.seq(),
                            to_units(now.saturating_add(self.config.reservation_timeout_ns)),
                        ),
                        Ordering::Relaxed,
                    );
                    self.slot_field(i, slot::LEN)
                        .store(len as u64, Ordering::Relaxed);
                    return Ok(Reservation {
                        slot: i,
                        seq: mine.seq(),
                        position,
                    });
                }
                state::RESERVED | state::READY => {
                    // A message of an earlier lap still waits in ring order:
                    // the consumers are a whole ring behind. If a slot ahead was freed out of order (an abort, a
                    // redelivered message acked), skip this one like a held
                    // one (its consumers find it by its position) to reach
                    // it. First just ahead: when consumers free slots in
                    // order, the free ones are a whole lap away, and the
                    // tallies say so without a search.
                    if room == 0 {
                        room = self.room_past(*p, LOOKAHEAD);
                        if room == 0
                            && (self.occupied() < self.capacity()
                                || self
                                    .full_search
                                    .tallies_wrong
                                    .load(std::sync::atomic::Ordering::Relaxed))
                        {
                            // The tallies say a slot is free, further on
                            // than the lookahead (G1: `Full` only when every
                            // slot is taken): the slow path searches the lap.
                            room = self.free_slot_within(*p, self.capacity());
                        }
                    }
                    if room == 0 {
                        return Err(Error::new(Status::Full, "the queue is full"));
                    }
                    room -= 1;
                    if self.cas_slot(i, w, w.skipped()) {
                        *p = p.wrapping_add(1);
                        skips += 1;
                        if skips >= self.capacity() {
                            return Err(Error::new(Status::Full, "the queue is full"));
                        }
                    }
                }
                _ => {
                    // Held out of ring order: skip it, it keeps its slot
                    // (G2) -- but only towards a free slot within the lap.
                    // When every slot is held, skipping them all would burn
                    // a lap of positions per try (a producer polling a full
                    // queue moved the tail a lap per poll, and the head then
                    // had that many positions to walk: found by the
                    // model_ops fuzz target).
                    if held_room == 0 {
                        held_room = self.room_past(*p, self.capacity());
                    }
                    if held_room == 0 {
                        return Err(Error::new(Status::Full, "the queue is full"));
                    }
                    held_room -= 1;
                    if self.cas_slot(i, w, w.skipped()) {
                        *p = p.wrapping_add(1);
                        skips += 1;
                        if skips >= self.capacity() {
                            return Err(Error::new(Status::Full, "the queue is full"));
                        }
                    }
                }
            }
        }
    }

    /// Writes the payload of a reservation.
    pub fn write_payload(&self, r: &Reservation, data: &[u8]) {
        debug_assert!(data.len() as u64 <= self.layout.params.max_message_size);
        self.mem.write_bytes(self.payload_offset(r.slot), data);
    }

    /// Commits a reservation: the message becomes claimable (at
    /// `not_before_ns` if given). `Err(Abandoned)` if the reservation was
    /// abandoned meanwhile: nothing was sent.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub fn commit(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
    ) -> Result<u64> {
        self.commit_at(me, r, len, key, version, not_before_ns, now, now)
    }

    /// [`Engine::commit`] with an enqueue time of its own: `now` (the clock
    /// delays are stamped on) decides whether `not_before_ns` is still
    /// ahead; `enqueued_ns` (a precise time for a sampled message) is what
    /// the lead-time histogram measures from.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub fn commit_at(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
        enqueued_ns: u64,
    ) -> Result<u64> {
        self.commit_from(
            me,
            r,
            len,
            key,
            version,
            not_before_ns,
            now,
            enqueued_ns,
            false,
        )
    }

    /// [`Engine::commit_at`]; for a replacement (`replacing`), a slot
    /// quarantined while `me` stalled in its copy is committed `PENDING`
    /// (the replacement keeps its position), and a slot whose replacement a
    /// repair finished meanwhile is reported committed.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    fn commit_from(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
        enqueued_ns: u64,
        replacing: bool,
    ) -> Result<u64> {
        let i = r.slot;
        // Relaxed stores: we own the slot while it is ours; the commit CAS
        // (release) publishes them. If the reservation was abandoned, these
        // writes land on a free slot whose next producer overwrites them.
        self.slot_field(i, slot::KEY).store(key, Ordering::Relaxed);
        self.slot_field(i, slot::VERSION)
            .store(version, Ordering::Relaxed);
        self.slot_field(i, slot::ENQUEUED_NS)
            .store(enqueued_ns, Ordering::Relaxed);
        self.slot_field(i, slot::LEN)
            .store(len as u64, Ordering::Relaxed);
        self.slot_field(i, slot::ATTEMPTS)
            .store(tagged(r.seq, 0), Ordering::Relaxed);
        // Re-tag the claim word with this reservation's sequence (keeping
        // its generation), so that its tag is never many transitions old.
        // A load and a store: we own the slot, and a stalled claimer of an
        // earlier claim cannot stamp it any more (see `ClaimWord`).
        let claim = self.slot_field(i, slot::CLAIM);
        let generation = ClaimWord(claim.load(Ordering::Relaxed)).generation();
        claim.store(ClaimWord::new(generation, r.seq).0, Ordering::Relaxed);
        loop {
            let w = self.slot_word(i);
            let quarantined = replacing
                && w.state() == state::ABANDONED
                && w.owner() == me
                && w.seq() == (r.seq + 1) & SEQ_MASK;
            if !quarantined
                && (!(w.state() == state::RESERVED || w.state() == state::PASSED)
                    || w.owner() != me
                    || w.seq() != r.seq)
            {
                if replacing {
                    // Taken from us in the copy phase: only a repair that
                    // found us dead does that, and it finished the
                    // replacement from our record (a scribble aside).
                    return Ok(w.seq());
                }
                self.free_abandoned(me, r);
                return Err(Error::new(
                    Status::Abandoned,
                    "the reservation was abandoned before its commit (it stalled past the reservation timeout); nothing was sent",
                ));
            }
            let new = match (not_before_ns, w.state()) {
                (_, state::ABANDONED) => w.transition(state::PENDING, 0),
                (Some(t), _) if t > now => {
                    self.slot_field(i, slot::LEASE)
                        .store(tagged(r.seq + 1, to_units(t)), Ordering::Relaxed);
                    w.transition(state::DELAYED, 0)
                }
                (_, state::RESERVED) => w.transition(state::READY, 0),
                _ => w.transition(state::PENDING, 0),
            };
            if new.state() == state::PENDING {
                self.pending_entered(key);
            }
            if self.cas_slot(i, w, new) {
                if new.state() == state::DELAYED {
                    self.delay_entered(not_before_ns.unwrap_or(now));
                } else if new.state() == state::PENDING {
                    self.side_entered();
                }
                return Ok(new.seq());
            }
            if new.state() == state::PENDING {
                self.pending_left(key);
            }
            // The lap moved (a skip) or consumers passed us: read again.
        }
    }

    /// Frees our reservation's slot if it was abandoned (quarantined) while
    /// we stalled: now that we are back, nobody else writes it.
    fn free_abandoned(&self, me: u64, r: &Reservation) {
        let w = self.slot_word(r.slot);
        if w.state() == state::ABANDONED && w.owner() == me && w.seq() == (r.seq + 1) & SEQ_MASK {
            self.transit_free(me, r.slot, w);
        }
    }

    /// Gives a reservation back unused.
    pub fn abort(&self, me: u64, r: &Reservation) -> Result<()> {
        loop {
            let w = self.slot_word(r.slot);
            if !(w.state() == state::RESERVED || w.state() == state::PASSED)
                || w.owner() != me
                || w.seq() != r.seq
            {
                self.free_abandoned(me, r);
                return Err(Error::new(
                    Status::Abandoned,
                    "the reservation was already abandoned",
                ));
            }
            if self.transit_free(me, r.slot, w) {
                return Ok(());
            }
        }
    }

    /// [`Engine::free_slot_within`] for a producer blocked at position
    /// `p`, answered from the tallies when they say every slot is taken
    /// (see [`FullSearch`]).
    fn room_past(&self, p: u64, n: u64) -> u64 {
        use std::sync::atomic::Ordering as O;
        let uses = &self.full_search.uses;
        // Relaxed: a handle-private count; two threads of one handle at worst
        // search a little more often.
        let said_full = self.occupied() >= self.capacity();
        let wrong = &self.full_search.tallies_wrong;
        if said_full && !wrong.load(O::Relaxed) && uses.load(O::Relaxed) < FULL_SEARCH_EVERY {
            uses.fetch_add(1, O::Relaxed);
            return 0;
        }
        uses.store(0, O::Relaxed);
        let found = self.free_slot_within(p, n);
        if said_full {
            wrong.store(found != 0, O::Relaxed);
        }
        found
    }

    /// How many positions after `p` the nearest slot free for its position
    /// lies, looking at most `n` (and less than a lap) ahead (0: none).
    /// Loads only.
    fn free_slot_within(&self, p: u64, n: u64) -> u64 {
        let n = n.min(self.capacity() - 1);
        for k in 1..=n {
            let q = p.wrapping_add(k);
            let (i, lap) = self.split(q);
            let w = self.slot_word(i);
            if w.state() == state::FREE && w.lap() == lap {
                return k;
            }
        }
        0
    }

    /// Counts a slot taken from or returned to `FREE` in `me`'s entry (a
    /// plain store: only `me` writes it), or in a shared header word for a
    /// repair that runs outside any entry.
    #[inline]
    fn tally(&self, me: u64, field: usize) {
        self.tally_by(me, field, 1);
    }

    /// [`Engine::tally`] by `delta` (wrapping: -1 takes one back).
    #[inline]
    fn tally_by(&self, me: u64, field: usize, delta: u64) {
        if me < self.layout.params.participant_capacity {
            let w = self.mem.u64_at(self.layout.participant(me) + field);
            // Relaxed load + store: single writer; read only by `occupied`,
            // whose answer is a hint.
            w.store(
                w.load(Ordering::Relaxed).wrapping_add(delta),
                Ordering::Relaxed,
            );
        } else if field == part::FREED {
            self.word(hdr::FREED_UNOWNED)
                .fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Frees slot `i` from `from` (matched as [`Engine::transit`] does),
    /// counting it in `me`'s tally *before* the CAS and taking the count
    /// back if the CAS fails. A crash between the two then leaves the
    /// tallies one slot too *low*, which only makes a producer search a
    /// full ring once more; counted after the CAS, a crash left them one too
    /// high for ever, and a small queue answered `Full` with a slot free.
    fn transit_free(&self, me: u64, i: u64, from: SlotWord) -> bool {
        self.tally(me, part::FREED);
        if self.transit(i, from, state::FREE, 0).is_some() {
            return true;
        }
        self.tally_by(me, part::FREED, u64::MAX);
        false
    }

    /// Occupied slots, summed from the participants' tallies. A crash
    /// between a slot CAS and its tally leaves it one too low (a slot is
    /// counted taken after its CAS and freed before it); it only decides
    /// whether a producer blocked by a held or earlier message searches the
    /// ring for a slot freed out of order (see [`FullSearch`]).
    pub fn occupied(&self) -> u64 {
        let l = &self.layout;
        let mut took = 0u64;
        let mut freed = self.word(hdr::FREED_UNOWNED).load(Ordering::Relaxed);
        // Entries above the bound were never taken: their tallies are 0.
        let bound = crate::participants::Table::new(&self.mem, l).in_use_bound();
        for p in 0..bound {
            let base = l.participant(p);
            took = took.wrapping_add(self.mem.u64_at(base + part::TOOK).load(Ordering::Relaxed));
            freed = freed.wrapping_add(self.mem.u64_at(base + part::FREED).load(Ordering::Relaxed));
        }
        took.saturating_sub(freed)
    }

    // ----------------------------------------------------------------
    // Consumers
    // ----------------------------------------------------------------

    /// Claims the next claimable message: a due redelivery first, else the
    /// next message in ring order. `None` when nothing is claimable.
    pub fn claim(&self, me: u64, now: u64) -> Result<Option<Claim>> {
        self.claim_counted(me, now, &mut Tally::default())
    }

    /// Like [`Engine::claim`], counting what it skipped in `tally`.
    pub fn claim_counted(&self, me: u64, now: u64, tally: &mut Tally) -> Result<Option<Claim>> {
        let mut rounds = 0;
        loop {
            // Acquire: a message that went to the side path before the one
            // we find at the head was announced before that one's commit.
            tally.side_epoch = Some(self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire));
            tally.side_moved = false;
            let got = if self.side_needed(now) {
                match self.claim_side(me, now, tally)? {
                    Some(c) => Some(c),
                    None => self.claim_head(me, now, tally)?,
                }
            } else {
                self.claim_head(me, now, tally)?
            };
            let Some(c) = got else {
                if tally.side_moved && rounds < 8 {
                    rounds += 1;
                    continue;
                }
                return Ok(None);
            };
            if c.key != 0 && self.drop_if_stale(me, &c) {
                tally.stale += 1;
                continue;
            }
            return Ok(Some(c));
        }
    }

    /// A claimed keyed message strictly older than its key's last acked
    /// version is completed without delivery. Returns whether it was.
    fn drop_if_stale(&self, me: u64, c: &Claim) -> bool {
        let keys = self.keys();
        let Some(e) = keys.find(c.key) else {
            return false;
        };
        if c.version >= keys.last_acked(e) {
            return false;
        }
        let i = c.slot;
        let w = self.slot_word(i);
        if w.state() != state::CLAIMED || w.owner() != me || w.seq() != c.seq {
            return false;
        }
        if self.transit_free(me, i, w) {
            self.release_key(c.key, i, c.seq, me);
            return true;
        }
        false
    }

    /// The key table.
    #[inline]
    pub fn keys(&self) -> KeyTable<'_, M> {
        KeyTable::with_hint(&self.mem, &self.layout, &self.key_hint)
    }

    /// Counts a keyed message entering `PENDING`.
    fn pending_entered(&self, key: u64) {
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
    fn pending_left(&self, key: u64) {
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
    fn acquire_key(&self, me: u64, key: u64, i: u64, w: SlotWord, now: u64) -> KeyTake {
        let keys = self.keys();
        let Some(e) = keys.find(key) else {
            // A committed key always has an entry; without one (a scribbled
            // file) there is nothing to hold.
            return KeyTake::Taken;
        };
        let holder = keys.field(e, keyf::HOLDER);
        let claim_seq = (w.seq() + 1) & SEQ_MASK;
        let mine = crate::keys::holder_ref(i, claim_seq, me);
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
                            && (sw.seq() + 1) & SEQ_MASK == seq
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
    fn key_claimed(&self, me: u64, key: u64, i: u64, w: SlotWord, claimed: bool) {
        if !claimed {
            self.release_key(key, i, (w.seq() + 1) & SEQ_MASK, me);
        }
        self.set_taking_key(me, 0);
    }

    /// Records (or clears, with 0) the key entry + 1 that `me` is taking.
    #[inline]
    fn set_taking_key(&self, me: u64, entry_plus_one: u64) {
        if me < self.layout.params.participant_capacity {
            // Relaxed: read only by whoever cleans up after `me`, once `me`
            // is dead and wrote nothing more.
            self.mem
                .u64_at(self.layout.participant(me) + part::TAKING_KEY)
                .store(entry_plus_one, Ordering::Relaxed);
        }
    }

    /// What a holder word read from the key table means now.
    fn holder_state(&self, h: u64) -> HolderState {
        let Some((slot, seq, owner)) = crate::keys::unholder(h) else {
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
        if claimable && (w.seq() + 1) & SEQ_MASK == seq {
            return HolderState::InTransit { slot, seq };
        }
        HolderState::Free
    }

    /// Releases `key` if the claim `seq` of `slot` by `owner` holds it, and
    /// lets parked messages of the key be claimed.
    fn release_key(&self, key: u64, slot: u64, seq: u64, owner: u64) {
        if key == 0 {
            return;
        }
        let Some(e) = self.keys().find(key) else {
            return;
        };
        let mine = crate::keys::holder_ref(slot, seq, owner);
        let _ = self.keys().field(e, keyf::HOLDER).compare_exchange(
            mine,
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
    fn release_taken_key(&self, dead: u64) {
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
            if let Some((_, _, owner)) = crate::keys::unholder(h) {
                if owner == dead && self.holder_state(h) != HolderState::Held {
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
    fn park_ready(&self, i: u64, w: SlotWord, key: u64, p: &mut u64, tally: &mut Tally) {
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
    fn has_parked(&self, key: u64) -> bool {
        self.keys()
            .find(key)
            .is_some_and(|e| self.keys().field(e, keyf::PARKED).load(Ordering::Acquire) > 0)
    }

    /// Latest-only mode, step 1 of a replacement in place (see the module
    /// doc): takes the waiting message of `key` for replacement by a send of
    /// `version` (0: the key's next version, which the caller assigns after
    /// the take and which is newer than any waiting one). `Ok(None)` when
    /// there is nothing to replace (no waiting message, or it is claimed,
    /// delayed, or being replaced by a producer that stalled): queue a new
    /// one. `Stale` when the waiting one is not older.
    ///
    /// The waiting message is the one the key's waiting reference names
    /// (slot and position), if it is unclaimed: `READY` or `PENDING` (never
    /// delivered, parked behind a busy key, or back from a failed delivery:
    /// the replacement's delivery count starts again, and its claim tokens
    /// stay unique, since the slot's claim generation never goes back).
    ///
    /// `data`, if given, goes into `me`'s replacement record once there is
    /// a message to replace and before it is taken, so the slot is taken
    /// for less time. Needs the layout's replacement records (latest-only
    /// queues): without them, `Ok(None)`.
    pub fn take_waiting(
        &self,
        me: u64,
        key: u64,
        version: u64,
        now: u64,
        data: Option<&[u8]>,
    ) -> Result<Option<Reservation>> {
        let Some(rec) = self.layout.replacement(me) else {
            return Ok(None);
        };
        let Some(e) = self.keys().find(key) else {
            return Ok(None);
        };
        let got = self.take_waiting_at(me, rec, e, key, version, now, data);
        if !matches!(got, Ok(Some(_))) {
            // Release: a repair that reads it reads a complete record.
            self.mem
                .u64_at(rec + replace::WORD)
                .store(0, Ordering::Release);
        }
        got
    }

    #[allow(clippy::too_many_arguments)] // take_waiting's, with its record
    fn take_waiting_at(
        &self,
        me: u64,
        rec: usize,
        e: u64,
        key: u64,
        version: u64,
        now: u64,
        mut data: Option<&[u8]>,
    ) -> Result<Option<Reservation>> {
        let waiting = self.keys().field(e, keyf::WAITING);
        for _ in 0..1000 {
            // Acquire: the slot word check below validates the reference.
            let Some((i, pos)) = crate::keys::unref(waiting.load(Ordering::Acquire)) else {
                return Ok(None);
            };
            if i >= self.capacity() {
                return Ok(None);
            }
            let w = self.slot_word(i);
            let st = w.state();
            // Relaxed: written before the commit whose word we acquired;
            // the CAS below fails if the slot changed since. The position
            // tells the waiting message from a later one in its slot.
            if self.slot_field(i, slot::KEY).load(Ordering::Relaxed) != key
                || self.slot_field(i, slot::POSITION).load(Ordering::Relaxed) & 0xffff_ffff != pos
            {
                return Ok(None);
            }
            match st {
                state::READY | state::PENDING => {}
                state::RESERVED | state::PASSED
                    if matches!(
                        self.replacement_phase(w.owner(), i, w.seq()),
                        Some(replace::INTENT | replace::COPY)
                    ) =>
                {
                    // Another producer is replacing it right now: let it
                    // finish (bounded: after the loop, queue a new one).
                    spin_hint();
                    continue;
                }
                _ => return Ok(None),
            }
            let old = self.slot_field(i, slot::VERSION).load(Ordering::Relaxed);
            if version != 0 && version <= old {
                return Err(Error::new(
                    Status::Stale,
                    format!("version {version} is not newer than the waiting version {old}"),
                ));
            }
            if let Some(d) = data.take() {
                let n = d.len().min(self.layout.params.max_message_size as usize);
                self.mem.write_bytes(rec + replace::PAYLOAD, &d[..n]);
            }
            let st2 = if st == state::READY {
                state::RESERVED
            } else {
                state::PASSED
            };
            // The skip mark stays: it belongs to the position, which the
            // replacement keeps.
            let mine = SlotWord(SlotWord::new(st2, me, w.seq() + 1, w.lap()).0 | (w.0 & SKIPPED));
            // The reservation's deadline is kept in the record, not in the
            // slot's lease word: a replacer stalled here must not write
            // into a slot that a repair may give back meanwhile. Relaxed:
            // published by the release store of the word below.
            self.mem.u64_at(rec + replace::DEADLINE).store(
                now.saturating_add(self.config.reservation_timeout_ns),
                Ordering::Relaxed,
            );
            // Release, and before the CAS (whose release publishes it to
            // whoever sees the slot taken): a repair after our death at any
            // point from here on finds what to do in the record.
            self.mem.u64_at(rec + replace::WORD).store(
                replacing_word(i, mine.seq(), replace::INTENT),
                Ordering::Release,
            );
            if self.cas_slot(i, w, mine) {
                if st == state::PENDING {
                    self.pending_left(key);
                }
                return Ok(Some(Reservation {
                    slot: i,
                    seq: mine.seq(),
                    position: self.slot_field(i, slot::POSITION).load(Ordering::Relaxed),
                }));
            }
        }
        Ok(None)
    }

    /// Latest-only mode, step 2 of a replacement (see the module doc):
    /// writes the new message into `me`'s replacement record (`data`,
    /// unless [`Engine::take_waiting`] wrote it already) with its metadata
    /// (`len` as in [`slot::LEN`]), then marks the record complete. From
    /// then on a repair after `me`'s death finishes the replacement from the
    /// record. Returns false if a repair undid the take meanwhile (`me`
    /// stalled past the reservation timeout): the old message is back in
    /// place, untouched, and `me` must send its message as a new one.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub fn stage_replacement(
        &self,
        me: u64,
        r: &Reservation,
        key: u64,
        version: u64,
        len: u64,
        enqueued_ns: u64,
        data: Option<&[u8]>,
    ) -> bool {
        let Some(rec) = self.layout.replacement(me) else {
            return false;
        };
        // Relaxed: published by the CAS to COPY below.
        let put = |f: usize, v: u64| self.mem.u64_at(rec + f).store(v, Ordering::Relaxed);
        put(replace::KEY, key);
        put(replace::VERSION, version);
        put(replace::LEN, len);
        put(replace::ENQUEUED_NS, enqueued_ns);
        if let Some(d) = data {
            let n = d.len().min(self.layout.params.max_message_size as usize);
            self.mem.write_bytes(rec + replace::PAYLOAD, &d[..n]);
        }
        // AcqRel: whoever sees COPY sees the record complete; a repair that
        // moved it to ABORTED first wins, and we then leave the slot alone.
        if self
            .mem
            .u64_at(rec + replace::WORD)
            .compare_exchange(
                replacing_word(r.slot, r.seq, replace::INTENT),
                replacing_word(r.slot, r.seq, replace::COPY),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            return true;
        }
        self.abort_replacement(me, r);
        false
    }

    /// Latest-only mode, step 3 of a replacement (see the module doc):
    /// copies `me`'s complete replacement record into the taken slot and
    /// commits it in place (`READY`, or `PENDING` if consumers passed it or
    /// it was quarantined while `me` stalled), then clears the record.
    /// Returns the committed sequence. Never `Abandoned`: a replacement
    /// that got this far is delivered, by this call or by a repair after
    /// `me`'s death.
    pub fn commit_replacement(&self, me: u64, r: &Reservation, now: u64) -> Result<u64> {
        let Some(rec) = self.layout.replacement(me) else {
            return Err(Error::new(
                Status::InvalidArgument,
                "a replacement in place needs a latest-only queue",
            ));
        };
        let (key, version, len, enqueued) = self.copy_record(rec, r.slot);
        let res = self.commit_from(me, r, len as usize, key, version, None, now, enqueued, true);
        // Release: see `take_waiting`.
        self.mem
            .u64_at(rec + replace::WORD)
            .store(0, Ordering::Release);
        res
    }

    /// Copies the message of replacement record `rec` into slot `i`'s
    /// payload; returns its key, version, length word (flags kept, length
    /// clamped: it is read from the mapping) and enqueue time.
    fn copy_record(&self, rec: usize, i: u64) -> (u64, u64, u64, u64) {
        // Relaxed: ordered after the acquire that saw the record complete
        // (or written by this very participant).
        let get = |f: usize| self.mem.u64_at(rec + f).load(Ordering::Relaxed);
        let len_word = get(replace::LEN);
        let len = (len_word & 0xffff_ffff).min(self.layout.params.max_message_size);
        let mut buf = vec![0u8; len as usize];
        self.mem.read_bytes(rec + replace::PAYLOAD, &mut buf);
        self.mem.write_bytes(self.payload_offset(i), &buf);
        (
            get(replace::KEY),
            get(replace::VERSION),
            len | (len_word & slot::LEN_SAMPLED),
            get(replace::ENQUEUED_NS),
        )
    }

    /// Gives up a replacement that `me` took and has not started copying
    /// (its record never reached `COPY`): the old message goes back in
    /// place, as it was, unless a repair already put it back. Clears the
    /// record.
    pub fn abort_replacement(&self, me: u64, r: &Reservation) {
        for _ in 0..64 {
            let w = self.slot_word(r.slot);
            let ours = w.owner() == me
                && match w.state() {
                    state::RESERVED | state::PASSED => w.seq() == r.seq,
                    state::ABANDONED => w.seq() == (r.seq + 1) & SEQ_MASK,
                    _ => false,
                };
            if !ours || self.restore_waiting(r.slot, w) {
                break;
            }
        }
        if let Some(rec) = self.layout.replacement(me) {
            // Release: see `take_waiting`.
            self.mem
                .u64_at(rec + replace::WORD)
                .store(0, Ordering::Release);
        }
    }

    /// Puts the old message of an undone replacement back in slot `i`
    /// (word `w`: taken, `RESERVED` or `PASSED`, or quarantined,
    /// `ABANDONED`), with its metadata, which nobody touched: `READY` if
    /// consumers have not passed it, else `PENDING`. False if the word
    /// moved.
    fn restore_waiting(&self, i: u64, w: SlotWord) -> bool {
        // Relaxed: ordered after the acquire of the word.
        let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
        let to = if w.state() == state::RESERVED {
            state::READY
        } else {
            state::PENDING
        };
        self.enter(i, w, to, key)
    }

    /// Moves taken slot `i` (word `w`) to `to` (`READY` or `PENDING`),
    /// keeping the counts of a keyed pending message. False if the word
    /// moved.
    fn enter(&self, i: u64, w: SlotWord, to: u64, key: u64) -> bool {
        if to == state::PENDING {
            // Counted before the CAS, so a claimer never uncounts it first.
            self.pending_entered(key);
        }
        if self.transit(i, w, to, 0).is_some() {
            if to == state::PENDING {
                self.side_entered();
            }
            return true;
        }
        if to == state::PENDING {
            self.pending_left(key);
        }
        false
    }

    /// The phase of `owner`'s replacement record if it names its
    /// reservation `seq` of slot `i`.
    fn replacement_phase(&self, owner: u64, i: u64, seq: u64) -> Option<u64> {
        let rec = self.layout.replacement(owner)?;
        // Acquire: pairs with the owner's release stores and CASes.
        let (s, q, phase) =
            unpack_replacing(self.mem.u64_at(rec + replace::WORD).load(Ordering::Acquire))?;
        (s == i && q == seq & SEQ_MASK).then_some(phase)
    }

    /// A repair of slot `i` (word `w`, `owner`'s reservation `seq`, taken
    /// for a replacement whose record is not complete), after `owner` died
    /// or stalled past the reservation timeout: the old message is whole in
    /// the slot; put it back. The record moves to `ABORTED` first, so that
    /// a stalled owner learns it (its `stage_replacement` fails) and never
    /// writes the slot. False if the word or the record moved (look again).
    fn undo_replacement(&self, i: u64, w: SlotWord, owner: u64, seq: u64, dead: bool) -> bool {
        let Some(rec) = self.layout.replacement(owner) else {
            return false;
        };
        let word = self.mem.u64_at(rec + replace::WORD);
        let intent = replacing_word(i, seq, replace::INTENT);
        let aborted = replacing_word(i, seq, replace::ABORTED);
        // Acquire: pairs with the owner's release store.
        let cur = word.load(Ordering::Acquire);
        if cur == intent {
            if word
                .compare_exchange(intent, aborted, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
        } else if cur != aborted {
            return false;
        }
        if !self.restore_waiting(i, w) {
            return false;
        }
        if dead {
            let _ = word.compare_exchange(aborted, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        true
    }

    /// A repair of slot `i` (word `w`, `owner`'s reservation `seq`, taken
    /// for a replacement whose record is complete) after `owner` died:
    /// copies the record into the slot and commits it as `owner`'s
    /// `commit_replacement` would, keeping the position, and clears the
    /// record. Only for a dead owner: a live one may still be copying into
    /// the slot (a stalled one is quarantined instead). False if the word
    /// moved (look again).
    fn finish_replacement(&self, i: u64, w: SlotWord, owner: u64, seq: u64) -> bool {
        let Some(rec) = self.layout.replacement(owner) else {
            return false;
        };
        let (key, version, len, enqueued) = self.copy_record(rec, i);
        // Relaxed stores: the owner is dead and wrote its last; the CAS
        // below publishes them (as `commit_at`'s).
        self.slot_field(i, slot::KEY).store(key, Ordering::Relaxed);
        self.slot_field(i, slot::VERSION)
            .store(version, Ordering::Relaxed);
        self.slot_field(i, slot::ENQUEUED_NS)
            .store(enqueued, Ordering::Relaxed);
        self.slot_field(i, slot::LEN).store(len, Ordering::Relaxed);
        self.slot_field(i, slot::ATTEMPTS)
            .store(tagged(seq, 0), Ordering::Relaxed);
        let claim = self.slot_field(i, slot::CLAIM);
        let generation = ClaimWord(claim.load(Ordering::Relaxed)).generation();
        claim.store(ClaimWord::new(generation, seq).0, Ordering::Relaxed);
        let to = if w.state() == state::RESERVED {
            state::READY
        } else {
            state::PENDING
        };
        if !self.enter(i, w, to, key) {
            return false;
        }
        let _ = self.mem.u64_at(rec + replace::WORD).compare_exchange(
            replacing_word(i, seq, replace::COPY),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        true
    }

    /// Clears a dead participant's replacement record once it names no
    /// reservation of it any more (finished, undone, or never taken).
    fn clear_replacement(&self, dead: u64) {
        let Some(rec) = self.layout.replacement(dead) else {
            return;
        };
        let word = self.mem.u64_at(rec + replace::WORD);
        let cur = word.load(Ordering::Acquire);
        if cur == 0 {
            return;
        }
        if let Some((i, seq, _)) = unpack_replacing(cur) {
            if i < self.capacity() {
                let w = self.slot_word(i);
                let held = w.owner() == dead
                    && match w.state() {
                        state::RESERVED | state::PASSED => w.seq() == seq,
                        state::ABANDONED => w.seq() == (seq + 1) & SEQ_MASK,
                        _ => false,
                    };
                if held {
                    return;
                }
            }
        }
        let _ = word.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Latest-only mode: records the message committed in `slot` at ring
    /// `position` as the key's waiting one. The position (its low 32 bits)
    /// names the message for as long as it lives: it stays through claims
    /// that fail and through replacements in place, and the next message of
    /// the slot has another.
    pub fn set_waiting(&self, key: u64, slot: u64, position: u64) {
        if let Some(e) = self.keys().find(key) {
            // Release: the reference is checked against the slot anyway.
            self.keys().field(e, keyf::WAITING).store(
                crate::keys::slot_ref(slot, position & 0xffff_ffff),
                Ordering::Release,
            );
        }
    }

    /// Whether the side path may hold something claimable.
    #[inline]
    pub fn side_needed(&self, now: u64) -> bool {
        // Acquire: pairs with the release increment in `side_entered`, which
        // follows the CAS that put a message on the side path.
        self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire)
            != self.word(hdr::SIDE_CLEAN).load(Ordering::Acquire)
            || now >= self.word(hdr::SIDE_NEXT_DUE).load(Ordering::Relaxed)
    }

    fn side_entered(&self) {
        // SeqCst: sleepers re-check after registering; see `wait`.
        self.word(hdr::SIDE_DIRTY).fetch_add(1, Ordering::SeqCst);
    }

    fn delay_entered(&self, due: u64) {
        // Relaxed: the dirty epoch bump after it is what scanners synchronise
        // with; a scan that misses this minimum runs again because of it.
        self.word(hdr::SIDE_NEXT_DUE)
            .fetch_min(due, Ordering::Relaxed);
        self.side_entered();
    }

    /// Claims the next message in ring order.
    pub fn claim_head(&self, me: u64, now: u64, tally: &mut Tally) -> Result<Option<Claim>> {
        let head = self.word(hdr::HEAD);
        let mut p = self.head_view.start(head);
        let r = self.claim_head_from(me, now, tally, &mut p);
        self.head_view.leave(head, p, self.lazy_every());
        r
    }

    /// [`Engine::claim_head`] from position `p`, leaving `p` after the last
    /// position decided for the ring order.
    fn claim_head_from(
        &self,
        me: u64,
        now: u64,
        tally: &mut Tally,
        p: &mut u64,
    ) -> Result<Option<Claim>> {
        let head = self.word(hdr::HEAD);
        let mut spins = 0u32;
        let mut stalls = 0u32;
        let mut walked = 0u64;
        loop {
            // Bounded work per call, whatever the slots say: the next call
            // goes on from where this one left the cursor. (Spins on one
            // reservation are bounded on their own.)
            if spins == 0 {
                walked += 1;
                if walked > self.walk_limit() {
                    return Ok(None);
                }
            }
            // Relaxed: the cursor is a hint; the slot word decides.
            *p = (*p).max(head.load(Ordering::Relaxed));
            let (i, lap) = self.split(*p);
            let mut w = self.slot_word(i);
            let mut d = lap_diff(w.lap(), lap + 1);
            if d < 0 && self.below_tail(*p) {
                // Position p is decided (every position below the tail
                // cursor is), though the word we read says otherwise. Read
                // it again: the tail's acquire load synchronised with the
                // producer that decided p and then moved the tail on, so
                // this read sees its decision. If the lap still says
                // undecided, it is not the lap of p but one that ran half
                // the lap space ahead (producers passed this slot lap after
                // lap while no consumer came) and aliases (laps compare
                // modulo their width): decided all the same.
                w = self.slot_word(i);
                d = lap_diff(w.lap(), lap + 1).max(0);
            }
            if d < 0 {
                if d < -1 {
                    // The slot is more than a lap behind the head: only a
                    // scribble does that. Re-read, then report it.
                    stalls += 1;
                    if stalls > 64 {
                        return Err(Error::new(
                            Status::Corrupt,
                            format!(
                                "slot {i} is at lap {} behind the head cursor at lap {lap}",
                                w.lap()
                            ),
                        ));
                    }
                    spin_hint();
                    continue;
                }
                // Position p is not decided yet: nothing more in ring order.
                return Ok(None);
            }
            match w.state() {
                state::READY => {
                    if self.later_than(i, w, *p, lap) {
                        // Position p was skipped; this message is a later one.
                        *p = p.wrapping_add(1);
                        continue;
                    }
                    let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
                    if key != 0 && self.has_parked(key) {
                        // Older messages of this key wait off ring order:
                        // this one waits behind them (per-key order).
                        self.park_ready(i, w, key, p, tally);
                        continue;
                    }
                    // Something entered the side path since this claim
                    // looked there (a passed reservation committed, say):
                    // it may be older than this message; look there first.
                    if let Some(seen) = tally.side_epoch {
                        if self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire) != seen {
                            tally.side_moved = true;
                            return Ok(None);
                        }
                    }
                    if key != 0 {
                        match self.acquire_key(me, key, i, w, now) {
                            KeyTake::Taken => {}
                            KeyTake::Busy => {
                                // Another claim holds the key: this message
                                // waits off ring order for it to end.
                                self.park_ready(i, w, key, p, tally);
                                continue;
                            }
                            KeyTake::Contended => {
                                // Another consumer is claiming this very
                                // message: it moves the head on after its
                                // CAS. Should it stall there, park the
                                // message rather than stop every consumer.
                                spins += 1;
                                if spins < RESERVED_SPINS {
                                    spin_hint();
                                } else {
                                    spins = 0;
                                    self.park_ready(i, w, key, p, tally);
                                }
                                continue;
                            }
                        }
                    }
                    let claimed = self.transit(i, w, state::CLAIMED, me);
                    if key != 0 {
                        self.key_claimed(me, key, i, w, claimed.is_some());
                    }
                    let Some(mine) = claimed else {
                        continue;
                    };
                    *p = p.wrapping_add(1);
                    match self.finish_claim(i, mine, now)? {
                        Some(c) => return Ok(Some(c)),
                        None => continue,
                    }
                }
                state::RESERVED => {
                    // A producer is writing position p, or (if p was skipped
                    // and the slot freed and reserved again) a later one.
                    if self.later_than(i, w, *p, lap) {
                        *p = p.wrapping_add(1);
                        continue;
                    }
                    if tally.patient {
                        tally.blocked = Some((i, w));
                        return Ok(None);
                    }
                    // Ours: give it a moment, then pass it; its commit will
                    // put the message on the side path. (A position never
                    // written, by a producer that died at once, is passed
                    // too: its repair frees the slot.)
                    spins += 1;
                    if spins < RESERVED_SPINS {
                        spin_hint();
                        continue;
                    }
                    // Same sequence: it is still the producer's reservation.
                    let passed = SlotWord::new(state::PASSED, w.owner(), w.seq(), w.lap());
                    if self.cas_slot(i, w, passed) {
                        *p = p.wrapping_add(1);
                    }
                    spins = 0;
                }
                _ => {
                    // Position p is decided and holds nothing for the ring
                    // order: it was claimed, skipped, or completed.
                    *p = p.wrapping_add(1);
                }
            }
        }
    }

    /// Whether position `p` lies below the tail: decided for certain (the
    /// shared tail cursor and this handle's own view of it are lower bounds
    /// of the positions producers decided).
    #[inline]
    fn below_tail(&self, p: u64) -> bool {
        // Acquire: pairs with the release of the tail's move (`leave`), so
        // that a slot read after this sees the decisions below the tail.
        let shared = self.word(hdr::TAIL).load(Ordering::Acquire);
        // Relaxed: this handle's own decisions (program order). Not under
        // loom, whose models share one engine between participants: there
        // this view is another thread's, and loom does not see std atomics.
        let mine = if cfg!(shmq_loom) {
            0
        } else {
            self.tail_view
                .next
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        p < shared.max(mine)
    }

    /// Passes a reservation that stopped a patient claim for too long (its
    /// producer is slow or preempted): consumers go on with the next
    /// messages, and its commit puts it on the side path. Does nothing if the
    /// reservation moved on meanwhile.
    pub fn pass_reservation(&self, i: u64, w: SlotWord) {
        let mut cur = w;
        loop {
            // Same sequence and owner: it is still the producer's reservation.
            let passed = SlotWord(
                SlotWord::new(state::PASSED, cur.owner(), cur.seq(), cur.lap()).0
                    | (cur.0 & SKIPPED),
            );
            match self.slot_field(i, slot::WORD).compare_exchange(
                cur.0,
                passed.0,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => {
                    let a = SlotWord(actual);
                    if a.state() != state::RESERVED || a.seq() != w.seq() || a.owner() != w.owner()
                    {
                        return;
                    }
                    cur = a;
                }
            }
        }
    }

    /// Whether the message in slot `i` (word `w`, `RESERVED` or `READY`, not
    /// passed by the head) belongs to a position later than `p` (at `lap`),
    /// which means position `p` itself was skipped. Such a message is never
    /// older than `p`: the head has decided every position before it.
    #[inline]
    fn later_than(&self, i: u64, w: SlotWord, p: u64, lap: u64) -> bool {
        if w.state() == state::READY {
            // A committed message's position is exact (written before its
            // commit CAS, which the word's acquire load synchronised with):
            // no lap arithmetic, which aliases once producers passed the
            // slot half the lap space of times.
            // Relaxed: ordered after the acquire load of the word.
            return self.slot_field(i, slot::POSITION).load(Ordering::Relaxed) > p;
        }
        if !w.was_skipped() {
            // Its position is at lap `w.lap() - 1`.
            return lap_diff(w.lap(), lap + 1) > 0;
        }
        if lap_diff(w.lap(), lap + 2) == 0 {
            // Skipped once since, and not older than p: it is p's.
            return false;
        }
        // Skipped several laps since: ask the position. A reservation's
        // position is written just after its CAS; an unwritten one reads as
        // an older value, taken as p's (the head then passes it, which costs
        // order in this rare case, never a message).
        // Relaxed: ordered after the acquire load of the word.
        self.slot_field(i, slot::POSITION).load(Ordering::Relaxed) > p
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
    fn due_of(&self, i: u64, w: SlotWord) -> u64 {
        let lease = self.slot_field(i, slot::LEASE).load(Ordering::Relaxed);
        if tag_of(lease) == w.seq() {
            from_units(lease & VALUE_MASK)
        } else {
            0
        }
    }

    /// After a successful claim CAS: stamp the claim's generation, count
    /// the delivery, stamp the lease and read the message's metadata.
    /// `None` if the claim was lost before its generation was stamped (this
    /// claimer stalled past its lease right after its CAS): claim another.
    fn finish_claim(&self, i: u64, w: SlotWord, now: u64) -> Result<Option<Claim>> {
        let seq = w.seq();
        let Some(generation) = self.stamp_claim(i, seq, w.owner()) else {
            return Ok(None);
        };
        let deliveries = self.count_attempt(i, seq);
        self.stamp(i, seq, now.saturating_add(self.config.lease_ns));
        // Relaxed loads: ordered after the acquire of the word we CASed.
        let len_word = self.slot_field(i, slot::LEN).load(Ordering::Relaxed);
        let len = len_word & 0xffff_ffff;
        let claim = Claim {
            slot: i,
            seq,
            sampled: len_word & slot::LEN_SAMPLED != 0,
            position: self.slot_field(i, slot::POSITION).load(Ordering::Relaxed),
            len: len as usize,
            key: self.slot_field(i, slot::KEY).load(Ordering::Relaxed),
            version: self.slot_field(i, slot::VERSION).load(Ordering::Relaxed),
            deliveries,
            enqueued_ns: self
                .slot_field(i, slot::ENQUEUED_NS)
                .load(Ordering::Relaxed),
            token: self.token_of(i, generation),
        };
        if len > self.layout.params.max_message_size {
            // A scribbled length: never hand it out; dead-letter the message.
            let reason = format!("corrupt length {len} in slot {i}");
            self.settle(
                w.owner(),
                claim.token(),
                &Outcome::Reject { reason: &reason },
                now,
            )?;
            return Err(Error::new(
                Status::Corrupt,
                format!("{reason}: the message was moved to the dead letters"),
            ));
        }
        Ok(Some(claim))
    }

    /// Counts the delivery of claim `seq` unless someone already did; returns
    /// the delivery count.
    fn count_attempt(&self, i: u64, seq: u64) -> u32 {
        let f = self.slot_field(i, slot::ATTEMPTS);
        let a = f.load(Ordering::Relaxed);
        if tag_of(a) == seq {
            return (a & VALUE_MASK) as u32;
        }
        let n = (a & VALUE_MASK) + 1;
        // A plain store suffices: only the claimer and a reclaimer of this
        // very claim write this tag, and both write the same count.
        f.store(tagged(seq, n), Ordering::Relaxed);
        n as u32
    }

    /// Stamps the deadline of state `seq` unless someone already did.
    fn stamp(&self, i: u64, seq: u64, deadline: u64) -> u64 {
        let f = self.slot_field(i, slot::LEASE);
        let l = f.load(Ordering::Relaxed);
        if tag_of(l) == seq {
            return from_units(l & VALUE_MASK);
        }
        f.store(tagged(seq, to_units(deadline)), Ordering::Relaxed);
        deadline
    }

    /// Verifies that `token` names a claim `me` holds now; returns its slot
    /// and word. The slot word says `me` holds *a* claim of the slot; the
    /// claim word says which one (its generation never repeats), so a token
    /// of an earlier claim of `me`'s is refused however many transitions
    /// passed. `me` makes no other claim meanwhile (a handle is used by one
    /// thread at a time), so the word cannot become another claim of `me`'s
    /// between this check and the caller's CAS.
    ///
    /// With `now`, a claim whose lease ran out by then is no longer held
    /// either, even if no repair has taken it back yet: its outcome comes
    /// after the claim ended (G3), and the message will be redelivered.
    fn held(&self, me: u64, token: u64, now: Option<u64>) -> Result<(u64, SlotWord)> {
        let Some((i, generation)) = self.split_token(token) else {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("token {token:#x} names no claim of this queue"),
            ));
        };
        let w = self.slot_word(i);
        // Acquire: ordered after the word's acquire load anyway.
        let c = ClaimWord(self.slot_field(i, slot::CLAIM).load(Ordering::Acquire));
        if w.state() != state::CLAIMED
            || w.owner() != me
            || !c.stamped_for(w.seq())
            || !self.same_generation(c.generation(), generation)
        {
            return Err(Error::new(
                Status::LeaseLost,
                "the claim is no longer held: its lease expired or its outcome was already given",
            ));
        }
        if let Some(now) = now {
            // Relaxed: the claimer stamped it before handing out the claim
            // (program order for `me`); a reclaimer's stamp has the same tag.
            let lease = self.slot_field(i, slot::LEASE).load(Ordering::Relaxed);
            if tag_of(lease) == w.seq() && from_units(lease & VALUE_MASK) <= now {
                return Err(Error::new(
                    Status::LeaseLost,
                    "the claim is no longer held: its lease expired (the message will be redelivered)",
                ));
            }
        }
        Ok((i, w))
    }

    /// Copies the payload of the claim `token`, which `me` holds, into
    /// `buf`, and checks that the claim was still held after the copy (so
    /// the copy is not torn). Returns the payload length; `TooLarge` if
    /// `buf` is too small.
    pub fn read_claimed(&self, me: u64, token: u64, buf: &mut [u8]) -> Result<usize> {
        let (i, _) = self.held(me, token, None)?;
        // Relaxed: ordered after the acquire load of the word in `held`.
        let len = (self.slot_field(i, slot::LEN).load(Ordering::Relaxed) & 0xffff_ffff)
            .min(self.layout.params.max_message_size) as usize;
        if buf.len() < len {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "read: buffer of {} bytes for a {len}-byte payload",
                    buf.len()
                ),
            ));
        }
        self.mem.read_bytes(self.payload_offset(i), &mut buf[..len]);
        // Acquire fence: the copy above is ordered before the check below
        // (the seqlock reader's rule), so a claim lost during the copy is
        // seen.
        crate::sync::fence(Ordering::Acquire);
        self.held(me, token, None).map_err(|e| {
            if e.status() == Status::LeaseLost {
                Error::new(
                    Status::LeaseLost,
                    "the claim was lost during the copy; the copy may be torn",
                )
            } else {
                e
            }
        })?;
        Ok(len)
    }

    /// Gives the outcome of a claim.
    pub fn settle(&self, me: u64, token: u64, outcome: &Outcome<'_>, now: u64) -> Result<Settled> {
        let (i, first) = self.held(me, token, Some(now))?;
        // Relaxed: we hold the claim; the metadata was published by the
        // commit we synchronised with when claiming.
        let key = self.slot_field(i, slot::KEY).load(Ordering::Relaxed);
        if key != 0 && *outcome == Outcome::Ack {
            // Record the version before the slot is freed, so that a crash
            // in between never lets an older version through; if the ack
            // then fails, a redelivery of this same version is not older.
            let version = self.slot_field(i, slot::VERSION).load(Ordering::Relaxed);
            if let Some(e) = self.keys().find(key) {
                self.keys()
                    .field(e, keyf::LAST_ACKED)
                    .fetch_max(version, Ordering::AcqRel);
            }
        }
        let to_pending =
            matches!(*outcome, Outcome::Nack { not_before_ns } if not_before_ns <= now);
        if to_pending {
            // Counted before the CAS, so a claimer never uncounts it first.
            self.pending_entered(key);
        }
        let r = self.settle_slot(me, token, outcome, now);
        if to_pending && !matches!(r, Ok(Settled::Requeued)) {
            self.pending_left(key);
        }
        let r = r?;
        if r != Settled::Extended {
            self.release_key(key, i, first.seq(), me);
        }
        Ok(r)
    }

    fn settle_slot(&self, me: u64, token: u64, outcome: &Outcome<'_>, now: u64) -> Result<Settled> {
        loop {
            let (i, w) = self.held(me, token, Some(now))?;
            match *outcome {
                Outcome::Ack => {
                    if self.transit_free(me, i, w) {
                        return Ok(Settled::Acked);
                    }
                }
                Outcome::Extend { deadline_ns } => {
                    self.slot_field(i, slot::LEASE)
                        .store(tagged(w.seq(), to_units(deadline_ns)), Ordering::SeqCst);
                    // SeqCst load: if a reclaimer's CAS came first we see it.
                    self.held(me, token, None)?;
                    return Ok(Settled::Extended);
                }
                Outcome::Nack { not_before_ns } => {
                    let deliveries = self.count_attempt(i, w.seq());
                    if self.exhausted(deliveries) {
                        let reason = format!(
                            "nacked on delivery {deliveries}, the last of max_deliveries {}",
                            self.config.max_deliveries
                        );
                        if let Some(s) = self.dead_letter(me, i, w, &reason, now)? {
                            return Ok(s);
                        }
                        continue;
                    }
                    let new = if not_before_ns > now {
                        self.slot_field(i, slot::LEASE).store(
                            tagged(w.seq() + 1, to_units(not_before_ns)),
                            Ordering::Relaxed,
                        );
                        w.transition(state::DELAYED, 0)
                    } else {
                        w.transition(state::PENDING, 0)
                    };
                    if self.cas_slot(i, w, new) {
                        if new.state() == state::DELAYED {
                            self.delay_entered(not_before_ns);
                        } else {
                            self.side_entered();
                        }
                        return Ok(Settled::Requeued);
                    }
                }
                Outcome::Reject { reason } => {
                    if let Some(s) = self.dead_letter(me, i, w, reason, now)? {
                        return Ok(s);
                    }
                }
            }
        }
    }

    #[inline]
    fn exhausted(&self, deliveries: u32) -> bool {
        self.config.max_deliveries != 0 && deliveries >= self.config.max_deliveries
    }

    /// Moves a held message (word `w`, owned by anyone) to the dead-letter
    /// area: `DeadLettered` when it moved, `DlqWaiting` when it found no
    /// room and waits. `None` if the word changed under us.
    fn dead_letter(
        &self,
        me: u64,
        i: u64,
        w: SlotWord,
        reason: &str,
        now: u64,
    ) -> Result<Option<Settled>> {
        let Some(moving) = self.transit(i, w, state::DLQ_WAIT, me) else {
            return Ok(None);
        };
        // Told by the move itself, not by the slot read afterwards: once it
        // waits, another participant's repair may move it (and count it).
        Ok(Some(
            if self.finish_dead_letter(me, i, moving, reason, now)? {
                Settled::DeadLettered
            } else {
                Settled::DlqWaiting
            },
        ))
    }

    /// Copies a `DLQ_WAIT` slot owned by `me` into a dead-letter record and
    /// frees the slot. Returns whether it moved (false: no room, it waits).
    fn finish_dead_letter(
        &self,
        me: u64,
        i: u64,
        w: SlotWord,
        reason: &str,
        now: u64,
    ) -> Result<bool> {
        let source = self.dlq_source(i);
        let Some(rec) = self.dlq_allocate(me)? else {
            // No room: mark the slot as waiting, so that any participant's
            // maintenance may take the move over once there is room.
            self.slot_field(i, slot::LEASE)
                .store(tagged(w.seq(), DLQ_WAITING_MARK), Ordering::Release);
            // Relaxed: a hint for maintenance.
            self.word(hdr::DLQ_WAITING).fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        };
        let l = &self.layout;
        let base = l.dead_letter(rec);
        let len = (self.slot_field(i, slot::LEN).load(Ordering::Relaxed) & 0xffff_ffff)
            .min(l.params.max_message_size) as usize;
        let put = |f: usize, v: u64| self.mem.u64_at(base + f).store(v, Ordering::Relaxed);
        put(dlq::SOURCE, source);
        put(
            dlq::KEY,
            self.slot_field(i, slot::KEY).load(Ordering::Relaxed),
        );
        put(
            dlq::VERSION,
            self.slot_field(i, slot::VERSION).load(Ordering::Relaxed),
        );
        put(
            dlq::FIRST_ENQUEUED_NS,
            self.slot_field(i, slot::ENQUEUED_NS)
                .load(Ordering::Relaxed),
        );
        put(dlq::DEAD_NS, now);
        put(
            dlq::ATTEMPTS,
            self.slot_field(i, slot::ATTEMPTS).load(Ordering::Relaxed) & VALUE_MASK,
        );
        let last = self
            .mem
            .u64_at(l.participant(w.owner().min(l.params.participant_capacity - 1)))
            .load(Ordering::Relaxed)
            >> 32;
        put(dlq::LAST_CONSUMER, last);
        put(dlq::LEN, len as u64);
        let reason = &reason.as_bytes()[..reason.len().min(dlq::REASON_MAX)];
        put(dlq::REASON_LEN, reason.len() as u64);
        self.mem.write_bytes(base + dlq::REASON, reason);
        put(
            dlq::ID,
            self.word(hdr::DLQ_SEQ).fetch_add(1, Ordering::Relaxed) + 1,
        );
        let mut buf = vec![0u8; len];
        self.mem.read_bytes(self.payload_offset(i), &mut buf);
        self.mem.write_bytes(base + dlq::PAYLOAD, &buf);
        self.dlq_publish(rec, me);
        // The record is complete; the slot is free. A crash between the two
        // is repaired by `repair_dlq_wait`, which finds the record by source.
        if !self.transit_free(me, i, w) {
            return Err(Error::new(
                Status::Corrupt,
                format!("slot {i} changed while owned by its dead-letter mover"),
            ));
        }
        Ok(true)
    }

    /// Whether slot `i`, a `DLQ_WAIT` slot with word `w`, waits for room
    /// in the dead-letter area (its mover found none and marked it, so any
    /// participant may take the move over), rather than being moved now.
    pub fn dlq_waiting(&self, i: u64, w: SlotWord) -> bool {
        // Acquire: pairs with the release store of the mark.
        self.slot_field(i, slot::LEASE).load(Ordering::Acquire) == tagged(w.seq(), DLQ_WAITING_MARK)
    }

    /// What a dead-letter record moved from slot `i` names as its source:
    /// the token of the claim the message was taken from. Stable while the
    /// slot is `DLQ_WAIT` (no claim re-stamps it), whoever takes the move
    /// over, so a taker finds a record its predecessor wrote.
    fn dlq_source(&self, i: u64) -> u64 {
        // The claim was stamped before the move to `DLQ_WAIT`, which we
        // synchronised with through the word.
        self.claim_token(i)
    }

    fn dlq_word(&self, rec: u64) -> &AtomicU64 {
        self.mem.u64_at(self.layout.dead_letter(rec) + dlq::WORD)
    }

    /// Takes an empty dead-letter record for writing.
    fn dlq_allocate(&self, me: u64) -> Result<Option<u64>> {
        let cap = self.layout.params.dlq_capacity;
        let cursor = self.word(hdr::DLQ_CURSOR);
        // Relaxed: a hint of where to look.
        let start = cursor.load(Ordering::Relaxed) % cap;
        for k in 0..cap {
            let r = (start + k) % cap;
            let w = self.dlq_word(r).load(Ordering::Acquire);
            if w & 0xf == dlq::EMPTY {
                let seq = (w >> 16) + 1;
                let new = seq << 16 | me << 4 | dlq::WRITING;
                if self
                    .dlq_word(r)
                    .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    cursor.store(r + 1, Ordering::Relaxed);
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    fn dlq_publish(&self, rec: u64, me: u64) {
        let w = self.dlq_word(rec).load(Ordering::Relaxed);
        let new = (w >> 16) << 16 | me << 4 | dlq::FULL;
        // Release: the record's fields are visible to whoever sees FULL.
        self.dlq_word(rec).store(new, Ordering::Release);
    }

    // ----------------------------------------------------------------
    // Repairs
    // ----------------------------------------------------------------

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
                    let phase = self.replacement_phase(w.owner(), i, w.seq());
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
                                if self.undo_replacement(i, w, w.owner(), w.seq(), dead) {
                                    r.replacements += 1;
                                    return Ok(());
                                }
                                continue;
                            }
                            // Its new message is whole in its record, and
                            // its producer writes no more: finish it.
                            Some(replace::COPY) if dead => {
                                if self.finish_replacement(i, w, w.owner(), w.seq()) {
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
                    let seq = w.seq().wrapping_sub(1) & SEQ_MASK;
                    let done = match self.replacement_phase(w.owner(), i, seq) {
                        Some(replace::INTENT | replace::ABORTED) => {
                            Some(self.undo_replacement(i, w, w.owner(), seq, true))
                        }
                        Some(replace::COPY) => Some(self.finish_replacement(i, w, w.owner(), seq)),
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
                        if self.stamp_claim(i, w.seq(), w.owner()).is_none() {
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
                                    self.release_key(key, i, w.seq(), w.owner());
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
                            self.release_key(key, i, w.seq(), w.owner());
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

    /// Finishes a dead-letter move taken over from `old` (now `mine`): if the
    /// record was already written (the mover died after), only free the slot.
    fn repair_dlq_wait(
        &self,
        me: u64,
        i: u64,
        old: SlotWord,
        mine: SlotWord,
        now: u64,
    ) -> Result<bool> {
        let _ = old;
        let source = self.dlq_source(i);
        for rec in 0..self.layout.params.dlq_capacity {
            let base = self.layout.dead_letter(rec);
            let w = self.dlq_word(rec).load(Ordering::Acquire);
            if w & 0xf == dlq::FULL
                && self.mem.u64_at(base + dlq::SOURCE).load(Ordering::Relaxed) == source
            {
                if self.transit_free(me, i, mine) {
                    return Ok(true);
                }
                return Ok(false);
            }
        }
        self.finish_dead_letter(me, i, mine, "moved after its mover died", now)
    }

    /// Frees dead-letter records that the dead left half written, and puts
    /// back those they left half redriven.
    pub fn repair_dlq(&self, is_dead: &dyn Fn(u64) -> bool) {
        for rec in 0..self.layout.params.dlq_capacity {
            let w = self.dlq_word(rec).load(Ordering::Acquire);
            let owner = (w >> 4) & 0xfff;
            let new = match w & 0xf {
                dlq::WRITING if is_dead(owner) => (w >> 16) << 16 | dlq::EMPTY,
                dlq::REDRIVING if is_dead(owner) => (w >> 16) << 16 | dlq::FULL,
                _ => continue,
            };
            let _ =
                self.dlq_word(rec)
                    .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;
    use crate::layout::{Layout, Params};
    use crate::memory::HeapMemory;

    fn engine(capacity: u64) -> Engine<HeapMemory> {
        engine_with(capacity, 0, 2)
    }

    /// An empty queue in heap memory with `key_capacity` key entries and
    /// `dlq_capacity` dead-letter records.
    fn engine_with(capacity: u64, key_capacity: u64, dlq_capacity: u64) -> Engine<HeapMemory> {
        let layout = Layout::new(Params {
            capacity,
            max_message_size: 32,
            key_capacity,
            dlq_capacity,
            participant_capacity: 4,
        })
        .unwrap();
        let e = Engine::new(
            HeapMemory::new(layout.file_size),
            layout,
            Config {
                lease_ns: 1_000_000,
                max_deliveries: 3,
                reservation_timeout_ns: 1_000_000,
            },
        );
        e.format();
        e
    }

    fn send(e: &Engine<HeapMemory>, me: u64, data: &[u8]) -> Result<Reservation> {
        let r = e.reserve(me, 0, data.len())?;
        e.write_payload(&r, data);
        e.commit(me, &r, data.len(), 0, 0, None, 0)?;
        Ok(r)
    }

    fn payload(e: &Engine<HeapMemory>, c: &Claim) -> Vec<u8> {
        let mut v = vec![0; c.len];
        e.mem.read_bytes(e.payload_offset(c.slot), &mut v);
        v
    }

    #[test]
    fn word_packing_round_trips() {
        let w = SlotWord::new(state::CLAIMED, 1000, SEQ_MASK, LAP_MASK);
        assert_eq!(
            (w.state(), w.owner(), w.seq(), w.lap()),
            (state::CLAIMED, 1000, SEQ_MASK, LAP_MASK)
        );
        let t = w.transition(state::FREE, 0);
        assert_eq!((t.seq(), t.lap()), (0, LAP_MASK));
        assert_eq!(w.skipped().lap(), 0);
        assert_eq!(lap_diff(0, LAP_MASK), 1);
        assert_eq!(lap_diff(LAP_MASK, 0), -1);
    }

    #[test]
    fn fifo_and_full() {
        let e = engine(4);
        for n in 0..4u8 {
            send(&e, 1, &[n]).unwrap();
        }
        assert_eq!(send(&e, 1, &[9]).unwrap_err().status(), Status::Full);
        for n in 0..4u8 {
            let c = e.claim(2, 0).unwrap().unwrap();
            assert_eq!(payload(&e, &c), vec![n]);
            assert_eq!(c.deliveries, 1);
            e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
        }
        assert!(e.claim(2, 0).unwrap().is_none());
    }

    #[test]
    fn held_message_blocks_only_its_slot() {
        let e = engine(4);
        send(&e, 1, b"slow").unwrap();
        let slow = e.claim(2, 0).unwrap().unwrap();
        // Many laps pass the held slot.
        for n in 0..100u32 {
            send(&e, 1, &n.to_le_bytes()).unwrap();
            let c = e.claim(3, 0).unwrap().unwrap();
            assert_eq!(payload(&e, &c), n.to_le_bytes());
            e.settle(3, c.token(), &Outcome::Ack, 0).unwrap();
        }
        // Three others fit beside it; the fourth is refused.
        for n in 0..3u8 {
            send(&e, 1, &[n]).unwrap();
        }
        assert_eq!(send(&e, 1, b"x").unwrap_err().status(), Status::Full);
        e.settle(2, slow.token(), &Outcome::Ack, 0).unwrap();
    }

    #[test]
    fn late_outcome_gets_lease_lost() {
        let e = engine(2);
        send(&e, 1, b"a").unwrap();
        let c = e.claim(2, 0).unwrap().unwrap();
        // Lease runs out; a repair makes it claimable again.
        let r = e.repair(0, 2_000_000, &|_| false).unwrap();
        assert_eq!(r.redelivered, 1);
        assert_eq!(
            e.settle(2, c.token(), &Outcome::Ack, 2_000_000)
                .unwrap_err()
                .status(),
            Status::LeaseLost
        );
        let again = e.claim(3, 2_000_000).unwrap().unwrap();
        assert_eq!(again.deliveries, 2);
        assert_eq!(payload(&e, &again), b"a");
        e.settle(3, again.token(), &Outcome::Ack, 0).unwrap();
        assert_eq!(
            e.settle(3, again.token(), &Outcome::Ack, 0)
                .unwrap_err()
                .status(),
            Status::LeaseLost
        );
    }

    #[test]
    fn dead_consumer_claim_is_redelivered_and_dead_producer_abandoned() {
        let e = engine(4);
        let r = e.reserve(1, 0, 1).unwrap();
        send(&e, 2, b"b").unwrap();
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), b"b");
        let rep = e.repair(0, 0, &|o| o == 1 || o == 3).unwrap();
        assert_eq!((rep.abandoned, rep.redelivered), (1, 1));
        assert_eq!(
            e.commit(1, &r, 1, 0, 0, None, 0).unwrap_err().status(),
            Status::Abandoned
        );
        let again = e.claim(2, 0).unwrap().unwrap();
        assert_eq!((payload(&e, &again), again.deliveries), (b"b".to_vec(), 2));
    }

    #[test]
    fn stalled_producer_is_quarantined_until_it_returns() {
        let e = engine(2);
        let stalled = e.reserve(1, 0, 1).unwrap();
        let rep = e.repair(0, 2_000_000, &|_| false).unwrap();
        assert_eq!(rep.abandoned, 1);
        assert_eq!(e.slot_word(stalled.slot).state(), state::ABANDONED);
        // The other slot keeps flowing, lap after lap, past the quarantined one.
        for n in 0..5u8 {
            send(&e, 2, &[n]).unwrap();
            let c = e.claim(3, 0).unwrap().unwrap();
            assert_eq!(payload(&e, &c), vec![n]);
            e.settle(3, c.token(), &Outcome::Ack, 0).unwrap();
        }
        // Its late writes land in its own quarantined slot; its commit fails
        // and frees the slot.
        e.write_payload(&stalled, b"late");
        assert_eq!(
            e.commit(1, &stalled, 4, 0, 0, None, 0)
                .unwrap_err()
                .status(),
            Status::Abandoned
        );
        assert_eq!(e.slot_word(stalled.slot).state(), state::FREE);
        assert_eq!(e.occupied(), 0);
        send(&e, 2, b"a").unwrap();
        send(&e, 2, b"b").unwrap();
    }

    #[test]
    fn nack_delay_and_dead_letters() {
        let e = engine(4);
        send(&e, 1, b"m").unwrap();
        let c = e.claim(2, 0).unwrap().unwrap();
        e.settle(
            2,
            c.token(),
            &Outcome::Nack {
                not_before_ns: 500_000,
            },
            0,
        )
        .unwrap();
        assert!(e.claim(2, 100_000).unwrap().is_none());
        let c = e.claim(2, 600_000).unwrap().unwrap();
        assert_eq!(c.deliveries, 2);
        e.settle(2, c.token(), &Outcome::Nack { not_before_ns: 0 }, 600)
            .unwrap();
        let c = e.claim(2, 600).unwrap().unwrap();
        assert_eq!(c.deliveries, 3);
        assert_eq!(
            e.settle(2, c.token(), &Outcome::Nack { not_before_ns: 0 }, 600)
                .unwrap(),
            Settled::DeadLettered
        );
        assert!(e.claim(2, 10_000).unwrap().is_none());
        // Reject goes straight there; the area holds two, the third waits.
        for want in [Settled::DeadLettered, Settled::DlqWaiting] {
            send(&e, 1, b"r").unwrap();
            let c = e.claim(2, 0).unwrap().unwrap();
            assert_eq!(
                e.settle(2, c.token(), &Outcome::Reject { reason: "bad" }, 0)
                    .unwrap(),
                want
            );
        }
        assert_eq!(e.slot_word(c.slot).state(), state::FREE);
        let waiting = (0..4)
            .filter(|i| e.slot_word(*i).state() == state::DLQ_WAIT)
            .count();
        assert_eq!(waiting, 1);
    }

    #[test]
    fn a_head_claim_goes_back_to_the_side_path_when_it_moved_meanwhile() {
        let e = engine(4);
        let slow = e.reserve(1, 0, 1).unwrap();
        // A consumer that looked at the side path before the slow message
        // was passed and committed...
        let seen = e.word(hdr::SIDE_DIRTY).load(Ordering::Acquire);
        send(&e, 2, b"2").unwrap();
        e.pass_reservation(slow.slot, e.slot_word(slow.slot));
        e.write_payload(&slow, b"1");
        e.commit(1, &slow, 1, 0, 0, None, 0).unwrap();
        // ...must not take the later message at the head.
        let mut t = Tally {
            side_epoch: Some(seen),
            ..Tally::default()
        };
        assert!(e.claim_head(3, 0, &mut t).unwrap().is_none());
        assert!(t.side_moved);
        // A fresh claim takes them in commit order.
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), b"1");
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), b"2");
    }

    #[test]
    fn passed_reservation_is_delivered_by_the_side_path() {
        let e = engine(4);
        let slow = e.reserve(1, 0, 1).unwrap();
        send(&e, 2, b"2").unwrap();
        // The consumer passes the slow reservation and takes the next one.
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), b"2");
        e.write_payload(&slow, b"1");
        e.commit(1, &slow, 1, 0, 0, None, 0).unwrap();
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), b"1");
    }

    fn keyed_engine(capacity: u64, dlq_capacity: u64) -> Engine<HeapMemory> {
        engine_with(capacity, 8, dlq_capacity)
    }

    fn send_keyed(e: &Engine<HeapMemory>, me: u64, key: u64, version: u64, data: &[u8]) {
        e.keys().find_or_insert(key).unwrap();
        let r = e.reserve(me, 0, data.len()).unwrap();
        e.write_payload(&r, data);
        e.commit(me, &r, data.len(), key, version, None, 0).unwrap();
    }

    /// G3 (hole: tokens wrapped with the word's sequence): a consumer whose
    /// claim was lost keeps its token; when the same consumer later holds
    /// another claim of the slot at the same word sequence, the old token
    /// must still be refused.
    #[test]
    fn g3_a_late_outcome_never_settles_a_later_claim_after_the_sequence_wraps() {
        let e = engine(1);
        send(&e, 1, b"old").unwrap();
        let stale = e.claim(2, 0).unwrap().unwrap();
        // Its lease runs out: redelivered to another consumer, acked.
        e.repair(0, 2_000_000, &|_| false).unwrap();
        let other = e.claim(3, 2_000_000).unwrap().unwrap();
        e.settle(3, other.token(), &Outcome::Ack, 2_000_000)
            .unwrap();
        // Messages flow until consumer 2 holds a claim of the slot whose
        // word has the stale claim's sequence again (2^SEQ_BITS
        // transitions; an abort now and then shifts the sequence so that
        // every value comes round).
        let mut rounds = 0u64;
        let fresh = loop {
            rounds += 1;
            assert!(rounds < 4 << SEQ_BITS, "the sequence never came round");
            if rounds % 7 == 0 {
                let r = e.reserve(1, 0, 1).unwrap();
                e.abort(1, &r).unwrap();
            }
            send(&e, 1, b"new").unwrap();
            let c = e.claim(2, 0).unwrap().unwrap();
            if c.seq == stale.seq {
                break c;
            }
            e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
        };
        assert_ne!(fresh.token(), stale.token());
        assert_eq!(
            e.settle(2, stale.token(), &Outcome::Ack, 0)
                .unwrap_err()
                .status(),
            Status::LeaseLost
        );
        let mut buf = [0u8; 32];
        assert_eq!(
            e.read_claimed(2, stale.token(), &mut buf)
                .unwrap_err()
                .status(),
            Status::LeaseLost
        );
        // The fresh claim is untouched and still held.
        assert_eq!(e.slot_word(0).state(), state::CLAIMED);
        assert_eq!(e.read_claimed(2, fresh.token(), &mut buf).unwrap(), 3);
        e.settle(2, fresh.token(), &Outcome::Ack, 0).unwrap();
    }

    /// G3, G4: a claimer that stalls between its claim CAS and stamping its
    /// claim, while its lease runs out and the message is claimed again,
    /// cannot take the new claim's token or disturb it when it resumes.
    #[test]
    fn g3_a_claimer_stalled_before_its_stamp_cannot_stamp_a_lost_claim() {
        let e = engine(2);
        send(&e, 1, b"m").unwrap();
        // Claimer 2 makes its claim CAS by hand and stalls before stamping.
        let w = e.slot_word(0);
        let mine = e.transit(0, w, state::CLAIMED, 2).unwrap();
        // Its lease expires (stamped lazily by the repair), the message is
        // claimed by 3.
        e.repair(0, 0, &|_| false).unwrap();
        e.repair(0, 2_000_000, &|_| false).unwrap();
        let c3 = e.claim(3, 2_000_000).unwrap().unwrap();
        assert_eq!(c3.deliveries, 2);
        // 2 resumes: its claim is gone.
        assert!(e.finish_claim(0, mine, 2_000_000).unwrap().is_none());
        // 3's claim still settles.
        e.settle(3, c3.token(), &Outcome::Ack, 2_000_000).unwrap();
    }

    /// G4 (hole: two crashes in one dead-letter move wrote it twice): the
    /// mover dies after publishing the record and before freeing the slot,
    /// a second mover takes the move over and dies at once; the third
    /// finds the record and only frees the slot.
    #[test]
    fn g4_two_crashes_in_one_dead_letter_move_write_it_once() {
        let e = engine(2);
        send(&e, 1, b"poison").unwrap();
        let c = e.claim(2, 0).unwrap().unwrap();
        let w = e.slot_word(c.slot);
        // Mover 2: to DLQ_WAIT, record written and published...
        let moving = e.transit(c.slot, w, state::DLQ_WAIT, 2).unwrap();
        assert!(e.finish_dead_letter(2, c.slot, moving, "bad", 0).unwrap());
        // ...but (as if it died before its free CAS) the slot still shows it.
        let freed = e.slot_word(c.slot);
        let before_free = SlotWord::new(state::DLQ_WAIT, 2, moving.seq(), freed.lap());
        e.slot_field(c.slot, slot::WORD)
            .store(before_free.0, Ordering::SeqCst);
        // Mover 3 takes the move over and dies right after its CAS.
        e.transit(c.slot, before_free, state::DLQ_WAIT, 3).unwrap();
        // Participant 1 repairs after both.
        let r = e.repair(1, 0, &|o| o == 2 || o == 3).unwrap();
        assert_eq!(r.dead_lettered, 1);
        assert_eq!(e.slot_word(c.slot).state(), state::FREE);
        let full = (0..e.layout.params.dlq_capacity)
            .filter(|&rec| e.dlq_word(rec).load(Ordering::Acquire) & 0xf == dlq::FULL)
            .count();
        assert_eq!(full, 1, "the dead letter was written twice");
    }

    /// G1 (hole: room fell to the lookahead): with most slots freed out of
    /// ring order and a run of unclaimed messages at the tail longer than
    /// the lookahead, a send still finds room.
    #[test]
    fn g1_full_only_when_every_slot_is_taken() {
        let cap = 64;
        let e = engine(cap);
        // 24 messages, then 40 slots reserved and given back.
        for _ in 0..24 {
            send(&e, 1, b"x").unwrap();
        }
        let rs: Vec<_> = (0..40).map(|_| e.reserve(1, 0, 1).unwrap()).collect();
        for r in &rs {
            e.abort(1, r).unwrap();
        }
        // The tail is now at the 24 unclaimed messages (a lap on): 40 more
        // sends must succeed, and only the 41st is `Full`.
        for n in 0..40 {
            assert!(send(&e, 1, b"y").is_ok(), "send {n} refused with room");
        }
        assert_eq!(send(&e, 1, b"z").unwrap_err().status(), Status::Full);
        // Nothing was lost or reordered: 24 x then 40 y.
        let mut got = Vec::new();
        while let Some(c) = e.claim(2, 0).unwrap() {
            got.push(payload(&e, &c)[0]);
            e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
        }
        let mut want = vec![b'x'; 24];
        want.extend(vec![b'y'; 40]);
        assert_eq!(got, want);
    }

    /// G2, G7 (hole: a stalled key taker wedged its key): a consumer that
    /// took a key and stopped before its claim CAS holds it for a lease at
    /// most; then another consumer gets the message, and the staller's
    /// late CAS fails.
    #[test]
    fn g7_a_stalled_key_taker_holds_its_key_for_a_lease_at_most() {
        let e = keyed_engine(4, 2);
        send_keyed(&e, 1, 7, 1, b"v1");
        // A first delivery fails: the message waits on the side path.
        let c = e.claim(2, 0).unwrap().unwrap();
        e.settle(2, c.token(), &Outcome::Nack { not_before_ns: 0 }, 0)
            .unwrap();
        let (i, w) = (c.slot, e.slot_word(c.slot));
        assert_eq!(w.state(), state::PENDING);
        // Consumer 2 takes the key for it and stalls before its claim CAS.
        assert_eq!(e.acquire_key(2, 7, i, w, 0), KeyTake::Taken);
        // Within its lease the key is in transit: nobody else claims.
        assert!(e.claim(3, 500_000).unwrap().is_none());
        // After it, 3 takes the key over and the message.
        let c = e
            .claim(3, 2_000_000)
            .unwrap()
            .expect("the stalled taker wedged its key");
        assert_eq!((payload(&e, &c), c.deliveries), (b"v1".to_vec(), 2));
        // 2 resumes: its claim CAS fails, and giving the key back does not
        // release 3's hold.
        let held = e.slot_word(c.slot);
        assert!(e.transit(i, w, state::CLAIMED, 2).is_none());
        e.key_claimed(2, 7, i, w, false);
        assert_eq!(e.slot_word(c.slot), held);
        send_keyed(&e, 1, 7, 2, b"v2");
        assert!(e.claim(2, 2_000_000).unwrap().is_none(), "key held by 3");
        e.settle(3, c.token(), &Outcome::Ack, 2_000_000).unwrap();
        let c = e.claim(2, 2_000_000).unwrap().unwrap();
        assert_eq!(payload(&e, &c), b"v2");
    }

    // ----------------------------------------------------------------
    // Latest-only replacement in place, stopped at every step
    // ----------------------------------------------------------------

    fn latest_engine(capacity: u64) -> Engine<HeapMemory> {
        let layout = Layout::with_flags(
            Params {
                capacity,
                max_message_size: 32,
                key_capacity: 8,
                dlq_capacity: 2,
                participant_capacity: 4,
            },
            crate::layout::flags::LATEST_ONLY,
        )
        .unwrap();
        let e = Engine::new(
            HeapMemory::new(layout.file_size),
            layout,
            Config {
                lease_ns: 1_000_000,
                max_deliveries: 3,
                reservation_timeout_ns: 1_000_000,
            },
        );
        e.format();
        e
    }

    /// The payload of version `v`: two different words, so a torn copy
    /// shows.
    fn body(v: u64) -> Vec<u8> {
        let mut b = v.to_le_bytes().to_vec();
        b.extend_from_slice(&(!v).to_le_bytes());
        b
    }

    /// A latest-only keyed send as `Queue::send_with` makes it: replace the
    /// waiting message in place, else queue a new one. Whether it replaced.
    fn send_latest(e: &Engine<HeapMemory>, me: u64, key: u64, v: u64) -> bool {
        let data = body(v);
        e.keys().find_or_insert(key).unwrap();
        if let Some(r) = e.take_waiting(me, key, v, 0, Some(&data)).unwrap() {
            if e.stage_replacement(me, &r, key, v, data.len() as u64, 0, None) {
                e.commit_replacement(me, &r, 0).unwrap();
                return true;
            }
        }
        let r = e.reserve(me, 0, data.len()).unwrap();
        e.write_payload(&r, &data);
        e.commit(me, &r, data.len(), key, v, None, 0).unwrap();
        e.set_waiting(key, r.slot, r.position);
        false
    }

    fn record_word(e: &Engine<HeapMemory>, p: u64) -> u64 {
        let rec = e.layout.replacement(p).unwrap();
        e.mem.u64_at(rec + replace::WORD).load(Ordering::SeqCst)
    }

    /// The steps of a replacement at which the replacer is stopped.
    const STOPS: [&str; 8] = [
        "record says INTENT, slot not taken yet",
        "slot taken",
        "record written, not yet marked complete",
        "record complete (COPY), slot untouched",
        "half the new payload copied into the slot",
        "payload and metadata copied, no commit CAS",
        "committed, record not cleared",
        "done",
    ];

    /// Participant `P` replaces version 1 of key `K` (waiting in its slot)
    /// by version 2, doing the steps of `send_latest` by hand up to
    /// `STOPS[stop]`. Returns its reservation once it has one.
    fn replace_until(e: &Engine<HeapMemory>, stop: usize) -> Option<Reservation> {
        const P: u64 = 1;
        const K: u64 = 7;
        let data = body(2);
        let rec = e.layout.replacement(P).unwrap();
        if stop == 0 {
            let ent = e.keys().find(K).unwrap();
            let (i, _) =
                crate::keys::unref(e.keys().field(ent, keyf::WAITING).load(Ordering::SeqCst))
                    .unwrap();
            let w = e.slot_word(i);
            e.mem.u64_at(rec + replace::WORD).store(
                replacing_word(i, w.seq() + 1, replace::INTENT),
                Ordering::SeqCst,
            );
            return None;
        }
        let r = e.take_waiting(P, K, 2, 0, None).unwrap().unwrap();
        if stop == 1 {
            return Some(r);
        }
        if stop == 2 {
            let put = |f: usize, v: u64| e.mem.u64_at(rec + f).store(v, Ordering::SeqCst);
            put(replace::KEY, K);
            put(replace::VERSION, 2);
            put(replace::LEN, data.len() as u64);
            e.mem.write_bytes(rec + replace::PAYLOAD, &data);
            return Some(r);
        }
        assert!(e.stage_replacement(P, &r, K, 2, data.len() as u64, 0, Some(&data)));
        match stop {
            3 => {}
            4 => e.mem.write_bytes(e.payload_offset(r.slot), &data[..8]),
            5 => {
                e.copy_record(rec, r.slot);
                e.slot_field(r.slot, slot::VERSION)
                    .store(2, Ordering::SeqCst);
            }
            6 => {
                e.commit_replacement(P, &r, 0).unwrap();
                e.mem.u64_at(rec + replace::WORD).store(
                    replacing_word(r.slot, r.seq, replace::COPY),
                    Ordering::SeqCst,
                );
            }
            _ => {
                e.commit_replacement(P, &r, 0).unwrap();
            }
        }
        Some(r)
    }

    /// Claims and acks everything; checks each payload whole and of its
    /// version. Returns `(version, position, deliveries)` in claim order.
    fn drain_checked(e: &Engine<HeapMemory>, now: u64) -> Vec<(u64, u64, u32)> {
        let mut got = Vec::new();
        while let Some(c) = e.claim(3, now).unwrap() {
            assert_eq!(payload(e, &c), body(c.version), "torn or foreign: {c:?}");
            got.push((c.version, c.position, c.deliveries));
            e.settle(3, c.token(), &Outcome::Ack, now).unwrap();
            assert!(got.len() <= 4, "{got:?}");
        }
        for i in 0..e.capacity() {
            assert_eq!(
                e.slot_word(i).state(),
                state::FREE,
                "slot {i} after {got:?}"
            );
        }
        got
    }

    /// G4, G7 (hole: a latest-only replacement killed midway lost the
    /// waiting message): the replacer dies after each step of a replacement
    /// in place; its cleaner leaves the old message (before the record was
    /// complete) or the new one (after), whole, at the old one's position,
    /// never neither.
    #[test]
    fn g4_latest_only_replacement_killed_midway_keeps_a_message() {
        for (stop, what) in STOPS.iter().enumerate() {
            let e = latest_engine(4);
            send_keyed(&e, 2, 9, 1, &body(1)); // another key, first in line
            assert!(!send_latest(&e, 2, 7, 1));
            let pos = e.claim(3, 0).unwrap().map(|c| {
                e.settle(3, c.token(), &Outcome::Ack, 0).unwrap();
                c.position + 1
            });
            replace_until(&e, stop);
            let rep = e.repair(0, 0, &|o| o == 1).unwrap();
            assert_eq!(record_word(&e, 1), 0, "{what}: record left");
            let got = drain_checked(&e, 0);
            let want = if stop < 3 { 1 } else { 2 };
            assert_eq!(got, vec![(want, pos.unwrap(), 1)], "{what}: {rep:?}");
            // The key works on: a newer send replaces, once.
            assert!(!send_latest(&e, 2, 7, 3));
            assert!(send_latest(&e, 2, 7, 4));
            assert_eq!(drain_checked(&e, 0).len(), 1, "{what}");
        }
    }

    /// G4, G5, G7 (hole: a replacer that stalled past the reservation
    /// timeout had its slot quarantined and its late commit freed it, old
    /// message and all): the replacer stalls after each step, a repair runs
    /// past its deadline, then the replacer comes back and finishes its
    /// send (as a new message if the repair undid its take). Both its
    /// message and, if it was not replaced, the old one are delivered,
    /// whole, each once; a stall before the record was complete gives the
    /// old message back at once. Then the same with the replacer dying
    /// instead of coming back.
    #[test]
    fn g4_latest_only_replacement_stalled_midway_keeps_a_message() {
        for (stop, what) in STOPS.iter().enumerate() {
            for comes_back in [true, false] {
                let e = latest_engine(4);
                assert!(!send_latest(&e, 2, 7, 1));
                let pos = e.slot_field(0, slot::POSITION).load(Ordering::SeqCst);
                let r = replace_until(&e, stop);
                e.repair(0, 2_000_000, &|_| false).unwrap();
                if (1..3).contains(&stop) {
                    // Undone at once: the old message is claimable now.
                    assert_eq!(e.slot_word(0).state(), state::READY, "{what}");
                } else if (3..6).contains(&stop) {
                    // Stalled in the copy: quarantined for the replacer.
                    assert_eq!(e.slot_word(0).state(), state::ABANDONED, "{what}");
                }
                let got = if comes_back {
                    // The replacer resumes where it stopped.
                    let data = body(2);
                    match (stop, r) {
                        (0, _) => {
                            assert!(send_latest(&e, 1, 7, 2), "{what}");
                        }
                        (1 | 2, Some(r)) => {
                            assert!(!e.stage_replacement(1, &r, 7, 2, 16, 0, Some(&data)));
                            let n = e.reserve(1, 0, 16).unwrap();
                            e.write_payload(&n, &data);
                            e.commit(1, &n, 16, 7, 2, None, 0).unwrap();
                        }
                        (3..=5, Some(r)) => {
                            e.commit_replacement(1, &r, 0).unwrap();
                        }
                        (6, Some(_)) => {
                            let rec = e.layout.replacement(1).unwrap();
                            e.mem.u64_at(rec + replace::WORD).store(0, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                    assert_eq!(record_word(&e, 1), 0, "{what}");
                    drain_checked(&e, 2_000_000)
                } else {
                    e.repair(0, 2_000_000, &|o| o == 1).unwrap();
                    assert_eq!(record_word(&e, 1), 0, "{what}: record left");
                    drain_checked(&e, 2_000_000)
                };
                let versions: Vec<u64> = got.iter().map(|g| g.0).collect();
                let why = format!("{what}, comes back {comes_back}: {got:?}");
                match (comes_back, stop) {
                    (true, 1 | 2) => assert_eq!(versions, vec![1, 2], "{why}"),
                    (true, _) | (false, 3..) => {
                        assert_eq!(got, vec![(2, pos, 1)], "{why}")
                    }
                    (false, _) => assert_eq!(got, vec![(1, pos, 1)], "{why}"),
                }
            }
        }
    }

    /// G7 (hole: a nacked message could not be replaced in latest-only
    /// mode): a waiting message back from a failed delivery is replaced in
    /// place like a fresh one; the replacement's deliveries count from 1,
    /// and the old claim's token stays dead.
    #[test]
    fn g7_latest_only_replaces_a_nacked_waiting_message() {
        let e = latest_engine(4);
        assert!(!send_latest(&e, 2, 7, 1));
        let c = e.claim(3, 0).unwrap().unwrap();
        e.settle(3, c.token(), &Outcome::Nack { not_before_ns: 0 }, 0)
            .unwrap();
        assert!(
            send_latest(&e, 2, 7, 2),
            "the nacked message was not replaced"
        );
        let again = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(
            (payload(&e, &again), again.position, again.deliveries),
            (body(2), c.position, 1)
        );
        assert_ne!(again.token(), c.token());
        assert_eq!(
            e.settle(3, c.token(), &Outcome::Ack, 0)
                .unwrap_err()
                .status(),
            Status::LeaseLost
        );
        e.settle(3, again.token(), &Outcome::Ack, 0).unwrap();
        assert!(e.claim(3, 0).unwrap().is_none());
        // A nack with a delay keeps it delayed: a newer send queues.
        assert!(!send_latest(&e, 2, 7, 3));
        let c = e.claim(3, 0).unwrap().unwrap();
        e.settle(3, c.token(), &Outcome::Nack { not_before_ns: 10 }, 0)
            .unwrap();
        assert!(!send_latest(&e, 2, 7, 4));
    }

    /// G6, G10 (laps alias): producers passing an unclaimed message lap
    /// after lap (a reserve/abort loop while no consumer comes) run its
    /// slot's lap more than half the lap space ahead of the head, where it
    /// reads as behind: the head must still find the message. Only the
    /// narrow build (`--cfg shmq_narrow`, 4-bit laps) gets there in a test's
    /// time; with 28-bit laps it takes 2^27 laps.
    #[test]
    fn g6_laps_that_alias_do_not_hide_a_message() {
        if LAP_BITS > 8 {
            return;
        }
        for laps in (1u64 << (LAP_BITS - 1))..(1 << LAP_BITS) {
            let e = engine(2);
            send(&e, 1, b"old").unwrap();
            for _ in 0..laps {
                let r = e.reserve(1, 0, 1).unwrap();
                e.abort(1, &r).unwrap();
            }
            let c = e
                .claim(2, 0)
                .unwrap_or_else(|err| panic!("after {laps} laps: {err}"))
                .unwrap_or_else(|| panic!("after {laps} laps the message is hidden"));
            assert_eq!(payload(&e, &c), b"old");
            e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
        }
    }
}
