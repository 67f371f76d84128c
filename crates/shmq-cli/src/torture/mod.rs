//! `shmq torture`: producer and consumer processes on keyless and keyed
//! queues, SIGKILLed at random moments and started again, with a ledger
//! outside the queues that proves at the end that nothing was lost, torn or
//! delivered fresh twice, that per-key versions never went backwards, and
//! that the files verify (the README's guarantees G3, G4, G5, G7, G8, G9).
//!
//! The run, in order:
//!
//! 1. a fresh directory with one queue file per kind asked for (keyless,
//!    keyed FIFO, keyed latest-only), the ledger ([`shmq_testkit::ledger`]) and the
//!    configuration the workers read (`config.json`);
//! 2. `--producers` and `--consumers` worker processes ([`mod@worker`]), each
//!    attached to every queue;
//! 3. until `--secs` passed, `--kills` were made or `--events` happened: a
//!    pause between `--min-interval` and `--max-interval`, then an event
//!    ([`supervise`]): one random worker is marked killed in the ledger,
//!    SIGKILLed, reaped and started again (sometimes a second one a few ms
//!    later, while the survivors repair after the first), or it is stalled
//!    (SIGSTOP past the lease or the reservation timeout, SIGCONT later);
//!    after every event the occupancy of every queue is compared with its
//!    capacity, and every quarter second the dead letters are taken out and
//!    their ids marked in the ledger;
//! 4. the stalled workers run again, then every worker is SIGKILLed; the
//!    parent drains every queue itself, as one more consumer that is never
//!    killed ([`shmq_testkit::consumer`]), then takes out the last dead letters;
//! 5. the checks ([`shmq_testkit::oracle`], [`check`]): every message, the engine's counters, the
//!    files, the capacity of the drained queues, the death-to-claim latency
//!    against `--max-death-p50` and `--max-death-p99`; and the report
//!    ([`report`]).

pub mod check;
pub mod report;
pub mod supervise;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmq::{Counter, Options, Queue, Status};

use crate::cli::TortureArgs;
use crate::util::{CliError, CmdResult, Progress};
use report::{Bad, CapacityReport, LateReport, Latency, QueueReport, Report};
use shmq_testkit::consumer::Consumer;
use shmq_testkit::ledger::{self, kind, Event, Ledger, Sizes, DRAINER};
use shmq_testkit::oracle::Oracle;
use shmq_testkit::rules::{Injected, Order, Rules};
pub use shmq_testkit::Rng;
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
    /// How the oracle sees a queue of this kind.
    pub fn order(self) -> Order {
        match self {
            QueueKind::Keyless => Order::Keyless,
            QueueKind::Fifo => Order::Fifo,
            QueueKind::LatestOnly => Order::LatestOnly,
        }
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
    /// The supervisor hides deaths from the engine for a lease: a victim is
    /// marked killed and SIGSTOPped, and SIGKILLed only a lease later, as if
    /// liveness detection were off (death to claimed again is then a lease).
    HideDeath,
    /// Consumers record a late outcome refused with `LeaseLost` as if the
    /// engine had accepted it.
    LateAccept,
    /// The queues are built with one slot more than the run checks for.
    ExtraSlot,
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
    /// The queues' lease, ns.
    pub lease_ns: u64,
    /// The queues' reservation timeout, ns.
    pub reservation_timeout_ns: u64,
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

    /// Whether the injected fault `f` hits message `id` (one in 16).
    pub fn faulty(&self, id: u64, f: Fault) -> bool {
        self.fault == Some(f) && Rules::hit(id)
    }

    /// The rules the consumers and the oracle check the run against.
    pub fn rules(&self) -> Rules {
        Rules {
            queues: self
                .queues
                .iter()
                .map(|q| (q.kind.name(), q.kind.order()))
                .collect(),
            keys: self.keys,
            lease_ns: self.lease_ns,
            max_message_size: self.max_message_size,
            poison_one_in: self.poison_one_in,
            fault: match self.fault {
                Some(Fault::Lose) => Some(Injected::Lose),
                Some(Fault::DoubleFresh) => Some(Injected::DoubleFresh),
                Some(Fault::LateAccept) => Some(Injected::LateAccept),
                _ => None,
            },
        }
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
    if a.lease < Duration::from_millis(20) || a.reservation_timeout < Duration::from_millis(20) {
        return Err("--lease and --reservation-timeout must be at least 20ms".into());
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
        .unwrap_or_else(|| shmq::internals::sys::unix_ns() ^ (std::process::id() as u64) << 32);
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
            capacity: a.capacity + (a.inject == Some(Fault::ExtraSlot)) as u64,
            max_message_size: MAX_MESSAGE as u32,
            key_capacity: if k.keyed() { (2 * a.keys).max(16) } else { 0 },
            dlq_capacity: 4096,
            participant_capacity: 64,
            lease: a.lease,
            reservation_timeout: a.reservation_timeout,
            max_deliveries: a.max_deliveries,
            latest_only: *k == QueueKind::LatestOnly,
            ..Options::default()
        };
        drop(Queue::create(&path, &opts)?);
        specs.push(QueueSpec { kind: *k, path });
    }
    let interval_ms = a.min_interval.as_millis().max(1) as u64;
    let expected_starts = match (a.kills.or(a.events), a.secs) {
        (Some(k), _) => 2 * k,
        (None, s) => 2 * s.unwrap_or(DEFAULT_RUN).as_millis() as u64 / interval_ms,
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
        lease_ns: a.lease.as_nanos() as u64,
        reservation_timeout_ns: a.reservation_timeout.as_nanos() as u64,
    };
    cfg.write(&dir).map_err(err)?;
    // The parent's own handles: dead letters during the run, the final
    // drain, stats and checks.
    let mut queues = Vec::new();
    for qs in &cfg.queues {
        queues.push(Queue::open(&qs.path)?);
    }
    let rules = cfg.rules();
    let drainer = Consumer::new(&rules, &ledger, DRAINER, false);

    // The workers, and the events.
    let started = Instant::now();
    let stall_for = (
        2 * a.lease + Duration::from_millis(150),
        2 * a.reservation_timeout + Duration::from_millis(150),
    );
    let mut sup = Supervisor::new(&dir, &ledger, seed, stall_for).map_err(err)?;
    if a.inject == Some(Fault::HideDeath) {
        sup.hide_death = Some(a.lease + Duration::from_millis(50));
    }
    for i in 0..a.producers {
        sup.start(true, i).map_err(err)?;
    }
    for i in 0..a.consumers {
        sup.start(false, i).map_err(err)?;
    }
    let mut progress = match (a.events, a.kills) {
        (Some(e), _) => Progress::new(Some(e), "torture: events"),
        (None, k) => Progress::new(k, "torture: kills"),
    };
    let mut cap = CapacityReport {
        capacity: a.capacity,
        ..CapacityReport::default()
    };
    let mut last_sweep = Instant::now();
    let mut last_acked = (Instant::now(), 0u64);
    let mut note = None;
    loop {
        let kills = sup.kills.producers + sup.kills.consumers;
        let events = kills + sup.stalls.producers + sup.stalls.consumers;
        let elapsed = started.elapsed();
        let time_up = match (a.kills.or(a.events), a.secs) {
            (_, Some(s)) => elapsed >= s,
            (None, None) => elapsed >= DEFAULT_RUN,
            (Some(_), None) => false,
        };
        if time_up || a.kills.is_some_and(|k| kills >= k) || a.events.is_some_and(|e| events >= e) {
            break;
        }
        sup.pause(a.min_interval, a.max_interval);
        let stall = a.stall_one_in > 0 && sup.below(a.stall_one_in) == 0;
        let double = a.double_kill_one_in > 0 && sup.below(a.double_kill_one_in) == 0;
        let r = sup.reap_exited().and_then(|_| {
            // A stall when one is due and a worker can be stalled, else a
            // kill.
            if stall && sup.stall_random()? {
                return Ok((1, true));
            }
            sup.kill_random(a.restart_delay, double).map(|n| (n, false))
        });
        match r {
            // The bar counts events, or kills when only --kills is given.
            Ok((n, stalled)) if a.events.is_some() || !stalled => progress.inc(n),
            Ok(_) => {}
            Err(e) => {
                note = Some(e);
                break;
            }
        }
        for (qi, q) in queues.iter().enumerate() {
            sample_capacity(&cfg, &ledger, qi, q, &mut cap);
        }
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
    // The stalled workers run again and give their late outcomes before
    // the end.
    sup.resume_due(true);
    std::thread::sleep(Duration::from_millis(100));
    sup.hide_death = None;
    sup.stop_all();

    // The drain: the parent is the only participant left alive; its
    // claims clean up after the dead.
    let mut drained = vec![false; queues.len()];
    for (qi, q) in queues.iter().enumerate() {
        let t0 = Instant::now();
        loop {
            let called = shmq::internals::sys::monotonic_ns();
            match q.claim_batch(32, Duration::from_millis(100)) {
                Ok(msgs) => {
                    let got = shmq::internals::sys::monotonic_ns();
                    if let Err(e) = drainer.handle(q, qi, msgs, called, got, false) {
                        ledger.violation(kind::WORKER, &format!("the final drain: {e}"));
                        break;
                    }
                }
                Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => {
                    drainer.take_dead_letters(q, qi).map_err(err)?;
                    let st = q.stats();
                    if st.depth + st.delayed + st.in_flight + st.reserved + st.dlq_waiting == 0 {
                        drained[qi] = true;
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
    let count_kind = |k: &str| ledger.violations().iter().filter(|(v, _)| v == k).count() as u64;
    let torn_before = count_kind(kind::TORN);
    let oracle = Oracle {
        rules: &rules,
        ledger: &ledger,
        queues: &queues,
        drained: &drained,
    };
    let outcomes = oracle.check();
    let acks = oracle.check_counters(&outcomes, torn_before);
    oracle.check_files();
    let events = ledger.events();
    let samples = ledger.samples();
    // Consumers killed at the stop are left out: the drain takes the
    // queues one after the other, so their claims wait for it.
    let mut deaths: Vec<(u64, u32)> = samples
        .iter()
        .filter(|(i, _)| ledger.kill_how(*i) != ledger::kill_how::AT_STOP)
        .filter_map(|(i, t)| ledger.killed_at(*i).map(|k| (t.saturating_sub(k), *i)))
        .collect();
    let death_to_claim = Latency::of(deaths.iter().map(|d| d.0).collect());
    deaths.sort_unstable_by(|x, y| y.cmp(x));
    let slowest_deaths: Vec<String> = deaths
        .iter()
        .take(5)
        .map(|(ns, i)| {
            format!(
                "{:.1} ms (instance {i}, {})",
                *ns as f64 / 1e6,
                ledger::kill_how::name(ledger.kill_how(*i))
            )
        })
        .collect();
    let limits = (
        a.max_death_p50.as_nanos() as u64,
        a.max_death_p99.as_nanos() as u64,
    );
    let latency_over = check::check_latency(&ledger, &death_to_claim, limits, &slowest_deaths);
    let mut total = shmq_testkit::oracle::Outcomes::default();
    let mut per_queue = Vec::new();
    for (qi, q) in queues.iter().enumerate() {
        total.add(&outcomes[qi]);
        let st = q.stats();
        per_queue.push(QueueReport {
            queue: cfg.queues[qi].kind.name(),
            outcomes: outcomes[qi],
            engine_acked: st.counter(Counter::Acked),
            ledger_acks: acks[qi].0,
            engine_claimed: st.counter(Counter::Claimed),
            engine_redelivered: st.counter(Counter::Redelivered),
            engine_reclaimed: st.counter(Counter::Reclaimed),
            engine_stale: st.counter(Counter::Stale),
            stale_skipped: st
                .counter(Counter::Stale)
                .saturating_sub(outcomes[qi].refused_stale),
            engine_conflated: st.counter(Counter::Conflated),
            engine_abandoned: st.counter(Counter::Abandoned),
            engine_lease_lost: st.counter(Counter::LeaseLost),
            engine_dead_participants: st.counter(Counter::DeadParticipants),
        });
    }
    // After the report's figures were read: the drained queues hold
    // exactly their capacity (this sends and acks messages of its own).
    for (qi, q) in queues.iter().enumerate() {
        if drained[qi] {
            cap.probes
                .push(check::probe_capacity(&cfg, &ledger, qi, q, a.capacity));
        }
    }
    let late = LateReport {
        outcomes_refused: events[Event::LateOutcomeRefused as usize],
        outcomes_unraced: events[Event::LateOutcomeUnraced as usize],
        commits_abandoned: events[Event::LateCommitAbandoned as usize],
        commits_unraced: events[Event::LateCommitUnraced as usize],
        accepted: count_kind(kind::LATE_ACCEPTED),
    };
    check::check_exercised(&ledger, &sup.kills, &sup.stalls, &events, &late, &total);
    cap.violations = count_kind(kind::CAPACITY);
    let duration = started.elapsed();

    let found = ledger.violations();
    let (violations, problems) = report::tally(&found, 50);
    let stale_skipped = per_queue.iter().map(|q| q.stale_skipped).sum();
    let conflated = per_queue.iter().map(|q| q.engine_conflated).sum();
    let kills_total = sup.kills.producers + sup.kills.consumers;
    let stalls_total = sup.stalls.producers + sup.stalls.consumers;
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
            lease_ns: cfg.lease_ns,
            reservation_timeout_ns: cfg.reservation_timeout_ns,
            stall_one_in: a.stall_one_in,
            double_kill_one_in: a.double_kill_one_in,
            max_death_p50_ns: limits.0,
            max_death_p99_ns: limits.1,
        },
        producers: a.producers,
        consumers: a.consumers,
        events_total: kills_total + stalls_total,
        kills: sup.kills,
        kills_total,
        stalls: sup.stalls,
        stalls_total,
        bad: Bad {
            lost: total.lost,
            torn: count_kind(kind::TORN),
            double_fresh: total.double_fresh,
            late_accepted: late.accepted,
            capacity_violations: cap.violations,
            death_to_claim_over_limit: latency_over,
        },
        messages: total,
        queues: per_queue,
        stale_skipped,
        conflated,
        duplicates_by_redelivery: events[Event::RedeliveredAfterDeath as usize],
        redelivered_after_nack: events[Event::RedeliveredAfterNack as usize],
        redelivered_after_expiry: events[Event::RedeliveredAfterExpiry as usize],
        keys_taken_from_killed: events[Event::KeyFromKilled as usize],
        keys_taken_from_expired: events[Event::KeyFromExpired as usize],
        reapplied_after_death: events[Event::Reapplied as usize],
        recovers: events[Event::Recovers as usize],
        late,
        capacity: cap,
        death_to_claim,
        death_to_claim_slowest: slowest_deaths,
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
        "  (the events ran for {}; the drain and the checks took the rest)",
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

/// Compares the occupancy of queue `qi` now (queued, delayed, in flight,
/// reserved, waiting for dead-letter room) with the capacity the run asked
/// for (G1); a violation when it is larger, or when the queue says it has
/// another capacity.
fn sample_capacity(cfg: &Config, ledger: &Ledger, qi: usize, q: &Queue, cap: &mut CapacityReport) {
    let st = q.stats();
    let used = st.depth + st.delayed + st.in_flight + st.reserved + st.dlq_waiting;
    cap.samples += 1;
    cap.max_seen = cap.max_seen.max(used);
    cap.full_seen += (used == cap.capacity) as u64;
    if used > cap.capacity || st.capacity != cap.capacity {
        ledger.violation(
            kind::CAPACITY,
            &format!(
                "queue {}: {} queued + {} delayed + {} in flight + {} reserved + {} waiting for dead-letter room = {used} in a queue of capacity {} (stats say {})",
                cfg.queues[qi].kind.name(),
                st.depth,
                st.delayed,
                st.in_flight,
                st.reserved,
                st.dlq_waiting,
                cap.capacity,
                st.capacity
            ),
        );
    }
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
