//! What the ledger's words mean: how far a send got ([`send_state`]), the
//! phases of a claim ([`phase`], [`ClaimWord`]), what a worker holds
//! ([`busy`]), how it was killed ([`kill_how`]), the outcome counts, the
//! events, the violation kinds, and the holder word of a key.

/// How far the send of a message id got (bits 0..4 of the send word).
pub mod send_state {
    /// The id was allocated, nothing else is known.
    pub const NONE: u64 = 0;
    /// About to be sent (or sent by a producer killed before it said so).
    pub const INTENT: u64 = 1;
    /// The send returned `Ok`.
    pub const SENT: u64 = 2;
    /// The send returned `Stale`: nothing was queued.
    pub const REFUSED: u64 = 3;
    /// Certainly not sent (the rest of a batch that did not fit).
    pub const NOT_SENT: u64 = 4;
}

/// The send word: state (bits 0..4), queue (4..8), dead-lettered (8),
/// producer instance (32..64).
pub(super) const SEND_STATE_MASK: u64 = 0xf;
pub(super) const SEND_DEAD: u64 = 1 << 8;

/// How far the latest recorded claim of a message got.
pub mod phase {
    /// Never claimed (as far as the ledger knows).
    pub const NONE: u8 = 0;
    /// Claimed; no outcome given yet.
    pub const CLAIMED: u8 = 1;
    /// The ack call is under way.
    pub const ACKING: u8 = 2;
    /// The ack returned `Ok`.
    pub const ACKED: u8 = 3;
    /// The nack call is under way.
    pub const NACKING: u8 = 4;
    /// The nack returned `Ok`.
    pub const NACKED: u8 = 5;
    /// The ack or nack returned `LeaseLost`: a late outcome, refused.
    pub const LEASE_LOST: u8 = 6;
}

/// What a worker holds now (its instance's busy word), for the supervisor,
/// which stalls workers that hold something.
pub mod busy {
    /// Nothing.
    pub const IDLE: u64 = 0;
    /// A consumer holds claims, or a producer a reservation.
    pub const HOLDING: u64 = 1;
    /// Holding, and pausing on purpose (the moment to stall it).
    pub const PAUSED: u64 = 2;
}

/// How a worker was killed (its instance's kill word).
pub mod kill_how {
    /// A single kill.
    pub const SINGLE: u64 = 1;
    /// The first victim of a double kill.
    pub const FIRST_OF_TWO: u64 = 2;
    /// The second victim of a double kill (killed while the survivors,
    /// maybe itself, repaired after the first).
    pub const SECOND_OF_TWO: u64 = 3;
    /// Killed when the run stopped.
    pub const AT_STOP: u64 = 4;

    /// A readable name.
    pub fn name(h: u64) -> &'static str {
        match h {
            SINGLE => "single kill",
            FIRST_OF_TWO => "first of a double kill",
            SECOND_OF_TWO => "second of a double kill",
            AT_STOP => "killed at the stop",
            _ => "?",
        }
    }
}

/// The counts of a record's outcome word: successful acks, successful
/// nacks, late outcomes refused (16 bits each, bits 0, 16, 32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Acks that returned `Ok`.
    pub acks: u64,
    /// Nacks that returned `Ok`.
    pub nacks: u64,
    /// Outcomes that returned `LeaseLost`.
    pub lease_lost: u64,
}

/// Which count of the outcome word to add to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// An ack returned `Ok`.
    Acked = 0,
    /// A nack returned `Ok`.
    Nacked = 16,
    /// An outcome returned `LeaseLost`.
    LeaseLost = 32,
}

/// A record's claim word: delivery number (bits 0..16), phase (16..20),
/// number of first deliveries seen (20..32, saturating), instance (32..64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimWord {
    /// The delivery number of the latest recorded claim (1 = first).
    pub delivery: u32,
    /// See [`phase`].
    pub phase: u8,
    /// How many claims with delivery number 1 were recorded.
    pub fresh: u32,
    /// The instance that made the latest recorded claim.
    pub instance: u32,
}

impl ClaimWord {
    /// Decodes a claim word.
    pub fn decode(w: u64) -> ClaimWord {
        ClaimWord {
            delivery: (w & 0xffff) as u32,
            phase: ((w >> 16) & 0xf) as u8,
            fresh: ((w >> 20) & 0xfff) as u32,
            instance: (w >> 32) as u32,
        }
    }
    /// Encodes it (saturating the counts).
    pub fn encode(self) -> u64 {
        self.delivery.min(0xffff) as u64
            | ((self.phase as u64) & 0xf) << 16
            | (self.fresh.min(0xfff) as u64) << 20
            | (self.instance as u64) << 32
    }
}

/// Rare events counted by the workers (shared counters in the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Event {
    /// A claim of a message whose previous recorded holder was killed
    /// holding it.
    RedeliveredAfterDeath = 0,
    /// A claim of a message that was nacked before (poison).
    RedeliveredAfterNack,
    /// A key found still marked as held by a killed consumer.
    KeyFromKilled,
    /// A version applied again: its first consumer was killed after
    /// applying it and before its ack.
    Reapplied,
    /// A claim of a message whose previous holder is alive (stalled) and
    /// whose lease had run out.
    RedeliveredAfterExpiry,
    /// A key found held by a live consumer whose lease had run out.
    KeyFromExpired,
    /// A late ack or nack (after the lease) refused with `LeaseLost`.
    LateOutcomeRefused,
    /// A late ack or nack accepted though nobody had taken the message over
    /// (no repair had run yet: allowed).
    LateOutcomeUnraced,
    /// A late commit (after the reservation timeout) refused with
    /// `Abandoned`.
    LateCommitAbandoned,
    /// A late commit accepted before any repair abandoned it (allowed).
    LateCommitUnraced,
    /// `recover()` calls made by consumers (kills can land inside them).
    Recovers,
}

/// Number of [`Event`] counters.
pub const EVENTS: usize = 11;

/// The kinds of violation, as named in reports and in `violations.log`.
pub mod kind {
    /// A message sent with `Ok` was neither acked, nor dead-lettered, nor
    /// superseded by a newer version of its key.
    pub const LOST: &str = "lost";
    /// A payload that does not decode (or does not match its message).
    pub const TORN: &str = "torn";
    /// A message delivered with delivery number 1 more than once.
    pub const DOUBLE_FRESH: &str = "double-fresh";
    /// A message claimed while another live consumer held it, or with a
    /// delivery number that did not go up.
    pub const DOUBLE_CLAIM: &str = "double-claim";
    /// Something delivered that was never sent, or was refused.
    pub const NEVER_SENT: &str = "never-sent";
    /// Two live consumers held one key at once.
    pub const KEY_OVERLAP: &str = "key-overlap";
    /// A version applied over a newer one in the local cache.
    pub const VERSION_BACKWARDS: &str = "version-backwards";
    /// A key's final version is not the newest acked one.
    pub const FINAL_VERSION: &str = "final-version";
    /// A send that had to be refused as stale returned `Ok`, or a send
    /// returned a version it was not given.
    pub const STALE_ACCEPTED: &str = "stale-accepted";
    /// A dead letter that is torn, repeated, or also acked.
    pub const DEAD_LETTER: &str = "dead-letter";
    /// A worker that failed or exited by itself; an unexpected error.
    pub const WORKER: &str = "worker";
    /// A queue that could not be drained, or the run stopped making
    /// progress.
    pub const WEDGED: &str = "wedged";
    /// `verify` found a broken invariant, or `recover` found work left.
    pub const VERIFY: &str = "verify";
    /// The engine's counters disagree with the ledger.
    pub const COUNTERS: &str = "counters";
    /// A late outcome (ack or nack after the lease, commit after the
    /// reservation timeout) accepted although the message had been taken
    /// over, or so long after the deadline that a repair must have run.
    pub const LATE_ACCEPTED: &str = "late-accepted";
    /// A live worker's claim or reservation taken back before its lease or
    /// reservation timeout ran out.
    pub const EARLY_REPAIR: &str = "early-repair";
    /// More messages or reservations than slots, or a send refused while
    /// there was room.
    pub const CAPACITY: &str = "capacity";
    /// Death to claimed again too slow: liveness detection did not work.
    pub const LATENCY: &str = "latency";
    /// An event that must show an effect showed none: consumers killed
    /// holding claims and no redelivery after a death, consumers stalled
    /// holding claims and no late outcome refused, producers stalled
    /// holding reservations and no late commit abandoned.
    pub const UNEXERCISED: &str = "unexercised";
}

/// A key's holder word: the instance (low 32 bits) and when its claim call
/// started, in ms of CLOCK_MONOTONIC (high 32 bits, wrapping).
pub fn holder_word(instance: u32, called_ns: u64) -> u64 {
    instance as u64 | ((called_ns / 1_000_000) & 0xffff_ffff) << 32
}

/// (instance, claim call ms) of a holder word.
pub fn split_holder(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

/// Milliseconds from a holder word's claim time (`then_ms`) to `now_ns`.
pub fn ms_since(then_ms: u32, now_ns: u64) -> u64 {
    ((now_ns / 1_000_000) as u32).wrapping_sub(then_ms) as u64
}
