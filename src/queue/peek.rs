//! Peeking: copies of the waiting messages, taken without claiming them,
//! without counting a delivery and without writing to the file, so a
//! read-only handle peeks as well as a participant.

use super::{read_engine, Queue};
use crate::error::Result;
use crate::ring::PeekedSlot;

pub use crate::ring::PeekState;

/// A waiting message as [`Queue::peek`] saw it: a private copy, never torn
/// (a message that changed while it was copied is left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peeked {
    /// Ring position of the message.
    pub position: u64,
    /// How it waits: ready, pending redelivery, or delayed.
    pub state: PeekState,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Deliveries so far (0 for a message never claimed; a peek never
    /// counts one).
    pub deliveries: u64,
    /// Monotonic time (CLOCK_MONOTONIC, ns) of the first commit.
    pub enqueued_ns: u64,
    /// Monotonic time a delayed message falls due (`None` unless delayed).
    pub not_before_ns: Option<u64>,
    /// Monotonic time past which the message is never delivered (its
    /// deadline: commit time plus time to live), if it has one.
    pub expires_ns: Option<u64>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl From<PeekedSlot> for Peeked {
    fn from(p: PeekedSlot) -> Peeked {
        Peeked {
            position: p.position,
            state: p.state,
            key: p.key,
            version: p.version,
            deliveries: p.deliveries,
            enqueued_ns: p.enqueued_ns,
            not_before_ns: p.not_before_ns,
            expires_ns: p.expires_ns,
            payload: p.payload,
        }
    }
}

impl Queue {
    /// Copies of up to `max` waiting messages (ready, pending redelivery,
    /// delayed; not those claimed, being written or being dead-lettered),
    /// in ring position order. Nothing is claimed and no delivery is
    /// counted: peeking twice leaves the queue as it was. Works through a
    /// read-only or inspection handle. A scan of every slot: for tools and
    /// browsing, not for a hot loop. `Corrupt` if the file was truncated.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>> {
        self.intact("peek")?;
        let got = read_engine!(self, |e| e.peek(max));
        // Copies made from zero pages are no copies.
        self.checked("peek", Ok(got.into_iter().map(Peeked::from).collect()))
    }
}
