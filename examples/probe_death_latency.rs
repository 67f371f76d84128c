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
//!   on a second handle) and spends WORK_US µs on each;
//! - `late`: waits in `claim(Timeout::Forever)` as `sleep` does, but the
//!   survivor starts first, on a queue holding only a message delayed by
//!   60 s, so it sleeps past the 2 ms beat (nothing could be orphaned);
//!   then the held message is sent and a polling holder claims it (the
//!   sleeper, woken by the send, finds it taken). Runs where the sleeper
//!   won the race for it are run again.
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

/// Polls for the held message (for `late`): says `polling` once attached,
/// then `ready` once it holds it, or `lost` if the sleeper took it.
fn late_holder(path: &str) {
    let q = Queue::open(path).expect("open");
    println!("polling");
    std::io::stdout().flush().expect("stdout");
    let until = Instant::now() + Duration::from_secs(2);
    let held = loop {
        if let Ok(m) = q.claim(Timeout::TryOnce) {
            break m;
        }
        if Instant::now() > until {
            println!("lost");
            std::io::stdout().flush().expect("stdout");
            return;
        }
    };
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
            "sleep" | "late" => q.claim(Timeout::Forever).expect("claim"),
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
        Some("late-holder") => return late_holder(&a[2]),
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
    let late = mode == "late";
    let mut lost = 0;
    let mut i = 0;
    while lat.len() < runs {
        i += 1;
        let path = format!("/dev/shm/shmq-death-latency-{}-{i}", std::process::id());
        let opts = Options {
            capacity: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        };
        let q = Queue::create(&path, &opts).expect("create");
        let start = |role: &str, args: &[&str]| {
            let mut c = Command::new(&exe)
                .arg(role)
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a child");
            let out = BufReader::new(c.stdout.take().expect("child stdout"));
            (c, out)
        };
        let (mut h, mut s, mut sout);
        if late {
            let delayed = shmq::SendOptions {
                delay: Duration::from_secs(60),
                ..Default::default()
            };
            q.send_with(b"later", &delayed).expect("send delayed");
            (s, sout) = start("survivor", &[&path, &mode, &work]);
            assert_eq!(line(&mut sout), "ready");
            // The survivor goes to sleep: long, only a delayed message is taken.
            std::thread::sleep(Duration::from_millis(30));
            let mut hout;
            (h, hout) = start("late-holder", &[&path]);
            assert_eq!(line(&mut hout), "polling");
            q.send(b"held", Timeout::TryOnce).expect("send");
            if line(&mut hout) != "ready" {
                // The sleeper took it: not the case measured.
                lost += 1;
                let _ = s.kill();
                let _ = s.wait();
                let _ = h.wait();
                drop(q);
                let _ = std::fs::remove_file(&path);
                continue;
            }
        } else {
            q.send(b"held", Timeout::TryOnce).expect("send");
            let mut hout;
            (h, hout) = start("holder", &[&path]);
            assert_eq!(line(&mut hout), "ready");
            (s, sout) = start("survivor", &[&path, &mode, &work]);
            assert_eq!(line(&mut sout), "ready");
        }
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
         the survivor claimed it as its message number {}..={} (median {}){}",
        at(0.5),
        at(0.99),
        at(1.0),
        handled[0],
        handled[handled.len() - 1],
        handled[handled.len() / 2],
        if late {
            format!("; {lost} runs where the sleeper won the race were run again")
        } else {
            String::new()
        }
    );
}
