//! A key table entry (64 bytes), and the codecs of its packed words: the
//! holder ([`KeyHolder`]) and the waiting reference ([`WaitingRef`]).

/// The key (0 = entry free). Claimed by CAS.
pub const KEY: usize = 0;
/// Last acked version.
pub const LAST_ACKED: usize = 8;
/// Last committed version.
pub const LAST_COMMITTED: usize = 16;
/// Counter for automatic versions.
pub const NEXT_VERSION: usize = 24;
/// Who holds the key: `(slot + 1) << 32 | owner << 21 | claim sequence`
/// (0 = nobody), see [`KeyHolder`].
pub const HOLDER: usize = 32;
/// Latest-only: the waiting message, `(slot + 1) << 32 | position`
/// (its low 32 bits; 0 = none), see [`WaitingRef`].
pub const WAITING: usize = 40;
/// Number of this key's messages that are `PENDING` (waiting off ring
/// order for redelivery or for the key); while it is non-zero a fresh
/// message of the key is parked behind them, so claims of one key stay
/// in commit order.
pub const PARKED: usize = 48;
/// Coarse monotonic time at which the holder was last taken: a holder
/// still *in transit* (taken, its claim CAS not made) a lease after it
/// is a stalled taker's, and is taken over like an expired claim.
pub const HOLDER_SINCE: usize = 56;
/// Size of an entry.
pub const SIZE: usize = 64;

const SLOT_SHIFT: u32 = 32;
const LOW_MASK: u64 = 0xffff_ffff;
const HOLDER_OWNER_SHIFT: u32 = 21;
const HOLDER_OWNER_MASK: u64 = 0x3ff;
const HOLDER_SEQ_MASK: u64 = (1 << HOLDER_OWNER_SHIFT) - 1;
// A slot word's sequence and owner fit the holder's fields.
const _: () = assert!(super::slot::SEQ_MASK <= HOLDER_SEQ_MASK);
const _: () = assert!(super::limits::MAX_PARTICIPANTS <= HOLDER_OWNER_MASK + 1);

/// The slot part of a holder or waiting reference: `None` for 0 (no
/// reference; read from the mapping, so a word below 2^32 is none too).
#[inline]
fn slot_of(w: u64) -> Option<u64> {
    (w >> SLOT_SHIFT).checked_sub(1)
}

/// A key's holder word ([`HOLDER`]): the claim `seq` of `slot` by
/// participant `owner`; 0 = nobody.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct KeyHolder {
    /// The slot of the claim.
    pub slot: u64,
    /// The sequence the claim gives (gave) the slot word.
    pub seq: u64,
    /// The claimer.
    pub owner: u64,
}

impl KeyHolder {
    /// The holder of the claim of `slot` whose word is `claim`.
    #[inline]
    pub fn of_claim(slot: u64, claim: super::slot::SlotWord) -> KeyHolder {
        KeyHolder {
            slot,
            seq: claim.seq(),
            owner: claim.owner(),
        }
    }
    /// Packs the holder.
    #[inline]
    pub fn encode(self) -> u64 {
        (self.slot + 1) << SLOT_SHIFT
            | (self.owner & HOLDER_OWNER_MASK) << HOLDER_OWNER_SHIFT
            | (self.seq & HOLDER_SEQ_MASK)
    }
    /// Unpacks a holder word (`None` for nobody).
    #[inline]
    pub fn decode(w: u64) -> Option<KeyHolder> {
        Some(KeyHolder {
            slot: slot_of(w)?,
            seq: w & HOLDER_SEQ_MASK,
            owner: (w >> HOLDER_OWNER_SHIFT) & HOLDER_OWNER_MASK,
        })
    }
}

/// A key's waiting reference ([`WAITING`]): the slot of the key's waiting
/// message and the low 32 bits of its ring position (which name the
/// message for as long as it lives); 0 = none.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct WaitingRef {
    /// The slot.
    pub slot: u64,
    /// The low 32 bits of the message's position.
    pub position: u64,
}

impl WaitingRef {
    /// The reference to the message at `position` in `slot`.
    #[inline]
    pub fn new(slot: u64, position: u64) -> WaitingRef {
        WaitingRef {
            slot,
            position: position & LOW_MASK,
        }
    }
    /// Packs it.
    #[inline]
    pub fn encode(self) -> u64 {
        (self.slot + 1) << SLOT_SHIFT | (self.position & LOW_MASK)
    }
    /// Unpacks a waiting word; also gives the slot (and low bits) of a
    /// holder word. `None` for 0.
    #[inline]
    pub fn decode(w: u64) -> Option<WaitingRef> {
        Some(WaitingRef {
            slot: slot_of(w)?,
            position: w & LOW_MASK,
        })
    }
    /// Whether it names the message reserved at `position`.
    #[inline]
    pub fn names_position(self, position: u64) -> bool {
        position & LOW_MASK == self.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_zero_is_none() {
        let h = KeyHolder {
            slot: 7,
            seq: 5,
            owner: 1000,
        };
        assert_eq!(KeyHolder::decode(h.encode()), Some(h));
        assert_eq!(KeyHolder::decode(0), None);
        assert_eq!(WaitingRef::decode(0xffff_ffff), None);
        let r = WaitingRef::new(3, (9 << 32) | 17);
        assert_eq!(WaitingRef::decode(r.encode()), Some(r));
        assert!(r.names_position(17) && !r.names_position(18));
    }
}
