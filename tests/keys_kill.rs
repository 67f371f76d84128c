//! Per-key versions (G7) under real SIGKILLs of producers and consumers
//! (issue #3).
//!
//! Producer processes send versioned updates for `KEYS` keys; producer `i`
//! owns the keys `k` with `k % PRODUCERS == i`, and its versions mostly come
//! from a clock made strictly increasing, so the versions of one key increase
//! in send order, also across a producer's restarts; a few sends use version
//! 0 (the engine's next version), a version at or below the last acked one
//! (must be `Stale`) or one just below the newest (queued behind a newer one,
//! it must be completed without delivery). The queue runs in FIFO mode and in
//! latest-only mode (one test each). Consumer processes claim
//! the updates and apply them to a "local cache": a shared file of one
//! 16-byte record per key (version, write count), read with `pread` and
//! written with `pwrite`. A second shared file, mapped, holds one `u32`
//! "holder" per key: a consumer sets it to its pid with a compare-and-swap
//! after a claim and clears it before the ack, so two consumers holding one
//! key at once are seen (allowed only when the first holder was SIGKILLed:
//! its claim was redelivered).
//!
//! The test binary re-executes itself as workers (the pattern of
//! `tests/kill.rs`): a child runs only the [`worker`] test, which reads its
//! role from the environment and is a no-op without it. Ledgers (one `write`
//! per record; a last line without its newline is ignored):
//!
//! - producer `prod-I-G.log`: `T key version` before a send, `S key version`
//!   after it returned `Ok`, `R key version` after it returned `Stale`;
//! - consumer `cons-I-G.log`: `P pid` first, `C key version deliveries`
//!   after a claim, `V key version cached` when the claimed version is older
//!   than the cached one, `D key version` when a first delivery repeats the
//!   cached version, `O key pid` when another process held the key,
//!   `W key version` after the cache write, `A key version` after the ack,
//!   `X what` for a failure.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmq::{Counter, Options, Queue, SendOptions, Status};

const ROLE: &str = "SHMQ_KK_ROLE";
const QUEUE: &str = "SHMQ_KK_QUEUE";
const DIR: &str = "SHMQ_KK_DIR";
const INDEX: &str = "SHMQ_KK_INDEX";
const GEN: &str = "SHMQ_KK_GEN";
const SEED: &str = "SHMQ_KK_SEED";

const KEYS: u64 = 200;
const PRODUCERS: u64 = 3;
const CONSUMERS: u64 = 3;
const CHAOS: Duration = Duration::from_secs(4);
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
const PAYLOAD_LEN: usize = 24;

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
        let stem = format!("shmq-keyskill-{}-{name}", std::process::id());
        let dir = base.join(format!("{stem}.d"));
        let queue = base.join(format!("{stem}.q"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&queue);
        std::fs::create_dir(&dir).expect("create the scratch directory");
        Scratch { dir, queue }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.queue);
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn from_clock() -> Rng {
        Rng::new(now_ns() ^ (std::process::id() as u64) << 32)
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

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// key, version, checksum of both.
fn payload(key: u64, version: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(PAYLOAD_LEN);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    let sum = fnv1a(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

fn decode(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() != PAYLOAD_LEN {
        return None;
    }
    let u = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap());
    (fnv1a(&p[..16]) == u(16)).then_some((u(0), u(8)))
}

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

/// SIGKILLs and reaps a child; `None` when the kill hit a running process.
fn kill(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

struct Ledger(File);

impl Ledger {
    fn create(path: &Path) -> Ledger {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("ledger {}: {e}", path.display()));
        Ledger(f)
    }
    fn put(&mut self, text: &str) {
        self.0.write_all(text.as_bytes()).expect("ledger write");
    }
    fn fail(&mut self, what: &str) -> ! {
        self.put(&format!("X {}\n", what.replace('\n', " ")));
        eprintln!("worker failed: {what}");
        std::process::exit(3);
    }
}

/// The shared "local cache" (one 16-byte record per key, pread/pwrite) and
/// the mapped holder words (one `u32` pid per key).
struct Cache {
    records: File,
    holders: memmap2::MmapMut,
}

impl Cache {
    fn create(dir: &Path) {
        let z = vec![0u8; (KEYS as usize + 1) * 16];
        std::fs::write(dir.join("cache"), &z).expect("create the cache");
        std::fs::write(dir.join("holders"), &z[..(KEYS as usize + 1) * 4])
            .expect("create the holders");
    }
    fn open(dir: &Path) -> Cache {
        let rw = |n: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(n))
                .expect("open a cache file")
        };
        let records = rw("cache");
        // SAFETY: the file is only ever accessed through atomics (holders)
        // by the processes of this test, and is never truncated.
        let holders = unsafe { memmap2::MmapMut::map_mut(&rw("holders")) }.expect("map holders");
        Cache { records, holders }
    }
    fn holder(&self, key: u64) -> &AtomicU32 {
        assert!(key <= KEYS);
        // SAFETY: in bounds (the mapping has KEYS + 1 aligned u32 words, the
        // mapping is page aligned), and the words are only used atomically.
        unsafe { &*(self.holders.as_ptr().add(key as usize * 4) as *const AtomicU32) }
    }
    fn read(&self, key: u64) -> (u64, u64) {
        let mut b = [0u8; 16];
        self.records
            .read_exact_at(&mut b, key * 16)
            .expect("pread the cache");
        let u = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        (u(0), u(8))
    }
    fn write(&self, key: u64, version: u64, count: u64) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&version.to_le_bytes());
        b[8..].copy_from_slice(&count.to_le_bytes());
        self.records
            .write_all_at(&b, key * 16)
            .expect("pwrite the cache");
    }
}

struct Env {
    queue: PathBuf,
    dir: PathBuf,
    index: u64,
    gen: u64,
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
            seed: n(SEED),
            parent: std::os::unix::process::parent_id(),
            born: Instant::now(),
        }
    }
    fn check_parent(&self) {
        if std::os::unix::process::parent_id() != self.parent
            || self.born.elapsed() > CHILD_LIFETIME
        {
            std::process::exit(0);
        }
    }
}

#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let env = Env::read();
    match role.as_str() {
        "producer" => producer(&env),
        "consumer" => consumer(&env),
        "replacer" => replacer(&env),
        other => panic!("unknown worker role {other}"),
    }
}

fn producer(env: &Env) {
    let q = Queue::open(&env.queue).unwrap_or_else(|e| panic!("producer: open: {e}"));
    let mut ledger = Ledger::create(&env.dir.join(format!("prod-{}-{}.log", env.index, env.gen)));
    let mut rng = Rng::new(env.seed);
    let mut last = 0u64;
    let mut history: HashMap<u64, HashSet<u64>> = HashMap::new();
    let owned = KEYS / PRODUCERS;
    for round in 0u64.. {
        if round % 32 == 0 {
            env.check_parent();
        }
        // Keys 1..=KEYS; producer i owns those with k % PRODUCERS == i.
        let mut key = rng.below(owned + 1) * PRODUCERS + env.index;
        if key == 0 || key > KEYS {
            key = PRODUCERS + env.index;
        }
        // Mostly a fresh explicit version; sometimes version 0 (the engine
        // gives the next one); sometimes a version at or below the key's
        // last acked one (must be `Stale`); sometimes a version just below
        // the newest one sent, never used before for the key (`Ok` queues it
        // behind the newer one, and it must then be completed without
        // delivery; or `Stale`). No version of a key is sent twice: a
        // duplicate of an acked version is delivered by the engine (see the
        // report of issue #3), which this test would flag.
        let used = history.entry(key).or_default();
        let mix = rng.below(16);
        let acked = q.latest_acked_version(key);
        let stale_probe = used.iter().copied().filter(|v| *v <= acked).max();
        let newest = used.iter().copied().max().unwrap_or(0);
        let (version, must_be_stale) = if mix == 0 {
            (0, false)
        } else if mix == 1 && stale_probe.is_some() {
            (stale_probe.unwrap_or(0), true)
        } else if mix == 2 && newest > 1 && !used.contains(&(newest - 1)) {
            (newest - 1, false)
        } else {
            let v = now_ns().max(last + 1);
            last = v;
            (v, false)
        };
        if version != 0 {
            used.insert(version);
        }
        ledger.put(&format!("T {key} {version}\n"));
        let opts = SendOptions::new().key(key).version(version);
        match q.send_with(&payload(key, version), &opts) {
            Ok(s) if must_be_stale => ledger.fail(&format!(
                "send {key}/{version} (last acked {acked}) returned Ok {s:?}, not Stale"
            )),
            Ok(s) if s.version == version || (version == 0 && s.version > acked) => {
                last = last.max(s.version);
                used.insert(s.version);
                ledger.put(&format!("S {key} {}\n", s.version))
            }
            Ok(s) => ledger.fail(&format!("sent {key}/{version} as version {}", s.version)),
            Err(e) if e.status() == Status::Stale => ledger.put(&format!("R {key} {version}\n")),
            Err(e) if matches!(e.status(), Status::Full | Status::Timeout) => {}
            Err(e) => ledger.fail(&format!("send {key}/{version}: {e}")),
        }
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Claims, checks, applies to the cache and acks one message. `Ok(false)`
/// when nothing came within `wait`.
fn apply_one(
    q: &Queue,
    cache: &Cache,
    ledger: &mut Ledger,
    me: u32,
    wait: Duration,
    hold: bool,
) -> Result<bool, String> {
    let m = match q.claim(wait) {
        Ok(m) => m,
        Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => return Ok(false),
        Err(e) => return Err(format!("claim: {e}")),
    };
    let data = m.data().map_err(|e| format!("data: {e}"))?;
    let Some((key, version)) = decode(&data) else {
        return Err(format!("torn payload {data:?}"));
    };
    // A payload of version 0 was sent with "the next version".
    let version = if version == 0 { m.version() } else { version };
    if (key, version) != (m.key(), m.version()) {
        return Err(format!(
            "payload {key}/{version} in a message of key {} version {}",
            m.key(),
            m.version()
        ));
    }
    let mut rec = format!("C {key} {version} {}\n", m.deliveries());
    let h = cache.holder(key);
    if let Err(other) = h.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
        rec.push_str(&format!("O {key} {other}\n"));
        h.store(me, Ordering::SeqCst);
    }
    let (cached, count) = cache.read(key);
    if version < cached {
        rec.push_str(&format!("V {key} {version} {cached}\n"));
    } else if version == cached && m.deliveries() == 1 {
        // Applied before, yet a first delivery: a duplicate of an acked
        // version (or of one a killed consumer applied) was delivered.
        rec.push_str(&format!("D {key} {version}\n"));
    }
    ledger.put(&rec);
    if hold {
        std::thread::sleep(Duration::from_millis(1));
    }
    cache.write(key, version, count + 1);
    ledger.put(&format!("W {key} {version}\n"));
    if let Err(other) = h.compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst) {
        ledger.put(&format!("O {key} {other}\n"));
        h.store(0, Ordering::SeqCst);
    }
    m.ack().map_err(|e| format!("ack {key}/{version}: {e}"))?;
    ledger.put(&format!("A {key} {version}\n"));
    Ok(true)
}

fn consumer(env: &Env) {
    let q = Queue::open(&env.queue).unwrap_or_else(|e| panic!("consumer: open: {e}"));
    let cache = Cache::open(&env.dir);
    let mut ledger = Ledger::create(&env.dir.join(format!("cons-{}-{}.log", env.index, env.gen)));
    let me = std::process::id();
    ledger.put(&format!("P {me}\n"));
    let mut rng = Rng::new(env.seed);
    for round in 0u64.. {
        if round % 32 == 0 {
            env.check_parent();
        }
        let hold = rng.below(8) == 0;
        if let Err(what) = apply_one(&q, &cache, &mut ledger, me, Duration::from_millis(50), hold) {
            ledger.fail(&what);
        }
    }
}

struct Children(Vec<(String, u64, u64, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(&mut c.3);
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    sent_ok: usize,
    stale: usize,
    claims: usize,
    redeliveries: usize,
    writes: usize,
    acks: usize,
    overlaps_with_killed: usize,
    killed_producers: usize,
    killed_consumers: usize,
    drained: usize,
}

fn run(name: &str, latest_only: bool) {
    let s = Scratch::new(name);
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 256,
            max_message_size: 64,
            key_capacity: 256,
            max_deliveries: 0,
            latest_only,
            ..Options::default()
        },
    )
    .expect("create");
    Cache::create(&s.dir);
    let mut rng = Rng::from_clock();
    let vars = |idx: u64, gen: u64, seed: u64| {
        vec![
            (QUEUE, s.queue.display().to_string()),
            (DIR, s.dir.display().to_string()),
            (INDEX, idx.to_string()),
            (GEN, gen.to_string()),
            (SEED, seed.to_string()),
        ]
    };
    let mut children = Children(Vec::new());
    for (role, n) in [("producer", PRODUCERS), ("consumer", CONSUMERS)] {
        for i in 0..n {
            let c = spawn(role, &vars(i, 0, rng.next()));
            children.0.push((role.to_string(), i, 0, c));
        }
    }
    // Pids killed while running; ledgers (stems) of killed producers.
    let mut killed_pids: HashSet<u32> = HashSet::new();
    let mut killed_ledgers: HashSet<String> = HashSet::new();
    let mut t = Tally::default();
    let start = Instant::now();
    while start.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(100 + rng.below(200)));
        let k = rng.below(children.0.len() as u64) as usize;
        let (role, idx, gen, child) = &mut children.0[k];
        let pid = child.id();
        if let Some(status) = kill(child) {
            panic!("{role} {idx} gen {gen} exited by itself: {status}");
        }
        killed_pids.insert(pid);
        let short = if role == "producer" { "prod" } else { "cons" };
        killed_ledgers.insert(format!("{short}-{idx}-{gen}"));
        if role == "producer" {
            t.killed_producers += 1;
        } else {
            t.killed_consumers += 1;
        }
        *gen += 1;
        *child = spawn(role, &vars(*idx, *gen, rng.next()));
    }
    // Stop: every child dies by SIGKILL (its claims are redelivered).
    for (role, idx, gen, child) in &mut children.0 {
        let pid = child.id();
        if let Some(status) = kill(child) {
            panic!("{role} {idx} gen {gen} exited by itself: {status}");
        }
        killed_pids.insert(pid);
        let short = if role == "producer" { "prod" } else { "cons" };
        killed_ledgers.insert(format!("{short}-{idx}-{gen}"));
    }
    // Drain in this process.
    let cache = Cache::open(&s.dir);
    let mut ledger = Ledger::create(&s.dir.join("cons-drain-0.log"));
    let me = std::process::id();
    ledger.put(&format!("P {me}\n"));
    let drain_start = Instant::now();
    loop {
        match apply_one(
            &q,
            &cache,
            &mut ledger,
            me,
            Duration::from_millis(200),
            false,
        ) {
            Ok(true) => t.drained += 1,
            Ok(false) => {
                let st = q.stats();
                if st.depth + st.delayed + st.in_flight == 0 {
                    break;
                }
            }
            Err(what) => panic!("drain: {what}"),
        }
        assert!(
            drain_start.elapsed() < Duration::from_secs(15),
            "the drain did not finish: {:?}",
            q.stats()
        );
    }

    // Read the ledgers.
    let mut problems = Vec::new();
    let mut max_ok: HashMap<u64, u64> = HashMap::new();
    let mut allowed: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut names: Vec<String> = std::fs::read_dir(&s.dir)
        .expect("read the ledger directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    for name in &names {
        let text = std::fs::read_to_string(s.dir.join(name)).expect("read a ledger");
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let stem = name.trim_end_matches(".log");
        let mut last_intent = None;
        for line in complete.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| -> u64 {
                f.get(i)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: bad record {line:?}"))
            };
            match f[0] {
                "X" => problems.push(format!("{name}: {line}")),
                "T" => last_intent = Some((num(1), num(2))),
                "S" => {
                    t.sent_ok += 1;
                    let e = max_ok.entry(num(1)).or_default();
                    *e = (*e).max(num(2));
                }
                "R" => t.stale += 1,
                "P" => {}
                "C" => {
                    t.claims += 1;
                    if num(3) > 1 {
                        t.redeliveries += 1;
                    }
                }
                "V" => problems.push(format!(
                    "{name}: key {} version {} applied over the newer cached version {}",
                    num(1),
                    num(2),
                    num(3)
                )),
                "O" => {
                    if killed_pids.contains(&(num(2) as u32)) {
                        t.overlaps_with_killed += 1;
                    } else {
                        problems.push(format!(
                            "{name}: key {} held by live process {} at the same time",
                            num(1),
                            num(2)
                        ));
                    }
                }
                "D" => problems.push(format!(
                    "{name}: key {} version {} delivered for the first time, yet already applied",
                    num(1),
                    num(2)
                )),
                "W" => t.writes += 1,
                "A" => t.acks += 1,
                _ => panic!("{name}: bad record {line:?}"),
            }
        }
        // A killed producer's last send may have returned Ok unrecorded.
        if stem.starts_with("prod-") && killed_ledgers.contains(stem) {
            if let Some((k, v)) = last_intent {
                allowed.entry(k).or_default().insert(v);
            }
        }
    }
    let mut keys_checked = 0;
    for key in 1..=KEYS {
        let (cached, _) = cache.read(key);
        let newest = max_ok.get(&key).copied().unwrap_or(0);
        let ok = cached == newest
            || (cached > newest
                && allowed
                    .get(&key)
                    .is_some_and(|a| a.contains(&cached) || a.contains(&0)));
        if !ok {
            problems.push(format!(
                "key {key}: cached version {cached}, newest sent with Ok {newest}"
            ));
        }
        let acked = q.latest_acked_version(key);
        if acked != cached {
            problems.push(format!(
                "key {key}: latest_acked_version {acked}, cached version {cached}"
            ));
        }
        let h = cache.holder(key).load(Ordering::SeqCst);
        if h != 0 && !killed_pids.contains(&h) {
            problems.push(format!("key {key}: still held by live process {h}"));
        }
        keys_checked += 1;
    }
    let report = q.verify();
    problems.extend(report.problems.iter().map(|p| format!("verify: {p}")));
    let st = q.stats();
    println!(
        "keys_kill {name} (latest_only {latest_only}): {keys_checked} keys, {t:?}, \
         engine stale {} conflated {} dead participants {}",
        st.counter(Counter::Stale),
        st.counter(Counter::Conflated),
        st.counter(Counter::DeadParticipants)
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(30)].join("\n")
    );
    assert!(t.sent_ok > 0 && t.acks > 0, "{t:?}");
}

#[test]
fn versions_survive_killed_producers_and_consumers() {
    run("fifo", false);
}

#[test]
fn latest_only_versions_survive_killed_producers_and_consumers() {
    run("latest", true);
}

// ---------------------------------------------------------------------
// Latest-only replacements in place under SIGKILL (G4, G7)
// ---------------------------------------------------------------------

/// The key the replacer updates.
const RKEY: u64 = 7;
/// Replacers killed (one after the other) in
/// `g4_latest_only_replacements_survive_sigkill`.
const REPLACER_KILLS: u64 = 220;

/// Sends newer and newer versions of `RKEY` as fast as it can (each
/// replaces the waiting one in place, unless the consumer holds it), one in
/// four through `reserve` and `commit_with`:
/// `T version` before a send, `S version` after it returned `Ok`.
fn replacer(env: &Env) {
    let q = Queue::open(&env.queue).unwrap_or_else(|e| panic!("replacer: open: {e}"));
    let mut ledger = Ledger::create(&env.dir.join(format!("repl-{}.log", env.gen)));
    let mut rng = Rng::from_clock();
    let mut last = 0u64;
    for round in 0u64.. {
        if round % 64 == 0 {
            env.check_parent();
        }
        let v = now_ns().max(last + 1);
        last = v;
        ledger.put(&format!("T {v}\n"));
        let opts = SendOptions::new()
            .key(RKEY)
            .version(v)
            .timeout(Duration::from_secs(5));
        // One send in four is zero-copy: its reservation's payload goes
        // into the replacement record and then into the waiting slot.
        let sent = if rng.below(4) == 0 {
            q.reserve(PAYLOAD_LEN, Duration::from_secs(5))
                .and_then(|mut r| {
                    r.write(&payload(RKEY, v))?;
                    r.commit_with(&opts)
                })
        } else {
            q.send_with(&payload(RKEY, v), &opts)
        };
        match sent {
            Ok(s) if s.version == v => ledger.put(&format!("S {v}\n")),
            Ok(s) => ledger.fail(&format!("sent {v} as version {}", s.version)),
            Err(e) => ledger.fail(&format!("send {v}: {e}")),
        }
    }
}

/// The newest version a replacer's ledger says was sent `Ok`, the last one
/// it began, and a failure it recorded.
fn replacer_ledger(path: &Path) -> (u64, u64, Option<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    let (mut ok, mut began, mut failed) = (0, 0, None);
    for line in complete.lines() {
        let (what, rest) = line.split_once(' ').unwrap_or((line, ""));
        match what {
            "T" => began = rest.parse().unwrap_or(0),
            "S" => ok = ok.max(rest.parse().unwrap_or(0)),
            _ => failed = Some(line.to_string()),
        }
    }
    (ok, began, failed)
}

/// G4, G7 (hole: a latest-only replacement killed midway lost the waiting
/// message): a replacer process sends newer and newer versions of one key
/// while a consumer (a thread here) claims them, holding each a little, so
/// that most sends replace the waiting message in place; the replacer is
/// SIGKILLed at a random point of its send loop, `REPLACER_KILLS` times,
/// one process after the other. After each kill, before the next replacer
/// starts, the consumer must reach the newest version whose send returned
/// `Ok` (the survivors' repair finishes or undoes the dead one's
/// replacement): nothing is ever missing. The versions the consumer acks
/// never go back, every payload is whole, and the file verifies at the end.
#[test]
fn g4_latest_only_replacements_survive_sigkill() {
    let s = Scratch::new("replace");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: 64,
            key_capacity: 4,
            max_deliveries: 0,
            latest_only: true,
            ..Options::default()
        },
    )
    .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let last_acked = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let consumer = {
        let (path, stop, last_acked, acked) = (
            s.queue.clone(),
            stop.clone(),
            last_acked.clone(),
            acked.clone(),
        );
        std::thread::spawn(move || -> Result<(), String> {
            let q = Queue::open(&path).map_err(|e| format!("consumer: open: {e}"))?;
            let mut rng = Rng::from_clock();
            while !stop.load(Ordering::SeqCst) {
                let m = match q.claim(Duration::from_millis(20)) {
                    Ok(m) => m,
                    Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => continue,
                    Err(e) => return Err(format!("claim: {e}")),
                };
                let data = m.data().map_err(|e| format!("data: {e}"))?;
                let got = decode(&data);
                if got != Some((m.key(), m.version())) || m.key() != RKEY {
                    return Err(format!(
                        "torn or foreign payload {data:?} in key {} version {}",
                        m.key(),
                        m.version()
                    ));
                }
                let v = m.version();
                let before = last_acked.load(Ordering::SeqCst);
                if v <= before {
                    return Err(format!("version {v} delivered after {before} was acked"));
                }
                // Hold it a little: meanwhile the replacer queues one
                // newer message and replaces it in place, again and again.
                std::thread::sleep(Duration::from_micros(100 + rng.below(400)));
                m.ack().map_err(|e| format!("ack {v}: {e}"))?;
                acked.lock().unwrap().push(v);
                last_acked.store(v, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    let mut rng = Rng::from_clock();
    let mut missing = Vec::new();
    let mut kills = 0u64;
    for gen in 0..REPLACER_KILLS {
        let ledger = s.dir.join(format!("repl-{gen}.log"));
        let mut child = spawn(
            "replacer",
            &[
                (QUEUE, s.queue.display().to_string()),
                (DIR, s.dir.display().to_string()),
                (GEN, gen.to_string()),
            ],
        );
        // Kill it in its send loop: once it has begun sending, after a
        // random pause.
        let started = Instant::now();
        while std::fs::metadata(&ledger).map_or(0, |m| m.len()) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replacer {gen} never began"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("replacer {gen} exited by itself: {status}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        if let Some(status) = kill(&mut child) {
            panic!("replacer {gen} exited by itself: {status}");
        }
        kills += 1;
        let (ok, began, failed) = replacer_ledger(&ledger);
        if let Some(f) = failed {
            panic!("replacer {gen}: {f}");
        }
        // Nobody sends now: the newest version sent Ok must come (or the
        // one begun after it, whose send may have returned unrecorded).
        let waited = Instant::now();
        while last_acked.load(Ordering::SeqCst) < ok {
            if consumer.is_finished() || waited.elapsed() > Duration::from_secs(3) {
                let st = q.stats();
                missing.push(format!(
                    "kill {gen}: version {ok} was sent Ok (then {began} begun), the consumer \
                     is at {} and nothing more comes (depth {}, in flight {}, reserved {})",
                    last_acked.load(Ordering::SeqCst),
                    st.depth,
                    st.in_flight,
                    st.reserved
                ));
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if consumer.is_finished() {
            break;
        }
    }
    // The last replacer's last send may have gone through unrecorded: let
    // the consumer drain what is left.
    let drain = Instant::now();
    loop {
        let st = q.stats();
        if st.depth + st.delayed + st.in_flight == 0 || consumer.is_finished() {
            break;
        }
        assert!(
            drain.elapsed() < Duration::from_secs(10),
            "the drain did not finish: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let consumed = consumer.join().expect("the consumer thread");
    let acked = acked.lock().unwrap().clone();
    let report = q.verify();
    let st = q.stats();
    println!(
        "latest-only replacements under SIGKILL: {kills} replacers killed, {} versions acked, \
         {} replaced in place, {} dead participants cleaned up, {} messages missing",
        acked.len(),
        st.counter(Counter::Conflated),
        st.counter(Counter::DeadParticipants),
        missing.len()
    );
    assert_eq!(consumed, Ok(()), "the consumer failed");
    assert!(
        missing.is_empty(),
        "{} of {kills} kills lost the key's message:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(report.problems.is_empty(), "verify: {:?}", report.problems);
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acked versions went back"
    );
    assert!(
        st.counter(Counter::Conflated) > 0,
        "nothing was replaced in place"
    );
}
