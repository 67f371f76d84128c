//! The report of a torture run: a human table on stdout and the same
//! figures as JSON (`--json FILE`).

use std::collections::BTreeMap;

use super::supervise::{Kills, Stalls};
use crate::util::{human_ns, human_rate};
use shmq_testkit::ledger::kind;
use shmq_testkit::oracle::Outcomes;

/// Percentiles of the time from a consumer's SIGKILL to the next claim of a
/// message it held.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Latency {
    /// Number of samples.
    pub samples: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Largest, ns.
    pub max_ns: u64,
}

impl Latency {
    /// From the raw samples (nearest-rank percentiles).
    pub fn of(mut v: Vec<u64>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Latency {
            samples: v.len() as u64,
            p50_ns: at(0.50),
            p99_ns: at(0.99),
            max_ns: v[v.len() - 1],
        }
    }
}

/// One queue's line of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QueueReport {
    /// keyless, fifo or latest-only.
    pub queue: &'static str,
    /// What became of its messages.
    #[serde(flatten)]
    pub outcomes: Outcomes,
    /// The engine's count of acks (between `ledger_acks` and that plus
    /// `acked_at_kill`, checked).
    pub engine_acked: u64,
    /// Acks that returned `Ok`, as the ledger recorded them.
    pub ledger_acks: u64,
    /// The engine's counters of interest.
    pub engine_claimed: u64,
    /// Claims of messages delivered before.
    pub engine_redelivered: u64,
    /// Claims reclaimed from dead consumers.
    pub engine_reclaimed: u64,
    /// Sends refused and queued messages skipped for a stale version.
    pub engine_stale: u64,
    /// Queued messages skipped for a stale version: the engine's count of
    /// stale minus the sends the ledger saw refused.
    pub stale_skipped: u64,
    /// Waiting messages replaced in place (latest-only).
    pub engine_conflated: u64,
    /// Reservations abandoned (producer dead or stalled).
    pub engine_abandoned: u64,
    /// Outcomes refused with `LeaseLost`.
    pub engine_lease_lost: u64,
    /// Dead participants cleaned up after.
    pub engine_dead_participants: u64,
}

/// The settings of a run that shape its figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    /// The queues, by kind.
    pub queues: Vec<&'static str>,
    /// Keys per keyed queue.
    pub keys: u64,
    /// Slots per queue.
    pub capacity: u64,
    /// Failed deliveries before dead-lettering.
    pub max_deliveries: u32,
    /// One id in this many is poison.
    pub poison_one_in: u64,
    /// Messages per second per producer (0 = unpaced).
    pub rate: u64,
    /// Shortest pause between kills, ns.
    pub min_interval_ns: u64,
    /// Longest pause between kills, ns.
    pub max_interval_ns: u64,
    /// Pause between a kill and the restart, ns.
    pub restart_delay_ns: u64,
    /// The queues' lease, ns.
    pub lease_ns: u64,
    /// The queues' reservation timeout, ns.
    pub reservation_timeout_ns: u64,
    /// One event in this many is a stall (0 = none).
    pub stall_one_in: u64,
    /// One kill in this many is a double kill (0 = none).
    pub double_kill_one_in: u64,
    /// Limit of the death-to-claim median, ns.
    pub max_death_p50_ns: u64,
    /// Limit of its 99th percentile, ns.
    pub max_death_p99_ns: u64,
}

/// The figures that must be zero (each also counts as violations).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Bad {
    /// Messages sent with `Ok` and neither acked, dead-lettered, superseded
    /// nor still queued.
    pub lost: u64,
    /// Payloads that did not decode or did not match their message.
    pub torn: u64,
    /// Messages delivered with delivery number 1 more than once.
    pub double_fresh: u64,
    /// Late outcomes or commits accepted.
    pub late_accepted: u64,
    /// Samples or probes where the occupancy passed the capacity.
    pub capacity_violations: u64,
    /// The death-to-claim p50 or p99 passed its limit.
    pub death_to_claim_over_limit: bool,
}

/// Late outcomes: given after the lease ran out (consumers) or after the
/// reservation timeout (producers' commits), mostly by stalled workers.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LateReport {
    /// Late acks and nacks refused with `LeaseLost` (as they must be once
    /// the claim was taken back).
    pub outcomes_refused: u64,
    /// Late acks and nacks accepted before any repair took the claim back
    /// (allowed within twice the lease plus 100 ms).
    pub outcomes_unraced: u64,
    /// Late commits refused with `Abandoned` (the producer then resends).
    pub commits_abandoned: u64,
    /// Late commits accepted before any repair abandoned them (allowed
    /// within twice the timeout plus 100 ms).
    pub commits_unraced: u64,
    /// Late outcomes or commits accepted though the message had been taken
    /// over or a repair was overdue: violations.
    pub accepted: u64,
}

/// What one drained queue took before `Full`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CapacityProbe {
    /// The queue.
    pub queue: &'static str,
    /// Sends accepted (must equal the capacity).
    pub sent: u64,
    /// Claimed and acked back.
    pub claimed: u64,
}

/// The capacity bound (G1), sampled after every event and probed at the end.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CapacityReport {
    /// Slots per queue, as asked.
    pub capacity: u64,
    /// Samples taken (one per queue per event).
    pub samples: u64,
    /// Largest occupancy seen (queued + delayed + in flight + reserved +
    /// waiting for dead-letter room).
    pub max_seen: u64,
    /// Samples that found a queue exactly full.
    pub full_seen: u64,
    /// Samples or probes that broke the bound.
    pub violations: u64,
    /// The probes of the drained queues.
    pub probes: Vec<CapacityProbe>,
}

/// Everything a run found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// No violation.
    pub passed: bool,
    /// The command line.
    pub command: String,
    /// The seed (give it to `--seed` to choose the same victims and pauses).
    pub seed: u64,
    /// From the first start to the end of the drain.
    pub duration_s: f64,
    /// What the run was asked for.
    pub settings: Settings,
    /// Producer processes.
    pub producers: u32,
    /// Consumer processes.
    pub consumers: u32,
    /// Kills and stalls.
    pub events_total: u64,
    /// Kills and restarts.
    pub kills: Kills,
    /// All kills during the run.
    pub kills_total: u64,
    /// Stalls.
    pub stalls: Stalls,
    /// All stalls during the run.
    pub stalls_total: u64,
    /// The figures that must be zero.
    pub bad: Bad,
    /// All queues together.
    pub messages: Outcomes,
    /// Per queue.
    pub queues: Vec<QueueReport>,
    /// Queued messages skipped for a stale version (all queues).
    pub stale_skipped: u64,
    /// Waiting messages replaced in place by a newer version (all queues).
    pub conflated: u64,
    /// Claims of a message whose previous holder was killed holding it.
    pub duplicates_by_redelivery: u64,
    /// Claims of a message nacked before (poison).
    pub redelivered_after_nack: u64,
    /// Claims of a message whose live holder's lease had run out.
    pub redelivered_after_expiry: u64,
    /// Keys found held by a killed consumer (and taken over).
    pub keys_taken_from_killed: u64,
    /// Keys found held by a live consumer whose lease had run out.
    pub keys_taken_from_expired: u64,
    /// Versions applied again after their consumer was killed before
    /// acking.
    pub reapplied_after_death: u64,
    /// `recover()` calls made by consumers.
    pub recovers: u64,
    /// Late outcomes and commits.
    pub late: LateReport,
    /// The capacity bound.
    pub capacity: CapacityReport,
    /// From a consumer's SIGKILL to the next claim of a message it held.
    pub death_to_claim: Latency,
    /// The slowest of those, with how the consumer was killed.
    pub death_to_claim_slowest: Vec<String>,
    /// The same from the moment the parent had reaped the killed consumer
    /// (0 when the claim came first).
    pub reaped_to_claim: Latency,
    /// From the SIGKILL of any worker until the parent reaped it.
    pub kill_to_reaped: Latency,
    /// The ledger ran out of ids and producers stopped sending.
    pub ledger_full: bool,
    /// Violations by kind (every kind listed).
    pub violations: BTreeMap<String, u64>,
    /// The first violations in full.
    pub problems: Vec<String>,
}

/// Every kind of violation, in report order.
pub const KINDS: [&str; 19] = [
    kind::LOST,
    kind::TORN,
    kind::DOUBLE_FRESH,
    kind::DOUBLE_CLAIM,
    kind::NEVER_SENT,
    kind::KEY_OVERLAP,
    kind::VERSION_BACKWARDS,
    kind::FINAL_VERSION,
    kind::STALE_ACCEPTED,
    kind::DEAD_LETTER,
    kind::WORKER,
    kind::WEDGED,
    kind::VERIFY,
    kind::COUNTERS,
    kind::LATE_ACCEPTED,
    kind::EARLY_REPAIR,
    kind::CAPACITY,
    kind::LATENCY,
    kind::UNEXERCISED,
];

/// Counts violations by kind and keeps the first `keep` in full.
pub fn tally(found: &[(String, String)], keep: usize) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut by_kind: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    for (k, _) in found {
        *by_kind.entry(k.clone()).or_default() += 1;
    }
    let problems = found
        .iter()
        .take(keep)
        .map(|(k, d)| format!("{k}: {d}"))
        .collect();
    (by_kind, problems)
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Prints the human table.
pub fn print(r: &Report) {
    let m = &r.messages;
    println!(
        "shmq torture: {} in {} ({} producers, {} consumers; seed {})",
        if r.passed { "PASSED" } else { "FAILED" },
        human_ns((r.duration_s * 1e9) as u64),
        r.producers,
        r.consumers,
        r.seed
    );
    let b = &r.bad;
    println!(
        "  bad figures    lost {}, torn {}, double fresh {}, late outcomes accepted {}, capacity violations {}, death→claim over its limit: {}",
        count(b.lost),
        count(b.torn),
        count(b.double_fresh),
        count(b.late_accepted),
        count(b.capacity_violations),
        if b.death_to_claim_over_limit { "YES" } else { "no" }
    );
    println!(
        "  events         {} = kills {} + stalls {}",
        count(r.events_total),
        count(r.kills_total),
        count(r.stalls_total)
    );
    println!(
        "  kills          producers {}, consumers {} ({} holding claims); {} during another's repair (double kills); restarts {}; {} more at the stop",
        count(r.kills.producers),
        count(r.kills.consumers),
        count(r.kills.consumers_holding),
        count(r.kills.during_repair),
        count(r.kills.restarts),
        r.kills.at_stop
    );
    println!(
        "  stalls         consumers {} ({} holding claims, past 2 x lease {}), producers {} ({} holding a reservation, past 2 x timeout {})",
        count(r.stalls.consumers),
        count(r.stalls.consumers_holding),
        human_ns(r.settings.lease_ns),
        count(r.stalls.producers),
        count(r.stalls.producers_holding),
        human_ns(r.settings.reservation_timeout_ns)
    );
    let l = &r.late;
    println!(
        "  late outcomes  acks/nacks refused (LeaseLost) {}, accepted unraced {}; commits refused (Abandoned) {}, accepted unraced {}; ACCEPTED after a takeover {}",
        count(l.outcomes_refused),
        count(l.outcomes_unraced),
        count(l.commits_abandoned),
        count(l.commits_unraced),
        count(l.accepted)
    );
    let c = &r.capacity;
    println!(
        "  capacity       {} samples: max occupancy {} of {} ({} samples full); drained queues took {} before Full; violations {}",
        count(c.samples),
        c.max_seen,
        c.capacity,
        count(c.full_seen),
        c.probes
            .iter()
            .map(|p| format!("{} {}", p.queue, p.sent))
            .collect::<Vec<_>>()
            .join(", "),
        count(c.violations)
    );
    println!(
        "  messages       sent {} ({}), acked {} ({} of them maybe: under way at a kill, and the engine agrees), dead-lettered {}, superseded {}",
        count(m.sent),
        human_rate(m.sent as f64 / r.duration_s.max(1e-9)),
        count(m.acked),
        count(m.acked_at_kill),
        count(m.dead_lettered),
        count(m.superseded)
    );
    println!(
        "                 superseded = stale skipped {} + conflated {}; refused as stale {}; unknown (producer killed mid-send, never delivered) {}{}",
        count(r.stale_skipped),
        count(r.conflated),
        count(m.refused_stale),
        count(m.unknown),
        if r.ledger_full {
            "; the ledger filled up and producers stopped"
        } else {
            ""
        }
    );
    println!(
        "  redeliveries   after a death {} (allowed duplicates), after a lease ran out {}, after a nack {}; keys taken from the killed {}, from the expired {}; versions re-applied {}; recover() calls {}",
        count(r.duplicates_by_redelivery),
        count(r.redelivered_after_expiry),
        count(r.redelivered_after_nack),
        count(r.keys_taken_from_killed),
        count(r.keys_taken_from_expired),
        count(r.reapplied_after_death),
        count(r.recovers)
    );
    let l = &r.death_to_claim;
    if l.samples > 0 {
        println!(
            "  death → claimed again  p50 {}  p99 {}  max {}  ({} samples, from SIGKILL to the next claim; limits p50 {}, p99 {})",
            human_ns(l.p50_ns),
            human_ns(l.p99_ns),
            human_ns(l.max_ns),
            count(l.samples),
            human_ns(r.settings.max_death_p50_ns),
            human_ns(r.settings.max_death_p99_ns)
        );
        let (r2, k) = (&r.reaped_to_claim, &r.kill_to_reaped);
        println!(
            "    of which: SIGKILL → reaped by the parent p50 {} p99 {} max {}; reaped → claimed again p50 {} p99 {} max {}",
            human_ns(k.p50_ns),
            human_ns(k.p99_ns),
            human_ns(k.max_ns),
            human_ns(r2.p50_ns),
            human_ns(r2.p99_ns),
            human_ns(r2.max_ns)
        );
    } else {
        println!("  death → claimed again  no samples (no consumer was killed holding a message)");
    }
    println!();
    println!(
        "  {:<12} {:>10} {:>10} {:>8} {:>12} {:>7} {:>9} {:>9} {:>8} {:>11} {:>9} {:>9} {:>10}",
        "queue",
        "sent",
        "acked",
        "maybe",
        "engine-acked",
        "dead",
        "supersed.",
        "stale-ref",
        "unknown",
        "redelivered",
        "reclaimed",
        "abandoned",
        "lease-lost"
    );
    for q in &r.queues {
        let o = &q.outcomes;
        println!(
            "  {:<12} {:>10} {:>10} {:>8} {:>12} {:>7} {:>9} {:>9} {:>8} {:>11} {:>9} {:>9} {:>10}",
            q.queue,
            o.sent,
            o.acked,
            o.acked_at_kill,
            q.engine_acked,
            o.dead_lettered,
            o.superseded,
            o.refused_stale,
            o.unknown,
            q.engine_redelivered,
            q.engine_reclaimed,
            q.engine_abandoned,
            q.engine_lease_lost
        );
    }
    println!();
    let line: Vec<String> = r
        .violations
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("  violations     {}", line.join(", "));
    for p in &r.problems {
        println!("    {p}");
    }
}
