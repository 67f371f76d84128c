//! The arguments of the Python calls: timeouts and durations in seconds,
//! keys and versions, and the bytes to send.
//!
//! Plain non-negative numbers in range are converted here; anything else
//! goes back to the package's helpers (`_ns`, `_duration_ns`), so that
//! every odd value is refused (or taken for "forever") with the same
//! message however it arrives.

use std::time::Duration;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyMemoryView};

use shmq::{Status, Timeout};

use crate::errors::raise;

/// The package's `_ns(value, what)` and `_duration_ns(value, what)`.
pub(crate) static HELPERS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// The largest timeout in nanoseconds (an `int64_t` in the C API): longer
/// ones wait forever.
const I64_MAX_F: f64 = i64::MAX as f64;
/// The largest duration in nanoseconds (a `uint64_t`).
const U64_MAX_F: f64 = u64::MAX as f64;

/// A timeout in seconds (`None` = forever, 0 = try once). Plain
/// non-negative numbers in range are converted here; anything else goes
/// to the package's `_ns`, which refuses it or says "forever".
pub(crate) fn timeout_arg(
    py: Python<'_>,
    v: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Timeout> {
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
pub(crate) fn duration_arg(py: Python<'_>, v: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
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
pub(crate) fn u64_arg(py: Python<'_>, v: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<u64> {
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
pub(crate) enum Payload<'a> {
    Borrowed(&'a [u8]),
    Copied(Vec<u8>),
}

impl Payload<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Copied(v) => v,
        }
    }
}

pub(crate) fn payload<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<Payload<'a>> {
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
