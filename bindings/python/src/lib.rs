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
//!
//! One module per idea; `Queue`'s and `Message`'s Python methods are
//! spread over them (PyO3's `multiple-pymethods`), each with its module:
//!
//! - `queue`: the `Queue` object, its lock, `create`/`open`, `close`, and
//!   the handle opened again after a `fork()`;
//! - `admin`: `verify`, `recover`, `flush`, `purge`,
//!   `latest_acked_version`;
//! - `send`: `send`; `claim`: `claim` and the `Message` object;
//!   `borrowed`: `Message.borrow`, the payload without a copy;
//! - `batch`: `claim_many`, `ack_many`, the packed sends and takes;
//! - `peek`, `dlq` (dead letters), `stats` (metrics);
//! - `asyncio`: the polls behind `claim_async` and `send_async`;
//! - `errors`: statuses as the package's exceptions; `args`: the
//!   conversions of Python arguments; `detach`: releasing the GIL.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod admin;
mod args;
mod asyncio;
mod batch;
mod borrowed;
mod claim;
mod detach;
mod dlq;
mod errors;
mod peek;
mod queue;
mod send;
mod stats;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<queue::Queue>()?;
    m.add_class::<claim::Message>()?;
    m.add_class::<queue::Handle>()?;
    m.add_class::<borrowed::Borrowed>()?;
    m.add_class::<asyncio::AsyncWait>()?;
    m.add_function(wrap_pyfunction!(queue::create, m)?)?;
    m.add_function(wrap_pyfunction!(queue::open, m)?)?;
    m.add_function(wrap_pyfunction!(errors::status_name, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_init, m)?)?;
    m.add_function(wrap_pyfunction!(queue::_forked, m)?)?;
    Ok(())
}
