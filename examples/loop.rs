//! A tight single-handle loop of send → claim → ack, for profiling:
//! `cargo run --release --example loop -- 5000000`.
use shmq::{Options, Queue, Timeout};
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let path = format!("/dev/shm/shmq-loop-{}", std::process::id());
    let q = Queue::create(
        &path,
        &Options {
            capacity: 4096,
            max_message_size: 64,
            ..Options::default()
        },
    )
    .unwrap();
    let payload = [7u8; 64];
    let mut buf = [0u8; 64];
    let t = std::time::Instant::now();
    for _ in 0..n {
        q.send(&payload, Timeout::TryOnce).unwrap();
        let m = q.claim(Timeout::TryOnce).unwrap();
        m.read_into(&mut buf).unwrap();
        m.ack().unwrap();
    }
    let e = t.elapsed();
    println!(
        "{:.1} ns per send+claim+ack",
        e.as_nanos() as f64 / n as f64
    );
    drop(q);
    std::fs::remove_file(&path).unwrap();
}
