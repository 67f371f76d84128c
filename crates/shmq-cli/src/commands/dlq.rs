//! `shmq dlq`: list, show, redrive or purge the dead letters; and `shmq
//! purge`, which removes the queue's waiting messages.

use std::io::Write;

use serde_json::{json, Value};
use shmq::internals::sys;
use shmq::{DeadLetter, Queue};

use crate::cli::{DlqAction, DlqArgs, PurgeArgs};
use crate::util::{human_ns, plural, CliError, CmdResult, EXIT_NOTHING};

use super::messages::payload_json;
use super::print_json;

fn dead_letter_json(d: &DeadLetter, now: u64) -> Value {
    let (text, hex) = payload_json(&d.payload);
    json!({
        "id": d.id, "reason": d.reason, "attempts": d.attempts, "key": d.key,
        "version": d.version, "last_consumer_pid": d.last_consumer_pid,
        "dead_for_ns": now.saturating_sub(d.dead_ns),
        "first_enqueued_ns": d.first_enqueued_ns, "dead_ns": d.dead_ns,
        "len": d.payload.len(), "data": text, "data_hex": hex,
    })
}

fn preview(data: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(data);
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// `shmq dlq`.
pub fn dlq(a: &DlqArgs) -> CmdResult {
    let now = sys::monotonic_ns();
    match &a.action {
        DlqAction::List { json } => {
            let q = Queue::open_with(&a.path, &a.trust.reading(a.read_only))?;
            let list = q.dlq_list();
            if *json {
                print_json(&Value::Array(
                    list.iter().map(|d| dead_letter_json(d, now)).collect(),
                ));
            } else if list.is_empty() {
                println!("{}: no dead letters", a.path.display());
            } else {
                println!(
                    "{:>6}  {:>8}  {:>10}  {:>8}  {:>9}  {:<24}  payload",
                    "id", "attempts", "key", "version", "dead for", "reason"
                );
                for d in &list {
                    println!(
                        "{:>6}  {:>8}  {:>10}  {:>8}  {:>9}  {:<24}  {}",
                        d.id,
                        d.attempts,
                        d.key,
                        d.version,
                        human_ns(now.saturating_sub(d.dead_ns)),
                        preview(d.reason.as_bytes(), 24),
                        preview(&d.payload, 40)
                    );
                }
                println!("{}", plural(list.len() as u64, "dead letter"));
            }
            Ok(0)
        }
        DlqAction::Show { id, json } => {
            let q = Queue::open_with(&a.path, &a.trust.reading(a.read_only))?;
            let d = q.dlq_get(*id)?;
            if *json {
                print_json(&dead_letter_json(&d, now));
            } else {
                println!("dead letter {} of {}", d.id, a.path.display());
                println!("  reason            {}", d.reason);
                println!("  attempts          {}", d.attempts);
                println!("  key / version     {} / {}", d.key, d.version);
                println!("  last consumer pid {}", d.last_consumer_pid);
                println!(
                    "  dead for          {}",
                    human_ns(now.saturating_sub(d.dead_ns))
                );
                println!(
                    "  in the queue for  {} before",
                    human_ns(d.dead_ns.saturating_sub(d.first_enqueued_ns))
                );
                println!("  payload ({} bytes):", d.payload.len());
                let mut o = std::io::stdout().lock();
                o.write_all(&d.payload)?;
                o.write_all(b"\n")?;
            }
            Ok(0)
        }
        DlqAction::Redrive { id, all } => {
            let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Participant))?;
            let before = q.dlq_list().len();
            let n = q.dlq_redrive(if *all { None } else { *id })?;
            let left = q.dlq_list().len();
            println!(
                "redrove {n} dead letter{} back to {}{}",
                if n == 1 { "" } else { "s" },
                a.path.display(),
                if *all && left > 0 {
                    format!(" ({left} left: the queue is full)")
                } else {
                    String::new()
                }
            );
            Ok(if before == 0 { EXIT_NOTHING } else { 0 })
        }
        DlqAction::Purge { id, all } => {
            let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Participant))?;
            let n = q.dlq_purge(if *all { None } else { *id })?;
            println!(
                "purged {n} dead letter{} from {}",
                if n == 1 { "" } else { "s" },
                a.path.display()
            );
            Ok(0)
        }
    }
}

/// `shmq purge`: removes every waiting message; claims in flight stay.
pub fn purge(a: &PurgeArgs) -> CmdResult {
    use std::io::IsTerminal;
    if !a.yes && std::io::stdin().is_terminal() {
        return Err(CliError::new(format!(
            "{}: purge removes every waiting message for good; pass --yes to do it",
            a.path.display()
        )));
    }
    let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Participant))?;
    let n = q.purge()?;
    if a.json {
        print_json(&json!({"path": a.path.display().to_string(), "purged": n}));
    } else {
        println!(
            "purged {n} waiting message{} from {}",
            if n == 1 { "" } else { "s" },
            a.path.display()
        );
    }
    Ok(0)
}
