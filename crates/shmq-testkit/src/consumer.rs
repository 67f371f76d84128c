//! What a consumer under SIGKILL does with the messages it claims, and what
//! the parent does with dead letters, in every test that kills consumers: check each one against the ledger and the
//! local cache of its keys, record the claim, give the outcome (nack the
//! poison, apply and ack the rest), and record the outcome. The consumer
//! workers and the parent's final drain share this code.
//!
//! Per message, in this order (see [`crate::ledger`] for why the order
//! matters):
//!
//! 1. copy the payload (the engine checks the copy was not torn) and decode
//!    it: its id, key and version must match the message and the ledger;
//! 2. record the claim; the claim word it replaces says who had the message
//!    before: a killed consumer (a redelivery after death: the latency from
//!    the kill to this claim is a sample), a live consumer whose lease had
//!    run out (it was stalled) or whose late outcome was refused, a nack
//!    (poison), or nobody. A live holder within its lease, an ack, or a
//!    delivery number that did not go up is a violation. A claim older than
//!    the one recorded (its claimer was descheduled past its lease) is not
//!    recorded: its outcome must be refused;
//! 3. keyed: take the key's holder word (held by a live consumer within its
//!    lease: a violation) and compare the version with the cached one
//!    (older: a violation);
//! 4. poison: `NACKING`, nack, `NACKED`. Otherwise: apply the version to the
//!    cache (if the key is still ours), release the key, `ACKING` (the
//!    intent), ack, then the result: `ACKED` or `LEASE_LOST`.
//!
//! An outcome given after the lease ran out is late. It must be refused
//! (`LeaseLost`) once another consumer claimed the message: accepted, it is
//! a `late-accepted` violation; so is one accepted more than twice the lease
//! plus 100 ms after the claim (the repairs, due every quarter lease, must
//! have taken the claim back by then). A `LeaseLost` well before the lease
//! ran out means a live holder was robbed: an `early-repair` violation.

use std::sync::atomic::Ordering;
use std::time::Duration;

use shmq::{Message, Queue};

use crate::ledger::{
    busy, holder_word, kind, ms_since, phase, send_state, split_holder, Event, Ledger, OutcomeKind,
};
use crate::payload;
use crate::rules::{Injected, Rules};

/// A consumer: the parent's drain or a worker.
pub struct Consumer<'a> {
    /// The run's rules.
    pub rules: &'a Rules,
    /// The ledger.
    pub ledger: &'a Ledger,
    /// Our instance number.
    pub me: u32,
    /// Whether the injected fault of the configuration applies (workers
    /// only, never the parent's drain).
    pub inject: bool,
    /// What the engine's slot said before a very late outcome (for the
    /// report of a late outcome accepted).
    pub diag: std::cell::RefCell<String>,
}

/// The slot word and the stamped lease of the claim `token`, read before a
/// very late outcome: the lease deadline against the coarse clock now.
fn lease_view(q: &Queue, token: u64) -> String {
    use shmq::internals::memory::Memory;
    let e = q.engine();
    let Some((i, generation)) = e.split_token(token) else {
        return format!("token {token:#x} names no claim");
    };
    let w = e.slot_word(i);
    let lease = e
        .mem()
        .u64_at(e.layout().slot(i) + shmq::internals::layout::slot::LEASE)
        .load(Ordering::Relaxed);
    let deadline = (lease & ((1 << 42) - 1)) << 16;
    let now = shmq::internals::clock::coarse_ns();
    format!(
        "before the call: slot {i} word {w:?}, claim generation {generation} (slot's now {}), lease tag {} deadline {} ms from now",
        e.split_token(e.claim_token(i)).map_or(0, |(_, g)| g),
        lease >> 42,
        (deadline as i64 - now as i64) / 1_000_000
    )
}

/// One claimed message, checked.
struct Item {
    /// The ledger id; `None` when the payload did not decode.
    id: Option<u64>,
    key: u64,
    version: u64,
    delivery: u32,
    /// The delivery number recorded in the ledger (differs from
    /// `delivery` only under the injected double-fresh fault).
    recorded: u32,
    poison: bool,
    /// A newer claim of the message was recorded first: ours is stale (our
    /// claimer sat past its lease between the claim and its record).
    superseded: bool,
}

/// How far the coarse clock, on which the engine stamps and compares
/// leases, may lag CLOCK_MONOTONIC (a kernel tick, 4 to 10 ms).
pub const CLOCK_SLACK_NS: u64 = 10_000_000;
/// A late outcome accepted this long after the lease ran out (on top of
/// one more lease) is a violation: the repairs had to take it back.
pub const REPAIR_MARGIN_NS: u64 = 100_000_000;

impl<'a> Consumer<'a> {
    /// Consumer `me` of a run (`inject`: the run's injected fault applies).
    pub fn new(rules: &'a Rules, ledger: &'a Ledger, me: u32, inject: bool) -> Consumer<'a> {
        Consumer {
            rules,
            ledger,
            me,
            inject,
            diag: Default::default(),
        }
    }
}

impl Consumer<'_> {
    fn queue_name(&self, qi: usize) -> &'static str {
        self.rules.name(qi)
    }

    fn faulty(&self, id: u64, f: Injected) -> bool {
        self.inject && self.rules.faulty(id, f)
    }

    /// Checks, records and settles a claimed batch. `called_ns` is when the
    /// claim call started, `claim_ns` when it returned (CLOCK_MONOTONIC);
    /// `hold` keeps the messages a millisecond before the outcome, with the
    /// busy word saying so (the supervisor kills and stalls consumers
    /// then). An `Err` is an unexpected engine error: the caller stops.
    pub fn handle(
        &self,
        q: &Queue,
        qi: usize,
        msgs: Vec<Message<'_>>,
        called_ns: u64,
        claim_ns: u64,
        hold: bool,
    ) -> Result<(), String> {
        let mut items = Vec::with_capacity(msgs.len());
        for m in &msgs {
            items.push(self.check_claim(qi, m, called_ns, claim_ns)?);
        }
        if hold {
            self.ledger.set_busy(self.me, busy::PAUSED);
            std::thread::sleep(Duration::from_millis(1));
            self.ledger.set_busy(self.me, busy::HOLDING);
        }
        let mut to_ack = Vec::with_capacity(msgs.len());
        let mut ack_ids = Vec::with_capacity(msgs.len());
        for (m, it) in msgs.into_iter().zip(items) {
            let Some(id) = it.id else {
                // Torn (already reported): ack it to get it out of the way.
                to_ack.push(m);
                ack_ids.push(None);
                continue;
            };
            let double = self.faulty(id, Injected::DoubleFresh) && it.delivery == 1;
            if it.poison || double {
                self.release_key(qi, &it);
                let _ = self
                    .ledger
                    .record_phase(id, self.me, it.recorded, phase::NACKING);
                let at = shmq::internals::sys::monotonic_ns();
                if at.saturating_sub(claim_ns) > 2 * self.rules.lease_ns + REPAIR_MARGIN_NS {
                    self.diag.replace(lease_view(q, m.token()));
                }
                let r = m.nack(Duration::ZERO);
                self.settled(q, qi, id, it.recorded, (called_ns, claim_ns, at), false, r)?;
                continue;
            }
            if self.rules.order(qi).keyed() && !it.superseded && self.holds_key(qi, &it) {
                let cached = self.ledger.cached_version(qi, it.key);
                if cached.load(Ordering::SeqCst) == it.version && it.delivery > 1 {
                    self.ledger.event(Event::Reapplied);
                }
                cached.store(it.version, Ordering::SeqCst);
            }
            self.release_key(qi, &it);
            if self.faulty(id, Injected::Lose) {
                ack_ids.push(None);
            } else {
                // The intent: this claim (instance, delivery) is being acked.
                let _ = self
                    .ledger
                    .record_phase(id, self.me, it.recorded, phase::ACKING);
                ack_ids.push(Some((id, it.recorded)));
            }
            to_ack.push(m);
        }
        // A batch ack says how many it acked, not which: it is used only
        // well within the lease, where every ack must land.
        let early = shmq::internals::sys::monotonic_ns().saturating_sub(called_ns)
            < self.rules.lease_ns / 4;
        if to_ack.len() >= 2 && early {
            let n = to_ack.len();
            let at = shmq::internals::sys::monotonic_ns();
            let k = q
                .ack_batch(&to_ack)
                .map_err(|e| format!("ack_batch: {e}"))?;
            if k != n {
                let elapsed = shmq::internals::sys::monotonic_ns().saturating_sub(called_ns);
                if elapsed + CLOCK_SLACK_NS < self.rules.lease_ns {
                    self.ledger.violation(
                        kind::DOUBLE_CLAIM,
                        &format!(
                            "queue {}: ack_batch acked {k} of {n} messages held by live instance {}, {} ms after the claim call (lease {} ms)",
                            self.queue_name(qi),
                            self.me,
                            elapsed / 1_000_000,
                            self.rules.lease_ns / 1_000_000
                        ),
                    );
                }
                // Which acks landed is unknown: their intents stay without
                // a result, like those of a killed consumer.
                return Ok(());
            }
            for (id, d) in ack_ids.into_iter().flatten() {
                self.settled(q, qi, id, d, (called_ns, claim_ns, at), true, Ok(()))?;
            }
            return Ok(());
        }
        for (m, ids) in to_ack.into_iter().zip(ack_ids) {
            let at = shmq::internals::sys::monotonic_ns();
            if at.saturating_sub(claim_ns) > 2 * self.rules.lease_ns + REPAIR_MARGIN_NS {
                self.diag.replace(lease_view(q, m.token()));
            }
            let r = m.ack();
            match ids {
                Some((id, d)) => self.settled(q, qi, id, d, (called_ns, claim_ns, at), true, r)?,
                None => match r {
                    Ok(()) => {}
                    Err(e) if e.status() == shmq::Status::LeaseLost => {}
                    Err(e) => return Err(format!("ack: {e}")),
                },
            }
        }
        Ok(())
    }

    /// Records the result of the ack or nack (`acked`) of claim `delivery`
    /// of `id`, and checks a late or early one. `times` are when the claim
    /// call started and returned and when the outcome call started. The
    /// engine stamps a lease between the first two (a claimer stalled
    /// inside its claim call, in a batch say, may get its claims back
    /// before the call even returns), and decides an outcome when its call
    /// starts (a stall inside the call, after that check, makes it return
    /// late): so a `LeaseLost` is early only if it came back within the
    /// lease counted from the claim call's *start*, and an accepted
    /// outcome is late only if its call *started* more than the lease
    /// after the claim call *returned*.
    #[allow(clippy::too_many_arguments)]
    fn settled(
        &self,
        q: &Queue,
        qi: usize,
        id: u64,
        delivery: u32,
        times: (u64, u64, u64),
        acked: bool,
        r: shmq::Result<()>,
    ) -> Result<(), String> {
        let (called_ns, claimed_ns, outcome_ns) = times;
        let name = self.queue_name(qi);
        let what = if acked { "ack" } else { "nack" };
        // The injected fault: a refused late outcome passes for accepted.
        let r = match r {
            Err(e)
                if e.status() == shmq::Status::LeaseLost
                    && self.inject
                    && self.rules.fault == Some(Injected::LateAccept) =>
            {
                Ok(())
            }
            r => r,
        };
        let elapsed = shmq::internals::sys::monotonic_ns().saturating_sub(claimed_ns);
        let lease = self.rules.lease_ns;
        match r {
            Ok(()) => {
                self.ledger.add_outcome(
                    id,
                    if acked {
                        OutcomeKind::Acked
                    } else {
                        OutcomeKind::Nacked
                    },
                );
                let to = if acked { phase::ACKED } else { phase::NACKED };
                // Late at the call: our lease had run out when we called.
                let late_call = outcome_ns.saturating_sub(claimed_ns) + CLOCK_SLACK_NS >= lease;
                match self.ledger.record_phase(id, self.me, delivery, to) {
                    Err(other) => {
                        // Another claim was recorded since ours. After an
                        // ack that is always wrong: the claim was taken over
                        // before the ack landed, or the message was
                        // delivered after it. After a nack, only if the
                        // other claim had returned before our nack call.
                        let other_back = self.ledger.claim_return_of(id);
                        let wrong = acked || (other_back != 0 && other_back < outcome_ns);
                        if wrong {
                            self.ledger.violation(
                                if late_call {
                                    kind::LATE_ACCEPTED
                                } else {
                                    kind::DOUBLE_CLAIM
                                },
                                &format!(
                                    "queue {name}: the {what} of id {id} (delivery {delivery}) by instance {}, called {} ms after its claim returned (lease {} ms), returned Ok, yet instance {} had claimed it (delivery {}, {}, its claim call {} ms after ours; {} first deliveries recorded)",
                                    self.me,
                                    outcome_ns.saturating_sub(claimed_ns) / 1_000_000,
                                    lease / 1_000_000,
                                    other.instance,
                                    other.delivery,
                                    crate::oracle::phase_name(other.phase),
                                    (self.ledger.claim_time_of(id) as i64 - claimed_ns as i64)
                                        / 1_000_000,
                                    other.fresh
                                ),
                            );
                        }
                    }
                    Ok(())
                        if outcome_ns.saturating_sub(claimed_ns) > 2 * lease + REPAIR_MARGIN_NS =>
                    {
                        let st = q.stats();
                        self.ledger.violation(
                            kind::LATE_ACCEPTED,
                            &format!(
                                "queue {name}: the {what} of id {id} (delivery {delivery}) by instance {}, called {} ms after its claim returned, returned Ok, with a lease of {} ms: no repair took the claim back (now {} in flight, the oldest for {} ms; {} participants; {}; stalled {} times)",
                                self.me,
                                outcome_ns.saturating_sub(claimed_ns) / 1_000_000,
                                lease / 1_000_000,
                                st.in_flight,
                                st.oldest_in_flight_age_ns / 1_000_000,
                                st.participants,
                                self.diag.take(),
                                self.ledger.stalls_of(self.me)
                            ),
                        );
                    }
                    Ok(()) if elapsed > lease => self.ledger.event(Event::LateOutcomeUnraced),
                    Ok(()) => {}
                }
                Ok(())
            }
            Err(e) if e.status() == shmq::Status::LeaseLost => {
                self.ledger.add_outcome(id, OutcomeKind::LeaseLost);
                let _ = self
                    .ledger
                    .record_phase(id, self.me, delivery, phase::LEASE_LOST);
                let since_call = shmq::internals::sys::monotonic_ns().saturating_sub(called_ns);
                if since_call + CLOCK_SLACK_NS >= lease {
                    self.ledger.event(Event::LateOutcomeRefused);
                } else {
                    self.ledger.violation(
                        kind::EARLY_REPAIR,
                        &format!(
                            "queue {name}: the {what} of id {id} (delivery {delivery}) by live instance {} got LeaseLost {} ms after the claim call started, within its lease of {} ms",
                            self.me,
                            since_call / 1_000_000,
                            lease / 1_000_000
                        ),
                    );
                }
                Ok(())
            }
            Err(e) => Err(format!("{what} of id {id}: {e}")),
        }
    }

    /// Steps 1 to 3 for one message.
    fn check_claim(
        &self,
        qi: usize,
        m: &Message<'_>,
        called_ns: u64,
        claim_ns: u64,
    ) -> Result<Item, String> {
        let name = self.queue_name(qi);
        let d = m.deliveries();
        let torn = Item {
            id: None,
            key: 0,
            version: 0,
            delivery: d,
            recorded: d,
            poison: false,
            superseded: false,
        };
        let data = m.data().map_err(|e| format!("queue {name}: data: {e}"))?;
        let Some(p) = payload::decode(&data, self.rules.max_message_size) else {
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
        let keyed = self.rules.order(qi).keyed();
        if !matches!(state, send_state::INTENT | send_state::SENT) || rq != qi {
            self.ledger.violation(
                kind::NEVER_SENT,
                &format!(
                    "queue {name}: delivered id {id} (delivery {d}), whose send state is {state} on queue {}",
                    self.queue_name(rq.min(self.rules.queues.len() - 1))
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
        let recorded = if self.faulty(id, Injected::DoubleFresh) && d == 2 {
            1
        } else {
            d
        };
        let lease = self.rules.lease_ns;
        let old_now = self.ledger.claim_of(id);
        // A newer claim was recorded first: ours is stale, and legal only if
        // our lease has run out (we sat between the claim and this record).
        let superseded = old_now.delivery > d && old_now.instance != self.me;
        if superseded {
            let since = shmq::internals::sys::monotonic_ns().saturating_sub(called_ns);
            if since + CLOCK_SLACK_NS < lease {
                self.ledger.violation(
                    kind::DOUBLE_CLAIM,
                    &format!(
                        "queue {name}: id {id} claimed (delivery {d}) by instance {} {} ms ago, within its lease, yet instance {} recorded delivery {}",
                        self.me,
                        since / 1_000_000,
                        old_now.instance,
                        old_now.delivery
                    ),
                );
            } else {
                self.ledger.event(Event::RedeliveredAfterExpiry);
            }
        } else {
            self.record(qi, id, d, recorded, called_ns, claim_ns);
        }
        let item = Item {
            id: Some(id),
            key: m.key(),
            version,
            delivery: d,
            recorded,
            poison: self.rules.poison(id),
            superseded,
        };
        if superseded {
            // Not ours any more: the key is not taken either.
        } else if keyed && (1..=self.rules.keys).contains(&item.key) {
            self.take_key(qi, &item, called_ns, claim_ns);
        } else if keyed {
            self.ledger.violation(
                kind::TORN,
                &format!(
                    "queue {name}: id {id} delivered with key {}, outside 1..={}",
                    item.key, self.rules.keys
                ),
            );
        }
        Ok(item)
    }

    /// Records our claim of `id` (delivery `d`, recorded as `recorded`) and
    /// checks the claim it replaces.
    fn record(&self, qi: usize, id: u64, d: u32, recorded: u32, called_ns: u64, claim_ns: u64) {
        let name = self.queue_name(qi);
        let lease = self.rules.lease_ns;
        let (old, old_called) = self
            .ledger
            .record_claim(id, recorded, self.me, called_ns, claim_ns);
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
                // A live holder: allowed once its lease ran out (it was
                // stalled or descheduled); its outcome must then be refused.
                None if claim_ns.saturating_sub(old_called) + CLOCK_SLACK_NS >= lease => {
                    self.ledger.event(Event::RedeliveredAfterExpiry)
                }
                None => self.ledger.violation(
                    kind::DOUBLE_CLAIM,
                    &format!(
                        "queue {name}: id {id} claimed (delivery {d}) by instance {} while live instance {} held it (delivery {}, {}), {} ms after its claim call, within the lease of {} ms",
                        self.me,
                        old.instance,
                        old.delivery,
                        if old.phase == phase::ACKING { "acking" } else { "claimed" },
                        claim_ns.saturating_sub(old_called) / 1_000_000,
                        lease / 1_000_000
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
            // The previous holder's late outcome was refused: the lease
            // had run out and the message was taken back.
            phase::LEASE_LOST => self.ledger.event(Event::RedeliveredAfterExpiry),
            _ => {}
        }
    }

    /// Takes the key's holder word and checks the version against the
    /// cache.
    fn take_key(&self, qi: usize, it: &Item, called_ns: u64, claim_ns: u64) {
        let name = self.queue_name(qi);
        let holder = self.ledger.key_holder(qi, it.key);
        let mine = holder_word(self.me, called_ns);
        if let Err(other) = holder.compare_exchange(0, mine, Ordering::SeqCst, Ordering::SeqCst) {
            let (who, since_ms) = split_holder(other);
            let held_ms = ms_since(since_ms, claim_ns);
            if self.ledger.killed_at(who).is_some() {
                self.ledger.event(Event::KeyFromKilled);
            } else if (held_ms + 1) * 1_000_000 + CLOCK_SLACK_NS >= self.rules.lease_ns {
                self.ledger.event(Event::KeyFromExpired);
            } else {
                self.ledger.violation(
                    kind::KEY_OVERLAP,
                    &format!(
                        "queue {name}: key {} claimed by instance {} (version {}, delivery {}) while live instance {who} held it, {held_ms} ms after its claim call, within the lease of {} ms",
                        it.key,
                        self.me,
                        it.version,
                        it.delivery,
                        self.rules.lease_ns / 1_000_000
                    ),
                );
            }
            holder.store(mine, Ordering::SeqCst);
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
        } else if it.version == cached && it.delivery == 1 {
            // No version of a key is sent twice: a first delivery of the
            // version applied last is a message delivered fresh again.
            self.ledger.violation(
                kind::DOUBLE_FRESH,
                &format!(
                    "queue {name}: key {} version {} delivered for the first time, yet already applied",
                    it.key, it.version
                ),
            );
        }
    }

    /// Whether the key's holder word is still ours (a consumer whose lease
    /// ran out may have lost it).
    fn holds_key(&self, qi: usize, it: &Item) -> bool {
        (1..=self.rules.keys).contains(&it.key)
            && split_holder(self.ledger.key_holder(qi, it.key).load(Ordering::SeqCst)).0 == self.me
    }

    /// Clears the key's holder word if it is still ours (if it is not, the
    /// consumer that took it reported the overlap, or our lease ran out).
    fn release_key(&self, qi: usize, it: &Item) {
        if self.rules.order(qi).keyed() && (1..=self.rules.keys).contains(&it.key) {
            let h = self.ledger.key_holder(qi, it.key);
            let cur = h.load(Ordering::SeqCst);
            if cur != 0 && split_holder(cur).0 == self.me {
                let _ = h.compare_exchange(cur, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
    }

    /// Takes every dead letter out of queue `qi`: checks it, marks its id
    /// dead-lettered in the ledger, and purges it (the area is bounded).
    /// Returns how many.
    pub fn take_dead_letters(&self, q: &Queue, qi: usize) -> Result<u64, String> {
        let name = self.queue_name(qi);
        let mut n = 0;
        for d in q.dlq_list() {
            match payload::decode(&d.payload, self.rules.max_message_size) {
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
                                self.queue_name(rq.min(self.rules.queues.len() - 1)),
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
