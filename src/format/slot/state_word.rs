//! A slot's state word ([`SlotWord`]) and its state ([`SlotState`]), with
//! the arithmetic of its wrapping sequence and lap.

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
// Participant indices fit the owner field.
const _: () = assert!(crate::format::limits::MAX_PARTICIPANTS <= OWNER_MASK + 1);

/// The state of a slot (4 bits of its [`SlotWord`]).
///
/// Read from the mapping, so a word may carry a code that is no state:
/// [`SlotState::Invalid`] keeps it. Every invalid state orders after every
/// valid one (see [`state::COUNT`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotState {
    /// No message; the next undecided position at this slot may take it.
    Free,
    /// A producer is writing the message (owner = producer).
    Reserved,
    /// A producer is writing, and consumers have already passed its
    /// position: its commit makes it `Pending` instead of `Ready`.
    Passed,
    /// Committed, waiting to be claimed in ring order.
    Ready,
    /// Claimable out of ring order (redelivery, late commit).
    Pending,
    /// Held by a consumer (owner = consumer).
    Claimed,
    /// Claimable once its not-before time has passed.
    Delayed,
    /// On its way to the dead-letter area (owner = mover), or waiting for
    /// room there.
    DlqWait,
    /// A reservation abandoned because its producer stalled past the
    /// reservation timeout (owner = that producer, still alive). The slot is
    /// quarantined, not reused, so a late write by the producer can never
    /// tear another message; the producer frees it when it comes back
    /// (its commit gets `Abandoned`), or survivors do when it dies.
    Abandoned,
    /// A code that names no state (a scribbled word): the code.
    Invalid(u8),
}

impl SlotState {
    /// Number of valid states.
    pub const VALID: u64 = 9;

    /// The state a code of the word stands for.
    #[inline]
    pub fn from_code(code: u64) -> SlotState {
        match code & STATE_MASK {
            0 => SlotState::Free,
            1 => SlotState::Reserved,
            2 => SlotState::Passed,
            3 => SlotState::Ready,
            4 => SlotState::Pending,
            5 => SlotState::Claimed,
            6 => SlotState::Delayed,
            7 => SlotState::DlqWait,
            8 => SlotState::Abandoned,
            c => SlotState::Invalid(c as u8),
        }
    }

    /// The code stored in the word.
    #[inline]
    pub fn code(self) -> u64 {
        match self {
            SlotState::Free => 0,
            SlotState::Reserved => 1,
            SlotState::Passed => 2,
            SlotState::Ready => 3,
            SlotState::Pending => 4,
            SlotState::Claimed => 5,
            SlotState::Delayed => 6,
            SlotState::DlqWait => 7,
            SlotState::Abandoned => 8,
            SlotState::Invalid(c) => c as u64 & STATE_MASK,
        }
    }

    /// Whether it is one of the states.
    #[inline]
    pub fn is_valid(self) -> bool {
        !matches!(self, SlotState::Invalid(_))
    }

    /// Whether a participant owns the slot in this state (the word's owner
    /// names it).
    #[inline]
    pub fn is_owned(self) -> bool {
        matches!(
            self,
            SlotState::Reserved
                | SlotState::Passed
                | SlotState::Claimed
                | SlotState::DlqWait
                | SlotState::Abandoned
        )
    }

    /// A readable name.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Free => "free",
            SlotState::Reserved => "reserved",
            SlotState::Passed => "reserved-passed",
            SlotState::Ready => "ready",
            SlotState::Pending => "pending",
            SlotState::Claimed => "claimed",
            SlotState::Delayed => "delayed",
            SlotState::DlqWait => "dead-lettering",
            SlotState::Abandoned => "abandoned",
            SlotState::Invalid(_) => "invalid",
        }
    }
}

impl std::fmt::Display for SlotState {
    /// The name of a state; the code of an invalid one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotState::Invalid(c) => write!(f, "{c}"),
            s => f.write_str(s.name()),
        }
    }
}

/// The slot states by their former constant names, for code written
/// against them (`match w.state() { state::READY => … }` still reads).
pub mod state {
    use super::SlotState;

    /// See [`SlotState::Free`].
    pub const FREE: SlotState = SlotState::Free;
    /// See [`SlotState::Reserved`].
    pub const RESERVED: SlotState = SlotState::Reserved;
    /// See [`SlotState::Passed`].
    pub const PASSED: SlotState = SlotState::Passed;
    /// See [`SlotState::Ready`].
    pub const READY: SlotState = SlotState::Ready;
    /// See [`SlotState::Pending`].
    pub const PENDING: SlotState = SlotState::Pending;
    /// See [`SlotState::Claimed`].
    pub const CLAIMED: SlotState = SlotState::Claimed;
    /// See [`SlotState::Delayed`].
    pub const DELAYED: SlotState = SlotState::Delayed;
    /// See [`SlotState::DlqWait`].
    pub const DLQ_WAIT: SlotState = SlotState::DlqWait;
    /// See [`SlotState::Abandoned`].
    pub const ABANDONED: SlotState = SlotState::Abandoned;
    /// The first invalid state: a state compares `>=` it exactly when it is
    /// invalid (prefer [`SlotState::is_valid`]).
    pub const COUNT: SlotState = SlotState::Invalid(SlotState::VALID as u8);

    /// A readable name (see [`SlotState::name`]).
    pub fn name(s: SlotState) -> &'static str {
        s.name()
    }
}

/// The sequence after `seq` (mod 2^[`SEQ_BITS`]).
#[inline]
pub fn next_seq(seq: u64) -> u64 {
    seq.wrapping_add(1) & SEQ_MASK
}

/// The sequence before `seq` (mod 2^[`SEQ_BITS`]).
#[inline]
pub fn prev_seq(seq: u64) -> u64 {
    seq.wrapping_sub(1) & SEQ_MASK
}

/// `seq` cut to the width of a sequence.
#[inline]
pub fn wrap_seq(seq: u64) -> u64 {
    seq & SEQ_MASK
}

/// A lap count cut to the width of a lap (mod 2^[`LAP_BITS`]).
#[inline]
pub fn wrap_lap(lap: u64) -> u64 {
    lap & LAP_MASK
}

/// Signed distance `a - b` between two laps (mod 2^[`LAP_BITS`]).
#[inline]
pub fn lap_diff(a: u64, b: u64) -> i64 {
    (((a.wrapping_sub(b)) << (64 - LAP_BITS)) as i64) >> (64 - LAP_BITS)
}

/// A slot's state word: `lap:28 | skipped:1 | seq:21 | owner:10 | state:4`
/// (high to low; [`LAP_BITS`] and [`SEQ_BITS`] are narrower in the
/// `shmq_narrow` test build).
///
/// - `state`: a [`SlotState`].
/// - `owner`: the participant index that owns a `RESERVED`, `PASSED`,
///   `CLAIMED`, `DLQ_WAIT` or `ABANDONED` slot (0 otherwise).
/// - `seq`: incremented (mod 2^[`SEQ_BITS`]) by every transition except a
///   skip; CASes and metadata tags compare with it (tokens use the claim
///   generation, see [`super::ClaimWord`]).
/// - `skipped`: a producer skipped the slot while it held its message (set by
///   a skip, kept until the slot is freed); without it the message's
///   position is at lap `lap - 1`.
/// - `lap`: the lap (mod 2^[`LAP_BITS`]) of the next position at this slot that no
///   producer has decided.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct SlotWord(pub u64);

impl SlotWord {
    /// Packs a word (without the skip mark).
    #[inline]
    pub fn new(state: SlotState, owner: u64, seq: u64, lap: u64) -> SlotWord {
        SlotWord(
            state.code()
                | (owner & OWNER_MASK) << OWNER_SHIFT
                | (seq & SEQ_MASK) << SEQ_SHIFT
                | (lap & LAP_MASK) << LAP_SHIFT,
        )
    }
    /// The state.
    #[inline]
    pub fn state(self) -> SlotState {
        SlotState::from_code(self.0)
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
    /// The sequence the next transition gives the word.
    #[inline]
    pub fn next_seq(self) -> u64 {
        next_seq(self.seq())
    }
    /// The next undecided lap.
    #[inline]
    pub fn lap(self) -> u64 {
        (self.0 >> LAP_SHIFT) & LAP_MASK
    }
    /// Whether the word says `state`, owned by `owner`, at sequence `seq`
    /// (whatever its lap).
    #[inline]
    pub fn is(self, state: SlotState, owner: u64, seq: u64) -> bool {
        self.state() == state && self.owner() == owner && self.seq() == seq
    }
    /// Whether the two words agree on state, owner and sequence (they may
    /// differ in lap and skip mark: producers skipping the slot).
    #[inline]
    pub fn same_step(self, other: SlotWord) -> bool {
        self.is(other.state(), other.owner(), other.seq())
    }
    /// The word after a transition to `state` owned by `owner`: the sequence
    /// moves on, the lap stays.
    #[inline]
    pub fn transition(self, state: SlotState, owner: u64) -> SlotWord {
        let w = SlotWord::new(state, owner, self.seq() + 1, self.lap());
        // The skip mark belongs to the message: it goes when the slot frees.
        if state == SlotState::Free {
            w
        } else {
            SlotWord(w.0 | (self.0 & SKIPPED))
        }
    }
    /// The same reservation passed by the consumers: `PASSED`, same owner,
    /// sequence, lap and skip mark.
    #[inline]
    pub fn passed(self) -> SlotWord {
        SlotWord(
            SlotWord::new(SlotState::Passed, self.owner(), self.seq(), self.lap()).0
                | (self.0 & SKIPPED),
        )
    }
    /// The same word with the lap moved on by one and the skip mark set.
    #[inline]
    pub fn skipped(self) -> SlotWord {
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
            self.state().name(),
            self.owner(),
            self.seq(),
            self.lap(),
            if self.was_skipped() { ", skipped" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_code_decodes_and_invalid_ones_order_last() {
        for code in 0..16u64 {
            let s = SlotState::from_code(code);
            assert_eq!(s.code(), code);
            assert_eq!(s.is_valid(), code < SlotState::VALID);
            assert_eq!(s >= state::COUNT, !s.is_valid());
        }
        assert_eq!(format!("{}", SlotState::from_code(12)), "12");
        assert_eq!(state::name(state::DLQ_WAIT), "dead-lettering");
    }
}
