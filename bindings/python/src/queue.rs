//! The queue handle: the `Queue` object (one attachment to a queue file),
//! its lock, `create` and `open`, `close`, and the handle a forked child
//! opens of its own.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::prelude::*;

use shmq::{Access, OpenOptions, Options, Status, WaitStrategy};

use crate::errors::{err, raise};

/// How many times this process is a `fork()` away from the one that
/// imported the module: bumped in the child by `_forked`, which the
/// package registers with `os.register_at_fork`. A `Queue` remembers the
/// value it was opened under; a call that finds another one is in a
/// forked child and opens the child's own handle first (see [`borrow`]).
/// Relaxed: bumped and read with the GIL held, in a child that has one
/// thread at that point.
pub(crate) static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

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

/// An open queue, moved from `open`/`create` into the `Queue` object.
#[pyclass(module = "shmq._native", frozen)]
pub(crate) struct Handle {
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
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Cleared by `close`, so that `closed` answers without the lock.
    /// Relaxed: written and read with the GIL held, which orders them.
    pub(crate) open: AtomicBool,
    /// The path as given.
    #[pyo3(get)]
    pub(crate) path: String,
    #[pyo3(get)]
    capacity: u64,
    #[pyo3(get)]
    pub(crate) max_message_size: u64,
    #[pyo3(get)]
    pub(crate) key_capacity: u64,
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
    pub(crate) exports: AtomicUsize,
}

/// What a call into a `Queue` works on, behind the queue's lock: the
/// engine's handle (`None` once closed) and the packed calls' buffer.
pub(crate) struct Inner {
    q: Option<shmq::Queue>,
    /// The path as given, for the errors of a closed queue.
    path: String,
    /// Reused by the packed calls.
    pub(crate) scratch: Vec<u8>,
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
    pub(crate) fn sample(&self, coarse_ns: u64) -> u64 {
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
    pub(crate) fn handle(&self, py: Python<'_>) -> PyResult<&shmq::Queue> {
        let path = &self.path;
        self.q
            .as_ref()
            .ok_or_else(|| raise(py, Status::Closed, &format!("{path}: the queue was closed")))
    }
}

/// The lock of `q` for one call; `Closed` when another thread is inside.
///
/// In a process forked from the one that opened the handle, the handle is
/// the parent's participant (the engine refuses every call through it and
/// leaves the file alone when it is dropped): the child's own handle is
/// opened here, on the first call, with the options of the first, and the
/// inherited one dropped. The parent's claims stay the parent's.
pub(crate) fn borrow<'a>(
    q: &'a Queue,
    py: Python<'_>,
    op: &str,
) -> PyResult<MutexGuard<'a, Inner>> {
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
}

/// Creates a queue file (see `shmq.Queue.create`, which checks and
/// converts the arguments).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn create(
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
pub(crate) fn open(
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
pub(crate) fn _forked() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}
