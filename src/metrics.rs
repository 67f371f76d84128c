//! Metrics kept in the mapping: per-participant counters and latency
//! histograms, written only by their participant (no shared hot counter),
//! and summed by [`crate::Queue::stats`].
//!
//! Histograms are log-linear: values below 8 have a bucket each, above that
//! every power of two is split into 8 buckets, so a percentile is known to
//! within 12.5%. Counts, sum and max follow the buckets.

use crate::format::part;
use crate::memory::{Loads, Memory};
use crate::sync::{AtomicU64, Ordering};

/// Number of buckets in a histogram.
pub const BUCKETS: usize = 496;
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;

/// A per-participant counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Messages committed.
    Sent = 0,
    /// Claims handed out (first deliveries and redeliveries).
    Claimed,
    /// Claims acked.
    Acked,
    /// Claims nacked.
    Nacked,
    /// Claims rejected.
    Rejected,
    /// Claims of a message delivered before (deliveries > 1).
    Redelivered,
    /// Reservations abandoned (by their owner's death or stall), counted by
    /// whoever abandoned them.
    Abandoned,
    /// Sends refused, or queued messages skipped, for a stale version.
    Stale,
    /// Waiting messages replaced in place (latest-only mode).
    Conflated,
    /// Messages moved to the dead-letter area.
    DeadLettered,
    /// Sends refused because the queue was full.
    Full,
    /// Calls that waited their whole timeout.
    Timeouts,
    /// Claims that skipped a message whose key was busy.
    KeyWaits,
    /// Claims reclaimed after their lease expired or their consumer died.
    Reclaimed,
    /// Lease extensions.
    Extended,
    /// Payload bytes committed.
    BytesSent,
    /// Reservations given back unused.
    Aborted,
    /// Outcomes refused because the lease was lost.
    LeaseLost,
    /// Participants found dead and cleaned up after.
    DeadParticipants,
    /// Waiting messages removed by a purge of the queue (a queue-wide
    /// count kept in the header, not per participant: purges are rare).
    Purged,
    /// Messages past their deadline (time to live), dead-lettered or
    /// dropped instead of delivered (queue-wide, kept in the header).
    Expired,
}

/// Every counter, with its snake_case name.
pub const COUNTERS: [(Counter, &str); 21] = [
    (Counter::Sent, "sent"),
    (Counter::Claimed, "claimed"),
    (Counter::Acked, "acked"),
    (Counter::Nacked, "nacked"),
    (Counter::Rejected, "rejected"),
    (Counter::Redelivered, "redelivered"),
    (Counter::Abandoned, "abandoned"),
    (Counter::Stale, "stale"),
    (Counter::Conflated, "conflated"),
    (Counter::DeadLettered, "dead_lettered"),
    (Counter::Full, "refused_full"),
    (Counter::Timeouts, "timeouts"),
    (Counter::KeyWaits, "key_waits"),
    (Counter::Reclaimed, "reclaimed"),
    (Counter::Extended, "extended"),
    (Counter::BytesSent, "bytes_sent"),
    (Counter::Aborted, "aborted"),
    (Counter::LeaseLost, "lease_lost"),
    (Counter::DeadParticipants, "dead_participants"),
    (Counter::Purged, "purged"),
    (Counter::Expired, "expired"),
];
const _: () = assert!(COUNTERS.len() <= part::COUNTER_COUNT);

/// A latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Histogram {
    /// Commit to first claim (time in queue, lead time).
    LeadTime = 0,
    /// Claim to ack (processing time).
    Processing = 1,
    /// Commit to ack.
    EndToEnd = 2,
}

/// Every histogram, with its snake_case name.
pub const HISTOGRAMS: [(Histogram, &str); 3] = [
    (Histogram::LeadTime, "time_in_queue"),
    (Histogram::Processing, "processing_time"),
    (Histogram::EndToEnd, "end_to_end_time"),
];

/// The bucket of a value.
#[inline]
pub fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let sub = (v >> (msb - SUB_BITS)) & (SUB - 1);
    ((msb - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls in bucket `b`.
pub fn bucket_upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let msb = (b / SUB) as u32 + SUB_BITS - 1;
    let lower = (SUB + b % SUB) << (msb - SUB_BITS);
    lower.saturating_add((1u64 << (msb - SUB_BITS)) - 1)
}

/// Writes the metrics of one participant. Only that participant writes its
/// entry, so increments are a relaxed load and store, not a locked RMW.
pub struct Recorder<'m, M: Memory> {
    mem: &'m M,
    base: usize,
    /// Whether the whole entry (`base..base + part::STRIDE`, 8-aligned)
    /// lies inside `mem`: checked once here instead of at every word.
    inside: bool,
}

impl<'m, M: Memory> Recorder<'m, M> {
    /// The recorder of the participant entry at `base`.
    #[inline]
    pub fn new(mem: &'m M, base: usize) -> Self {
        let inside = base % 8 == 0
            && base
                .checked_add(part::STRIDE)
                .is_some_and(|end| end <= mem.len());
        Recorder { mem, base, inside }
    }

    /// The entry's word at `offset` (below `part::STRIDE`, 8-aligned).
    #[inline]
    fn at(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= part::STRIDE);
        if self.inside && offset % 8 == 0 && offset + 8 <= part::STRIDE {
            // SAFETY: `inside` says the entry lies inside the memory and is
            // 8-aligned; the offset is an 8-aligned word of it (checked
            // above; the compiler folds the check for constant offsets).
            unsafe { self.mem.u64_at_unchecked(self.base + offset) }
        } else {
            self.mem.u64_at(self.base + offset)
        }
    }

    #[inline]
    fn bump(&self, offset: usize, by: u64) {
        let w = self.at(offset);
        // Relaxed load + store: this participant is the only writer; readers
        // take a racy snapshot, which is all a counter promises.
        w.store(
            w.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }

    /// Adds `by` to a counter.
    #[inline]
    pub fn add(&self, c: Counter, by: u64) {
        self.bump(part::COUNTERS + c as usize * 8, by);
    }

    /// Records one value in a histogram.
    #[inline]
    pub fn record(&self, h: Histogram, value: u64) {
        let base = part::HISTOGRAMS + h as usize * part::HISTOGRAM_SIZE;
        self.bump(base + bucket_of(value) * 8, 1);
        self.bump(base + BUCKETS * 8, 1);
        self.bump(base + BUCKETS * 8 + 8, value);
        let max = self.at(base + BUCKETS * 8 + 16);
        if value > max.load(Ordering::Relaxed) {
            max.store(value, Ordering::Relaxed);
        }
    }
}

/// A snapshot of a histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Count per bucket.
    pub buckets: Vec<u64>,
    /// Number of values.
    pub count: u64,
    /// Sum of values.
    pub sum: u64,
    /// Largest value.
    pub max: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Reads the histogram `h` of the participant entry at `base` and adds
    /// it to this snapshot.
    pub(crate) fn add_from<M: Loads>(&mut self, mem: &M, base: usize, h: Histogram) {
        let hb = base + part::HISTOGRAMS + h as usize * part::HISTOGRAM_SIZE;
        // Relaxed loads: a racy snapshot of counts is acceptable.
        let mut total = 0u64;
        for (b, slot) in self.buckets.iter_mut().enumerate() {
            let n = mem.load_u64(hb + b * 8, Ordering::Relaxed);
            *slot = slot.saturating_add(n);
            total = total.saturating_add(n);
        }
        // The bucket total is the count (the stored count may lag by one).
        self.count = self.count.saturating_add(total);
        self.sum = self
            .sum
            .saturating_add(mem.load_u64(hb + BUCKETS * 8 + 8, Ordering::Relaxed));
        self.max = self
            .max
            .max(mem.load_u64(hb + BUCKETS * 8 + 16, Ordering::Relaxed));
    }

    /// The value at quantile `q` (0..=1), as the upper bound of its bucket,
    /// never above the max. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*n);
            if seen >= rank {
                return bucket_upper(b).min(self.max);
            }
        }
        self.max
    }

    /// Mean value.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;
    use crate::memory::HeapMemory;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..10_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "v={v} b={b}");
            assert!(bucket_upper(b) >= v);
            if v >= 8 {
                assert!(bucket_upper(b) - v <= v / 8, "v={v}");
            }
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn record_and_quantiles() {
        let mem = HeapMemory::new(part::STRIDE);
        let r = Recorder::new(&mem, 0);
        for v in 1..=1000u64 {
            r.record(Histogram::Processing, v * 1000);
        }
        r.add(Counter::Sent, 3);
        let mut s = HistogramSnapshot::default();
        s.add_from(&mem, 0, Histogram::Processing);
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, 1_000_000);
        let p50 = s.quantile(0.5);
        assert!((500_000..=570_000).contains(&p50), "p50 {p50}");
        assert_eq!(s.quantile(1.0), 1_000_000);
        assert_eq!(mem.load_u64(part::COUNTERS, Ordering::Relaxed), 3);
    }
}
