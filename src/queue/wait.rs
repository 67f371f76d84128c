//! Waiting for room (producers) or for messages (consumers): spin, then
//! sleep on the header's futex words (the handshake is in [`crate::wait`]),
//! running due maintenance meanwhile.

use std::time::Duration;

use super::{Mapping, Queue, Store};
use crate::error::{Error, Result, Status};
use crate::metrics::Counter;
use crate::options::{Timeout, WaitStrategy};
use crate::ring::{Engine, Quiet};
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{OsFutex, WaitPoint};

/// Longest single sleep while some slot could be orphaned by a death (a
/// claim or a reservation in flight) or needs a hand (a message waiting,
/// or being dead-lettered), so sleepers also run the liveness sweep (its
/// period: a dead consumer's claim is noticed within about that).
pub(super) const MAX_SLEEP: Duration = Duration::from_millis(2);
/// Longest single sleep while nothing could be orphaned: no slot taken, or
/// (for a consumer) only delayed messages, not due before the sleep ends.
/// Whatever is sent wakes the sleeper, so it wakes rarely (an idle consumer
/// on a 2 ms beat cost about 2% of a CPU); the bound is a safety net for a
/// sleeper count a crash left wrong.
pub(super) const IDLE_SLEEP: Duration = Duration::from_millis(100);
/// Largest queue whose slots a consumer scans before it sleeps, to tell a
/// claim in flight from delayed messages ([`Engine::quiet_until`]): the
/// scan stops at the first slot a death could orphan (found at once when
/// it is the one found last time), but a queue of delayed messages alone
/// is read whole, a load per slot, before each sleep. A larger queue with
/// a slot taken sleeps on [`MAX_SLEEP`].
const QUIET_SCAN_MAX: u64 = 4096;
/// How long a waiter spins before it sleeps.
const SPIN_NS: u64 = 50_000;

/// How many slots past its tail a producer waiting on a full queue asks to
/// be free before it tries again (a quarter of the ring at most): it then
/// sends a run of messages while the consumers work further on.
const ROOM_RUN: u64 = 32;

/// Which way a caller waits.
pub(super) use crate::ring::WaitOn as Point;

/// The futex word and sleeper count of `p` in the header.
fn wait_point_of(engine: &Engine<Mapping>, p: Point) -> WaitPoint<'_> {
    engine.wait_point(p)
}

/// Participant `p`'s sleeping word: which wait points it counts as a
/// sleeper on ([`Point::sleeping_bit`]).
fn sleeping_word(engine: &Engine<Mapping>, p: u64) -> &AtomicU64 {
    engine.sleeping_word(p)
}

impl Queue {
    /// Wakes the sleepers at `p`, if any, after a change to the queue (a
    /// read-only handle makes none, and wakes nobody).
    #[inline]
    pub(super) fn notify(&self, p: Point) {
        if let Store::Write(e) = &self.store {
            e.notify(p, &OsFutex);
        }
    }

    /// Spins, then sleeps, until `attempt` yields a value or the timeout
    /// passes. `attempt` gets the current time; `engine` is the handle's
    /// (read-write: only a participant waits).
    pub(super) fn wait_for<T>(
        &self,
        engine: &Engine<Mapping>,
        point: Point,
        timeout: Timeout,
        op: &str,
        mut attempt: impl FnMut(u64) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let start = self.now();
        if let Some(x) = attempt(start)? {
            return Ok(Some(x));
        }
        if self.maintain()? {
            if let Some(x) = attempt(start)? {
                return Ok(Some(x));
            }
        }
        if matches!(timeout, Timeout::TryOnce) {
            return Ok(None);
        }
        // From here on the caller waits: time it precisely.
        let start = self.precise();
        let deadline = match timeout {
            Timeout::TryOnce => return Ok(None),
            Timeout::Forever => u64::MAX,
            Timeout::For(d) => start.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        };
        let spin_until = match self.wait {
            WaitStrategy::Sleep => start,
            WaitStrategy::SpinThenSleep => start + SPIN_NS,
            WaitStrategy::Spin => u64::MAX,
        };
        let mut spins = 0u32;
        loop {
            // A waiter on a broken queue returns instead of waiting on
            // words that are now zeros.
            self.intact(op)?;
            let now = self.precise();
            if now >= deadline {
                self.count(Counter::Timeouts, 1);
                return Err(Error::new(
                    Status::Timeout,
                    format!("{}: {op}: timed out", self.path.display()),
                ));
            }
            if now < spin_until {
                spins += 1;
                if spins % 64 == 0 {
                    self.maintain()?;
                    std::thread::yield_now();
                } else {
                    // Back off a little more each time (up to 32 pauses), so
                    // that a waiter does not hammer the lines the other side
                    // is writing.
                    for _ in 0..(1u32 << (spins % 64).min(5)) {
                        crate::sync::spin_hint();
                    }
                    // A producer waits for a run of room, polling a slot
                    // ahead (see `Engine::room_ahead`); it tries its own
                    // slot every few polls all the same, for a queue that
                    // frees out of order.
                    if matches!(point, Point::NotFull)
                        && spins % 16 != 0
                        && !engine.room_ahead(ROOM_RUN.min(engine.capacity() / 4))
                    {
                        continue;
                    }
                }
                if let Some(x) = attempt(now)? {
                    return Ok(Some(x));
                }
                continue;
            }
            let (me, _) = self.me(op)?;
            let wp = wait_point_of(engine, point);
            let bit = point.sleeping_bit();
            let sleeping = sleeping_word(engine, me);
            // Relaxed: read only by a cleaner after our death.
            sleeping.fetch_or(bit, Ordering::Relaxed);
            let seen = wp.prepare();
            let got = attempt(now);
            if !matches!(got, Ok(None)) {
                wp.done();
                sleeping.fetch_and(!bit, Ordering::Relaxed);
                return got;
            }
            // Read after registering as a sleeper (see `beat`).
            let left = Duration::from_nanos(deadline - now).min(self.beat(engine, point, now));
            wp.sleep(&OsFutex, seen, Some(left));
            wp.done();
            sleeping.fetch_and(!bit, Ordering::Relaxed);
            let now = self.precise();
            // Woken: try first (the wake is most likely a message, and the
            // operation runs due maintenance after it succeeds); maintain
            // only when the try found nothing, then try again.
            if let Some(x) = attempt(now)? {
                return Ok(Some(x));
            }
            if self.maintain()? {
                if let Some(x) = attempt(now)? {
                    return Ok(Some(x));
                }
            }
        }
    }
}

impl Queue {
    /// How long a sleeper at `point` may sleep before it must look again,
    /// `now` being the precise time: [`MAX_SLEEP`] while a death could
    /// orphan a slot (the sleeper's wake runs the liveness sweep that finds
    /// the dead), up to [`IDLE_SLEEP`] while nothing could, and for a
    /// consumer, until the first delayed message falls due.
    ///
    /// Called after registering as a sleeper ([`WaitPoint::prepare`]) and
    /// trying the operation once more. Why a consumer that reads "nothing
    /// in flight" here still sees a claim made later, should its claimer
    /// die, within the short beat: a claim needs a claimable message, and a
    /// message becomes claimable in one of three ways.
    ///
    /// - A commit, a redelivery or a nack without delay: each is a SeqCst
    ///   transition of the slot word followed by a notify. By the handshake
    ///   of [`crate::wait`], either the notify sees us registered and bumps
    ///   the futex word (our sleep returns at once, or is woken, and the
    ///   next turn scans again: it sees the claim), or our scan below,
    ///   which follows our registration's fence, sees the transition (the
    ///   slot is then not free: a short beat). A claim made of that message
    ///   before the scan reads its slot is seen as `CLAIMED` on the same
    ///   word.
    /// - A delayed message falling due: the scan saw it `DELAYED` (it was
    ///   delayed before, or its delaying commit notified us, as above), and
    ///   we sleep no later than its due time; the turn after the wake
    ///   claims it or, if another consumer did, sees that claim.
    /// - A lease running out or a repair: the message was claimed or
    ///   reserved before, so the scan saw a taken slot and we keep the
    ///   short beat.
    ///
    /// A reservation made after the scan by a producer that then dies holds
    /// no message: it is abandoned by the next sweep of any operation (a
    /// producer waiting for room sweeps as it waits). A wrong answer of the racy
    /// tallies or scan, or a sleeper count that a death left one too low
    /// (so that a notify skips us), costs a short beat, or a sleep of
    /// [`IDLE_SLEEP`] at most, never a message.
    pub(super) fn beat(&self, engine: &Engine<Mapping>, point: Point, now: u64) -> Duration {
        if engine.occupied() == 0 {
            return IDLE_SLEEP;
        }
        if point != Point::NotEmpty || engine.capacity() > QUIET_SCAN_MAX {
            return MAX_SLEEP;
        }
        match engine.quiet_until(self.quiet_hint.get()) {
            Quiet::Busy(slot) => {
                self.quiet_hint.set(slot);
                MAX_SLEEP
            }
            // Due already, yet our try found nothing: look again soon.
            Quiet::Until(due) if due <= now => MAX_SLEEP,
            Quiet::Until(due) => Duration::from_nanos(due - now).min(IDLE_SLEEP),
        }
    }
}

/// Takes the dead participant `dead` off the sleeper counts it was on when
/// it died (a sleeper count left too high costs wake-up system calls).
pub(super) fn clear_sleeper_counts(engine: &Engine<Mapping>, dead: u64) {
    // Relaxed: the word is the dead participant's, and the counts it
    // names are changed by SeqCst read-modify-writes in `done`.
    let bits = sleeping_word(engine, dead).swap(0, Ordering::Relaxed);
    for p in [Point::NotEmpty, Point::NotFull] {
        if bits & p.sleeping_bit() != 0 {
            wait_point_of(engine, p).done();
        }
    }
}
