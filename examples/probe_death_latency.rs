//! A profiling probe: how long a SIGKILLed consumer's message stays
//! unclaimable, by what the surviving consumer is doing:
//! `cargo run --release --example probe_death_latency -- MODE [RUNS] [WORK_US]`.
//!
//! Each run: a fresh queue (lease 60 s, so only death detection can bring
//! the message back) holds one message; a holder process claims it and
//! waits; a survivor process starts; the holder is SIGKILLed; the figure is
//! the time from the SIGKILL to the survivor's claim of that message.
//! MODE is what the survivor does meanwhile:
//!
//! - `sleep`: waits in `claim(Timeout::Forever)` (idle consumer);
//! - `poll`: calls `claim(Timeout::TryOnce)` in a loop;
//! - `busy`: always finds another message (it sends one before each claim
//!   on a second handle) and spends WORK_US µs on each.
//!
//! The survivor also says how many messages it had claimed, the dead one's
//! included. `docs/RELIABILITY.md` explains the figures: `busy` is bounded by
//! 1024 of the survivor's own operations (a claim and an ack count one
//! each), not by time.
use shmq::{Options, Queue, Timeout};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn holder(path: &str) {
    let q = Queue::open(path).expect("open");
    // Held until this process is killed (or the sleep ends).
    let held = q.claim(Duration::from_secs(5)).expect("claim");
    assert_eq!(held.data().expect("data"), b"held");
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    std::thread::sleep(Duration::from_secs(60));
}

fn survivor(path: &str, mode: &str, work: Duration) {
    let q = Queue::open(path).expect("open");
    let p = Queue::open(path).expect("open");
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    // Messages claimed, the dead one's included.
    let mut handled = 0u64;
    loop {
        let m = match mode {
            "sleep" => q.claim(Timeout::Forever).expect("claim"),
            "poll" => match q.claim(Timeout::TryOnce) {
                Ok(m) => m,
                Err(_) => continue,
            },
            _ => {
                let _ = p.send(b"filler", Timeout::TryOnce);
                match q.claim(Timeout::TryOnce) {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            }
        };
        let at = shmq::monotonic_ns();
        handled += 1;
        if m.data().expect("data") == b"held" {
            println!("{at} {handled}");
            std::io::stdout().flush().expect("stdout");
            m.ack().expect("ack");
            return;
        }
        let until = Instant::now() + work;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        m.ack().expect("ack");
    }
}

fn line(r: &mut impl BufRead) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read a line");
    l.trim().to_string()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("holder") => return holder(&a[2]),
        Some("survivor") => {
            let work = Duration::from_micros(a[4].parse().expect("work"));
            return survivor(&a[2], &a[3], work);
        }
        _ => {}
    }
    let mode = a.get(1).cloned().unwrap_or_else(|| "sleep".into());
    let runs: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let work = a.get(3).cloned().unwrap_or_else(|| "0".into());
    let exe = std::env::current_exe().expect("this program");
    let mut lat = Vec::new();
    let mut handled = Vec::new();
    for i in 0..runs {
        let path = format!("/dev/shm/shmq-death-latency-{}-{i}", std::process::id());
        let opts = Options {
            capacity: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        };
        let q = Queue::create(&path, &opts).expect("create");
        q.send(b"held", Timeout::TryOnce).expect("send");
        let mut h = Command::new(&exe)
            .args(["holder", &path])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the holder");
        let mut hout = BufReader::new(h.stdout.take().expect("holder stdout"));
        assert_eq!(line(&mut hout), "ready");
        let mut s = Command::new(&exe)
            .args(["survivor", &path, &mode, &work])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the survivor");
        let mut sout = BufReader::new(s.stdout.take().expect("survivor stdout"));
        assert_eq!(line(&mut sout), "ready");
        std::thread::sleep(Duration::from_millis(30));
        let killed = shmq::monotonic_ns();
        h.kill().expect("kill the holder");
        h.wait().expect("reap the holder");
        let l = line(&mut sout);
        let (claimed, n) = l.split_once(' ').expect("claim time and count");
        let claimed: u64 = claimed.parse().expect("a claim time");
        lat.push(claimed.saturating_sub(killed));
        handled.push(n.parse::<u64>().expect("a count"));
        s.wait().expect("the survivor");
        drop(q);
        let _ = std::fs::remove_file(&path);
    }
    lat.sort_unstable();
    handled.sort_unstable();
    let at =
        |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1e6;
    println!(
        "{mode} (work {work} µs): {runs} runs, SIGKILL to claim p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         the survivor claimed it as its message number {}..={} (median {})",
        at(0.5),
        at(0.99),
        at(1.0),
        handled[0],
        handled[handled.len() - 1],
        handled[handled.len() / 2]
    );
}
