//! Errors: a status of the engine raised as the package's exception class
//! for it (`shmq.Full`, `shmq.Timeout`, ...), which the package hands over
//! once with `_init`, and the names of the status codes.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use shmq::Status;

use crate::args::HELPERS;

/// The package's exception classes, indexed by status code.
pub(crate) static ERRORS: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

/// A shmq error as the package's exception: `cls(message, status)`.
pub(crate) fn raise(py: Python<'_>, status: Status, message: &str) -> PyErr {
    match ERRORS.get(py).and_then(|v| v.get(status as usize)) {
        Some(cls) => PyErr::from_type(cls.bind(py).clone(), (message.to_owned(), status as i64)),
        None => PyRuntimeError::new_err(format!("{}: {message}", status.name())),
    }
}

pub(crate) fn err(py: Python<'_>, e: shmq::Error) -> PyErr {
    raise(py, e.status(), e.message())
}

/// The name of a status code (`"SHMQ_FULL"`), as in the C header.
#[pyfunction]
pub(crate) fn status_name(code: i64) -> String {
    match Status::from_code(code) {
        Some(s) => format!("SHMQ_{}", s.name()),
        None => format!("SHMQ_UNKNOWN({code})"),
    }
}

/// Hands over the package's exception classes (a list indexed by status
/// code) and its conversion helpers `_ns` and `_duration_ns`.
#[pyfunction]
pub(crate) fn _init(
    py: Python<'_>,
    errors: Vec<Py<PyType>>,
    ns: Py<PyAny>,
    duration_ns: Py<PyAny>,
) -> PyResult<()> {
    let _ = ERRORS.set(py, errors);
    let _ = HELPERS.set(py, (ns, duration_ns));
    Ok(())
}
