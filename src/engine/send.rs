//! Whole sends: one call reserves a slot, copies the payload, commits it
//! and does the key's bookkeeping (a version assigned, the last committed
//! version raised, the waiting reference of a latest-only key set), or in
//! latest-only mode replaces the key's waiting message in place. The
//! handle above goes down once per attempt. A zero-copy send keeps its
//! steps ([`Engine::reserve`], a write through
//! [`Engine::reservation_ptr`] or [`Engine::write_payload`]) and ends with
//! one call too, [`Engine::commit_reserved`].

use super::*;
use crate::error::{Error, Result, Status};
use crate::format::key as keyf;
use crate::format::slot::{self, LenWord};
use crate::memory::Memory;
use crate::sync::Ordering;

/// What a send carries besides its payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendSpec {
    /// Key (0 = none).
    pub key: u64,
    /// Version (0 = the key's next one, assigned once the send has a place).
    pub version: u64,
    /// Time before which the message is not delivered (`None`: at once).
    pub not_before_ns: Option<u64>,
    /// Whether the queue is latest-only: a keyed send without a delay then
    /// replaces the key's waiting message in place.
    pub latest_only: bool,
    /// The message's time to live, ns (0: the queue's default).
    pub ttl_ns: u64,
}

impl SendSpec {
    /// Whether a send of this spec replaces the key's waiting message.
    #[inline]
    fn replaces(&self) -> bool {
        self.key != 0 && self.latest_only && self.not_before_ns.is_none()
    }
}

/// What a send committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The ring position of the message.
    pub position: u64,
    /// The version it carries.
    pub version: u64,
    /// Whether it replaced the key's waiting message in place (latest-only
    /// mode). After [`Engine::commit_reserved`] the reservation was then
    /// given back unused.
    pub replaced: bool,
}

impl<M: Memory> Engine<M> {
    /// Sends `payload` (at most the largest message: the caller checks):
    /// replaces the key's waiting message in latest-only mode, or reserves
    /// the next slot, copies the payload and commits it. `Ok(None)` when
    /// the ring has no room: nothing was done that the caller must undo,
    /// and no version was used.
    ///
    /// `stamp` is asked once the message has a place: `Some(precise time)`
    /// to sample it for the latency histograms (its enqueue time is then
    /// that time), `None` to enqueue it at `now`.
    #[inline]
    pub fn send(
        &self,
        me: u64,
        now: u64,
        payload: &[u8],
        spec: &SendSpec,
        mut stamp: impl FnMut() -> Option<u64>,
    ) -> Result<Option<Committed>> {
        self.check_len(payload.len())?;
        let mut spec = *spec;
        let auto = spec.key != 0 && spec.version == 0;
        if spec.key != 0 {
            if auto {
                self.keys().find_or_insert(spec.key)?;
            } else {
                spec.version = self.resolve_version(spec.key, spec.version)?;
            }
            if spec.replaces() {
                if let Some(c) = self.replace_waiting(me, now, payload, &spec, &mut stamp)? {
                    return Ok(Some(c));
                }
            }
        }
        let r = match self.reserve(me, now, payload.len()) {
            Ok(r) => r,
            Err(e) if e.status() == Status::Full => return Ok(None),
            Err(e) => return Err(e),
        };
        if auto {
            match self.resolve_version(spec.key, 0) {
                Ok(v) => spec.version = v,
                Err(e) => {
                    let _ = self.abort(me, &r);
                    return Err(e);
                }
            }
        }
        // SAFETY: `r` was just reserved here and is not committed yet; the
        // payload fits (checked by `reserve` against max_message_size).
        unsafe { self.write_payload(&r, payload) };
        self.commit_stamped(me, &r, payload.len(), &spec, now, &mut stamp)
            .map(Some)
    }

    /// [`Engine::send`] of a message without key, delay or sampling (a
    /// batch's): reserve, copy, commit. `Ok(None)` when the ring has no
    /// room.
    #[inline]
    pub fn send_plain(&self, me: u64, now: u64, payload: &[u8]) -> Result<Option<Committed>> {
        self.check_len(payload.len())?;
        let r = match self.reserve(me, now, payload.len()) {
            Ok(r) => r,
            Err(e) if e.status() == Status::Full => return Ok(None),
            Err(e) => return Err(e),
        };
        // SAFETY: as in `send`: reserved here, committed only below, and
        // `reserve` refused a payload over max_message_size.
        unsafe { self.write_payload(&r, payload) };
        if self.config.message_ttl_ns != 0 {
            // The queue's default time to live: out of line, so that the
            // common commit below stays as it is without one.
            let len = self.expiring(&r, LenWord::new(payload.len() as u64, false), 0, now);
            self.commit(me, &r, len.0 as usize, 0, 0, None, now)?;
        } else {
            self.commit(me, &r, payload.len(), 0, 0, None, now)?;
        }
        Ok(Some(Committed {
            position: r.position,
            version: 0,
            replaced: false,
        }))
    }

    /// Commits a reservation written in place with `len` bytes: the
    /// version is assigned and checked first (`Stale`: the reservation is
    /// given back and nothing is sent); in latest-only mode the payload
    /// replaces the key's waiting message if there is one, and the
    /// reservation is given back ([`Committed::replaced`]). `stamp` as in
    /// [`Engine::send`].
    pub fn commit_reserved(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        spec: &SendSpec,
        now: u64,
        mut stamp: impl FnMut() -> Option<u64>,
    ) -> Result<Committed> {
        let mut spec = *spec;
        if spec.key != 0 {
            match self.resolve_version(spec.key, spec.version) {
                Ok(v) => spec.version = v,
                Err(e) => {
                    let _ = self.abort(me, r);
                    return Err(e);
                }
            }
            // A reservation abandoned meanwhile (it stalled past the
            // reservation timeout) sends nothing: its commit below answers
            // `Abandoned` (G5). Found by the model_ops fuzz target.
            if spec.replaces() && self.holds_reservation(me, r) {
                let data = self.reserved_payload(r, len);
                match self.replace_waiting(me, now, &data, &spec, &mut stamp) {
                    Ok(None) => {}
                    Ok(Some(c)) => {
                        let _ = self.abort(me, r);
                        return Ok(c);
                    }
                    Err(e) => {
                        // Stale (or a damaged key table): nothing is sent.
                        let _ = self.abort(me, r);
                        return Err(e);
                    }
                }
            }
        }
        self.commit_stamped(me, r, len, &spec, now, &mut stamp)
    }

    /// `TooLarge` for a payload over the queue's `max_message_size`: the
    /// callers above copy it into a slot, so a longer one would spill into
    /// the next slot (the handle checks first, with a better message; this
    /// keeps the engine's safe functions sound on their own).
    #[inline]
    fn check_len(&self, len: usize) -> Result<()> {
        if len as u64 > self.layout.params.max_message_size {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "a {len}-byte payload over the queue's maximum of {} bytes",
                    self.layout.params.max_message_size
                ),
            ));
        }
        Ok(())
    }

    /// A pointer to reservation `r`'s payload, `len` bytes long (`None` if
    /// that leaves the mapping): the zero-copy path of a send.
    pub fn reservation_ptr(&self, r: &Reservation, len: usize) -> Option<*mut u8> {
        self.payload_ptr(r.slot, len)
    }

    /// Whether `me` still holds reservation `r` (nobody abandoned it).
    fn holds_reservation(&self, me: u64, r: &Reservation) -> bool {
        let w = self.slot_word(r.slot);
        matches!(w.state(), state::RESERVED | state::PASSED) && w.owner() == me && w.seq() == r.seq
    }

    /// A copy of the first `len` bytes written into reservation `r`.
    fn reserved_payload(&self, r: &Reservation, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.mem.read_bytes(self.payload_offset(r.slot), &mut data);
        data
    }

    /// Commits reservation `r` (its payload written) with its metadata and
    /// does the key's bookkeeping.
    #[inline]
    fn commit_stamped(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        spec: &SendSpec,
        now: u64,
        stamp: &mut impl FnMut() -> Option<u64>,
    ) -> Result<Committed> {
        let (mut len_word, enqueued) = enqueue_stamp(len, now, stamp());
        // One test when neither the send nor the queue gives a deadline.
        if spec.ttl_ns | self.config.message_ttl_ns != 0 {
            len_word = self.expiring(r, len_word, spec.ttl_ns, now);
        }
        // The delay is compared with the coarse time it was computed from;
        // a sampled message's precise enqueue time (up to a tick ahead) made
        // short delays look over at once (found by tests/model_keys.rs).
        self.commit_at(
            me,
            r,
            len_word.0 as usize,
            spec.key,
            spec.version,
            spec.not_before_ns,
            now,
            enqueued,
        )?;
        self.committed(r, spec);
        Ok(Committed {
            position: r.position,
            version: spec.version,
            replaced: false,
        })
    }

    /// Latest-only: replaces the waiting message of `spec.key` in place
    /// with `data` (see the module doc of the engine: the new message goes
    /// into `me`'s replacement record first, so that a death or a stall at
    /// any point leaves the old message or the new one). `Ok(None)` when
    /// there is nothing to replace, or the replacement stalled past the
    /// reservation timeout before its copy and a repair undid it: send a
    /// new message instead. Version 0 is assigned after the take.
    fn replace_waiting(
        &self,
        me: u64,
        now: u64,
        data: &[u8],
        spec: &SendSpec,
        stamp: &mut impl FnMut() -> Option<u64>,
    ) -> Result<Option<Committed>> {
        let Some(r) = self.take_waiting(me, spec.key, spec.version, now, Some(data))? else {
            return Ok(None);
        };
        let mut spec = *spec;
        if spec.version == 0 {
            match self.resolve_version(spec.key, 0) {
                Ok(v) => spec.version = v,
                Err(e) => {
                    self.abort_replacement(me, &r);
                    return Err(e);
                }
            }
        }
        let (len_word, enqueued) = enqueue_stamp(data.len(), now, stamp());
        let len_word = match self.deadline_of(spec.ttl_ns, now) {
            Some(deadline) => {
                self.stage_replacement_expiry(me, deadline);
                len_word.with_expiry()
            }
            None => len_word,
        };
        if !self.stage_replacement(me, &r, spec.key, spec.version, len_word.0, enqueued, None) {
            return Ok(None);
        }
        self.commit_replacement(me, &r, now)?;
        self.committed(&r, &spec);
        Ok(Some(Committed {
            position: r.position,
            version: spec.version,
            replaced: true,
        }))
    }

    /// The deadline of a message committed at `now` with time to live
    /// `ttl_ns` (0: the queue's default), if it has one.
    #[inline]
    fn deadline_of(&self, ttl_ns: u64, now: u64) -> Option<u64> {
        let ttl = if ttl_ns != 0 {
            ttl_ns
        } else {
            self.config.message_ttl_ns
        };
        (ttl != 0).then(|| now.saturating_add(ttl))
    }

    /// Writes the deadline of the message in reservation `r` (committed at
    /// `now`, time to live `ttl_ns`, 0: the queue's default) if it has one,
    /// and returns its length word with the deadline flag then.
    #[cold]
    #[inline(never)]
    fn expiring(&self, r: &Reservation, len: LenWord, ttl_ns: u64, now: u64) -> LenWord {
        let Some(deadline) = self.deadline_of(ttl_ns, now) else {
            return len;
        };
        // Relaxed: we own the reservation; the commit CAS publishes it.
        self.slot_field(r.slot, slot::EXPIRES)
            .store(deadline, Ordering::Relaxed);
        len.with_expiry()
    }

    /// Finds (or takes) the key's entry and gives the version of a send
    /// (`Stale` if it is not newer than the key's last acked one).
    fn resolve_version(&self, key: u64, version: u64) -> Result<u64> {
        let keys = self.keys();
        let e = keys.find_or_insert(key)?;
        keys.assign_version(e, version)
            .map_err(|e| Error::new(e.status(), format!("key {key}: {}", e.message())))
    }

    /// The key's bookkeeping after the commit of reservation `r`: its last
    /// committed version raised, and in latest-only mode (without a delay)
    /// the message recorded as the key's waiting one.
    #[inline]
    fn committed(&self, r: &Reservation, spec: &SendSpec) {
        if spec.key == 0 {
            return;
        }
        let keys = self.keys();
        if let Some(e) = keys.find(spec.key) {
            // A racy maximum, not an atomic one: the field is informative
            // (no decision reads it), and a locked RMW on the key's line
            // costs more than the rest of the commit's bookkeeping.
            // Relaxed: informative, as said.
            let committed = keys.field(e, keyf::LAST_COMMITTED);
            if committed.load(Ordering::Relaxed) < spec.version {
                committed.store(spec.version, Ordering::Relaxed);
            }
        }
        if spec.replaces() {
            self.set_waiting(spec.key, r.slot, r.position);
        }
    }
}

/// The length word (with the sampling flag) and enqueue time of a
/// `len`-byte message committed at `now`, sampled at `precise` if given.
#[inline]
pub(super) fn enqueue_stamp(len: usize, now: u64, precise: Option<u64>) -> (LenWord, u64) {
    match precise {
        Some(t) => (LenWord::new(len as u64, true), t),
        None => (LenWord::new(len as u64, false), now),
    }
}
