//! Metrics: `Queue.stats()`, the gauges, counters and histograms as a dict
//! (the package makes it a `shmq.Stats` and adds the rates).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use shmq::{Counter, Histogram};

use crate::errors::err;
use crate::queue::{borrow, Queue};

#[pymethods]
impl Queue {
    /// The metrics as a dict (the package adds the rates).
    fn _stats<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let me = borrow(slf.get(), py, "stats")?;
        let q = me.handle(py)?;
        let s = q.stats();
        // The scan may have met a truncated file: do not report zeros.
        q.check_intact("stats").map_err(|e| err(py, e))?;
        let d = PyDict::new(py);
        for (k, v) in [
            ("taken_ns", s.taken_ns),
            ("capacity", s.capacity),
            ("depth", s.depth),
            ("delayed", s.delayed),
            ("in_flight", s.in_flight),
            ("reserved", s.reserved),
            ("dlq_waiting", s.dlq_waiting),
            ("dead_letters", s.dead_letters),
            ("oldest_claimable_age_ns", s.oldest_claimable_age_ns),
            ("oldest_in_flight_age_ns", s.oldest_in_flight_age_ns),
            ("producers", s.producers),
            ("consumers", s.consumers),
            ("participants", s.participants),
        ] {
            d.set_item(k, v)?;
        }
        for (k, c) in COUNTERS {
            d.set_item(k, s.counter(c))?;
        }
        for (k, h) in HISTOGRAMS {
            let h = s.histogram(h);
            let hd = PyDict::new(py);
            hd.set_item("count", h.count)?;
            hd.set_item("sum", h.sum)?;
            hd.set_item("p50", h.quantile(0.5))?;
            hd.set_item("p90", h.quantile(0.9))?;
            hd.set_item("p99", h.quantile(0.99))?;
            hd.set_item("p999", h.quantile(0.999))?;
            hd.set_item("max", h.max)?;
            d.set_item(k, hd)?;
        }
        // Bounded as `shmq stats` bounds them: a damaged file may hold
        // any number in the sleeper counts.
        d.set_item("waiting_producers", s.producers_waiting.min(1 << 20))?;
        d.set_item("waiting_consumers", s.consumers_waiting.min(1 << 20))?;
        d.set_item("keys_in_use", s.keys_in_use)?;
        d.set_item("key_capacity", s.key_capacity)?;
        Ok(d)
    }
}

/// The counters of `stats()`, by the names of the C API's `shmq_stats`.
const COUNTERS: [(&str, Counter); 21] = [
    ("sent", Counter::Sent),
    ("claimed", Counter::Claimed),
    ("acked", Counter::Acked),
    ("nacked", Counter::Nacked),
    ("rejected", Counter::Rejected),
    ("redelivered", Counter::Redelivered),
    ("abandoned", Counter::Abandoned),
    ("stale", Counter::Stale),
    ("conflated", Counter::Conflated),
    ("dead_lettered", Counter::DeadLettered),
    ("refused_full", Counter::Full),
    ("timeouts", Counter::Timeouts),
    ("key_waits", Counter::KeyWaits),
    ("reclaimed", Counter::Reclaimed),
    ("extended", Counter::Extended),
    ("bytes_sent", Counter::BytesSent),
    ("aborted", Counter::Aborted),
    ("lease_lost", Counter::LeaseLost),
    ("dead_participants", Counter::DeadParticipants),
    ("purged", Counter::Purged),
    ("expired", Counter::Expired),
];

/// The histograms of `stats()`.
const HISTOGRAMS: [(&str, Histogram); 3] = [
    ("time_in_queue", Histogram::LeadTime),
    ("processing_time", Histogram::Processing),
    ("end_to_end_time", Histogram::EndToEnd),
];
