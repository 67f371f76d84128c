//! Crash tests with real processes and real SIGKILL (G3, G4, G5, G8, G9).
//!
//! The test binary re-executes itself: a child runs only the [`worker`] test
//! (`--exact worker`), which reads its role and parameters from the
//! environment ([`ROLE`] and the `SHMQ_KILL_*` variables) and returns at once
//! when they are absent, so a plain `cargo test` runs it as a no-op. Parents
//! kill children with `Child::kill` (SIGKILL) at random moments.
//!
//! What the children saw is recorded outside the queue, in ledger files they
//! append to with one `write` per record (a record survives the writer's
//! death as soon as the call returned; a last line without its newline is the
//! record of a writer killed mid-write and is ignored):
//!
//! - a producer writes `T hi` before it first tries to send a sequence
//!   number below `hi`, and `S seq n` after a send of `seq..seq+n` returned
//!   `Ok`;
//! - a consumer writes `C id deliveries` for every claim *before* it gives an
//!   outcome, `I id deliveries` (the intent to ack that claim) before it
//!   calls ack, then `A id deliveries` after an ack returned `Ok` and
//!   `N id deliveries` after a nack did; `X what` records a failure (a torn
//!   payload, an unexpected error) that the parent turns into a test failure.
//!
//! A claim of a killed consumer with an intent and no result is "maybe
//! acked" only if the engine agrees: it is the message's last claim (never
//! redelivered), the queue drained empty and the message is no dead letter;
//! and the engine's ack counter must lie between the recorded acks and those
//! plus the maybe-acked ones. A claim a killed consumer held without an
//! intent must have been redelivered (or dead-lettered).
//!
//! Message ids pack the producer's index, its restart generation and a
//! sequence number (see [`msg_id`]); each payload carries its id, its length
//! and a checksum, so a torn or foreign payload is recognised.
//!
//! Every child also watches its parent: when the test process is gone (the
//! child was re-parented) or after [`CHILD_LIFETIME`], it exits by itself, so
//! a failing test never leaves processes behind.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmq::{Counter, Options, Queue, Status, Timeout};

// ---------------------------------------------------------------------------
// Shared pieces: scratch files, randomness, payloads, child processes.
// ---------------------------------------------------------------------------

/// Names the role of a re-executed child; absent in the parent.
const ROLE: &str = "SHMQ_KILL_ROLE";
/// The queue file.
const QUEUE: &str = "SHMQ_KILL_QUEUE";
/// The directory for ledgers and hand-shake files.
const DIR: &str = "SHMQ_KILL_DIR";
/// The child's index among its role.
const INDEX: &str = "SHMQ_KILL_INDEX";
/// The child's restart generation.
const GEN: &str = "SHMQ_KILL_GEN";
/// A role-specific count.
const COUNT: &str = "SHMQ_KILL_COUNT";
/// The child's random seed.
const SEED: &str = "SHMQ_KILL_SEED";

/// A child exits by itself after this long, whatever it is doing.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// How long a parent waits for a child's hand-shake file.
const HANDSHAKE: Duration = Duration::from_secs(20);

/// Largest payload of the torture test's queue.
const MAX_MSG: usize = 128;
/// Header of a payload: magic, length, id; the checksum follows the filler.
const PAYLOAD_MIN: usize = 24;
const MAGIC: u32 = 0x4b49_4c4c;

/// A directory and a queue file that are removed when the test ends, however
/// it ends.
struct Scratch {
    dir: PathBuf,
    queue: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let stem = format!("shmq-kill-{}-{name}", std::process::id());
        let dir = base.join(format!("{stem}.d"));
        let queue = base.join(format!("{stem}.q"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&queue);
        std::fs::create_dir(&dir).expect("create the scratch directory");
        Scratch { dir, queue }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.queue);
    }
}

/// xorshift64*: enough randomness for kill timing and operation mixes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn from_clock() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng::new(t ^ (std::process::id() as u64) << 32)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A message id: producer index (4 bits), generation (20 bits), sequence.
fn msg_id(producer: u64, gen: u64, seq: u64) -> u64 {
    producer << 60 | (gen & 0xf_ffff) << 40 | seq
}

fn split_id(id: u64) -> (u64, u64, u64) {
    (id >> 60, (id >> 40) & 0xf_ffff, id & ((1 << 40) - 1))
}

/// One in this many messages is poison when a run has poison: every consumer
/// nacks it, so it ends in the dead letters after `max_deliveries`.
const POISON_ONE_IN: u64 = 2048;

fn is_poison(id: u64) -> bool {
    fnv1a(&id.to_le_bytes()) % POISON_ONE_IN == 0
}

/// The payload of message `id`: `MAGIC`, its length, the id, filler bytes
/// derived from the id, and an FNV-1a checksum of everything before it. Its
/// length (24..=128) depends on the id.
fn payload(id: u64) -> Vec<u8> {
    let h = fnv1a(&id.to_le_bytes());
    let len = PAYLOAD_MIN + (h % (MAX_MSG - PAYLOAD_MIN + 1) as u64) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    let fill = h | 1;
    for k in 0..len - PAYLOAD_MIN {
        v.push((fill.rotate_left(k as u32 * 7) as u8) ^ k as u8);
    }
    let sum = fnv1a(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    debug_assert_eq!(v.len(), len);
    v
}

/// The id of a well-formed payload; `None` for a torn or foreign one.
fn decode(p: &[u8]) -> Option<u64> {
    if p.len() < PAYLOAD_MIN || p.len() > MAX_MSG {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes(p[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap());
    let body = p.len() - 8;
    if u32_at(0) != MAGIC || u32_at(4) as usize != p.len() || fnv1a(&p[..body]) != u64_at(body) {
        return None;
    }
    let id = u64_at(8);
    (payload(id) == p).then_some(id)
}

/// Starts this test binary again as a `role` child.
fn spawn(role: &str, vars: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "worker", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn a worker process")
}

/// SIGKILLs a child and reaps it. Returns how it had exited if it was
/// already gone (`None` when the kill hit a running process).
fn kill(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Children that are killed when the test ends, however it ends.
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(c);
        }
    }
}

/// Waits until `path` exists (written by a child), failing fast if `child`
/// exits first.
fn await_file(path: &Path, child: &mut Child) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the child exited ({status}) before writing {}",
                path.display()
            );
        }
        assert!(
            start.elapsed() < HANDSHAKE,
            "no {} after {HANDSHAKE:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes a hand-shake file atomically (write, then rename).
fn put_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write a hand-shake file");
    std::fs::rename(&tmp, path).expect("publish a hand-shake file");
}

// ---------------------------------------------------------------------------
// The children.
// ---------------------------------------------------------------------------

/// What a child knows about its world.
struct Env {
    queue: PathBuf,
    dir: PathBuf,
    index: u64,
    gen: u64,
    count: u64,
    seed: u64,
    parent: u32,
    born: Instant,
}

impl Env {
    fn read() -> Env {
        let s = |k: &str| std::env::var(k).unwrap_or_default();
        let n = |k: &str| s(k).parse::<u64>().unwrap_or(0);
        Env {
            queue: PathBuf::from(s(QUEUE)),
            dir: PathBuf::from(s(DIR)),
            index: n(INDEX),
            gen: n(GEN),
            count: n(COUNT),
            seed: n(SEED),
            parent: std::os::unix::process::parent_id(),
            born: Instant::now(),
        }
    }

    /// Exits the process when the test that started it is gone or when it
    /// has lived too long.
    fn check_parent(&self) {
        if std::os::unix::process::parent_id() != self.parent
            || self.born.elapsed() > CHILD_LIFETIME
        {
            std::process::exit(0);
        }
    }

    /// Sleeps until killed (bounded by `check_parent`).
    fn idle(&self) -> ! {
        loop {
            self.check_parent();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn open(&self) -> Queue {
        Queue::open(&self.queue).unwrap_or_else(|e| panic!("worker: open: {e}"))
    }
}

/// An append-only ledger; every record is one `write` call.
struct Ledger(File);

impl Ledger {
    fn create(path: &Path) -> Ledger {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("worker: ledger {}: {e}", path.display()));
        Ledger(f)
    }
    fn put(&mut self, text: &str) {
        if !text.is_empty() {
            self.0
                .write_all(text.as_bytes())
                .expect("worker: ledger write");
        }
    }
    /// Records a failure for the parent and exits.
    fn fail(&mut self, what: &str) -> ! {
        self.put(&format!("X {}\n", what.replace('\n', " ")));
        eprintln!("worker failed: {what}");
        std::process::exit(3);
    }
}

/// The entry point of every child; a no-op in the parent.
#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let env = Env::read();
    match role.as_str() {
        "producer" => producer(&env),
        "consumer" => consumer(&env),
        "hold-claims" => hold_claims(&env),
        "hold-reservation" => hold_reservation(&env),
        "stall-reservation" => stall_reservation(&env),
        "clean-and-stall" => clean_and_stall(&env),
        other => panic!("unknown worker role {other}"),
    }
}

/// Sends forever (until killed): single sends, zero-copy reservations
/// written in two halves, and batches.
fn producer(env: &Env) {
    let q = env.open();
    let mut ledger = Ledger::create(&env.dir.join(format!("prod-{}-{}.log", env.index, env.gen)));
    let mut rng = Rng::new(env.seed);
    let wait = Duration::from_millis(50);
    let (mut next, mut intent) = (0u64, 0u64);
    for round in 0u64.. {
        if round % 64 == 0 {
            env.check_parent();
        }
        let op = rng.below(10);
        let n = if op >= 8 { 2 + rng.below(7) } else { 1 };
        if next + n > intent {
            intent = next + n + 64;
            ledger.put(&format!("T {intent}\n"));
        }
        let id = |k: u64| msg_id(env.index, env.gen, next + k);
        let sent = match op {
            0..=5 => q.send(&payload(id(0)), wait).map(|_| 1),
            6 | 7 => {
                let data = payload(id(0));
                match q.reserve(data.len(), wait) {
                    Ok(mut r) => {
                        let half = data.len() / 2;
                        let dst = r.as_mut_ptr();
                        assert!(!dst.is_null());
                        // SAFETY: `dst` points to the reservation's payload,
                        // `capacity() == data.len()` bytes that this process
                        // owns until it commits; both halves are in bounds.
                        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, half) };
                        std::thread::yield_now();
                        // SAFETY: as above, the second half.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                data.as_ptr().add(half),
                                dst.add(half),
                                data.len() - half,
                            )
                        };
                        r.set_len(data.len()).and_then(|_| r.commit()).map(|_| 1)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => {
                let batch: Vec<Vec<u8>> = (0..n).map(|k| payload(id(k))).collect();
                q.send_batch(&batch, wait).map(|k| k as u64)
            }
        };
        match sent {
            Ok(k) => {
                ledger.put(&format!("S {next} {k}\n"));
                next += k;
            }
            Err(e) if matches!(e.status(), Status::Timeout | Status::Full) => {}
            Err(e) if e.status() == Status::Abandoned => {}
            Err(e) => ledger.fail(&format!("send: {e}")),
        }
    }
}

/// Claims forever (until killed, or until the drain flag is set and nothing
/// is left): single claims and batches; nacks poison, acks the rest, and
/// holds a quarter of its claims for a millisecond.
fn consumer(env: &Env) {
    let q = env.open();
    let mut ledger = Ledger::create(&env.dir.join(format!("cons-{}-{}.log", env.index, env.gen)));
    let mut rng = Rng::new(env.seed);
    let drain_flag = env.dir.join("drain");
    let poison = env.count != 0;
    let mut draining = false;
    for round in 0u64.. {
        if round % 32 == 0 {
            env.check_parent();
            draining = draining || drain_flag.exists();
        }
        let wait = Duration::from_millis(if draining { 300 } else { 50 });
        let got = if rng.below(10) < 4 {
            q.claim_batch(1 + rng.below(8) as usize, wait)
        } else {
            q.claim(wait).map(|m| vec![m])
        };
        let msgs = match got {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => {
                // Finish after one whole wait found nothing once draining.
                if draining {
                    return;
                }
                draining = drain_flag.exists();
                continue;
            }
            Err(e) => ledger.fail(&format!("claim: {e}")),
        };
        let hold = rng.below(4) == 0;
        if let Err(what) = settle(&q, msgs, hold, poison, &mut ledger) {
            ledger.fail(&what);
        }
    }
}

/// Records the claims, then nacks poison (when `poison`) and acks the rest,
/// recording each outcome. Shared by the consumer children and the parent's
/// drain.
fn settle(
    q: &Queue,
    msgs: Vec<shmq::Message<'_>>,
    hold: bool,
    poison: bool,
    ledger: &mut Ledger,
) -> Result<(), String> {
    let mut claimed = String::new();
    let mut ids = Vec::with_capacity(msgs.len());
    for m in &msgs {
        let data = m.data().map_err(|e| format!("data: {e}"))?;
        let Some(id) = decode(&data) else {
            return Err(format!(
                "torn payload at position {} (deliveries {}): {data:?}",
                m.position(),
                m.deliveries()
            ));
        };
        claimed.push_str(&format!("C {id} {}\n", m.deliveries()));
        ids.push(id);
    }
    ledger.put(&claimed);
    if hold {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut outcomes = String::new();
    let mut intents = String::new();
    let mut to_ack = Vec::with_capacity(msgs.len());
    let mut acked_ids = Vec::with_capacity(msgs.len());
    for (m, id) in msgs.into_iter().zip(ids) {
        let d = m.deliveries();
        if poison && is_poison(id) {
            m.nack(Duration::ZERO)
                .map_err(|e| format!("nack {id}: {e}"))?;
            outcomes.push_str(&format!("N {id} {d}\n"));
        } else {
            intents.push_str(&format!("I {id} {d}\n"));
            acked_ids.push((id, d));
            to_ack.push(m);
        }
    }
    // The intents to ack, before any ack is called.
    ledger.put(&intents);
    match to_ack.len() {
        0 => {}
        1 => {
            let m = to_ack.pop().unwrap_or_else(|| unreachable!());
            m.ack()
                .map_err(|e| format!("ack {}: {e}", acked_ids[0].0))?;
        }
        n => {
            let k = q
                .ack_batch(&to_ack)
                .map_err(|e| format!("ack_batch: {e}"))?;
            if k != n {
                return Err(format!(
                    "ack_batch acked {k} of {n}: a live consumer lost its lease"
                ));
            }
        }
    }
    for (id, d) in acked_ids {
        outcomes.push_str(&format!("A {id} {d}\n"));
    }
    ledger.put(&outcomes);
    Ok(())
}

/// Claims `count` messages, reports them in `held`, and waits to be killed.
fn hold_claims(env: &Env) {
    let q = env.open();
    let mut report = String::new();
    // The claims stay held (in flight) until this process dies.
    let mut held = Vec::new();
    for _ in 0..env.count {
        let m = q
            .claim(Duration::from_secs(10))
            .expect("hold-claims: claim");
        let data = m.data().expect("hold-claims: data");
        report.push_str(&format!(
            "{} {}\n",
            String::from_utf8_lossy(&data),
            m.deliveries()
        ));
        held.push(m);
    }
    put_file(&env.dir.join("held"), &report);
    env.idle();
}

/// Attaches and reports its participant index in `ready`; after the
/// parent's `go`, sweeps for the dead and stops in the middle of the first
/// cleanup (right after marking the dead entry as being cleaned by it,
/// before any repair): reports the entry in `cleaning` and waits to be
/// killed there.
fn clean_and_stall(env: &Env) {
    let q = env.open();
    let me = q.participant().expect("clean-and-stall: attached");
    put_file(&env.dir.join("ready"), &format!("{me}\n"));
    while !env.dir.join("go").exists() {
        env.check_parent();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (dir, parent, born) = (env.dir.clone(), env.parent, env.born);
    shmq::internals::participants::hooks::set(
        shmq::internals::participants::hooks::Point::AfterClaim,
        Some(Box::new(move |i| {
            put_file(&dir.join("cleaning"), &format!("{i}\n"));
            loop {
                if std::os::unix::process::parent_id() != parent || born.elapsed() > CHILD_LIFETIME
                {
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })),
    );
    let _ = q.recover();
    env.idle();
}

/// Reserves a slot, writes half a payload, reports the position, and waits
/// to be killed.
fn hold_reservation(env: &Env) {
    let q = env.open();
    let mut r = q
        .reserve(32, Duration::from_secs(10))
        .expect("hold-reservation: reserve");
    r.write(b"half-written: never deliver")
        .expect("hold-reservation: write");
    put_file(&env.dir.join("reserved"), &format!("{}\n", r.position()));
    std::mem::forget(r);
    env.idle();
}

/// Reserves a slot and writes a whole payload, reports, waits for the
/// parent's `go` (by then the reservation has timed out and been abandoned),
/// commits, and reports the commit's status.
fn stall_reservation(env: &Env) {
    let q = env.open();
    let mut r = q
        .reserve(40, Duration::from_secs(10))
        .expect("stall-reservation: reserve");
    r.write(&[b'S'; 40]).expect("stall-reservation: write");
    put_file(&env.dir.join("reserved"), &format!("{}\n", r.position()));
    let go = env.dir.join("go");
    while !go.exists() {
        env.check_parent();
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = match r.commit() {
        Ok(_) => "ok".to_string(),
        Err(e) => e.status().name().to_string(),
    };
    put_file(&env.dir.join("committed"), &format!("{status}\n"));
}

// ---------------------------------------------------------------------------
// The torture test's ledgers and their checks.
// ---------------------------------------------------------------------------

/// One consumer record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rec {
    Claimed(u64, u32),
    /// The intent to ack a claim, written before the ack call.
    Intent(u64, u32),
    Acked(u64, u32),
    Nacked(u64, u32),
}

/// Everything the ledgers say.
#[derive(Default)]
struct Ledgers {
    /// Ids whose send returned `Ok`.
    sent: HashSet<u64>,
    /// Per (producer, generation): sequence numbers below this may have been
    /// attempted.
    intent: HashMap<(u64, u64), u64>,
    /// Consumer ledgers: name, whether its writer was killed, its records.
    consumers: Vec<(String, bool, Vec<Rec>)>,
    /// Failures the children recorded.
    failures: Vec<String>,
}

impl Ledgers {
    fn read(dir: &Path, killed: &HashSet<String>) -> Ledgers {
        let mut l = Ledgers::default();
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("read the ledger directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        for name in names {
            let text = std::fs::read_to_string(dir.join(&name)).expect("read a ledger");
            // A last line without its newline was cut by a kill: ignore it.
            let complete = match text.rfind('\n') {
                Some(i) => &text[..=i],
                None => "",
            };
            let stem = name.trim_end_matches(".log");
            let parts: Vec<&str> = stem.split('-').collect();
            let mut recs = Vec::new();
            for line in complete.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                let num = |i: usize| -> u64 {
                    f.get(i)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("{name}: bad record {line:?}"))
                };
                match f[0] {
                    "X" => l.failures.push(format!("{name}: {}", &line[2..])),
                    "T" | "S" => {
                        let p: u64 = parts[1].parse().expect("producer index");
                        let g: u64 = parts[2].parse().expect("producer generation");
                        if f[0] == "T" {
                            let e = l.intent.entry((p, g)).or_default();
                            *e = (*e).max(num(1));
                        } else {
                            for s in num(1)..num(1) + num(2) {
                                l.sent.insert(msg_id(p, g, s));
                            }
                        }
                    }
                    "C" => recs.push(Rec::Claimed(num(1), num(2) as u32)),
                    "I" => recs.push(Rec::Intent(num(1), num(2) as u32)),
                    "A" => recs.push(Rec::Acked(num(1), num(2) as u32)),
                    "N" => recs.push(Rec::Nacked(num(1), num(2) as u32)),
                    _ => panic!("{name}: bad record {line:?}"),
                }
            }
            if parts[0] == "cons" {
                l.consumers
                    .push((stem.to_string(), killed.contains(stem), recs));
            }
        }
        l
    }
}

/// The outcome of the checks, for the summary line.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    claims: usize,
    redeliveries: usize,
    acked: usize,
    dead_letters: usize,
    poison: usize,
    maybe_acked: usize,
    /// Like `maybe_acked`, over every claimed id (sent records can be lost
    /// to a producer's kill too), poison and dead letters excepted.
    maybe_acked_all: usize,
    /// Claims a killed consumer held without an intent to ack.
    held_at_kill: usize,
    /// Of those, claimed again with a higher delivery number.
    redelivered_after_kill: usize,
}

/// Checks the ledgers against each other and against the dead letters.
/// Returns every violation found (empty = all good).
fn check(l: &Ledgers, dead: &[(u64, String)], poison: bool, problems: &mut Vec<String>) -> Tally {
    let mut t = Tally {
        sent: l.sent.len(),
        dead_letters: dead.len(),
        ..Tally::default()
    };
    problems.extend(l.failures.iter().cloned());
    // Every claim and outcome, by id.
    let mut claims: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut acked: HashMap<u64, u32> = HashMap::new();
    // Claims whose writer was killed after its intent to ack and before
    // the result: their ack may have landed.
    let mut intent_at_kill: HashSet<(u64, u32)> = HashSet::new();
    // Claims whose writer was killed holding them (no intent, no outcome).
    let mut held_at_kill: Vec<(String, u64, u32)> = Vec::new();
    for (name, killed, recs) in &l.consumers {
        let mut open: HashMap<(u64, u32), bool> = HashMap::new();
        for r in recs {
            match *r {
                Rec::Claimed(id, d) => {
                    t.claims += 1;
                    if d > 1 {
                        t.redeliveries += 1;
                    }
                    claims.entry(id).or_default().push(d);
                    open.insert((id, d), false);
                }
                Rec::Intent(id, d) => match open.get_mut(&(id, d)) {
                    Some(i) => *i = true,
                    None => problems.push(format!(
                        "{name}: intent to ack id {id:#x} delivery {d} without its claim"
                    )),
                },
                Rec::Acked(id, d) => {
                    t.acked += 1;
                    if let Some(prev) = acked.insert(id, d) {
                        problems.push(format!("{name}: id {id:#x} acked twice ({prev}, {d})"));
                    }
                    if open.remove(&(id, d)) != Some(true) {
                        problems.push(format!(
                            "{name}: id {id:#x} delivery {d} acked without an intent"
                        ));
                    }
                }
                Rec::Nacked(id, d) => {
                    open.remove(&(id, d));
                }
            }
        }
        for ((id, d), intent) in open {
            if !*killed {
                problems.push(format!(
                    "{name}: live consumer left id {id:#x} delivery {d} without an outcome"
                ));
            } else if intent {
                intent_at_kill.insert((id, d));
            } else {
                held_at_kill.push((name.clone(), id, d));
            }
        }
    }
    let mut dead_ids = HashSet::new();
    for (id, reason) in dead {
        if !dead_ids.insert(*id) {
            problems.push(format!("id {id:#x} dead-lettered twice"));
        }
        if acked.contains_key(id) {
            problems.push(format!("id {id:#x} dead-lettered ({reason}) and acked"));
        }
    }
    // Claims are plausible, and each delivery number of an id is seen once:
    // a message is held by one consumer at a time and each claim counts a
    // delivery (G3); in particular no message is delivered fresh twice.
    for (id, ds) in &mut claims {
        let (p, g, s) = split_id(*id);
        if s >= l.intent.get(&(p, g)).copied().unwrap_or(0) {
            problems.push(format!("claimed id {id:#x} was never sent"));
        }
        ds.sort_unstable();
        if let Some(w) = ds.windows(2).find(|w| w[0] == w[1]) {
            problems.push(format!("id {id:#x} claimed twice with deliveries {}", w[0]));
        }
        if let Some(&a) = acked.get(id) {
            if ds.last().is_some_and(|&last| last > a) {
                problems.push(format!(
                    "id {id:#x} acked at delivery {a}, then claimed again ({ds:?})"
                ));
            }
        }
    }
    // Nothing lost (G4): every sent message was claimed or dead-lettered; a
    // poison one (always nacked) ended in the dead letters; the last claim of
    // every other one was acked, or its consumer was killed before it could
    // record the outcome (its ack may have landed).
    for id in &l.sent {
        let last = claims.get(id).and_then(|ds| ds.last().copied());
        if poison && is_poison(*id) {
            t.poison += 1;
            if !dead_ids.contains(id) {
                problems.push(format!(
                    "poison id {id:#x} not dead-lettered (claims {last:?})"
                ));
            }
            continue;
        }
        if dead_ids.contains(id) {
            continue;
        }
        let Some(last) = last else {
            problems.push(format!(
                "id {id:#x} was sent but never claimed nor dead-lettered"
            ));
            continue;
        };
        if acked.get(id) != Some(&last) {
            // Maybe acked only with an intent, as the message's last claim
            // (never redelivered), not dead-lettered (checked above), in a
            // queue that drained empty (checked by the caller).
            if intent_at_kill.contains(&(*id, last)) {
                t.maybe_acked += 1;
            } else {
                problems.push(format!(
                    "id {id:#x}: last claim (delivery {last}) neither acked nor redelivered, and no ack was under way at a kill"
                ));
            }
        }
    }
    for (id, ds) in &claims {
        let last = ds.last().copied().unwrap_or(0);
        let never_acked = dead_ids.contains(id) || (poison && is_poison(*id));
        if !never_acked && acked.get(id) != Some(&last) && intent_at_kill.contains(&(*id, last)) {
            t.maybe_acked_all += 1;
        }
    }
    // A claim a killed consumer held without an intent comes back: claimed
    // again with a higher delivery number, or dead-lettered.
    t.held_at_kill = held_at_kill.len();
    for (name, id, d) in &held_at_kill {
        let again = claims.get(id).is_some_and(|ds| ds.iter().any(|&x| x > *d));
        if again {
            t.redelivered_after_kill += 1;
        } else if !dead_ids.contains(id) {
            problems.push(format!(
                "id {id:#x}: {name} was killed holding delivery {d}, and it was never claimed again nor dead-lettered"
            ));
        }
    }
    t
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/// A running child of the torture test.
struct Proc {
    role: &'static str,
    index: u64,
    gen: u64,
    child: Child,
}

impl Proc {
    fn name(&self) -> String {
        let short = if self.role == "producer" {
            "prod"
        } else {
            "cons"
        };
        format!("{short}-{}-{}", self.index, self.gen)
    }
}

fn start(
    role: &'static str,
    index: u64,
    gen: u64,
    poison: bool,
    s: &Scratch,
    rng: &mut Rng,
) -> Proc {
    let child = spawn(
        role,
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
            (INDEX, index.to_string()),
            (GEN, gen.to_string()),
            (COUNT, (poison as u8).to_string()),
            (SEED, rng.next().to_string()),
        ],
    );
    Proc {
        role,
        index,
        gen,
        child,
    }
}

/// Kills every child in `procs` when dropped.
struct Procs(Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            kill(&mut p.child);
        }
    }
}

/// Three producers and three consumers share a 64-slot queue for a few
/// seconds (`SHMQ_KILL_SECS`, 5 by default) while one of them is SIGKILLed
/// and restarted every 50-200 ms; leases and reservation timeouts are 30 s,
/// so only death detection brings redeliveries. Then the producers are
/// killed, the consumers drain, the parent drains what is left, and the
/// ledgers must show: nothing lost, no delivery twice, nothing torn, nobody
/// wedged, a file that verifies. Deliveries are unlimited here, so nothing is
/// dead-lettered (see the poison variant below).
#[test]
fn torture_random_sigkill_of_producers_and_consumers() {
    torture("torture", false, 0);
}

/// The torture test with poison messages that every consumer nacks (one in
/// [`POISON_ONE_IN`]) and `max_deliveries` 5: each must end in the dead
/// letters, exactly once.
#[test]
fn torture_with_poison_and_dead_letters() {
    torture("poison", true, 5);
}

fn torture(name: &str, poison: bool, max_deliveries: u32) {
    let s = Scratch::new(name);
    let secs: u64 = std::env::var("SHMQ_KILL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let opts = Options {
        capacity: 64,
        max_message_size: MAX_MSG as u32,
        dlq_capacity: 4096,
        lease: Duration::from_secs(30),
        reservation_timeout: Duration::from_secs(30),
        max_deliveries,
        ..Options::default()
    };
    drop(Queue::create(&s.queue, &opts).expect("create"));
    let mut rng = Rng::from_clock();
    eprintln!("{name}: seed {:#x}, {secs} s", rng.0);

    let mut procs = Procs(Vec::new());
    for i in 0..3 {
        procs.0.push(start("producer", i, 0, poison, &s, &mut rng));
        procs.0.push(start("consumer", i, 0, poison, &s, &mut rng));
    }
    let mut killed: HashSet<String> = HashSet::new();
    let mut early_exits = Vec::new();
    let (mut producer_kills, mut consumer_kills) = (0u32, 0u32);
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(50 + rng.below(151)));
        let k = rng.below(procs.0.len() as u64) as usize;
        let p = &mut procs.0[k];
        if let Some(status) = kill(&mut p.child) {
            early_exits.push(format!("{} exited by itself: {status}", p.name()));
        }
        killed.insert(p.name());
        if p.role == "producer" {
            producer_kills += 1;
        } else {
            consumer_kills += 1;
        }
        let (role, index, gen) = (p.role, p.index, p.gen + 1);
        procs.0[k] = start(role, index, gen, poison, &s, &mut rng);
    }
    let ran = run.elapsed();

    // Stop: kill the producers wherever they are, let the consumers drain.
    for p in procs.0.iter_mut().filter(|p| p.role == "producer") {
        if let Some(status) = kill(&mut p.child) {
            early_exits.push(format!("{} exited by itself: {status}", p.name()));
        }
        killed.insert(p.name());
        producer_kills += 1;
    }
    put_file(&s.file("drain"), "drain\n");
    let drain = Instant::now();
    for p in procs.0.iter_mut().filter(|p| p.role == "consumer") {
        loop {
            match p.child.try_wait().expect("wait for a consumer") {
                Some(status) if status.success() => break,
                Some(status) => {
                    early_exits.push(format!("{} failed: {status}", p.name()));
                    break;
                }
                None => {
                    assert!(
                        drain.elapsed() < Duration::from_secs(30),
                        "consumer {} wedged: still running 30 s after the drain began",
                        p.name()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    let consumers_drained = drain.elapsed();

    // The parent drains what is left (redeliveries of the last kills).
    let q = Queue::open(&s.queue).expect("open for the final drain");
    let mut ledger = Ledger::create(&s.file("cons-9-0.log"));
    let mut parent_drained = 0usize;
    loop {
        match q.claim_batch(16, Duration::from_millis(300)) {
            Ok(msgs) => {
                parent_drained += msgs.len();
                if let Err(what) = settle(&q, msgs, false, poison, &mut ledger) {
                    ledger.put(&format!("X drain: {what}\n"));
                    break;
                }
            }
            Err(e) if e.status() == Status::Timeout => break,
            Err(e) => panic!("final drain: {e}"),
        }
        assert!(
            drain.elapsed() < Duration::from_secs(60),
            "the final drain never ends"
        );
    }

    let mut problems = early_exits;
    let st = q.stats();
    let shape = (
        st.depth,
        st.delayed,
        st.in_flight,
        st.reserved,
        st.dlq_waiting,
    );
    if shape != (0, 0, 0, 0, 0) {
        problems.push(format!(
            "after the drain (depth, delayed, in_flight, reserved, dlq_waiting) = {shape:?}"
        ));
    }
    let report = q.verify();
    problems.extend(report.problems.iter().map(|p| format!("verify: {p}")));
    let repairs = q.recover().expect("recover");
    if repairs.redelivered + repairs.dead_lettered > 0 {
        problems.push(format!(
            "recover after the drain still found work: {repairs:?}"
        ));
    }
    let report = q.verify();
    problems.extend(
        report
            .problems
            .iter()
            .map(|p| format!("verify after recover: {p}")),
    );

    let mut dead = Vec::new();
    for d in q.dlq_list() {
        match decode(&d.payload) {
            Some(id) => dead.push((id, d.reason.clone())),
            None => problems.push(format!("torn dead letter {}: {:?}", d.id, d.payload)),
        }
    }
    if st.dead_letters != dead.len() as u64 {
        problems.push(format!(
            "stats count {} dead letters, the list has {}",
            st.dead_letters,
            dead.len()
        ));
    }
    let ledgers = Ledgers::read(&s.dir, &killed);
    let t = check(&ledgers, &dead, poison, &mut problems);
    // The engine's own count of acks (summed over every participant entry,
    // the dead ones' included) lies between the acks the ledgers recorded
    // and those plus the claims whose consumer died before recording an
    // outcome. Below: counters were lost; above: an ack nobody made.
    let engine_acked = st.counter(Counter::Acked) as usize;
    if engine_acked < t.acked || engine_acked > t.acked + t.maybe_acked_all {
        problems.push(format!(
            "the Acked counter says {engine_acked}; the ledgers recorded {} acks and {} more were under way at a kill: {}..={}",
            t.acked,
            t.maybe_acked_all,
            t.acked,
            t.acked + t.maybe_acked_all
        ));
    }
    if consumer_kills > 0 && t.held_at_kill > 0 && t.redelivered_after_kill == 0 {
        problems.push(format!(
            "{consumer_kills} consumer kills, {} claims held at a kill, and not one redelivered",
            t.held_at_kill
        ));
    }
    eprintln!(
        "{name}: {} kills ({producer_kills} producers, {consumer_kills} consumers) in {:.1} s; \
         {} messages sent, {} claims, {} redeliveries, {} acked, {} dead letters ({} poison), \
         {} held at a kill ({} redelivered), {} maybe acked at a kill (engine: {} of {} acked); consumers drained in {} ms, the parent then took {parent_drained}; \
         {} dead participants cleaned",
        producer_kills + consumer_kills,
        ran.as_secs_f64(),
        t.sent,
        t.claims,
        t.redeliveries,
        t.acked,
        t.dead_letters,
        t.poison,
        t.held_at_kill,
        t.redelivered_after_kill,
        t.maybe_acked,
        engine_acked - t.acked.min(engine_acked),
        t.maybe_acked_all,
        consumers_drained.as_millis(),
        st.counter(Counter::DeadParticipants),
    );
    assert!(t.sent > 0, "no message was sent at all");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A consumer holding a message is SIGKILLed; with a 60 s lease the message
/// must be claimable again at once (death detection, not lease expiry), with
/// deliveries == 2.
#[test]
fn dead_consumers_message_is_redelivered_within_milliseconds() {
    let s = Scratch::new("redeliver");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    q.send(b"order-7", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    children.0.push(spawn(
        "hold-claims",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
            (COUNT, "1".to_string()),
        ],
    ));
    let held = await_file(&s.file("held"), &mut children.0[0]);
    assert_eq!(held, "order-7 1\n");
    assert_eq!(q.stats().in_flight, 1);

    let t0 = Instant::now();
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    let m = q
        .claim(Duration::from_secs(5))
        .expect("the dead consumer's message is claimable again");
    let latency = t0.elapsed();
    eprintln!(
        "redelivery after SIGKILL: {:.3} ms (kill, reap, detect, claim; lease 60 s)",
        latency.as_secs_f64() * 1e3
    );
    assert_eq!(m.data().expect("data"), b"order-7");
    assert_eq!(m.deliveries(), 2);
    assert!(latency < Duration::from_secs(5), "took {latency:?}");
    m.ack().expect("ack");
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight), (0, 0));
    assert!(st.counter(Counter::DeadParticipants) >= 1);
    assert!(st.counter(Counter::Reclaimed) >= 1);
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// A producer dies between reserve and commit (G5). While it lives, and after
/// its death, messages sent after it stay claimable; its half-written
/// reservation is never delivered, and once its death is noticed (here by a
/// survivor's waiting claims) the slot is reclaimed.
#[test]
fn dead_producer_between_reserve_and_commit_does_not_wedge_consumers() {
    let s = Scratch::new("reserve");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            reservation_timeout: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    q.send(b"m0", Timeout::TryOnce).expect("send m0");
    let mut children = Children::default();
    children.0.push(spawn(
        "hold-reservation",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
        ],
    ));
    let pos = await_file(&s.file("reserved"), &mut children.0[0]);
    assert_eq!(pos.trim(), "1", "the child reserved right after m0");
    assert_eq!(q.stats().reserved, 1);

    // While the producer lives, later messages pass its reservation.
    for m in [b"m1", b"m2", b"m3"] {
        q.send(m, Timeout::TryOnce)
            .expect("send behind a reservation");
    }
    for want in [&b"m0"[..], b"m1", b"m2", b"m3"] {
        let m = q
            .claim(Duration::from_secs(5))
            .expect("claim past a reservation");
        assert_eq!(m.data().expect("data"), want);
        assert_eq!(m.deliveries(), 1);
        m.ack().expect("ack");
    }

    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );
    for m in [b"m4", b"m5", b"m6"] {
        q.send(m, Timeout::TryOnce).expect("send after the death");
    }
    for want in [&b"m4"[..], b"m5", b"m6"] {
        let m = q
            .claim(Duration::from_secs(5))
            .expect("claim after the death");
        assert_eq!(m.data().expect("data"), want);
        m.ack().expect("ack");
    }
    // Nothing else is ever delivered (the half-written payload least of all);
    // waiting claims run the liveness sweep that abandons the reservation.
    let start = Instant::now();
    while q.stats().reserved != 0 {
        match q.claim(Duration::from_millis(20)) {
            Err(e) => assert_eq!(e.status(), Status::Timeout),
            Ok(m) => panic!("delivered {:?}", m.data()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dead producer's reservation was never abandoned"
        );
    }
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight, st.reserved), (0, 0, 0));
    assert!(st.counter(Counter::Abandoned) >= 1);
    assert!(st.counter(Counter::DeadParticipants) >= 1);
    // Every slot is usable again.
    for i in 0..8u8 {
        q.send(&[i], Timeout::TryOnce)
            .expect("the whole capacity is free");
    }
    assert_eq!(
        q.send(b"x", Timeout::TryOnce).unwrap_err().status(),
        Status::Full
    );
    for i in 0..8u8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!(m.data().expect("data"), [i]);
        m.ack().expect("ack");
    }
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// The same death, repaired by an explicit `recover()` of the surviving
/// participant, which sat idle until then: `verify` notes the dead producer,
/// the reservation is abandoned at once and the queue's whole capacity serves
/// sends again.
#[test]
fn recover_abandons_a_dead_producers_reservation() {
    let s = Scratch::new("recover");
    let opts = Options {
        capacity: 4,
        max_message_size: 64,
        reservation_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let q = Queue::create(&s.queue, &opts).expect("create");
    let mut children = Children::default();
    children.0.push(spawn(
        "hold-reservation",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
        ],
    ));
    await_file(&s.file("reserved"), &mut children.0[0]);
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );

    // `q` stayed attached but idle: nothing has noticed the death yet.
    assert_eq!(q.stats().reserved, 1);
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        report.notes.iter().any(|n| n.contains("dead")),
        "verify does not mention the dead producer: {:?}",
        report.notes
    );
    let r = q.recover().expect("recover");
    assert_eq!(r.abandoned, 1, "{r:?}");
    assert_eq!(q.stats().reserved, 0);
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    for i in 0..4u8 {
        q.send(&[i], Timeout::TryOnce)
            .expect("the whole capacity is free");
    }
    for i in 0..4u8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!((m.data().expect("data"), m.deliveries()), (vec![i], 1));
        m.ack().expect("ack");
    }
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
}

/// A consumer holding 5 of 8 messages is SIGKILLed. A survivor that waits
/// (here a producer blocked on the full queue) notices the death and cleans
/// up: all 8 messages are back in depth, none in flight, and the survivors'
/// counters record a dead participant. Then the 5 come back with
/// deliveries == 2 and the other 3 with deliveries == 1.
#[test]
fn survivors_clean_up_after_a_dead_consumer() {
    let s = Scratch::new("survivors");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .expect("create");
    for i in 0..8 {
        q.send(format!("msg-{i}").as_bytes(), Timeout::TryOnce)
            .expect("send");
    }
    let mut children = Children::default();
    children.0.push(spawn(
        "hold-claims",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
            (COUNT, "5".to_string()),
        ],
    ));
    let held = await_file(&s.file("held"), &mut children.0[0]);
    let held: Vec<&str> = held.lines().collect();
    assert_eq!(
        held,
        ["msg-0 1", "msg-1 1", "msg-2 1", "msg-3 1", "msg-4 1"]
    );
    let st = q.stats();
    assert_eq!((st.depth, st.in_flight, st.consumers), (3, 5, 1));

    assert!(
        kill(&mut children.0[0]).is_none(),
        "the consumer exited early"
    );
    let other = Queue::inspect(&s.queue).expect("inspect");
    let start = Instant::now();
    loop {
        // A producer waiting for room runs the liveness sweep.
        let e = q.send(b"more", Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.status(), Status::Timeout, "{e}");
        if q.stats().in_flight == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dead consumer's claims were never cleaned up"
        );
    }
    for st in [q.stats(), other.stats()] {
        assert_eq!((st.depth, st.in_flight, st.reserved), (8, 0, 0));
        assert!(st.counter(Counter::DeadParticipants) >= 1);
        assert_eq!(st.counter(Counter::Reclaimed), 5);
        assert_eq!(st.consumers, 0, "the dead consumer still counts as live");
    }
    let mut got = Vec::new();
    for _ in 0..8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        got.push(format!(
            "{} {}",
            String::from_utf8_lossy(&m.data().expect("data")),
            m.deliveries()
        ));
        m.ack().expect("ack");
    }
    got.sort();
    assert_eq!(
        got,
        ["msg-0 2", "msg-1 2", "msg-2 2", "msg-3 2", "msg-4 2", "msg-5 1", "msg-6 1", "msg-7 1"]
    );
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// Options of the stalled-producer tests: two slots, reservations abandoned
/// after 50 ms.
fn stall_options() -> Options {
    Options {
        capacity: 2,
        max_message_size: 64,
        reservation_timeout: Duration::from_millis(50),
        ..Options::default()
    }
}

/// Waits (running maintenance through claims that find nothing) until a
/// survivor has abandoned the stalled reservation.
fn await_abandoned(q: &Queue) {
    let start = Instant::now();
    while q.stats().counter(Counter::Abandoned) == 0 {
        match q.claim(Duration::from_millis(20)) {
            Err(e) => assert_eq!(e.status(), Status::Timeout),
            Ok(m) => panic!("delivered {:?}", m.data()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the stalled reservation was never abandoned"
        );
    }
}

/// A producer process stalls past the reservation timeout with a whole
/// payload written (G5). Consumers pass its reservation, a survivor abandons
/// it, the producer's late commit gets `Abandoned` (nothing sent), and no
/// message, before or after, is torn by its late writes: the slot is not
/// reused until the producer came back.
#[test]
fn stalled_producers_late_commit_is_abandoned_and_harms_nobody() {
    let s = Scratch::new("stall");
    let q = Queue::create(&s.queue, &stall_options()).expect("create");
    let mut children = Children::default();
    children.0.push(spawn(
        "stall-reservation",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
        ],
    ));
    await_file(&s.file("reserved"), &mut children.0[0]);
    q.send(b"fresh", Timeout::TryOnce)
        .expect("send past the stall");
    let m = q
        .claim(Duration::from_secs(5))
        .expect("claim past the stall");
    assert_eq!(
        (m.data().expect("data"), m.deliveries()),
        (b"fresh".to_vec(), 1)
    );
    m.ack().expect("ack");
    await_abandoned(&q);
    assert_eq!(q.stats().reserved, 1, "the abandoned slot is quarantined");
    q.send(b"m1", Timeout::TryOnce)
        .expect("send while quarantined");

    put_file(&s.file("go"), "go\n");
    let status = await_file(&s.file("committed"), &mut children.0[0]);
    assert_eq!(status.trim(), Status::Abandoned.name());
    let m = q.claim(Timeout::TryOnce).expect("claim");
    assert_eq!(
        m.data().expect("data"),
        b"m1",
        "the late commit tore a message"
    );
    assert_eq!(m.deliveries(), 1);
    m.ack().expect("ack");
    // The producer freed its slot: the whole capacity works, lap after lap,
    // and only what was sent is ever delivered.
    assert_eq!(q.stats().reserved, 0);
    for lap in 0..4u8 {
        for k in 0..2u8 {
            q.send(&[lap, k], Timeout::TryOnce).expect("send");
        }
        for k in 0..2u8 {
            let m = q.claim(Timeout::TryOnce).expect("claim");
            assert_eq!(m.data().expect("data"), [lap, k]);
            m.ack().expect("ack");
        }
    }
    assert_eq!(
        q.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty
    );
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// A producer stalls past the reservation timeout, is abandoned, and is then
/// SIGKILLed before it comes back: survivors free its quarantined slot.
#[test]
fn stalled_producer_killed_after_abandonment_frees_its_slot() {
    let s = Scratch::new("stall-kill");
    let q = Queue::create(&s.queue, &stall_options()).expect("create");
    let mut children = Children::default();
    children.0.push(spawn(
        "stall-reservation",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
        ],
    ));
    await_file(&s.file("reserved"), &mut children.0[0]);
    await_abandoned(&q);
    assert_eq!(q.stats().reserved, 1, "the abandoned slot is quarantined");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );
    let start = Instant::now();
    while q.stats().reserved != 0 {
        match q.claim(Duration::from_millis(20)) {
            Err(e) => assert_eq!(e.status(), Status::Timeout),
            Ok(m) => panic!("delivered {:?}", m.data()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dead producer's quarantined slot was never freed"
        );
    }
    assert!(q.stats().counter(Counter::DeadParticipants) >= 1);
    for k in 0..2u8 {
        q.send(&[k], Timeout::TryOnce)
            .expect("the whole capacity is free");
    }
    for k in 0..2u8 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!(m.data().expect("data"), [k]);
        m.ack().expect("ack");
    }
    assert!(q.verify().problems.is_empty(), "{:?}", q.verify().problems);
}

/// Dead-lettering while producers skip the slot, in one process: one thread
/// keeps a 4-slot queue full, the other claims and rejects. A full queue's
/// producer stands at the slot a consumer just claimed and skips it (bumping
/// the lap in the slot word) while the reject moves the message to the dead
/// letters; the move must retry over the lap change, not fail with `Corrupt`.
/// (Found by the poison torture test; failed within a few hundred rejects
/// before the engine's transitions retried over skips.)
#[test]
fn dead_lettering_survives_producers_skipping_the_slot() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let s = Scratch::new("dlqskip");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 4,
            max_message_size: 16,
            dlq_capacity: 1024,
            ..Options::default()
        },
    )
    .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, path) = (stop.clone(), s.queue.clone());
        std::thread::spawn(move || {
            let p = Queue::open(&path).expect("open");
            while !stop.load(Ordering::Relaxed) {
                let _ = p.send(b"poison", Timeout::TryOnce);
            }
        })
    };
    let start = Instant::now();
    let mut rejected = 0u64;
    let mut failure = None;
    while rejected < 20_000 && start.elapsed() < Duration::from_secs(2) {
        let m = match q.claim(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(e) if e.status() == Status::Timeout => continue,
            Err(e) => panic!("claim: {e}"),
        };
        if let Err(e) = m.reject("poison") {
            failure = Some(e);
            break;
        }
        rejected += 1;
        if rejected % 512 == 0 {
            q.dlq_purge(None).expect("purge");
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("the producer thread");
    if let Some(e) = failure {
        panic!("reject failed after {rejected} good rejects: {e}");
    }
}

/// `recover()` from an inspection handle, which is what `shmq recover` runs,
/// after a producer died holding a reservation and nobody else is attached:
/// the dead producer is cleaned up and the counters say so. (It used to
/// overflow `me + 1` with `me == u64::MAX` in `Table::claim_dead`; now the
/// call attaches for its duration, and the cleanup may happen as it takes
/// the dead one's entry, so the returned `Repairs` may be empty.)
#[test]
fn recover_from_an_inspection_handle_cleans_up_a_dead_producer() {
    let s = Scratch::new("inspect-recover");
    let opts = Options {
        capacity: 4,
        max_message_size: 64,
        reservation_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    drop(Queue::create(&s.queue, &opts).expect("create"));
    let mut children = Children::default();
    children.0.push(spawn(
        "hold-reservation",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
        ],
    ));
    await_file(&s.file("reserved"), &mut children.0[0]);
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the producer exited early"
    );
    let tool = Queue::inspect(&s.queue).expect("inspect");
    let before = tool.verify();
    assert!(
        before.notes.iter().any(|n| n.contains("dead")),
        "verify does not mention the dead producer: {:?}",
        before.notes
    );
    let r = tool.recover().expect("recover");
    assert!(r.abandoned <= 1, "{r:?}");
    let st = tool.stats();
    assert_eq!(st.reserved, 0);
    assert_eq!(st.counter(Counter::Abandoned), 1);
    assert!(st.counter(Counter::DeadParticipants) >= 1);
    let report = tool.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

// ---------------------------------------------------------------------------
// G8/G3: liveness sweeps never take the living for dead, and notice the dead
// soon enough.
// ---------------------------------------------------------------------------

/// A queue for the liveness tests: a 60 s lease, so a claim comes back only
/// by death detection.
fn liveness_options() -> Options {
    Options {
        capacity: 16,
        max_message_size: 64,
        lease: Duration::from_secs(60),
        participant_capacity: 8,
        ..Options::default()
    }
}

/// Starts a `hold-claims` child that claims `count` messages and waits in a
/// directory of its own; returns once it holds them.
fn holder(s: &Scratch, name: &str, count: u64, children: &mut Children) -> String {
    let dir = s.file(name);
    std::fs::create_dir(&dir).expect("a directory for the child");
    children.0.push(spawn(
        "hold-claims",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, dir.display().to_string()),
            (COUNT, count.to_string()),
        ],
    ));
    let last = children.0.len() - 1;
    await_file(&dir.join("held"), &mut children.0[last])
}

/// A sweep marks a dead participant's entry as being cleaned and then
/// repairs every slot the dead one owned. While it does, a newcomer attaches
/// (and another attaches and detaches): none of them may be given that
/// entry, or the repair would take the newcomer's claim and reservation for
/// the dead one's. The sweeper is stopped at that point by a test hook.
#[test]
fn g8_a_sweep_never_takes_a_live_newcomer_for_dead() {
    use std::sync::mpsc;
    let s = Scratch::new("sweep-newcomer");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    q.send(b"x", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    assert_eq!(holder(&s, "d", 1, &mut children), "x 1\n");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    q.send(b"y", Timeout::TryOnce).expect("send");

    let (claimed_tx, claimed_rx) = mpsc::channel::<u64>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let sweeper = std::thread::spawn(move || {
        shmq::internals::participants::hooks::set(
            shmq::internals::participants::hooks::Point::AfterClaim,
            Some(Box::new(move |i| {
                let _ = claimed_tx.send(i);
                let _ = go_rx.recv_timeout(Duration::from_secs(30));
            })),
        );
        let r = q.recover();
        shmq::internals::participants::hooks::set(
            shmq::internals::participants::hooks::Point::AfterClaim,
            None,
        );
        (q, r)
    });
    let dead = claimed_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the sweeper found the dead holder");

    // The sweeper is between marking entry `dead` and repairing its slots.
    let n = Queue::open(&s.queue).expect("a newcomer attaches");
    assert_ne!(
        n.participant(),
        Some(dead),
        "the newcomer was given the entry being cleaned"
    );
    let m = n.claim(Timeout::TryOnce).expect("the newcomer claims");
    assert_eq!(m.data().expect("data"), b"y");
    let mut r = n
        .reserve(16, Timeout::TryOnce)
        .expect("the newcomer reserves");
    r.write(b"z").expect("write");
    let passer = Queue::open(&s.queue).expect("another newcomer attaches");
    assert_ne!(passer.participant(), Some(dead));
    drop(passer);
    go_tx.send(()).expect("let the sweeper go on");
    let (q, swept) = sweeper.join().expect("the sweeper");
    swept.expect("recover");

    // The repair acted only on what the dead holder left.
    assert_eq!(m.data().expect("the claim is still held"), b"y");
    m.ack().expect("the newcomer's claim survived the sweep");
    r.commit()
        .expect("the newcomer's reservation survived the sweep");
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = q.claim(Timeout::TryOnce).expect("claim");
        got.push((m.data().expect("data"), m.deliveries()));
        m.ack().expect("ack");
    }
    got.sort();
    assert_eq!(got, [(b"x".to_vec(), 2), (b"z".to_vec(), 1)]);
    // Once the repair is over, the entry is free for the next newcomer.
    let later = Queue::open(&s.queue).expect("attach");
    assert_eq!(later.participant(), Some(dead));
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    drop(n);
}

/// A cleaner dies in the middle of cleaning up after a dead consumer. While
/// it lives nobody else cleans that entry or reuses it; once it is dead, a
/// survivor takes the work over and the dead consumer's claim comes back.
#[test]
fn g8_a_cleaner_that_dies_mid_clean_is_taken_over_only_once_dead() {
    let s = Scratch::new("cleaner-dies");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    q.send(b"x", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    assert_eq!(holder(&s, "d", 1, &mut children), "x 1\n");
    let cdir = s.file("c");
    std::fs::create_dir(&cdir).expect("a directory for the cleaner");
    children.0.push(spawn(
        "clean-and-stall",
        &[
            (QUEUE, s.queue.display().to_string()),
            (DIR, cdir.display().to_string()),
        ],
    ));
    let cleaner: u64 = await_file(&cdir.join("ready"), &mut children.0[1])
        .trim()
        .parse()
        .expect("the cleaner's index");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    put_file(&cdir.join("go"), "go\n");
    let dead: u64 = await_file(&cdir.join("cleaning"), &mut children.0[1])
        .trim()
        .parse()
        .expect("the entry being cleaned");
    assert_ne!(dead, cleaner);

    // The cleaner is alive, stopped before its repairs.
    let n = Queue::open(&s.queue).expect("a newcomer attaches");
    assert_ne!(
        n.participant(),
        Some(dead),
        "the entry being cleaned was given to a newcomer"
    );
    drop(n);
    q.recover().expect("recover");
    let st = q.stats();
    assert_eq!(
        (st.in_flight, st.depth),
        (1, 0),
        "a survivor took over the work of a live cleaner"
    );

    // The cleaner dies: its work is taken over.
    assert!(
        kill(&mut children.0[1]).is_none(),
        "the cleaner exited early"
    );
    q.recover().expect("recover");
    let m = q
        .claim(Timeout::TryOnce)
        .expect("the dead consumer's claim is back");
    assert_eq!(
        (m.data().expect("data"), m.deliveries()),
        (b"x".to_vec(), 2)
    );
    m.ack().expect("ack");
    let live: Vec<u64> = q.participants().iter().map(|p| p.index).collect();
    assert_eq!(live, [q.participant().unwrap()]);
    let report = q.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

/// How long a dead consumer's claim may take to come back once a survivor
/// calls into shmq (or, with a watchdog, once the consumer is dead).
const BACK_WITHIN: Duration = Duration::from_millis(10);

/// Polls `probe` (an inspection handle: it repairs nothing itself) until
/// `in_flight` claims are left, for at most `limit`; returns how long it took.
fn until_in_flight(probe: &Queue, in_flight: u64, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if probe.stats().in_flight == in_flight {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::hint::spin_loop();
    }
}

/// A consumer is SIGKILLed holding a claim while the survivor is busy in its
/// own code (200 ms, as a cook with an order). The survivor's next call into
/// shmq, a claim that finds another message at once, sweeps: the dead one's
/// message is claimable again within 10 ms of that call, not 32 operations
/// later.
#[test]
fn g8_a_busy_survivors_next_call_returns_a_dead_consumers_claim() {
    let s = Scratch::new("busy-survivor");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    q.send(b"order-1", Timeout::TryOnce).expect("send");
    let mut children = Children::default();
    assert_eq!(holder(&s, "d", 1, &mut children), "order-1 1\n");
    for i in 2..6 {
        q.send(format!("order-{i}").as_bytes(), Timeout::TryOnce)
            .expect("send");
    }
    let probe = Queue::inspect(&s.queue).expect("inspect");
    assert!(
        kill(&mut children.0[0]).is_none(),
        "the holder exited early"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(probe.stats().in_flight, 1, "nobody called, nobody swept");

    let t0 = Instant::now();
    let m = q.claim(Duration::from_secs(1)).expect("claim");
    // Ours is in flight; the dead one's is not any more.
    let back = until_in_flight(&probe, 1, Duration::from_secs(1)).map(|_| t0.elapsed());
    eprintln!("a dead consumer's claim back {back:?} after a busy survivor's call");
    let back = back.expect("the dead consumer's claim is still held after the survivor's call");
    assert!(
        back < BACK_WITHIN,
        "the claim came back {back:?} after the call"
    );
    m.ack().expect("ack");
    let mut seen = Vec::new();
    while let Ok(m) = q.claim(Timeout::TryOnce) {
        seen.push((
            String::from_utf8(m.data().expect("data")).unwrap(),
            m.deliveries(),
        ));
        m.ack().expect("ack");
    }
    assert!(seen.contains(&("order-1".to_string(), 2)), "{seen:?}");
}

/// With a watchdog started (period 1 ms), a consumer SIGKILLed holding a
/// claim has it back within 10 ms although nobody calls into shmq at all.
/// Timed from the reaping of the child (its lock is gone by then); on a
/// loaded machine a scheduling delay can exceed the budget, so the best of
/// three deaths is judged.
#[test]
fn g8_a_watchdog_returns_a_dead_consumers_claim_without_any_call() {
    let s = Scratch::new("watchdog");
    let q = Queue::create(&s.queue, &liveness_options()).expect("create");
    let dog = q
        .start_watchdog(Duration::from_millis(1))
        .expect("start the watchdog");
    let probe = Queue::inspect(&s.queue).expect("inspect");
    let mut children = Children::default();
    let mut times = Vec::new();
    for round in 0..3 {
        q.send(format!("order-{round}").as_bytes(), Timeout::TryOnce)
            .expect("send");
        let held = holder(&s, &format!("d{round}"), 1, &mut children);
        assert_eq!(held, format!("order-{round} 1\n"));
        assert_eq!(probe.stats().in_flight, 1);
        assert!(
            kill(&mut children.0[round]).is_none(),
            "the holder exited early"
        );
        let back = until_in_flight(&probe, 0, Duration::from_secs(2));
        eprintln!("a dead consumer's claim back {back:?} after its death, with a watchdog");
        times.push(back.expect("the watchdog did not return the dead consumer's claim"));
        let m = q.claim(Timeout::TryOnce).expect("claim");
        assert_eq!(m.deliveries(), 2);
        m.ack().expect("ack");
        if back.is_some_and(|t| t < BACK_WITHIN) {
            break;
        }
    }
    let best = times.iter().min().copied().unwrap();
    assert!(best < BACK_WITHIN, "claims back after {times:?}");
    // Dropping the guard stops the thread and detaches its handle.
    drop(dog);
    let attached: Vec<u64> = probe.participants().iter().map(|p| p.index).collect();
    assert_eq!(attached, [q.participant().unwrap()]);
    let report = probe.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}
