//! The figures of a running bridge: counters and gauges updated as it
//! works, printed as JSON lines (`--stats-every`) and served to Prometheus
//! as text (`--metrics ADDR`), and summed up at the end.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The figures of one direction of one queue.
#[derive(Debug)]
pub struct Figures {
    /// `out` or `in`.
    pub direction: &'static str,
    /// The queue file.
    pub queue: String,
    /// The stream.
    pub stream: String,
    started: Instant,
    /// `out`: messages claimed from the queue.
    pub claimed: AtomicU64,
    /// `in`: messages pulled from the consumer.
    pub pulled: AtomicU64,
    /// Messages delivered before (a crash, a refusal, a lease or AckWait
    /// that ran out).
    pub redeliveries: AtomicU64,
    /// `out`: publishes JetStream acknowledged.
    pub published: AtomicU64,
    /// `out`: of them, dropped by JetStream as already stored.
    pub deduplicated: AtomicU64,
    /// `out`: messages acked in the local queue.
    pub acked: AtomicU64,
    /// `in`: messages committed to the local queue.
    pub sent: AtomicU64,
    /// `in`: messages the local queue dropped as stale (acked upstream).
    pub stale: AtomicU64,
    /// `in`: messages terminated upstream (the queue can never take them).
    pub terminated: AtomicU64,
    /// `out`: publishes that failed (the messages were given back).
    pub refused: AtomicU64,
    /// `in`: times the local queue was full and pulling stopped.
    pub full_waits: AtomicU64,
    /// `out`: outcomes that found their claim gone.
    pub lease_lost: AtomicU64,
    /// Messages taken and not yet settled on both sides.
    pub in_flight: AtomicU64,
    /// Messages waiting to be moved: `out`, the local queue's depth; `in`,
    /// the consumer's pending count.
    pub lag: AtomicU64,
}

/// The counters, by name, for the reports.
const COUNTERS: [&str; 12] = [
    "claimed",
    "pulled",
    "redeliveries",
    "published",
    "deduplicated",
    "acked",
    "sent",
    "stale",
    "terminated",
    "refused",
    "full_waits",
    "lease_lost",
];

impl Figures {
    /// New figures, all zero.
    pub fn new(direction: &'static str, queue: &str, stream: &str) -> Arc<Figures> {
        Arc::new(Figures {
            direction,
            queue: queue.to_string(),
            stream: stream.to_string(),
            started: Instant::now(),
            claimed: AtomicU64::new(0),
            pulled: AtomicU64::new(0),
            redeliveries: AtomicU64::new(0),
            published: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            terminated: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            full_waits: AtomicU64::new(0),
            lease_lost: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            lag: AtomicU64::new(0),
        })
    }

    fn counter(&self, name: &str) -> &AtomicU64 {
        match name {
            "claimed" => &self.claimed,
            "pulled" => &self.pulled,
            "redeliveries" => &self.redeliveries,
            "published" => &self.published,
            "deduplicated" => &self.deduplicated,
            "acked" => &self.acked,
            "sent" => &self.sent,
            "stale" => &self.stale,
            "terminated" => &self.terminated,
            "refused" => &self.refused,
            "full_waits" => &self.full_waits,
            _ => &self.lease_lost,
        }
    }

    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        // Relaxed: a counter for reports; nothing is ordered by it.
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(g: &AtomicU64, v: u64) {
        // Relaxed: a gauge for reports; nothing is ordered by it.
        g.store(v, Ordering::Relaxed);
    }

    /// A value, for a report.
    pub fn get(c: &AtomicU64) -> u64 {
        // Relaxed: a report; a value a moment old is as good.
        c.load(Ordering::Relaxed)
    }

    /// The messages moved: acked locally (`out`) or committed (`in`).
    pub fn moved(&self) -> u64 {
        if self.direction == "out" {
            Self::get(&self.acked)
        } else {
            Self::get(&self.sent)
        }
    }

    /// Seconds since the start.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The figures as one JSON object (the counters of the direction, the
    /// gauges, the seconds and the mean rate).
    pub fn to_json(&self) -> String {
        let mut s = format!(
            "{{\"direction\":\"{}\",\"queue\":{:?},\"stream\":{:?}",
            self.direction, self.queue, self.stream
        );
        for name in self.names() {
            let _ = write!(s, ",\"{name}\":{}", Self::get(self.counter(name)));
        }
        let secs = self.seconds();
        let _ = write!(
            s,
            ",\"in_flight\":{},\"lag\":{},\"seconds\":{secs:.3},\"rate\":{:.1}}}",
            Self::get(&self.in_flight),
            Self::get(&self.lag),
            self.moved() as f64 / secs.max(1e-9)
        );
        s
    }

    /// The counters that belong to the direction.
    fn names(&self) -> Vec<&'static str> {
        let out_only = [
            "claimed",
            "published",
            "deduplicated",
            "acked",
            "refused",
            "lease_lost",
        ];
        let in_only = ["pulled", "sent", "stale", "terminated", "full_waits"];
        COUNTERS
            .iter()
            .copied()
            .filter(|n| {
                if self.direction == "out" {
                    !in_only.contains(n)
                } else {
                    !out_only.contains(n)
                }
            })
            .collect()
    }
}

/// The Prometheus text exposition of several bridges' figures.
pub fn prometheus(all: &[Arc<Figures>]) -> String {
    let mut s = String::new();
    let labels = |f: &Figures| {
        format!(
            "direction=\"{}\",queue=\"{}\",stream=\"{}\"",
            f.direction,
            f.queue.replace('\\', "\\\\").replace('"', "\\\""),
            f.stream.replace('"', "\\\"")
        )
    };
    for name in COUNTERS {
        let _ = writeln!(s, "# TYPE shmq_bridge_{name}_total counter");
        for f in all.iter().filter(|f| f.names().contains(&name)) {
            let _ = writeln!(
                s,
                "shmq_bridge_{name}_total{{{}}} {}",
                labels(f),
                Figures::get(f.counter(name))
            );
        }
    }
    for (name, pick) in [
        (
            "in_flight",
            (|f: &Figures| Figures::get(&f.in_flight)) as fn(&Figures) -> u64,
        ),
        ("lag", |f: &Figures| Figures::get(&f.lag)),
    ] {
        let _ = writeln!(s, "# TYPE shmq_bridge_{name} gauge");
        for f in all {
            let _ = writeln!(s, "shmq_bridge_{name}{{{}}} {}", labels(f), pick(f));
        }
    }
    s
}

/// Prints every bridge's figures as a JSON line each `every`.
pub fn spawn_printer(all: Vec<Arc<Figures>>, every: Duration) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(every);
        t.tick().await;
        loop {
            t.tick().await;
            for f in &all {
                println!("{}", f.to_json());
            }
        }
    });
}

/// Serves the figures as Prometheus text on `addr` (any path; one short
/// response per connection). Returns the address it listens on.
pub async fn serve_metrics(
    all: Vec<Arc<Figures>>,
    addr: SocketAddr,
) -> Result<SocketAddr, crate::BridgeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::BridgeError::Local(format!("metrics: listening on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| crate::BridgeError::Local(format!("metrics: {e}")))?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let all = all.clone();
            tokio::spawn(async move {
                // The request is read (up to a few KiB, for a second) and
                // ignored: every path serves the same text.
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await;
                let body = prometheus(&all);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(local)
}
