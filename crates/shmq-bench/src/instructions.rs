//! `shmq bench --instructions`: instructions per message, counted by
//! callgrind, of shmq and of the in-process references, one process (one
//! thread), 64-byte payloads.
//!
//! Each loop runs twice under `valgrind --tool=callgrind`, for `N1` and
//! `N2` messages, and the figure is the marginal count
//! `(Ir(N2) - Ir(N1)) / (N2 - N1)`: what starting the process, creating
//! the queue and tearing down cost is the same in both runs and cancels
//! out. Counts are exact, the same on a busy machine as on a quiet one, so
//! these figures track the cost of the code path where timings drown in
//! noise.
//!
//! The loops: shmq through the C ABI (`c_loop.c`, compiled at run time
//! against `libshmq.a`, as `foreign` builds its C peers), one message at a
//! time (`shmq_send` → `shmq_claim_copy` → `shmq_ack`) and in batches of 32
//! (`shmq_send_batch` → `shmq_claim_packed` → `shmq_ack_batch`); shmq from
//! Rust (send → claim → read → ack, keyless and over 64 keys); crossbeam's
//! `ArrayQueue<[u8; 64]>` push + pop; rtrb push + pop; rtrb chunks of 32.
//! The Rust loops are the hidden subcommand `shmq __bench-loop NAME COUNT`
//! ([`bench_loop`]), so that callgrind runs exactly that loop. Every
//! message carries its sequence number and is checked; `black_box` keeps
//! the compiler from dropping the copies.

use super::foreign::{Foreign, Skip};
use super::shmq_runs::one_to_one_options;
use super::{carries, set_seq, tmp_path, Cleanup, Row};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;

/// Payload bytes of every loop.
const PAYLOAD: usize = 64;
/// Messages per batch of the batched loops.
const BATCH: usize = 32;
/// Keys the keyed loop cycles through.
const KEYS: u64 = 64;

/// The message counts of the two runs of each loop (multiples of
/// [`BATCH`]).
const COUNTS: (u64, u64) = (96_000, 288_000);
/// The same with `--quick` (a check that every loop runs, for CI).
const QUICK_COUNTS: (u64, u64) = (3_200, 9_600);

/// The target for a ratio to a reference.
struct Target {
    reference: (&'static str, &'static str),
    bound: f64,
}

/// One loop: its row's scenario and transport, what it runs, and the
/// target of its ratio (if it has one).
struct Loop {
    scenario: &'static str,
    transport: &'static str,
    what: &'static str,
    run: Runner,
    target: Option<Target>,
}

enum Runner {
    /// `shmq __bench-loop NAME COUNT`.
    Rust(&'static str),
    /// `c_loop NAME PATH COUNT`.
    C(&'static str),
}

fn loops() -> Vec<Loop> {
    vec![
        Loop {
            scenario: "instructions-c-abi",
            transport: "shmq",
            what: "C ABI: shmq_send -> shmq_claim_copy -> shmq_ack",
            run: Runner::C("single"),
            target: Some(Target {
                reference: ("instructions", "arrayqueue"),
                bound: 3.0,
            }),
        },
        Loop {
            scenario: "instructions-c-abi-batched",
            transport: "shmq",
            what: "C ABI, 32 at a time: shmq_send_batch -> shmq_claim_packed -> shmq_ack_batch",
            run: Runner::C("batch"),
            target: Some(Target {
                reference: ("instructions-batched", "rtrb-chunks"),
                bound: 2.0,
            }),
        },
        Loop {
            scenario: "instructions",
            transport: "shmq",
            what: "Rust: send -> claim -> read_into -> ack",
            run: Runner::Rust("shmq"),
            target: None,
        },
        Loop {
            scenario: "instructions-keyed",
            transport: "shmq",
            what: "Rust, keys cycled over 64: send_with(key) -> claim -> read_into -> ack",
            run: Runner::Rust("shmq-keyed"),
            target: None,
        },
        Loop {
            scenario: "instructions",
            transport: "arrayqueue",
            what: "crossbeam ArrayQueue<[u8; 64]>: push, pop",
            run: Runner::Rust("arrayqueue"),
            target: None,
        },
        Loop {
            scenario: "instructions",
            transport: "rtrb",
            what: "rtrb: push, pop",
            run: Runner::Rust("rtrb"),
            target: None,
        },
        Loop {
            scenario: "instructions-batched",
            transport: "rtrb-chunks",
            what: "rtrb: write chunk of 32, read chunk of 32",
            run: Runner::Rust("rtrb-chunks"),
            target: None,
        },
    ]
}

/// The valgrind to run: `$SHMQ_VALGRIND` or `valgrind`.
fn valgrind() -> Result<String, String> {
    let v = std::env::var("SHMQ_VALGRIND").unwrap_or_else(|_| "valgrind".into());
    match Command::new(&v).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(v),
        _ => Err(format!(
            "--instructions counts instructions with callgrind, and valgrind ({v}) \
             is not installed or does not run: install valgrind \
             (e.g. `apt-get install valgrind`) and run again"
        )),
    }
}

/// Runs `--instructions`: every loop twice under callgrind; returns the
/// rows (with `instructions_per_msg`, the ratios and the targets).
pub(super) fn run(quick: bool) -> Result<Vec<Row>, String> {
    let valgrind = valgrind()?;
    let (n1, n2) = if quick { QUICK_COUNTS } else { COUNTS };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let foreign = Foreign::new();
    let scratch = std::env::temp_dir().join(format!("shmq-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut rows = Vec::new();
    let all = loops();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(all.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    for l in &all {
        bar.set_message(l.what);
        let mut row = Row::new(l.scenario, l.transport, PAYLOAD);
        let cmd = |count: u64, queue: &str, out: &Path| -> Result<Command, Skip> {
            let mut c = Command::new(&valgrind);
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()));
            match l.run {
                Runner::Rust(name) => {
                    c.arg(&exe).args(["__bench-loop", name, &count.to_string()]);
                }
                Runner::C(name) => {
                    c.arg(foreign.c_loop()?)
                        .args([name, queue, &count.to_string()]);
                }
            }
            Ok(c)
        };
        let mut ir = Vec::new();
        let mut skipped = None;
        for n in [n1, n2] {
            let queue = tmp_path(&format!("callgrind-{n}"));
            let _q = Cleanup(vec![queue.clone()]);
            let out = scratch.join(format!("callgrind.{n}.out"));
            match cmd(n, &queue, &out) {
                Ok(c) => ir.push(callgrind(c, &out)?),
                Err(Skip(why)) if why.starts_with("FAILED") => return Err(why),
                Err(Skip(why)) => {
                    skipped = Some(why);
                    break;
                }
            }
        }
        match skipped {
            Some(why) => {
                row.note = format!("skipped: {why}");
                eprintln!("shmq bench --instructions: {} skipped: {why}", l.what);
            }
            None => {
                let per = (ir[1] as f64 - ir[0] as f64) / (n2 - n1) as f64;
                row.instructions_per_msg = Some(per);
                row.note = format!("{}; marginal Ir over {n1} -> {n2} msgs", l.what);
            }
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);
    ratios(&all, &mut rows);
    print_table(&rows);
    Ok(rows)
}

/// Runs `cmd` (callgrind, writing to `out_file`) and returns the
/// instructions it counted (the `summary:` line of its output file).
fn callgrind(mut cmd: Command, out_file: &Path) -> Result<u64, String> {
    let _ = std::fs::remove_file(out_file);
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.starts_with("=="))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let text =
        std::fs::read_to_string(out_file).map_err(|e| format!("{}: {e}", out_file.display()))?;
    let _ = std::fs::remove_file(out_file);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no instruction total in callgrind's output of {cmd:?}"))
}

/// Each target's ratio: this loop's count / its reference's.
fn ratios(loops: &[Loop], rows: &mut [Row]) {
    let per = |rows: &[Row], (sc, t): (&str, &str)| {
        rows.iter()
            .find(|r| r.scenario == sc && r.transport == t)
            .and_then(|r| r.instructions_per_msg)
    };
    let snapshot = rows.to_vec();
    for (l, row) in loops.iter().zip(rows.iter_mut()) {
        let Some(t) = &l.target else { continue };
        let ratio = row
            .instructions_per_msg
            .zip(per(&snapshot, t.reference))
            .map(|(a, b)| a / b);
        row.reference = Some(format!("{} {}", t.reference.0, t.reference.1));
        row.target = Some(format!("<= {}", t.bound));
        row.ratio = ratio;
        row.meets_target = ratio.map(|r| r <= t.bound);
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<27} {:<12} {:>10} {:>7} {:<25} {:<7} loop",
        "scenario", "transport", "instr/msg", "ratio", "vs", "target"
    );
    for r in rows {
        println!(
            "{:<27} {:<12} {:>10} {:>7} {:<25} {:<7} {}{}",
            r.scenario,
            r.transport,
            r.instructions_per_msg
                .map_or("-".into(), |x| format!("{x:.1}")),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.reference.clone().unwrap_or_default(),
            r.target.clone().unwrap_or_default(),
            match r.meets_target {
                Some(true) => "met. ",
                Some(false) => "MISSED. ",
                None => "",
            },
            r.note
        );
    }
}

/// `shmq __bench-loop NAME COUNT`: one of the Rust loops, COUNT messages,
/// in this process; what callgrind counts. Returns the exit code.
pub fn bench_loop(args: &[String]) -> i32 {
    let name = args.first().map(String::as_str).unwrap_or("");
    let count: Option<u64> = args.get(1).and_then(|c| c.parse().ok());
    let Some(count) = count else {
        eprintln!("usage: shmq __bench-loop NAME COUNT");
        return 2;
    };
    let r = match name {
        "shmq" => shmq_loop(count, 0),
        "shmq-keyed" => shmq_loop(count, KEYS),
        "arrayqueue" => arrayqueue_loop(count),
        "rtrb" => rtrb_loop(count),
        "rtrb-chunks" => rtrb_chunks_loop(count),
        _ => Err(format!("unknown loop {name:?}")),
    };
    match r {
        Ok(()) => {
            println!("ok {count}");
            0
        }
        Err(e) => {
            eprintln!("shmq __bench-loop {name}: {e}");
            2
        }
    }
}

fn wrong(i: u64) -> String {
    format!("message {i} came back as another")
}

/// send → claim → read_into → ack, one message at a time, on a queue of
/// the one-to-one options (with a key table for `keys` keys).
fn shmq_loop(count: u64, keys: u64) -> Result<(), String> {
    let path = tmp_path(&format!("loop-{keys}"));
    let _c = Cleanup(vec![path.clone()]);
    let _ = std::fs::remove_file(&path);
    let q = shmq::Queue::create(&path, &one_to_one_options(PAYLOAD, keys))
        .map_err(|e| e.to_string())?;
    let mut m = [0xa5u8; PAYLOAD];
    let mut out = [0u8; PAYLOAD];
    for i in 0..count {
        set_seq(&mut m, i);
        if keys == 0 {
            q.send(&m, shmq::Timeout::TryOnce)
        } else {
            let o = shmq::SendOptions::new()
                .key(i % keys + 1)
                .timeout(shmq::Timeout::TryOnce);
            q.send_with(&m, &o)
        }
        .map_err(|e| e.to_string())?;
        let c = q.claim(shmq::Timeout::TryOnce).map_err(|e| e.to_string())?;
        let n = c.read_into(&mut out).map_err(|e| e.to_string())?;
        if n != PAYLOAD || !carries(black_box(&out), i) {
            return Err(wrong(i));
        }
        c.ack().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// crossbeam `ArrayQueue<[u8; 64]>`: push, pop.
fn arrayqueue_loop(count: u64) -> Result<(), String> {
    let q = crossbeam_queue::ArrayQueue::<[u8; PAYLOAD]>::new(4096);
    let mut m = [0xa5u8; PAYLOAD];
    for i in 0..count {
        set_seq(&mut m, i);
        if q.push(m).is_err() {
            return Err("full".into());
        }
        match q.pop() {
            Some(got) if carries(black_box(&got), i) => {}
            _ => return Err(wrong(i)),
        }
    }
    Ok(())
}

/// rtrb: push, pop.
fn rtrb_loop(count: u64) -> Result<(), String> {
    let (mut p, mut c) = rtrb::RingBuffer::<[u8; PAYLOAD]>::new(4096);
    let mut m = [0xa5u8; PAYLOAD];
    for i in 0..count {
        set_seq(&mut m, i);
        if p.push(m).is_err() {
            return Err("full".into());
        }
        match c.pop() {
            Ok(got) if carries(black_box(&got), i) => {}
            _ => return Err(wrong(i)),
        }
    }
    Ok(())
}

/// rtrb: write a chunk of 32, read a chunk of 32.
fn rtrb_chunks_loop(count: u64) -> Result<(), String> {
    let (mut p, mut c) = rtrb::RingBuffer::<[u8; PAYLOAD]>::new(4096);
    let mut i = 0u64;
    while i < count {
        let wc = p.write_chunk_uninit(BATCH).map_err(|e| e.to_string())?;
        let base = i;
        let written = wc.fill_from_iter((0..BATCH as u64).map(|k| {
            let mut m = [0xa5u8; PAYLOAD];
            set_seq(&mut m, base + k);
            m
        }));
        if written != BATCH {
            return Err(format!("{written} of {BATCH} written"));
        }
        let rc = c.read_chunk(BATCH).map_err(|e| e.to_string())?;
        let (a, b) = rc.as_slices();
        for m in a.iter().chain(b) {
            if !carries(black_box(m), i) {
                return Err(wrong(i));
            }
            i += 1;
        }
        rc.commit_all();
    }
    Ok(())
}
