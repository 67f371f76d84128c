//! The slot's metadata words that are tagged with the sequence of the state
//! they belong to ([`LeaseWord`], [`AttemptsWord`]), and its length word
//! ([`LenWord`]).
//!
//! The tag makes lazy stamping possible: a claimer writes the lease and the
//! delivery count after its CAS, and whoever finds a word whose tag is not
//! the slot word's sequence knows it was never stamped for that state.

use super::state_word::SEQ_MASK;

const TAG_SHIFT: u32 = 42;
const VALUE_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Times are stored in units of 2^16 ns (65.5 µs).
const TIME_SHIFT: u32 = 16;
/// The lease value of a `DLQ_WAIT` slot whose mover found no room.
const DLQ_WAITING_MARK: u64 = 1;

#[inline]
fn tagged(tag: u64, value: u64) -> u64 {
    (tag & SEQ_MASK) << TAG_SHIFT | (value & VALUE_MASK)
}

/// A slot's lease word ([`super::LEASE`]): `tag:22 | time:42`, the time in
/// units of 2^16 ns, rounded up. It holds the lease deadline of a claim, the
/// not-before time of a delayed message or the deadline of a reservation,
/// and is valid only while its tag is the slot word's sequence.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct LeaseWord(pub u64);

impl LeaseWord {
    /// The word for time `ns` of the state with sequence `tag` (rounded up:
    /// a delay never ends early, a lease never ends early).
    #[inline]
    pub fn at(tag: u64, ns: u64) -> LeaseWord {
        let units = (ns.saturating_add((1 << TIME_SHIFT) - 1) >> TIME_SHIFT).min(VALUE_MASK);
        LeaseWord(tagged(tag, units))
    }
    /// The mark of a `DLQ_WAIT` slot (sequence `tag`) whose mover found no
    /// room in the dead-letter area: any participant may take the move over.
    #[inline]
    pub fn dlq_waiting(tag: u64) -> LeaseWord {
        LeaseWord(tagged(tag, DLQ_WAITING_MARK))
    }
    /// The tag.
    #[inline]
    pub fn tag(self) -> u64 {
        self.0 >> TAG_SHIFT
    }
    /// The time, nanoseconds, whatever the tag.
    #[inline]
    pub fn time_ns(self) -> u64 {
        (self.0 & VALUE_MASK) << TIME_SHIFT
    }
    /// The time, if the word was stamped for the state with sequence `seq`.
    #[inline]
    pub fn time_for(self, seq: u64) -> Option<u64> {
        (self.tag() == seq).then(|| self.time_ns())
    }
}

/// A slot's delivery count ([`super::ATTEMPTS`]): `tag:22 | count:42`, the
/// count of the claim whose sequence is the tag.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct AttemptsWord(pub u64);

impl AttemptsWord {
    /// The word for `count` deliveries, counted for the claim `tag`.
    #[inline]
    pub fn new(tag: u64, count: u64) -> AttemptsWord {
        AttemptsWord(tagged(tag, count))
    }
    /// The tag.
    #[inline]
    pub fn tag(self) -> u64 {
        self.0 >> TAG_SHIFT
    }
    /// The count, whatever the tag.
    #[inline]
    pub fn count(self) -> u64 {
        self.0 & VALUE_MASK
    }
    /// The count, if it was counted for the claim with sequence `seq`.
    #[inline]
    pub fn count_for(self, seq: u64) -> Option<u64> {
        (self.tag() == seq).then(|| self.count())
    }
}

/// A message's length word ([`super::LEN`], and a replacement record's):
/// `flags:32 | length:32`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct LenWord(pub u64);

impl LenWord {
    /// Flag: the message's times are measured precisely (see
    /// [`super::LEN_SAMPLED`]).
    pub const SAMPLED: u64 = 1 << 32;
    /// Flag: the message has a deadline (see [`super::EXPIRES`]).
    pub const EXPIRES: u64 = 1 << 33;
    const LEN_MASK: u64 = 0xffff_ffff;

    /// The word of a `len`-byte message, sampled or not.
    #[inline]
    pub fn new(len: u64, sampled: bool) -> LenWord {
        LenWord((len & Self::LEN_MASK) | if sampled { Self::SAMPLED } else { 0 })
    }
    /// The length as stored (unchecked: clamp it before use).
    #[inline]
    pub fn length(self) -> u64 {
        self.0 & Self::LEN_MASK
    }
    /// The length, clamped to `max`.
    #[inline]
    pub fn length_within(self, max: u64) -> u64 {
        self.length().min(max)
    }
    /// Whether the message is sampled.
    #[inline]
    pub fn sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }
    /// Whether the message has a deadline.
    #[inline]
    pub fn expires(self) -> bool {
        self.0 & Self::EXPIRES != 0
    }
    /// The same word with the deadline flag set.
    #[inline]
    pub fn with_expiry(self) -> LenWord {
        LenWord(self.0 | Self::EXPIRES)
    }
    /// The same flags with the length clamped to `max` (a word read from the
    /// mapping, passed on).
    #[inline]
    pub fn clamped(self, max: u64) -> LenWord {
        LenWord((self.0 & !Self::LEN_MASK) | self.length_within(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_up_and_tags_wrap() {
        let l = LeaseWord::at(SEQ_MASK + 3, 1);
        assert_eq!(l.tag(), 2);
        assert_eq!(l.time_ns(), 1 << TIME_SHIFT);
        assert_eq!(l.time_for(2), Some(1 << TIME_SHIFT));
        assert_eq!(l.time_for(3), None);
        assert_eq!(
            LeaseWord::at(0, u64::MAX).time_ns(),
            VALUE_MASK << TIME_SHIFT
        );
        let a = AttemptsWord::new(5, 7);
        assert_eq!(
            (a.count_for(5), a.count_for(4), a.count()),
            (Some(7), None, 7)
        );
        let n = LenWord::new(300, true);
        assert_eq!(
            (n.length(), n.sampled(), n.clamped(10)),
            (300, true, LenWord::new(10, true))
        );
    }
}
