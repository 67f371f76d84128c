//! The Prometheus exposition of queue stats, in two forms from one list of
//! metrics: the OpenMetrics text that `serve-metrics` serves, encoded by the
//! Prometheus project's client (`prometheus-client`, [`openmetrics`]), and
//! the classic text format 0.0.4 that `stats --prometheus` prints for file
//! collectors ([`render`]). A test checks that both carry the same samples
//! with the same values.
//!
//! Names follow the Prometheus conventions: everything starts with `shmq_`,
//! counters end in `_total`, durations are in seconds and bytes in bytes.
//! Every sample carries `queue="PATH"`. The samples of one metric family are
//! written together, with one `# HELP` and `# TYPE` line, as the format
//! requires when several queues are exported at once.
//!
//! The engine's histograms have 8 log-linear buckets per power of two; they
//! are exported with one bucket per power of two of nanoseconds
//! (`le` = (2^k - 1) ns, from about 1 µs to about 137 s) plus `+Inf`. Those
//! bounds fall exactly on engine bucket bounds, so the cumulative counts
//! are exact, not interpolated.

use std::fmt::Write;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use shmq::internals::metrics::{bucket_of, COUNTERS, HISTOGRAMS};
use shmq::{Counter, HistogramSnapshot, Stats};

use crate::stats_view::View;

/// The smallest and largest power of two (in ns) used as a bucket bound.
const LE_FIRST_POW: u32 = 10;
const LE_LAST_POW: u32 = 37;

/// A counter's exported name (without the `shmq_` prefix and `_total`).
pub fn counter_name(c: Counter, name: &str) -> String {
    match c {
        Counter::BytesSent => "sent_bytes".to_string(),
        _ => name.to_string(),
    }
}

/// The help line of a counter, by its name in [`COUNTERS`] (a string match,
/// so a counter added to the engine is exported with a generic help line
/// instead of breaking this build).
fn counter_help(name: &str) -> &'static str {
    match name {
        "sent" => "Messages committed.",
        "claimed" => "Claims handed out (first deliveries and redeliveries).",
        "acked" => "Claims acked.",
        "nacked" => "Claims nacked.",
        "rejected" => "Claims rejected.",
        "redelivered" => "Claims of a message delivered before.",
        "abandoned" => "Reservations abandoned by a dead or stalled producer.",
        "stale" => "Sends refused, or queued messages skipped, for a stale version.",
        "conflated" => "Waiting messages replaced in place (latest-only mode).",
        "dead_lettered" => "Messages moved to the dead-letter area.",
        "refused_full" => "Sends refused because the queue was full.",
        "timeouts" => "Calls that waited their whole timeout.",
        "key_waits" => "Claims that skipped a message whose key was busy.",
        "reclaimed" => "Claims reclaimed after lease expiry or consumer death.",
        "extended" => "Lease extensions.",
        "bytes_sent" => "Payload bytes committed.",
        "aborted" => "Reservations given back unused.",
        "lease_lost" => "Outcomes refused because the lease was lost.",
        "dead_participants" => "Participants found dead and cleaned up after.",
        "purged" => "Waiting messages removed by a purge of the queue.",
        "expired" => "Messages past their time to live, dead-lettered or dropped.",
        _ => "A counter of the queue (see shmq::Counter).",
    }
}

/// The gauges: exported name, help, value.
pub fn gauges(v: &View) -> Vec<(&'static str, &'static str, f64)> {
    let s: &Stats = &v.stats;
    vec![
        ("capacity", "Number of slots.", s.capacity as f64),
        ("depth", "Messages claimable now.", s.depth as f64),
        (
            "delayed",
            "Messages delayed, not yet due.",
            s.delayed as f64,
        ),
        (
            "in_flight",
            "Messages claimed and not settled.",
            s.in_flight as f64,
        ),
        (
            "reserved",
            "Slots reserved by producers, not committed.",
            s.reserved as f64,
        ),
        (
            "dlq_waiting",
            "Messages waiting for room in the dead-letter area.",
            s.dlq_waiting as f64,
        ),
        (
            "dead_letters",
            "Records in the dead-letter area.",
            s.dead_letters as f64,
        ),
        (
            "oldest_claimable_age_seconds",
            "Age of the oldest claimable message (delayed ones excluded).",
            s.oldest_claimable_age_ns as f64 / 1e9,
        ),
        (
            "oldest_in_flight_age_seconds",
            "Age of the oldest claim in flight.",
            s.oldest_in_flight_age_ns as f64 / 1e9,
        ),
        (
            "producers",
            "Live participants that have sent.",
            s.producers as f64,
        ),
        (
            "consumers",
            "Live participants that have claimed.",
            s.consumers as f64,
        ),
        ("participants", "Live participants.", s.participants as f64),
        (
            "waiting_producers",
            "Producers asleep waiting for room.",
            v.waiting_producers as f64,
        ),
        (
            "waiting_consumers",
            "Consumers asleep waiting for a message.",
            v.waiting_consumers as f64,
        ),
    ]
}

fn histogram_help(name: &str) -> &'static str {
    match name {
        "time_in_queue" => "Time from commit to first claim (lead time).",
        "processing_time" => "Time from claim to ack.",
        _ => "Time from commit to ack.",
    }
}

/// Escapes a label value.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A histogram's upper bounds (seconds) and non-cumulative counts, ending
/// with `+Inf`: the engine's buckets summed between powers of two.
fn histogram_buckets(snap: &HistogramSnapshot) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    let mut below = 0u64;
    for k in LE_FIRST_POW..=LE_LAST_POW {
        let bound_ns = (1u64 << k) - 1;
        // Every engine bucket up to the one holding 2^k - 1 ends at or
        // below 2^k - 1 (a power of two starts a new bucket).
        let cum: u64 = snap.buckets[..=bucket_of(bound_ns)].iter().sum();
        out.push((bound_ns as f64 / 1e9, cum.saturating_sub(below)));
        below = cum;
    }
    out.push((f64::MAX, snap.count.saturating_sub(below)));
    out
}

/// One queue at one scrape of `serve-metrics`: whether its file could be
/// read (`shmq_up`), how many scrapes failed to read it, and its stats
/// when it could.
#[derive(Debug)]
pub struct Scraped {
    /// The queue's label (its path).
    pub label: String,
    /// The snapshot, when the file could be read.
    pub view: Option<View>,
    /// Scrapes that could not read the file, ever.
    pub errors: u64,
}

/// The collector of one scrape: encodes [`Scraped`] queues through
/// `prometheus-client`'s encoder (it escapes nothing in label values, so
/// they are escaped here).
#[derive(Debug)]
struct Scrape(Vec<(String, Scraped)>);

impl Scrape {
    fn labels(l: &str) -> [(&'static str, &str); 1] {
        [("queue", l)]
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let up_help = "Whether the queue's file could be read at this scrape (1) or not (0).";
        let mut m = enc.encode_descriptor("shmq_up", up_help, None, MetricType::Gauge)?;
        for (l, q) in &self.0 {
            let up = q.view.is_some() as u64;
            m.encode_family(&Self::labels(l))?.encode_gauge(&up)?;
        }
        let help = "Scrapes that could not read the queue's file.";
        let mut m = enc.encode_descriptor("shmq_scrape_errors", help, None, MetricType::Counter)?;
        for (l, q) in &self.0 {
            let fam = Self::labels(l);
            m.encode_family(&fam)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, u64, f64>(
                    &q.errors, None,
                )?;
        }
        let read: Vec<(&str, &View)> = self
            .0
            .iter()
            .filter_map(|(l, q)| q.view.as_ref().map(|v| (l.as_str(), v)))
            .collect();
        let Some((_, first)) = read.first() else {
            return Ok(());
        };
        for (c, name) in COUNTERS {
            let metric = format!("shmq_{}", counter_name(c, name));
            let mut m =
                enc.encode_descriptor(&metric, counter_help(name), None, MetricType::Counter)?;
            for (l, v) in &read {
                m.encode_family(&Self::labels(l))?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, u64, f64>(
                        &v.stats.counter(c),
                        None,
                    )?;
            }
        }
        for (i, (name, help, _)) in gauges(first).into_iter().enumerate() {
            let metric = format!("shmq_{name}");
            let mut m = enc.encode_descriptor(&metric, help, None, MetricType::Gauge)?;
            for (l, v) in &read {
                let value = gauges(v)[i].2;
                let fam = Self::labels(l);
                let mut f = m.encode_family(&fam)?;
                // Whole numbers as integers, as the 0.0.4 text writes them.
                if value.fract() == 0.0 && value.abs() < 1e15 {
                    f.encode_gauge(&(value as i64))?;
                } else {
                    f.encode_gauge(&value)?;
                }
            }
        }
        for (h, name) in HISTOGRAMS {
            let metric = format!("shmq_{name}");
            let mut m = enc.encode_descriptor(
                &metric,
                histogram_help(name),
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (l, v) in &read {
                let snap = v.stats.histogram(h);
                m.encode_family(&Self::labels(l))?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        snap.sum as f64 / 1e9,
                        snap.count,
                        &histogram_buckets(snap),
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

/// The content type of [`openmetrics`].
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics text of one scrape of several queues, encoded by
/// `prometheus-client`.
pub fn openmetrics(queues: Vec<Scraped>) -> String {
    let mut registry = Registry::default();
    let labelled = queues
        .into_iter()
        .map(|q| (escape_label(&q.label), q))
        .collect();
    registry.register_collector(Box::new(Scrape(labelled)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Renders the stats of several queues, each named by its label.
pub fn render(queues: &[View]) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let mut w = |s: String| out.push_str(&s);
    let labels: Vec<String> = queues
        .iter()
        .map(|v| format!("queue=\"{}\"", escape_label(&v.label)))
        .collect();
    for (c, name) in COUNTERS {
        let metric = format!("shmq_{}_total", counter_name(c, name));
        w(format!(
            "# HELP {metric} {}\n# TYPE {metric} counter\n",
            counter_help(name)
        ));
        for (v, l) in queues.iter().zip(&labels) {
            w(format!("{metric}{{{l}}} {}\n", v.stats.counter(c)));
        }
    }
    if let Some(first) = queues.first() {
        for (i, (name, help, _)) in gauges(first).into_iter().enumerate() {
            let metric = format!("shmq_{name}");
            w(format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
            for (v, l) in queues.iter().zip(&labels) {
                w(format!("{metric}{{{l}}} {}\n", num(gauges(v)[i].2)));
            }
        }
    }
    for (h, name) in HISTOGRAMS {
        let metric = format!("shmq_{name}_seconds");
        w(format!(
            "# HELP {metric} {}\n# TYPE {metric} histogram\n",
            histogram_help(name)
        ));
        for (v, l) in queues.iter().zip(&labels) {
            let snap = v.stats.histogram(h);
            let mut body = String::new();
            for k in LE_FIRST_POW..=LE_LAST_POW {
                let bound_ns = (1u64 << k) - 1;
                // Every engine bucket up to the one holding 2^k - 1 ends at
                // or below 2^k - 1 (a power of two starts a new bucket).
                let last = bucket_of(bound_ns);
                let cum: u64 = snap.buckets[..=last].iter().sum();
                let le = bound_ns as f64 / 1e9;
                let _ = writeln!(body, "{metric}_bucket{{{l},le=\"{le:e}\"}} {cum}");
            }
            let _ = writeln!(body, "{metric}_bucket{{{l},le=\"+Inf\"}} {}", snap.count);
            let _ = writeln!(body, "{metric}_sum{{{l}}} {}", snap.sum as f64 / 1e9);
            let _ = writeln!(body, "{metric}_count{{{l}}} {}", snap.count);
            w(body);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmq::internals::metrics::bucket_upper;

    #[test]
    fn power_of_two_bounds_are_engine_bucket_bounds() {
        for k in LE_FIRST_POW..=LE_LAST_POW {
            let bound = (1u64 << k) - 1;
            assert_eq!(bucket_upper(bucket_of(bound)), bound);
            assert_eq!(bucket_of(bound) + 1, bucket_of(bound + 1));
        }
    }

    /// Samples of either text form, keyed `name|queue|le` (labels in any
    /// order, `le` as a number), with their values.
    fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (key, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = key.split_once('{').unwrap();
            let mut queue = "";
            let mut le = String::new();
            // Without the closing `"}`, every `",` ends a value.
            let labels = labels.strip_suffix("\"}").unwrap();
            for pair in labels.split("\",") {
                if let Some(v) = pair.strip_prefix("queue=\"") {
                    queue = v;
                } else if let Some(v) = pair.strip_prefix("le=\"") {
                    le = v.parse::<f64>().map_or(v.to_string(), |f| f.to_string());
                }
            }
            let v: f64 = value.parse().unwrap();
            assert!(
                out.insert(format!("{name}|{queue}|{le}"), v).is_none(),
                "{line}"
            );
        }
        out
    }

    #[test]
    fn openmetrics_and_the_classic_text_carry_the_same_samples() {
        let dir = std::env::temp_dir().join(format!("shmq-prom-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut views = Vec::new();
        for (i, name) in ["a", "b \"quoted\""].iter().enumerate() {
            let path = dir.join(name);
            let q = shmq::Queue::create(&path, &shmq::Options::default()).unwrap();
            for n in 0..(3 + i) {
                q.send(&[n as u8; 10], shmq::Timeout::TryOnce).unwrap();
            }
            let m = q.claim(shmq::Timeout::TryOnce).unwrap();
            m.ack().unwrap();
            views.push(View::take(&path.display().to_string(), &q));
        }
        let classic = render(&views);
        let scraped = views
            .into_iter()
            .map(|v| Scraped {
                label: v.label.clone(),
                view: Some(v),
                errors: 0,
            })
            .collect();
        let open = openmetrics(scraped);
        assert!(open.ends_with("# EOF\n"));
        let (c, mut o) = (samples(&classic), samples(&open));
        // Only OpenMetrics has the server's own two families.
        o.retain(|k, _| !k.starts_with("shmq_up|") && !k.starts_with("shmq_scrape_errors_total|"));
        assert_eq!(c, o);
        assert!(c.len() > 100, "{} samples", c.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every metric name (`shmq_…`) in a PromQL expression.
    fn metric_names(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(i) = rest.find("shmq_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            out.push(name);
        }
        out
    }

    /// Every string under the key `key`, anywhere in `v`.
    fn strings_under(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        serde_json::Value::String(s) if k == key => out.push(s.clone()),
                        _ => strings_under(x, key, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings_under(x, key, out)),
            _ => {}
        }
    }

    /// The Grafana dashboard shipped in docs/grafana uses only metrics that
    /// serve-metrics exposes for a real queue, and uses the ones that
    /// matter.
    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let text = include_str!("../../../docs/grafana/shmq.json");
        let dash: serde_json::Value = serde_json::from_str(text).unwrap();
        let dir = std::env::temp_dir().join(format!("shmq-grafana-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q");
        let q = shmq::Queue::create(&path, &shmq::Options::default()).unwrap();
        for n in 0..5u8 {
            q.send(&[n; 10], shmq::Timeout::TryOnce).unwrap();
        }
        q.claim(shmq::Timeout::TryOnce).unwrap().ack().unwrap();
        let view = View::take(&path.display().to_string(), &q);
        let exposed = openmetrics(vec![Scraped {
            label: view.label.clone(),
            view: Some(view),
            errors: 0,
        }]);
        let names: std::collections::BTreeSet<&str> = exposed
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();

        let mut exprs = Vec::new();
        strings_under(&dash["panels"], "expr", &mut exprs);
        strings_under(&dash["templating"], "definition", &mut exprs);
        let panels = dash["panels"].as_array().unwrap();
        let with_targets = panels.iter().filter(|p| p["type"] != "row");
        for p in with_targets {
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel {} has no query",
                p["title"]
            );
        }
        let mut used = std::collections::BTreeSet::new();
        for e in &exprs {
            let found = metric_names(e);
            assert!(!found.is_empty(), "no shmq metric in {e}");
            for name in found {
                assert!(
                    names.contains(name.as_str()),
                    "{name} (in {e}) is not exposed"
                );
                used.insert(name);
            }
        }
        for needed in [
            "shmq_up",
            "shmq_scrape_errors_total",
            "shmq_sent_total",
            "shmq_acked_total",
            "shmq_depth",
            "shmq_capacity",
            "shmq_dead_letters",
            "shmq_time_in_queue_seconds_bucket",
            "shmq_processing_time_seconds_bucket",
        ] {
            assert!(
                used.contains(needed),
                "the dashboard does not show {needed}"
            );
        }
        // The same names in the text `stats --prometheus` prints, but for
        // the two only the server knows.
        let view = View::take(&path.display().to_string(), &q);
        let classic = render(&[view]);
        for name in used
            .iter()
            .filter(|n| !n.starts_with("shmq_up") && !n.starts_with("shmq_scrape"))
        {
            assert!(
                classic.contains(&format!("\n{name}{{")),
                "{name} not in stats --prometheus"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
