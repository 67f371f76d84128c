//! The latency samples of redeliveries after a death, the event counters and
//! the violations found by workers (`violations.log`).

use std::io::Write;
use std::sync::atomic::Ordering;

use super::words::{kind, Event, EVENTS};
use super::{Ledger, H_EVENTS, H_NEXT_SAMPLE, H_VIOLATIONS};

impl Ledger {
    /// Records that a message held by the killed `instance` was claimed
    /// again at `claim_ns` (dropped when the area is full).
    pub fn add_sample(&self, instance: u32, claim_ns: u64) {
        // Relaxed: the index only has to be unique; the samples are read
        // after every writer is dead.
        let i = self.word(H_NEXT_SAMPLE).fetch_add(1, Ordering::Relaxed);
        if i < self.sizes.samples {
            let at = self.sizes.samples_at() + 2 * i;
            // Relaxed: read after every writer is dead.
            self.word(at).store(instance as u64, Ordering::Relaxed);
            self.word(at + 1).store(claim_ns, Ordering::Relaxed);
        }
    }

    /// Every sample taken, as (instance, claim time); read after the
    /// workers are gone.
    pub fn samples(&self) -> Vec<(u32, u64)> {
        let n = self
            .word(H_NEXT_SAMPLE)
            .load(Ordering::SeqCst)
            .min(self.sizes.samples);
        (0..n)
            .map(|i| {
                let at = self.sizes.samples_at() + 2 * i;
                (
                    self.word(at).load(Ordering::SeqCst) as u32,
                    self.word(at + 1).load(Ordering::SeqCst),
                )
            })
            .collect()
    }

    /// Counts an event.
    pub fn event(&self, e: Event) {
        // Relaxed: a counter read after every writer is dead.
        self.word(H_EVENTS + e as u64)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The event counters, indexed by [`Event`].
    pub fn events(&self) -> [u64; EVENTS] {
        std::array::from_fn(|i| self.word(H_EVENTS + i as u64).load(Ordering::SeqCst))
    }

    /// Records a violation: one line `KIND detail` in `violations.log`.
    pub fn violation(&self, kind: &str, detail: &str) {
        // Relaxed: a counter read after every writer is dead.
        self.word(H_VIOLATIONS).fetch_add(1, Ordering::Relaxed);
        let line = format!("{kind} {}\n", detail.replace('\n', " "));
        // One write per line: an O_APPEND write of a short line is not
        // interleaved with another process's. Nothing else can be done if
        // it fails; the counter still says something went wrong.
        let _ = (&self.violations).write_all(line.as_bytes());
    }

    /// Every violation recorded, as `kind: detail` lines for a test's
    /// failure message.
    pub fn problems(&self) -> Vec<String> {
        self.violations()
            .into_iter()
            .map(|(k, d)| format!("{k}: {d}"))
            .collect()
    }

    /// Every violation recorded in `violations.log`, as (kind, detail).
    pub fn violations(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.violations_path).unwrap_or_default();
        let mut v: Vec<(String, String)> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(' ') {
                Some((k, d)) => (k.to_string(), d.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        // A line may be lost with its writer; the counter still counts it.
        let counted = self.word(H_VIOLATIONS).load(Ordering::SeqCst) as usize;
        if counted > v.len() {
            v.push((
                kind::WORKER.to_string(),
                format!(
                    "{} violation(s) counted whose line was never written",
                    counted - v.len()
                ),
            ));
        }
        v
    }
}
