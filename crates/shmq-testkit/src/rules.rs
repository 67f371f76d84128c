//! What the SIGKILL oracle must know about a run besides its ledger: the
//! queues (in ledger order) and how they order messages, the keys, the
//! lease, the largest payload, which ids are poison, and which fault (if
//! any) consumers inject on purpose to show that the checks catch it.

use crate::hash::id_hash;

/// How a queue under test orders its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// No keys.
    Keyless,
    /// Keyed, FIFO per key.
    Fifo,
    /// Keyed, latest-only mode.
    LatestOnly,
}

impl Order {
    /// Whether its messages carry keys.
    pub fn keyed(self) -> bool {
        self != Order::Keyless
    }
}

/// A fault a consumer injects on purpose (see [`Rules::faulty`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// Ack some messages without recording it: they look lost.
    Lose,
    /// Nack some first deliveries and record the redelivery as a first
    /// delivery again: a double fresh delivery.
    DoubleFresh,
    /// Record a late outcome refused with `LeaseLost` as if the engine had
    /// accepted it.
    LateAccept,
}

/// The rules of a run.
#[derive(Clone, Debug)]
pub struct Rules {
    /// The queues, in ledger order: a name for reports, and the order.
    pub queues: Vec<(&'static str, Order)>,
    /// Keys `1..=keys` of every keyed queue.
    pub keys: u64,
    /// The queues' lease, ns.
    pub lease_ns: u64,
    /// The largest payload.
    pub max_message_size: usize,
    /// One id in this many is poison: every consumer nacks it, so it must
    /// end in the dead letters (0 = none).
    pub poison_one_in: u64,
    /// The fault consumers inject, if any.
    pub fault: Option<Injected>,
}

impl Rules {
    /// Whether message `id` is poison.
    pub fn poison(&self, id: u64) -> bool {
        self.poison_one_in > 0 && id_hash(id) % self.poison_one_in == 0
    }

    /// Whether an injected fault hits message `id` (one id in 16; the same
    /// choice in every process).
    pub fn hit(id: u64) -> bool {
        id_hash(id).rotate_left(29) % 16 == 3
    }

    /// Whether the injected fault `f` is the run's and hits message `id`.
    pub fn faulty(&self, id: u64, f: Injected) -> bool {
        self.fault == Some(f) && Rules::hit(id)
    }

    /// The name of queue `qi`.
    pub fn name(&self, qi: usize) -> &'static str {
        self.queues.get(qi).map_or("?", |q| q.0)
    }

    /// How queue `qi` orders messages.
    pub fn order(&self, qi: usize) -> Order {
        self.queues.get(qi).map_or(Order::Keyless, |q| q.1)
    }
}
