//! `shmq create`: a new queue file with the options given.

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
