//! A slot: its header words, the payload after them at [`PAYLOAD`], and
//! the codecs of every packed word of the header: the state word
//! ([`SlotWord`], [`SlotState`]), the tagged lease and delivery count
//! ([`LeaseWord`], [`AttemptsWord`]), the length word ([`LenWord`]) and the
//! claim word ([`ClaimWord`]), with the fencing token made from it
//! ([`TokenCodec`]).

/// The state word, see [`SlotWord`]. Every state change is
/// one CAS on it.
pub const WORD: usize = 0;
/// The ring position at which the message was reserved.
pub const POSITION: usize = 8;
/// [`LeaseWord`]: `tag << 42 | deadline / 2^16 ns`: lease deadline (claimed), not-before
/// time (delayed) or reservation deadline (reserved); valid only when the
/// tag equals the word's sequence.
pub const LEASE: usize = 16;
/// [`AttemptsWord`]: `tag << 42 | deliveries`: the delivery count, counted by the claimer
/// (or lazily by whoever reclaims) for the claim whose sequence is the tag.
pub const ATTEMPTS: usize = 24;
/// The message key (0 = none).
pub const KEY: usize = 32;
/// The message version.
pub const VERSION: usize = 40;
/// Monotonic time of the first commit, nanoseconds.
pub const ENQUEUED_NS: usize = 48;
/// [`LenWord`]: `flags << 32 | payload length`.
pub const LEN: usize = 56;
/// Flag in `LEN`: the message's times are measured precisely (its
/// enqueue time is a TSC reading, and its consumer times its claim and
/// ack) for the latency histograms.
pub const LEN_SAMPLED: u64 = LenWord::SAMPLED;
/// `generation:56 | tag:8`: the generation of the slot's current (or
/// last) claim, counted up once per claim for the life of the file, and
/// the low bits of the sequence of the claim it was stamped for (see
/// [`ClaimWord`]). A claim's fencing token is made from it, so a
/// token never names another claim however many transitions pass.
pub const CLAIM: usize = 64;
/// The message's deadline (monotonic ns): past it, the message is never
/// delivered (dead-lettered or dropped, as the queue says). Meaningful only
/// when the `LEN` word has its [`LenWord::EXPIRES`] flag; written by the
/// producer before the commit, and kept through redeliveries.
pub const EXPIRES: usize = 72;
/// Flag in `LEN`: the message has a deadline in [`EXPIRES`].
pub const LEN_EXPIRES: u64 = LenWord::EXPIRES;
/// Start of the payload.
pub const PAYLOAD: usize = 80;

mod claim_word;
mod state_word;
mod tagged;

pub use claim_word::{ClaimWord, TokenCodec};
pub use state_word::{
    lap_diff, next_seq, prev_seq, state, wrap_lap, wrap_seq, SlotState, SlotWord, LAP_BITS,
    SEQ_BITS, SEQ_MASK,
};
pub use tagged::{AttemptsWord, LeaseWord, LenWord};
