//! Sending: one message, a batch, or a reservation written in place
//! ([`Reserved`]) and committed; keyed sends and latest-only replacement.

use super::wait::Point;
use super::{Queue, ROLE_PRODUCER};
use crate::error::{Error, Result, Status};
use crate::layout;
use crate::memory::{Loads, Memory};
use crate::metrics::Counter;
use crate::options::{SendOptions, Timeout};
use crate::ring::{state, Reservation};
use crate::sync::Ordering;

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
        self.send_with(data, &SendOptions::new().timeout(timeout))
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

    fn send_with_unchecked(&self, data: &[u8], opts: &SendOptions) -> Result<Sent> {
        self.me("send")?;
        self.check_len(data.len(), "send")?;
        let mut opts = *opts;
        // Version 0 ("the key's next version") is assigned once the send
        // has a place: a send refused `Full` uses no version.
        let auto = opts.key != 0 && opts.version == 0;
        if opts.key != 0 {
            if auto {
                self.engine
                    .keys()
                    .find_or_insert(opts.key)
                    .map_err(|e| self.err("send", e))?;
            } else {
                opts.version = self.resolve_version(opts.key, opts.version, "send")?;
            }
            if self.latest_only && opts.delay.is_zero() {
                if let Some(sent) = self.replace_waiting(data, &opts, "send")? {
                    return Ok(sent);
                }
            }
        }
        let (r, at) = self.reserve_inner(data.len(), opts.timeout, "send")?;
        if auto {
            match self.resolve_version(opts.key, 0, "send") {
                Ok(v) => opts.version = v,
                Err(e) => {
                    let _ = self.engine.abort(self.me("send")?, &r);
                    self.notify(Point::NotFull);
                    return Err(e);
                }
            }
        }
        self.engine.write_payload(&r, data);
        self.commit_inner(&r, data.len(), &opts, "send", Some(at))
    }

    /// Latest-only: replaces the waiting message of `opts.key` in place with
    /// `data` (see `ring`'s module doc: the new message goes into this
    /// participant's replacement record first, so that a death or a stall
    /// at any point leaves the old message or the new one). `Ok(None)` when
    /// there is nothing to replace, or the replacement stalled past the
    /// reservation timeout before its copy and a repair undid it: send a
    /// new message instead. Version 0 is assigned after the take.
    fn replace_waiting(&self, data: &[u8], opts: &SendOptions, op: &str) -> Result<Option<Sent>> {
        let me = self.me(op)?;
        let now = self.now();
        let taken = self
            .engine
            .take_waiting(me, opts.key, opts.version, now, Some(data))
            .map_err(|e| self.keyed_err(op, e))?;
        let Some(r) = taken else {
            return Ok(None);
        };
        let mut opts = *opts;
        if opts.version == 0 {
            match self.resolve_version(opts.key, 0, op) {
                Ok(v) => opts.version = v,
                Err(e) => {
                    self.engine.abort_replacement(me, &r);
                    return Err(e);
                }
            }
        }
        let (len_word, enqueued) = self.enqueue_stamp(data.len(), now);
        if !self.engine.stage_replacement(
            me,
            &r,
            opts.key,
            opts.version,
            len_word as u64,
            enqueued,
            None,
        ) {
            return Ok(None);
        }
        self.engine
            .commit_replacement(me, &r, now)
            .map_err(|e| self.err(op, e))?;
        let sent = self.committed(&r, data.len(), &opts, None, now);
        self.count(Counter::Conflated, 1);
        Ok(Some(sent))
    }

    /// Finds (or takes) the key's entry and gives the version of a send.
    fn resolve_version(&self, key: u64, version: u64, op: &str) -> Result<u64> {
        let keys = self.engine.keys();
        let e = keys.find_or_insert(key).map_err(|e| self.err(op, e))?;
        keys.assign_version(e, version).map_err(|e| {
            self.keyed_err(
                op,
                Error::new(e.status(), format!("key {key}: {}", e.message())),
            )
        })
    }

    /// The last acked version of `key` (0 if none), for a consumer that
    /// guards its own store too.
    pub fn latest_acked_version(&self, key: u64) -> u64 {
        let keys = self.engine.keys();
        keys.find(key).map_or(0, |e| keys.last_acked(e))
    }

    /// Reserves a slot, waiting as `timeout` allows; returns it with the
    /// time of the reservation.
    fn reserve_inner(&self, len: usize, timeout: Timeout, op: &str) -> Result<(Reservation, u64)> {
        let me = self.me(op)?;
        self.check_len(len, op)?;
        let got = self.wait_for(Point::NotFull, timeout, op, |now| {
            match self.engine.reserve(me, now, len) {
                Ok(r) => Ok(Some((r, now))),
                Err(e) if e.status() == Status::Full => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                self.count(Counter::Full, 1);
                // Built once per handle: a producer polling a full queue
                // meets it at every poll.
                Err(Error::new(Status::Full, self.full_msg.clone()))
            }
            Err(e) => Err(self.err_once(op, e)),
        }
    }

    fn commit_inner(
        &self,
        r: &Reservation,
        len: usize,
        opts: &SendOptions,
        op: &str,
        at: Option<u64>,
    ) -> Result<Sent> {
        let me = self.me(op)?;
        // One clock read per send: a commit that directly follows its
        // reservation uses the reservation's time.
        let now = at.unwrap_or_else(|| self.now());
        let (len_word, enqueued) = self.enqueue_stamp(len, now);
        let not_before = if opts.delay.is_zero() {
            None
        } else {
            Some(now.saturating_add(opts.delay.as_nanos().min(u64::MAX as u128) as u64))
        };
        // The delay is compared with the coarse time it was computed from;
        // a sampled message's precise enqueue time (up to a tick ahead) made
        // short delays look over at once (found by tests/model_keys.rs).
        self.engine
            .commit_at(
                me,
                r,
                len_word,
                opts.key,
                opts.version,
                not_before,
                now,
                enqueued,
            )
            .map_err(|e| self.err(op, e))?;
        Ok(self.committed(r, len, opts, not_before, now))
    }

    /// The length word (with the sampling flag) and enqueue time of a
    /// message committed at `now`.
    fn enqueue_stamp(&self, len: usize, now: u64) -> (usize, u64) {
        let sampled = self.sample(now);
        let enqueued = if sampled { self.precise() } else { now };
        // raw write: the length word's sampled flag, to move into the engine
        let len_word = if sampled {
            len | layout::slot::LEN_SAMPLED as usize
        } else {
            len
        };
        (len_word, enqueued)
    }

    /// The bookkeeping after the commit of reservation `r`.
    fn committed(
        &self,
        r: &Reservation,
        len: usize,
        opts: &SendOptions,
        not_before: Option<u64>,
        now: u64,
    ) -> Sent {
        if opts.key != 0 {
            self.raise_last_committed(opts.key, opts.version);
            if self.latest_only && not_before.is_none() {
                self.engine.set_waiting(opts.key, r.slot, r.position);
            }
        }
        self.notify(Point::NotEmpty);
        self.note_role(ROLE_PRODUCER);
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Sent, 1);
            rec.add(Counter::BytesSent, len as u64);
        }
        self.tick(now);
        Sent {
            position: r.position,
            version: opts.version,
        }
    }

    /// Raises the key's last committed version to `version`.
    // raw read: to move into the engine's typed snapshot
    fn raise_last_committed(&self, key: u64, version: u64) {
        let keys = self.engine.keys();
        if let Some(e) = keys.find(key) {
            // A racy maximum, not an atomic one: the field is
            // informative (no decision reads it), and a locked RMW on
            // the key's line costs more than the rest of the commit's
            // bookkeeping.
            let committed = keys.field(e, layout::key::LAST_COMMITTED);
            if committed.load(Ordering::Relaxed) < version {
                committed.store(version, Ordering::Relaxed);
            }
        }
    }

    /// Reserves a slot for a payload of up to `len` bytes, to be written in
    /// place and then committed (zero-copy send).
    pub fn reserve(&self, len: usize, timeout: impl Into<Timeout>) -> Result<Reserved<'_>> {
        let r = self.reserve_inner(len, timeout.into(), "reserve");
        let (r, _) = self.checked("reserve", r)?;
        Ok(Reserved {
            q: self,
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
        let me = self.me("send_batch")?;
        let mut timeout = timeout;
        let mut sent = 0usize;
        let mut bytes = 0u64;
        let mut now = self.now();
        let mut failed = None;
        for m in messages {
            let data = m.as_ref();
            if let Err(e) = self.check_len(data.len(), "send_batch") {
                failed = Some(e);
                break;
            }
            let r = if sent == 0 {
                match self.reserve_inner(data.len(), timeout, "send_batch") {
                    Ok((r, at)) => {
                        now = at;
                        r
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            } else {
                match self.engine.reserve(me, now, data.len()) {
                    Ok(r) => r,
                    Err(e) if e.status() == Status::Full => break,
                    Err(e) => {
                        failed = Some(self.err("send_batch", e));
                        break;
                    }
                }
            };
            timeout = Timeout::TryOnce;
            self.engine.write_payload(&r, data);
            if let Err(e) = self.engine.commit(me, &r, data.len(), 0, 0, None, now) {
                failed = Some(self.err("send_batch", e));
                break;
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
        self.notify(Point::NotEmpty);
        self.note_role(ROLE_PRODUCER);
        if let Some(rec) = self.recorder() {
            rec.add(Counter::Sent, sent as u64);
            rec.add(Counter::BytesSent, bytes);
        }
        self.tick(now);
        Ok(sent)
    }
}

/// A reserved slot being written in place.
pub struct Reserved<'q> {
    q: &'q Queue,
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
        self.q.engine.write_payload(&self.r, data);
        self.len = data.len();
        Ok(())
    }

    /// A pointer to the slot's payload, `capacity()` bytes long, valid until
    /// commit or abort. Writing through it is the zero-copy path.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // raw read: to move into the engine's typed snapshot (a payload view)
        self.q
            .engine
            .mem
            .byte_ptr(self.q.engine.payload_offset(self.r.slot), self.len)
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

    /// Commits with key, version and delay (the timeout is ignored).
    pub fn commit_with(mut self, opts: &SendOptions) -> Result<Sent> {
        let mut opts = *opts;
        if opts.key != 0 {
            // On error, dropping `self` aborts the reservation.
            opts.version = self.q.resolve_version(opts.key, opts.version, "commit")?;
        }
        self.done = true;
        if opts.key != 0 && self.q.latest_only && opts.delay.is_zero() {
            // Latest-only: a waiting older message of the key is replaced in
            // place, as by `send_with`: the payload moves from this
            // reservation into the waiting message's slot, and this
            // reservation is given back.
            let r = self.replace_waiting(&opts);
            if let Some(r) = r.transpose() {
                return self.q.checked("commit", r);
            }
        }
        let r = self
            .q
            .commit_inner(&self.r, self.len, &opts, "commit", None);
        self.q.checked("commit", r)
    }

    /// Latest-only: moves this reservation's payload into the key's waiting
    /// message, if there is one to replace (`Ok(None)`: there is not, or
    /// the replacement was undone; commit this reservation instead). The
    /// payload goes through the replacement record like a `send_with`'s.
    fn replace_waiting(&self, opts: &SendOptions) -> Result<Option<Sent>> {
        let q = self.q;
        let me = q.me("commit")?;
        // A reservation abandoned meanwhile (it stalled past the
        // reservation timeout) sends nothing: `commit_inner` answers
        // `Abandoned` (G5). Found by the model_ops fuzz target.
        let mine = q.engine.slot_word(self.r.slot);
        let held = matches!(mine.state(), state::RESERVED | state::PASSED)
            && mine.owner() == me
            && mine.seq() == self.r.seq;
        if !held {
            return Ok(None);
        }
        let data = self.written_payload();
        let sent = q.replace_waiting(&data, opts, "commit").inspect_err(|_| {
            // Stale (or a damaged key table): nothing is sent; give the
            // reservation back.
            let _ = q.engine.abort(me, &self.r);
            q.notify(Point::NotFull);
        })?;
        if sent.is_some() {
            let _ = q.engine.abort(me, &self.r);
            q.notify(Point::NotFull);
        }
        Ok(sent)
    }

    /// A copy of what was written into the reservation so far.
    // raw read: to move into the engine's typed snapshot (a payload view)
    fn written_payload(&self) -> Vec<u8> {
        let mut data = vec![0u8; self.len];
        self.q
            .engine
            .mem
            .read_bytes(self.q.engine.payload_offset(self.r.slot), &mut data);
        data
    }

    /// Gives the slot back without sending.
    pub fn abort(mut self) -> Result<()> {
        self.done = true;
        let me = self.q.me("abort")?;
        self.q
            .engine
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
                let _ = self.q.engine.abort(me, &self.r);
                self.q.notify(Point::NotFull);
            }
        }
    }
}
