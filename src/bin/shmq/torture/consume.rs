//! What a torture consumer does with the messages it claims, and what the
//! parent does with dead letters: check each one against the ledger and the
//! local cache of its keys, record the claim, give the outcome (nack the
//! poison, apply and ack the rest), and record the outcome. The consumer
//! workers and the parent's final drain share this code.
//!
//! Per message, in this order (see [`super::ledger`] for why the order
//! matters):
//!
//! 1. copy the payload (the engine checks the copy was not torn) and decode
//!    it: its id, key and version must match the message and the ledger;
//! 2. record the claim; the claim word it replaces says who had the message
//!    before: a killed consumer (a redelivery after death: the latency from
//!    the kill to this claim is a sample), a nack (poison), or nobody. A live
//!    holder, an ack, or a delivery number that did not go up is a
//!    violation;
//! 3. keyed: take the key's holder word (held by a live consumer: a
//!    violation) and compare the version with the cached one (older: a
//!    violation);
//! 4. poison: `NACKING`, nack, `NACKED`. Otherwise: apply the version to the
//!    cache, release the key, `ACKING`, ack, `ACKED`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use shmq::{Message, Queue};

use super::ledger::{kind, phase, send_state, Event, Ledger};
use super::payload;
use super::{Config, Fault};

/// A consumer: the parent's drain or a worker.
pub struct Consumer<'a> {
    /// The run's configuration.
    pub cfg: &'a Config,
    /// The ledger.
    pub ledger: &'a Ledger,
    /// Our instance number.
    pub me: u32,
    /// Whether the injected fault of the configuration applies (workers
    /// only, never the parent's drain).
    pub inject: bool,
}

/// One claimed message, checked.
struct Item {
    /// The ledger id; `None` when the payload did not decode.
    id: Option<u64>,
    key: u64,
    version: u64,
    delivery: u32,
    poison: bool,
}

impl Consumer<'_> {
    fn queue_name(&self, qi: usize) -> &'static str {
        self.cfg.queues[qi].kind.name()
    }

    fn faulty(&self, id: u64, f: Fault) -> bool {
        self.inject && self.cfg.faulty(id, f)
    }

    /// Checks, records and settles a claimed batch. `claim_ns` is when the
    /// claim returned (CLOCK_MONOTONIC); `hold` keeps the messages a
    /// millisecond before the outcome (so that kills land while they are
    /// held). An `Err` is an unexpected engine error: the caller stops.
    pub fn handle(
        &self,
        q: &Queue,
        qi: usize,
        msgs: Vec<Message<'_>>,
        claim_ns: u64,
        hold: bool,
    ) -> Result<(), String> {
        let mut items = Vec::with_capacity(msgs.len());
        for m in &msgs {
            items.push(self.check_claim(qi, m, claim_ns)?);
        }
        if hold {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut to_ack = Vec::with_capacity(msgs.len());
        let mut acked_ids = Vec::with_capacity(msgs.len());
        for (m, it) in msgs.into_iter().zip(items) {
            let Some(id) = it.id else {
                // Torn (already reported): ack it to get it out of the way.
                to_ack.push(m);
                continue;
            };
            let double = self.faulty(id, Fault::DoubleFresh) && it.delivery == 1;
            if it.poison || double {
                self.release_key(qi, &it);
                let _ = self.ledger.record_phase(id, self.me, phase::NACKING);
                m.nack(Duration::ZERO)
                    .map_err(|e| format!("nack of id {id}: {e}"))?;
                let _ = self.ledger.record_phase(id, self.me, phase::NACKED);
                continue;
            }
            if self.cfg.queues[qi].kind.keyed() {
                let cached = self.ledger.cached_version(qi, it.key);
                if cached.load(Ordering::SeqCst) == it.version && it.delivery > 1 {
                    self.ledger.event(Event::Reapplied);
                }
                cached.store(it.version, Ordering::SeqCst);
            }
            self.release_key(qi, &it);
            if !self.faulty(id, Fault::Lose) {
                let _ = self.ledger.record_phase(id, self.me, phase::ACKING);
                acked_ids.push(id);
            }
            to_ack.push(m);
        }
        match to_ack.len() {
            0 => {}
            1 => {
                if let Some(m) = to_ack.pop() {
                    m.ack().map_err(|e| format!("ack: {e}"))?;
                }
            }
            n => {
                let k = q
                    .ack_batch(&to_ack)
                    .map_err(|e| format!("ack_batch: {e}"))?;
                if k != n {
                    self.ledger.violation(
                        kind::DOUBLE_CLAIM,
                        &format!(
                            "queue {}: ack_batch acked {k} of {n} messages held by live instance {}",
                            self.queue_name(qi),
                            self.me
                        ),
                    );
                }
            }
        }
        for id in acked_ids {
            let _ = self.ledger.record_phase(id, self.me, phase::ACKED);
        }
        Ok(())
    }

    /// Steps 1 to 3 for one message.
    fn check_claim(&self, qi: usize, m: &Message<'_>, claim_ns: u64) -> Result<Item, String> {
        let name = self.queue_name(qi);
        let d = m.deliveries();
        let torn = Item {
            id: None,
            key: 0,
            version: 0,
            delivery: d,
            poison: false,
        };
        let data = m.data().map_err(|e| format!("queue {name}: data: {e}"))?;
        let Some(p) = payload::decode(&data, self.cfg.max_message_size) else {
            self.ledger.violation(
                kind::TORN,
                &format!(
                    "queue {name}: a {}-byte payload at position {} (delivery {d}) does not decode",
                    data.len(),
                    m.position()
                ),
            );
            return Ok(torn);
        };
        let id = p.id;
        if id >= self.ledger.sizes().records {
            self.ledger.violation(
                kind::NEVER_SENT,
                &format!("queue {name}: delivered id {id}, beyond every id handed out"),
            );
            return Ok(torn);
        }
        let (state, rq, _, _) = self.ledger.send_of(id);
        let keyed = self.cfg.queues[qi].kind.keyed();
        if !matches!(state, send_state::INTENT | send_state::SENT) || rq != qi {
            self.ledger.violation(
                kind::NEVER_SENT,
                &format!(
                    "queue {name}: delivered id {id} (delivery {d}), whose send state is {state} on queue {}",
                    self.queue_name(rq.min(self.cfg.queues.len() - 1))
                ),
            );
        }
        let (rkey, rversion) = self.ledger.key_version_of(id);
        let version = m.version();
        let payload_ok = p.key == m.key()
            && p.key == rkey
            && (!keyed || ((p.version == 0 || p.version == version) && version != 0))
            && (!keyed || rversion == 0 || rversion == version);
        if !payload_ok {
            self.ledger.violation(
                kind::TORN,
                &format!(
                    "queue {name}: id {id} sent as key {rkey} version {rversion} (payload {}/{}) delivered as key {} version {version}",
                    p.key,
                    p.version,
                    m.key()
                ),
            );
        }
        if keyed && rversion == 0 {
            // Sent with "the next version" by a producer killed before it
            // recorded which: the message says.
            self.ledger.sent_version(id, version);
        }

        // The injected double delivery: the redelivery after a nack is
        // recorded as if it were a first delivery.
        let recorded = if self.faulty(id, Fault::DoubleFresh) && d == 2 {
            1
        } else {
            d
        };
        let old = self.ledger.record_claim(id, recorded, self.me);
        if old.delivery != 0 && old.delivery >= d && d > 1 {
            self.ledger.violation(
                kind::DOUBLE_CLAIM,
                &format!(
                    "queue {name}: id {id} claimed with delivery {d} by instance {} after delivery {} by instance {}",
                    self.me, old.delivery, old.instance
                ),
            );
        }
        match old.phase {
            phase::CLAIMED | phase::ACKING => match self.ledger.killed_at(old.instance) {
                Some(_) => {
                    self.ledger.event(Event::RedeliveredAfterDeath);
                    if old.delivery + 1 == d {
                        self.ledger.add_sample(old.instance, claim_ns);
                    }
                }
                None => self.ledger.violation(
                    kind::DOUBLE_CLAIM,
                    &format!(
                        "queue {name}: id {id} claimed (delivery {d}) by instance {} while live instance {} held it (delivery {}, {})",
                        self.me,
                        old.instance,
                        old.delivery,
                        if old.phase == phase::ACKING { "acking" } else { "claimed" }
                    ),
                ),
            },
            phase::ACKED => self.ledger.violation(
                kind::DOUBLE_CLAIM,
                &format!(
                    "queue {name}: id {id} claimed again (delivery {d}) after instance {} acked it",
                    old.instance
                ),
            ),
            phase::NACKING | phase::NACKED => self.ledger.event(Event::RedeliveredAfterNack),
            _ => {}
        }

        let item = Item {
            id: Some(id),
            key: m.key(),
            version,
            delivery: d,
            poison: self.cfg.poison(id),
        };
        if keyed && (1..=self.cfg.keys).contains(&item.key) {
            self.take_key(qi, &item);
        } else if keyed {
            self.ledger.violation(
                kind::TORN,
                &format!(
                    "queue {name}: id {id} delivered with key {}, outside 1..={}",
                    item.key, self.cfg.keys
                ),
            );
        }
        Ok(item)
    }

    /// Takes the key's holder word and checks the version against the
    /// cache.
    fn take_key(&self, qi: usize, it: &Item) {
        let name = self.queue_name(qi);
        let holder = self.ledger.key_holder(qi, it.key);
        if let Err(other) =
            holder.compare_exchange(0, self.me as u64, Ordering::SeqCst, Ordering::SeqCst)
        {
            if self.ledger.killed_at(other as u32).is_some() {
                self.ledger.event(Event::KeyFromKilled);
            } else {
                self.ledger.violation(
                    kind::KEY_OVERLAP,
                    &format!(
                        "queue {name}: key {} claimed by instance {} (version {}, delivery {}) while live instance {other} held it",
                        it.key, self.me, it.version, it.delivery
                    ),
                );
            }
            holder.store(self.me as u64, Ordering::SeqCst);
        }
        let cached = self
            .ledger
            .cached_version(qi, it.key)
            .load(Ordering::SeqCst);
        if it.version < cached {
            self.ledger.violation(
                kind::VERSION_BACKWARDS,
                &format!(
                    "queue {name}: key {} version {} delivered (delivery {}) after version {cached} was applied",
                    it.key, it.version, it.delivery
                ),
            );
        }
    }

    /// Clears the key's holder word if it is still ours (if it is not, the
    /// consumer that took it reported the overlap).
    fn release_key(&self, qi: usize, it: &Item) {
        if self.cfg.queues[qi].kind.keyed() && (1..=self.cfg.keys).contains(&it.key) {
            let _ = self.ledger.key_holder(qi, it.key).compare_exchange(
                self.me as u64,
                0,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// Takes every dead letter out of queue `qi`: checks it, marks its id
    /// dead-lettered in the ledger, and purges it (the area is bounded).
    /// Returns how many.
    pub fn take_dead_letters(&self, q: &Queue, qi: usize) -> Result<u64, String> {
        let name = self.queue_name(qi);
        let mut n = 0;
        for d in q.dlq_list() {
            match payload::decode(&d.payload, self.cfg.max_message_size) {
                None => self.ledger.violation(
                    kind::DEAD_LETTER,
                    &format!(
                        "queue {name}: dead letter {} ({} bytes, reason {:?}) does not decode",
                        d.id,
                        d.payload.len(),
                        d.reason
                    ),
                ),
                Some(p) if p.id >= self.ledger.sizes().records => self.ledger.violation(
                    kind::DEAD_LETTER,
                    &format!(
                        "queue {name}: dead letter {} carries unknown id {}",
                        d.id, p.id
                    ),
                ),
                Some(p) => {
                    let (_, rq, _, _) = self.ledger.send_of(p.id);
                    if rq != qi || p.key != d.key {
                        self.ledger.violation(
                            kind::DEAD_LETTER,
                            &format!(
                                "queue {name}: dead letter {} (id {}, key {}) belongs to queue {} key {}",
                                d.id,
                                p.id,
                                d.key,
                                self.queue_name(rq.min(self.cfg.queues.len() - 1)),
                                p.key
                            ),
                        );
                    }
                    if !self.ledger.mark_dead_lettered(p.id) {
                        self.ledger.violation(
                            kind::DEAD_LETTER,
                            &format!("queue {name}: id {} dead-lettered twice", p.id),
                        );
                    }
                }
            }
            q.dlq_purge(Some(d.id))
                .map_err(|e| format!("queue {name}: purging dead letter {}: {e}", d.id))?;
            n += 1;
        }
        Ok(n)
    }
}
