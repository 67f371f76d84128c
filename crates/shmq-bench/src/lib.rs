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
//! Modules: [`peer`] (the other side of each measurement), [`os`],
//! [`ring`] (the bare ring), `foreign` (C and Python peers, built at run
//! time), [`memory`] (resident memory over 10^8 messages), `iceoryx2`
//! (the separate comparison crate's rows), `svg` (the chart).

mod foreign;
mod iceoryx2;
pub mod memory;
pub mod os;
pub mod peer;
pub mod ring;
mod svg;

use os::Peer;
use ring::BareRing;
use shmq::{Options, Queue, SendOptions, Timeout};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `shmq bench` was asked for.
#[derive(Clone, Debug, Default)]
pub struct BenchArgs {
    /// Small counts, one run each.
    pub quick: bool,
    /// Where to write the JSON rows.
    pub json: Option<std::path::PathBuf>,
    /// Where to write the SVG chart.
    pub chart: Option<std::path::PathBuf>,
    /// Only scenarios whose name contains one of these (comma-separated).
    pub only: Option<String>,
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

// ---------------------------------------------------------------------
// shmq
// ---------------------------------------------------------------------

struct ShmqRun {
    payload: usize,
    batch: usize,
    metrics: bool,
    keys: u64,
}

/// The queue of every one-to-one throughput figure: 4096 slots, busy-polled
/// waits, a key table twice the number of keys when there are keys.
fn one_to_one_options(payload: usize, keys: u64) -> Options {
    Options {
        capacity: 4096,
        max_message_size: payload.max(8) as u32,
        key_capacity: if keys > 0 {
            (keys * 2).next_power_of_two()
        } else {
            0
        },
        wait_strategy: shmq::WaitStrategy::Spin,
        ..Options::default()
    }
}

fn shmq_one_to_one(s: &Sizes, r: &ShmqRun, scenario: &'static str) -> Result<Row, String> {
    let path = tmp_path(&format!("q-{scenario}-{}", r.payload));
    let _c = Cleanup(vec![path.clone()]);
    let _ = std::fs::remove_file(&path);
    let q =
        Queue::create(&path, &one_to_one_options(r.payload, r.keys)).map_err(|e| e.to_string())?;
    q.set_metrics(r.metrics);
    let ordered = if r.keys > 0 { 0 } else { 1 };
    let peer = Peer::start(&[
        "shmq-consume".into(),
        path.clone(),
        s.msgs.to_string(),
        r.payload.to_string(),
        (r.metrics as u8).to_string(),
        r.batch.to_string(),
        "1".into(),
        ordered.to_string(),
    ])?;
    os::pin(0);
    let mut buf = payload_of(0, r.payload);
    let start = Instant::now();
    if r.batch > 1 {
        let mut msgs: Vec<Vec<u8>> = vec![buf.clone(); r.batch];
        let mut i = 0u64;
        while i < s.msgs {
            let n = (s.msgs - i).min(r.batch as u64) as usize;
            for (k, m) in msgs.iter_mut().take(n).enumerate() {
                set_seq(m, i + k as u64);
            }
            // Waits for room for the first message (busy: the queue's wait
            // strategy is Spin), then sends as many as fit.
            let sent = q
                .send_batch(&msgs[..n], Timeout::Forever)
                .map_err(|e| e.to_string())?;
            i += sent as u64;
        }
    } else {
        for i in 0..s.msgs {
            set_seq(&mut buf, i);
            let o = if r.keys > 0 {
                SendOptions::new()
                    .key(i % r.keys + 1)
                    .timeout(Timeout::Forever)
            } else {
                SendOptions::new().timeout(Timeout::Forever)
            };
            q.send_with(&buf, &o).map_err(|e| e.to_string())?;
        }
    }
    let produced = start.elapsed().as_nanos() as u64;
    let (count, consumed, _) = peer.finish()?;
    if count != s.msgs {
        return Err(format!("{count} of {} messages arrived", s.msgs));
    }
    Ok(Row::new(scenario, "shmq", r.payload).rate(count, consumed.max(produced)))
}

fn shmq_ping_pong(s: &Sizes, payload: usize) -> Result<Row, String> {
    let (a, b) = (tmp_path("ping"), tmp_path("pong"));
    let _c = Cleanup(vec![a.clone(), b.clone()]);
    let opts = Options {
        capacity: 64,
        max_message_size: payload.max(8) as u32,
        wait_strategy: shmq::WaitStrategy::Spin,
        ..Options::default()
    };
    let ping = Queue::create(&a, &opts).map_err(|e| e.to_string())?;
    let pong = Queue::create(&b, &opts).map_err(|e| e.to_string())?;
    let peer = Peer::start(&[
        "shmq-pong".into(),
        a.clone(),
        b.clone(),
        s.rtts.to_string(),
        payload.to_string(),
        "1".into(),
    ])?;
    os::pin(0);
    let clock = shmq::internals::clock::Clock::new();
    let mut buf = payload_of(0, payload);
    let mut rtts = Vec::with_capacity(s.rtts as usize);
    let mut rb = vec![0u8; payload.max(8)];
    for i in 0..s.rtts {
        set_seq(&mut buf, i);
        let t0 = clock.now();
        ping.send(&buf, Timeout::Forever)
            .map_err(|e| e.to_string())?;
        let m = loop {
            match pong.claim(Timeout::TryOnce) {
                Ok(m) => break m,
                Err(e) if e.status() == shmq::Status::Empty => std::hint::spin_loop(),
                Err(e) => return Err(e.to_string()),
            }
        };
        m.read_into(&mut rb).map_err(|e| e.to_string())?;
        m.ack().map_err(|e| e.to_string())?;
        rtts.push(clock.now() - t0);
    }
    peer.finish()?;
    Ok(Row::new("ping-pong", "shmq", payload).rtt(rtts))
}

// ---------------------------------------------------------------------
// References
// ---------------------------------------------------------------------

fn ring_one_to_one(s: &Sizes, payload: usize, scenario: &'static str) -> Result<Row, String> {
    let path = tmp_path(&format!("ring-{payload}"));
    let _c = Cleanup(vec![path.clone()]);
    let _ = std::fs::remove_file(&path);
    let ring = BareRing::create(&path, 4096, payload).map_err(|e| e.to_string())?;
    let peer = Peer::start(&[
        "ring-consume".into(),
        path.clone(),
        "4096".into(),
        s.msgs.to_string(),
        payload.to_string(),
        "1".into(),
    ])?;
    os::pin(0);
    let mut buf = payload_of(0, payload);
    let mut pos = 0;
    let start = Instant::now();
    for i in 0..s.msgs {
        set_seq(&mut buf, i);
        ring.push(&mut pos, &buf);
    }
    let produced = start.elapsed().as_nanos() as u64;
    let (count, consumed, _) = peer.finish()?;
    Ok(Row::new(scenario, "bare-ring", payload).rate(count, consumed.max(produced)))
}

fn ring_ping_pong(s: &Sizes, payload: usize) -> Result<Row, String> {
    let (a, b) = (tmp_path("ring-ping"), tmp_path("ring-pong"));
    let _c = Cleanup(vec![a.clone(), b.clone()]);
    let ping = BareRing::create(&a, 64, payload).map_err(|e| e.to_string())?;
    let pong = BareRing::create(&b, 64, payload).map_err(|e| e.to_string())?;
    let peer = Peer::start(&[
        "ring-pong".into(),
        a.clone(),
        b.clone(),
        "64".into(),
        s.rtts.to_string(),
        payload.to_string(),
        "1".into(),
    ])?;
    os::pin(0);
    let clock = shmq::internals::clock::Clock::new();
    let mut buf = payload_of(0, payload);
    let mut rb = vec![0u8; payload];
    let (mut wp, mut rp) = (0u64, 0u64);
    let mut rtts = Vec::with_capacity(s.rtts as usize);
    for i in 0..s.rtts {
        set_seq(&mut buf, i);
        let t0 = clock.now();
        ping.push(&mut wp, &buf);
        pong.pop(&mut rp, &mut rb);
        rtts.push(clock.now() - t0);
    }
    peer.finish()?;
    Ok(Row::new("ping-pong", "bare-ring", payload).rtt(rtts))
}

fn arrayqueue_one_to_one(s: &Sizes, payload: usize) -> Result<Row, String> {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<Vec<u8>>::new(4096));
    // Payloads are preallocated and recycled so that the queue moves the
    // same bytes as the others without measuring the allocator.
    let pool = Arc::new(crossbeam_queue::ArrayQueue::<Vec<u8>>::new(8192));
    for _ in 0..8192 {
        let _ = pool.push(vec![0u8; payload]);
    }
    let count = s.msgs;
    let (q2, pool2) = (q.clone(), pool.clone());
    let t = std::thread::spawn(move || -> Result<u64, String> {
        os::pin(1);
        let mut start = None;
        for i in 0..count {
            let m = loop {
                if let Some(m) = q2.pop() {
                    break m;
                }
                std::hint::spin_loop();
            };
            start.get_or_insert_with(Instant::now);
            if !m.is_empty() && m[0] != (i & 0xff) as u8 {
                return Err(format!("message {i} arrived as {}", m[0]));
            }
            let _ = pool2.push(m);
        }
        Ok(start.map_or(0, |s| s.elapsed().as_nanos() as u64))
    });
    os::pin(0);
    let start = Instant::now();
    for i in 0..count {
        let mut m = loop {
            if let Some(m) = pool.pop() {
                break m;
            }
            std::hint::spin_loop();
        };
        set_seq(&mut m, i);
        let mut m = Some(m);
        while let Err(back) = q.push(m.take().unwrap_or_default()) {
            m = Some(back);
            std::hint::spin_loop();
        }
    }
    let produced = start.elapsed().as_nanos() as u64;
    let consumed = t.join().map_err(|_| "consumer thread panicked")??;
    Ok(Row::new("one-to-one", "arrayqueue", payload).rate(count, consumed.max(produced)))
}

fn rtrb_one_to_one(s: &Sizes, payload: usize, chunk: usize) -> Result<Row, String> {
    // Fixed-size payloads as arrays so that the ring holds the bytes inline.
    fn run<const N: usize>(count: u64, chunk: usize) -> Result<u64, String> {
        let (mut p, mut c) = rtrb::RingBuffer::<[u8; N]>::new(4096);
        let t = std::thread::spawn(move || -> Result<u64, String> {
            os::pin(1);
            let mut start = None;
            let mut i = 0u64;
            while i < count {
                if chunk > 1 {
                    let n = c.slots().min(chunk);
                    if n == 0 {
                        std::hint::spin_loop();
                        continue;
                    }
                    let rc = c.read_chunk(n).map_err(|e| e.to_string())?;
                    start.get_or_insert_with(Instant::now);
                    let (a, b) = rc.as_slices();
                    for m in a.iter().chain(b) {
                        if N >= 1 && m[0] != (i & 0xff) as u8 {
                            return Err(format!("message {i} arrived as {}", m[0]));
                        }
                        i += 1;
                    }
                    rc.commit_all();
                } else {
                    match c.pop() {
                        Ok(m) => {
                            start.get_or_insert_with(Instant::now);
                            if N >= 1 && m[0] != (i & 0xff) as u8 {
                                return Err(format!("message {i} arrived as {}", m[0]));
                            }
                            i += 1;
                        }
                        Err(_) => std::hint::spin_loop(),
                    }
                }
            }
            Ok(start.map_or(0, |s| s.elapsed().as_nanos() as u64))
        });
        os::pin(0);
        let start = Instant::now();
        let mut i = 0u64;
        while i < count {
            if chunk > 1 {
                let n = p.slots().min(chunk).min((count - i) as usize);
                if n == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let wc = p.write_chunk_uninit(n).map_err(|e| e.to_string())?;
                let base = i;
                let written = wc.fill_from_iter((0..n as u64).map(|k| {
                    let mut m = [0xa5u8; N];
                    set_seq(&mut m, base + k);
                    m
                }));
                i += written as u64;
            } else {
                let mut m = [0xa5u8; N];
                set_seq(&mut m, i);
                while p.push(m).is_err() {
                    std::hint::spin_loop();
                }
                i += 1;
            }
        }
        let produced = start.elapsed().as_nanos() as u64;
        let consumed = t.join().map_err(|_| "consumer thread panicked")??;
        Ok(consumed.max(produced))
    }
    let ns = match payload {
        8 => run::<8>(s.msgs, chunk)?,
        64 => run::<64>(s.msgs, chunk)?,
        1024 => run::<1024>(s.msgs, chunk)?,
        other => return Err(format!("rtrb bench has no payload size {other}")),
    };
    let (scenario, transport) = if chunk > 1 {
        ("batched", "rtrb-chunks")
    } else {
        ("one-to-one", "rtrb")
    };
    Ok(Row::new(scenario, transport, payload).rate(s.msgs, ns))
}

fn fd_one_to_one(s: &Sizes, payload: usize, socket: bool) -> Result<Row, String> {
    let (rd, wr) = if socket {
        os::socketpair()?
    } else {
        os::pipe()?
    };
    let peer = Peer::start(&[
        "fd-consume".into(),
        rd.to_string(),
        s.msgs.to_string(),
        payload.to_string(),
        "1".into(),
    ]);
    os::close(rd);
    let peer = peer?;
    os::pin(0);
    let mut buf = payload_of(0, payload);
    let start = Instant::now();
    for i in 0..s.msgs {
        set_seq(&mut buf, i);
        os::write_all_spin(wr, &buf)?;
    }
    let produced = start.elapsed().as_nanos() as u64;
    let (count, consumed, _) = peer.finish()?;
    os::close(wr);
    let t = if socket { "unix-socket" } else { "pipe" };
    Ok(Row::new("one-to-one", t, payload).rate(count, consumed.max(produced)))
}

fn fd_ping_pong(s: &Sizes, payload: usize, socket: bool) -> Result<Row, String> {
    // A socket is bidirectional: the peer talks on one end, we on the other.
    let ((a_in, a_out), (b_in, b_out)) = if socket {
        let (x, y) = os::socketpair()?;
        ((x, x), (y, y))
    } else {
        let (r1, w1) = os::pipe()?;
        let (r2, w2) = os::pipe()?;
        ((r1, w2), (r2, w1))
    };
    // The peer reads a_in and writes a_out; we write b_out and read b_in.
    let peer = Peer::start(&[
        "fd-pong".into(),
        a_in.to_string(),
        a_out.to_string(),
        s.rtts.to_string(),
        payload.to_string(),
        "1".into(),
    ])?;
    os::pin(0);
    let clock = shmq::internals::clock::Clock::new();
    let mut buf = payload_of(0, payload);
    let mut rb = vec![0u8; payload];
    let mut rtts = Vec::with_capacity(s.rtts as usize);
    for i in 0..s.rtts {
        set_seq(&mut buf, i);
        let t0 = clock.now();
        os::write_all_spin(b_out, &buf)?;
        os::read_exact_spin(b_in, &mut rb)?;
        rtts.push(clock.now() - t0);
    }
    peer.finish()?;
    let mut fds = vec![a_in, a_out, b_in, b_out];
    fds.dedup();
    fds.sort_unstable();
    fds.dedup();
    for fd in fds {
        os::close(fd);
    }
    let t = if socket { "unix-socket" } else { "pipe" };
    Ok(Row::new("ping-pong", t, payload).rtt(rtts))
}

// ---------------------------------------------------------------------
// Oversubscription and waiting
// ---------------------------------------------------------------------

fn oversubscribed(s: &Sizes, payload: usize) -> Result<Row, String> {
    let path = tmp_path("oversub");
    let _c = Cleanup(vec![path.clone()]);
    let opts = Options {
        capacity: 4096,
        max_message_size: payload.max(8) as u32,
        ..Options::default()
    };
    let q = Queue::create(&path, &opts).map_err(|e| e.to_string())?;
    // The peers inherit our affinity: let them use every CPU.
    os::unpin();
    let ms = s.millis.to_string();
    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(Peer::start(&[
            "shmq-consume-for".into(),
            path.clone(),
            ms.clone(),
        ])?);
        peers.push(Peer::start(&[
            "shmq-produce-for".into(),
            path.clone(),
            ms.clone(),
            payload.to_string(),
        ])?);
    }
    let mut consumed = Vec::new();
    let mut produced = Vec::new();
    let mut longest = 0;
    for (k, p) in peers.into_iter().enumerate() {
        let (n, ns, _) = p.finish()?;
        longest = longest.max(ns);
        if k % 2 == 0 {
            consumed.push(n);
        } else {
            produced.push(n);
        }
    }
    drop(q);
    let total: u64 = consumed.iter().sum();
    let mut row = Row::new("oversubscribed", "shmq", payload).rate(total, longest);
    let stalled = consumed
        .iter()
        .chain(&produced)
        .filter(|n| **n == 0)
        .count();
    row.note = format!(
        "8 producers + 8 consumers on {} CPUs; every process made progress: {} (min consumer {} msgs, min producer {} msgs)",
        os::cpus(),
        if stalled == 0 { "yes" } else { "NO" },
        consumed.iter().min().unwrap_or(&0),
        produced.iter().min().unwrap_or(&0),
    );
    if stalled > 0 {
        return Err(format!("{stalled} processes made no progress"));
    }
    Ok(row)
}

fn idle_wait(s: &Sizes) -> Result<(Row, Row), String> {
    let wakes = if s.runs > 1 { 40 } else { 10 };
    let path = tmp_path("idle");
    let fpath = tmp_path("futex");
    let _c = Cleanup(vec![path.clone(), fpath.clone()]);
    os::unpin();
    let q = Queue::create(
        &path,
        &Options {
            capacity: 16,
            max_message_size: 8,
            ..Options::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let peer = Peer::start(&["shmq-idle".into(), path.clone(), wakes.to_string()])?;
    // CPU used by the idle waiter over two quiet seconds (less in quick
    // mode), in nanoseconds on a CPU.
    let quiet = Duration::from_millis(if s.runs > 1 { 2000 } else { 300 });
    let cpu_pct = match os::cpu_ns(peer.pid()) {
        Some(n0) => {
            std::thread::sleep(quiet);
            let n1 = os::cpu_ns(peer.pid()).unwrap_or(n0);
            (n1 - n0) as f64 * 100.0 / quiet.as_nanos() as f64
        }
        None => {
            // No schedstat (a kernel without it): clock ticks, coarse.
            let t0 = os::cpu_ticks(peer.pid()).unwrap_or(0);
            std::thread::sleep(quiet);
            let t1 = os::cpu_ticks(peer.pid()).unwrap_or(0);
            (t1 - t0) as f64 * 100.0 / (os::ticks_per_second() as f64 * quiet.as_secs_f64())
        }
    };
    for _ in 0..wakes {
        std::thread::sleep(Duration::from_millis(5));
        let stamp = shmq::internals::sys::monotonic_ns().to_le_bytes();
        q.send(&stamp, Timeout::Forever)
            .map_err(|e| e.to_string())?;
    }
    let (_, _, lat) = peer.finish()?;
    let lat: Vec<u64> = lat.split(',').filter_map(|x| x.parse().ok()).collect();
    let mut shmq_row = Row::new("idle-wait", "shmq", 8).rtt(lat);
    shmq_row.note = format!("idle waiter CPU {cpu_pct:.2}% (target < 1%); rtt = wake latency");

    // The bare futex hop between the same two kinds of process.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&fpath)
        .map_err(|e| e.to_string())?;
    f.set_len(4096).map_err(|e| e.to_string())?;
    let map = memmap2::MmapOptions::new()
        .len(64)
        .map_raw(&f)
        .map_err(|e| e.to_string())?;
    let words = os::SharedWords::new(&map);
    let peer = Peer::start(&["futex-wait".into(), fpath.clone(), wakes.to_string()])?;
    for _ in 0..wakes {
        std::thread::sleep(Duration::from_millis(5));
        words
            .stamp()
            .store(shmq::internals::sys::monotonic_ns(), Ordering::Release);
        words.futex().fetch_add(1, Ordering::AcqRel);
        shmq::internals::sys::futex_wake(words.futex(), 1);
    }
    let (_, _, lat) = peer.finish()?;
    let lat: Vec<u64> = lat.split(',').filter_map(|x| x.parse().ok()).collect();
    let mut futex_row = Row::new("idle-wait", "bare-ring", 8).rtt(lat);
    futex_row.note = "a bare futex hop between two processes (the reference)".into();
    Ok((shmq_row, futex_row))
}

// ---------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------

type Job<'a> = (
    &'static str,
    Box<dyn FnMut() -> Result<Vec<Row>, String> + 'a>,
);

/// Runs the bench; prints the table; writes JSON and chart on request.
pub fn run(args: &BenchArgs) -> Result<Vec<Row>, String> {
    let s = if args.quick {
        Sizes {
            msgs: 200_000,
            rtts: 5_000,
            runs: 1,
            millis: 300,
        }
    } else {
        Sizes {
            msgs: 5_000_000,
            rtts: 100_000,
            runs: 3,
            millis: 2000,
        }
    };
    let keys = if args.quick { 100_000 } else { 1_000_000 };
    let keyed_msgs = Sizes {
        msgs: if args.quick { 300_000 } else { 3_000_000 },
        ..s
    };
    let single = |payload, metrics| ShmqRun {
        payload,
        batch: 1,
        metrics,
        keys: 0,
    };
    let foreign = foreign::Foreign::new();
    let mut jobs: Vec<Job> = Vec::new();
    for payload in [8usize, 64, 1024] {
        let s = &s;
        jobs.push((
            "one-to-one",
            Box::new(move || {
                Ok(vec![
                    repeat(s.runs, || {
                        shmq_one_to_one(s, &single(payload, true), "one-to-one")
                    })?,
                    repeat(s.runs, || ring_one_to_one(s, payload, "one-to-one"))?,
                    repeat(s.runs, || arrayqueue_one_to_one(s, payload))?,
                    repeat(s.runs, || rtrb_one_to_one(s, payload, 1))?,
                ])
            }),
        ));
    }
    jobs.push((
        "one-to-one",
        Box::new(|| {
            Ok(vec![
                repeat(s.runs, || fd_one_to_one(&s, 64, true))?,
                repeat(s.runs, || fd_one_to_one(&s, 64, false))?,
            ])
        }),
    ));
    jobs.push((
        "batched",
        Box::new(|| {
            let b = ShmqRun {
                payload: 64,
                batch: 32,
                metrics: true,
                keys: 0,
            };
            Ok(vec![
                repeat(s.runs, || shmq_one_to_one(&s, &b, "batched"))?,
                repeat(s.runs, || rtrb_one_to_one(&s, 64, 32))?,
            ])
        }),
    ));
    jobs.push((
        "ping-pong",
        Box::new(|| {
            Ok(vec![
                shmq_ping_pong(&s, 64)?,
                ring_ping_pong(&s, 64)?,
                fd_ping_pong(&s, 64, true)?,
                fd_ping_pong(&s, 64, false)?,
            ])
        }),
    ));
    jobs.push((
        "keyed",
        Box::new(|| {
            let r = ShmqRun {
                payload: 64,
                batch: 1,
                metrics: true,
                keys,
            };
            let mut row = repeat(s.runs, || shmq_one_to_one(&keyed_msgs, &r, "keyed"))?;
            row.note = format!("{keys} distinct keys, cycled");
            Ok(vec![row])
        }),
    ));
    jobs.push((
        "metrics-off",
        Box::new(|| {
            Ok(vec![repeat(s.runs, || {
                shmq_one_to_one(&s, &single(64, false), "metrics-off")
            })?])
        }),
    ));
    jobs.push((
        "c-abi",
        Box::new(|| Ok(vec![repeat(s.runs, || foreign::c_abi(&s, &foreign))?])),
    ));
    jobs.push((
        "python",
        Box::new(|| Ok(vec![repeat(s.runs, || foreign::python(&s, &foreign))?])),
    ));
    jobs.push((
        "memory",
        Box::new(|| {
            Ok(vec![memory::memory(if args.quick {
                1_000_000
            } else {
                100_000_000
            })?])
        }),
    ));
    if !args.quick {
        jobs.push(("iceoryx2", Box::new(|| iceoryx2::rows(&s))));
    }
    jobs.push((
        "oversubscribed",
        Box::new(|| Ok(vec![oversubscribed(&s, 64)?])),
    ));
    jobs.push((
        "idle-wait",
        Box::new(|| {
            let (a, b) = idle_wait(&s)?;
            Ok(vec![a, b])
        }),
    ));

    if let Some(only) = &args.only {
        // A comma-separated list, so that a partial run can keep a row and
        // its reference (`--only one-to-one,c-abi`).
        jobs.retain(|(name, _)| only.split(',').any(|o| name.contains(o.trim())));
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(jobs.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for (name, mut job) in jobs {
        bar.set_message(name);
        rows.extend(job().map_err(|e| format!("bench {name}: {e}"))?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    ratios(&mut rows);
    print_table(&rows);
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &args.chart {
        std::fs::write(p, svg::chart(&rows)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(rows)
}

fn find<'a>(rows: &'a [Row], scenario: &str, transport: &str, payload: usize) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.transport == transport && r.payload == payload)
}

/// A target "ratio >= bound" against `reference`.
fn at_least(
    reference: &str,
    bound: f64,
    ratio: Option<f64>,
) -> (String, String, Option<f64>, Option<bool>) {
    (
        reference.into(),
        format!(">= {bound}"),
        ratio,
        ratio.map(|x| x >= bound),
    )
}

/// A target "ratio <= bound" against `reference`.
fn at_most(
    reference: &str,
    bound: f64,
    ratio: Option<f64>,
) -> (String, String, Option<f64>, Option<bool>) {
    (
        reference.into(),
        format!("<= {bound}"),
        ratio,
        ratio.map(|x| x <= bound),
    )
}

/// Fills in the ratios of docs/PERFORMANCE.md.
fn ratios(rows: &mut [Row]) {
    let rate =
        |rows: &[Row], sc: &str, t: &str, p: usize| find(rows, sc, t, p).and_then(|r| r.msgs_per_s);
    let p50 =
        |rows: &[Row], sc: &str, t: &str, p: usize| find(rows, sc, t, p).and_then(|r| r.rtt_p50_ns);
    let snapshot: Vec<Row> = rows.to_vec();
    let r = &snapshot[..];
    let keyless64 = rate(r, "one-to-one", "shmq", 64);
    for row in rows.iter_mut() {
        let (reference, target, ratio, meets): (String, String, Option<f64>, Option<bool>) =
            match (row.scenario, row.transport) {
                ("one-to-one", "shmq") => {
                    let bare = rate(r, "one-to-one", "bare-ring", row.payload);
                    let ratio = row.msgs_per_s.zip(bare).map(|(a, b)| a / b);
                    let aq = rate(r, "one-to-one", "arrayqueue", row.payload)
                        .zip(row.msgs_per_s)
                        .map(|(b, a)| a / b);
                    row.note = format!(
                        "{:.2}x arrayqueue (target >= 1.2x){}",
                        aq.unwrap_or(f64::NAN),
                        if row.payload == 64 {
                            let vs: Vec<String> = ["unix-socket", "pipe", "iceoryx2"]
                                .into_iter()
                                .filter_map(|t| {
                                    let x = row.msgs_per_s? / rate(r, "one-to-one", t, 64)?;
                                    Some(format!("{x:.0}x {t}"))
                                })
                                .collect();
                            if vs.is_empty() {
                                String::new()
                            } else {
                                format!("; {} (target >= 20x)", vs.join(", "))
                            }
                        } else {
                            String::new()
                        }
                    );
                    at_least("bare-ring", 0.9, ratio)
                }
                ("batched", "shmq") => {
                    let ratio = row
                        .msgs_per_s
                        .zip(rate(r, "batched", "rtrb-chunks", 64))
                        .map(|(a, b)| a / b);
                    at_least("rtrb-chunks", 0.75, ratio)
                }
                ("ping-pong", "shmq") => {
                    let ratio = row
                        .rtt_p50_ns
                        .zip(p50(r, "ping-pong", "bare-ring", 64))
                        .map(|(a, b)| a as f64 / b as f64);
                    at_most("bare-ring p50", 1.2, ratio)
                }
                ("keyed", "shmq") => {
                    let ratio = row.msgs_per_s.zip(keyless64).map(|(a, b)| a / b);
                    at_least("one-to-one shmq 64 B", 0.5, ratio)
                }
                ("metrics-off", "shmq") => {
                    // metrics on / metrics off
                    let ratio = keyless64.zip(row.msgs_per_s).map(|(on, off)| on / off);
                    at_least("metrics on / off", 0.9, ratio)
                }
                ("oversubscribed", "shmq") => {
                    let ratio = row.msgs_per_s.zip(keyless64).map(|(a, b)| a / b);
                    at_least("one-to-one shmq 64 B", 0.5, ratio)
                }
                ("c-abi", "shmq") => {
                    let ratio = row.msgs_per_s.zip(keyless64).map(|(a, b)| a / b);
                    at_least("one-to-one shmq 64 B", 0.9, ratio)
                }
                ("python", "shmq") => {
                    if let Some((py, rust)) = row.msgs_per_s.zip(rate(r, "batched", "shmq", 64)) {
                        row.note += &format!("; {:.2}x the Rust batched row", py / rust);
                    }
                    at_least(
                        "2 M msgs/s (absolute)",
                        1.0,
                        row.msgs_per_s.map(|x| x / 2e6),
                    )
                }
                ("memory", "shmq") => {
                    let Some(m) = &row.memory else { continue };
                    let growth = m.growth();
                    let fixed = m.file_bytes_end == m.file_bytes;
                    (
                        "anon RSS end / after 1%".into(),
                        "<= 1.05, file size fixed".into(),
                        Some(growth),
                        Some(growth <= 1.05 && fixed),
                    )
                }
                ("one-to-one", "unix-socket" | "pipe" | "iceoryx2") => {
                    let ratio = keyless64.zip(row.msgs_per_s).map(|(a, b)| a / b);
                    at_least("shmq one-to-one 64 B / this", 20.0, ratio)
                }
                ("idle-wait", "shmq") => {
                    let ratio = row
                        .rtt_p50_ns
                        .zip(p50(r, "idle-wait", "bare-ring", 8))
                        .map(|(a, b)| a as f64 / b as f64);
                    at_most("bare futex hop p50", 1.2, ratio)
                }
                _ => continue,
            };
        row.reference = Some(reference);
        row.target = Some(target);
        row.ratio = ratio;
        row.meets_target = meets;
    }
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |x| format!("{:.2} M", x / 1e6))
}

fn fmt_ns(n: Option<u64>) -> String {
    n.map_or("-".into(), |x| {
        if x >= 10_000 {
            format!("{:.1} µs", x as f64 / 1000.0)
        } else {
            format!("{x} ns")
        }
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<15} {:<12} {:>6} {:>11} {:>10} {:>10} {:>8} {:<22} {:<7} note",
        "scenario", "transport", "bytes", "msgs/s", "rtt p50", "rtt p99", "ratio", "vs", "target",
    );
    for r in rows {
        println!(
            "{:<15} {:<12} {:>6} {:>11} {:>10} {:>10} {:>8} {:<22} {:<7} {}{}",
            r.scenario,
            r.transport,
            r.payload,
            fmt_rate(r.msgs_per_s),
            fmt_ns(r.rtt_p50_ns),
            fmt_ns(r.rtt_p99_ns),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.reference.clone().unwrap_or_default(),
            r.target.clone().unwrap_or_default(),
            match r.meets_target {
                Some(true) => "met. ",
                Some(false) => "MISSED. ",
                None => "",
            },
            r.note
        );
    }
}
