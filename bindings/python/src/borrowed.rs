//! The payload without a copy: `Message.borrow()`, a read-only memoryview
//! of the claimed slot in the queue's mapping, exported by `Borrowed` and
//! released by the message's outcome.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;

use shmq::Status;

use crate::claim::Message;
use crate::errors::raise;
use crate::queue::{borrow, Queue, FORK_GENERATION};

#[pymethods]
impl Message {
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
}

/// The exporter of a claimed payload's memory for `Message.borrow`: a
/// read-only buffer of `len` bytes at `ptr`, in the mapping of `queue`'s
/// handle.
#[pyclass(module = "shmq._native", frozen)]
pub(crate) struct Borrowed {
    queue: Py<Queue>,
    ptr: usize,
    len: usize,
    /// The [`FORK_GENERATION`] of the claim.
    generation: u64,
    /// Buffers exported now. Relaxed: counted with the GIL held.
    pub(crate) exports: AtomicUsize,
    /// Set by the message's outcome: no new export. Relaxed: GIL held.
    pub(crate) released: AtomicBool,
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
