//! A probe (feature `async`): one producer and one consumer in one process,
//! 64-byte messages through a 1024-slot queue, as blocking calls on two
//! threads, as tasks on tokio's multi-thread runtime (two workers), and as
//! two tasks on a current-thread runtime:
//! `cargo run --release --features async --example async_loop -- 2000000`.
//! Prints messages per second for each. A figure for comparison, not a
//! benchmark with its statistics.
use shmq::{Options, Queue, SendOptions, Timeout};
use std::time::Instant;

fn fresh(path: &str) -> Queue {
    let _ = std::fs::remove_file(path);
    Queue::create(
        path,
        &Options {
            capacity: 1024,
            max_message_size: 64,
            ..Options::default()
        },
    )
    .unwrap()
}

fn report(what: &str, n: u64, start: Instant) {
    let s = start.elapsed().as_secs_f64();
    println!("{what:<34} {:>6.2} M msgs/s", n as f64 / s / 1e6);
}

fn blocking(path: &str, n: u64) {
    let q = fresh(path);
    let p = path.to_string();
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let q = Queue::open(&p).unwrap();
        for _ in 0..n {
            q.send(&[7u8; 64], Timeout::Forever).unwrap();
        }
    });
    let mut buf = [0u8; 64];
    for _ in 0..n {
        let m = q.claim(Timeout::Forever).unwrap();
        m.read_into(&mut buf).unwrap();
        m.ack().unwrap();
    }
    producer.join().unwrap();
    report("blocking, two threads", n, start);
}

fn multi_thread(path: &str, n: u64) {
    let mut q = fresh(path);
    let mut p = Queue::open(path).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let start = Instant::now();
    let producer = rt.spawn(async move {
        let opts = SendOptions::new().timeout(Timeout::Forever);
        for _ in 0..n {
            p.send_async_mut(&[7u8; 64], opts).await.unwrap();
        }
    });
    let consumer = rt.spawn(async move {
        let mut buf = [0u8; 64];
        for _ in 0..n {
            let m = q.claim_async_mut(Timeout::Forever).await.unwrap();
            m.read_into(&mut buf).unwrap();
            m.ack().unwrap();
        }
    });
    rt.block_on(async {
        producer.await.unwrap();
        consumer.await.unwrap();
    });
    report("tokio multi-thread, two tasks", n, start);
}

fn current_thread(path: &str, n: u64) {
    let q = fresh(path);
    let p = Queue::open(path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    local.spawn_local(async move {
        for _ in 0..n {
            p.send_async(&[7u8; 64], Timeout::Forever).await.unwrap();
        }
    });
    local.spawn_local(async move {
        let mut buf = [0u8; 64];
        for _ in 0..n {
            let m = q.claim_async(Timeout::Forever).await.unwrap();
            m.read_into(&mut buf).unwrap();
            m.ack().unwrap();
        }
    });
    rt.block_on(local);
    report("tokio current-thread, two tasks", n, start);
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().unwrap());
    let path = format!("/dev/shm/shmq-async-loop-{}", std::process::id());
    blocking(&path, n);
    multi_thread(&path, n);
    current_thread(&path, n);
    let _ = std::fs::remove_file(&path);
}
