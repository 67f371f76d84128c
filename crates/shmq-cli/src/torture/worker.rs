//! The worker processes of a torture run: `shmq __torture-worker`, started
//! (and SIGKILLed, and started again) by `shmq torture` with the same
//! binary. A worker reads the run's configuration from its directory, maps
//! the ledger, opens every queue, and then produces or consumes until it is
//! killed; it never exits by itself unless something failed (the parent
//! counts that as a violation). It dies with its parent (`PR_SET_PDEATHSIG`).
//!
//! A producer sends to a random queue at a time, in every way the engine
//! offers: single sends, zero-copy reservations written in two halves (so
//! that a kill can land between them), and batches; keyed sends mostly with
//! a fresh explicit version, sometimes version 0 (the engine's next),
//! sometimes a version at or below the key's last acked one (which must be
//! refused as stale), sometimes a version just below its newest (queued
//! behind it, then skipped, or refused). Producer `i` of `P` owns the keys
//! `k` with `k % P == i`, so the versions of a key go up in send order, also
//! across restarts (they come from CLOCK_MONOTONIC).
//!
//! A consumer claims from the queues in turn, singly or in batches, and
//! holds one claim in eight for a millisecond; [`shmq_testkit::consumer`] does the
//! rest.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use shmq::{Queue, SendOptions, Status};

use super::{Config, Fault, QueueKind, Rng};
use shmq_testkit::child::Lifeline;
use shmq_testkit::consumer::{Consumer, CLOCK_SLACK_NS, REPAIR_MARGIN_NS};
use shmq_testkit::ledger::{busy, kind, send_state, Event, Ledger};
use shmq_testkit::payload;

/// How long a send waits for room before it tries again.
const SEND_WAIT: Duration = Duration::from_millis(50);
/// How long a consumer that found every queue empty waits on one.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// What a worker is told on its command line.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The run directory (configuration, ledger, queues).
    pub dir: std::path::PathBuf,
    /// Producer or consumer.
    pub producer: bool,
    /// Index among its role.
    pub index: u32,
    /// Instance number in the ledger.
    pub instance: u32,
    /// Random seed.
    pub seed: u64,
    /// The parent's pid.
    pub parent: u32,
}

/// Runs a worker; returns the exit code (only on failure).
pub fn run(spec: &WorkerSpec) -> i32 {
    // Killed by the kernel when the parent dies; exits if it already did.
    let life = Lifeline::of(spec.parent, None).die_with_parent();
    let cfg = match Config::read(&spec.dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmq torture worker: {e}");
            return 2;
        }
    };
    let ledger = match Ledger::open(&cfg.ledger) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shmq torture worker: ledger: {e}");
            return 2;
        }
    };
    let fail = |what: String| -> i32 {
        let role = if spec.producer {
            "producer"
        } else {
            "consumer"
        };
        ledger.violation(
            kind::WORKER,
            &format!("{role} {} (instance {}): {what}", spec.index, spec.instance),
        );
        3
    };
    let mut queues = Vec::new();
    for qs in &cfg.queues {
        match Queue::open(&qs.path) {
            Ok(q) => queues.push(q),
            Err(e) => return fail(format!("open {}: {e}", qs.path.display())),
        }
    }
    let rng = Rng::new(spec.seed);
    let r = if spec.producer {
        Producer {
            cfg: &cfg,
            ledger: &ledger,
            queues: &queues,
            me: spec.instance,
            index: spec.index,
            rng,
            last_version: 0,
            history: vec![HashMap::new(); queues.len()],
        }
        .run(life)
    } else {
        consume_forever(&cfg, &ledger, &queues, spec, rng, life)
    };
    match r {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// The versions a producer used for one key.
#[derive(Clone, Default)]
struct KeyHistory {
    used: HashSet<u64>,
    newest: u64,
}

struct Producer<'a> {
    cfg: &'a Config,
    ledger: &'a Ledger,
    queues: &'a [Queue],
    me: u32,
    index: u32,
    rng: Rng,
    /// The newest explicit or given version, over every key.
    last_version: u64,
    /// Per queue, per key.
    history: Vec<HashMap<u64, KeyHistory>>,
}

/// Why a send round ended early.
enum Stop {
    /// Every id of the ledger is used: nothing more to send.
    LedgerFull,
    /// An unexpected error.
    Failed(String),
}

fn retryable(s: Status) -> bool {
    matches!(s, Status::Timeout | Status::Full | Status::Abandoned)
}

impl Producer<'_> {
    fn run(mut self, life: Lifeline) -> Result<(), String> {
        let started = Instant::now();
        let mut sent = 0u64;
        for round in 0u64.. {
            if round % 16 == 0 {
                life.check();
            }
            // Pace: at most `rate` messages per second.
            if self.cfg.rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / self.cfg.rate as f64);
                let now = started.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            let qi = self.rng.below(self.queues.len() as u64) as usize;
            let r = match self.cfg.queues[qi].kind {
                QueueKind::Keyless => self.keyless(qi, life),
                QueueKind::Fifo | QueueKind::LatestOnly => self.keyed(qi, life),
            };
            match r {
                Ok(n) => sent += n,
                Err(Stop::LedgerFull) => loop {
                    // Nothing more to send; wait to be killed.
                    life.check();
                    std::thread::sleep(Duration::from_millis(20));
                },
                Err(Stop::Failed(e)) => return Err(e),
            }
        }
        Ok(())
    }

    fn payload(&self, id: u64, key: u64, version: u64) -> Vec<u8> {
        let mut p = payload::encode(id, key, version, self.cfg.max_message_size);
        if self.cfg.faulty(id, Fault::Tear) {
            let mid = p.len() / 2;
            p[mid] ^= 0x5a;
        }
        p
    }

    /// One single send, reservation or batch of keyless messages.
    fn keyless(&mut self, qi: usize, life: Lifeline) -> Result<u64, Stop> {
        let q = &self.queues[qi];
        let op = self.rng.below(10);
        let n = if op >= 8 { 2 + self.rng.below(7) } else { 1 };
        let first = self.ledger.alloc(n).ok_or(Stop::LedgerFull)?;
        for id in first..first + n {
            self.ledger.intent(id, qi, self.me, 0, 0);
        }
        let payloads: Vec<Vec<u8>> = (first..first + n)
            .map(|id| self.payload(id, 0, 0))
            .collect();
        let failed = |what: &str, e: shmq::Error| Stop::Failed(format!("{what}: {e}"));
        match op {
            0..=5 => loop {
                match q.send(&payloads[0], SEND_WAIT) {
                    Ok(_) => break,
                    Err(e) if retryable(e.status()) => life.check(),
                    Err(e) => return Err(failed("send", e)),
                }
            },
            6 | 7 => loop {
                let pause = self.rng.below(2) == 0;
                match self.reserve_and_commit(qi, &payloads[0], pause) {
                    Ok(()) => break,
                    Err(e) if retryable(e.status()) => life.check(),
                    Err(e) => return Err(failed("reserve and commit", e)),
                }
            },
            _ => {
                let mut done = 0usize;
                while done < payloads.len() {
                    match q.send_batch(&payloads[done..], SEND_WAIT) {
                        Ok(k) => {
                            for id in first + done as u64..first + (done + k) as u64 {
                                self.ledger.sent(id, send_state::SENT, 0);
                            }
                            done += k;
                        }
                        Err(e) if matches!(e.status(), Status::Timeout | Status::Full) => {
                            life.check()
                        }
                        // A commit after the first may have failed: which
                        // messages went out is unknown, so the rest of the
                        // batch stays INTENT (and is never retried).
                        Err(e) if e.status() == Status::Abandoned => return Ok(done as u64),
                        Err(e) => return Err(failed("send_batch", e)),
                    }
                }
                return Ok(n);
            }
        }
        self.ledger.sent(first, send_state::SENT, 0);
        Ok(1)
    }

    /// One keyed send.
    fn keyed(&mut self, qi: usize, life: Lifeline) -> Result<u64, Stop> {
        let q = &self.queues[qi];
        let p = self.cfg.producers as u64;
        let owned = self.cfg.keys / p;
        let mut key = self.rng.below(owned.max(1)) * p + self.index as u64;
        if key == 0 {
            key = p;
        }
        let hist = self.history[qi].entry(key).or_default();
        let acked = q.latest_acked_version(key);
        let stale_probe = hist.used.iter().copied().filter(|v| *v <= acked).max();
        let mix = self.rng.below(16);
        let (version, must_be_stale) = match (mix, stale_probe) {
            (0, _) => (0, false),
            (1, Some(v)) => (v, true),
            (2, _) if hist.newest > 1 && !hist.used.contains(&(hist.newest - 1)) => {
                (hist.newest - 1, false)
            }
            _ => {
                let v = shmq::internals::sys::monotonic_ns().max(self.last_version + 1);
                self.last_version = v;
                (v, false)
            }
        };
        if version != 0 {
            hist.used.insert(version);
        }
        let id = self.ledger.alloc(1).ok_or(Stop::LedgerFull)?;
        self.ledger.intent(id, qi, self.me, key, version);
        let data = self.payload(id, key, version);
        let opts = SendOptions::new()
            .key(key)
            .version(version)
            .timeout(SEND_WAIT);
        loop {
            match q.send_with(&data, &opts) {
                Ok(s) => {
                    if must_be_stale || s.version == 0 || (version != 0 && s.version != version) {
                        self.ledger.violation(
                            kind::STALE_ACCEPTED,
                            &format!(
                                "queue {}: send of key {key} version {version} (last acked {acked}, {}) returned Ok with version {}",
                                self.cfg.queues[qi].kind.name(),
                                if must_be_stale { "must be stale" } else { "fresh" },
                                s.version
                            ),
                        );
                    }
                    self.ledger.sent(id, send_state::SENT, s.version);
                    let hist = self.history[qi].entry(key).or_default();
                    hist.used.insert(s.version);
                    hist.newest = hist.newest.max(s.version);
                    self.last_version = self.last_version.max(s.version);
                    return Ok(1);
                }
                Err(e) if e.status() == Status::Stale => {
                    self.ledger.sent(id, send_state::REFUSED, version);
                    return Ok(0);
                }
                Err(e) if retryable(e.status()) => life.check(),
                Err(e) => {
                    return Err(Stop::Failed(format!(
                        "send key {key} version {version}: {e}"
                    )))
                }
            }
        }
    }
    /// A zero-copy send written in two halves with a yield between them, so
    /// that a kill can land on a half-written reservation; with `pause`, a
    /// millisecond between them with the busy word saying so (the
    /// supervisor stalls producers then, past the reservation timeout). A
    /// late commit must get `Abandoned` once a repair could have run.
    fn reserve_and_commit(&self, qi: usize, data: &[u8], pause: bool) -> shmq::Result<()> {
        let q = &self.queues[qi];
        let called = shmq::internals::sys::monotonic_ns();
        let mut r = q.reserve(data.len(), SEND_WAIT)?;
        let reserved = shmq::internals::sys::monotonic_ns();
        self.ledger.set_busy(self.me, busy::HOLDING);
        let half = data.len() / 2;
        let dst = r.as_mut_ptr();
        if dst.is_null() || r.capacity() < data.len() {
            return Err(shmq::Error::new(
                Status::Internal,
                format!(
                    "reserve gave {} bytes for {} (null: {})",
                    r.capacity(),
                    data.len(),
                    dst.is_null()
                ),
            ));
        }
        // SAFETY: `dst` points to the reservation's payload area of
        // `r.capacity() >= data.len()` bytes, which this process owns until
        // it commits; the first half is in bounds of both buffers.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, half) };
        if pause {
            self.ledger.set_busy(self.me, busy::PAUSED);
            std::thread::sleep(Duration::from_millis(1));
            self.ledger.set_busy(self.me, busy::HOLDING);
        } else {
            std::thread::yield_now();
        }
        // SAFETY: as above, for the second half.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr().add(half), dst.add(half), data.len() - half)
        };
        r.set_len(data.len())?;
        let res = r.commit().map(|_| ());
        self.ledger.set_busy(self.me, busy::IDLE);
        let now = shmq::internals::sys::monotonic_ns();
        let timeout = self.cfg.reservation_timeout_ns;
        let name = self.cfg.queues[qi].kind.name();
        match &res {
            Err(e) if e.status() == Status::Abandoned => {
                if now.saturating_sub(called) + CLOCK_SLACK_NS < timeout {
                    self.ledger.violation(
                        kind::EARLY_REPAIR,
                        &format!(
                            "queue {name}: the commit of live instance {} got Abandoned {} ms after its reserve call, within the reservation timeout of {} ms",
                            self.me,
                            now.saturating_sub(called) / 1_000_000,
                            timeout / 1_000_000
                        ),
                    );
                } else {
                    self.ledger.event(Event::LateCommitAbandoned);
                }
            }
            Ok(()) if now.saturating_sub(reserved) > 2 * timeout + REPAIR_MARGIN_NS => {
                self.ledger.violation(
                    kind::LATE_ACCEPTED,
                    &format!(
                        "queue {name}: the commit of instance {} returned Ok {} ms after its reservation, with a reservation timeout of {} ms",
                        self.me,
                        now.saturating_sub(reserved) / 1_000_000,
                        timeout / 1_000_000
                    ),
                );
            }
            Ok(()) if now.saturating_sub(reserved) > timeout => {
                self.ledger.event(Event::LateCommitUnraced)
            }
            _ => {}
        }
        res
    }
}

/// Claims from the queues in turn until killed.
fn consume_forever(
    cfg: &Config,
    ledger: &Ledger,
    queues: &[Queue],
    spec: &WorkerSpec,
    mut rng: Rng,
    life: Lifeline,
) -> Result<(), String> {
    let rules = cfg.rules();
    let c = Consumer::new(&rules, ledger, spec.instance, true);
    let mut empty_in_a_row = 0usize;
    for round in 0usize.. {
        if round % 32 == 0 {
            life.check();
        }
        let qi = round % queues.len();
        let q = &queues[qi];
        // Try every queue once; when all were empty, wait a little on each.
        let wait = if empty_in_a_row >= queues.len() {
            IDLE_WAIT
        } else {
            Duration::ZERO
        };
        if round % 256 == 255 {
            // A repair pass of our own now and then, so that kills land
            // inside one too.
            q.recover()
                .map_err(|e| format!("recover of {}: {e}", cfg.queues[qi].kind.name()))?;
            ledger.event(Event::Recovers);
        }
        let called_ns = shmq::internals::sys::monotonic_ns();
        let got = if rng.below(10) < 3 {
            q.claim_batch(1 + rng.below(8) as usize, wait)
        } else {
            q.claim(wait).map(|m| vec![m])
        };
        let msgs = match got {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Status::Empty | Status::Timeout) => {
                empty_in_a_row += 1;
                continue;
            }
            Err(e) => return Err(format!("claim from {}: {e}", cfg.queues[qi].kind.name())),
        };
        empty_in_a_row = 0;
        let claim_ns = shmq::internals::sys::monotonic_ns();
        ledger.set_busy(spec.instance, busy::HOLDING);
        let hold = rng.below(8) == 0;
        c.handle(q, qi, msgs, called_ns, claim_ns, hold)?;
        ledger.set_busy(spec.instance, busy::IDLE);
    }
    Ok(())
}
