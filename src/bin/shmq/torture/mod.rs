//! `shmq torture`: producer and consumer processes on keyless and keyed
//! queues, SIGKILLed at random moments and started again, with a ledger
//! outside the queues that proves at the end that nothing was lost, torn or
//! delivered fresh twice, that per-key versions never went backwards, and
//! that the files verify (SPEC G3, G4, G5, G7, G8, G9).
//!
//! The run, in order:
//!
//! 1. a fresh directory with one queue file per kind asked for (keyless,
//!    keyed FIFO, keyed latest-only), the ledger ([`ledger`]) and the
//!    configuration the workers read (`config.json`);
//! 2. `--producers` and `--consumers` worker processes ([`worker`]), each
//!    attached to every queue;
//! 3. until `--secs` passed or `--kills` were made: a pause between
//!    `--min-interval` and `--max-interval`, then one random worker is
//!    marked killed in the ledger, SIGKILLed, reaped and started again
//!    ([`supervise`]); every quarter second the dead letters are taken out
//!    and their ids marked in the ledger;
//! 4. every worker is SIGKILLed; the parent drains every queue itself, as
//!    one more consumer that is never killed ([`consume`]), then takes out
//!    the last dead letters;
//! 5. the checks ([`check`]) and the report ([`report`]).
//!
//! Timing is never asserted: the death-to-claim latency is measured and
//! reported, not checked.

pub mod check;
pub mod consume;
pub mod ledger;
pub mod payload;
pub mod report;
pub mod supervise;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmq::{Counter, Options, Queue, Status};

use crate::cli::TortureArgs;
use crate::util::{CliError, CmdResult, Progress};
use consume::Consumer;
use ledger::{kind, Event, Ledger, Sizes, DRAINER};
use report::{Latency, QueueReport, Report};
use supervise::Supervisor;

/// Largest payload of the torture queues.
const MAX_MESSAGE: usize = 128;
/// How often the parent takes the dead letters out during the run.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// A run whose queues hold work that nobody acks for this long is wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(60);
/// The final drain of one queue gives up after this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Latency samples kept.
const SAMPLES: u64 = 1 << 21;

/// The kinds of queue a run can torture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    /// No keys.
    Keyless,
    /// Keyed, FIFO per key.
    Fifo,
    /// Keyed, latest-only mode.
    LatestOnly,
}

impl QueueKind {
    /// The name used in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Keyless => "keyless",
            QueueKind::Fifo => "fifo",
            QueueKind::LatestOnly => "latest-only",
        }
    }
    /// Whether its messages carry keys.
    pub fn keyed(self) -> bool {
        self != QueueKind::Keyless
    }
}

/// A fault the workers inject on purpose, to show that the checks catch
/// it (used by the tests of the harness).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Consumers ack some messages without recording it: they look lost.
    Lose,
    /// Consumers nack some first deliveries and record the redelivery as a
    /// first delivery again: a double fresh delivery.
    DoubleFresh,
    /// Producers flip a byte of some payloads after the checksum: torn.
    Tear,
}

/// One queue of the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueSpec {
    /// What kind.
    pub kind: QueueKind,
    /// Its file.
    pub path: PathBuf,
}

/// What every worker of a run needs to know (`config.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// The queues, in ledger order.
    pub queues: Vec<QueueSpec>,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Keys `1..=keys` per keyed queue.
    pub keys: u64,
    /// Producer processes (producer `i` owns the keys `k % producers == i`).
    pub producers: u32,
    /// Largest payload.
    pub max_message_size: usize,
    /// One id in this many is poison (0 = none).
    pub poison_one_in: u64,
    /// Messages per second per producer (0 = unpaced).
    pub rate: u64,
    /// The injected fault, if any.
    pub fault: Option<Fault>,
}

impl Config {
    fn file(dir: &Path) -> PathBuf {
        dir.join("config.json")
    }

    /// Reads the configuration of the run in `dir`.
    pub fn read(dir: &Path) -> Result<Config, String> {
        let p = Config::file(dir);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn write(&self, dir: &Path) -> Result<(), String> {
        let p = Config::file(dir);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Whether message `id` is poison: every consumer nacks it, so it ends
    /// in the dead letters.
    pub fn poison(&self, id: u64) -> bool {
        self.poison_one_in > 0 && payload::id_hash(id) % self.poison_one_in == 0
    }

    /// Whether the injected fault `f` hits message `id` (one in 16).
    pub fn faulty(&self, id: u64, f: Fault) -> bool {
        self.fault == Some(f) && payload::id_hash(id).rotate_left(29) % 16 == 3
    }
}

/// xorshift64*: victims, pauses and operation mixes.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced by 1).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The run directory: removed at the end unless kept.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn validate(a: &TortureArgs) -> Result<(), String> {
    if !(1..=16).contains(&a.producers) || !(1..=16).contains(&a.consumers) {
        return Err("--producers and --consumers must be between 1 and 16".into());
    }
    if a.queues.is_empty() {
        return Err("--queues names no queue".into());
    }
    if a.queues.iter().any(|k| k.keyed()) && a.keys < 2 * a.producers as u64 {
        return Err(format!(
            "--keys must be at least twice --producers ({})",
            a.producers
        ));
    }
    if a.min_interval < Duration::from_millis(1) || a.min_interval > a.max_interval {
        return Err("--min-interval must be at least 1ms and at most --max-interval".into());
    }
    if a.capacity < 2 || a.max_messages == 0 {
        return Err("--capacity must be at least 2 and --max-messages at least 1".into());
    }
    Ok(())
}

fn default_base() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

/// `shmq torture`.
pub fn run(a: &TortureArgs) -> CmdResult {
    validate(a).map_err(|e| CliError::new(format!("torture: {e}")))?;
    let mut queues_asked: Vec<QueueKind> = Vec::new();
    for k in &a.queues {
        if !queues_asked.contains(k) {
            queues_asked.push(*k);
        }
    }
    let seed = a
        .seed
        .unwrap_or_else(|| shmq::sys::unix_ns() ^ (std::process::id() as u64) << 32);
    let base = a.dir.clone().unwrap_or_else(default_base);
    let dir = base.join(format!(
        "shmq-torture-{}-{:04x}",
        std::process::id(),
        seed & 0xffff
    ));
    std::fs::create_dir(&dir)
        .map_err(|e| CliError::new(format!("IO: creating {}: {e}", dir.display())))?;
    let mut run_dir = RunDir {
        path: dir.clone(),
        keep: a.keep,
    };
    let err = |e: String| CliError::new(format!("torture: {e}"));

    // The queues, the ledger, the configuration.
    let mut specs = Vec::new();
    for k in &queues_asked {
        let path = dir.join(format!("{}.q", k.name()));
        let opts = Options {
            capacity: a.capacity,
            max_message_size: MAX_MESSAGE as u32,
            key_capacity: if k.keyed() { (2 * a.keys).max(16) } else { 0 },
            dlq_capacity: 4096,
            participant_capacity: 64,
            lease: Duration::from_secs(30),
            max_deliveries: a.max_deliveries,
            latest_only: *k == QueueKind::LatestOnly,
            ..Options::default()
        };
        drop(Queue::create(&path, &opts)?);
        specs.push(QueueSpec { kind: *k, path });
    }
    let interval_ms = a.min_interval.as_millis().max(1) as u64;
    let expected_starts = match (a.kills, a.secs) {
        (Some(k), _) => k,
        (None, s) => s.unwrap_or(DEFAULT_RUN).as_millis() as u64 / interval_ms,
    };
    let sizes = Sizes {
        records: a.max_messages,
        instances: (expected_starts + 2 * (a.producers + a.consumers) as u64 + 4096).min(1 << 26),
        queues: specs.len() as u64,
        keys: a.keys,
        samples: SAMPLES,
    };
    let ledger_path = dir.join("ledger");
    let ledger = Ledger::create(&ledger_path, sizes)
        .map_err(|e| err(format!("creating the ledger: {e}")))?;
    let cfg = Config {
        queues: specs,
        ledger: ledger_path,
        keys: a.keys,
        producers: a.producers,
        max_message_size: MAX_MESSAGE,
        poison_one_in: a.poison_one_in,
        rate: a.rate,
        fault: a.inject,
    };
    cfg.write(&dir).map_err(err)?;
    // The parent's own handles: dead letters during the run, the final
    // drain, stats and checks.
    let mut queues = Vec::new();
    for qs in &cfg.queues {
        queues.push(Queue::open(&qs.path)?);
    }
    let drainer = Consumer {
        cfg: &cfg,
        ledger: &ledger,
        me: DRAINER,
        inject: false,
    };

    // The workers, and the kills.
    let started = Instant::now();
    let mut sup = Supervisor::new(&dir, &ledger, seed).map_err(err)?;
    for i in 0..a.producers {
        sup.start(true, i).map_err(err)?;
    }
    for i in 0..a.consumers {
        sup.start(false, i).map_err(err)?;
    }
    let mut progress = Progress::new(a.kills, "torture: kills");
    let mut last_sweep = Instant::now();
    let mut last_acked = (Instant::now(), 0u64);
    let mut note = None;
    loop {
        let kills = sup.kills.producers + sup.kills.consumers;
        let elapsed = started.elapsed();
        let time_up = match (a.kills, a.secs) {
            (_, Some(s)) => elapsed >= s,
            (None, None) => elapsed >= DEFAULT_RUN,
            (Some(_), None) => false,
        };
        if time_up || a.kills.is_some_and(|k| kills >= k) {
            break;
        }
        sup.pause(a.min_interval, a.max_interval);
        if let Err(e) = sup
            .reap_exited()
            .and_then(|_| sup.kill_random(a.restart_delay))
        {
            note = Some(e);
            break;
        }
        progress.inc(1);
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            let mut acked = 0;
            let mut pending = 0;
            for (qi, q) in queues.iter().enumerate() {
                drainer.take_dead_letters(q, qi).map_err(err)?;
                let st = q.stats();
                acked += st.counter(Counter::Acked);
                pending += st.depth + st.in_flight;
            }
            if acked != last_acked.1 || pending == 0 {
                last_acked = (Instant::now(), acked);
            } else if last_acked.0.elapsed() >= WEDGED_AFTER {
                ledger.violation(
                    kind::WEDGED,
                    &format!(
                        "no message acked for {} s while {pending} waited or were in flight",
                        WEDGED_AFTER.as_secs()
                    ),
                );
                break;
            }
        }
    }
    progress.finish();
    let ran_for = started.elapsed();
    sup.stop_all();

    // The drain: the parent is the only participant left alive; its
    // claims clean up after the dead.
    for (qi, q) in queues.iter().enumerate() {
        let t0 = Instant::now();
        loop {
            match q.claim_batch(32, Duration::from_millis(100)) {
                Ok(msgs) => {
                    if let Err(e) = drainer.handle(q, qi, msgs, shmq::sys::monotonic_ns(), false) {
                        ledger.violation(kind::WORKER, &format!("the final drain: {e}"));
                        break;
                    }
                }
                Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => {
                    drainer.take_dead_letters(q, qi).map_err(err)?;
                    let st = q.stats();
                    if st.depth + st.delayed + st.in_flight + st.reserved + st.dlq_waiting == 0 {
                        break;
                    }
                }
                Err(e) => {
                    ledger.violation(kind::WORKER, &format!("the final drain: claim: {e}"));
                    break;
                }
            }
            if t0.elapsed() >= DRAIN_LIMIT {
                let st = q.stats();
                ledger.violation(
                    kind::WEDGED,
                    &format!(
                        "queue {}: not drained after {} s: depth {}, delayed {}, in flight {}, reserved {}, waiting for dead-letter room {}",
                        cfg.queues[qi].kind.name(),
                        DRAIN_LIMIT.as_secs(),
                        st.depth,
                        st.delayed,
                        st.in_flight,
                        st.reserved,
                        st.dlq_waiting
                    ),
                );
                break;
            }
        }
    }

    // The checks.
    let torn_before = ledger
        .violations()
        .iter()
        .filter(|(k, _)| k == kind::TORN)
        .count() as u64;
    let outcomes = check::check(&cfg, &ledger, &queues);
    check::check_counters(&cfg, &ledger, &queues, &outcomes, torn_before);
    check::check_files(&cfg, &ledger, &queues);
    let duration = started.elapsed();

    let found = ledger.violations();
    let (violations, problems) = report::tally(&found, 50);
    let events = ledger.events();
    let samples = ledger.samples();
    let mut total = check::Outcomes::default();
    let mut per_queue = Vec::new();
    for (qi, q) in queues.iter().enumerate() {
        total.add(&outcomes[qi]);
        let st = q.stats();
        per_queue.push(QueueReport {
            queue: cfg.queues[qi].kind.name(),
            outcomes: outcomes[qi],
            engine_claimed: st.counter(Counter::Claimed),
            engine_redelivered: st.counter(Counter::Redelivered),
            engine_reclaimed: st.counter(Counter::Reclaimed),
            engine_stale: st.counter(Counter::Stale),
            stale_skipped: st
                .counter(Counter::Stale)
                .saturating_sub(outcomes[qi].refused_stale),
            engine_conflated: st.counter(Counter::Conflated),
            engine_abandoned: st.counter(Counter::Abandoned),
            engine_dead_participants: st.counter(Counter::DeadParticipants),
        });
    }
    let stale_skipped = per_queue.iter().map(|q| q.stale_skipped).sum();
    let conflated = per_queue.iter().map(|q| q.engine_conflated).sum();
    let r = Report {
        passed: found.is_empty(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed,
        duration_s: duration.as_secs_f64(),
        settings: report::Settings {
            queues: cfg.queues.iter().map(|q| q.kind.name()).collect(),
            keys: a.keys,
            capacity: a.capacity,
            max_deliveries: a.max_deliveries,
            poison_one_in: a.poison_one_in,
            rate: a.rate,
            min_interval_ns: a.min_interval.as_nanos() as u64,
            max_interval_ns: a.max_interval.as_nanos() as u64,
            restart_delay_ns: a.restart_delay.as_nanos() as u64,
        },
        producers: a.producers,
        consumers: a.consumers,
        kills: sup.kills,
        kills_total: sup.kills.producers + sup.kills.consumers,
        messages: total,
        queues: per_queue,
        stale_skipped,
        conflated,
        duplicates_by_redelivery: events[Event::RedeliveredAfterDeath as usize],
        redelivered_after_nack: events[Event::RedeliveredAfterNack as usize],
        keys_taken_from_killed: events[Event::KeyFromKilled as usize],
        reapplied_after_death: events[Event::Reapplied as usize],
        death_to_claim: Latency::of(
            samples
                .iter()
                .filter_map(|(i, t)| ledger.killed_at(*i).map(|k| t.saturating_sub(k)))
                .collect(),
        ),
        reaped_to_claim: Latency::of(
            samples
                .iter()
                .filter_map(|(i, t)| ledger.reaped_at(*i).map(|r| t.saturating_sub(r)))
                .collect(),
        ),
        kill_to_reaped: Latency::of(
            ledger
                .kill_times()
                .iter()
                .map(|(k, r)| r.saturating_sub(*k))
                .collect(),
        ),
        ledger_full: ledger.next_id() >= ledger.sizes().records,
        violations,
        problems,
    };
    report::print(&r);
    if let Some(n) = &note {
        println!("  note: the run stopped early: {n}");
    }
    println!(
        "  (killing ran for {}; the drain and the checks took the rest)",
        crate::util::human_ns(ran_for.as_nanos() as u64)
    );
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&r).map_err(|e| err(e.to_string()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| CliError::new(format!("IO: {}: {e}", path.display())))?;
    }
    if r.passed {
        return Ok(0);
    }
    run_dir.keep = true;
    let kinds: Vec<String> = r
        .violations
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    drop(run_dir);
    Err(CliError::new(format!(
        "torture: FAILED: {} violation(s): {}; the run's files are kept in {}",
        found.len(),
        kinds.join(", "),
        dir.display()
    )))
}

/// How long a run lasts when neither `--secs` nor `--kills` is given.
pub const DEFAULT_RUN: Duration = Duration::from_secs(10);

/// `shmq __torture-worker`.
pub fn worker(a: &crate::cli::TortureWorkerArgs) -> i32 {
    worker::run(&worker::WorkerSpec {
        dir: a.dir.clone(),
        producer: a.producer,
        index: a.index,
        instance: a.instance,
        seed: a.seed,
        parent: a.parent,
    })
}
