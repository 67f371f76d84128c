//! The subcommands that act on one queue file: `create`, `info`, `send`,
//! `recv`, `dlq`, `verify` and `recover`. Each prints human output by
//! default and JSON on request, and returns its exit code.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use serde_json::{json, Value};
use shmq::internals::layout::Layout;
use shmq::internals::participants::LOCK_BASE;
use shmq::internals::sys;
use shmq::{DeadLetter, Info, Options, Queue, SendOptions, Status};

use crate::cli::{CreateArgs, DlqAction, DlqArgs, InfoArgs, RecoverArgs, RecvArgs, SendArgs};
use crate::cli::{VerifyArgs, Wait};
use crate::util::{human_bytes, human_ns, CliError, CmdResult, Progress, EXIT_NOTHING};

/// Prints a JSON value on one line.
pub fn print_json(v: &Value) {
    println!("{v}");
}

/// `shmq create`.
pub fn create(a: &CreateArgs) -> CmdResult {
    let opts = Options {
        capacity: a.capacity,
        max_message_size: a.max_message_size,
        key_capacity: a.keys,
        dlq_capacity: a.dead_letters,
        participant_capacity: a.participants,
        lease: a.lease,
        max_deliveries: a.max_deliveries,
        latest_only: a.latest_only,
        mode: a.mode,
        group: a
            .group
            .as_deref()
            .map(shmq::internals::permissions::group_id)
            .transpose()
            .map_err(|e| CliError::new(format!("{}: create: {e}", a.path.display())))?,
        ..Options::default()
    };
    if a.latest_only && a.keys == 0 {
        return Err(CliError::new(format!(
            "{}: create: --latest-only needs a key table (--keys N)",
            a.path.display()
        )));
    }
    let q = Queue::create(&a.path, &opts)?;
    let size = q.layout().file_size as u64;
    q.close()?;
    if a.json {
        print_json(&json!({
            "path": a.path.display().to_string(),
            "file_size": size,
            "capacity": a.capacity,
            "max_message_size": a.max_message_size,
            "key_capacity": a.keys,
            "lease_ns": a.lease.as_nanos() as u64,
            "max_deliveries": a.max_deliveries,
            "latest_only": a.latest_only,
            "mode": format!("{:04o}", a.mode),
        }));
    } else {
        println!(
            "created {}: {} slots of {} bytes, {} keys, lease {}, {} ({})",
            a.path.display(),
            a.capacity,
            a.max_message_size,
            a.keys,
            human_ns(a.lease.as_nanos() as u64),
            human_bytes(size),
            format_args!("mode {:04o}", a.mode),
        );
    }
    Ok(0)
}

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
            "layout": layout_json(&l),
            "options": {
                "lease_ns": q.lease().as_nanos() as u64,
                "max_deliveries": q.max_deliveries(),
                "latest_only": q.latest_only(),
                "wait_strategy": format!("{:?}", q.wait_strategy()),
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
    println!("  dead letters    {} records", p.dlq_capacity);
    println!("  wait strategy   {:?}", q.wait_strategy());
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

/// `shmq send`.
pub fn send(a: &SendArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Participant))?;
    let base = SendOptions::new()
        .key(a.key)
        .timeout(a.timeout)
        .delay(a.delay.unwrap_or(Duration::ZERO));
    let mut sent = 0u64;
    let mut progress = Progress::new(None, "sending");
    let mut send_one = |data: &[u8]| -> Result<(), CliError> {
        let version = if a.version == 0 { 0 } else { a.version + sent };
        let r = q
            .send_with(data, &base.version(version))
            .map_err(|e| with_count(e, sent))?;
        sent += 1;
        progress.inc(1);
        if a.json {
            print_json(&json!({"position": r.position, "key": a.key, "version": r.version}));
        }
        Ok(())
    };
    if a.messages.is_empty() {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("reading messages from stdin, one per line; end with Ctrl-D");
        }
        let mut lock = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = lock
                .read_until(b'\n', &mut line)
                .map_err(|e| CliError::new(format!("IO: reading stdin: {e}")))?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            send_one(&line)?;
        }
    } else {
        for m in &a.messages {
            send_one(m.as_bytes())?;
        }
    }
    progress.finish();
    if !a.json {
        println!(
            "sent {sent} message{} to {}",
            if sent == 1 { "" } else { "s" },
            a.path.display()
        );
    }
    Ok(if sent == 0 { EXIT_NOTHING } else { 0 })
}

fn with_count(e: shmq::Error, sent: u64) -> CliError {
    let mut msg = format!("{}: {}", e.status().name(), e.message());
    if sent > 0 {
        msg.push_str(&format!(" ({sent} sent before this one)"));
    }
    CliError::new(msg)
}

/// A payload as JSON: text when it is UTF-8, hex otherwise.
fn payload_json(data: &[u8]) -> (Value, Value) {
    match std::str::from_utf8(data) {
        Ok(s) => (json!(s), Value::Null),
        Err(_) => (
            Value::Null,
            json!(data.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        ),
    }
}

/// `shmq recv`.
pub fn recv(a: &RecvArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Participant))?;
    let limit = a.count.unwrap_or(if a.follow { u64::MAX } else { 1 });
    let timeout: shmq::Timeout = if a.follow {
        shmq::Timeout::Forever
    } else {
        Wait::into(a.timeout)
    };
    let mut held = Vec::new();
    let mut got = 0u64;
    let out = std::io::stdout();
    let mut progress = Progress::new(
        (limit != u64::MAX && limit > 1).then_some(limit),
        "receiving",
    );
    while got < limit {
        let m = match q.claim(timeout) {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Status::Empty | Status::Timeout) => break,
            Err(e) => return Err(e.into()),
        };
        let data = m.data()?;
        let mut o = out.lock();
        if a.json {
            let (text, hex) = payload_json(&data);
            let line = json!({
                "data": text, "data_hex": hex, "len": data.len(),
                "key": m.key(), "version": m.version(), "deliveries": m.deliveries(),
                "position": m.position(),
                "age_ns": sys::monotonic_ns().saturating_sub(m.enqueued_ns()),
            });
            writeln!(o, "{line}")?;
        } else {
            o.write_all(&data)?;
            o.write_all(b"\n")?;
        }
        o.flush()?;
        drop(o);
        got += 1;
        progress.inc(1);
        if a.no_ack {
            // Held until the end, so the same message is not claimed twice.
            held.push(m);
        } else {
            m.ack()?;
        }
    }
    progress.finish();
    for m in held {
        m.nack(Duration::ZERO)?;
    }
    if got == 0 {
        eprintln!("{}: nothing to receive", a.path.display());
        return Ok(EXIT_NOTHING);
    }
    Ok(0)
}

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
                println!("{} dead letter(s)", list.len());
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
