//! Waiting for room (producers) or for messages (consumers): spin, then
//! sleep on the header's futex words (the handshake is in [`crate::wait`]),
//! running due maintenance meanwhile.

use std::time::Duration;

use super::{Mapping, Queue, Store};
use crate::error::{Error, Result, Status};
use crate::metrics::Counter;
use crate::options::{Timeout, WaitStrategy};
use crate::ring::Engine;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{OsFutex, WaitPoint};

/// Longest single sleep while some slot is taken (a message waiting, in
/// flight, delayed, or a reservation), so sleepers also run the liveness
/// sweep (its period: a dead consumer's claim is noticed within about that)
/// and claim delayed messages as they fall due.
pub(super) const MAX_SLEEP: Duration = Duration::from_millis(2);
/// Longest single sleep while no slot is taken: nothing can be orphaned or
/// fall due, and whatever is sent wakes the sleeper, so it wakes rarely (an
/// idle consumer on a 2 ms beat cost about 2% of a CPU).
pub(super) const IDLE_SLEEP: Duration = Duration::from_millis(100);
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
            // Read after registering as a sleeper: a slot taken later comes
            // with a commit, whose wake-up we are registered for. (A slot
            // taken by a producer that dies before its commit is found by the
            // next sweep of any operation; it holds no message.)
            let beat = if engine.occupied() == 0 {
                IDLE_SLEEP
            } else {
                MAX_SLEEP
            };
            let left = Duration::from_nanos(deadline - now).min(beat);
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
