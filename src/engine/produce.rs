//! Producers: reserve a slot, write the payload, commit or abort, and the
//! tallies of occupied slots.

use super::*;
use crate::error::{Error, Result, Status};
use crate::format::slot::{self, lap_diff, next_seq, AttemptsWord, ClaimWord, LeaseWord};
use crate::format::{hdr, part};
use crate::memory::Memory;
use crate::sync::{spin_hint, Ordering};

/// A reservation: the slot a producer is writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Slot index.
    pub slot: u64,
    /// Sequence of the reserved word.
    pub seq: u64,
    /// Ring position.
    pub position: u64,
}

/// How far past a fresh message at the tail a producer looks for a slot
/// freed out of order. Queues of at most this many slots are therefore full
/// exactly when every slot is taken; larger ones may report `Full` while a
/// slot further on is free, until consumers catch up.
const LOOKAHEAD: u64 = 16;

impl<M: Memory> Engine<M> {
    /// Reserves the next free slot in ring order for a payload of `len`
    /// bytes. `Err(Full)` when the next slot in ring order still holds a
    /// message not yet claimed, or every slot is held.
    pub fn reserve(&self, me: u64, now: u64, len: usize) -> Result<Reservation> {
        if let super::fast::Fast::Done(r) = self.reserve_fast(me, now, len) {
            return Ok(r);
        }
        let tail = self.word(hdr::TAIL);
        let mut p = self.tail_view.start(tail);
        let r = self.reserve_from(me, now, len, &mut p);
        self.tail_view.leave(tail, p, self.lazy_every());
        r
    }

    /// Whether the slot `ahead` positions past this handle's tail has been
    /// freed for its position (loads only). A producer waiting on a full
    /// queue polls this instead of retrying its next slot: consumers free
    /// slots about in ring order, so it comes back with room for a run of
    /// messages instead of one, and while it waits it reads a line the
    /// consumers are not working on (retrying the next slot at every poll
    /// pulled away the very line a consumer was about to ack).
    pub fn room_ahead(&self, ahead: u64) -> bool {
        let tail = self.word(hdr::TAIL);
        let p = self
            .tail_view
            .start(tail)
            .wrapping_add(ahead.min(self.capacity() - 1));
        let (i, lap) = self.split(p);
        let w = self.slot_word(i);
        lap_diff(w.lap(), lap) > 0 || (w.state() == state::FREE && w.lap() == lap)
    }

    /// How many positions a lone handle decides between two moves of a
    /// shared cursor.
    #[inline]
    pub(super) fn lazy_every(&self) -> u64 {
        LAZY_CURSOR_EVERY.min(self.capacity() / 2).max(1)
    }

    /// [`Engine::reserve`] from position `p`, leaving `p` after the last
    /// position decided.
    pub(super) fn reserve_from(
        &self,
        me: u64,
        now: u64,
        len: usize,
        p: &mut u64,
    ) -> Result<Reservation> {
        let tail = self.word(hdr::TAIL);
        let mut skips = 0u64;
        let mut stalls = 0u32;
        // Fresh messages this call may still skip to reach a free slot.
        let mut room = 0u64;
        // Held messages this call may still skip to reach a free slot.
        let mut held_room = 0u64;
        let mut walked = 0u64;
        loop {
            // Relaxed: the cursor is a hint; the slot CAS below decides.
            *p = (*p).max(tail.load(Ordering::Relaxed));
            let (i, lap) = self.split(*p);
            let s = self.at(i);
            let w = self.word_at(s);
            let d = lap_diff(w.lap(), lap);
            if d > 0 {
                // Bounded: the cursor lags the slots by at most the
                // producers that died or stalled between their two steps.
                walked += 1;
                if walked > self.walk_limit() {
                    return Err(Error::new(
                        Status::Corrupt,
                        format!("the tail cursor found no undecided position in {walked} steps: slot laps are scribbled"),
                    ));
                }
                // Someone already decided position p: walk on.
                *p = p.wrapping_add(1);
                continue;
            }
            if d < 0 {
                // The slot lags the cursor: only a scribbled cursor or slot
                // can do that. Re-read a few times, then report it.
                stalls += 1;
                if stalls > 64 {
                    return Err(Error::new(
                        Status::Corrupt,
                        format!(
                            "slot {i} is at lap {} behind the tail cursor at lap {lap}",
                            w.lap()
                        ),
                    ));
                }
                spin_hint();
                continue;
            }
            match w.state() {
                state::FREE => {
                    let mine = SlotWord::new(state::RESERVED, me, w.seq() + 1, lap + 1);
                    if !self.cas_slot(i, w, mine) {
                        continue;
                    }
                    let position = *p;
                    *p = p.wrapping_add(1);
                    self.tally(me, part::TOOK);
                    // Relaxed stores: we own the slot; the commit CAS publishes.
                    self.field(s, slot::POSITION)
                        .store(position, Ordering::Relaxed);
                    self.field(s, slot::LEASE).store(
                        LeaseWord::at(
                            mine.seq(),
                            now.saturating_add(self.config.reservation_timeout_ns),
                        )
                        .0,
                        Ordering::Relaxed,
                    );
                    self.field(s, slot::LEN)
                        .store(len as u64, Ordering::Relaxed);
                    return Ok(Reservation {
                        slot: i,
                        seq: mine.seq(),
                        position,
                    });
                }
                state::RESERVED | state::READY => {
                    // A message of an earlier lap still waits in ring order:
                    // the consumers are a whole ring behind. If a slot ahead was freed out of order (an abort, a
                    // redelivered message acked), skip this one like a held
                    // one (its consumers find it by its position) to reach
                    // it. First just ahead: when consumers free slots in
                    // order, the free ones are a whole lap away, and the
                    // tallies say so without a search.
                    if room == 0 {
                        room = self.room_past(*p, LOOKAHEAD);
                        if room == 0
                            && (self.occupied() < self.capacity()
                                || self
                                    .full_search
                                    .tallies_wrong
                                    .load(std::sync::atomic::Ordering::Relaxed))
                        {
                            // The tallies say a slot is free, further on
                            // than the lookahead (G1: `Full` only when every
                            // slot is taken): the slow path searches the lap.
                            room = self.free_slot_within(*p, self.capacity());
                        }
                    }
                    if room == 0 {
                        return Err(Error::new(Status::Full, "the queue is full"));
                    }
                    room -= 1;
                    if self.cas_slot(i, w, w.skipped()) {
                        *p = p.wrapping_add(1);
                        skips += 1;
                        if skips >= self.capacity() {
                            return Err(Error::new(Status::Full, "the queue is full"));
                        }
                    }
                }
                _ => {
                    // Held out of ring order: skip it, it keeps its slot
                    // (G2) -- but only towards a free slot within the lap.
                    // When every slot is held, skipping them all would burn
                    // a lap of positions per try (a producer polling a full
                    // queue moved the tail a lap per poll, and the head then
                    // had that many positions to walk: found by the
                    // model_ops fuzz target).
                    if held_room == 0 {
                        held_room = self.room_past(*p, self.capacity());
                    }
                    if held_room == 0 {
                        return Err(Error::new(Status::Full, "the queue is full"));
                    }
                    held_room -= 1;
                    if self.cas_slot(i, w, w.skipped()) {
                        *p = p.wrapping_add(1);
                        skips += 1;
                        if skips >= self.capacity() {
                            return Err(Error::new(Status::Full, "the queue is full"));
                        }
                    }
                }
            }
        }
    }

    /// Writes the payload of a reservation.
    ///
    /// # Safety
    /// `r` was returned by this engine's [`Engine::reserve`] (or a
    /// replacement's reserve) to the caller, who has not yet committed or
    /// aborted it, and `data` is at most the queue's `max_message_size`
    /// long. (`Reservation` is a plain copyable value: a copy used after
    /// its commit would write into a published message that consumers
    /// read.) A reservation abandoned meanwhile by a repair is fine: it is
    /// quarantined, not reused, while its owner lives.
    pub unsafe fn write_payload(&self, r: &Reservation, data: &[u8]) {
        debug_assert!(data.len() as u64 <= self.layout.params.max_message_size);
        // SAFETY: the slot is the caller's reservation (`r`, uncommitted by
        // the contract), which nobody else writes or reads until its commit
        // publishes it; a reservation abandoned meanwhile is quarantined,
        // not reused, so the late copy lands in bytes nobody reads.
        unsafe { self.mem.write_bytes(self.payload_offset(r.slot), data) };
    }

    /// Commits a reservation: the message becomes claimable (at
    /// `not_before_ns` if given). `Err(Abandoned)` if the reservation was
    /// abandoned meanwhile: nothing was sent.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub fn commit(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
    ) -> Result<u64> {
        self.commit_at(me, r, len, key, version, not_before_ns, now, now)
    }

    /// [`Engine::commit`] with an enqueue time of its own: `now` (the clock
    /// delays are stamped on) decides whether `not_before_ns` is still
    /// ahead; `enqueued_ns` (a precise time for a sampled message) is what
    /// the lead-time histogram measures from.
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub fn commit_at(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
        enqueued_ns: u64,
    ) -> Result<u64> {
        self.commit_from(
            me,
            r,
            len,
            key,
            version,
            not_before_ns,
            now,
            enqueued_ns,
            false,
        )
    }

    /// [`Engine::commit_at`]; for a replacement (`replacing`), a slot
    /// quarantined while `me` stalled in its copy is committed `PENDING`
    /// (the replacement keeps its position), and a slot whose replacement a
    /// repair finished meanwhile is reported committed.
    // Inlined into each caller, so that where its arguments are constants
    // (a plain message of a batch: no key, no delay, not a replacement)
    // their branches fold away; left to the compiler, that specialisation
    // came and went with unrelated changes (about 45 instructions a
    // message of a batch, measured with `shmq bench --instructions`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub(super) fn commit_from(
        &self,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
        enqueued_ns: u64,
        replacing: bool,
    ) -> Result<u64> {
        self.commit_in(
            self.at(r.slot),
            me,
            r,
            len,
            key,
            version,
            not_before_ns,
            now,
            enqueued_ns,
            replacing,
        )
    }

    /// [`Engine::commit_from`] with the reservation's slot located already
    /// (`s`, [`Engine::at`] of `r.slot`): a send's fast path locates it once
    /// for the reservation and the commit.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the message's metadata, written once
    pub(super) fn commit_in(
        &self,
        s: SlotAt,
        me: u64,
        r: &Reservation,
        len: usize,
        key: u64,
        version: u64,
        not_before_ns: Option<u64>,
        now: u64,
        enqueued_ns: u64,
        replacing: bool,
    ) -> Result<u64> {
        // Relaxed stores: we own the slot while it is ours; the commit CAS
        // (release) publishes them. If the reservation was abandoned, these
        // writes land on a free slot whose next producer overwrites them.
        self.field(s, slot::KEY).store(key, Ordering::Relaxed);
        self.field(s, slot::VERSION)
            .store(version, Ordering::Relaxed);
        self.field(s, slot::ENQUEUED_NS)
            .store(enqueued_ns, Ordering::Relaxed);
        self.field(s, slot::LEN)
            .store(len as u64, Ordering::Relaxed);
        self.field(s, slot::ATTEMPTS)
            .store(AttemptsWord::new(r.seq, 0).0, Ordering::Relaxed);
        // Re-tag the claim word with this reservation's sequence (keeping
        // its generation), so that its tag is never many transitions old.
        // A load and a store: we own the slot, and a stalled claimer of an
        // earlier claim cannot stamp it any more (see `ClaimWord`).
        let claim = self.field(s, slot::CLAIM);
        let retagged = ClaimWord(claim.load(Ordering::Relaxed)).retagged(r.seq);
        claim.store(retagged.0, Ordering::Relaxed);
        // The lease word too: a latest-only replacement takes the slot
        // without stamping it (its deadline is in its record), so after
        // replacements the word kept a reservation's tag many transitions
        // old; once the sequence wrapped onto it, the next claim took that
        // stale deadline for its own stamp and its lease ran out at once
        // (found by the narrow-width model_ops fuzz target). Same rule as
        // the claim word: we own the slot, a load and a store.
        let lease = self.field(s, slot::LEASE);
        if LeaseWord(lease.load(Ordering::Relaxed))
            .time_for(r.seq)
            .is_none()
        {
            lease.store(
                LeaseWord::at(
                    r.seq,
                    now.saturating_add(self.config.reservation_timeout_ns),
                )
                .0,
                Ordering::Relaxed,
            );
        }
        loop {
            let w = self.word_at(s);
            let quarantined = replacing
                && w.state() == state::ABANDONED
                && w.owner() == me
                && w.seq() == next_seq(r.seq);
            if !quarantined
                && (!(w.state() == state::RESERVED || w.state() == state::PASSED)
                    || w.owner() != me
                    || w.seq() != r.seq)
            {
                if replacing {
                    // Taken from us in the copy phase: only a repair that
                    // found us dead does that, and it finished the
                    // replacement from our record (a scribble aside).
                    return Ok(w.seq());
                }
                self.free_abandoned(me, r);
                return Err(Error::new(
                    Status::Abandoned,
                    "the reservation was abandoned before its commit (it stalled past the reservation timeout); nothing was sent",
                ));
            }
            let new = match (not_before_ns, w.state()) {
                (_, state::ABANDONED) => w.transition(state::PENDING, 0),
                (Some(t), _) if t > now => {
                    self.field(s, slot::LEASE)
                        .store(LeaseWord::at(next_seq(r.seq), t).0, Ordering::Relaxed);
                    w.transition(state::DELAYED, 0)
                }
                (_, state::RESERVED) => w.transition(state::READY, 0),
                _ => w.transition(state::PENDING, 0),
            };
            if new.state() == state::PENDING {
                self.pending_entered(key);
            }
            if self.cas_slot_at(s, w, new) {
                if new.state() == state::DELAYED {
                    self.delay_entered(not_before_ns.unwrap_or(now));
                } else if new.state() == state::PENDING {
                    self.side_entered();
                }
                return Ok(new.seq());
            }
            if new.state() == state::PENDING {
                self.pending_left(key);
            }
            // The lap moved (a skip) or consumers passed us: read again.
        }
    }

    /// [`Engine::cas_slot`] of the slot at `s` (located once by the caller).
    #[inline(always)]
    pub(super) fn cas_slot_at(&self, s: SlotAt, old: SlotWord, new: SlotWord) -> bool {
        // SeqCst, Acquire: as in `cas_slot`, which this is.
        self.field(s, slot::WORD)
            .compare_exchange(old.0, new.0, Ordering::SeqCst, Ordering::Acquire)
            .is_ok()
    }

    /// Frees our reservation's slot if it was abandoned (quarantined) while
    /// we stalled: now that we are back, nobody else writes it.
    pub(super) fn free_abandoned(&self, me: u64, r: &Reservation) {
        let w = self.slot_word(r.slot);
        if w.state() == state::ABANDONED && w.owner() == me && w.seq() == next_seq(r.seq) {
            self.transit_free(me, r.slot, w);
        }
    }

    /// Gives a reservation back unused.
    pub fn abort(&self, me: u64, r: &Reservation) -> Result<()> {
        loop {
            let w = self.slot_word(r.slot);
            if !(w.state() == state::RESERVED || w.state() == state::PASSED)
                || w.owner() != me
                || w.seq() != r.seq
            {
                self.free_abandoned(me, r);
                return Err(Error::new(
                    Status::Abandoned,
                    "the reservation was already abandoned",
                ));
            }
            if self.transit_free(me, r.slot, w) {
                return Ok(());
            }
        }
    }

    /// [`Engine::free_slot_within`] for a producer blocked at position
    /// `p`, answered from the tallies when they say every slot is taken
    /// (see [`FullSearch`]).
    pub(super) fn room_past(&self, p: u64, n: u64) -> u64 {
        use std::sync::atomic::Ordering as O;
        let uses = &self.full_search.uses;
        // Relaxed: a handle-private count; two threads of one handle at worst
        // search a little more often.
        let said_full = self.occupied() >= self.capacity();
        let wrong = &self.full_search.tallies_wrong;
        if said_full && !wrong.load(O::Relaxed) && uses.load(O::Relaxed) < FULL_SEARCH_EVERY {
            uses.fetch_add(1, O::Relaxed);
            return 0;
        }
        uses.store(0, O::Relaxed);
        let found = self.free_slot_within(p, n);
        if said_full {
            wrong.store(found != 0, O::Relaxed);
        }
        found
    }

    /// How many positions after `p` the nearest slot free for its position
    /// lies, looking at most `n` (and less than a lap) ahead (0: none).
    /// Loads only.
    pub(super) fn free_slot_within(&self, p: u64, n: u64) -> u64 {
        let n = n.min(self.capacity() - 1);
        for k in 1..=n {
            let q = p.wrapping_add(k);
            let (i, lap) = self.split(q);
            let w = self.slot_word(i);
            if w.state() == state::FREE && w.lap() == lap {
                return k;
            }
        }
        0
    }

    /// Counts a slot taken from or returned to `FREE` in `me`'s entry (a
    /// plain store: only `me` writes it), or in a shared header word for a
    /// repair that runs outside any entry.
    #[inline(always)]
    pub(super) fn tally(&self, me: u64, field: usize) {
        self.tally_by(me, field, 1);
    }

    /// [`Engine::tally`] by `delta` (wrapping: -1 takes one back).
    // Always inlined: a few instructions, on every reservation and free.
    #[inline(always)]
    pub(super) fn tally_by(&self, me: u64, field: usize, delta: u64) {
        if me < self.layout.params.participant_capacity {
            let w = self.mem.u64_at(self.layout.participant(me) + field);
            // Relaxed load + store: single writer; read only by `occupied`,
            // whose answer is a hint.
            w.store(
                w.load(Ordering::Relaxed).wrapping_add(delta),
                Ordering::Relaxed,
            );
        } else if field == part::FREED {
            self.word(hdr::FREED_UNOWNED)
                .fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Frees slot `i` from `from` (matched as [`Engine::transit`] does),
    /// counting it in `me`'s tally *before* the CAS and taking the count
    /// back if the CAS fails. A crash between the two then leaves the
    /// tallies one slot too *low*, which only makes a producer search a
    /// full ring once more; counted after the CAS, a crash left them one too
    /// high for ever, and a small queue answered `Full` with a slot free.
    pub(super) fn transit_free(&self, me: u64, i: u64, from: SlotWord) -> bool {
        self.tally(me, part::FREED);
        if self.transit(i, from, state::FREE, 0).is_some() {
            return true;
        }
        self.tally_by(me, part::FREED, u64::MAX);
        false
    }

    /// Occupied slots, summed from the participants' tallies. A crash
    /// between a slot CAS and its tally leaves it one too low (a slot is
    /// counted taken after its CAS and freed before it); it only decides
    /// whether a producer blocked by a held or earlier message searches the
    /// ring for a slot freed out of order (see `FullSearch`).
    pub fn occupied(&self) -> u64 {
        let l = &self.layout;
        let mut took = 0u64;
        let mut freed = self.word(hdr::FREED_UNOWNED).load(Ordering::Relaxed);
        // Entries above the bound were never taken: their tallies are 0.
        let bound = crate::participants::Table::new(&self.mem, l).in_use_bound();
        for p in 0..bound {
            let base = l.participant(p);
            took = took.wrapping_add(self.mem.u64_at(base + part::TOOK).load(Ordering::Relaxed));
            freed = freed.wrapping_add(self.mem.u64_at(base + part::FREED).load(Ordering::Relaxed));
        }
        took.saturating_sub(freed)
    }
}
