//! `shmq verify` and `shmq recover`: check every invariant of a queue
//! file, and clean up after dead participants.

use serde_json::json;
use shmq::{Queue, Status};

use crate::cli::RecoverArgs;
use crate::cli::VerifyArgs;
use crate::util::CmdResult;

use super::info::participants;
use super::print_json;

/// `shmq verify`: exit 0 only when every invariant holds.
pub fn verify(a: &VerifyArgs) -> CmdResult {
    let (problems, notes, checked) = match Queue::open_with(&a.path, &a.trust.reading(a.read_only))
    {
        Ok(q) => {
            let r = q.verify();
            let l = q.layout().params;
            (
                r.problems,
                r.notes,
                Some((l.capacity, l.dlq_capacity, l.participant_capacity)),
            )
        }
        // A file that does not even open as a queue: its header is damaged
        // or it is not a queue. Missing files and permission errors are
        // errors of the command, not findings.
        Err(e) if matches!(e.status(), Status::Corrupt | Status::Incompatible) => (
            vec![format!("{}: {}", e.status().name(), e.message())],
            vec![],
            None,
        ),
        Err(e) => return Err(e.into()),
    };
    let ok = problems.is_empty();
    if a.json {
        print_json(&json!({
            "path": a.path.display().to_string(),
            "ok": ok, "problems": problems, "notes": notes,
        }));
    } else {
        if ok {
            let (s, d, p) = checked.unwrap_or_default();
            println!(
                "{}: ok ({s} slots, {d} dead-letter records, {p} participant entries checked)",
                a.path.display()
            );
        } else {
            println!(
                "{}: {} problem{} found:",
                a.path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in &problems {
                println!("  problem: {p}");
            }
        }
        for n in &notes {
            println!("  note: {n}");
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// `shmq recover`.
///
/// Besides the engine's count of repairs, it reports the slot states before
/// and after: attaching to the file (which `Queue::recover` does for an
/// inspection handle) may itself clean up after a dead participant whose
/// entry it takes, and those repairs are not in the returned count.
pub fn recover(a: &RecoverArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Inspect))?;
    let dead_before = participants(&q)
        .iter()
        .filter(|r| r.alive == Some(false))
        .count();
    let before = q.stats();
    let r = q.recover()?;
    let after = q.stats();
    let dead_after = participants(&q)
        .iter()
        .filter(|r| r.alive == Some(false))
        .count();
    let cleaned = dead_before.saturating_sub(dead_after);
    let slots = |s: &shmq::Stats| {
        json!({"depth": s.depth, "in_flight": s.in_flight, "reserved": s.reserved,
               "dlq_waiting": s.dlq_waiting, "dead_letters": s.dead_letters})
    };
    if a.json {
        print_json(&json!({
            "path": a.path.display().to_string(),
            "dead_participants_cleaned": cleaned,
            "abandoned": r.abandoned, "redelivered": r.redelivered,
            "dead_lettered": r.dead_lettered, "dlq_waiting": r.dlq_waiting,
            "before": slots(&before), "after": slots(&after),
        }));
    } else {
        println!(
            "{}: cleaned up after {cleaned} dead participant{}; {} reservation{} abandoned, {} claim{} redelivered, {} dead-lettered, {} waiting for dead-letter room",
            a.path.display(),
            if cleaned == 1 { "" } else { "s" },
            r.abandoned,
            if r.abandoned == 1 { "" } else { "s" },
            r.redelivered,
            if r.redelivered == 1 { "" } else { "s" },
            r.dead_lettered,
            r.dlq_waiting
        );
        println!(
            "  before: {} claimable, {} in flight, {} reserved; after: {} claimable, {} in flight, {} reserved",
            before.depth, before.in_flight, before.reserved, after.depth, after.in_flight, after.reserved
        );
    }
    Ok(0)
}
