//! A consumer: claims messages from the queue at PATH, prints each order on
//! standard output and acks it, until it claims a "stop" message. Several
//! consumers compete: each message goes to one of them.
//!
//! ```sh
//! cargo run --release --example consumer -- PATH
//! ```
//!
//! The queue must exist (`examples/producer.rs` creates it). A consumer that
//! dies holding a message does not lose it: the message is claimable again
//! once a survivor's next call sees the death.
use shmq::{Queue, Timeout};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: consumer PATH");
        return ExitCode::from(2);
    };
    match consume(&path) {
        Ok(n) => {
            eprintln!("consumer: {n} orders");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("consumer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn consume(path: &str) -> shmq::Result<u64> {
    let q = Queue::open(path)?;
    let mut out = std::io::stdout().lock();
    let mut orders = 0;
    loop {
        // Sleeps in the kernel (a futex in the file) until a message comes.
        let m = q.claim(Timeout::Forever)?;
        // A private copy of the payload, checked for tearing.
        let data = m.data()?;
        if data == b"stop" {
            m.ack()?;
            return Ok(orders);
        }
        writeln!(out, "{}", String::from_utf8_lossy(&data)).expect("writing to stdout");
        // Acked once its work is done: a consumer killed before this line
        // leaves the message to be delivered again.
        m.ack()?;
        orders += 1;
    }
}
