//! Claiming one message (`Queue.claim`) and the message object: its
//! fields, its payload as a private copy, and its outcomes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyMemoryView};

use shmq::{Outcome, Status, Timeout};

use crate::args::{duration_arg, timeout_arg};
use crate::borrowed::Borrowed;
use crate::detach::Detached;
use crate::errors::{err, raise};
use crate::queue::{borrow, Queue, FORK_GENERATION};

#[pymethods]
impl Queue {
    /// Claims the next message, waiting up to ``timeout`` seconds (None =
    /// forever). Raises ``Empty`` (timeout 0) or ``Timeout``.
    #[pyo3(signature = (timeout=None))]
    fn claim(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Message> {
        let py = slf.py();
        let timeout = timeout_arg(py, timeout, "claim: timeout")?;
        let me = borrow(slf.get(), py, "claim")?;
        let q = me.handle(py)?;
        // Once with the GIL (a claim that finds a message does not wait),
        // then, if it may wait, waiting without the GIL.
        let mut r = q.claim(Timeout::TryOnce);
        if !matches!(timeout, Timeout::TryOnce)
            && matches!(&r, Err(e) if e.status() == Status::Empty)
        {
            let q = Detached(q);
            r = py.detach(move || Detached(q.get().claim(timeout))).get();
        }
        let m = r.map_err(|e| err(py, e))?;
        let claimed_ns = me.sample(m.claimed_ns());
        // The payload is copied when `data` is first read (or borrowed).
        Ok(Message::new(slf, &m, claimed_ns))
    }
}

/// A claimed message: ``data`` (bytes, a private copy checked for
/// tearing, made on first use and at the latest by the outcome unless the
/// payload was borrowed), ``key``, ``version``, ``deliveries`` (1 on the first
/// delivery), ``enqueued_ns``, ``position`` and ``token``. Give exactly one
/// outcome: :meth:`ack`, :meth:`nack` or :meth:`reject` (:meth:`extend` any
/// number of times before). As a context manager it acks on normal exit
/// and nacks when an exception leaves the block (unless an outcome was
/// given).
#[pyclass(module = "shmq", frozen)]
pub(crate) struct Message {
    pub(crate) queue: Py<Queue>,
    /// The private copy of the payload, once made (see `copy`). A std
    /// `OnceLock` (its set is a compare-and-swap) rather than a
    /// `PyOnceLock`: only ever set with the GIL held, never waited for.
    data: OnceLock<Py<PyBytes>>,
    /// The payload's length.
    pub(crate) len: usize,
    #[pyo3(get)]
    key: u64,
    #[pyo3(get)]
    version: u64,
    #[pyo3(get)]
    deliveries: u32,
    #[pyo3(get)]
    enqueued_ns: u64,
    #[pyo3(get)]
    position: u64,
    #[pyo3(get)]
    pub(crate) token: u64,
    /// The deadline (CLOCK_MONOTONIC ns) past which it is never delivered,
    /// or None.
    #[pyo3(get)]
    expires_ns: Option<u64>,
    /// When it was claimed (`CLOCK_MONOTONIC`, read once the claim was
    /// made) if the claim is sampled for the histograms, else 0 (see
    /// `Inner::sample`).
    claimed_ns: u64,
    /// An outcome was given through this object. Relaxed: read and written
    /// only with the GIL held, which orders the accesses.
    pub(crate) done: AtomicBool,
    /// The payload's address in the queue's mapping (null if not plain
    /// memory), for `borrow`.
    pub(crate) ptr: usize,
    /// The [`FORK_GENERATION`] of the claim: a forked child's copy of a
    /// message points into a mapping that is not the child's handle's.
    pub(crate) generation: u64,
    /// The borrowed view, once asked for: its exporter and the memoryview
    /// handed out.
    pub(crate) borrowed: PyOnceLock<(Py<Borrowed>, Py<PyMemoryView>)>,
}

impl Message {
    pub(crate) fn new(q: &Bound<'_, Queue>, m: &shmq::Message<'_>, claimed_ns: u64) -> Message {
        Message {
            queue: q.clone().unbind(),
            data: OnceLock::new(),
            len: m.len(),
            key: m.key(),
            version: m.version(),
            deliveries: m.deliveries(),
            enqueued_ns: m.enqueued_ns(),
            position: m.position(),
            token: m.token(),
            expires_ns: m.expires_ns(),
            claimed_ns,
            done: AtomicBool::new(false),
            ptr: m.payload_ptr() as usize,
            generation: FORK_GENERATION.load(Ordering::Relaxed),
            borrowed: PyOnceLock::new(),
        }
    }

    /// The private copy of the payload, made on first use: a checked copy
    /// out of the slot while the claim is held.
    fn copy(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        if let Some(d) = self.data.get() {
            return Ok(d.clone_ref(py));
        }
        let path = &self.queue.get().path;
        if self.done.load(Ordering::Relaxed) {
            let msg = format!(
                "{path}: data: the payload was borrowed and not read before the outcome (the \
                 slot is given back)"
            );
            return Err(raise(py, Status::LeaseLost, &msg));
        }
        if self.generation != FORK_GENERATION.load(Ordering::Relaxed) {
            let msg = format!("{path}: data: the message was claimed by the parent process");
            return Err(raise(py, Status::InvalidArgument, &msg));
        }
        let g = borrow(self.queue.get(), py, "data")?;
        let q = g.handle(py)?;
        let d = PyBytes::new_with(py, self.len, |buf| {
            q.read_payload(self.token, buf)
                .map(drop)
                .map_err(|e| err(py, e))
        })?;
        drop(g);
        let d = d.unbind();
        let _ = self.data.set(d.clone_ref(py));
        Ok(d)
    }

    /// What an outcome does first: the copy is made if the payload was
    /// not borrowed (so that `data` still answers after the outcome; a
    /// claim lost meanwhile is the outcome's error to report), then the
    /// borrowed view is released.
    pub(crate) fn before_outcome(&self, py: Python<'_>) -> PyResult<()> {
        if self.borrowed.get(py).is_some() {
            return self.release_view(py);
        }
        if self.data.get().is_none() {
            let _ = self.copy(py);
        }
        Ok(())
    }

    /// Releases the borrowed view before an outcome: the memoryview handed
    /// out is released (a later use raises ValueError) and the exporter
    /// takes no new export. `BufferError` (and no outcome) while a view made
    /// from it (a slice, a NumPy array) is still alive: its memory is the
    /// slot, which the outcome gives back.
    fn release_view(&self, py: Python<'_>) -> PyResult<()> {
        let Some((b, mv)) = self.borrowed.get(py) else {
            return Ok(());
        };
        let b = b.get();
        b.released.store(true, Ordering::Relaxed);
        mv.bind(py).call_method0("release")?;
        let n = b.exports.load(Ordering::Relaxed);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "{}: the payload's borrowed view is still in use by {n} view(s) made from it \
                 (slices, arrays): release them before the outcome",
                self.queue.get().path
            )));
        }
        Ok(())
    }

    /// The claim and enqueue times an outcome records, for a sampled
    /// claim only.
    pub(crate) fn times(&self) -> (Option<u64>, Option<u64>) {
        if self.claimed_ns == 0 {
            (None, None)
        } else {
            (Some(self.claimed_ns), Some(self.enqueued_ns))
        }
    }

    fn settle(&self, py: Python<'_>, op: &str, outcome: &Outcome<'_>) -> PyResult<()> {
        let me = borrow(self.queue.get(), py, op)?;
        let times = match outcome {
            Outcome::Extend { .. } => (None, None),
            _ => self.times(),
        };
        me.handle(py)?
            .settle(self.token, outcome, times.0, times.1)
            .map(drop)
            .map_err(|e| err(py, e))
    }
}

#[pymethods]
impl Message {
    /// Done: the message is deleted. Raises LeaseLost if the claim was
    /// lost meanwhile (it may be processed again elsewhere).
    fn ack(&self, py: Python<'_>) -> PyResult<()> {
        self.before_outcome(py)?;
        self.done.store(true, Ordering::Relaxed);
        self.settle(py, "ack", &Outcome::Ack)
    }

    /// Try again after ``delay`` seconds (a failed delivery: dead-lettered
    /// on the last of max_deliveries).
    #[pyo3(signature = (delay=None))]
    fn nack(&self, py: Python<'_>, delay: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let delay_ns = match delay {
            Some(d) => duration_arg(py, d, "nack: delay")?,
            None => 0,
        };
        self.before_outcome(py)?;
        self.done.store(true, Ordering::Relaxed);
        let not_before_ns = if delay_ns == 0 {
            0
        } else {
            shmq::monotonic_ns().saturating_add(delay_ns)
        };
        self.settle(py, "nack", &Outcome::Nack { not_before_ns })
    }

    /// Give up: the message goes to the dead letters with ``reason``.
    #[pyo3(signature = (reason="rejected"))]
    fn reject(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        self.before_outcome(py)?;
        self.done.store(true, Ordering::Relaxed);
        self.settle(py, "reject", &Outcome::Reject { reason })
    }

    /// Still working: the lease now ends ``lease`` seconds from now.
    fn extend(&self, py: Python<'_>, lease: &Bound<'_, PyAny>) -> PyResult<()> {
        let lease_ns = duration_arg(py, lease, "extend: lease")?;
        if lease_ns == 0 {
            let path = &self.queue.get().path;
            return Err(raise(
                py,
                Status::InvalidArgument,
                &format!("{path}: extend: the lease is 0"),
            ));
        }
        let deadline_ns = shmq::monotonic_ns().saturating_add(lease_ns);
        self.settle(py, "extend", &Outcome::Extend { deadline_ns })
    }

    /// A claim is this process's, on this handle: it cannot be pickled.
    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "a shmq.Message cannot be pickled: its claim belongs to the process and the Queue \
             that claimed it; send its data (bytes) instead, and give its outcome here",
        ))
    }

    /// Whether an outcome was given through this object.
    #[getter]
    fn settled(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// The payload as bytes: a private copy, checked for tearing, made on
    /// first use (and by the outcome, unless the payload was borrowed).
    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        self.copy(py)
    }

    /// The payload as a memoryview (of the private copy).
    #[getter]
    fn view<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyMemoryView>> {
        PyMemoryView::from(self.copy(py)?.bind(py).as_any())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if self.done.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if exc_type.is_none_or(|t| t.is_none()) {
            self.ack(py)?;
        } else {
            // The exception leaving the block is the one that matters.
            let _ = self.nack(py, None);
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmq.Message position={} len={} key={} version={} deliveries={}>",
            self.position, self.len, self.key, self.version, self.deliveries
        )
    }
}
