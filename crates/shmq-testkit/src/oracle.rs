//! The SIGKILL oracle: the final checks of a run that killed producers and
//! consumers, made once every worker is dead and the queues are drained:
//! the outcome of every message id in the [`Ledger`], the local cache of
//! every key against the engine's per-key versions, the engine's counters
//! against the ledger, and `verify`/`recover` on every queue file.
//! Violations go to the ledger's list, like the workers'.
//!
//! The outcome of an id whose send returned `Ok` (or that was delivered,
//! though its producer was killed before it could record the `Ok`):
//!
//! - acked: an ack of it returned `Ok` (the ledger counts them: more than
//!   one is a violation), or its last claim's ack was under way when its
//!   consumer was killed (`ACKING`, the intent without a result) and the
//!   engine agrees: the message was never claimed again, its queue drained
//!   empty, and it is not a dead letter. The engine's ack counter must then
//!   lie between the acks recorded and those plus these maybe-acked ones;
//! - dead-lettered: its id came out of the dead letters;
//! - superseded (keyed queues): skipped as stale, or replaced in place in
//!   latest-only mode. In FIFO mode only an id older than the key's last
//!   acked version may be skipped; in latest-only mode, one older than the
//!   newest sent version of its key;
//! - anything else is lost.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use shmq::{Counter, Queue};

use crate::ledger::{kind, phase, send_state, Ledger};
use crate::rules::{Order, Rules};

/// The ledger of a run, its rules, and its queues as the checking process
/// attached them (in ledger order).
pub struct Oracle<'a> {
    /// The rules of the run.
    pub rules: &'a Rules,
    /// The ledger of the run.
    pub ledger: &'a Ledger,
    /// The queues.
    pub queues: &'a [Queue],
    /// Which queues the final drain emptied.
    pub drained: &'a [bool],
}

/// What became of the messages of one queue.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Outcomes {
    /// Sends that returned `Ok` (or were delivered though their producer
    /// died before it recorded the `Ok`).
    pub sent: u64,
    /// Acked (including `acked_at_kill`).
    pub acked: u64,
    /// Maybe acked: the ack was under way when its consumer was killed
    /// (an intent without a result), and the engine agrees it landed.
    pub acked_at_kill: u64,
    /// Dead-lettered (poison, or too many deaths of its consumers).
    pub dead_lettered: u64,
    /// Poison messages among the sent ones.
    pub poison: u64,
    /// Keyed: skipped as stale or replaced by a newer version.
    pub superseded: u64,
    /// Keyed sends refused as stale.
    pub refused_stale: u64,
    /// Producer killed during the send and the message never delivered:
    /// either nothing was sent or it was superseded.
    pub unknown: u64,
    /// Lost: neither acked, dead-lettered nor superseded.
    pub lost: u64,
    /// Delivered with delivery number 1 more than once.
    pub double_fresh: u64,
}

impl Outcomes {
    /// Adds another queue's outcomes.
    pub fn add(&mut self, o: &Outcomes) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.acked_at_kill += o.acked_at_kill;
        self.dead_lettered += o.dead_lettered;
        self.poison += o.poison;
        self.superseded += o.superseded;
        self.refused_stale += o.refused_stale;
        self.unknown += o.unknown;
        self.lost += o.lost;
        self.double_fresh += o.double_fresh;
    }
}

/// What the ledger says about one key.
#[derive(Default)]
struct KeyFacts {
    newest_sent: u64,
    newest_acked: u64,
    /// Versions applied (maybe) by a consumer killed before its ack, whose
    /// message was then never acked.
    applied_by_killed: HashSet<u64>,
}

/// A readable name of a claim phase.
pub fn phase_name(p: u8) -> &'static str {
    match p {
        phase::NONE => "never claimed",
        phase::CLAIMED => "claimed",
        phase::ACKING => "acking",
        phase::ACKED => "acked",
        phase::NACKING => "nacking",
        phase::NACKED => "nacked",
        phase::LEASE_LOST => "late outcome refused",
        _ => "?",
    }
}

impl Oracle<'_> {
    /// Every final check: [`Oracle::check`], [`Oracle::check_counters`]
    /// (no torn message was acked) and [`Oracle::check_files`]. Returns
    /// the outcomes and (ledger acks, maybe acked) per queue.
    pub fn verdict(&self) -> (Vec<Outcomes>, Vec<(u64, u64)>) {
        let outcomes = self.check();
        let acks = self.check_counters(&outcomes, 0);
        self.check_files();
        (outcomes, acks)
    }

    /// Checks every id and key; returns the outcomes per queue.
    pub fn check(&self) -> Vec<Outcomes> {
        let ledger = self.ledger;
        let nq = self.queues.len();
        let n = ledger.next_id();
        let mut out = vec![Outcomes::default(); nq];
        let mut keys: HashMap<(usize, u64), KeyFacts> = HashMap::new();
        let sent_like = |state: u64, claimed: bool, dead: bool| {
            state == send_state::SENT || (state == send_state::INTENT && (claimed || dead))
        };

        // Pass 1: the newest version sent of every key.
        for id in 0..n {
            let (state, qi, dead, _) = ledger.send_of(id);
            if qi >= nq || !self.rules.order(qi).keyed() {
                continue;
            }
            let c = ledger.claim_of(id);
            if sent_like(state, c.phase != phase::NONE, dead) {
                let (key, version) = ledger.key_version_of(id);
                let f = keys.entry((qi, key)).or_default();
                f.newest_sent = f.newest_sent.max(version);
            }
        }

        // Pass 2: the outcome of every id.
        for id in 0..n {
            let (state, qi, dead, producer) = ledger.send_of(id);
            let c = ledger.claim_of(id);
            let claimed = c.phase != phase::NONE;
            if qi >= nq {
                ledger.violation(
                    kind::NEVER_SENT,
                    &format!("id {id}: ledger record names queue {qi}"),
                );
                continue;
            }
            let name = self.rules.name(qi);
            let o = &mut out[qi];
            match state {
                send_state::NONE | send_state::REFUSED | send_state::NOT_SENT => {
                    if state == send_state::REFUSED {
                        o.refused_stale += 1;
                    }
                    if claimed || dead {
                        ledger.violation(
                            kind::NEVER_SENT,
                            &format!(
                                "queue {name}: id {id} was {} though its send {}",
                                if dead { "dead-lettered" } else { "delivered" },
                                if state == send_state::REFUSED {
                                    "returned Stale"
                                } else {
                                    "never happened"
                                }
                            ),
                        );
                    }
                    continue;
                }
                send_state::INTENT if !claimed && !dead => {
                    o.unknown += 1;
                    continue;
                }
                send_state::INTENT | send_state::SENT => {}
                other => {
                    ledger.violation(
                        kind::NEVER_SENT,
                        &format!("queue {name}: id {id} has send state {other}"),
                    );
                    continue;
                }
            }
            o.sent += 1;
            if self.rules.poison(id) {
                o.poison += 1;
            }
            if c.fresh > 1 {
                o.double_fresh += 1;
                ledger.violation(
                    kind::DOUBLE_FRESH,
                    &format!(
                        "queue {name}: id {id} was delivered {} times with delivery number 1",
                        c.fresh
                    ),
                );
            }
            let holder_killed = ledger.killed_at(c.instance).is_some();
            let counts = ledger.outcomes_of(id);
            if counts.acks > 1 {
                ledger.violation(
                    kind::DOUBLE_CLAIM,
                    &format!(
                        "queue {name}: id {id} was acked {} times with Ok",
                        counts.acks
                    ),
                );
            }
            // An intent without a result: maybe acked, if the engine agrees.
            let maybe = counts.acks == 0
                && c.phase == phase::ACKING
                && holder_killed
                && self.drained[qi]
                && !dead;
            let acked = counts.acks > 0 || maybe;
            let (key, version) = ledger.key_version_of(id);
            let keyed = self.rules.order(qi).keyed();
            if acked {
                o.acked += 1;
                if maybe {
                    o.acked_at_kill += 1;
                }
                if dead {
                    ledger.violation(
                        kind::DEAD_LETTER,
                        &format!("queue {name}: id {id} was acked and dead-lettered"),
                    );
                }
                if keyed {
                    let f = keys.entry((qi, key)).or_default();
                    f.newest_acked = f.newest_acked.max(version);
                }
                continue;
            }
            if keyed && c.phase == phase::CLAIMED && holder_killed {
                keys.entry((qi, key))
                    .or_default()
                    .applied_by_killed
                    .insert(version);
            }
            if dead {
                o.dead_lettered += 1;
                continue;
            }
            let superseded = keyed
                && match self.rules.order(qi) {
                    Order::Fifo => version < self.queues[qi].latest_acked_version(key),
                    _ => keys
                        .get(&(qi, key))
                        .is_some_and(|f| version < f.newest_sent),
                };
            if superseded {
                o.superseded += 1;
                continue;
            }
            o.lost += 1;
            ledger.violation(
            kind::LOST,
            &format!(
                "queue {name}: id {id}{} (send {}, by instance {producer}) was neither acked nor dead-lettered; last recorded claim: {}, delivery {}, instance {} ({})",
                if keyed {
                    format!(" (key {key} version {version})")
                } else {
                    String::new()
                },
                if state == send_state::SENT { "returned Ok" } else { "unrecorded, the message was delivered" },
                phase_name(c.phase),
                c.delivery,
                c.instance,
                if holder_killed { "killed" } else { "not killed" }
            ),
        );
        }

        // Every key: the cache, the engine and the ledger agree on the newest
        // acked version, and nobody alive still holds it.
        for (qi, q) in self.queues.iter().enumerate() {
            if !self.rules.order(qi).keyed() {
                continue;
            }
            let name = self.rules.name(qi);
            for key in 1..=self.rules.keys {
                let cached = ledger.cached_version(qi, key).load(Ordering::SeqCst);
                let engine = q.latest_acked_version(key);
                let empty = KeyFacts::default();
                let f = keys.get(&(qi, key)).unwrap_or(&empty);
                if engine != f.newest_acked {
                    ledger.violation(
                    kind::FINAL_VERSION,
                    &format!(
                        "queue {name}: key {key}: the engine's last acked version is {engine}, the newest acked in the ledger {}",
                        f.newest_acked
                    ),
                );
                }
                if cached != engine && !f.applied_by_killed.contains(&cached) {
                    ledger.violation(
                    kind::FINAL_VERSION,
                    &format!(
                        "queue {name}: key {key}: the local cache holds version {cached}, the last acked is {engine}"
                    ),
                );
                }
                let holder = ledger.key_holder(qi, key).load(Ordering::SeqCst);
                if holder != 0 && ledger.killed_at(holder as u32).is_none() {
                    ledger.violation(
                        kind::KEY_OVERLAP,
                        &format!("queue {name}: key {key} is still held by live instance {holder}"),
                    );
                }
            }
        }
        out
    }

    /// The engine's counters against the ledger, per queue: every ack the
    /// ledger recorded was counted, and at most the maybe-acked ones (intents
    /// without a result that the engine's state agrees with) and the acks of
    /// torn messages more: `ledger acks <= engine acked <= ledger acks +
    /// maybe acked + torn`; every recorded `Ok` send was counted, and at most
    /// the sends whose outcome is unknown more. Returns (ledger acks, maybe
    /// acked) per queue.
    pub fn check_counters(&self, outcomes: &[Outcomes], torn: u64) -> Vec<(u64, u64)> {
        let ledger = self.ledger;
        let nq = self.queues.len();
        let n = ledger.next_id();
        let mut acks_recorded = vec![0u64; nq];
        let mut sent_recorded = vec![0u64; nq];
        let mut intent = vec![0u64; nq];
        for id in 0..n {
            let (state, qi, _, _) = ledger.send_of(id);
            if qi >= nq {
                continue;
            }
            match state {
                send_state::SENT => sent_recorded[qi] += 1,
                send_state::INTENT => intent[qi] += 1,
                _ => {}
            }
            acks_recorded[qi] += ledger.outcomes_of(id).acks;
        }
        let mut out = Vec::new();
        for (qi, q) in self.queues.iter().enumerate() {
            let name = self.rules.name(qi);
            let st = q.stats();
            let acked = st.counter(Counter::Acked);
            let maybe = outcomes[qi].acked_at_kill;
            let (lo, hi) = (acks_recorded[qi], acks_recorded[qi] + maybe + torn);
            if acked < lo || acked > hi {
                ledger.violation(
                kind::COUNTERS,
                &format!(
                    "queue {name}: the engine counted {acked} acks; the ledger recorded {lo} and {maybe} more were under way at a kill (+ {torn} torn): {lo}..={hi}"
                ),
            );
            }
            let sent = st.counter(Counter::Sent);
            let (lo, hi) = (sent_recorded[qi], sent_recorded[qi] + intent[qi]);
            if sent < lo || sent > hi {
                ledger.violation(
                    kind::COUNTERS,
                    &format!(
                        "queue {name}: the engine counted {sent} sends, the ledger {lo}..={hi}"
                    ),
                );
            }
            out.push((acks_recorded[qi], maybe));
        }
        out
    }

    /// `verify` on every queue, and `recover`, which must find nothing left
    /// to repair once the queues are drained.
    pub fn check_files(&self) {
        let ledger = self.ledger;
        for (qi, q) in self.queues.iter().enumerate() {
            let name = self.rules.name(qi);
            for p in q.verify().problems {
                ledger.violation(kind::VERIFY, &format!("queue {name}: {p}"));
            }
            match q.recover() {
                Ok(r) if r.abandoned + r.redelivered + r.dead_lettered > 0 => ledger.violation(
                    kind::VERIFY,
                    &format!("queue {name}: recover after the drain still found work: {r:?}"),
                ),
                Ok(_) => {}
                Err(e) => ledger.violation(kind::VERIFY, &format!("queue {name}: recover: {e}")),
            }
            for p in q.verify().problems {
                ledger.violation(kind::VERIFY, &format!("queue {name}: after recover: {p}"));
            }
        }
    }
}
