//! Waiting without a thread: [`Queue::claim_async`] and
//! [`Queue::send_async`], futures for any executor (feature `async`).
//!
//! Each poll does what one turn of the blocking wait does (see `wait`),
//! without spinning: try the operation; if the queue is empty (or full),
//! count ourselves a sleeper on the header's wait point and read its futex
//! word, try again (a change made before we counted ourselves is seen by
//! this try, one made after bumps the word), then hand the word, the value
//! read and the task's waker to the process's waker thread
//! ([`crate::waker`]) and return `Pending`. Producers and consumers wake
//! async waiters exactly as they wake blocking ones: a notify costs a
//! system call only while somebody (blocked or async) is counted.
//!
//! Every registration also carries a time limit, the blocking wait's
//! bounded sleep (a few ms while any slot is taken, 100 ms on an idle
//! queue, never past the caller's timeout): delayed messages fall due and
//! leases run out by time, not by a futex bump, and the poll that follows
//! runs the due maintenance and tries again.
//!
//! A registration ends once: the waker thread ends it when it wakes the
//! task (taking it off the sleeper count first, so that producers stop
//! paying a system call per message for a task that has not run yet), or
//! the future does when it is polled again or dropped before that. The
//! queue's wait strategy does not apply: an async wait never spins.
//!
//! The futures borrow the handle, which is used by one thread at a time:
//! they are not `Send`. On a multi-threaded runtime give each handle to one
//! task through [`Queue::claim_async_mut`] / [`Queue::send_async_mut`],
//! whose futures hold the handle exclusively and are `Send`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::wait::Point;
use super::{Message, Queue, Sent};
use crate::error::{Error, Result, Status};
use crate::metrics::Counter;
use crate::options::{SendOptions, Timeout};
use crate::sync::Ordering;
use crate::sys;
use crate::waker::{self, Counted, Ticket};

/// How many async waiters of one handle are counted at each wait point
/// (indexed by [`slot_of`]): the participant's sleeping bit is set while
/// any is, so that a cleaner takes them off the count after a death (one
/// per bit: a death with several async waiters on one point leaves the
/// count a little high, which costs wake-up system calls, never a hang).
pub(super) type AsyncSleepers = Arc<[AtomicU32; 2]>;

fn slot_of(p: Point) -> usize {
    match p {
        Point::NotEmpty => 0,
        Point::NotFull => 1,
    }
}

/// The state of one async wait: when it ends, and the registration it
/// holds while pending. For a binding that polls [`Queue::poll_claim`]
/// itself; a future holds one.
#[derive(Debug, Default)]
pub struct AsyncWait {
    /// Set at the first poll: the caller's timeout, and when it ends.
    started: Option<Deadline>,
    armed: Option<Armed>,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    try_once: bool,
    /// Precise-clock ns (u64::MAX: never).
    at: u64,
}

impl AsyncWait {
    /// A wait not yet started: it starts at its first poll.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it holds a registration (counted as a sleeper, registered
    /// with the waker thread).
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }
}

/// What an async waiter holds between two polls: its registration with
/// the waker thread, which also holds its place in the sleeper count
/// ([`Counted`]). Dropping it takes the registration back (and gives the
/// place back, unless the waker thread did when it woke us).
struct Armed {
    ticket: Option<Ticket>,
    /// The process that registered.
    pid: u32,
}

impl std::fmt::Debug for Armed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Armed")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if self.pid != sys::current_pid() {
            // Copied into a forked child: the count is the parent's
            // waiter's, and the registration is with the parent's waker.
            std::mem::forget(self.ticket.take());
        }
    }
}

impl Queue {
    /// Polls one turn of an async wait at `point` (see the module's
    /// notes): `Ready(Ok(Some))` when `attempt` succeeded, `Ready(Ok(None))`
    /// when it found nothing and the timeout is "try once".
    fn poll_wait<T>(
        &self,
        cx: &mut Context<'_>,
        w: &mut AsyncWait,
        point: Point,
        timeout: Timeout,
        op: &str,
        mut attempt: impl FnMut(u64) -> Result<Option<T>>,
    ) -> Poll<Result<Option<T>>> {
        // Whatever woke us (the word changed, the time limit, a spurious
        // poll), the registration is spent.
        w.armed = None;
        let engine = match self.me(op) {
            Ok((_, e)) => e,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let deadline = match w.started {
            Some(d) => {
                let now = self.precise();
                match self.retry(now, &mut attempt) {
                    Ok(None) => {}
                    r => return Poll::Ready(r),
                }
                d
            }
            None => {
                // The first poll: as the blocking wait starts.
                let now = self.now();
                match self.retry(now, &mut attempt) {
                    Ok(None) => {}
                    r => return Poll::Ready(r),
                }
                let start = self.precise();
                let d = match timeout {
                    Timeout::TryOnce => Deadline {
                        try_once: true,
                        at: start,
                    },
                    Timeout::Forever => Deadline {
                        try_once: false,
                        at: u64::MAX,
                    },
                    Timeout::For(t) => Deadline {
                        try_once: false,
                        at: start.saturating_add(t.as_nanos().min(u64::MAX as u128) as u64),
                    },
                };
                w.started = Some(d);
                d
            }
        };
        if deadline.try_once {
            return Poll::Ready(Ok(None));
        }
        if let Err(e) = self.intact(op) {
            return Poll::Ready(Err(e));
        }
        let now = self.precise();
        if now >= deadline.at {
            self.count(Counter::Timeouts, 1);
            return Poll::Ready(Err(Error::new(
                Status::Timeout,
                format!("{}: {op}: timed out", self.path.display()),
            )));
        }
        let (me, _) = match self.me(op) {
            Ok(x) => x,
            Err(e) => return Poll::Ready(Err(e)),
        };
        // Counted as a sleeper, as the blocking wait counts itself.
        let wp = engine.wait_point(point);
        let bit = point.sleeping_bit();
        let sleeping = engine.sleeping_word(me);
        let slot = slot_of(point);
        if self.async_sleepers[slot].fetch_add(1, std::sync::atomic::Ordering::AcqRel) == 0 {
            // Relaxed: read only by a cleaner after our death.
            sleeping.fetch_or(bit, Ordering::Relaxed);
        }
        let seen = wp.prepare();
        let counted = Counted::new(
            wp.sleepers_word(),
            sleeping,
            bit,
            self.async_sleepers.clone(),
            slot,
            engine.mem.keep_alive(),
        );
        // Again, now that a change made from here on wakes us.
        match attempt(now) {
            Ok(None) => {}
            r => {
                counted.release();
                return Poll::Ready(r);
            }
        }
        let left = Duration::from_nanos(deadline.at - now).min(self.beat(engine, point, now));
        let ticket = match waker::register(
            wp.futex_word(),
            seen,
            left,
            cx.waker().clone(),
            engine.mem.keep_alive(),
            Some(counted),
        ) {
            Ok(t) => t,
            Err(e) => return Poll::Ready(Err(self.err(op, e))),
        };
        let armed = Armed {
            ticket: Some(ticket),
            pid: sys::current_pid(),
        };
        w.armed = Some(armed);
        Poll::Pending
    }

    /// One try, and another after due maintenance if that repaired
    /// something.
    fn retry<T>(
        &self,
        now: u64,
        attempt: &mut impl FnMut(u64) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        if let Some(x) = attempt(now)? {
            return Ok(Some(x));
        }
        if self.maintain()? {
            return attempt(now);
        }
        Ok(None)
    }

    /// Polls a claim waiting as `timeout` says, with `w` the state of the
    /// wait (fresh for each claim): what [`Queue::claim_async`]'s future
    /// does at each poll, for a binding that keeps the state itself.
    pub fn poll_claim(
        &self,
        cx: &mut Context<'_>,
        w: &mut AsyncWait,
        timeout: Timeout,
    ) -> Poll<Result<Message<'_>>> {
        let r = self.poll_claim_unchecked(cx, w, timeout);
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => Poll::Ready(self.checked("claim", r)),
        }
    }

    fn poll_claim_unchecked(
        &self,
        cx: &mut Context<'_>,
        w: &mut AsyncWait,
        timeout: Timeout,
    ) -> Poll<Result<Message<'_>>> {
        let (me, engine) = match self.me("claim") {
            Ok(x) => x,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let mut at = 0;
        let got = self.poll_wait(cx, w, Point::NotEmpty, timeout, "claim", |now| {
            at = now;
            self.claim_once(engine, me, now)
        });
        match got {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(c))) => {
                self.tick(at);
                Poll::Ready(Ok(self.claimed(c, at)))
            }
            Poll::Ready(Ok(None)) => {
                Poll::Ready(Err(Error::new(Status::Empty, self.empty_msg.clone())))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.err_once("claim", e))),
        }
    }

    /// Polls a send waiting for room as `opts.timeout` says (see
    /// [`Queue::poll_claim`]).
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        w: &mut AsyncWait,
        data: &[u8],
        opts: &SendOptions,
    ) -> Poll<Result<Sent>> {
        let r = self.poll_send_unchecked(cx, w, data, opts);
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => Poll::Ready(self.checked("send", r)),
        }
    }

    fn poll_send_unchecked(
        &self,
        cx: &mut Context<'_>,
        w: &mut AsyncWait,
        data: &[u8],
        opts: &SendOptions,
    ) -> Poll<Result<Sent>> {
        let (me, engine) = match self.me("send") {
            Ok(x) => x,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(e) = self.check_len(data.len(), "send") {
            return Poll::Ready(Err(e));
        }
        let mut at = 0;
        let got = self.poll_wait(cx, w, Point::NotFull, opts.timeout, "send", |now| {
            at = now;
            let spec = self.send_spec(opts, now);
            engine.send(me, now, data, &spec, || self.stamp(now))
        });
        match got {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(c))) => Poll::Ready(Ok(self.committed(c, data.len(), at))),
            Poll::Ready(Ok(None)) => Poll::Ready(Err(self.full())),
            Poll::Ready(Err(e)) => {
                // As the blocking send: a reservation given back on the way
                // is room again.
                self.notify(Point::NotFull);
                Poll::Ready(Err(self.keyed_err("send", e)))
            }
        }
    }

    /// Claims the next message, waiting up to `timeout` without blocking
    /// the thread: the same meanings as [`Queue::claim`] (`Empty` when the
    /// timeout is zero and nothing is claimable, `Timeout` after waiting).
    /// The future is woken by the process's waker thread; dropping it
    /// takes its registration back. Any executor will do.
    pub fn claim_async(&self, timeout: impl Into<Timeout>) -> ClaimAsync<'_, &Queue> {
        ClaimAsync {
            q: Some(self),
            wait: AsyncWait::new(),
            timeout: timeout.into(),
            _q: std::marker::PhantomData,
        }
    }

    /// As [`Queue::claim_async`], holding the handle exclusively: the
    /// future is `Send`, for a multi-threaded runtime (the message it gives
    /// borrows the handle as the future did).
    pub fn claim_async_mut(&mut self, timeout: impl Into<Timeout>) -> ClaimAsync<'_, &mut Queue> {
        ClaimAsync {
            q: Some(self),
            wait: AsyncWait::new(),
            timeout: timeout.into(),
            _q: std::marker::PhantomData,
        }
    }

    /// Sends one message without a key, waiting for room up to `timeout`
    /// without blocking the thread (see [`Queue::send`]).
    pub fn send_async<'q, 'd>(
        &'q self,
        data: &'d [u8],
        timeout: impl Into<Timeout>,
    ) -> SendAsync<'q, 'd, &'q Queue> {
        self.send_with_async(data, SendOptions::new().timeout(timeout))
    }

    /// Sends one message with a key, version, timeout and delay, waiting
    /// for room without blocking the thread (see [`Queue::send_with`]).
    pub fn send_with_async<'q, 'd>(
        &'q self,
        data: &'d [u8],
        opts: SendOptions,
    ) -> SendAsync<'q, 'd, &'q Queue> {
        SendAsync {
            q: self,
            data,
            opts,
            wait: AsyncWait::new(),
            _q: std::marker::PhantomData,
        }
    }

    /// As [`Queue::send_with_async`], holding the handle exclusively: the
    /// future is `Send`.
    pub fn send_async_mut<'q, 'd>(
        &'q mut self,
        data: &'d [u8],
        opts: SendOptions,
    ) -> SendAsync<'q, 'd, &'q mut Queue> {
        SendAsync {
            q: self,
            data,
            opts,
            wait: AsyncWait::new(),
            _q: std::marker::PhantomData,
        }
    }
}

/// The handle a future holds: shared (`&Queue`, the future is not `Send`)
/// or exclusive (`&mut Queue`, it is).
pub trait HandleRef<'q>: Unpin + sealed::Sealed {
    /// The handle, shared, for the future's whole life.
    fn into_shared(self) -> &'q Queue;
    /// The handle, for one poll.
    fn get(&self) -> &Queue;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &super::Queue {}
    impl Sealed for &mut super::Queue {}
}

impl<'q> HandleRef<'q> for &'q Queue {
    fn into_shared(self) -> &'q Queue {
        self
    }
    fn get(&self) -> &Queue {
        self
    }
}

impl<'q> HandleRef<'q> for &'q mut Queue {
    fn into_shared(self) -> &'q Queue {
        self
    }
    fn get(&self) -> &Queue {
        self
    }
}

/// The future of [`Queue::claim_async`] and [`Queue::claim_async_mut`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct ClaimAsync<'q, H: HandleRef<'q>> {
    /// `None` once it gave its message.
    q: Option<H>,
    wait: AsyncWait,
    timeout: Timeout,
    _q: std::marker::PhantomData<&'q ()>,
}

impl<'q, H: HandleRef<'q>> Future for ClaimAsync<'q, H> {
    type Output = Result<Message<'q>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(h) = this.q.as_ref() else {
            return Poll::Ready(Err(Error::new(
                Status::InvalidArgument,
                "claim_async: polled after it completed",
            )));
        };
        let q = h.get();
        let r = match q.poll_claim(cx, &mut this.wait, this.timeout) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r.map(|m| (m.claim, m.claimed_ns)),
        };
        // The message borrows the handle for 'q, which the future holds
        // for that long: it gives it up now.
        let Some(q) = this.q.take().map(HandleRef::into_shared) else {
            unreachable!("checked above");
        };
        Poll::Ready(r.map(|(claim, claimed_ns)| Message {
            q,
            claim,
            claimed_ns,
        }))
    }
}

/// The future of [`Queue::send_async`] and its siblings.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SendAsync<'q, 'd, H: HandleRef<'q>> {
    q: H,
    data: &'d [u8],
    opts: SendOptions,
    wait: AsyncWait,
    _q: std::marker::PhantomData<&'q ()>,
}

impl<'q, H: HandleRef<'q>> Future for SendAsync<'q, '_, H> {
    type Output = Result<Sent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.q
            .get()
            .poll_send(cx, &mut this.wait, this.data, &this.opts)
    }
}
