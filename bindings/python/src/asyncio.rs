//! asyncio: the polls behind `claim_async` and `send_async`.
//!
//! The package tries once without waiting (`_claim_try`, `_send_try`),
//! then polls (`_claim_poll`, `_send_poll`) with an `AsyncWait` and a
//! future of its event loop: a poll that must wait registers with the
//! engine's waker thread, which resolves the future through the loop's
//! `call_soon_threadsafe` once the queue changed, and the package polls
//! again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pyo3::prelude::*;

use shmq::{SendOptions, Status, Timeout};

use crate::args::payload;
use crate::claim::Message;
use crate::errors::err;
use crate::queue::{borrow, Queue};

/// The state of one async claim or send, from its first poll to its end:
/// while it waits, its place in the queue's sleeper count and its
/// registration with the engine's waker thread. `release` (or the object's
/// end) gives both back, so a cancelled `claim_async` leaves nothing behind.
#[pyclass(module = "shmq._native", frozen)]
pub(crate) struct AsyncWait {
    w: Mutex<shmq::AsyncWait>,
}

impl AsyncWait {
    fn lock(&self) -> MutexGuard<'_, shmq::AsyncWait> {
        self.w.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl AsyncWait {
    #[new]
    fn new() -> Self {
        AsyncWait {
            w: Mutex::new(shmq::AsyncWait::new()),
        }
    }

    /// Gives back the registration, if any (the wait is over).
    fn release(&self) {
        // The waker thread never takes the GIL while it holds its own lock
        // (it wakes outside it), so taking that lock here with the GIL held
        // cannot deadlock.
        drop(std::mem::take(&mut *self.lock()));
    }

    /// Whether it holds a registration (for tests).
    #[getter]
    fn armed(&self) -> bool {
        self.lock().is_armed()
    }
}

/// Wakes an asyncio future from the engine's waker thread:
/// `call_soon(wake, fut)` with `call_soon` the loop's
/// `call_soon_threadsafe`. Takes the GIL (the waker thread holds no lock of
/// the engine's meanwhile).
struct PyWake {
    call_soon: Py<PyAny>,
    wake: Py<PyAny>,
    fut: Py<PyAny>,
}

impl std::task::Wake for PyWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Not while the interpreter shuts down (nobody waits any more).
        Python::try_attach(|py| {
            // A closed loop raises: nobody waits any more.
            let _ = self
                .call_soon
                .call1(py, (self.wake.clone_ref(py), self.fut.clone_ref(py)));
        });
    }
}

fn py_waker(call_soon: Py<PyAny>, wake: Py<PyAny>, fut: Py<PyAny>) -> Waker {
    Waker::from(Arc::new(PyWake {
        call_soon,
        wake,
        fut,
    }))
}

#[pymethods]
impl Queue {
    /// A claim that does not wait: the message, or None when there is
    /// none (the fast path of ``claim_async``, without an exception).
    fn _claim_try(slf: &Bound<'_, Self>) -> PyResult<Option<Message>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "claim")?;
        let q = me.handle(py)?;
        match q.claim(Timeout::TryOnce) {
            Ok(m) => {
                let claimed_ns = me.sample(m.claimed_ns());
                Ok(Some(Message::new(slf, &m, claimed_ns)))
            }
            Err(e) if e.status() == Status::Empty => Ok(None),
            Err(e) => Err(err(py, e)),
        }
    }

    /// A send that does not wait: the version sent, or None when the queue
    /// is full (the fast path of ``send_async``, without an exception).
    fn _send_try(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        key: u64,
        version: u64,
        delay_ns: u64,
        ttl_ns: u64,
    ) -> PyResult<Option<u64>> {
        let py = slf.py();
        let data = payload(data)?;
        let me = borrow(slf.get(), py, "send")?;
        let q = me.handle(py)?;
        let opts = SendOptions {
            key,
            version,
            timeout: Timeout::TryOnce,
            delay: Duration::from_nanos(delay_ns),
            // 0: the queue's default, as `send`'s.
            ttl: Duration::from_nanos(ttl_ns),
        };
        match q.send_with(data.bytes(), &opts) {
            Ok(s) => Ok(Some(s.version)),
            Err(e) if e.status() == Status::Full => Ok(None),
            Err(e) => Err(err(py, e)),
        }
    }

    /// One poll of an async claim (``claim_async`` in the package): the
    /// message, or None when it must wait, in which case the engine's
    /// waker thread calls ``call_soon(wake, fut)`` once the queue changed
    /// or a bounded time passed, and the package polls again with the same
    /// ``wait``. Raises ``Empty`` (timeout 0) or ``Timeout`` as ``claim``.
    fn _claim_poll(
        slf: &Bound<'_, Self>,
        wait: &Bound<'_, AsyncWait>,
        timeout_ns: i64,
        call_soon: Py<PyAny>,
        wake: Py<PyAny>,
        fut: Py<PyAny>,
    ) -> PyResult<Option<Message>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "claim")?;
        let q = me.handle(py)?;
        let waker = py_waker(call_soon, wake, fut);
        let mut cx = Context::from_waker(&waker);
        let mut w = wait.get().lock();
        match q.poll_claim(&mut cx, &mut w, Timeout::from_nanos(timeout_ns)) {
            Poll::Pending => Ok(None),
            Poll::Ready(Ok(m)) => {
                let claimed_ns = me.sample(m.claimed_ns());
                Ok(Some(Message::new(slf, &m, claimed_ns)))
            }
            Poll::Ready(Err(e)) => Err(err(py, e)),
        }
    }

    /// One poll of an async send (``send_async`` in the package), as
    /// ``_claim_poll``: the version sent, or None when it must wait for
    /// room.
    #[allow(clippy::too_many_arguments)]
    fn _send_poll(
        slf: &Bound<'_, Self>,
        wait: &Bound<'_, AsyncWait>,
        data: &Bound<'_, PyAny>,
        key: u64,
        version: u64,
        timeout_ns: i64,
        delay_ns: u64,
        ttl_ns: u64,
        call_soon: Py<PyAny>,
        wake: Py<PyAny>,
        fut: Py<PyAny>,
    ) -> PyResult<Option<u64>> {
        let py = slf.py();
        let data = payload(data)?;
        let me = borrow(slf.get(), py, "send")?;
        let q = me.handle(py)?;
        let opts = SendOptions {
            key,
            version,
            timeout: Timeout::from_nanos(timeout_ns),
            delay: Duration::from_nanos(delay_ns),
            // 0: the queue's default, as `send`'s.
            ttl: Duration::from_nanos(ttl_ns),
        };
        let waker = py_waker(call_soon, wake, fut);
        let mut cx = Context::from_waker(&waker);
        let mut w = wait.get().lock();
        match q.poll_send(&mut cx, &mut w, data.bytes(), &opts) {
            Poll::Pending => Ok(None),
            Poll::Ready(r) => r.map(|s| Some(s.version)).map_err(|e| err(py, e)),
        }
    }
}
