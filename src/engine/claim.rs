//! Consumers: claim the next message (the side path first when it may hold
//! one, then the head of the ring), and stamp the claim's metadata.

use super::*;
use crate::error::{Error, Result, Status};
use crate::format::hdr;
use crate::format::slot::{self, lap_diff, AttemptsWord, LeaseWord, LenWord};
use crate::memory::Memory;
use crate::sync::{spin_hint, Ordering};

/// A claim: what a consumer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Slot index.
    pub slot: u64,
    /// Sequence of the claimed word.
    pub seq: u64,
    /// Ring position the message was reserved at.
    pub position: u64,
    /// Payload length (validated against `max_message_size`).
    pub len: usize,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// 1 on the first delivery; 0 for a claim of a message past its
    /// deadline, which is no delivery (see [`Claim::expired`]).
    pub deliveries: u32,
    /// Monotonic time of the first commit.
    pub enqueued_ns: u64,
    /// Whether the message is sampled for the latency histograms.
    pub sampled: bool,
    /// The fencing token (see [`Engine::token_of`]).
    pub token: u64,
}

impl Claim {
    /// Whether the claim was made on a message already past its deadline
    /// at the claim's time: not a delivery (its count is 0), and never
    /// handed out (see [`Engine::expire_claimed`]). A field the claim
    /// carries anyway, so a message without a deadline costs one test.
    #[inline]
    pub fn expired(&self) -> bool {
        self.deliveries == 0
    }

    /// The fencing token: the claim's generation and its slot, unique for
    /// the life of the file.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// What a claim skipped on its way, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages completed without delivery because a newer version of
    /// their key was acked.
    pub stale: u64,
    /// Messages skipped because their key was busy.
    pub key_waits: u64,
    /// Input: when set, a claim that meets a reservation at the head (a
    /// producer still writing the next message) returns `None` at once and
    /// reports it in `blocked`, so that the caller decides when to pass it
    /// (see [`Engine::pass_reservation`]); when unset, the claim spins a
    /// little and then passes it.
    pub patient: bool,
    /// Output: the reservation that stopped a patient claim.
    pub blocked: Option<(u64, SlotWord)>,
    /// Internal: the side-path epoch seen before this claim looked at the
    /// side path; a head claim that sees it moved since goes back there
    /// first (a message committed off ring order before the one at the head
    /// must be claimed first).
    pub side_epoch: Option<u64>,
    /// Internal: the side path moved while the head was being read.
    pub side_moved: bool,
    /// Messages found past their deadline and disposed of instead of
    /// delivered (dropped or dead-lettered, as the queue says).
    pub expired: u64,
    /// Of those, the ones moved into the dead-letter area now (not those
    /// left waiting there for room, counted by the repair that moves them).
    pub expired_dead_lettered: u64,
}

/// How many times a consumer re-reads a `RESERVED` slot at the head before
/// it passes it (the producer is most likely copying its payload), or a
/// message another consumer is taking the key for before it parks it. (A
/// few under loom, where each re-read is a scheduling point to explore.)
const RESERVED_SPINS: u32 = if cfg!(shmq_loom) { 4 } else { 128 };

/// How long a patient claim waits for a producer that is still writing the
/// next message at the head before it passes that reservation. A copy takes
/// nanoseconds to microseconds; a preempted producer, milliseconds.
pub const PASS_AFTER_NS: u64 = 50_000;

impl<M: Memory> Engine<M> {
    /// Claims like [`Engine::claim_counted`], patiently: a reservation at
    /// the head (a producer still writing the next message) makes it return
    /// `None` (the caller retries as it waits) until that same reservation
    /// (slot, sequence and owner) has stopped this handle's claims for
    /// [`PASS_AFTER_NS`] as `precise` (the precise clock, asked only then)
    /// times it; then the reservation is passed and the claim goes on.
    pub fn claim_patiently(
        &self,
        me: u64,
        now: u64,
        tally: &mut Tally,
        precise: impl FnOnce() -> u64,
    ) -> Result<Option<Claim>> {
        use std::sync::atomic::Ordering as O;
        tally.patient = true;
        let got = self.claim_counted(me, now, tally);
        let (Ok(None), Some((i, w))) = (&got, tally.blocked) else {
            return got;
        };
        let t = precise();
        let wait = &self.head_wait;
        // Relaxed: handle-private (see `HeadWait`).
        let seen = SlotWord(wait.word.load(O::Relaxed));
        // The same reservation: a skip by producers lapping the ring moves
        // only its lap, and must not restart the timer (found by review:
        // with producers lapping a small ring faster than the pass, the head
        // waited for the reservation timeout instead).
        let same = wait.slot_plus_one.load(O::Relaxed) == i + 1
            && seen.seq() == w.seq()
            && seen.owner() == w.owner();
        if !same {
            wait.slot_plus_one.store(i + 1, O::Relaxed);
            wait.word.store(w.0, O::Relaxed);
            wait.since.store(t, O::Relaxed);
            return got;
        }
        if t.saturating_sub(wait.since.load(O::Relaxed)) < PASS_AFTER_NS {
            return got;
        }
        self.pass_reservation(i, w);
        wait.slot_plus_one.store(0, O::Relaxed);
        self.claim_counted(me, now, tally)
    }

    /// Claims the next claimable message: a due redelivery first, else the
    /// next message in ring order. `None` when nothing is claimable.
    pub fn claim(&self, me: u64, now: u64) -> Result<Option<Claim>> {
        self.claim_counted(me, now, &mut Tally::default())
    }

    /// Like [`Engine::claim`], counting what it skipped in `tally`.
    pub fn claim_counted(&self, me: u64, now: u64, tally: &mut Tally) -> Result<Option<Claim>> {
        // Relaxed: a handle-private hint (see `fast_claims_off`).
        let fast_off = self
            .fast_claims_off
            .load(std::sync::atomic::Ordering::Relaxed);
        if !fast_off {
            match self.claim_fast(me, now)? {
                fast::Fast::Done(c) if !c.expired() => return Ok(Some(c)),
                // Past its deadline: disposed of, and the general path
                // looks for the next message.
                fast::Fast::Done(c) => self.expire_claimed(me, &c, now, tally)?,
                fast::Fast::Empty => return Ok(None),
                fast::Fast::Slow => {}
            }
        }
        let mut rounds = 0;
        loop {
            // Acquire: a message that went to the side path before the one
            // we find at the head was announced before that one's commit.
            tally.side_epoch = Some(self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire));
            tally.side_moved = false;
            let got = if self.side_needed(now) {
                match self.claim_side(me, now, tally)? {
                    Some(c) => Some(c),
                    None => self.claim_head(me, now, tally)?,
                }
            } else {
                self.claim_head(me, now, tally)?
            };
            let Some(c) = got else {
                if tally.side_moved && rounds < 8 {
                    rounds += 1;
                    continue;
                }
                return Ok(None);
            };
            if c.expired() {
                self.expire_claimed(me, &c, now, tally)?;
                continue;
            }
            if c.key != 0 && self.drop_if_stale(me, &c) {
                tally.stale += 1;
                continue;
            }
            if fast_off && c.key == 0 {
                // Relaxed: as above.
                self.fast_claims_off
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            return Ok(Some(c));
        }
    }

    /// Claims the next message in ring order.
    pub fn claim_head(&self, me: u64, now: u64, tally: &mut Tally) -> Result<Option<Claim>> {
        let head = self.word(hdr::HEAD);
        let mut p = self.head_view.start(head);
        let r = self.claim_head_from(me, now, tally, &mut p);
        self.head_view.leave(head, p, self.lazy_every());
        r
    }

    /// [`Engine::claim_head`] from position `p`, leaving `p` after the last
    /// position decided for the ring order.
    pub(super) fn claim_head_from(
        &self,
        me: u64,
        now: u64,
        tally: &mut Tally,
        p: &mut u64,
    ) -> Result<Option<Claim>> {
        let head = self.word(hdr::HEAD);
        let mut spins = 0u32;
        let mut stalls = 0u32;
        let mut walked = 0u64;
        loop {
            // Bounded work per call, whatever the slots say: the next call
            // goes on from where this one left the cursor. (Spins on one
            // reservation are bounded on their own.)
            if spins == 0 {
                walked += 1;
                if walked > self.walk_limit() {
                    return Ok(None);
                }
            }
            // Relaxed: the cursor is a hint; the slot word decides.
            *p = (*p).max(head.load(Ordering::Relaxed));
            let (i, lap) = self.split(*p);
            let s = self.at(i);
            let mut w = self.word_at(s);
            let mut d = lap_diff(w.lap(), lap + 1);
            if d < 0 && self.below_tail(*p) {
                // Position p is decided (every position below the tail
                // cursor is), though the word we read says otherwise. Read
                // it again: the tail's acquire load synchronised with the
                // producer that decided p and then moved the tail on, so
                // this read sees its decision. If the lap still says
                // undecided, it is not the lap of p but one that ran half
                // the lap space ahead (producers passed this slot lap after
                // lap while no consumer came) and aliases (laps compare
                // modulo their width): decided all the same.
                w = self.word_at(s);
                d = lap_diff(w.lap(), lap + 1).max(0);
            }
            if d < 0 {
                if d < -1 {
                    // The slot is more than a lap behind the head: only a
                    // scribble does that. Re-read, then report it.
                    stalls += 1;
                    if stalls > 64 {
                        return Err(Error::new(
                            Status::Corrupt,
                            format!(
                                "slot {i} is at lap {} behind the head cursor at lap {lap}",
                                w.lap()
                            ),
                        ));
                    }
                    spin_hint();
                    continue;
                }
                // Position p is not decided yet: nothing more in ring order.
                return Ok(None);
            }
            match w.state() {
                state::READY => {
                    if self.later_than(i, w, *p, lap) {
                        // Position p was skipped; this message is a later one.
                        *p = p.wrapping_add(1);
                        continue;
                    }
                    let key = self.field(s, slot::KEY).load(Ordering::Relaxed);
                    if key != 0 && self.has_parked(key) {
                        // Older messages of this key wait off ring order:
                        // this one waits behind them (per-key order).
                        self.park_ready(i, w, key, p, tally);
                        continue;
                    }
                    // Something entered the side path since this claim
                    // looked there (a passed reservation committed, say):
                    // it may be older than this message; look there first.
                    if let Some(seen) = tally.side_epoch {
                        if self.word(hdr::SIDE_DIRTY).load(Ordering::Acquire) != seen {
                            tally.side_moved = true;
                            return Ok(None);
                        }
                    }
                    if key != 0 {
                        match self.acquire_key(me, key, i, w, now) {
                            KeyTake::Taken => {}
                            KeyTake::Busy => {
                                // Another claim holds the key: this message
                                // waits off ring order for it to end.
                                self.park_ready(i, w, key, p, tally);
                                continue;
                            }
                            KeyTake::Contended => {
                                // Another consumer is claiming this very
                                // message: it moves the head on after its
                                // CAS. Should it stall there, park the
                                // message rather than stop every consumer.
                                spins += 1;
                                if spins < RESERVED_SPINS {
                                    spin_hint();
                                } else {
                                    spins = 0;
                                    self.park_ready(i, w, key, p, tally);
                                }
                                continue;
                            }
                        }
                    }
                    let claimed = self.transit(i, w, state::CLAIMED, me);
                    if key != 0 {
                        self.key_claimed(me, key, i, w, claimed.is_some());
                    }
                    let Some(mine) = claimed else {
                        continue;
                    };
                    *p = p.wrapping_add(1);
                    match self.finish_claim(i, mine, now)? {
                        Some(c) => return Ok(Some(c)),
                        None => continue,
                    }
                }
                state::RESERVED => {
                    // A producer is writing position p, or (if p was skipped
                    // and the slot freed and reserved again) a later one.
                    if self.later_than(i, w, *p, lap) {
                        *p = p.wrapping_add(1);
                        continue;
                    }
                    if tally.patient {
                        tally.blocked = Some((i, w));
                        return Ok(None);
                    }
                    // Ours: give it a moment, then pass it; its commit will
                    // put the message on the side path. (A position never
                    // written, by a producer that died at once, is passed
                    // too: its repair frees the slot.)
                    spins += 1;
                    if spins < RESERVED_SPINS {
                        spin_hint();
                        continue;
                    }
                    // Same sequence: it is still the producer's reservation.
                    let passed = SlotWord::new(state::PASSED, w.owner(), w.seq(), w.lap());
                    if self.cas_slot(i, w, passed) {
                        *p = p.wrapping_add(1);
                    }
                    spins = 0;
                }
                _ => {
                    // Position p is decided and holds nothing for the ring
                    // order: it was claimed, skipped, or completed.
                    *p = p.wrapping_add(1);
                }
            }
        }
    }

    /// Whether position `p` lies below the tail: decided for certain (the
    /// shared tail cursor and this handle's own view of it are lower bounds
    /// of the positions producers decided).
    #[inline]
    pub(super) fn below_tail(&self, p: u64) -> bool {
        // Acquire: pairs with the release of the tail's move (`leave`), so
        // that a slot read after this sees the decisions below the tail.
        let shared = self.word(hdr::TAIL).load(Ordering::Acquire);
        // Relaxed: this handle's own decisions (program order). Not under
        // loom, whose models share one engine between participants: there
        // this view is another thread's, and loom does not see std atomics.
        let mine = if cfg!(shmq_loom) {
            0
        } else {
            self.tail_view
                .next
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        p < shared.max(mine)
    }

    /// Passes a reservation that stopped a patient claim for too long (its
    /// producer is slow or preempted): consumers go on with the next
    /// messages, and its commit puts it on the side path. Does nothing if the
    /// reservation moved on meanwhile.
    pub fn pass_reservation(&self, i: u64, w: SlotWord) {
        let mut cur = w;
        loop {
            // Same sequence and owner: it is still the producer's reservation.
            let passed = cur.passed();
            match self.slot_field(i, slot::WORD).compare_exchange(
                cur.0,
                passed.0,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => {
                    let a = SlotWord(actual);
                    if a.state() != state::RESERVED || a.seq() != w.seq() || a.owner() != w.owner()
                    {
                        return;
                    }
                    cur = a;
                }
            }
        }
    }

    /// Whether the message in slot `i` (word `w`, `RESERVED` or `READY`, not
    /// passed by the head) belongs to a position later than `p` (at `lap`),
    /// which means position `p` itself was skipped. Such a message is never
    /// older than `p`: the head has decided every position before it.
    #[inline]
    pub(super) fn later_than(&self, i: u64, w: SlotWord, p: u64, lap: u64) -> bool {
        let s = self.at(i);
        if w.state() == state::READY {
            // A committed message's position is exact (written before its
            // commit CAS, which the word's acquire load synchronised with):
            // no lap arithmetic, which aliases once producers passed the
            // slot half the lap space of times.
            // Relaxed: ordered after the acquire load of the word.
            return self.field(s, slot::POSITION).load(Ordering::Relaxed) > p;
        }
        if !w.was_skipped() {
            // Its position is at lap `w.lap() - 1`.
            return lap_diff(w.lap(), lap + 1) > 0;
        }
        if lap_diff(w.lap(), lap + 2) == 0 {
            // Skipped once since, and not older than p: it is p's.
            return false;
        }
        // Skipped several laps since: ask the position. A reservation's
        // position is written just after its CAS; an unwritten one reads as
        // an older value, taken as p's (the head then passes it, which costs
        // order in this rare case, never a message).
        // Relaxed: ordered after the acquire load of the word.
        self.field(s, slot::POSITION).load(Ordering::Relaxed) > p
    }

    /// After a successful claim CAS: stamp the claim's generation, count
    /// the delivery, stamp the lease and read the message's metadata.
    /// `None` if the claim was lost before its generation was stamped (this
    /// claimer stalled past its lease right after its CAS): claim another.
    pub(super) fn finish_claim(&self, i: u64, w: SlotWord, now: u64) -> Result<Option<Claim>> {
        let s = self.at(i);
        let seq = w.seq();
        let Some(generation) = self.stamp_claim(i, w) else {
            return Ok(None);
        };
        // Relaxed loads: ordered after the acquire of the word we CASed.
        let len_word = LenWord(self.field(s, slot::LEN).load(Ordering::Relaxed));
        let deliveries = if len_word.expires() {
            self.count_attempt_unless_expired(i, seq, now)
        } else {
            self.count_attempt_at(s, seq)
        };
        self.stamp_at(s, seq, now.saturating_add(self.config.lease_ns));
        let len = len_word.length();
        let claim = Claim {
            slot: i,
            seq,
            sampled: len_word.sampled(),
            position: self.field(s, slot::POSITION).load(Ordering::Relaxed),
            len: len as usize,
            key: self.field(s, slot::KEY).load(Ordering::Relaxed),
            version: self.field(s, slot::VERSION).load(Ordering::Relaxed),
            deliveries,
            enqueued_ns: self.field(s, slot::ENQUEUED_NS).load(Ordering::Relaxed),
            token: self.token_of(i, generation),
        };
        if len > self.layout.params.max_message_size {
            return Err(self.corrupt_length(w.owner(), &claim, now));
        }
        Ok(Some(claim))
    }

    /// A claim of a message with a scribbled length, which is never
    /// handed out: dead-letters the message and builds the error.
    #[cold]
    #[inline(never)]
    fn corrupt_length(&self, me: u64, claim: &Claim, now: u64) -> Error {
        let reason = format!("corrupt length {} in slot {}", claim.len, claim.slot);
        if let Err(e) = self.settle(me, claim.token(), &Outcome::Reject { reason: &reason }, now) {
            return e;
        }
        Error::new(
            Status::Corrupt,
            format!("{reason}: the message was moved to the dead letters"),
        )
    }

    /// [`Engine::count_attempt`] for a message with a deadline: 0, and no
    /// delivery counted, when the deadline has passed at `now` (the claim
    /// is then no delivery: its dead letter shows the real attempts).
    #[cold]
    #[inline(never)]
    fn count_attempt_unless_expired(&self, i: u64, seq: u64, now: u64) -> u32 {
        // Relaxed: ordered after the acquire of the word we CASed, as the
        // length word the caller read.
        if self.slot_field(i, slot::EXPIRES).load(Ordering::Relaxed) <= now {
            return 0;
        }
        self.count_attempt(i, seq)
    }

    /// The deadline of the message of slot `i`, which the caller holds a
    /// claim on (while the claim is held nobody writes these words), if it
    /// has one.
    pub fn claimed_expiry(&self, i: u64) -> Option<u64> {
        // Relaxed: published by the commit the claim synchronised with.
        let len = LenWord(self.slot_field(i, slot::LEN).load(Ordering::Relaxed));
        len.expires()
            .then(|| self.slot_field(i, slot::EXPIRES).load(Ordering::Relaxed))
    }

    /// Counts the delivery of claim `seq` unless someone already did; returns
    /// the delivery count.
    pub(super) fn count_attempt(&self, i: u64, seq: u64) -> u32 {
        self.count_attempt_at(self.at(i), seq)
    }

    /// [`Engine::count_attempt`] of the slot at `s`.
    #[inline]
    fn count_attempt_at(&self, s: SlotAt, seq: u64) -> u32 {
        let f = self.field(s, slot::ATTEMPTS);
        let a = AttemptsWord(f.load(Ordering::Relaxed));
        if let Some(n) = a.count_for(seq) {
            return n as u32;
        }
        let n = a.count() + 1;
        // A plain store suffices: only the claimer and a reclaimer of this
        // very claim write this tag, and both write the same count.
        f.store(AttemptsWord::new(seq, n).0, Ordering::Relaxed);
        n as u32
    }

    /// Stamps the deadline of state `seq` unless someone already did.
    pub(super) fn stamp(&self, i: u64, seq: u64, deadline: u64) -> u64 {
        self.stamp_at(self.at(i), seq, deadline)
    }

    /// [`Engine::stamp`] of the slot at `s`.
    #[inline]
    fn stamp_at(&self, s: SlotAt, seq: u64, deadline: u64) -> u64 {
        let f = self.field(s, slot::LEASE);
        if let Some(stamped) = LeaseWord(f.load(Ordering::Relaxed)).time_for(seq) {
            return stamped;
        }
        f.store(LeaseWord::at(seq, deadline).0, Ordering::Relaxed);
        deadline
    }
}
