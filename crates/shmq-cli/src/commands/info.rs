//! `shmq info`: what a queue is (its options and layout) and who is
//! attached to it (the participant table).

use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use serde_json::{json, Value};
use shmq::internals::layout::Layout;
use shmq::internals::participants::LOCK_BASE;
use shmq::internals::sys;
use shmq::{Info, Queue};

use crate::cli::InfoArgs;
use crate::util::{human_bytes, human_ns, CmdResult};

use super::print_json;

/// One row of the participant table, as `info` shows it.
#[derive(Debug)]
pub struct ParticipantRow {
    /// Entry index.
    pub index: u64,
    /// Registered process.
    pub pid: u32,
    /// "live" or "cleaning".
    pub state: &'static str,
    /// Whether the process still holds its lock (None: cannot tell).
    pub alive: Option<bool>,
    /// Has sent.
    pub producer: bool,
    /// Has claimed.
    pub consumer: bool,
    /// Time since it attached, ns.
    pub attached_for_ns: u64,
    /// The process name, from /proc.
    pub command: String,
}

/// Reads the participant table of `q` and probes the liveness of each
/// entry the way the engine does: the kernel keeps an OFD lock on the
/// entry's byte for as long as the process lives, and the pid must exist.
pub fn participants(q: &Queue) -> Vec<ParticipantRow> {
    participant_rows(q, &q.info())
}

/// [`participants`] from an [`Info`] already read.
fn participant_rows(q: &Queue, info: &Info) -> Vec<ParticipantRow> {
    // Only to probe locks: never through a link, never blocking on a FIFO
    // swapped in since the queue was opened.
    let probe = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(q.path())
        .ok();
    let rebooted = info.boot_id != sys::boot_id();
    let now = sys::monotonic_ns();
    let mut rows = Vec::new();
    for e in &info.participants {
        let i = e.index;
        let state = if e.cleaning { "cleaning" } else { "live" };
        let alive = if rebooted {
            Some(false)
        } else {
            probe.as_ref().and_then(|f| {
                sys::ofd_locked_by_other(f.as_fd(), LOCK_BASE + i)
                    .ok()
                    .map(|locked| locked && sys::pid_exists(e.pid))
            })
        };
        let command = std::fs::read_to_string(format!("/proc/{}/comm", e.pid))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        rows.push(ParticipantRow {
            index: i,
            pid: e.pid,
            state,
            alive,
            producer: e.producer,
            consumer: e.consumer,
            attached_for_ns: now.saturating_sub(e.attached_ns),
            command,
        });
    }
    rows
}

fn layout_json(l: &Layout) -> Value {
    json!({
        "file_size": l.file_size,
        "capacity": l.params.capacity,
        "max_message_size": l.params.max_message_size,
        "key_capacity": l.params.key_capacity,
        "dlq_capacity": l.params.dlq_capacity,
        "participant_capacity": l.params.participant_capacity,
        "slot_stride": l.slot_stride,
        "dlq_stride": l.dlq_stride,
        "participants_offset": l.participants_offset,
        "slots_offset": l.slots_offset,
        "keys_offset": l.keys_offset,
        "dlq_offset": l.dlq_offset,
    })
}

/// `shmq info`.
pub fn info(a: &InfoArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.reading(a.read_only))?;
    let info = q.info();
    let l = info.layout;
    let created_unix_ns = info.created_unix_ns;
    let format = info.format_version;
    let rows = participant_rows(&q, &info);
    q.check_intact("info")?;
    let age_ns = sys::unix_ns().saturating_sub(created_unix_ns);
    if a.json {
        let parts: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "index": r.index, "pid": r.pid, "state": r.state, "alive": r.alive,
                    "producer": r.producer, "consumer": r.consumer,
                    "attached_for_ns": r.attached_for_ns, "command": r.command,
                })
            })
            .collect();
        print_json(&json!({
            "path": a.path.display().to_string(),
            "format_version": format,
            "created_unix_ns": created_unix_ns,
            "file_id": format!("{:016x}", info.file_id),
            "layout": layout_json(&l),
            "options": {
                "lease_ns": q.lease().as_nanos() as u64,
                "max_deliveries": q.max_deliveries(),
                "latest_only": q.latest_only(),
                "message_ttl_ns": q.message_ttl().map_or(0, |t| t.as_nanos() as u64),
                "on_expiry": match q.on_expiry() {
                    shmq::Expiry::Drop => "drop",
                    _ => "dead-letter",
                },
                "wait_strategy": q.wait_strategy().name(),
            },
            "participants": parts,
        }));
        return Ok(0);
    }
    let p = l.params;
    println!("{}", a.path.display());
    println!(
        "  format version {format}, created {} ago, {}",
        human_ns(age_ns),
        human_bytes(l.file_size as u64)
    );
    if info.file_id != 0 {
        println!("  file id         {:016x}", info.file_id);
    }
    println!(
        "  capacity        {} slots of {} bytes (slot stride {})",
        p.capacity, p.max_message_size, l.slot_stride
    );
    println!(
        "  keys            {}{}",
        p.key_capacity,
        if q.latest_only() {
            " (latest-only)"
        } else {
            ""
        }
    );
    println!(
        "  lease           {}",
        human_ns(q.lease().as_nanos() as u64)
    );
    let md = q.max_deliveries();
    println!(
        "  max deliveries  {}",
        if md == 0 {
            "unlimited".to_string()
        } else {
            md.to_string()
        }
    );
    println!(
        "  message ttl     {}",
        match (q.message_ttl(), q.on_expiry()) {
            (None, _) => "none (only messages sent with their own)".to_string(),
            (Some(t), shmq::Expiry::Drop) => {
                format!(
                    "{}, expired messages dropped",
                    human_ns(t.as_nanos() as u64)
                )
            }
            (Some(t), _) => format!(
                "{}, expired messages dead-lettered",
                human_ns(t.as_nanos() as u64)
            ),
        }
    );
    println!("  dead letters    {} records", p.dlq_capacity);
    println!("  wait strategy   {}", q.wait_strategy());
    println!(
        "  layout          header 0, participants {:#x}, slots {:#x}, keys {:#x}, dead letters {:#x}, end {:#x}",
        l.participants_offset, l.slots_offset, l.keys_offset, l.dlq_offset, l.file_size
    );
    println!(
        "participants: {} attached of {}",
        rows.len(),
        p.participant_capacity
    );
    if !rows.is_empty() {
        println!(
            "  {:>5}  {:>8}  {:<8}  {:<7}  {:<17}  {:>10}  command",
            "entry", "pid", "state", "alive", "roles", "attached"
        );
        for r in &rows {
            let roles = match (r.producer, r.consumer) {
                (true, true) => "producer,consumer",
                (true, false) => "producer",
                (false, true) => "consumer",
                (false, false) => "-",
            };
            let alive = match r.alive {
                Some(true) => "yes",
                Some(false) => "DEAD",
                None => "?",
            };
            println!(
                "  {:>5}  {:>8}  {:<8}  {:<7}  {:<17}  {:>10}  {}",
                r.index,
                r.pid,
                r.state,
                alive,
                roles,
                human_ns(r.attached_for_ns),
                r.command
            );
        }
        if rows.iter().any(|r| r.alive == Some(false)) {
            println!("  (dead participants are cleaned up by the next survivor, or now by `shmq recover`)");
        }
    }
    Ok(0)
}
