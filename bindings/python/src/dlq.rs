//! Dead letters: listing, reading, redriving and purging them.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::err;
use crate::queue::{borrow, Queue};

#[pymethods]
impl Queue {
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
