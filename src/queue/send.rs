//! Sending: one message, a batch, or a reservation written in place
//! ([`Reserved`]) and committed; keyed sends and latest-only replacement.

use super::wait::Point;
use super::{read_engine, Mapping, Queue, ROLE_PRODUCER};
use crate::error::{Error, Result, Status};
use crate::metrics::Counter;
use crate::options::{SendOptions, Timeout};
use crate::ring::{Committed, Engine, Reservation, SendSpec};

/// What [`Queue::send_with`] sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The ring position.
    pub position: u64,
    /// The version the message carries.
    pub version: u64,
}

impl Queue {
    /// Sends one message without a key, waiting for room up to `timeout`.
    pub fn send(&self, data: &[u8], timeout: impl Into<Timeout>) -> Result<Sent> {
        if let Some(r) = self.send_fast(data) {
            return r;
        }
        // No options to convert: the spec of a plain message, as is.
        let plain = SendSpec {
            latest_only: self.latest_only,
            ..SendSpec::default()
        };
        let r = self.send_spec_unchecked(data, timeout.into(), |_| plain);
        self.checked("send", r)
    }

    /// Sends one message with a key, version, timeout and delay.
    ///
    /// With a key (non-zero): the version must be newer than the key's last
    /// acked version, else `Stale` and nothing is queued; version 0 takes
    /// the key's next version, returned in [`Sent::version`]. In latest-only
    /// mode a waiting (unclaimed) message of the key is replaced in place.
    pub fn send_with(&self, data: &[u8], opts: &SendOptions) -> Result<Sent> {
        self.checked("send", self.send_with_unchecked(data, opts))
    }

    /// The common case of [`Queue::send`], in straight-line code: the
    /// handle's checks, one clock read, the engine's fast send
    /// ([`Engine::send_fast`]), the bookkeeping of [`Queue::committed`].
    /// `None`: not the common case (a check failed, the message is too
    /// large, the ring has no room at its next slot, ...), nothing
    /// changed: the general path runs, builds the errors and waits.
    #[inline(always)]
    fn send_fast(&self, data: &[u8]) -> Option<Result<Sent>> {
        // The checks of `me`; its error is built again by the general path.
        let (me, engine) = self.me("send").ok()?;
        let now = self.now();
        let r = match engine.send_fast(me, now, data, || self.stamp(now))? {
            Ok(position) => {
                self.sent_plain(1, data.len() as u64, now);
                Ok(Sent {
                    position,
                    version: 0,
                })
            }
            Err(e) => {
                // As `send_spec_unchecked`: the reservation was given back.
                self.notify(Point::NotFull);
                Err(self.keyed_err("send", e))
            }
        };
        // As `checked`, inlined.
        Some(match self.intact("send") {
            Ok(()) => r,
            Err(e) => Err(e),
        })
    }

    /// The handle's bookkeeping after `n` plain messages of `bytes` bytes
    /// in all were committed at `now` (as [`Queue::committed`] does for
    /// each, without a replacement to count).
    #[inline(always)]
    fn sent_plain(&self, n: u64, bytes: u64, now: u64) {
        self.notify(Point::NotEmpty);
        self.note_role(ROLE_PRODUCER);
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Sent, n);
            rec.add(Counter::BytesSent, bytes);
        }
        self.tick(now);
    }

    fn send_with_unchecked(&self, data: &[u8], opts: &SendOptions) -> Result<Sent> {
        self.send_spec_unchecked(data, opts.timeout, |now| self.send_spec(opts, now))
    }

    /// Sends `data`, waiting for room up to `timeout`, with the spec that
    /// `spec_at` gives at the time of each attempt.
    #[inline]
    fn send_spec_unchecked(
        &self,
        data: &[u8],
        timeout: Timeout,
        spec_at: impl Fn(u64) -> SendSpec,
    ) -> Result<Sent> {
        let (me, engine) = self.me("send")?;
        self.check_len(data.len(), "send")?;
        let mut at = 0;
        let got = self.wait_for(engine, Point::NotFull, timeout, "send", |now| {
            at = now;
            let spec = spec_at(now);
            engine.send(me, now, data, &spec, || self.stamp(now))
        });
        match got {
            Ok(Some(c)) => Ok(self.committed(c, data.len(), at)),
            Ok(None) => Err(self.full()),
            Err(e) => {
                // A reservation given back on the way (a version refused
                // after it) is room again.
                self.notify(Point::NotFull);
                Err(self.keyed_err("send", e))
            }
        }
    }

    /// What the engine needs of a send's options at `now`.
    #[inline]
    pub(super) fn send_spec(&self, opts: &SendOptions, now: u64) -> SendSpec {
        SendSpec {
            key: opts.key,
            version: opts.version,
            not_before_ns: (!opts.delay.is_zero())
                .then(|| now.saturating_add(opts.delay.as_nanos().min(u64::MAX as u128) as u64)),
            latest_only: self.latest_only,
            ttl_ns: if opts.ttl.is_zero() {
                0
            } else {
                ttl_ns(opts.ttl)
            },
        }
    }

    /// The sampling decision for a message committed at `now`: its precise
    /// enqueue time if it is sampled (see [`Queue::sample`]).
    #[inline]
    pub(super) fn stamp(&self, now: u64) -> Option<u64> {
        self.sample(now).then(|| self.precise())
    }

    /// `Full`, counted.
    #[cold]
    pub(super) fn full(&self) -> Error {
        self.count(Counter::Full, 1);
        // Built once per handle: a producer polling a full queue meets it
        // at every poll.
        Error::new(Status::Full, self.full_msg.clone())
    }

    /// The last acked version of `key` (0 if none), for a consumer that
    /// guards its own store too.
    pub fn latest_acked_version(&self, key: u64) -> u64 {
        read_engine!(self, |e| {
            let keys = e.keys();
            keys.find(key).map_or(0, |n| keys.last_acked(n))
        })
    }

    /// Reserves a slot, waiting as `timeout` allows; returns it with the
    /// time of the reservation.
    fn reserve_inner(
        &self,
        len: usize,
        timeout: Timeout,
        op: &str,
    ) -> Result<(Reservation, &Engine<Mapping>)> {
        let (me, engine) = self.me(op)?;
        self.check_len(len, op)?;
        let got = self.wait_for(engine, Point::NotFull, timeout, op, |now| {
            match engine.reserve(me, now, len) {
                Ok(r) => Ok(Some((r, now))),
                Err(e) if e.status() == Status::Full => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(Some((r, _))) => Ok((r, engine)),
            Ok(None) => Err(self.full()),
            Err(e) => Err(self.err_once(op, e)),
        }
    }

    /// The handle's bookkeeping after the engine committed `c`, a message
    /// of `len` bytes, at `now`.
    #[inline]
    pub(super) fn committed(&self, c: Committed, len: usize, now: u64) -> Sent {
        if c.replaced {
            self.count(Counter::Conflated, 1);
        }
        self.notify(Point::NotEmpty);
        self.note_role(ROLE_PRODUCER);
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Sent, 1);
            rec.add(Counter::BytesSent, len as u64);
        }
        self.tick(now);
        Sent {
            position: c.position,
            version: c.version,
        }
    }

    /// Reserves a slot for a payload of up to `len` bytes, to be written in
    /// place and then committed (zero-copy send).
    pub fn reserve(&self, len: usize, timeout: impl Into<Timeout>) -> Result<Reserved<'_>> {
        let r = self.reserve_inner(len, timeout.into(), "reserve");
        let (r, engine) = self.checked("reserve", r)?;
        Ok(Reserved {
            q: self,
            engine,
            r,
            len,
            done: false,
        })
    }

    /// Sends several messages; waits up to `timeout` for room for the first,
    /// then sends as many as fit now. Returns how many were sent: always a
    /// prefix of `messages`. An error (a message too large, a reservation
    /// abandoned before its commit, a damaged file) stops the batch where
    /// it happens; it is returned only when nothing was sent, so that a
    /// caller never resends what went out (the next call meets the error
    /// again if it lasts).
    pub fn send_batch<B: AsRef<[u8]>>(
        &self,
        messages: &[B],
        timeout: impl Into<Timeout>,
    ) -> Result<usize> {
        self.checked(
            "send_batch",
            self.send_batch_unchecked(messages, timeout.into()),
        )
    }

    fn send_batch_unchecked<B: AsRef<[u8]>>(
        &self,
        messages: &[B],
        timeout: Timeout,
    ) -> Result<usize> {
        let (me, engine) = self.me("send_batch")?;
        let mut now = self.now();
        // The common case first: the messages that fit now, one engine
        // call for the run, the first possibly sampled. It stops at the
        // first message that is not the common case (the ring without room
        // at its next slot, a message too large, ...), which the general
        // loop below then takes up.
        let (mut sent, mut bytes, run) =
            engine.send_run_fast(me, now, messages, || self.stamp(now));
        let mut failed = run.err().map(|e| self.err_once("send_batch", e));
        let rest = if failed.is_some() {
            &messages[..0]
        } else {
            &messages[sent..]
        };
        for m in rest {
            let data = m.as_ref();
            if let Err(e) = self.check_len(data.len(), "send_batch") {
                failed = Some(e);
                break;
            }
            // Unkeyed, undelayed: one engine call per message; the first
            // of the batch may be sampled for the latency histograms (one
            // precise clock read per batch at most), the others are not.
            let got = if sent == 0 {
                self.wait_for(engine, Point::NotFull, timeout, "send_batch", |at| {
                    now = at;
                    engine.send(me, at, data, &SendSpec::default(), || self.stamp(at))
                })
            } else {
                engine.send_plain(me, now, data)
            };
            match got {
                Ok(Some(_)) => {}
                Ok(None) if sent == 0 => {
                    failed = Some(self.full());
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(self.err_once("send_batch", e));
                    break;
                }
            }
            sent += 1;
            bytes += data.len() as u64;
        }
        if sent == 0 {
            if let Some(e) = failed {
                return Err(e);
            }
            return Ok(0);
        }
        self.sent_plain(sent as u64, bytes, now);
        Ok(sent)
    }
}

/// A reserved slot being written in place.
pub struct Reserved<'q> {
    q: &'q Queue,
    /// The handle's engine, read-write (only a participant reserves).
    engine: &'q Engine<Mapping>,
    r: Reservation,
    len: usize,
    done: bool,
}

impl<'q> Reserved<'q> {
    /// The reserved capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Copies `data` (at most the reserved length) into the slot.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.len() > self.len {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "{}: write: {} bytes into a {}-byte reservation",
                    self.q.path.display(),
                    data.len(),
                    self.len
                ),
            ));
        }
        // SAFETY: `self.r` is this guard's reservation, reserved for it and
        // committed or aborted only when the guard is consumed or dropped
        // (so not yet); `data` fits (checked above against `self.len`, which
        // is at most max_message_size).
        unsafe { self.engine.write_payload(&self.r, data) };
        self.len = data.len();
        Ok(())
    }

    /// A pointer to the slot's payload, `capacity()` bytes long, valid until
    /// commit or abort. Writing through it is the zero-copy path.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.engine
            .reservation_ptr(&self.r, self.len)
            .unwrap_or(std::ptr::null_mut())
    }

    /// Sets the payload length (after writing through the pointer).
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        self.q.check_len(len, "commit")?;
        self.len = len;
        Ok(())
    }

    /// The ring position.
    pub fn position(&self) -> u64 {
        self.r.position
    }

    /// Commits without key.
    pub fn commit(self) -> Result<Sent> {
        self.commit_with(&SendOptions::new())
    }

    /// Commits with key, version and delay (the timeout is ignored). In
    /// latest-only mode a waiting older message of the key is replaced in
    /// place, as by `send_with`: the payload moves from this reservation
    /// into the waiting message's slot, and this reservation is given back.
    pub fn commit_with(mut self, opts: &SendOptions) -> Result<Sent> {
        let q = self.q;
        let (me, engine) = q.me("commit")?;
        let now = q.now();
        let spec = q.send_spec(opts, now);
        // The engine gives the reservation back itself when it does not
        // commit it (a refused version, a replacement in place).
        self.done = true;
        let r = match engine.commit_reserved(me, &self.r, self.len, &spec, now, || q.stamp(now)) {
            Ok(c) => {
                if c.replaced {
                    q.notify(Point::NotFull);
                }
                Ok(q.committed(c, self.len, now))
            }
            Err(e) => {
                q.notify(Point::NotFull);
                Err(q.keyed_err("commit", e))
            }
        };
        q.checked("commit", r)
    }

    /// Gives the slot back without sending.
    pub fn abort(mut self) -> Result<()> {
        self.done = true;
        let (me, engine) = self.q.me("abort")?;
        engine
            .abort(me, &self.r)
            .map_err(|e| self.q.err("abort", e))?;
        self.q.count(Counter::Aborted, 1);
        self.q.notify(Point::NotFull);
        Ok(())
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        // In a forked child the reservation is the parent's: leave it.
        if !self.done && std::process::id() == self.q.pid {
            if let Some(me) = self.q.me {
                let _ = self.engine.abort(me, &self.r);
                self.q.notify(Point::NotFull);
            }
        }
    }
}

/// A send's time to live in nanoseconds (saturating), out of the common
/// path of a send without one.
#[cold]
#[inline(never)]
fn ttl_ns(ttl: std::time::Duration) -> u64 {
    ttl.as_nanos().min(u64::MAX as u128) as u64
}
