//! `shmq bench`: the figures of docs/PERFORMANCE.md, measured side by side in one
//! run with the reference transports, and reported as a table with the
//! ratios, as JSON (`--json FILE`) and as an SVG chart (`--chart FILE`).
//!
//! Every two-party measurement pins the producer to CPU 0 and the consumer
//! to CPU 1, uses the same payloads and message counts for every transport,
//! busy-polls (as the reference measurements in docs/PERFORMANCE.md did),
//! and checks every message's sequence number. `--quick` runs small counts,
//! for CI: it checks that every scenario runs and every message arrives,
//! not a speed.
//!
//! Modules: `runner` (which scenarios run, in what order, and what is
//! written), `shmq_runs` (the measurements of shmq itself), `references` (the
//! same measurements on the reference transports), `report` (the ratios, the
//! targets and the table), [`peer`] (the other side of each measurement),
//! [`os`], [`ring`] (the bare ring), `foreign` (C and Python peers, built at
//! run time), [`memory`] (resident memory over 10^8 messages), `iceoryx2` (the
//! separate comparison crate's rows), `svg` (the chart), `instructions`
//! (`--instructions`: instructions per message under callgrind, and the
//! loops it counts, [`bench_loop`]). This file holds the
//! arguments, the row and what every measurement shares.

/// Calls `f::<N>(args)` for the payload sizes the bench measures, so that
/// a reference transport holds its payload inline as a `[u8; N]`.
macro_rules! by_payload {
    ($payload:expr, $f:ident($($arg:expr),*)) => {
        match $payload {
            8 => $f::<8>($($arg),*),
            64 => $f::<64>($($arg),*),
            1024 => $f::<1024>($($arg),*),
            other => Err(format!("no payload size {other} here (8, 64, 1024)")),
        }
    };
}

mod foreign;
mod iceoryx2;
mod instructions;
pub mod memory;
pub mod os;
pub mod peer;
mod references;
mod report;
pub mod ring;
mod runner;
mod shmq_runs;
mod svg;

pub use instructions::bench_loop;
pub use runner::run;

/// What `shmq bench` was asked for.
#[derive(Clone, Debug, Default)]
pub struct BenchArgs {
    /// Small counts, one run each.
    pub quick: bool,
    /// Where to write the JSON rows.
    pub json: Option<std::path::PathBuf>,
    /// Where to write the SVG chart.
    pub chart: Option<std::path::PathBuf>,
    /// Only scenarios whose name contains one of these, or only the rows
    /// of these transports (comma-separated).
    pub only: Option<String>,
    /// Runs of each throughput figure (the median is kept); `None`: 3, or 1
    /// with `quick`.
    pub runs: Option<usize>,
    /// Instead of the throughput and latency figures, instructions per
    /// message counted by callgrind (`instructions`).
    pub instructions: bool,
}

/// One measured figure.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// Scenario name (docs/PERFORMANCE.md).
    pub scenario: &'static str,
    /// Transport name.
    pub transport: &'static str,
    /// Payload bytes.
    pub payload: usize,
    /// Throughput.
    pub msgs_per_s: Option<f64>,
    /// Round trip (or wake latency) median.
    pub rtt_p50_ns: Option<u64>,
    /// Round trip (or wake latency) 99th percentile.
    pub rtt_p99_ns: Option<u64>,
    /// The ratio to the reference of this row, where one applies.
    pub ratio: Option<f64>,
    /// What the ratio compares with.
    pub reference: Option<String>,
    /// The target of docs/PERFORMANCE.md for this ratio.
    pub target: Option<String>,
    /// Whether the target is met.
    pub meets_target: Option<bool>,
    /// Anything else measured (CPU use, per-process progress).
    pub note: String,
    /// The memory row's figures (resident memory, file size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<memory::MemoryFigures>,
    /// Instructions per message, counted by callgrind (`--instructions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions_per_msg: Option<f64>,
}

impl Row {
    fn new(scenario: &'static str, transport: &'static str, payload: usize) -> Row {
        Row {
            scenario,
            transport,
            payload,
            msgs_per_s: None,
            rtt_p50_ns: None,
            rtt_p99_ns: None,
            ratio: None,
            reference: None,
            target: None,
            meets_target: None,
            note: String::new(),
            memory: None,
            instructions_per_msg: None,
        }
    }
    fn rate(mut self, count: u64, ns: u64) -> Row {
        self.msgs_per_s = Some(count as f64 * 1e9 / ns.max(1) as f64);
        self
    }
    fn rtt(mut self, mut samples: Vec<u64>) -> Row {
        samples.sort_unstable();
        let q = |p: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * p).round() as usize)
                .copied()
        };
        self.rtt_p50_ns = q(0.5);
        self.rtt_p99_ns = q(0.99);
        self
    }
}

/// Message counts of a run.
struct Sizes {
    msgs: u64,
    rtts: u64,
    runs: usize,
    millis: u64,
}

fn tmp_path(name: &str) -> String {
    format!("/dev/shm/shmq-bench-{}-{name}", std::process::id())
}

struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn payload_of(seq: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0xa5u8; size.max(1)];
    let b = seq.to_le_bytes();
    let n = size.min(8);
    v[..n].copy_from_slice(&b[..n]);
    v.truncate(size);
    v
}

fn set_seq(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Whether payload `m` carries sequence number `seq` in its first
/// `min(N, 8)` bytes (little-endian; the low bytes of `seq` when `N < 8`),
/// as `set_seq` wrote it. With `N` a constant this is a load and a compare.
#[inline(always)]
fn carries<const N: usize>(m: &[u8; N], seq: u64) -> bool {
    let n = N.min(8);
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&m[..n]);
    let mask = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    u64::from_le_bytes(b) == seq & mask
}

fn median(mut v: Vec<Row>) -> Row {
    v.sort_by(|a, b| {
        a.msgs_per_s
            .partial_cmp(&b.msgs_per_s)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let n = v.len();
    v.swap_remove(n / 2)
}

/// Runs `f` `runs` times and keeps the median row by throughput (once
/// when the row was skipped: nothing to measure on this machine).
fn repeat(runs: usize, mut f: impl FnMut() -> Result<Row, String>) -> Result<Row, String> {
    let mut rows = Vec::new();
    for _ in 0..runs {
        let row = f()?;
        if row.note.starts_with("skipped") {
            return Ok(row);
        }
        rows.push(row);
    }
    Ok(median(rows))
}

/// A measurement of one transport, run again for every run.
type Measure<'a> = Box<dyn FnMut() -> Result<Row, String> + 'a>;

/// Runs each of `fs` once per run, in turn (a, b, c, a, b, c, ...), and
/// keeps each one's median row by throughput: a slow phase of the machine
/// (another process on a CPU, a frequency change) then lands on every
/// transport alike instead of on the runs of one.
fn interleaved(runs: usize, mut fs: Vec<Measure<'_>>) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Vec<Row>> = fs.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs.max(1) {
        for (f, got) in fs.iter_mut().zip(&mut rows) {
            got.push(f()?);
        }
    }
    Ok(rows.into_iter().map(median).collect())
}
