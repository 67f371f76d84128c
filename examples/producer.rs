//! A producer: sends COUNT orders to the queue at PATH (creating it if it
//! does not exist), waiting for room when the queue is full (back-pressure),
//! then STOPS "stop" messages, one per consumer.
//!
//! ```sh
//! cargo run --release --example producer -- PATH [COUNT] [STOPS]
//! ```
//!
//! With `examples/consumer.rs` it is the Rust twin of the C pair in
//! `examples/c/`: start the consumers, then the producer; each order goes to
//! exactly one consumer.
use shmq::{Counter, Options, Queue, Status, Timeout};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: producer PATH [COUNT] [STOPS]");
        return ExitCode::from(2);
    };
    let count: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let stops: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    match produce(path, count, stops) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error names the file, the operation and the cause.
            eprintln!("producer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn produce(path: &str, count: u64, stops: u64) -> shmq::Result<()> {
    let q = match Queue::open(path) {
        Err(e) if e.status() == Status::NotFound => {
            let opts = Options {
                capacity: 64,
                max_message_size: 128,
                ..Options::default()
            };
            // Another producer may create it at the same moment.
            match Queue::create(path, &opts) {
                Err(e) if e.status() == Status::Exists => Queue::open(path)?,
                created => created?,
            }
        }
        opened => opened?,
    };
    for i in 0..count {
        // Timeout::Forever: wait for room as long as it takes.
        q.send(format!("order {i}").as_bytes(), Timeout::Forever)?;
    }
    for _ in 0..stops {
        q.send(b"stop", Timeout::Forever)?;
    }
    let s = q.stats();
    eprintln!(
        "producer: sent {count}; queue depth {}, refused full {}",
        s.depth,
        s.counter(Counter::Full)
    );
    Ok(())
}
