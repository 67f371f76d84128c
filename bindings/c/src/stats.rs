//! `shmq_get_stats`: the metrics of a queue (see `Queue::stats`) as one struct.

use std::mem::{offset_of, size_of};

use super::options::write_sized;
use super::queue::{shmq_queue, with_queue};
use super::status::{invalid, shmq_status};
use engine::{Counter, Histogram, HistogramSnapshot};

/// A latency distribution, in nanoseconds.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_histogram {
    /// Number of values recorded.
    pub count: u64,
    /// Sum of the values.
    pub sum: u64,
    /// Median (upper bound of its bucket: within 12.5%).
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

impl From<&HistogramSnapshot> for shmq_histogram {
    fn from(h: &HistogramSnapshot) -> Self {
        shmq_histogram {
            count: h.count,
            sum: h.sum,
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p99: h.quantile(0.99),
            p999: h.quantile(0.999),
            max: h.max,
        }
    }
}

/// A snapshot of a queue's metrics. Counters are totals since creation,
/// summed over every participant; rates are the difference of two
/// snapshots over `taken_ns`. Set `size = sizeof(shmq_stats)` before the
/// call.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_stats {
    /// `sizeof(shmq_stats)` of the caller, for evolution.
    pub size: u32,
    /// CLOCK_MONOTONIC time of the snapshot, ns.
    pub taken_ns: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Messages claimable now.
    pub depth: u64,
    /// Messages delayed (not yet due).
    pub delayed: u64,
    /// Messages claimed and not yet settled.
    pub in_flight: u64,
    /// Slots reserved by producers and not yet committed.
    pub reserved: u64,
    /// Messages waiting for room in the dead-letter area.
    pub dlq_waiting: u64,
    /// Records in the dead-letter area.
    pub dead_letters: u64,
    /// Age of the oldest claimable message (delayed ones excluded), ns.
    pub oldest_claimable_age_ns: u64,
    /// Age of the oldest claim in flight, ns.
    pub oldest_in_flight_age_ns: u64,
    /// Live participants that have sent.
    pub producers: u64,
    /// Live participants that have claimed.
    pub consumers: u64,
    /// Live participants.
    pub participants: u64,
    /// Messages committed.
    pub sent: u64,
    /// Claims handed out.
    pub claimed: u64,
    /// Claims acked.
    pub acked: u64,
    /// Claims nacked.
    pub nacked: u64,
    /// Claims rejected.
    pub rejected: u64,
    /// Redeliveries (claims with deliveries > 1).
    pub redelivered: u64,
    /// Reservations abandoned.
    pub abandoned: u64,
    /// Sends refused or queued messages skipped for a stale version.
    pub stale: u64,
    /// Waiting messages replaced in place (latest-only mode).
    pub conflated: u64,
    /// Messages moved to the dead letters.
    pub dead_lettered: u64,
    /// Sends refused because the queue was full.
    pub refused_full: u64,
    /// Calls that waited their whole timeout.
    pub timeouts: u64,
    /// Claims that skipped a message whose key was busy.
    pub key_waits: u64,
    /// Claims reclaimed after lease expiry or consumer death.
    pub reclaimed: u64,
    /// Lease extensions.
    pub extended: u64,
    /// Payload bytes committed.
    pub bytes_sent: u64,
    /// Reservations given back unused.
    pub aborted: u64,
    /// Outcomes refused because the lease was lost.
    pub lease_lost: u64,
    /// Participants found dead and cleaned up after.
    pub dead_participants: u64,
    /// Time in queue: commit to first claim (lead time).
    pub time_in_queue: shmq_histogram,
    /// Processing time: claim to ack.
    pub processing_time: shmq_histogram,
    /// Commit to ack.
    pub end_to_end_time: shmq_histogram,
    /// Entries of the key table in use.
    pub keys_in_use: u64,
    /// Entries of the key table.
    pub key_capacity: u64,
    /// Waiting messages removed by `shmq_purge` (queue-wide). Since ABI 3;
    /// written only when `size` covers it.
    pub purged: u64,
    /// Messages past their time to live, dead-lettered or dropped instead
    /// of delivered (queue-wide). Since ABI 3; as `purged`.
    pub expired: u64,
}

/// The smallest `size` accepted (this first version).
const STATS_V1: usize = offset_of!(shmq_stats, key_capacity) + size_of::<u64>();

/// Takes a snapshot of every metric into `*out` (a scan of the file: not
/// for a hot loop). Set `out->size = sizeof(shmq_stats)` before the call.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` NULL or a writable `shmq_stats`.
#[no_mangle]
pub unsafe extern "C" fn shmq_get_stats(q: *mut shmq_queue, out: *mut shmq_stats) -> shmq_status {
    const OP: &str = "shmq_get_stats";
    with_queue(q, OP, |inner| {
        if out.is_null() || !out.is_aligned() {
            return Err(inner.err(invalid(OP, "out is NULL or misaligned")));
        }
        let s = inner.queue().stats();
        // The scan may have met a truncated file: do not report zeros.
        inner.queue().check_intact(OP)?;
        let c = |c: Counter| s.counter(c);
        let h = |h: Histogram| shmq_histogram::from(s.histogram(h));
        let v = shmq_stats {
            size: size_of::<shmq_stats>() as u32,
            taken_ns: s.taken_ns,
            capacity: s.capacity,
            depth: s.depth,
            delayed: s.delayed,
            in_flight: s.in_flight,
            reserved: s.reserved,
            dlq_waiting: s.dlq_waiting,
            dead_letters: s.dead_letters,
            oldest_claimable_age_ns: s.oldest_claimable_age_ns,
            oldest_in_flight_age_ns: s.oldest_in_flight_age_ns,
            producers: s.producers,
            consumers: s.consumers,
            participants: s.participants,
            sent: c(Counter::Sent),
            claimed: c(Counter::Claimed),
            acked: c(Counter::Acked),
            nacked: c(Counter::Nacked),
            rejected: c(Counter::Rejected),
            redelivered: c(Counter::Redelivered),
            abandoned: c(Counter::Abandoned),
            stale: c(Counter::Stale),
            conflated: c(Counter::Conflated),
            dead_lettered: c(Counter::DeadLettered),
            refused_full: c(Counter::Full),
            timeouts: c(Counter::Timeouts),
            key_waits: c(Counter::KeyWaits),
            reclaimed: c(Counter::Reclaimed),
            extended: c(Counter::Extended),
            bytes_sent: c(Counter::BytesSent),
            aborted: c(Counter::Aborted),
            lease_lost: c(Counter::LeaseLost),
            dead_participants: c(Counter::DeadParticipants),
            time_in_queue: h(Histogram::LeadTime),
            processing_time: h(Histogram::Processing),
            end_to_end_time: h(Histogram::EndToEnd),
            keys_in_use: s.keys_in_use,
            key_capacity: s.key_capacity,
            purged: c(Counter::Purged),
            expired: c(Counter::Expired),
        };
        // SAFETY: non-null, aligned; the caller's struct of its `size`.
        unsafe { write_sized(out, &v, STATS_V1, OP, "shmq_stats") }.map_err(|e| inner.err(e))
    })
}
