//! Peeking: copies of the waiting messages, claiming nothing
//! (`Queue.peek`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::err;
use crate::queue::{borrow, Queue};

#[pymethods]
impl Queue {
    /// Copies of up to ``max`` waiting messages (0: all), as tuples:
    /// position, state ("ready", "pending", "delayed"), key, version,
    /// deliveries, enqueued_ns, not_before_ns (None unless delayed),
    /// expires_ns (the deadline, None without one), payload. Claims nothing, counts no delivery.
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
                    m.expires_ns,
                    PyBytes::new(py, &m.payload),
                )
                    .into_pyobject(py)
            })
            .collect()
    }
}
