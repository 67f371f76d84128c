//! Criterion benchmarks of the engine: send → claim → ack between two
//! processes (64-byte payloads), beside crossbeam's `ArrayQueue` between two
//! threads, in the same run; and the in-process building blocks.
//!
//! `cargo bench --bench engine`. The consumer process is this benchmark
//! binary re-executed with `SHMQ_BENCH_CONSUMER=<path>`.

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use shmq::{Options, Queue, Timeout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOAD: [u8; 64] = [7u8; 64];
const CAPACITY: u64 = 4096;

/// The consumer side, in its own process: claim and ack until killed.
fn consumer_main(path: &str) {
    let q = Queue::open(path).expect("consumer open");
    let mut buf = [0u8; 64];
    loop {
        match q.claim(Duration::from_millis(100)) {
            Ok(m) => {
                let n = m.read_into(&mut buf).expect("read");
                assert_eq!(n, 64);
                m.ack().expect("ack");
            }
            Err(e) if e.status() == shmq::Status::Timeout => {}
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn two_process(c: &mut Criterion) {
    let path = format!("/dev/shm/shmq-bench-{}", std::process::id());
    let _ = std::fs::remove_file(&path);
    let opts = Options {
        capacity: CAPACITY,
        max_message_size: 64,
        ..Options::default()
    };
    let q = Queue::create(&path, &opts).expect("create");
    let _child = Child(
        std::process::Command::new(std::env::current_exe().unwrap())
            .env("SHMQ_BENCH_CONSUMER", &path)
            .spawn()
            .expect("spawn consumer"),
    );
    let mut g = c.benchmark_group("one-to-one 64B");
    g.throughput(Throughput::Elements(1));
    let mut sent = 0u64;
    g.bench_function("shmq send/claim/ack, 2 processes", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                q.send(&PAYLOAD, Timeout::Forever).unwrap();
            }
            sent += iters;
            while q.stats().counter(shmq::Counter::Acked) < sent {
                std::hint::spin_loop();
            }
            start.elapsed()
        })
    });
    g.bench_function("crossbeam ArrayQueue, 2 threads", |b| {
        let aq = Arc::new(ArrayQueue::<[u8; 64]>::new(CAPACITY as usize));
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (aq, done, stop) = (aq.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(m) = aq.pop() {
                        assert_eq!(m[0], 7);
                        done.fetch_add(1, Ordering::Release);
                    }
                }
            })
        };
        let mut pushed = 0u64;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                while aq.push(PAYLOAD).is_err() {
                    std::hint::spin_loop();
                }
            }
            pushed += iters;
            while done.load(Ordering::Acquire) < pushed {
                std::hint::spin_loop();
            }
            start.elapsed()
        });
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    });
    g.finish();
    drop(q);
    let _ = std::fs::remove_file(&path);
}

fn building_blocks(c: &mut Criterion) {
    let path = format!("/dev/shm/shmq-bench-blocks-{}", std::process::id());
    let _ = std::fs::remove_file(&path);
    let opts = Options {
        capacity: 1024,
        max_message_size: 64,
        key_capacity: 1 << 16,
        ..Options::default()
    };
    let q = Queue::create(&path, &opts).expect("create");
    let mut g = c.benchmark_group("one handle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("send+claim+ack, metrics on", |b| {
        b.iter(|| {
            q.send(&PAYLOAD, Timeout::TryOnce).unwrap();
            q.claim(Timeout::TryOnce).unwrap().ack().unwrap();
        })
    });
    q.set_metrics(false);
    g.bench_function("send+claim+ack, metrics off", |b| {
        b.iter(|| {
            q.send(&PAYLOAD, Timeout::TryOnce).unwrap();
            q.claim(Timeout::TryOnce).unwrap().ack().unwrap();
        })
    });
    q.set_metrics(true);
    let mut key = 0u64;
    g.bench_function("keyed send+claim+ack over 65536 keys", |b| {
        b.iter(|| {
            key = key % 65536 + 1;
            let opts = shmq::SendOptions::new().key(key);
            q.send_with(&PAYLOAD, &opts).unwrap();
            q.claim(Timeout::TryOnce).unwrap().ack().unwrap();
        })
    });
    g.bench_function("batch of 32: send_batch+claim_batch+ack_batch", |b| {
        let batch: Vec<&[u8]> = vec![&PAYLOAD[..]; 32];
        b.iter_batched(
            || (),
            |_| {
                q.send_batch(&batch, Timeout::TryOnce).unwrap();
                let ms = q.claim_batch(32, Timeout::TryOnce).unwrap();
                q.ack_batch(&ms).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let mut h = c.benchmark_group("histogram");
    h.bench_function("bucket_of", |b| {
        let mut v = 1u64;
        b.iter(|| {
            v = v.wrapping_mul(6364136223846793005).wrapping_add(1);
            shmq::internals::metrics::bucket_of(std::hint::black_box(v >> 20))
        })
    });
    h.finish();
    // What the engine's floor is made of: one locked read-modify-write on a
    // line this core owns (the engine makes six per message: a CAS each for
    // reserve, commit, claim and ack on the slot word, and one per cursor),
    // and the clock read for leases.
    let mut p = c.benchmark_group("primitives");
    let word = std::sync::atomic::AtomicU64::new(0);
    p.bench_function("CAS on an owned line (SeqCst)", |b| {
        b.iter(|| {
            let v = word.load(std::sync::atomic::Ordering::Relaxed);
            let _ = word.compare_exchange(
                v,
                v + 1,
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::Relaxed,
            );
        })
    });
    p.bench_function("plain release store", |b| {
        b.iter(|| {
            word.store(
                std::hint::black_box(7),
                std::sync::atomic::Ordering::Release,
            )
        })
    });
    p.bench_function("CLOCK_MONOTONIC_COARSE", |b| {
        b.iter(shmq::internals::clock::coarse_ns)
    });
    p.finish();
    drop(q);
    let _ = std::fs::remove_file(&path);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = two_process, building_blocks
}

fn main() {
    if let Ok(path) = std::env::var("SHMQ_BENCH_CONSUMER") {
        consumer_main(&path);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
