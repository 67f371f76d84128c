//! The outcome of a claim: ack, nack, reject (to the dead letters) or a
//! longer lease; one at a time or acks in a batch.

use std::time::Duration;

use super::wait::Point;
use super::{Message, Queue};
use crate::error::{Result, Status};
use crate::metrics::{Counter, Histogram};
use crate::ring::{Outcome, Settled};

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

    /// Acks several claims; returns how many were acked (a lost lease is
    /// skipped, not an error, and not counted).
    pub fn ack_batch(&self, messages: &[Message<'_>]) -> Result<usize> {
        self.checked("ack_batch", self.ack_batch_unchecked(messages))
    }

    fn ack_batch_unchecked(&self, messages: &[Message<'_>]) -> Result<usize> {
        let (me, engine) = self.me("ack_batch")?;
        let now = self.now();
        let mut precise = None;
        let mut acked = 0;
        for m in messages {
            match engine.settle(me, m.claim.token(), &Outcome::Ack, now) {
                Ok(_) => {
                    acked += 1;
                    if let Some(rec) = self.recorder() {
                        rec.add(Counter::Acked, 1);
                        if m.claim.sampled {
                            let t = *precise.get_or_insert_with(|| self.precise());
                            rec.record(Histogram::Processing, t.saturating_sub(m.claimed_ns));
                            rec.record(Histogram::EndToEnd, t.saturating_sub(m.claim.enqueued_ns));
                        }
                    }
                }
                Err(e) if e.status() == Status::LeaseLost => self.count(Counter::LeaseLost, 1),
                Err(e) => return Err(self.err("ack_batch", e)),
            }
        }
        if acked > 0 {
            self.notify(Point::NotFull);
        }
        self.tick(now);
        Ok(acked)
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
        self.settle(&Outcome::Ack).map(|_| ())
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
