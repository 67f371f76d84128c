//! The checks only a torture run makes, beside the SIGKILL oracle of the
//! test kit ([`shmq_testkit::oracle`]): the death-to-claim latency, the
//! events that must show an effect, and the capacity of the drained queues.

use shmq::{Queue, Status, Timeout};
use shmq_testkit::ledger::{kind, Event, Ledger, EVENTS};
use shmq_testkit::oracle::Outcomes;

use super::report::{CapacityProbe, LateReport, Latency};
use super::supervise::{Kills, Stalls};
use super::Config;

/// The time from a consumer's SIGKILL to the next claim of a message it
/// held, against the limits (p50, p99, ns): deaths are detected by the
/// liveness sweep within milliseconds, not waited out for a lease. Returns
/// whether a limit was passed (a violation).
pub fn check_latency(ledger: &Ledger, l: &Latency, limits: (u64, u64), slowest: &[String]) -> bool {
    let over = l.samples > 0 && (l.p50_ns > limits.0 || l.p99_ns > limits.1);
    if over {
        ledger.violation(
            kind::LATENCY,
            &format!(
                "death to claimed again: p50 {:.1} ms (limit {:.1}), p99 {:.1} ms (limit {:.1}), max {:.1} ms over {} samples; slowest: {}",
                l.p50_ns as f64 / 1e6,
                limits.0 as f64 / 1e6,
                l.p99_ns as f64 / 1e6,
                limits.1 as f64 / 1e6,
                l.max_ns as f64 / 1e6,
                l.samples,
                slowest.join(", ")
            ),
        );
    }
    over
}

/// Events that must show an effect, given enough of them (so that one
/// victim's luck cannot fail a run): consumers killed holding claims must
/// bring redeliveries after a death, consumers stalled holding claims late
/// outcomes refused, producers stalled holding reservations late commits
/// abandoned.
pub fn check_exercised(
    ledger: &Ledger,
    kills: &Kills,
    stalls: &Stalls,
    events: &[u64; EVENTS],
    late: &LateReport,
    total: &Outcomes,
) {
    const ENOUGH: u64 = 5;
    let redelivered = events[Event::RedeliveredAfterDeath as usize];
    if kills.consumers_holding >= ENOUGH
        && redelivered == 0
        && total.acked_at_kill < kills.consumers_holding
    {
        ledger.violation(
            kind::UNEXERCISED,
            &format!(
                "{} consumers were killed holding claims, {} acks were under way, yet no message was redelivered after a death",
                kills.consumers_holding, total.acked_at_kill
            ),
        );
    }
    if stalls.consumers_holding >= ENOUGH && late.outcomes_refused == 0 {
        ledger.violation(
            kind::UNEXERCISED,
            &format!(
                "{} consumers were stalled holding claims past twice the lease, yet no late outcome was refused",
                stalls.consumers_holding
            ),
        );
    }
    if stalls.producers_holding >= ENOUGH && late.commits_abandoned == 0 {
        ledger.violation(
            kind::UNEXERCISED,
            &format!(
                "{} producers were stalled holding reservations past twice the timeout, yet no late commit got Abandoned",
                stalls.producers_holding
            ),
        );
    }
}

/// A drained queue, with nobody else attached, takes exactly `capacity`
/// sends and refuses the next with `Full` (G1: a send succeeds whenever
/// fewer are queued); then every one is claimed and acked back.
pub fn probe_capacity(
    cfg: &Config,
    ledger: &Ledger,
    qi: usize,
    q: &Queue,
    capacity: u64,
) -> CapacityProbe {
    let name = cfg.queues[qi].kind.name();
    let mut p = CapacityProbe {
        queue: name,
        ..CapacityProbe::default()
    };
    let bad = |what: String| ledger.violation(kind::CAPACITY, &format!("queue {name}: {what}"));
    loop {
        match q.send(b"capacity probe", Timeout::TryOnce) {
            Ok(_) => p.sent += 1,
            Err(e) if e.status() == Status::Full => break,
            Err(e) => {
                bad(format!("send {} of the capacity probe: {e}", p.sent + 1));
                break;
            }
        }
        if p.sent > capacity {
            break;
        }
    }
    if p.sent != capacity {
        bad(format!(
            "the drained queue took {} sends before Full, its capacity is {capacity}",
            p.sent
        ));
    }
    loop {
        match q.claim(Timeout::TryOnce) {
            Ok(m) => {
                if let Err(e) = m.ack() {
                    bad(format!("ack of a capacity probe: {e}"));
                    break;
                }
                p.claimed += 1;
            }
            Err(e) if e.status() == Status::Empty => break,
            Err(e) => {
                bad(format!("claim of a capacity probe: {e}"));
                break;
            }
        }
        if p.claimed > p.sent {
            break;
        }
    }
    if p.claimed != p.sent {
        bad(format!(
            "{} capacity probes sent, {} claimed back",
            p.sent, p.claimed
        ));
    }
    p
}
