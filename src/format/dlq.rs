//! A dead-letter record; the payload follows at [`PAYLOAD`]. Its word is a
//! [`DeadLetterWord`].

/// [`DeadLetterWord`]: `seq << 16 | owner << 4 | state`.
pub const WORD: usize = 0;
/// The fencing token of the claim the message was taken from (see
/// [`super::slot::TokenCodec`]): finds a record again after a crash.
pub const SOURCE: usize = 8;
/// Key of the message.
pub const KEY: usize = 16;
/// Version of the message.
pub const VERSION: usize = 24;
/// Monotonic time of first enqueue.
pub const FIRST_ENQUEUED_NS: usize = 32;
/// Monotonic time it was dead-lettered.
pub const DEAD_NS: usize = 40;
/// Delivery attempts.
pub const ATTEMPTS: usize = 48;
/// Pid of the last consumer.
pub const LAST_CONSUMER: usize = 56;
/// Payload length.
pub const LEN: usize = 64;
/// Reason length, bytes.
pub const REASON_LEN: usize = 72;
/// The dead-letter id (unique per file).
pub const ID: usize = 80;
/// Reason text, up to [`REASON_MAX`] bytes.
pub const REASON: usize = 96;
/// Largest reason kept.
pub const REASON_MAX: usize = 160;
/// Start of the payload.
pub const PAYLOAD: usize = 256;

/// Record states.
pub const EMPTY: u64 = 0;
/// Being written by its owner.
pub const WRITING: u64 = 1;
/// Holds a dead letter.
pub const FULL: u64 = 2;
/// Being moved back to the queue by its owner.
pub const REDRIVING: u64 = 3;

const STATE_MASK: u64 = 0xf;
const OWNER_SHIFT: u32 = 4;
const OWNER_MASK: u64 = 0xfff;
const SEQ_SHIFT: u32 = 16;
const _: () = assert!(super::limits::MAX_PARTICIPANTS <= OWNER_MASK + 1);

/// A dead-letter record's word ([`WORD`]): `seq:48 | owner:12 | state:4`.
///
/// - `state`: [`EMPTY`], [`WRITING`], [`FULL`] or [`REDRIVING`] (others
///   are invalid: it is read from the mapping).
/// - `owner`: the participant writing or redriving the record.
/// - `seq`: bumped every time the record is taken for writing, so a CAS from
///   an old word fails.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct DeadLetterWord(pub u64);

impl DeadLetterWord {
    /// Packs a word.
    #[inline]
    pub fn new(seq: u64, owner: u64, state: u64) -> DeadLetterWord {
        DeadLetterWord(
            seq << SEQ_SHIFT | (owner & OWNER_MASK) << OWNER_SHIFT | (state & STATE_MASK),
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
        self.0 >> SEQ_SHIFT
    }
    /// Whether it holds a dead letter.
    #[inline]
    pub fn is_full(self) -> bool {
        self.state() == FULL
    }
    /// Whether the state is one of the four.
    #[inline]
    pub fn is_valid(self) -> bool {
        self.state() <= REDRIVING
    }
    /// The same sequence, now `state` owned by `owner`.
    #[inline]
    pub fn with(self, owner: u64, state: u64) -> DeadLetterWord {
        DeadLetterWord::new(self.seq(), owner, state)
    }
    /// The word of this record taken for writing by `owner`: the next
    /// sequence, `WRITING`.
    #[inline]
    pub fn taken_for_writing(self, owner: u64) -> DeadLetterWord {
        DeadLetterWord::new(self.seq() + 1, owner, WRITING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let w = DeadLetterWord::new(5, 1022, FULL);
        assert_eq!((w.seq(), w.owner(), w.state()), (5, 1022, FULL));
        assert!(w.is_full() && w.is_valid());
        assert_eq!(w.with(0, EMPTY), DeadLetterWord::new(5, 0, EMPTY));
        assert_eq!(w.taken_for_writing(3), DeadLetterWord::new(6, 3, WRITING));
        assert!(!DeadLetterWord(9).is_valid());
    }
}
