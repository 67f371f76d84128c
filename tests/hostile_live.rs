//! A hostile writer damages a queue file *while* participants in other
//! processes work on it (guarantee G10 of the README): random words and bit flips in
//! every region — the header's mutable words, the participant table, the
//! slots, the key table, the dead-letter area — and offsets pointed outside
//! the file. The participants must keep going or get errors: never a crash
//! (a panic or a signal ends the worker process), never a hang (each worker
//! must end on its own within a watchdog after its deadline).
//!
//! `tests/damaged.rs` damages idle files, one scenario at a time; this one
//! races the damage against live producers and consumers, keyed and
//! keyless, in separate processes.

use shmq::internals::layout::Layout;
use shmq::{Options, Queue, SendOptions, Status, Timeout};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use shmq_testkit::child::{Lifeline, Work};
use shmq_testkit::{unique_path, Rng, TempFile};

/// How long the workers run while the file is damaged.
const RUN: Duration = Duration::from_millis(1500);
/// How long after its deadline a worker may take to end before it counts as
/// hung. Generous: the machine may be loaded.
const WATCHDOG: Duration = Duration::from_secs(60);

fn options() -> Options {
    Options {
        capacity: 32,
        max_message_size: 48,
        key_capacity: 16,
        max_deliveries: 4,
        lease: Duration::from_millis(50),
        ..Options::default()
    }
}

shmq_testkit::helper_test!(WATCHDOG, {
    "producer" => participate,
    "consumer" => participate,
    "inspector" => participate,
});

/// A worker: its role on the queue file for `count` ms. No lifeline: the
/// run is short, and a worker must end by itself.
fn participate(work: &Work, _: &Lifeline) {
    let (role, path) = (work.role.clone(), work.queue.clone());
    let deadline = Instant::now() + Duration::from_millis(work.count);
    // Opening may fail once the file is damaged: retry until the deadline.
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = |s: Status| *statuses.entry(format!("{s:?}")).or_default() += 1;
    let mut n = 0u64;
    while Instant::now() < deadline {
        let q = match Queue::open(&path) {
            Ok(q) => q,
            Err(e) => {
                seen(e.status());
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
        };
        while Instant::now() < deadline {
            n += 1;
            let r = match role.as_str() {
                "producer" => {
                    let o = if n % 3 == 0 {
                        SendOptions::new().key(n % 7 + 1).timeout(Timeout::TryOnce)
                    } else {
                        SendOptions::new().timeout(Duration::from_millis(1))
                    };
                    q.send_with(&n.to_le_bytes(), &o).map(|_| ())
                }
                "consumer" => q.claim(Duration::from_millis(1)).and_then(|m| {
                    let _ = m.data();
                    match n % 5 {
                        0 => m.nack(Duration::ZERO),
                        1 => m.reject("hostile test"),
                        _ => m.ack(),
                    }
                }),
                _ => {
                    // An inspector: stats, verify, recover, dead letters.
                    let s = q.stats();
                    for h in &s.histograms {
                        let _ = (h.quantile(0.99), h.mean());
                    }
                    let _ = q.verify();
                    let _ = q.dlq_list();
                    q.recover().map(|_| ())
                }
            };
            if let Err(e) = r {
                seen(e.status());
                if e.status() == Status::Corrupt || e.status() == Status::Incompatible {
                    // Reattach: a fresh handle validates the file again.
                    break;
                }
            }
        }
    }
    eprintln!("{role}: {n} operations, errors {statuses:?}");
}

fn spawn(role: &str, path: &Path, millis: u64) -> Child {
    Work::new(role, path, Path::new("")).count(millis).spawn()
}

/// The regions a hostile writer aims at: `[start, end)` byte ranges.
fn regions(l: &Layout) -> Vec<(&'static str, usize, usize)> {
    vec![
        // The header's mutable words (cursors, wait points, side-path
        // words); its parameters are checksummed and copied at open.
        ("header", 0, l.participants_offset),
        ("participants", l.participants_offset, l.slots_offset),
        ("slots", l.slots_offset, l.keys_offset),
        ("keys", l.keys_offset, l.dlq_offset),
        ("dead letters", l.dlq_offset, l.file_size),
    ]
}

/// Runs two producers, two consumers and an inspector on a fresh file while
/// this process damages `region` until the run ends; every worker must end
/// by itself, with exit status 0.
fn race_damage(name: &str, pick: impl Fn(&Layout) -> (usize, usize), seed: u64) {
    let path = unique_path("hostile-live");
    let _g = TempFile(path.clone());
    let q = Queue::create(&path, &options()).expect("create");
    let (start, end) = pick(q.layout());
    let size = q.layout().file_size;
    drop(q);
    let millis = RUN.as_millis() as u64;
    let mut kids: Vec<(&str, Child)> =
        ["producer", "producer", "consumer", "consumer", "inspector"]
            .iter()
            .map(|r| (*r, spawn(r, &path, millis)))
            .collect();
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for damage");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let until = Instant::now() + RUN;
    let mut writes = 0u64;
    // Let the workers attach and get going before the first blow.
    std::thread::sleep(Duration::from_millis(100));
    while Instant::now() < until {
        let off = ((start + rng.index(end - start)) & !7) as u64;
        let v: u64 = match rng.index(6) {
            0 => rng.next(),
            1 => 1 << rng.index(64),
            2 => u64::MAX,
            3 => 0,
            // An offset or index far outside the file.
            4 => (size as u64).wrapping_mul(1 + rng.index(1 << 20) as u64),
            _ => rng.next() & 0xffff,
        };
        let v = if rng.index(2) == 0 {
            // A bit flip of what is there.
            let mut b = [0u8; 8];
            let _ = f.read_at(&mut b, off);
            u64::from_le_bytes(b) ^ (1 << rng.index(64))
        } else {
            v
        };
        f.write_all_at(&v.to_le_bytes(), off).expect("damage");
        writes += 1;
        std::thread::sleep(Duration::from_micros(200 + rng.index(800) as u64));
    }
    let watchdog = Instant::now() + WATCHDOG;
    for (role, kid) in &mut kids {
        let status = loop {
            if let Some(s) = kid.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > watchdog {
                let _ = kid.kill();
                let _ = kid.wait();
                panic!("{name}: a {role} hung ({writes} damaging writes)");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "{name}: a {role} crashed ({status:?}, signal {:?}) after {writes} damaging writes",
            status.signal()
        );
    }
    eprintln!("{name}: {writes} damaging writes, every participant ended cleanly");
}

#[test]
fn damage_in_every_region_while_participants_work() {
    let probe = unique_path("hostile-probe");
    let _g = TempFile(probe.clone());
    let names: Vec<&'static str> = {
        let q = Queue::create(&probe, &options()).expect("create");
        regions(q.layout()).iter().map(|r| r.0).collect()
    };
    for (n, name) in names.into_iter().enumerate() {
        for seed in 1..=2u64 {
            race_damage(
                name,
                move |l| {
                    let (_, s, e) = regions(l)[n];
                    (s, e)
                },
                seed + 17 * n as u64,
            );
        }
    }
}
