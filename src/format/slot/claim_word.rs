//! A slot's claim word ([`ClaimWord`]) and the fencing tokens made from it
//! ([`TokenCodec`]): a token is handed to the caller and stored as the
//! source of a dead letter.

use super::state_word::SEQ_BITS;

/// Bits of a [`ClaimWord`] that tag it with the claim it was stamped for.
const CLAIM_TAG_BITS: u32 = if SEQ_BITS < 8 { SEQ_BITS } else { 8 };
const CLAIM_TAG_MASK: u64 = (1 << CLAIM_TAG_BITS) - 1;

/// A slot's claim word ([`super::CLAIM`]): `generation:56 | tag:8`.
///
/// - `generation`: counted up by one for every claim of the slot, for the
///   life of the file (2^56 claims of one slot before it wraps). A claim's
///   fencing token is made from it ([`TokenCodec`]), so a late outcome can
///   never name a later claim, however many transitions the slot went
///   through in between (the word's sequence wraps; this does not).
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
    /// The same generation, re-tagged for sequence `seq` (a commit's).
    #[inline]
    pub fn retagged(self, seq: u64) -> ClaimWord {
        ClaimWord::new(self.generation(), seq)
    }
    /// The next claim's word: generation + 1, tagged for sequence `seq`.
    #[inline]
    pub fn next_claim(self, seq: u64) -> ClaimWord {
        ClaimWord::new(self.generation() + 1, seq)
    }
}

/// How the fencing token of a claim is made from its slot and generation:
/// `generation << slot_bits | slot`, where `slot_bits` is just enough for
/// the capacity. Unique for the life of the file until one slot has been
/// claimed 2^(64 - slot_bits) times (2^56 for up to 256 slots; 2^34 for
/// the largest capacity, whose slots each see 2^-30 of the traffic).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct TokenCodec {
    slot_bits: u32,
}

impl TokenCodec {
    /// The tokens of a queue of `capacity` slots.
    pub fn for_capacity(capacity: u64) -> TokenCodec {
        TokenCodec {
            slot_bits: 64 - (capacity.max(1) - 1).leading_zeros(),
        }
    }
    /// The token of the claim of `slot` with generation `generation`.
    #[inline]
    pub fn token(self, slot: u64, generation: u64) -> u64 {
        generation << self.slot_bits | slot
    }
    /// Splits a token into slot and generation (truncated to the bits a
    /// token has), unchecked.
    #[inline]
    pub fn split(self, token: u64) -> (u64, u64) {
        if self.slot_bits == 0 {
            (0, token)
        } else {
            (
                token & (u64::MAX >> (64 - self.slot_bits)),
                token >> self.slot_bits,
            )
        }
    }
    /// Whether generation `stored` (56 bits, from a claim word) is the one a
    /// token carries (`64 - slot_bits` bits).
    #[inline]
    pub fn same_generation(self, stored: u64, from_token: u64) -> bool {
        (stored << self.slot_bits) >> self.slot_bits == from_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_generations_compare_truncated() {
        for cap in [1, 2, 3, 256, 1 << 30] {
            let t = TokenCodec::for_capacity(cap);
            let tok = t.token(cap - 1, 77);
            assert_eq!(t.split(tok), (cap - 1, 77));
            assert!(t.same_generation(77, 77));
        }
        let c = ClaimWord::new(9, 3);
        assert!(c.stamped_for(3) && !c.stamped_for(4));
        assert_eq!(c.next_claim(4).generation(), 10);
        assert_eq!(c.retagged(4), ClaimWord::new(9, 4));
    }
}
