//! `shmq send`, `shmq recv` and `shmq peek`: messages in from arguments or
//! stdin, and out (claimed, or copied without claiming) as text or JSON.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use serde_json::{json, Value};
use shmq::internals::sys;
use shmq::{Queue, SendOptions, Status};

use crate::cli::Wait;
use crate::cli::{PeekArgs, RecvArgs, SendArgs};
use crate::util::{cli_message, plural, CliError, CmdResult, Progress, EXIT_NOTHING};

use super::print_json;

/// `shmq send`.
pub fn send(a: &SendArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.options(shmq::Access::Participant))?;
    let base = SendOptions::new()
        .key(a.key)
        .timeout(a.timeout)
        .delay(a.delay.unwrap_or(Duration::ZERO))
        .ttl(a.ttl.unwrap_or(Duration::ZERO));
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
            // The argument's bytes as given: a payload need not be UTF-8.
            send_one(m.as_bytes())?;
        }
    }
    progress.finish();
    if !a.json {
        println!("sent {} to {}", plural(sent, "message"), a.path.display());
    }
    Ok(if sent == 0 { EXIT_NOTHING } else { 0 })
}

fn with_count(e: shmq::Error, sent: u64) -> CliError {
    let mut msg = cli_message(&e);
    if sent > 0 {
        msg.push_str(&format!(" ({sent} sent before this one)"));
    }
    CliError::new(msg)
}

/// A payload as JSON: text when it is UTF-8, hex otherwise.
pub(super) fn payload_json(data: &[u8]) -> (Value, Value) {
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
    if limit == 0 {
        // Asked for nothing: nothing is received, and that is success (the
        // file was opened, so a wrong path still fails).
        return Ok(0);
    }
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
                "expires_ns": m.expires_ns(),
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

/// `shmq peek`.
pub fn peek(a: &PeekArgs) -> CmdResult {
    let q = Queue::open_with(&a.path, &a.trust.reading(a.read_only))?;
    let max = if a.count == 0 { usize::MAX } else { a.count };
    let got = q.peek(max)?;
    let now = sys::monotonic_ns();
    let out = std::io::stdout();
    let mut o = out.lock();
    for p in &got {
        if a.json {
            let (text, hex) = payload_json(&p.payload);
            let line = json!({
                "data": text, "data_hex": hex, "len": p.payload.len(),
                "state": p.state.name(), "key": p.key, "version": p.version,
                "deliveries": p.deliveries, "position": p.position,
                "age_ns": now.saturating_sub(p.enqueued_ns),
                "due_in_ns": p.not_before_ns.map(|t| t.saturating_sub(now)),
                "expires_ns": p.expires_ns,
                "expires_in_ns": p.expires_ns.map(|t| t.saturating_sub(now)),
            });
            writeln!(o, "{line}")?;
        } else {
            o.write_all(&p.payload)?;
            o.write_all(b"\n")?;
        }
    }
    o.flush()?;
    if got.is_empty() {
        eprintln!("{}: no message waiting", a.path.display());
        return Ok(EXIT_NOTHING);
    }
    Ok(0)
}
