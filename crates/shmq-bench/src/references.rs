//! The same measurements on the reference transports: the bare ring,
//! crossbeam's `ArrayQueue`, `rtrb`, and pipes and Unix sockets.
//!
//! Each runs at its best, or every ratio to it would flatter shmq: the
//! in-memory ones hold the payload inline as a `[u8; N]` (dispatched by
//! `by_payload!` over the sizes the bench uses), producer and consumer are
//! pinned to CPUs 0 and 1 and busy-poll, and every message carries its
//! sequence number in its first 8 bytes, checked on arrival.

use super::os::{self, Peer};
use super::ring::BareRing;
use std::sync::Arc;
use std::time::Instant;

use super::{carries, payload_of, set_seq, tmp_path, Cleanup, Row, Sizes};

pub(super) fn ring_one_to_one(
    s: &Sizes,
    payload: usize,
    scenario: &'static str,
) -> Result<Row, String> {
    let path = tmp_path(&format!("ring-{payload}"));
    let _c = Cleanup(vec![path.clone()]);
    let _ = std::fs::remove_file(&path);
    let ns = by_payload!(payload, ring_produce(&path, s.msgs))?;
    Ok(Row::new(scenario, "bare-ring", payload).rate(s.msgs, ns))
}

/// The producer side of the bare ring's one-to-one row (the consumer is a
/// peer process): the payload inline, its first 8 bytes the sequence
/// number. Returns the longer of the two sides' times.
fn ring_produce<const N: usize>(path: &str, count: u64) -> Result<u64, String> {
    let ring = BareRing::<N>::create(path, 4096).map_err(|e| e.to_string())?;
    let peer = Peer::start(&[
        "ring-consume".into(),
        path.into(),
        "4096".into(),
        count.to_string(),
        N.to_string(),
        "1".into(),
    ])?;
    os::pin(0);
    let mut m = [0xa5u8; N];
    let mut pos = 0;
    let start = Instant::now();
    for i in 0..count {
        set_seq(&mut m, i);
        ring.push(&mut pos, &m);
    }
    let produced = start.elapsed().as_nanos() as u64;
    let (got, consumed, _) = peer.finish()?;
    if got != count {
        return Err(format!("{got} of {count} messages arrived"));
    }
    Ok(consumed.max(produced))
}

pub(super) fn ring_ping_pong(s: &Sizes, payload: usize) -> Result<Row, String> {
    let rtts = by_payload!(payload, ring_ping(s.rtts))?;
    Ok(Row::new("ping-pong", "bare-ring", payload).rtt(rtts))
}

fn ring_ping<const N: usize>(count: u64) -> Result<Vec<u64>, String> {
    let (a, b) = (tmp_path("ring-ping"), tmp_path("ring-pong"));
    let _c = Cleanup(vec![a.clone(), b.clone()]);
    let ping = BareRing::<N>::create(&a, 64).map_err(|e| e.to_string())?;
    let pong = BareRing::<N>::create(&b, 64).map_err(|e| e.to_string())?;
    let peer = Peer::start(&[
        "ring-pong".into(),
        a.clone(),
        b.clone(),
        "64".into(),
        count.to_string(),
        N.to_string(),
        "1".into(),
    ])?;
    os::pin(0);
    let clock = shmq::internals::clock::Clock::new();
    let mut m = [0xa5u8; N];
    let mut back = [0u8; N];
    let (mut wp, mut rp) = (0u64, 0u64);
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..count {
        set_seq(&mut m, i);
        let t0 = clock.now();
        ping.push(&mut wp, &m);
        pong.pop(&mut rp, &mut back);
        rtts.push(clock.now() - t0);
        if !carries(&back, i) {
            return Err(format!("pong {i} came back as another message"));
        }
    }
    peer.finish()?;
    Ok(rtts)
}

pub(super) fn arrayqueue_one_to_one(s: &Sizes, payload: usize) -> Result<Row, String> {
    let ns = by_payload!(payload, arrayqueue_run(s.msgs))?;
    Ok(Row::new("one-to-one", "arrayqueue", payload).rate(s.msgs, ns))
}

/// crossbeam's `ArrayQueue` at its best: the payload inline as a `[u8; N]`
/// (no allocation, no second queue to recycle buffers), a producer thread
/// on CPU 0 and a consumer thread on CPU 1, both busy-polling, every
/// message's sequence number checked. Returns the longer of the producer's
/// time and the consumer's time from its first message.
fn arrayqueue_run<const N: usize>(count: u64) -> Result<u64, String> {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(4096));
    let q2 = q.clone();
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
            if !carries(&m, i) {
                return Err(format!("message {i} arrived as another"));
            }
            // The whole payload is read, as a consumer would (not only the
            // 8 bytes the check looks at).
            std::hint::black_box(&m);
        }
        Ok(start.map_or(0, |s| s.elapsed().as_nanos() as u64))
    });
    os::pin(0);
    let mut m = [0xa5u8; N];
    let start = Instant::now();
    for i in 0..count {
        set_seq(&mut m, i);
        let mut v = m;
        while let Err(back) = q.push(v) {
            v = back;
            std::hint::spin_loop();
        }
    }
    let produced = start.elapsed().as_nanos() as u64;
    let consumed = t.join().map_err(|_| "consumer thread panicked")??;
    Ok(consumed.max(produced))
}

pub(super) fn rtrb_one_to_one(s: &Sizes, payload: usize, chunk: usize) -> Result<Row, String> {
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
                        if !carries(m, i) {
                            return Err(format!("message {i} arrived as another"));
                        }
                        i += 1;
                    }
                    rc.commit_all();
                } else {
                    match c.pop() {
                        Ok(m) => {
                            start.get_or_insert_with(Instant::now);
                            if !carries(&m, i) {
                                return Err(format!("message {i} arrived as another"));
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
    let ns = by_payload!(payload, run(s.msgs, chunk))?;
    let (scenario, transport) = if chunk > 1 {
        ("batched", "rtrb-chunks")
    } else {
        ("one-to-one", "rtrb")
    };
    Ok(Row::new(scenario, transport, payload).rate(s.msgs, ns))
}

pub(super) fn fd_one_to_one(s: &Sizes, payload: usize, socket: bool) -> Result<Row, String> {
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

pub(super) fn fd_ping_pong(s: &Sizes, payload: usize, socket: bool) -> Result<Row, String> {
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
