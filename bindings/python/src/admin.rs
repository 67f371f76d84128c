//! The queue's maintenance and queries: `verify`, `recover`, `flush`,
//! `purge` (of the waiting messages) and `latest_acked_version`.

use pyo3::prelude::*;

use shmq::Status;

use crate::errors::{err, raise};
use crate::queue::{borrow, Queue};

#[pymethods]
impl Queue {
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
