//! `shmq create`: a new queue file with the options given.

use std::time::Duration;

use serde_json::json;
use shmq::{Options, Queue};

use crate::cli::CreateArgs;
use crate::util::{human_bytes, human_ns, CliError, CmdResult};

use super::print_json;

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
        sparse: a.sparse,
        message_ttl: a.message_ttl.unwrap_or(Duration::ZERO),
        on_expiry: a.on_expiry.into(),
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
    let q = with_spinner(
        &format!("creating {} (reserving its space)", a.path.display()),
        || Queue::create(&a.path, &opts),
    )?;
    let size = q.layout().file_size as u64;
    // A sparse file on a file system that filled up while the queue was
    // attached is unusable: say so now rather than at the first send.
    q.check_intact("create")?;
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
            "sparse": a.sparse,
        }));
    } else {
        println!(
            "created {}: {} slots of {} bytes, {} keys, lease {}, {} {} ({})",
            a.path.display(),
            a.capacity,
            a.max_message_size,
            a.keys,
            human_ns(a.lease.as_nanos() as u64),
            human_bytes(size),
            if a.sparse { "sparse" } else { "reserved" },
            format_args!("mode {:04o}", a.mode),
        );
    }
    Ok(0)
}

/// Runs `f`, showing a spinner with `what` on stderr once it has taken more
/// than a second (reserving a file of many gigabytes takes seconds) and
/// only when stderr is a terminal.
fn with_spinner<T>(what: &str, f: impl FnOnce() -> T) -> T {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let mut bar = None;
            // Relaxed: a flag polled for display only.
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if bar.is_none() && start.elapsed() > Duration::from_secs(1) {
                    let b = indicatif::ProgressBar::new_spinner();
                    b.set_message(what.to_string());
                    b.enable_steady_tick(Duration::from_millis(100));
                    bar = Some(b);
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        let r = f();
        done.store(true, Ordering::Relaxed);
        r
    })
}
