//! A participant entry, and the codec of its state word ([`EntryState`]).

/// State word: `pid << 32 | generation << 12 | cleaner << 2 | state`,
/// see [`EntryState`] (and `participants`: the cleaner is named in the same CAS that marks
/// the entry `CLEANING`).
pub const STATE: usize = 0;
/// Process start time (clock ticks since boot, /proc/PID/stat field 22).
pub const START_TIME: usize = 8;
/// Index + 1 of the participant cleaning up after this one.
pub const CLEANER: usize = 16;
/// Monotonic time of attachment.
pub const ATTACHED_NS: usize = 24;
/// Roles seen (bit 0 produced, bit 1 consumed).
pub const ROLES: usize = 32;
/// Wait points this participant is registered on as a sleeper (bit 0
/// not-empty, bit 1 not-full), so a cleaner can take its count back.
pub const SLEEPING: usize = 40;
/// Slots this participant took from `FREE` (reservations), ever.
pub const TOOK: usize = 48;
/// Slots this participant returned to `FREE`, ever. The sum over all
/// entries of `TOOK - FREED` is the number of occupied slots.
pub const FREED: usize = 56;
/// Key table entry + 1 whose holder this participant is taking for a
/// claim (0 = none): set before the holder CAS, cleared after the
/// slot's claim CAS, so that a cleaner can free a key whose taker died
/// between the two (see `Engine::acquire_key`).
pub const TAKING_KEY: usize = 64;
/// First counter; see [`crate::metrics::Counter`].
pub const COUNTERS: usize = 72;
/// Number of counters.
pub const COUNTER_COUNT: usize = 23;
/// First histogram.
pub const HISTOGRAMS: usize = 256;
/// Number of histograms (lead time, processing time, end to end).
pub const HISTOGRAM_COUNT: usize = 3;
/// Bytes of one histogram: buckets, then count, sum, max.
pub const HISTOGRAM_SIZE: usize = (crate::metrics::BUCKETS + 3) * 8;
/// Bytes from one participant to the next.
pub const STRIDE: usize = super::align_up(
    HISTOGRAMS + HISTOGRAM_COUNT * HISTOGRAM_SIZE,
    super::HOT_ALIGN,
);

/// Participant states.
pub const FREE: u64 = 0;
/// Attached and (as far as anyone knows) alive.
pub const LIVE: u64 = 1;
/// Dead; a survivor is cleaning up after it.
pub const CLEANING: u64 = 2;

/// The lock byte of participant 0 (see `participants`); far beyond any
/// file, so the locks never overlap data (OFD locks are advisory and do not
/// affect the mapping).
pub const LOCK_BASE: u64 = 1 << 40;

const STATE_MASK: u64 = 3;
const CLEANER_SHIFT: u32 = 2;
const CLEANER_MASK: u64 = 0x3ff;
const GENERATION_SHIFT: u32 = 12;
const GENERATION_MASK: u64 = 0xf_ffff;
const PID_SHIFT: u32 = 32;
const _: () = assert!(super::limits::MAX_PARTICIPANTS <= CLEANER_MASK);

/// An entry's decoded state word ([`STATE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// FREE, LIVE or CLEANING.
    pub state: u64,
    /// Bumped on every registration (20 bits).
    pub generation: u64,
    /// The registered process.
    pub pid: u32,
    /// While `CLEANING`: the index + 1 of the participant cleaning up after
    /// this one (10 bits: participant indices are below 1023). 0 otherwise.
    pub cleaner: u64,
}

impl EntryState {
    /// Whether the entry is free (nobody registered).
    #[inline]
    pub fn is_free(&self) -> bool {
        self.state == FREE
    }
    /// Whether the entry is registered and not known dead.
    #[inline]
    pub fn is_live(&self) -> bool {
        self.state == LIVE
    }
    /// Whether a survivor is cleaning up after the entry's dead owner.
    #[inline]
    pub fn is_cleaning(&self) -> bool {
        self.state == CLEANING
    }
    /// Whether the state is one of the three (read from the mapping, it
    /// may be anything).
    #[inline]
    pub fn is_valid(&self) -> bool {
        self.state <= CLEANING
    }
    /// Decodes a state word.
    pub fn decode(w: u64) -> EntryState {
        EntryState {
            state: w & STATE_MASK,
            cleaner: (w >> CLEANER_SHIFT) & CLEANER_MASK,
            generation: (w >> GENERATION_SHIFT) & GENERATION_MASK,
            pid: (w >> PID_SHIFT) as u32,
        }
    }
    /// Encodes it.
    pub fn encode(self) -> u64 {
        (self.pid as u64) << PID_SHIFT
            | (self.generation & GENERATION_MASK) << GENERATION_SHIFT
            | (self.cleaner & CLEANER_MASK) << CLEANER_SHIFT
            | (self.state & STATE_MASK)
    }
}
