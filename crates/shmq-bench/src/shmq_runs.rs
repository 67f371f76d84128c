//! The measurements of shmq itself: one-to-one (with and without metrics,
//! batches, keys), ping-pong, oversubscribed consumers and the idle wait
//! (beside a bare ring's futex wait).

use super::os::{self, Peer};
use shmq::{Options, Queue, SendOptions, Timeout};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{payload_of, set_seq, tmp_path, Cleanup, Row, Sizes};

pub(super) struct ShmqRun {
    pub(super) payload: usize,
    pub(super) batch: usize,
    pub(super) metrics: bool,
    pub(super) keys: u64,
}

/// The queue of every one-to-one throughput figure: 4096 slots, busy-polled
/// waits, a key table twice the number of keys when there are keys.
pub(super) fn one_to_one_options(payload: usize, keys: u64) -> Options {
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

pub(super) fn shmq_one_to_one(
    s: &Sizes,
    r: &ShmqRun,
    scenario: &'static str,
) -> Result<Row, String> {
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

pub(super) fn shmq_ping_pong(s: &Sizes, payload: usize) -> Result<Row, String> {
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

pub(super) fn oversubscribed(s: &Sizes, payload: usize) -> Result<Row, String> {
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

pub(super) fn idle_wait(s: &Sizes) -> Result<(Row, Row), String> {
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
    let idle_cpu = || match os::cpu_ns(peer.pid()) {
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
    let cpu_pct = idle_cpu();
    // Again with a message delayed past the run taken (a retry waiting for
    // its time): nothing could be orphaned, so the waiter sleeps as long.
    let later = shmq::SendOptions::new().delay(Duration::from_secs(600));
    q.send_with(&[0u8; 8], &later).map_err(|e| e.to_string())?;
    let delayed_cpu_pct = idle_cpu();
    for _ in 0..wakes {
        std::thread::sleep(Duration::from_millis(5));
        let stamp = shmq::internals::sys::monotonic_ns().to_le_bytes();
        q.send(&stamp, Timeout::Forever)
            .map_err(|e| e.to_string())?;
    }
    let (_, _, lat) = peer.finish()?;
    let lat: Vec<u64> = lat.split(',').filter_map(|x| x.parse().ok()).collect();
    let mut shmq_row = Row::new("idle-wait", "shmq", 8).rtt(lat);
    shmq_row.note = format!(
        "idle waiter CPU {cpu_pct:.2}% (target < 1%), {delayed_cpu_pct:.2}% behind a delayed message; rtt = wake latency"
    );

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
