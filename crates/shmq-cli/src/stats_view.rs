//! `shmq stats`: a queue's metrics as a human table, as JSON, as Prometheus
//! text, or as a live view (`--watch`) that refreshes every interval and
//! shows rates and latency percentiles over the last interval, computed by
//! subtracting two snapshots: on a terminal, the dashboard of `shmq top`
//! for the queue; elsewhere, one line per interval.

use std::io::{IsTerminal, Write};

use serde_json::{json, Map, Value};
use shmq::internals::metrics::{bucket_upper, HistogramSnapshot, COUNTERS, HISTOGRAMS};
use shmq::{Counter, Histogram, Queue, Stats};

use crate::cli::StatsArgs;
use crate::commands::print_json;
use crate::util::{human_ns, human_rate, CmdResult};

/// A queue's stats with its label and the number of callers asleep
/// waiting for room or for a message (read from the futex sleeper counts
/// in the header: a racy snapshot, like every gauge).
#[derive(Debug)]
pub struct View {
    /// The queue's name (its path).
    pub label: String,
    /// The engine's snapshot.
    pub stats: Stats,
    /// Producers asleep waiting for room (back-pressure felt now).
    pub waiting_producers: u64,
    /// Consumers asleep waiting for a message.
    pub waiting_consumers: u64,
}

impl View {
    /// Takes a snapshot of `q`.
    pub fn take(label: &str, q: &Queue) -> View {
        // The snapshot's sleeper counts (racy, informative), bounded: a
        // damaged file may hold any number there.
        let stats = q.stats();
        View {
            label: label.to_string(),
            waiting_producers: stats.producers_waiting.min(1 << 20),
            waiting_consumers: stats.consumers_waiting.min(1 << 20),
            stats,
        }
    }
}

/// `shmq stats`.
pub fn stats(a: &StatsArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.reading(a.read_only))?;
    let label = a.path.display().to_string();
    if a.watch {
        if std::io::stdout().is_terminal() {
            // On a terminal, the dashboard of `shmq top` for this queue.
            let opts = crate::top::TopOptions {
                paths: vec![a.path.clone()],
                open: a.trust.reading(a.read_only),
                interval: a.interval,
                once: false,
                count: a.count,
                title: "shmq stats --watch".to_string(),
            };
            return crate::top::run(&opts, vec![(label, q)]);
        }
        return watch(&q, &label, a);
    }
    let v = View::take(&label, &q);
    // Figures read from a file truncated under the mapping are zeros.
    q.check_intact("stats")?;
    if a.json {
        print_json(&stats_json(&v));
    } else if a.prometheus {
        print!("{}", crate::prometheus::render(&[v]));
    } else {
        print!("{}", table(&v));
    }
    Ok(0)
}

fn histogram_json(h: &HistogramSnapshot) -> Value {
    let buckets: Vec<Value> = h
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(b, n)| json!([bucket_upper(b), n]))
        .collect();
    json!({
        "count": h.count, "sum_ns": h.sum, "max_ns": h.max, "mean_ns": h.mean(),
        "p50_ns": h.quantile(0.5), "p90_ns": h.quantile(0.9),
        "p99_ns": h.quantile(0.99), "p999_ns": h.quantile(0.999),
        "buckets": buckets,
    })
}

/// The stats as one JSON object: gauges at the top level, `counters` and
/// `histograms` by name. Durations in nanoseconds.
pub fn stats_json(v: &View) -> Value {
    let s = &v.stats;
    let mut counters = Map::new();
    for (c, name) in COUNTERS {
        counters.insert(name.to_string(), json!(s.counter(c)));
    }
    let mut hists = Map::new();
    for (h, name) in HISTOGRAMS {
        hists.insert(name.to_string(), histogram_json(s.histogram(h)));
    }
    json!({
        "queue": v.label,
        "capacity": s.capacity, "depth": s.depth, "delayed": s.delayed,
        "in_flight": s.in_flight, "reserved": s.reserved,
        "dlq_waiting": s.dlq_waiting, "dead_letters": s.dead_letters,
        "oldest_claimable_age_ns": s.oldest_claimable_age_ns,
        "oldest_in_flight_age_ns": s.oldest_in_flight_age_ns,
        "producers": s.producers, "consumers": s.consumers,
        "participants": s.participants,
        "waiting_producers": v.waiting_producers,
        "waiting_consumers": v.waiting_consumers,
        "counters": counters, "histograms": hists,
    })
}

/// The human table.
pub fn table(v: &View) -> String {
    let (label, s) = (&v.label, &v.stats);
    let mut o = String::new();
    let pct = if s.capacity > 0 {
        100.0 * (s.depth + s.in_flight + s.delayed + s.reserved) as f64 / s.capacity as f64
    } else {
        0.0
    };
    o += &format!("{label}\n");
    o += &format!(
        "  depth {:<8} in flight {:<6} delayed {:<6} reserved {:<6} capacity {} ({pct:.0}% used)\n",
        s.depth, s.in_flight, s.delayed, s.reserved, s.capacity
    );
    o += &format!(
        "  oldest claimable {:<10} oldest in flight {}\n",
        human_ns(s.oldest_claimable_age_ns),
        human_ns(s.oldest_in_flight_age_ns)
    );
    o += &format!(
        "  participants {} (producers {}, consumers {})   asleep waiting: {} producers, {} consumers\n",
        s.participants, s.producers, s.consumers, v.waiting_producers, v.waiting_consumers
    );
    o += &format!(
        "  dead letters {} (waiting for room {})\n",
        s.dead_letters, s.dlq_waiting
    );
    o += "counters\n";
    let items: Vec<String> = COUNTERS
        .iter()
        .map(|(c, name)| format!("{name:>17} {:<10}", s.counter(*c)))
        .collect();
    for row in items.chunks(3) {
        o += &format!(" {}\n", row.join(" ").trim_end());
    }
    o += &format!(
        "{:<17} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "latency", "count", "p50", "p90", "p99", "max", "mean"
    );
    for (h, name) in HISTOGRAMS {
        let x = s.histogram(h);
        o += &format!(
            "  {:<15} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            name,
            x.count,
            human_ns(x.quantile(0.5)),
            human_ns(x.quantile(0.9)),
            human_ns(x.quantile(0.99)),
            human_ns(x.max),
            human_ns(x.mean() as u64)
        );
    }
    o
}

/// What happened between two snapshots.
#[derive(Debug)]
pub struct Delta {
    /// Seconds between the snapshots.
    pub secs: f64,
    /// Counter increases.
    pub counters: Vec<u64>,
    /// Histograms of the values recorded in between (max: the upper bound
    /// of the highest non-empty bucket, capped by the all-time max).
    pub histograms: Vec<HistogramSnapshot>,
}

impl Delta {
    /// `now - before`.
    pub fn between(before: &Stats, now: &Stats) -> Delta {
        let secs = (now.taken_ns.saturating_sub(before.taken_ns) as f64 / 1e9).max(1e-9);
        let counters = now
            .counters
            .iter()
            .zip(&before.counters)
            .map(|(a, b)| a.wrapping_sub(*b))
            .collect();
        let histograms = now
            .histograms
            .iter()
            .zip(&before.histograms)
            .map(|(a, b)| {
                let buckets: Vec<u64> = a
                    .buckets
                    .iter()
                    .zip(&b.buckets)
                    .map(|(x, y)| x.saturating_sub(*y))
                    .collect();
                let top = buckets.iter().rposition(|n| *n > 0);
                HistogramSnapshot {
                    count: buckets.iter().sum(),
                    sum: a.sum.saturating_sub(b.sum),
                    max: top.map_or(0, |t| bucket_upper(t).min(a.max)),
                    buckets,
                }
            })
            .collect();
        Delta {
            secs,
            counters,
            histograms,
        }
    }

    /// Rate of a counter per second.
    pub fn rate(&self, c: Counter) -> f64 {
        self.counters[c as usize] as f64 / self.secs
    }

    /// A histogram of the interval.
    pub fn histogram(&self, h: Histogram) -> &HistogramSnapshot {
        &self.histograms[h as usize]
    }
}

/// One line of the live view for a log (when stdout is not a terminal).
pub fn line(v: &View, d: &Delta) -> String {
    let (label, s) = (&v.label, &v.stats);
    let lead = d.histogram(Histogram::LeadTime);
    let proc_ = d.histogram(Histogram::Processing);
    format!(
        "{label}: produced {} consumed {} depth {}/{} in_flight {} waiting_producers {} oldest {} queue_p50 {} queue_p99 {} proc_p50 {} proc_p99 {} stale {} redelivered {} dead_lettered {} refused_full {}",
        human_rate(d.rate(Counter::Sent)),
        human_rate(d.rate(Counter::Acked)),
        s.depth,
        s.capacity,
        s.in_flight,
        v.waiting_producers,
        human_ns(s.oldest_claimable_age_ns),
        human_ns(lead.quantile(0.5)),
        human_ns(lead.quantile(0.99)),
        human_ns(proc_.quantile(0.5)),
        human_ns(proc_.quantile(0.99)),
        s.counter(Counter::Stale),
        s.counter(Counter::Redelivered),
        s.counter(Counter::DeadLettered),
        s.counter(Counter::Full),
    )
}

fn watch(q: &Queue, label: &str, a: &StatsArgs) -> CmdResult {
    // Not a terminal (a log, a pipe): one line per interval.
    let mut before = q.stats();
    let mut n = 0u64;
    loop {
        std::thread::sleep(a.interval);
        let now = View::take(label, q);
        let d = Delta::between(&before, &now.stats);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", line(&now, &d))?;
        out.flush()?;
        before = now.stats;
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            return Ok(0);
        }
    }
}
