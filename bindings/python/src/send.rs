//! Sending one message: `Queue.send`.

use std::time::Duration;

use pyo3::prelude::*;

use shmq::SendOptions;

use crate::args::{duration_arg, payload, timeout_arg, u64_arg};
use crate::detach::{maybe_detached, Detached};
use crate::errors::err;
use crate::queue::{borrow, Queue};

#[pymethods]
impl Queue {
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
}
