//! Claiming: one message or a batch, each a [`Message`] holding the claim
//! until its outcome is given (see `settle`).

use super::wait::Point;
use super::{Mapping, Queue, Store, ROLE_CONSUMER};
use crate::error::{Error, Result, Status};
use crate::metrics::{Counter, Histogram, Recorder};
use crate::options::Timeout;
use crate::ring::{self, Claim, Engine, Fast};

impl Queue {
    pub(super) fn claim_once(
        &self,
        engine: &Engine<Mapping>,
        me: u64,
        now: u64,
    ) -> Result<Option<Claim>> {
        let mut tally = ring::Tally::default();
        let got = engine.claim_patiently(me, now, &mut tally, || self.precise());
        self.account_tally(&tally);
        got
    }

    /// Counts what a claim skipped on its way (see [`ring::Tally`]).
    #[inline]
    fn account_tally(&self, tally: &ring::Tally) {
        if tally.stale > 0 {
            self.count(Counter::Stale, tally.stale);
            self.notify(Point::NotFull);
        }
        if tally.key_waits > 0 {
            self.count(Counter::KeyWaits, tally.key_waits);
        }
        if tally.expired > 0 {
            // Expired messages left their slots (freed, dead-lettered, or
            // waiting for dead-letter room, which a repair frees later).
            self.count(Counter::DeadLettered, tally.expired_dead_lettered);
            self.notify(Point::NotFull);
        }
    }

    pub(super) fn claimed(&self, c: Claim, now: u64) -> Message<'_> {
        self.note_role(ROLE_CONSUMER);
        let rec = self.recorder();
        if let Some(rec) = &rec {
            rec.add(Counter::Claimed, 1);
        }
        let mut claimed_ns = now;
        if c.deliveries > 1 || c.sampled {
            claimed_ns = self.claimed_rare(rec.as_ref(), &c, now);
        }
        Message {
            q: self,
            claim: c,
            claimed_ns,
        }
    }

    /// What [`Queue::claimed`] does for a redelivery or a sampled message:
    /// counts the redelivery, or times the sampled message precisely from
    /// here to its ack and records its lead time. Returns the claim time.
    #[cold]
    #[inline(never)]
    fn claimed_rare(&self, rec: Option<&Recorder<'_, Mapping>>, c: &Claim, now: u64) -> u64 {
        let claimed_ns = if c.sampled && self.metrics.get() {
            self.precise()
        } else {
            now
        };
        if let Some(rec) = rec {
            if c.deliveries > 1 {
                rec.add(Counter::Redelivered, 1);
            } else if c.sampled {
                rec.record(
                    Histogram::LeadTime,
                    claimed_ns.saturating_sub(c.enqueued_ns),
                );
            }
        }
        claimed_ns
    }

    /// Claims the next message, waiting up to `timeout`. `Empty` when
    /// nothing is claimable and the call may not wait; `Timeout` after
    /// waiting.
    pub fn claim(&self, timeout: impl Into<Timeout>) -> Result<Message<'_>> {
        self.checked("claim", self.claim_unchecked(timeout.into()))
    }

    fn claim_unchecked(&self, timeout: Timeout) -> Result<Message<'_>> {
        let (me, engine) = self.me("claim")?;
        let mut at = 0;
        let got = self
            .wait_for(engine, Point::NotEmpty, timeout, "claim", |now| {
                at = now;
                self.claim_once(engine, me, now)
            })
            .map_err(|e| self.err_once("claim", e))?;
        match got {
            Some(c) => {
                self.tick(at);
                Ok(self.claimed(c, at))
            }
            None => Err(Error::new(
                Status::Empty,
                // Built once per handle: a polling consumer meets it at
                // every poll.
                self.empty_msg.clone(),
            )),
        }
    }

    /// Claims up to `max` messages: waits up to `timeout` for the first, then
    /// takes what is claimable now.
    pub fn claim_batch(&self, max: usize, timeout: impl Into<Timeout>) -> Result<Vec<Message<'_>>> {
        let mut out = Vec::with_capacity(max.min(1024));
        self.claim_batch_into(max, timeout, &mut out)?;
        Ok(out)
    }

    /// Like [`Queue::claim_batch`], appending to `out`; returns how many.
    pub fn claim_batch_into<'q>(
        &'q self,
        max: usize,
        timeout: impl Into<Timeout>,
        out: &mut Vec<Message<'q>>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let before = out.len();
        let r = self.claim_batch_unchecked(max, timeout.into(), out);
        if r.is_ok() && self.is_broken() {
            // Claims made from zero pages are no claims.
            out.truncate(before);
        }
        self.checked("claim_batch", r)
    }

    fn claim_batch_unchecked<'q>(
        &'q self,
        max: usize,
        timeout: Timeout,
        out: &mut Vec<Message<'q>>,
    ) -> Result<usize> {
        let (me, engine) = self.me("claim_batch")?;
        let first = self.claim(timeout)?;
        // The coarse clock, on which leases and delays are stamped (the
        // first claim's time may be the precise one, up to a tick ahead,
        // which took delayed messages early).
        let now = self.now();
        out.push(first);
        let mut n = 1;
        while n < max {
            match self
                .claim_once(engine, me, now)
                .map_err(|e| self.err("claim_batch", e))?
            {
                Some(c) => {
                    out.push(self.claimed(c, now));
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }

    /// Claims the next message like [`Queue::claim`] and copies its payload
    /// into `buf` like [`Message::read_into`], in one call down (the C
    /// ABI's `shmq_claim_copy`; behind the `internals` door). On success
    /// calls `done(message, len)` (and only then: a failed call gives the
    /// caller nothing). `buf` should hold max_message_size bytes (else a
    /// longer payload is claimed and then refused, `TooLarge`).
    ///
    /// The common case (a keyless message at the head, see
    /// `Engine::claim_quick`) reads the clock once, claims, copies
    /// with one check after the copy, and counts; anything else takes the
    /// general path, which the fast one left untouched.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn claim_copy(
        &self,
        buf: &mut [u8],
        timeout: impl Into<Timeout>,
        done: impl FnOnce(&Message<'_>, usize),
    ) -> Result<()> {
        if let Ok((me, engine)) = self.me("claim") {
            let now = self.now();
            let mut tally = ring::Tally::default();
            match engine.claim_quick(me, now, &mut tally) {
                Ok(Fast::Done(c)) => {
                    self.tick(now);
                    let m = self.claimed(c, now);
                    return match engine.read_fresh(me, &m.claim, buf) {
                        Ok(n) => {
                            self.intact("read")?;
                            done(&m, n);
                            Ok(())
                        }
                        Err(e) => self.checked("read", Err(self.err("read", e))),
                    };
                }
                Ok(_) => self.account_tally(&tally),
                Err(e) => {
                    self.account_tally(&tally);
                    return self.checked("claim", Err(self.err_once("claim", e)));
                }
            }
        }
        let m = self.claim(timeout)?;
        let n = m.read_into(buf)?;
        done(&m, n);
        Ok(())
    }

    /// Claims up to `max` messages like [`Queue::claim_batch`] and copies
    /// their payloads one after another into `buf` like
    /// [`Message::read_into`] (the C ABI's `shmq_claim_packed`; behind the
    /// `internals` door). `buf` should hold `max` payloads of
    /// max_message_size. Calls `each(message, offset, len)` for each copy
    /// that is whole, in order; a message whose claim was lost during its
    /// copy is left out (it is redelivered), and the call fails with that
    /// error only when every copy was lost. Returns how many were given to
    /// `each`.
    ///
    /// The common case claims the messages in one fast run
    /// (`Engine::claim_fast_run`) on one clock read, counts them once,
    /// runs the maintenance check once, and checks each claim once after
    /// its copy. Nothing is copied unless every claim succeeded, as in the
    /// general path.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn claim_packed(
        &self,
        buf: &mut [u8],
        max: usize,
        timeout: impl Into<Timeout>,
        mut each: impl FnMut(&Message<'_>, usize, usize),
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let claims = match self.claim_run(max) {
            Some(Ok(claims)) => claims,
            Some(Err(e)) => return Err(e),
            None => {
                // The general path: claim, then copy each.
                let got = self.claim_batch(max, timeout)?;
                let (mut at, mut n, mut lost) = (0usize, 0usize, None);
                for m in &got {
                    match m.read_into(&mut buf[at..]) {
                        Ok(len) => {
                            each(m, at, len);
                            at += len;
                            n += 1;
                        }
                        Err(e) => lost = Some(e),
                    }
                }
                return match lost {
                    Some(e) if n == 0 => Err(e),
                    _ => Ok(n),
                };
            }
        };
        let (me, engine) = self.me("read")?;
        let (mut at, mut n, mut lost) = (0usize, 0usize, None);
        for m in &claims {
            match engine.read_fresh(me, &m.claim, &mut buf[at..]) {
                Ok(len) => {
                    each(m, at, len);
                    at += len;
                    n += 1;
                }
                Err(e) => lost = Some(self.err("read", e)),
            }
        }
        match lost {
            Some(e) if n == 0 => self.checked("read", Err(e)),
            _ => self.checked("read", Ok(n)),
        }
    }

    /// The claims of [`Queue::claim_packed`]'s common case: `None` when the
    /// first message is not the common case (nothing changed but what the
    /// general path would count: run it); after that, a message that is
    /// not takes the general claim, as [`Queue::claim_batch`] takes it.
    #[cfg(feature = "internals")]
    fn claim_run(&self, max: usize) -> Option<Result<Vec<Message<'_>>>> {
        let (me, engine) = self.me("claim_batch").ok()?;
        // One clock read for the batch: the coarse clock, on which leases
        // and delays are stamped.
        let now = self.now();
        let mut tally = ring::Tally::default();
        let mut claims = Vec::with_capacity(max.min(1024));
        let mut failed = None;
        loop {
            let run = engine.claim_fast_run(me, now, max - claims.len(), &mut tally, |c| {
                claims.push(self.unclaimed(c, now))
            });
            match run {
                Ok((0, Fast::Slow | Fast::Empty)) if claims.is_empty() => {
                    // The first claim is not the common case: the general
                    // path makes it (it may wait for one).
                    self.account_tally(&tally);
                    return None;
                }
                Err(e) if claims.is_empty() => {
                    self.account_tally(&tally);
                    let e = self.err_once("claim", e);
                    return Some(self.checked("claim_batch", Err(e)));
                }
                Ok((_, Fast::Slow)) if claims.len() < max => {
                    // The general claim takes the next one, as in
                    // `claim_batch`, then the fast run goes on.
                    match self.claim_once(engine, me, now) {
                        Ok(Some(c)) => claims.push(self.unclaimed(c, now)),
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(self.err("claim_batch", e));
                            break;
                        }
                    }
                    if claims.len() == max {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    failed = Some(self.err("claim_batch", e));
                    break;
                }
            }
        }
        self.account_tally(&tally);
        self.tick(now);
        // Counted as the general path counts them: every claim made, also
        // those of a batch that fails.
        self.claimed_run(&mut claims, now);
        if let Some(e) = failed {
            return Some(self.checked("claim_batch", Err(e)));
        }
        Some(self.checked("claim_batch", Ok(claims)))
    }

    /// A claim made at `now`, not counted yet (see [`Queue::claimed_run`]).
    #[cfg(feature = "internals")]
    #[inline]
    fn unclaimed(&self, c: Claim, now: u64) -> Message<'_> {
        Message {
            q: self,
            claim: c,
            claimed_ns: now,
        }
    }

    /// [`Queue::claimed`] of a run of claims made at `now`, counted at once.
    #[cfg(feature = "internals")]
    fn claimed_run(&self, claims: &mut [Message<'_>], now: u64) {
        self.note_role(ROLE_CONSUMER);
        let rec = self.recorder();
        if let Some(rec) = &rec {
            rec.add(Counter::Claimed, claims.len() as u64);
        }
        for m in claims {
            if m.claim.deliveries > 1 || m.claim.sampled {
                m.claimed_ns = self.claimed_rare(rec.as_ref(), &m.claim, now);
            }
        }
    }

    /// Copies the payload of a claim we hold into `buf` and checks that the
    /// claim was still held after the copy (so the copy is not torn).
    /// Returns the payload length; `TooLarge` if `buf` is too small.
    pub fn read_payload(&self, token: u64, buf: &mut [u8]) -> Result<usize> {
        self.checked("read", self.read_payload_unchecked(token, buf))
    }

    fn read_payload_unchecked(&self, token: u64, buf: &mut [u8]) -> Result<usize> {
        let (me, engine) = self.me("read")?;
        engine
            .read_claimed(me, token, buf)
            .map_err(|e| self.err("read", e))
    }
}

/// A claimed message. Give its outcome with [`Message::ack`],
/// [`Message::nack`], [`Message::reject`] or keep it with
/// [`Message::extend`]; dropping it without an outcome leaves it claimed
/// until its lease expires (or this handle closes), then it is redelivered.
pub struct Message<'q> {
    pub(super) q: &'q Queue,
    pub(super) claim: Claim,
    pub(super) claimed_ns: u64,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("position", &self.claim.position)
            .field("len", &self.claim.len)
            .field("key", &self.claim.key)
            .field("version", &self.claim.version)
            .field("deliveries", &self.claim.deliveries)
            .finish()
    }
}

impl<'q> Message<'q> {
    /// A private copy of the payload, checked for tearing (`LeaseLost` if the
    /// claim was lost while copying).
    pub fn data(&self) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.claim.len];
        let n = self.q.read_payload(self.claim.token(), &mut v)?;
        v.truncate(n);
        Ok(v)
    }

    /// Copies the payload into `buf`, checked for tearing; returns its length.
    pub fn read_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.q.read_payload(self.claim.token(), buf)
    }

    /// The address of the payload in the shared mapping, [`Message::len`]
    /// bytes, for the C ABI's borrowed claims (`shmq_message.data`). Taking
    /// it is safe; reading through it is the caller's `unsafe`: the bytes
    /// are valid to read while this handle is open (a truncated file reads
    /// as zeros), but another process may rewrite them at any time, so only
    /// volatile or byte-copy reads are sound, and what they read is the
    /// message only while the claim is held (check with
    /// [`Message::read_into`] when it matters). Null if the memory is not
    /// plain bytes.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn payload_ptr(&self) -> *const u8 {
        // A claim is made only through a read-write handle's engine.
        let Store::Write(engine) = &self.q.store else {
            return std::ptr::null();
        };
        engine
            .payload_ptr(self.claim.slot, self.claim.len)
            .map_or(std::ptr::null(), |p| p.cast_const())
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.claim.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.claim.len == 0
    }

    /// Key (0 = none).
    pub fn key(&self) -> u64 {
        self.claim.key
    }

    /// Version.
    pub fn version(&self) -> u64 {
        self.claim.version
    }

    /// 1 on the first delivery, counting up with each redelivery.
    pub fn deliveries(&self) -> u32 {
        self.claim.deliveries
    }

    /// Monotonic time (CLOCK_MONOTONIC, ns) of the first commit.
    pub fn enqueued_ns(&self) -> u64 {
        self.claim.enqueued_ns
    }

    /// Monotonic time of this claim.
    pub fn claimed_ns(&self) -> u64 {
        self.claimed_ns
    }

    /// Whether the message is sampled for the latency histograms (one in
    /// a few): only a sampled claim's processing time is recorded, so a
    /// binding keeps the claim time of those alone.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn sampled(&self) -> bool {
        self.claim.sampled
    }

    /// Ring position of the message.
    pub fn position(&self) -> u64 {
        self.claim.position
    }

    /// The fencing token of this claim.
    pub fn token(&self) -> u64 {
        self.claim.token()
    }

    /// The message's deadline (CLOCK_MONOTONIC, ns: its commit time plus
    /// its time to live), if it has one; a claim never hands out a message
    /// past it. Redeliveries keep it.
    pub fn expires_ns(&self) -> Option<u64> {
        match &self.q.store {
            Store::Write(e) => e.claimed_expiry(self.claim.slot),
            Store::Read(_) => None,
        }
    }
}
