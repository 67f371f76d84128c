//! The outcome of a claim: ack, nack, reject (to the dead letters) or a
//! longer lease; one at a time or acks in a batch.

use std::time::Duration;

use super::wait::Point;
use super::{Mapping, Message, Queue, Store};
use crate::error::{Result, Status};
use crate::metrics::{Counter, Histogram, Recorder};
use crate::ring::{Engine, Outcome, Settled};

impl Queue {
    /// Gives the outcome of the claim named by `token`. `claimed_ns`, when
    /// known, feeds the processing-time histogram.
    pub fn settle(
        &self,
        token: u64,
        outcome: &Outcome<'_>,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<Settled> {
        let op = match outcome {
            Outcome::Ack => "ack",
            Outcome::Nack { .. } => "nack",
            Outcome::Reject { .. } => "reject",
            Outcome::Extend { .. } => "extend_lease",
        };
        let r = self.settle_unchecked(op, token, outcome, claimed_ns, enqueued_ns);
        self.checked(op, r)
    }

    fn settle_unchecked(
        &self,
        op: &str,
        token: u64,
        outcome: &Outcome<'_>,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<Settled> {
        let (me, engine) = self.me(op)?;
        let now = self.now();
        let r = match engine.settle(me, token, outcome, now) {
            Ok(r) => r,
            Err(e) => {
                if e.status() == Status::LeaseLost {
                    self.count(Counter::LeaseLost, 1);
                }
                return Err(self.err(op, e));
            }
        };
        if let Some(rec) = self.recorder() {
            match r {
                Settled::Acked => {
                    rec.add(Counter::Acked, 1);
                    if claimed_ns.is_some() || enqueued_ns.is_some() {
                        let t = self.precise();
                        if let Some(c) = claimed_ns {
                            rec.record(Histogram::Processing, t.saturating_sub(c));
                        }
                        if let Some(e) = enqueued_ns {
                            rec.record(Histogram::EndToEnd, t.saturating_sub(e));
                        }
                    }
                }
                Settled::Requeued => rec.add(Counter::Nacked, 1),
                Settled::DeadLettered | Settled::DlqWaiting => {
                    match outcome {
                        Outcome::Reject { .. } => rec.add(Counter::Rejected, 1),
                        _ => rec.add(Counter::Nacked, 1),
                    }
                    // A message waiting for room is counted by the repair
                    // that moves it (`Repairs::dead_lettered`), not here.
                    if r == Settled::DeadLettered {
                        rec.add(Counter::DeadLettered, 1);
                    }
                }
                Settled::Extended => rec.add(Counter::Extended, 1),
            }
        }
        match r {
            Settled::Acked | Settled::DeadLettered => self.notify(Point::NotFull),
            Settled::Requeued => self.notify(Point::NotEmpty),
            Settled::Extended | Settled::DlqWaiting => {}
        }
        self.tick(now);
        Ok(r)
    }

    /// Acks the claim named by `token`: what [`Queue::settle`] does with
    /// [`Outcome::Ack`], with the common case (a keyless claim still held)
    /// in straight-line code: one clock read, the engine's fast ack, the
    /// counter, the wake-up, one due-time compare for maintenance. Anything
    /// else (a keyed claim, a claim no longer held, a forged token, a lost
    /// race, a handle that cannot write) runs [`Queue::settle`], which
    /// builds the same errors. `claimed_ns` and `enqueued_ns`, when known,
    /// feed the latency histograms.
    #[inline]
    pub fn ack_token(
        &self,
        token: u64,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<()> {
        let Ok((me, engine)) = self.me("ack") else {
            return self.ack_slow(token, claimed_ns, enqueued_ns);
        };
        self.ack_token_with(me, engine, token, claimed_ns, enqueued_ns)
    }

    /// [`Queue::ack_token`] for a caller that ran [`Queue::check_intact`]
    /// just before, on this thread, touching nothing of the mapping since
    /// (the C library's entry does so for every call): the checks at the
    /// start are not repeated (those at the end are). Anything else than
    /// the common case runs [`Queue::settle`], which checks everything.
    #[doc(hidden)]
    #[inline]
    pub fn ack_token_entered(
        &self,
        token: u64,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<()> {
        match (self.me, &self.store) {
            (Some(me), Store::Write(engine)) => {
                self.ack_token_with(me, engine, token, claimed_ns, enqueued_ns)
            }
            _ => self.ack_slow(token, claimed_ns, enqueued_ns),
        }
    }

    /// [`Queue::ack_token`] once the handle's checks passed: `me` and
    /// `engine` are this handle's.
    #[inline(always)]
    fn ack_token_with(
        &self,
        me: u64,
        engine: &Engine<Mapping>,
        token: u64,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<()> {
        let now = self.now();
        if engine.ack_fast(me, token, now).is_none() {
            return self.ack_slow(token, claimed_ns, enqueued_ns);
        }
        // `recorder()`, whose other tests `me` and `engine` passed.
        if self.metrics.get() {
            let rec = engine.recorder(me);
            rec.add(Counter::Acked, 1);
            if claimed_ns.is_some() || enqueued_ns.is_some() {
                self.record_acked(&rec, self.precise(), claimed_ns, enqueued_ns);
            }
        }
        self.notify(Point::NotFull);
        self.tick(now);
        self.checked("ack", Ok(()))
    }

    /// The general ack, for whatever [`Queue::ack_token`] does not do
    /// itself (having changed nothing).
    #[cold]
    #[inline(never)]
    fn ack_slow(
        &self,
        token: u64,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<()> {
        self.settle(token, &Outcome::Ack, claimed_ns, enqueued_ns)
            .map(|_| ())
    }

    /// Records the latencies of one acked message at precise time `t`.
    #[inline]
    fn record_acked(
        &self,
        rec: &Recorder<'_, Mapping>,
        t: u64,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) {
        if let Some(c) = claimed_ns {
            rec.record(Histogram::Processing, t.saturating_sub(c));
        }
        if let Some(e) = enqueued_ns {
            rec.record(Histogram::EndToEnd, t.saturating_sub(e));
        }
    }

    /// Acks `count` claims, the `i`th named by `claim(i)` (its token, and
    /// its claim and enqueue times when known, for the latency histograms;
    /// called once per claim, in order, right before its ack): what
    /// [`Queue::ack_token`] does for each, with the checks, the clock read,
    /// the counter, the wake-up and the maintenance compare once per batch.
    /// Returns how many were acked: a claim no longer held is skipped (not
    /// an error, counted as a lost lease); any other error stops the batch
    /// and is returned (the claims acked before it stay acked, and are
    /// counted). Errors name the operation `ack`, as [`Queue::ack_token`]'s.
    pub fn ack_tokens(
        &self,
        count: usize,
        claim: impl FnMut(usize) -> (u64, Option<u64>, Option<u64>),
    ) -> Result<usize> {
        self.ack_many("ack", count, claim)
    }

    fn ack_many(
        &self,
        op: &'static str,
        count: usize,
        mut claim: impl FnMut(usize) -> (u64, Option<u64>, Option<u64>),
    ) -> Result<usize> {
        let (me, engine) = match self.me(op) {
            Ok(x) => x,
            Err(e) => return self.checked(op, Err(e)),
        };
        let now = self.now();
        let freed = engine.freed_tally(me);
        // `recorder()`, whose other tests `me` and `engine` passed.
        let rec = self.metrics.get().then(|| engine.recorder(me));
        let mut precise = None;
        // Acked here, and by the general path (which counts and wakes for
        // its own acks).
        let mut fast = 0u64;
        let mut acked = 0usize;
        let mut failed = None;
        for i in 0..count {
            let (token, claimed_ns, enqueued_ns) = claim(i);
            if engine.ack_fast_tallied(me, token, now, freed).is_some() {
                fast += 1;
                acked += 1;
                if let Some(rec) = &rec {
                    if claimed_ns.is_some() || enqueued_ns.is_some() {
                        let t = *precise.get_or_insert_with(|| self.precise());
                        self.record_acked(rec, t, claimed_ns, enqueued_ns);
                    }
                }
                continue;
            }
            match self.ack_general(op, token, claimed_ns, enqueued_ns) {
                Ok(()) => acked += 1,
                Err(e) if e.status() == Status::LeaseLost => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if fast > 0 {
            if let Some(rec) = &rec {
                rec.add(Counter::Acked, fast);
            }
            self.notify(Point::NotFull);
        }
        self.tick(now);
        match failed {
            Some(e) => self.checked(op, Err(e)),
            None => self.checked(op, Ok(acked)),
        }
    }

    /// One ack of a batch that the fast path did not take: the general
    /// path, which counts it (or its lost lease) and wakes for it.
    #[cold]
    #[inline(never)]
    fn ack_general(
        &self,
        op: &str,
        token: u64,
        claimed_ns: Option<u64>,
        enqueued_ns: Option<u64>,
    ) -> Result<()> {
        self.settle_unchecked(op, token, &Outcome::Ack, claimed_ns, enqueued_ns)
            .map(|_| ())
    }

    /// Acks several claims; returns how many were acked (a lost lease is
    /// skipped, not an error, and not counted).
    pub fn ack_batch(&self, messages: &[Message<'_>]) -> Result<usize> {
        self.ack_many("ack_batch", messages.len(), |i| {
            let m = &messages[i];
            let sampled = m.claim.sampled;
            (
                m.claim.token(),
                sampled.then_some(m.claimed_ns),
                sampled.then_some(m.claim.enqueued_ns),
            )
        })
    }
}

impl<'q> Message<'q> {
    fn settle(&self, o: &Outcome<'_>) -> Result<Settled> {
        // Only a sampled message is timed (see `Queue::sample`).
        let sampled = self.claim.sampled;
        self.q.settle(
            self.claim.token(),
            o,
            sampled.then_some(self.claimed_ns),
            sampled.then_some(self.claim.enqueued_ns),
        )
    }

    /// Done: the message is deleted.
    pub fn ack(self) -> Result<()> {
        // Only a sampled message is timed (see `Queue::sample`).
        let sampled = self.claim.sampled;
        let (claimed_ns, enqueued_ns) = (
            sampled.then_some(self.claimed_ns),
            sampled.then_some(self.claim.enqueued_ns),
        );
        if self.claim.key != 0 {
            // A keyed ack records its version and releases its key: the
            // general path's work, which the fast ack would only find out.
            return self
                .q
                .settle(self.claim.token(), &Outcome::Ack, claimed_ns, enqueued_ns)
                .map(|_| ());
        }
        self.q
            .ack_token(self.claim.token(), claimed_ns, enqueued_ns)
    }

    /// Try again after `delay` (counts as a failed delivery; dead-lettered
    /// when it was the last allowed one).
    pub fn nack(self, delay: Duration) -> Result<()> {
        let not_before_ns = if delay.is_zero() {
            0
        } else {
            self.q
                .now()
                .saturating_add(delay.as_nanos().min(u64::MAX as u128) as u64)
        };
        self.settle(&Outcome::Nack { not_before_ns }).map(|_| ())
    }

    /// Give up: the message goes to the dead letters with `reason`.
    pub fn reject(self, reason: &str) -> Result<()> {
        self.settle(&Outcome::Reject { reason }).map(|_| ())
    }

    /// Still working: the lease now ends `lease` from now.
    pub fn extend(&self, lease: Duration) -> Result<()> {
        let deadline_ns = self
            .q
            .now()
            .saturating_add(lease.as_nanos().min(u64::MAX as u128) as u64);
        self.settle(&Outcome::Extend { deadline_ns }).map(|_| ())
    }
}
