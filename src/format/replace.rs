//! A participant's replacement record (latest-only queues only; see
//! `Engine::take_waiting`): the new message of the replacement in
//! place that the participant is making, written here before it touches the
//! waiting message's slot, so that whoever repairs after it can finish the
//! replacement (or undo it) instead of losing both messages. The payload
//! follows at [`PAYLOAD`]; its word is a [`ReplaceWord`].

/// `(slot + 1) << 32 | phase << 28 | reservation sequence` of the
/// replacement in progress (0 = none); phases below. Written by its
/// participant; moved from `INTENT` to `ABORTED` by a repair that undoes
/// a stalled replacement, and cleared by whoever cleans up after a dead
/// one.
pub const WORD: usize = 0;
/// Monotonic deadline of the replacement's reservation (the slot's own
/// lease word is not written by a replacer: see `engine`).
pub const DEADLINE: usize = 8;
/// The new message's key.
pub const KEY: usize = 16;
/// The new message's version.
pub const VERSION: usize = 24;
/// The new message's `flags << 32 | length` (as [`super::slot::LEN`]).
pub const LEN: usize = 32;
/// The new message's enqueue time.
pub const ENQUEUED_NS: usize = 40;
/// Start of the new message's payload.
pub const PAYLOAD: usize = 64;
/// The new message's deadline (as the slot's `EXPIRES`), meaningful when
/// the record's `LEN` has the deadline flag.
pub const EXPIRES: usize = 48;

/// Phase: the slot is (or is about to be) taken; its old message is
/// still whole in it, the record may not be complete yet.
pub const INTENT: u64 = 1;
/// Phase: the record is complete; the slot's payload is being
/// overwritten with it.
pub const COPY: u64 = 2;
/// Phase: a repair undid the replacement (the old message is back, or
/// goes back); its participant must not write the slot.
pub const ABORTED: u64 = 3;

const SLOT_SHIFT: u32 = 32;
const PHASE_SHIFT: u32 = 28;
const PHASE_MASK: u64 = 0xf;
const SEQ_MASK: u64 = (1 << PHASE_SHIFT) - 1;
const _: () = assert!(super::slot::SEQ_MASK <= SEQ_MASK);

/// A replacement record's word ([`WORD`]): the slot taken, the sequence of
/// the replacement's reservation, and the phase ([`INTENT`], [`COPY`],
/// [`ABORTED`]).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct ReplaceWord {
    /// The slot being replaced in.
    pub slot: u64,
    /// The sequence of the reservation (the take).
    pub seq: u64,
    /// The phase.
    pub phase: u64,
}

impl ReplaceWord {
    /// The word of the replacement of `slot` taken at sequence `seq`, in
    /// `phase`.
    #[inline]
    pub fn new(slot: u64, seq: u64, phase: u64) -> ReplaceWord {
        ReplaceWord {
            slot,
            seq: seq & super::slot::SEQ_MASK,
            phase,
        }
    }
    /// Packs it.
    #[inline]
    pub fn encode(self) -> u64 {
        (self.slot + 1) << SLOT_SHIFT
            | (self.phase & PHASE_MASK) << PHASE_SHIFT
            | (self.seq & super::slot::SEQ_MASK)
    }
    /// Unpacks a word (`None` for 0 or a word that is no replacement: it is
    /// read from the mapping).
    #[inline]
    pub fn decode(w: u64) -> Option<ReplaceWord> {
        let slot = (w >> SLOT_SHIFT).checked_sub(1)?;
        let phase = (w >> PHASE_SHIFT) & PHASE_MASK;
        matches!(phase, INTENT | COPY | ABORTED).then_some(ReplaceWord {
            slot,
            seq: w & super::slot::SEQ_MASK,
            phase,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_other_phases_are_none() {
        let w = ReplaceWord::new(4, 3, COPY);
        assert_eq!(ReplaceWord::decode(w.encode()), Some(w));
        assert_eq!(ReplaceWord::decode(0), None);
        assert_eq!(
            ReplaceWord::decode(ReplaceWord::new(4, 3, 9).encode()),
            None
        );
    }
}
