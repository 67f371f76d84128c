//! `shmq._native`: the extension module under the `shmq` Python package,
//! over the engine's Rust API (crate `shmq`).
//!
//! The package (`python/shmq/__init__.py`) is the public API; this module
//! holds what must be fast or must hold the engine's handle:
//!
//! - `Queue`, the base class of `shmq.Queue`: one attachment to a queue
//!   file. `send`, `claim` and `ack` are called straight from Python (no
//!   Python frame in between: the single-message loop is three calls into
//!   Rust); the batch and admin calls take plain integers (nanoseconds)
//!   from the package, which checks and converts its arguments.
//! - `Message`, which is `shmq.Message`: a claimed message, its outcomes,
//!   and its payload as a private copy (checked for tearing, made on first
//!   use) or borrowed without a copy (`Borrowed`, a buffer of the mapping
//!   released by the outcome).
//!
//! Errors are raised as the package's exception classes (one per status),
//! which the package hands over once with `_init`. Conversions of timeouts
//! and durations that are not a plain non-negative number in range go
//! back to the package's helpers, so that every odd value is refused (or
//! taken for "forever") with the same message however it arrives.
//!
//! Threads: a `Queue` is used by one thread at a time. Each call holds
//! the object's lock for its duration (taken with `try_lock`); a second
//! thread that calls into it meanwhile gets `Closed` ("in use by another
//! thread"), as the C ABI's handles do. A call that may wait releases the
//! GIL while it waits.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyMemoryView, PyTuple, PyType};

use shmq::{
    Access, Counter, Histogram, OpenOptions, Options, Outcome, SendOptions, Status, Timeout,
    WaitStrategy,
};

/// The package's exception classes, indexed by status code.
static ERRORS: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();
/// The package's `_ns(value, what)` and `_duration_ns(value, what)`.
static HELPERS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// How many times this process is a `fork()` away from the one that
/// imported the module: bumped in the child by `_forked`, which the
/// package registers with `os.register_at_fork`. A `Queue` remembers the
/// value it was opened under; a call that finds another one is in a
/// forked child and opens the child's own handle first (see [`borrow`]).
/// Relaxed: bumped and read with the GIL held, in a child that has one
/// thread at that point.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// How a queue was opened, to open it again in a forked child or in the
/// process that unpickles it: the access (0 participant, 1 inspect, 2
/// read-only) and the checks on the file's owner and mode.
#[derive(Clone, Copy)]
struct Reopen {
    access: u32,
    group_shared: bool,
    trust_any_owner: bool,
}

impl Reopen {
    fn open(self, py: Python<'_>, path: &str) -> PyResult<shmq::Queue> {
        let access = match self.access {
            0 => Access::Participant,
            1 => Access::Inspect,
            _ => Access::ReadOnly,
        };
        let o = OpenOptions::new()
            .access(access)
            .group_shared(self.group_shared)
            .trust_any_owner(self.trust_any_owner);
        shmq::Queue::open_with(path, &o).map_err(|e| err(py, e))
    }
}

/// The largest timeout in nanoseconds (an `int64_t` in the C API): longer
/// ones wait forever.
const I64_MAX_F: f64 = i64::MAX as f64;
/// The largest duration in nanoseconds (a `uint64_t`).
const U64_MAX_F: f64 = u64::MAX as f64;

/// A shmq error as the package's exception: `cls(message, status)`.
fn raise(py: Python<'_>, status: Status, message: &str) -> PyErr {
    match ERRORS.get(py).and_then(|v| v.get(status as usize)) {
        Some(cls) => PyErr::from_type(cls.bind(py).clone(), (message.to_owned(), status as i64)),
        None => PyRuntimeError::new_err(format!("{}: {message}", status.name())),
    }
}

fn err(py: Python<'_>, e: shmq::Error) -> PyErr {
    raise(py, e.status(), e.message())
}

/// A value moved into a closure that runs while the GIL is released.
///
/// `Python::detach` runs the closure on this same thread; its `Send`
/// bound keeps GIL-bound references out of it. What is wrapped here is
/// either a borrow of the engine's handle (used by no other thread: the
/// call holds the `Queue`'s lock throughout) or bytes kept alive and
/// unchanged by a `bytes` object held by the caller.
struct Detached<T>(T);
// SAFETY: see the type's comment: the value is only used on this thread,
// by a call that holds the only borrow of what it points to.
unsafe impl<T> Send for Detached<T> {}

impl<T> Detached<T> {
    /// The value. A method, so that a closure captures the whole wrapper
    /// (which is `Send`) rather than its field.
    fn get(self) -> T {
        self.0
    }
}

/// Runs `f` with the GIL released when it may wait (`timeout` is not
/// "try once"), with the GIL held otherwise (releasing it costs more than
/// a call that cannot wait).
fn maybe_detached<R>(py: Python<'_>, timeout: Timeout, f: impl FnOnce() -> R) -> R {
    if matches!(timeout, Timeout::TryOnce) {
        f()
    } else {
        let f = Detached(f);
        let r = py.detach(move || Detached(f.get()()));
        r.get()
    }
}

/// A timeout in seconds (`None` = forever, 0 = try once). Plain
/// non-negative numbers in range are converted here; anything else goes
/// to the package's `_ns`, which refuses it or says "forever".
fn timeout_arg(py: Python<'_>, v: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Timeout> {
    let Some(v) = v else {
        return Ok(Timeout::Forever);
    };
    if v.is_none() {
        return Ok(Timeout::Forever);
    }
    let secs = if let Ok(f) = v.cast_exact::<PyFloat>() {
        Some(f.value())
    } else if let Ok(i) = v.cast_exact::<PyInt>() {
        i.extract::<i64>().ok().map(|i| i as f64)
    } else {
        None
    };
    match secs {
        Some(0.0) => return Ok(Timeout::TryOnce),
        Some(s) if s > 0.0 && s * 1e9 <= I64_MAX_F => {
            let ns = ((s * 1e9) as u64).max(1);
            return Ok(Timeout::For(Duration::from_nanos(ns)));
        }
        _ => {}
    }
    let ns: i64 = helper(py, 0)?.call1((v, what))?.extract()?;
    Ok(Timeout::from_nanos(ns))
}

/// A duration in seconds as nanoseconds (0 = none); like [`timeout_arg`],
/// the odd values go to the package's `_duration_ns`.
fn duration_arg(py: Python<'_>, v: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let secs = if let Ok(f) = v.cast_exact::<PyFloat>() {
        Some(f.value())
    } else if let Ok(i) = v.cast_exact::<PyInt>() {
        i.extract::<i64>().ok().map(|i| i as f64)
    } else {
        None
    };
    match secs {
        Some(0.0) => return Ok(0),
        Some(s) if s > 0.0 && s * 1e9 < U64_MAX_F => return Ok(((s * 1e9) as u64).max(1)),
        _ => {}
    }
    helper(py, 1)?.call1((v, what))?.extract()
}

/// A key or version: an int from 0 to 2**64 - 1 (absent: 0), else
/// InvalidArgument naming `what` (never wrapped around).
fn u64_arg(py: Python<'_>, v: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<u64> {
    match v {
        None => Ok(0),
        Some(v) => v.extract::<u64>().map_err(|_| {
            let msg = format!("{what} must be an int from 0 to 2**64 - 1, not {v}");
            raise(py, Status::InvalidArgument, &msg)
        }),
    }
}

fn helper(py: Python<'_>, which: usize) -> PyResult<&Bound<'_, PyAny>> {
    let h = HELPERS
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("shmq._native: _init was not called"))?;
    Ok(if which == 0 {
        h.0.bind(py)
    } else {
        h.1.bind(py)
    })
}

/// Bytes to send: borrowed from a `bytes` object, else copied out of the
/// buffer (a `bytearray` or writable memoryview may change under a call
/// that released the GIL; a copy cannot).
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Copied(Vec<u8>),
}

impl Payload<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Copied(v) => v,
        }
    }
}

fn payload<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<Payload<'a>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Payload::Borrowed(b.as_bytes()));
    }
    let buf = PyUntypedBuffer::get(data)?;
    if buf.len_bytes() == 0 {
        // An empty buffer's pointer may be null: nothing to copy from it.
        return Ok(Payload::Copied(Vec::new()));
    }
    if buf.is_c_contiguous() {
        let mut v = vec![0u8; buf.len_bytes()];
        // SAFETY: a C-contiguous buffer of len_bytes() bytes at buf_ptr(),
        // exported (so neither freed nor resized) while `buf` lives; the
        // GIL is held, so no Python code writes it during the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.buf_ptr().cast::<u8>(), v.as_mut_ptr(), v.len())
        };
        return Ok(Payload::Copied(v));
    }
    // Not contiguous: what memoryview(data).tobytes() gives.
    let b = PyMemoryView::from(data)?.call_method0("tobytes")?;
    Ok(Payload::Copied(b.cast::<PyBytes>()?.as_bytes().to_vec()))
}

/// What a call into a `Queue` works on, behind the queue's lock: the
/// engine's handle (`None` once closed) and the packed calls' buffer.
struct Inner {
    q: Option<shmq::Queue>,
    /// The path as given, for the errors of a closed queue.
    path: String,
    /// Reused by the packed calls.
    scratch: Vec<u8>,
    /// Claims made, for the sampling of processing times (cells: counted
    /// while the engine's handle is borrowed from this struct).
    claims: Cell<u64>,
    /// The claim time of the last sampled claim.
    last_sample_ns: Cell<u64>,
    /// The [`FORK_GENERATION`] the handle in `q` was opened under.
    generation: u64,
}

/// One claim in this many is timed precisely for the processing-time and
/// end-to-end histograms (as the engine samples its own), and every claim
/// that comes more than [`SAMPLE_GAP_NS`] after the last sampled one.
const SAMPLE_EVERY: u64 = 16;
/// See [`SAMPLE_EVERY`]: slow queues are timed fully, fast ones cheaply.
const SAMPLE_GAP_NS: u64 = 1_000_000;

impl Inner {
    /// The precise claim time of a claim made at `coarse_ns` (the
    /// engine's claim time), or 0 when this claim is not sampled.
    ///
    /// The engine times precisely only the claims it samples, and which
    /// ones those are is not part of its API; its claim time of the others
    /// is the coarse clock, up to a scheduler tick behind, too coarse to
    /// time a claim that lasts microseconds. So the binding samples its
    /// claims itself and reads the clock for those only.
    fn sample(&self, coarse_ns: u64) -> u64 {
        let n = self.claims.get().wrapping_add(1);
        self.claims.set(n);
        if n % SAMPLE_EVERY != 0
            && coarse_ns < self.last_sample_ns.get().saturating_add(SAMPLE_GAP_NS)
        {
            return 0;
        }
        self.last_sample_ns.set(coarse_ns);
        shmq::monotonic_ns()
    }

    /// The engine's handle; `Closed` once closed.
    fn handle(&self, py: Python<'_>) -> PyResult<&shmq::Queue> {
        let path = &self.path;
        self.q
            .as_ref()
            .ok_or_else(|| raise(py, Status::Closed, &format!("{path}: the queue was closed")))
    }
}

/// The state of one async claim or send, from its first poll to its end:
/// while it waits, its place in the queue's sleeper count and its
/// registration with the engine's waker thread. `release` (or the object's
/// end) gives both back, so a cancelled `claim_async` leaves nothing behind.
#[pyclass(module = "shmq._native", frozen)]
struct AsyncWait {
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

/// An open queue, moved from `open`/`create` into the `Queue` object.
#[pyclass(module = "shmq._native", frozen)]
struct Handle {
    q: Mutex<Option<shmq::Queue>>,
    reopen: Reopen,
}

/// One attachment to a queue file: the base class of `shmq.Queue`.
///
/// The engine's handle is used by one thread at a time (`shmq::Queue` is
/// `Send`, not `Sync`): it sits behind a lock that a call takes with
/// `try_lock` for its whole duration, so a second thread calling in
/// meanwhile gets `Closed` instead of waiting. What never changes after
/// open (the path and the parameters) is read without the lock.
#[pyclass(module = "shmq._native", subclass, frozen)]
struct Queue {
    inner: Mutex<Inner>,
    /// Cleared by `close`, so that `closed` answers without the lock.
    /// Relaxed: written and read with the GIL held, which orders them.
    open: AtomicBool,
    /// The path as given.
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    capacity: u64,
    #[pyo3(get)]
    max_message_size: u64,
    #[pyo3(get)]
    key_capacity: u64,
    /// The lease in seconds.
    #[pyo3(get)]
    lease: f64,
    #[pyo3(get)]
    max_deliveries: u32,
    #[pyo3(get)]
    latest_only: bool,
    /// True for a read-only handle: mapped read-only, never writes the
    /// file; every change raises PermissionDenied.
    #[pyo3(get)]
    read_only: bool,
    /// How to open the file again (a forked child, an unpickled copy).
    reopen: Reopen,
    /// Buffers exported by the messages' borrowed views (`Message.borrow`)
    /// that point into this handle's mapping: while there are any, `close`
    /// refuses, and a forked child never unmaps the inherited mapping.
    /// Relaxed: counted and read with the GIL held.
    exports: AtomicUsize,
}

/// The lock of `q` for one call; `Closed` when another thread is inside.
///
/// In a process forked from the one that opened the handle, the handle is
/// the parent's participant (the engine refuses every call through it and
/// leaves the file alone when it is dropped): the child's own handle is
/// opened here, on the first call, with the options of the first, and the
/// inherited one dropped. The parent's claims stay the parent's.
fn borrow<'a>(q: &'a Queue, py: Python<'_>, op: &str) -> PyResult<MutexGuard<'a, Inner>> {
    let mut g = lock(q, py, op)?;
    let now = FORK_GENERATION.load(Ordering::Relaxed);
    if g.generation != now {
        if let Some(old) = g.q.take() {
            if q.exports.load(Ordering::Relaxed) > 0 {
                // Views inherited from the parent still point into its
                // mapping: keep it mapped in this process.
                std::mem::forget(old);
            }
            // Otherwise dropped here: the engine leaves the file alone for
            // a handle copied by fork().
            g.q = Some(q.reopen.open(py, &q.path)?);
        }
        g.generation = now;
    }
    Ok(g)
}

/// The lock of `q`, as [`borrow`] without the reopening after a fork.
#[inline]
fn lock<'a>(q: &'a Queue, py: Python<'_>, op: &str) -> PyResult<MutexGuard<'a, Inner>> {
    match q.inner.try_lock() {
        Ok(g) => Ok(g),
        // A panic inside the engine poisoned the lock: the handle is
        // still whole (the engine's state is in the file, checked by every
        // call).
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        Err(TryLockError::WouldBlock) => Err(raise(
            py,
            Status::Closed,
            &format!(
                "{}: {op}: the queue is in use by another thread (use one Queue per thread)",
                q.path
            ),
        )),
    }
}

#[pymethods]
impl Queue {
    #[new]
    fn new(handle: &Bound<'_, Handle>, path: String) -> PyResult<Queue> {
        let py = handle.py();
        let reopen = handle.get().reopen;
        let q = handle
            .get()
            .q
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("shmq._native: a handle is used once"))?;
        // The parameters as stored in the file's header (the layout's
        // field is hidden from the engine's docs: the command line reads
        // it the same way).
        let p = q.info().layout.params;
        q.check_intact("open").map_err(|e| err(py, e))?;
        Ok(Queue {
            capacity: p.capacity,
            max_message_size: p.max_message_size,
            key_capacity: p.key_capacity,
            lease: q.lease().as_nanos() as f64 / 1e9,
            max_deliveries: q.max_deliveries(),
            latest_only: q.latest_only(),
            read_only: q.read_only(),
            open: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                q: Some(q),
                path: path.clone(),
                scratch: Vec::new(),
                claims: Cell::new(0),
                last_sample_ns: Cell::new(0),
                generation: FORK_GENERATION.load(Ordering::Relaxed),
            }),
            path,
            reopen,
            exports: AtomicUsize::new(0),
        })
    }

    /// Detaches; idempotent. Claims still held are redelivered at once.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        // Not `borrow`: a forked child that never used the queue has no
        // handle of its own to open just to close it.
        let mut g = lock(slf.get(), slf.py(), "close")?;
        let views = slf.get().exports.load(Ordering::Relaxed);
        if views > 0 && g.q.is_some() {
            return Err(PyBufferError::new_err(format!(
                "{}: close: {views} view(s) of claimed payloads (Message.borrow()) are still in \
                 use: release them (or give the messages their outcomes) first",
                slf.get().path
            )));
        }
        let q = g.q.take();
        drop(g);
        slf.get().open.store(false, Ordering::Relaxed);
        drop(q);
        Ok(())
    }

    /// How the queue was opened, for pickling: `(access,
    /// group_shared, trust_any_owner)` as `open` takes them.
    #[getter]
    fn _reopen_args(&self) -> (u32, bool, bool) {
        let r = self.reopen;
        (r.access, r.group_shared, r.trust_any_owner)
    }

    /// Whether the queue was closed.
    #[getter]
    fn closed(&self) -> bool {
        !self.open.load(Ordering::Relaxed)
    }

    /// Sends one message (bytes, bytearray or memoryview). Waits for room
    /// up to ``timeout`` seconds (None = forever). ``key`` 0 is no key;
    /// ``version`` 0 on a keyed send is the key's next version. Returns the
    /// version the message carries. ``ttl`` (seconds) is the message's time
    /// to live (None: the queue's default).
    #[pyo3(signature = (data, key=None, version=None, timeout=None, *, delay=None, ttl=None))]
    fn send(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        key: Option<&Bound<'_, PyAny>>,
        version: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        delay: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let py = slf.py();
        let ttl_ns = match ttl {
            Some(t) if !t.is_none() => duration_arg(py, t, "send: ttl")?,
            _ => 0,
        };
        let key = u64_arg(py, key, "send: key")?;
        let version = u64_arg(py, version, "send: version")?;
        let timeout = timeout_arg(py, timeout, "send: timeout")?;
        let delay_ns = match delay {
            Some(d) => duration_arg(py, d, "send: delay")?,
            None => 0,
        };
        let data = payload(data)?;
        let me = borrow(slf.get(), py, "send")?;
        let q = me.handle(py)?;
        let opts = SendOptions {
            key,
            version,
            timeout,
            delay: Duration::from_nanos(delay_ns),
            ttl: Duration::from_nanos(ttl_ns),
        };
        let bytes = Detached((q, data.bytes()));
        let r = maybe_detached(py, timeout, move || {
            let (q, b) = bytes.get();
            q.send_with(b, &opts)
        });
        r.map(|s| s.version).map_err(|e| err(py, e))
    }

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
            // The queue's default (the async send takes no ttl yet).
            ttl: Duration::ZERO,
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
            // The queue's default (the async send takes no ttl yet).
            ttl: Duration::ZERO,
        };
        let waker = py_waker(call_soon, wake, fut);
        let mut cx = Context::from_waker(&waker);
        let mut w = wait.get().lock();
        match q.poll_send(&mut cx, &mut w, data.bytes(), &opts) {
            Poll::Pending => Ok(None),
            Poll::Ready(r) => r.map(|s| Some(s.version)).map_err(|e| err(py, e)),
        }
    }

    /// Claims up to ``count`` messages (``count`` > 0, timeout in ns as the
    /// C API counts it): a list of Message.
    fn _claim_many(slf: &Bound<'_, Self>, count: usize, timeout_ns: i64) -> PyResult<Vec<Message>> {
        let py = slf.py();
        let timeout = Timeout::from_nanos(timeout_ns);
        let me = borrow(slf.get(), py, "claim_many")?;
        let q = me.handle(py)?;
        let mut got = Vec::new();
        let mut r = q.claim_batch_into(count, Timeout::TryOnce, &mut got);
        if !matches!(timeout, Timeout::TryOnce)
            && matches!(&r, Err(e) if e.status() == Status::Empty)
        {
            let w = Detached((q, &mut got));
            r = py
                .detach(move || {
                    let (q, got) = w.get();
                    Detached(q.claim_batch_into(count, timeout, got))
                })
                .get();
        }
        r.map_err(|e| err(py, e))?;
        let mut out = Vec::with_capacity(got.len());
        for m in &got {
            let claimed_ns = me.sample(m.claimed_ns());
            out.push(Message::new(slf, m, claimed_ns));
        }
        Ok(out)
    }

    /// Acks every message not yet settled; returns how many were acked (a
    /// message whose lease was lost is skipped). Messages claimed through
    /// another Queue raise InvalidArgument, and none is acked.
    fn ack_many(slf: &Bound<'_, Self>, messages: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        let mut todo = Vec::new();
        for m in messages.try_iter()? {
            let m = m?;
            let m = m.cast::<Message>()?.clone();
            if m.get().done.load(Ordering::Relaxed) {
                continue;
            }
            if !m.get().queue.bind(py).is(slf) {
                let path = &slf.get().path;
                return Err(raise(
                    py,
                    Status::InvalidArgument,
                    &format!(
                        "{path}: ack_many: a message was claimed through another handle (Queue)"
                    ),
                ));
            }
            todo.push(m);
        }
        if todo.is_empty() {
            return Ok(0);
        }
        let me = borrow(slf.get(), py, "ack_many")?;
        let q = me.handle(py)?;
        for m in &todo {
            m.get().before_outcome(py)?;
        }
        let mut acked = 0;
        for m in &todo {
            m.get().done.store(true, Ordering::Relaxed);
        }
        for m in &todo {
            let m = m.get();
            let (claimed, enqueued) = m.times();
            match q.settle(m.token, &Outcome::Ack, claimed, enqueued) {
                Ok(_) => acked += 1,
                Err(e) if e.status() == Status::LeaseLost => {}
                Err(e) => return Err(err(py, e)),
            }
        }
        Ok(acked)
    }

    /// Sends the messages packed in `data`: each `size` bytes long when
    /// `lens` is None, else message i is `lens[i]` bytes (checked by the
    /// package: they add up to the length of `data`). Sends in batches
    /// until all are sent or `timeout_ns` has passed (-1: never; 0: what
    /// fits now); returns how many were sent.
    fn _send_packed(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        size: usize,
        lens: Option<Vec<usize>>,
        timeout_ns: i64,
    ) -> PyResult<usize> {
        let py = slf.py();
        let data = payload(data)?;
        let bytes = data.bytes();
        let mut slices: Vec<&[u8]> = Vec::new();
        match lens {
            Some(lens) => {
                let mut at = 0usize;
                for n in lens {
                    let end = at.checked_add(n).filter(|&e| e <= bytes.len());
                    let Some(end) = end else {
                        return Err(raise(
                            py,
                            Status::InvalidArgument,
                            "send_packed: the sizes exceed the data",
                        ));
                    };
                    slices.push(&bytes[at..end]);
                    at = end;
                }
            }
            None if size > 0 => slices.extend(bytes.chunks(size)),
            None => {}
        }
        let me = borrow(slf.get(), py, "send_packed")?;
        let q = me.handle(py)?;
        let deadline =
            (timeout_ns > 0).then(|| shmq::monotonic_ns().saturating_add(timeout_ns as u64));
        let w = Detached((q, &slices[..]));
        let r = py.detach(move || {
            let (q, slices) = w.get();
            let mut sent = 0usize;
            while sent < slices.len() {
                let t = match (timeout_ns, deadline) {
                    (0, _) => Timeout::TryOnce,
                    (_, None) => Timeout::Forever,
                    (_, Some(d)) => {
                        let now = shmq::monotonic_ns();
                        if now >= d {
                            Timeout::TryOnce
                        } else {
                            Timeout::For(Duration::from_nanos(d - now))
                        }
                    }
                };
                match q.send_batch(&slices[sent..], t) {
                    Ok(n) => sent += n,
                    Err(e) if matches!(e.status(), Status::Full | Status::Timeout) => break,
                    Err(e) => return Detached(Err(e)),
                }
                if matches!(t, Timeout::TryOnce) && sent < slices.len() {
                    // Sent what fit now (or the deadline has passed).
                    if timeout_ns == 0 || deadline.is_some_and(|d| shmq::monotonic_ns() >= d) {
                        break;
                    }
                }
            }
            Detached(Ok(sent))
        });
        r.get().map_err(|e| err(py, e))
    }

    /// Claims up to `count` messages, copies their payloads one after
    /// another and acks them all: `(data, lengths)`.
    ///
    /// The whole batch is one engine call made without the GIL (its cost
    /// is spread over the batch): claim, checked copy into the reused
    /// scratch buffer (grown once to `count` messages of the largest size,
    /// never cleared), ack. Then one `bytes` of what was copied and the
    /// lengths; a length of at most 256 is a cached small int, so the list
    /// costs no allocation per message.
    fn _take_packed<'py>(
        slf: &Bound<'py, Self>,
        count: usize,
        timeout_ns: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<usize>)> {
        let py = slf.py();
        let timeout = Timeout::from_nanos(timeout_ns);
        let max = slf.get().max_message_size as usize;
        let mut me = borrow(slf.get(), py, "take_packed")?;
        let mut scratch = std::mem::take(&mut me.scratch);
        let q = me.handle(py)?;
        // Room for a whole batch of the largest messages; a call asking for
        // more than fits in memory is refused rather than aborting.
        let want = count.checked_mul(max).filter(|&n| n <= isize::MAX as usize);
        let Some(want) = want else {
            me.scratch = scratch;
            let msg = format!(
                "{}: take_packed: count {count} is too large",
                slf.get().path
            );
            return Err(raise(py, Status::InvalidArgument, &msg));
        };
        if scratch.len() < want {
            scratch.resize(want, 0);
        }
        let w = Detached((q, &mut scratch));
        let r = py.detach(move || {
            let (q, scratch) = w.get();
            let mut got = Vec::new();
            let r = (|| {
                q.claim_batch_into(count, timeout, &mut got)?;
                let mut lens = Vec::with_capacity(got.len());
                let mut at = 0;
                for m in &got {
                    if scratch.len() < at + m.len() {
                        // Never for a sound file (a message is at most
                        // max_message_size): grown rather than trusted.
                        scratch.resize(at + m.len(), 0);
                    }
                    match m.read_into(&mut scratch[at..at + m.len()]) {
                        Ok(n) => {
                            at += n;
                            lens.push(n);
                        }
                        // The claim ran out during the copy: the message is
                        // someone else's now (the ack below skips it); the
                        // others are still ours to hand over and ack.
                        Err(e) if e.status() == Status::LeaseLost => {}
                        Err(e) => return Err(e),
                    }
                }
                q.ack_batch(&got)?;
                Ok::<_, shmq::Error>((at, lens))
            })();
            Detached(r)
        });
        let out = r
            .get()
            .map(|(at, lens)| (PyBytes::new(py, &scratch[..at]), lens));
        me.scratch = scratch;
        out.map_err(|e| err(py, e))
    }

    /// The last acked version of ``key`` (0 if none).
    fn latest_acked_version(slf: &Bound<'_, Self>, key: u64) -> PyResult<u64> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "latest_acked_version")?;
        let (path, key_capacity) = (&slf.get().path, slf.get().key_capacity);
        let q = me.handle(py)?;
        let refuse = |why: &str| {
            let msg = format!("{path}: latest_acked_version: {why}");
            Err(raise(py, Status::InvalidArgument, &msg))
        };
        if key == 0 {
            return refuse("key 0 means no key");
        }
        if key_capacity == 0 {
            return refuse("this queue has no key table (key_capacity 0)");
        }
        Ok(q.latest_acked_version(key))
    }

    /// Copies of up to ``max`` waiting messages (0: all), as tuples:
    /// position, state ("ready", "pending", "delayed"), key, version,
    /// deliveries, enqueued_ns, not_before_ns (None unless delayed),
    /// payload. Claims nothing, counts no delivery.
    fn _peek<'py>(slf: &Bound<'py, Self>, max: usize) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "peek")?;
        let q = me.handle(py)?;
        let max = if max == 0 { usize::MAX } else { max };
        let got = q.peek(max).map_err(|e| err(py, e))?;
        got.into_iter()
            .map(|m| {
                let state = match m.state {
                    shmq::PeekState::Ready => "ready",
                    shmq::PeekState::Pending => "pending",
                    shmq::PeekState::Delayed => "delayed",
                };
                (
                    m.position,
                    state,
                    m.key,
                    m.version,
                    m.deliveries,
                    m.enqueued_ns,
                    m.not_before_ns,
                    PyBytes::new(py, &m.payload),
                )
                    .into_pyobject(py)
            })
            .collect()
    }

    /// The metrics as a dict (the package adds the rates).
    fn _stats<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "stats")?;
        let q = me.handle(py)?;
        let s = q.stats();
        // The scan may have met a truncated file: do not report zeros.
        q.check_intact("stats").map_err(|e| err(py, e))?;
        let d = PyDict::new(py);
        for (k, v) in [
            ("taken_ns", s.taken_ns),
            ("capacity", s.capacity),
            ("depth", s.depth),
            ("delayed", s.delayed),
            ("in_flight", s.in_flight),
            ("reserved", s.reserved),
            ("dlq_waiting", s.dlq_waiting),
            ("dead_letters", s.dead_letters),
            ("oldest_claimable_age_ns", s.oldest_claimable_age_ns),
            ("oldest_in_flight_age_ns", s.oldest_in_flight_age_ns),
            ("producers", s.producers),
            ("consumers", s.consumers),
            ("participants", s.participants),
        ] {
            d.set_item(k, v)?;
        }
        for (k, c) in COUNTERS {
            d.set_item(k, s.counter(c))?;
        }
        for (k, h) in HISTOGRAMS {
            let h = s.histogram(h);
            let hd = PyDict::new(py);
            hd.set_item("count", h.count)?;
            hd.set_item("sum", h.sum)?;
            hd.set_item("p50", h.quantile(0.5))?;
            hd.set_item("p90", h.quantile(0.9))?;
            hd.set_item("p99", h.quantile(0.99))?;
            hd.set_item("p999", h.quantile(0.999))?;
            hd.set_item("max", h.max)?;
            d.set_item(k, hd)?;
        }
        // Bounded as `shmq stats` bounds them: a damaged file may hold
        // any number in the sleeper counts.
        d.set_item("waiting_producers", s.producers_waiting.min(1 << 20))?;
        d.set_item("waiting_consumers", s.consumers_waiting.min(1 << 20))?;
        d.set_item("keys_in_use", s.keys_in_use)?;
        d.set_item("key_capacity", s.key_capacity)?;
        Ok(d)
    }

    /// Every dead letter, oldest first, as tuples (see `_dead_letter`).
    fn _dead_letters<'py>(slf: &Bound<'py, Self>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "dead_letters")?;
        let q = me.handle(py)?;
        let v = q.dlq_list();
        q.check_intact("dead_letters").map_err(|e| err(py, e))?;
        v.iter().map(|d| dead_letter(py, d, false)).collect()
    }

    /// Dead letter `id` as a tuple: id, reason, attempts,
    /// first_enqueued_ns, dead_ns, last_consumer_pid, key, version, length,
    /// payload (None from `_dead_letters`).
    fn _dead_letter<'py>(slf: &Bound<'py, Self>, id: u64) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "dead_letter")?;
        let q = me.handle(py)?;
        let d = q.dlq_get(id).map_err(|e| err(py, e))?;
        dead_letter(py, &d, true)
    }

    /// Sends dead letter `id` (or all, with None) back to the queue;
    /// returns how many.
    #[pyo3(signature = (id=None))]
    fn _redrive(slf: &Bound<'_, Self>, id: Option<u64>) -> PyResult<usize> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "redrive")?;
        me.handle(py)?.dlq_redrive(id).map_err(|e| err(py, e))
    }

    /// Deletes dead letter `id` (or all, with None); returns how many.
    #[pyo3(signature = (id=None))]
    fn _purge(slf: &Bound<'_, Self>, id: Option<u64>) -> PyResult<usize> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "purge")?;
        me.handle(py)?.dlq_purge(id).map_err(|e| err(py, e))
    }

    /// Removes every waiting message (claims in flight stay); returns how
    /// many.
    fn _purge_queue(slf: &Bound<'_, Self>) -> PyResult<u64> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "purge")?;
        me.handle(py)?.purge().map_err(|e| err(py, e))
    }

    /// Raises ``Corrupt`` (listing the problems) unless every invariant
    /// of the file holds.
    fn verify(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "verify")?;
        let path = &slf.get().path;
        let r = me.handle(py)?.verify();
        if r.problems.is_empty() {
            Ok(())
        } else {
            Err(raise(
                py,
                Status::Corrupt,
                &format!("{path}: verify: {}", r.problems.join("; ")),
            ))
        }
    }

    /// Cleans up after dead participants now.
    fn recover(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "recover")?;
        me.handle(py)?.recover().map(drop).map_err(|e| err(py, e))
    }

    /// Flushes the mapping to the file (persistent file systems only).
    fn flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "flush")?;
        me.handle(py)?.flush().map_err(|e| err(py, e))
    }
}

fn dead_letter<'py>(
    py: Python<'py>,
    d: &shmq::DeadLetter,
    data: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let payload = if data {
        PyBytes::new(py, &d.payload).into_any()
    } else {
        py.None().into_bound(py)
    };
    (
        d.id,
        d.reason.as_str(),
        d.attempts,
        d.first_enqueued_ns,
        d.dead_ns,
        d.last_consumer_pid,
        d.key,
        d.version,
        d.payload.len(),
        payload,
    )
        .into_pyobject(py)
}

/// The counters of `stats()`, by the names of the C API's `shmq_stats`.
const COUNTERS: [(&str, Counter); 21] = [
    ("sent", Counter::Sent),
    ("claimed", Counter::Claimed),
    ("acked", Counter::Acked),
    ("nacked", Counter::Nacked),
    ("rejected", Counter::Rejected),
    ("redelivered", Counter::Redelivered),
    ("abandoned", Counter::Abandoned),
    ("stale", Counter::Stale),
    ("conflated", Counter::Conflated),
    ("dead_lettered", Counter::DeadLettered),
    ("refused_full", Counter::Full),
    ("timeouts", Counter::Timeouts),
    ("key_waits", Counter::KeyWaits),
    ("reclaimed", Counter::Reclaimed),
    ("extended", Counter::Extended),
    ("bytes_sent", Counter::BytesSent),
    ("aborted", Counter::Aborted),
    ("lease_lost", Counter::LeaseLost),
    ("dead_participants", Counter::DeadParticipants),
    ("purged", Counter::Purged),
    ("expired", Counter::Expired),
];

/// The histograms of `stats()`.
const HISTOGRAMS: [(&str, Histogram); 3] = [
    ("time_in_queue", Histogram::LeadTime),
    ("processing_time", Histogram::Processing),
    ("end_to_end_time", Histogram::EndToEnd),
];

/// A claimed message: ``data`` (bytes, a private copy checked for
/// tearing, made on first use and at the latest by the outcome unless the
/// payload was borrowed), ``key``, ``version``, ``deliveries`` (1 on the first
/// delivery), ``enqueued_ns``, ``position`` and ``token``. Give exactly one
/// outcome: :meth:`ack`, :meth:`nack` or :meth:`reject` (:meth:`extend` any
/// number of times before). As a context manager it acks on normal exit
/// and nacks when an exception leaves the block (unless an outcome was
/// given).
#[pyclass(module = "shmq", frozen)]
struct Message {
    queue: Py<Queue>,
    /// The private copy of the payload, once made (see `copy`). A std
    /// `OnceLock` (its set is a compare-and-swap) rather than a
    /// `PyOnceLock`: only ever set with the GIL held, never waited for.
    data: OnceLock<Py<PyBytes>>,
    /// The payload's length.
    len: usize,
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
    token: u64,
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
    done: AtomicBool,
    /// The payload's address in the queue's mapping (null if not plain
    /// memory), for `borrow`.
    ptr: usize,
    /// The [`FORK_GENERATION`] of the claim: a forked child's copy of a
    /// message points into a mapping that is not the child's handle's.
    generation: u64,
    /// The borrowed view, once asked for: its exporter and the memoryview
    /// handed out.
    borrowed: PyOnceLock<(Py<Borrowed>, Py<PyMemoryView>)>,
}

impl Message {
    fn new(q: &Bound<'_, Queue>, m: &shmq::Message<'_>, claimed_ns: u64) -> Message {
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
    fn before_outcome(&self, py: Python<'_>) -> PyResult<()> {
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
    fn times(&self) -> (Option<u64>, Option<u64>) {
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

    /// The payload as a read-only memoryview of the queue's shared memory,
    /// without a copy. It is released by the outcome (`ack`, `nack`,
    /// `reject`, `ack_many`): a later use raises ValueError. Views made from
    /// it (slices, arrays) must be released before the outcome (else
    /// BufferError, and no outcome) and before the queue is closed.
    ///
    /// Unlike `data`, it is not checked for tearing, and it shows the
    /// message only while the claim is held: once the lease has run out,
    /// the slot may be given to another consumer and reused.
    fn borrow<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        let py = slf.py();
        let me = slf.get();
        let path = &me.queue.get().path;
        if me.done.load(Ordering::Relaxed) {
            let msg = format!("{path}: borrow: the message was given its outcome");
            return Err(raise(py, Status::LeaseLost, &msg));
        }
        if me.generation != FORK_GENERATION.load(Ordering::Relaxed) {
            let msg = format!("{path}: borrow: the message was claimed by the parent process");
            return Err(raise(py, Status::InvalidArgument, &msg));
        }
        if let Some((_, mv)) = me.borrowed.get(py) {
            return Ok(mv.bind(py).clone());
        }
        // The queue is still open (its mapping is where the view points).
        {
            let g = borrow(me.queue.get(), py, "borrow")?;
            g.handle(py)?;
        }
        let len = me.len;
        if me.ptr == 0 && len > 0 {
            let msg = format!("{path}: borrow: the payload is not in plain memory");
            return Err(raise(py, Status::InvalidArgument, &msg));
        }
        let b = Py::new(
            py,
            Borrowed {
                queue: me.queue.clone_ref(py),
                ptr: me.ptr,
                len,
                generation: me.generation,
                exports: AtomicUsize::new(0),
                released: AtomicBool::new(false),
            },
        )?;
        let mv = PyMemoryView::from(b.bind(py).as_any())?;
        let _ = me.borrowed.set(py, (b, mv.clone().unbind()));
        Ok(mv)
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

/// The exporter of a claimed payload's memory for `Message.borrow`: a
/// read-only buffer of `len` bytes at `ptr`, in the mapping of `queue`'s
/// handle.
#[pyclass(module = "shmq._native", frozen)]
struct Borrowed {
    queue: Py<Queue>,
    ptr: usize,
    len: usize,
    /// The [`FORK_GENERATION`] of the claim.
    generation: u64,
    /// Buffers exported now. Relaxed: counted with the GIL held.
    exports: AtomicUsize,
    /// Set by the message's outcome: no new export. Relaxed: GIL held.
    released: AtomicBool,
}

#[pymethods]
impl Borrowed {
    /// Exports the payload's memory, read-only.
    ///
    /// # Safety
    ///
    /// Called by Python with a `Py_buffer` to fill (the buffer protocol).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let q = me.queue.get();
        if me.released.load(Ordering::Relaxed)
            || !q.open.load(Ordering::Relaxed)
            || me.generation != FORK_GENERATION.load(Ordering::Relaxed)
        {
            return Err(PyBufferError::new_err(format!(
                "{}: the borrowed payload was released (outcome given, queue closed or \
                 another process)",
                q.path
            )));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a borrowed payload is read-only"));
        }
        // An empty payload has no address: any non-null one does for 0 bytes.
        static EMPTY: u8 = 0;
        let ptr = if me.len == 0 {
            std::ptr::addr_of!(EMPTY) as *mut std::ffi::c_void
        } else {
            me.ptr as *mut std::ffi::c_void
        };
        // SAFETY: `view` is the Py_buffer Python asked us to fill; `ptr`
        // is `len` bytes of the queue's mapping (or the static byte for an
        // empty payload), which stays mapped while the buffer is exported:
        // the Queue is kept alive by `self.queue` (and `view.obj` keeps
        // `self` alive), `close` refuses while `exports` > 0 and a forked
        // child keeps the inherited mapping while there are exports. The
        // buffer is read-only (readonly = 1): Python never writes the slot.
        let r =
            unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr, me.len as isize, 1, flags) };
        if r == -1 {
            return Err(PyErr::fetch(py));
        }
        me.exports.fetch_add(1, Ordering::Relaxed);
        q.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// One export fewer.
    ///
    /// # Safety
    ///
    /// Called by Python for a buffer that `__getbuffer__` filled.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::Relaxed);
        self.queue.get().exports.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Creates a queue file (see `shmq.Queue.create`, which checks and
/// converts the arguments).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn create(
    py: Python<'_>,
    path: PathBuf,
    capacity: u64,
    max_message_size: u32,
    key_capacity: u64,
    lease_ns: u64,
    max_deliveries: u32,
    latest_only: bool,
    mode: u32,
    group: Option<u32>,
    dlq_capacity: u64,
    reservation_timeout_ns: u64,
    participant_capacity: u32,
    wait: u32,
    message_ttl_ns: u64,
    expiry_drop: bool,
    sparse: bool,
) -> PyResult<Handle> {
    let wait_strategy = match wait {
        0 => WaitStrategy::Spin,
        1 => WaitStrategy::SpinThenSleep,
        _ => WaitStrategy::Sleep,
    };
    let o = Options {
        capacity,
        max_message_size,
        key_capacity,
        dlq_capacity,
        participant_capacity,
        lease: Duration::from_nanos(lease_ns),
        max_deliveries,
        reservation_timeout: Duration::from_nanos(reservation_timeout_ns),
        latest_only,
        mode,
        group,
        wait_strategy,
        sparse,
        message_ttl: Duration::from_nanos(message_ttl_ns),
        on_expiry: if expiry_drop {
            shmq::Expiry::Drop
        } else {
            shmq::Expiry::DeadLetter
        },
    };
    let q = shmq::Queue::create(&path, &o).map_err(|e| err(py, e))?;
    // Opened again (after a fork, when unpickled) as a participant, with
    // the checks its mode needs: a group may write it, or anyone.
    let reopen = Reopen {
        access: 0,
        group_shared: mode & 0o020 != 0,
        trust_any_owner: mode & 0o002 != 0,
    };
    Ok(Handle {
        q: Mutex::new(Some(q)),
        reopen,
    })
}

/// Opens a queue file: access 0 participant, 1 inspect, 2 read-only.
#[pyfunction]
fn open(
    py: Python<'_>,
    path: String,
    access: u32,
    group_shared: bool,
    trust_any_owner: bool,
) -> PyResult<Handle> {
    let reopen = Reopen {
        access,
        group_shared,
        trust_any_owner,
    };
    let q = reopen.open(py, &path)?;
    Ok(Handle {
        q: Mutex::new(Some(q)),
        reopen,
    })
}

/// Called in the child after `os.fork()` (registered by the package):
/// every queue opens its own handle on its next call.
#[pyfunction]
fn _forked() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The name of a status code (`"SHMQ_FULL"`), as in the C header.
#[pyfunction]
fn status_name(code: i64) -> String {
    match Status::from_code(code) {
        Some(s) => format!("SHMQ_{}", s.name()),
        None => format!("SHMQ_UNKNOWN({code})"),
    }
}

/// Hands over the package's exception classes (a list indexed by status
/// code) and its conversion helpers `_ns` and `_duration_ns`.
#[pyfunction]
fn _init(
    py: Python<'_>,
    errors: Vec<Py<PyType>>,
    ns: Py<PyAny>,
    duration_ns: Py<PyAny>,
) -> PyResult<()> {
    let _ = ERRORS.set(py, errors);
    let _ = HELPERS.set(py, (ns, duration_ns));
    Ok(())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Queue>()?;
    m.add_class::<Message>()?;
    m.add_class::<Handle>()?;
    m.add_class::<Borrowed>()?;
    m.add_class::<AsyncWait>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(status_name, m)?)?;
    m.add_function(wrap_pyfunction!(_init, m)?)?;
    m.add_function(wrap_pyfunction!(_forked, m)?)?;
    Ok(())
}
