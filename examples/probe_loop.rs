//! A profiling probe: a tight single-handle loop of send → claim → ack:
//! `cargo run --release --example probe_loop -- 5000000 [KEYS]`. With KEYS, every
//! message carries key `i % KEYS + 1` and the next version of its key, so
//! the cost of the key table (hot with few keys, cache- and TLB-cold with a
//! million) shows beside the keyless loop.
use shmq::{Options, Queue, SendOptions, Timeout};
fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let keys: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let path = format!("/dev/shm/shmq-loop-{}", std::process::id());
    let q = Queue::create(
        &path,
        &Options {
            capacity: 4096,
            max_message_size: 64,
            key_capacity: (keys * 2).next_power_of_two().max(16),
            ..Options::default()
        },
    )
    .unwrap();
    let payload = [7u8; 64];
    let mut buf = [0u8; 64];
    if std::env::var_os("SHMQ_LOOP_EMPTY").is_some() {
        // The cost of a poll that finds nothing (what a busy-polling
        // consumer pays between messages).
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(q.claim(Timeout::TryOnce).is_err());
        }
        println!(
            "{:.1} ns per empty claim poll",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        drop(q);
        std::fs::remove_file(&path).unwrap();
        return;
    }
    if let Some(b) = std::env::var("SHMQ_LOOP_BATCH")
        .ok()
        .and_then(|b| b.parse::<usize>().ok())
    {
        // Batches of `b`: send_batch, claim_batch_into, read, ack_batch.
        let msgs = vec![payload; b];
        let mut got = Vec::with_capacity(b);
        let t = std::time::Instant::now();
        let mut done = 0u64;
        while done < n {
            let sent = q.send_batch(&msgs, Timeout::TryOnce).unwrap();
            got.clear();
            q.claim_batch_into(sent, Timeout::TryOnce, &mut got)
                .unwrap();
            for m in &got {
                m.read_into(&mut buf).unwrap();
            }
            q.ack_batch(&got).unwrap();
            done += got.len() as u64;
        }
        drop(got);
        println!(
            "{:.1} ns per message in batches of {b}",
            t.elapsed().as_nanos() as f64 / done as f64
        );
        drop(q);
        std::fs::remove_file(&path).unwrap();
        return;
    }
    let t = std::time::Instant::now();
    for i in 0..n {
        if keys == 0 {
            q.send(&payload, Timeout::TryOnce).unwrap();
        } else {
            let o = SendOptions::new()
                .key(i % keys + 1)
                .timeout(Timeout::TryOnce);
            q.send_with(&payload, &o).unwrap();
        }
        let m = q.claim(Timeout::TryOnce).unwrap();
        m.read_into(&mut buf).unwrap();
        m.ack().unwrap();
    }
    let e = t.elapsed();
    println!(
        "{:.1} ns per send+claim+ack ({})",
        e.as_nanos() as f64 / n as f64,
        if keys == 0 {
            "keyless".to_string()
        } else {
            format!("{keys} keys")
        }
    );
    drop(q);
    std::fs::remove_file(&path).unwrap();
}
