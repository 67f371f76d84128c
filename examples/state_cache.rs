//! A keyed state cache: a publisher sends the price of each item as it
//! changes (the item is the message's key, each update the key's next
//! version), and a subscriber keeps the latest price of every item. The
//! queue is latest-only: a newer update of an item replaces the one still
//! waiting, so a slow subscriber skips prices that are already out of date,
//! and an update older than one already acked is refused (`Stale`), so the
//! cache never goes back to an older price.
//!
//! ```sh
//! cargo run --release --example state_cache -- PATH [ROUNDS]
//! ```
//!
//! The publisher runs on its own thread with its own handle (a handle is one
//! participant; in a real system it would be another process that opens
//! PATH). The file is removed at the end.
use shmq::{Counter, Options, Queue, SendOptions, Status, Timeout};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

/// The items whose prices are published: keys 1 to ITEMS.
const ITEMS: u64 = 8;

/// The price of `item` in `round`, in cents.
fn price(item: u64, round: u64) -> u64 {
    100 * item + round
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().cloned() else {
        eprintln!("usage: state_cache PATH [ROUNDS]");
        return ExitCode::from(2);
    };
    let rounds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let result = run(&path, rounds);
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("state_cache: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, rounds: u64) -> shmq::Result<()> {
    let opts = Options {
        capacity: 64,
        max_message_size: 64,
        // One key table entry per item (and room to spare).
        key_capacity: 4 * ITEMS,
        latest_only: true,
        ..Options::default()
    };
    let q = Queue::create(path, &opts)?;

    let publisher = {
        let path = path.to_owned();
        std::thread::spawn(move || publish(&path, rounds))
    };

    // The subscriber: item -> (version, price in cents).
    let mut cache: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut updates = 0u64;
    loop {
        let m = q.claim(Duration::from_secs(10))?;
        if m.key() == 0 {
            // The publisher's unkeyed "done": every update was sent before it.
            m.ack()?;
            break;
        }
        let cents: u64 = String::from_utf8_lossy(&m.data()?)
            .parse()
            .expect("a price in cents");
        // The queue hands out each item's updates in version order and never
        // one older than the last acked, so this check never fails; a cache
        // fed by anything else would need it.
        let newer = cache.get(&m.key()).map_or(true, |&(v, _)| m.version() > v);
        assert!(
            newer,
            "item {} went back to version {}",
            m.key(),
            m.version()
        );
        cache.insert(m.key(), (m.version(), cents));
        m.ack()?;
        updates += 1;
    }
    publisher.join().expect("the publisher panicked")?;

    for (item, (version, cents)) in &cache {
        println!(
            "item {item}: {}.{:02} (version {version})",
            cents / 100,
            cents % 100
        );
    }
    // An update that arrives late, older than what the cache holds, is
    // refused at the send: nothing stale is queued.
    let late = q.send_with(b"101", &SendOptions::new().key(1).version(1));
    match late {
        Err(e) if e.status() == Status::Stale => {
            println!("a late update of item 1 (version 1): refused, stale")
        }
        other => panic!("a late update was not refused: {other:?}"),
    }
    let replaced = q.stats().counter(Counter::Conflated);
    println!(
        "{updates} updates delivered, {replaced} replaced while waiting, of {} sent",
        rounds * ITEMS
    );
    Ok(())
}

/// Sends `rounds` prices of every item, each with the item's next version
/// (version 0 asks the queue for it), then an unkeyed "done".
fn publish(path: &str, rounds: u64) -> shmq::Result<()> {
    let q = Queue::open(path)?;
    for round in 1..=rounds {
        for item in 1..=ITEMS {
            let update = SendOptions::new()
                .key(item)
                .version(0)
                .timeout(Timeout::Forever);
            let sent = q.send_with(price(item, round).to_string().as_bytes(), &update)?;
            debug_assert_eq!(sent.version, round);
        }
    }
    q.send(b"done", Timeout::Forever)?;
    Ok(())
}
