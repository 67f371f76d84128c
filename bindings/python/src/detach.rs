//! Releasing the GIL around a call into the engine that may wait.

use pyo3::prelude::*;

use shmq::Timeout;

/// A value moved into a closure that runs while the GIL is released.
///
/// `Python::detach` runs the closure on this same thread; its `Send`
/// bound keeps GIL-bound references out of it. What is wrapped here is
/// either a borrow of the engine's handle (used by no other thread: the
/// call holds the `Queue`'s lock throughout) or bytes kept alive and
/// unchanged by a `bytes` object held by the caller.
pub(crate) struct Detached<T>(pub(crate) T);
// SAFETY: see the type's comment: the value is only used on this thread,
// by a call that holds the only borrow of what it points to.
unsafe impl<T> Send for Detached<T> {}

impl<T> Detached<T> {
    /// The value. A method, so that a closure captures the whole wrapper
    /// (which is `Send`) rather than its field.
    pub(crate) fn get(self) -> T {
        self.0
    }
}

/// Runs `f` with the GIL released when it may wait (`timeout` is not
/// "try once"), with the GIL held otherwise (releasing it costs more than
/// a call that cannot wait).
pub(crate) fn maybe_detached<R>(py: Python<'_>, timeout: Timeout, f: impl FnOnce() -> R) -> R {
    if matches!(timeout, Timeout::TryOnce) {
        f()
    } else {
        let f = Detached(f);
        let r = py.detach(move || Detached(f.get()()));
        r.get()
    }
}
