//! The other side of each two-process measurement: `shmq __bench-peer ROLE
//! ARGS...`, started by the bench with the same binary. Every peer prints
//! `ready` when attached, does its part, then prints one result line
//! `done COUNT ELAPSED_NS EXTRA` and exits; a failed check exits non-zero.

use super::carries;
use super::os;
use super::ring::BareRing;
use shmq::{Queue, Timeout};
use std::io::Write;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}: {:?}", args[i]))
}

fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

fn done(count: u64, elapsed: Duration, extra: &str) {
    println!("done {count} {} {extra}", elapsed.as_nanos());
    let _ = std::io::stdout().flush();
}

/// Reads the sequence number a producer wrote at the start of a payload.
fn seq_of(buf: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = buf.len().min(8);
    b[..n].copy_from_slice(&buf[..n]);
    u64::from_le_bytes(b)
}

/// Checks a payload's sequence number (payloads shorter than 8 bytes carry
/// its low bytes).
fn check(buf: &[u8], expect: u64) -> Result<(), String> {
    let n = buf.len().min(8);
    let mask = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    if seq_of(buf) != expect & mask {
        return Err(format!("message {expect} arrived as {}", seq_of(buf)));
    }
    Ok(())
}

/// Runs a peer role; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let role = args.first().map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(1)..];
    let r = match role {
        "shmq-consume" => shmq_consume(rest),
        "shmq-pong" => shmq_pong(rest),
        "shmq-produce" => shmq_produce(rest),
        "shmq-produce-for" => shmq_produce_for(rest),
        "shmq-consume-for" => shmq_consume_for(rest),
        "shmq-idle" => shmq_idle(rest),
        "ring-consume" => ring_consume(rest),
        "ring-pong" => ring_pong(rest),
        "fd-consume" => fd_consume(rest),
        "fd-pong" => fd_pong(rest),
        "futex-wait" => futex_wait(rest),
        _ => Err(format!("unknown bench peer role {role:?}")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmq bench peer {role}: {e}");
            2
        }
    }
}

/// The resident memory of this process in KiB, as `RSS/ANON/FILE/SHMEM`
/// (`VmRSS` and its three parts), for the memory row.
fn memory_now() -> String {
    format!(
        "{}/{}/{}/{}",
        os::status_kib("VmRSS").unwrap_or(0),
        os::status_kib("RssAnon").unwrap_or(0),
        os::status_kib("RssFile").unwrap_or(0),
        os::status_kib("RssShmem").unwrap_or(0)
    )
}

/// `shmq-consume PATH COUNT PAYLOAD METRICS BATCH CPU ORDERED [SAMPLE]`:
/// claims and acks COUNT messages, checking each sequence number (keyed
/// messages may be reordered across keys, so only their count is checked).
/// With SAMPLE, reports its resident memory after SAMPLE messages and at
/// the end (`RSS/ANON/FILE/SHMEM,RSS/ANON/FILE/SHMEM` as the extra field).
fn shmq_consume(a: &[String]) -> Result<(), String> {
    let path: String = arg(a, 0, "path")?;
    let count: u64 = arg(a, 1, "count")?;
    let payload: usize = arg(a, 2, "payload")?;
    let metrics: u8 = arg(a, 3, "metrics")?;
    let batch: usize = arg(a, 4, "batch")?;
    let cpu: i32 = arg(a, 5, "cpu")?;
    let ordered: u8 = arg(a, 6, "ordered")?;
    let sample: u64 = if a.len() > 7 {
        arg(a, 7, "sample")?
    } else {
        u64::MAX
    };
    let mut sampled = String::new();
    os::pin(cpu);
    let q = Queue::open(&path).map_err(|e| e.to_string())?;
    q.set_metrics(metrics != 0);
    let mut buf = vec![0u8; payload.max(8)];
    ready();
    let mut got = 0u64;
    let mut start = None;
    let mut batch_v = Vec::with_capacity(batch);
    while got < count {
        if batch > 1 {
            batch_v.clear();
            match q.claim_batch_into(batch, Timeout::TryOnce, &mut batch_v) {
                Ok(_) => {}
                Err(e) if e.status() == shmq::Status::Empty => {
                    std::hint::spin_loop();
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            }
            start.get_or_insert_with(Instant::now);
            for m in &batch_v {
                let n = m.read_into(&mut buf).map_err(|e| e.to_string())?;
                if ordered != 0 {
                    check(&buf[..n], got)?;
                }
                got += 1;
            }
            q.ack_batch(&batch_v).map_err(|e| e.to_string())?;
            if got >= sample && sampled.is_empty() {
                sampled = memory_now();
            }
        } else {
            match q.claim(Timeout::TryOnce) {
                Ok(m) => {
                    start.get_or_insert_with(Instant::now);
                    let n = m.read_into(&mut buf).map_err(|e| e.to_string())?;
                    if ordered != 0 {
                        check(&buf[..n], got)?;
                    }
                    m.ack().map_err(|e| e.to_string())?;
                    got += 1;
                    if got == sample {
                        sampled = memory_now();
                    }
                }
                Err(e) if e.status() == shmq::Status::Empty => std::hint::spin_loop(),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    let extra = if sample == u64::MAX {
        String::new()
    } else {
        format!("{sampled},{}", memory_now())
    };
    done(got, elapsed, &extra);
    Ok(())
}

/// `shmq-produce PATH COUNT PAYLOAD CPU SAMPLE`: sends COUNT messages
/// carrying their sequence numbers, waiting for room, as the bench's own
/// producer does; reports its resident memory after SAMPLE messages and at
/// the end (`RSS/ANON/FILE/SHMEM,RSS/ANON/FILE/SHMEM`).
fn shmq_produce(a: &[String]) -> Result<(), String> {
    let q = Queue::open(arg::<String>(a, 0, "path")?).map_err(|e| e.to_string())?;
    let count: u64 = arg(a, 1, "count")?;
    let payload: usize = arg(a, 2, "payload")?;
    os::pin(arg(a, 3, "cpu")?);
    let sample: u64 = arg(a, 4, "sample")?;
    let mut buf = vec![0xa5u8; payload];
    let n = payload.min(8);
    let opts = shmq::SendOptions::new().timeout(Timeout::Forever);
    let mut sampled = String::new();
    ready();
    let start = Instant::now();
    for i in 0..count {
        buf[..n].copy_from_slice(&i.to_le_bytes()[..n]);
        q.send_with(&buf, &opts).map_err(|e| e.to_string())?;
        if i + 1 == sample {
            sampled = memory_now();
        }
    }
    let elapsed = start.elapsed();
    done(count, elapsed, &format!("{sampled},{}", memory_now()));
    Ok(())
}

/// `shmq-pong PING PONG COUNT PAYLOAD CPU`: answers COUNT pings.
fn shmq_pong(a: &[String]) -> Result<(), String> {
    let ping = Queue::open(arg::<String>(a, 0, "ping")?).map_err(|e| e.to_string())?;
    let pong = Queue::open(arg::<String>(a, 1, "pong")?).map_err(|e| e.to_string())?;
    let count: u64 = arg(a, 2, "count")?;
    let payload: usize = arg(a, 3, "payload")?;
    os::pin(arg(a, 4, "cpu")?);
    let mut buf = vec![0u8; payload.max(8)];
    ready();
    let start = Instant::now();
    for i in 0..count {
        let m = loop {
            match ping.claim(Timeout::TryOnce) {
                Ok(m) => break m,
                Err(e) if e.status() == shmq::Status::Empty => std::hint::spin_loop(),
                Err(e) => return Err(e.to_string()),
            }
        };
        let n = m.read_into(&mut buf).map_err(|e| e.to_string())?;
        check(&buf[..n], i)?;
        m.ack().map_err(|e| e.to_string())?;
        pong.send(&buf[..n], Timeout::Forever)
            .map_err(|e| e.to_string())?;
    }
    done(count, start.elapsed(), "");
    Ok(())
}

/// `shmq-produce-for PATH MILLIS PAYLOAD`: sends for MILLIS ms.
fn shmq_produce_for(a: &[String]) -> Result<(), String> {
    let q = Queue::open(arg::<String>(a, 0, "path")?).map_err(|e| e.to_string())?;
    let millis: u64 = arg(a, 1, "millis")?;
    let payload = vec![1u8; arg::<usize>(a, 2, "payload")?];
    ready();
    let start = Instant::now();
    let until = start + Duration::from_millis(millis);
    let mut n = 0u64;
    while Instant::now() < until {
        for _ in 0..64 {
            match q.send(&payload, Duration::from_millis(1)) {
                Ok(_) => n += 1,
                Err(e) if matches!(e.status(), shmq::Status::Timeout | shmq::Status::Full) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    done(n, start.elapsed(), "");
    Ok(())
}

/// `shmq-consume-for PATH MILLIS`: claims and acks for MILLIS ms.
fn shmq_consume_for(a: &[String]) -> Result<(), String> {
    let q = Queue::open(arg::<String>(a, 0, "path")?).map_err(|e| e.to_string())?;
    let millis: u64 = arg(a, 1, "millis")?;
    ready();
    let start = Instant::now();
    let until = start + Duration::from_millis(millis);
    let mut n = 0u64;
    while Instant::now() < until {
        for _ in 0..64 {
            match q.claim(Duration::from_millis(1)) {
                Ok(m) => {
                    m.ack().map_err(|e| e.to_string())?;
                    n += 1;
                }
                Err(e) if e.status() == shmq::Status::Timeout => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    done(n, start.elapsed(), "");
    Ok(())
}

/// `shmq-idle PATH COUNT`: waits (spin, then sleep) for COUNT messages that
/// carry their send time, and reports the wake latencies.
fn shmq_idle(a: &[String]) -> Result<(), String> {
    let q = Queue::open(arg::<String>(a, 0, "path")?).map_err(|e| e.to_string())?;
    let count: u64 = arg(a, 1, "count")?;
    ready();
    let mut lat = Vec::new();
    let mut buf = [0u8; 8];
    let start = Instant::now();
    for _ in 0..count {
        let m = q.claim(Timeout::Forever).map_err(|e| e.to_string())?;
        let now = shmq::internals::sys::monotonic_ns();
        m.read_into(&mut buf).map_err(|e| e.to_string())?;
        lat.push(now.saturating_sub(u64::from_le_bytes(buf)));
        m.ack().map_err(|e| e.to_string())?;
    }
    let lat: Vec<String> = lat.iter().map(u64::to_string).collect();
    done(count, start.elapsed(), &lat.join(","));
    Ok(())
}

/// `ring-consume PATH CAPACITY COUNT PAYLOAD CPU`: pops COUNT payloads
/// of the bare ring, checking each sequence number.
fn ring_consume(a: &[String]) -> Result<(), String> {
    let path: String = arg(a, 0, "path")?;
    let capacity: u64 = arg(a, 1, "capacity")?;
    let count: u64 = arg(a, 2, "count")?;
    let payload: usize = arg(a, 3, "payload")?;
    let cpu: i32 = arg(a, 4, "cpu")?;
    by_payload!(payload, ring_consume_n(&path, capacity, count, cpu))
}

fn ring_consume_n<const N: usize>(
    path: &str,
    capacity: u64,
    count: u64,
    cpu: i32,
) -> Result<(), String> {
    let ring = BareRing::<N>::open(path, capacity).map_err(|e| e.to_string())?;
    os::pin(cpu);
    let mut m = [0u8; N];
    ready();
    let mut pos = 0u64;
    let mut start = None;
    for i in 0..count {
        ring.pop(&mut pos, &mut m);
        start.get_or_insert_with(Instant::now);
        if !carries(&m, i) {
            return Err(format!("message {i} arrived as {}", seq_of(&m)));
        }
        // The whole payload was copied out, as a consumer would.
        std::hint::black_box(&m);
    }
    done(count, start.map_or(Duration::ZERO, |s| s.elapsed()), "");
    Ok(())
}

/// `ring-pong PING PONG CAPACITY COUNT PAYLOAD CPU`: sends back each of
/// COUNT pings, checked.
fn ring_pong(a: &[String]) -> Result<(), String> {
    let ping: String = arg(a, 0, "ping")?;
    let pong: String = arg(a, 1, "pong")?;
    let cap: u64 = arg(a, 2, "capacity")?;
    let count: u64 = arg(a, 3, "count")?;
    let payload: usize = arg(a, 4, "payload")?;
    let cpu: i32 = arg(a, 5, "cpu")?;
    by_payload!(payload, ring_pong_n(&ping, &pong, cap, count, cpu))
}

fn ring_pong_n<const N: usize>(
    ping: &str,
    pong: &str,
    cap: u64,
    count: u64,
    cpu: i32,
) -> Result<(), String> {
    let ping = BareRing::<N>::open(ping, cap).map_err(|e| e.to_string())?;
    let pong = BareRing::<N>::open(pong, cap).map_err(|e| e.to_string())?;
    os::pin(cpu);
    let mut m = [0u8; N];
    ready();
    let (mut rp, mut wp) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..count {
        ping.pop(&mut rp, &mut m);
        if !carries(&m, i) {
            return Err(format!("ping {i} arrived as {}", seq_of(&m)));
        }
        pong.push(&mut wp, &m);
    }
    done(count, start.elapsed(), "");
    Ok(())
}

/// `fd-consume FD COUNT PAYLOAD CPU`: reads COUNT messages from a
/// non-blocking socket or pipe, busy-polling.
fn fd_consume(a: &[String]) -> Result<(), String> {
    let fd: i32 = arg(a, 0, "fd")?;
    let count: u64 = arg(a, 1, "count")?;
    let payload: usize = arg(a, 2, "payload")?;
    os::pin(arg(a, 3, "cpu")?);
    let mut buf = vec![0u8; payload];
    ready();
    let mut start = None;
    for i in 0..count {
        os::read_exact_spin(fd, &mut buf)?;
        start.get_or_insert_with(Instant::now);
        check(&buf, i)?;
    }
    done(count, start.map_or(Duration::ZERO, |s| s.elapsed()), "");
    Ok(())
}

/// `fd-pong IN OUT COUNT PAYLOAD CPU`.
fn fd_pong(a: &[String]) -> Result<(), String> {
    let fd_in: i32 = arg(a, 0, "in")?;
    let fd_out: i32 = arg(a, 1, "out")?;
    let count: u64 = arg(a, 2, "count")?;
    let payload: usize = arg(a, 3, "payload")?;
    os::pin(arg(a, 4, "cpu")?);
    let mut buf = vec![0u8; payload];
    ready();
    let start = Instant::now();
    for i in 0..count {
        os::read_exact_spin(fd_in, &mut buf)?;
        check(&buf, i)?;
        os::write_all_spin(fd_out, &buf)?;
    }
    done(count, start.elapsed(), "");
    Ok(())
}

/// `futex-wait PATH COUNT`: the bare futex hop: sleeps on a futex word in a
/// shared file until the parent stores its send time there and wakes it.
fn futex_wait(a: &[String]) -> Result<(), String> {
    let path: String = arg(a, 0, "path")?;
    let count: u64 = arg(a, 1, "count")?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let map = memmap2::MmapOptions::new()
        .len(64)
        .map_raw(&f)
        .map_err(|e| e.to_string())?;
    let words = os::SharedWords::new(&map);
    ready();
    let mut lat = Vec::new();
    let start = Instant::now();
    // The word counts the parent's wakes: the loop ends when it reaches
    // COUNT (two wakes between two looks count as one hop measured, not as
    // a hop still to wait for, which waited for ever).
    let mut seen = 0u32;
    while u64::from(seen) < count {
        loop {
            let cur = words.futex().load(std::sync::atomic::Ordering::Acquire);
            if cur != seen {
                seen = cur;
                break;
            }
            shmq::internals::sys::futex_wait(words.futex(), cur, Some(Duration::from_secs(5)));
        }
        let now = shmq::internals::sys::monotonic_ns();
        let sent = words.stamp().load(std::sync::atomic::Ordering::Acquire);
        lat.push(now.saturating_sub(sent));
    }
    let lat: Vec<String> = lat.iter().map(u64::to_string).collect();
    done(count, start.elapsed(), &lat.join(","));
    Ok(())
}
