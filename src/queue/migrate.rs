//! What `shmq migrate` needs of a new queue beyond the public API: a key's
//! versions carried over from the old file. Reached only through
//! `shmq::internals::queue::migrate`; not part of the public API.

use super::Queue;
use crate::error::Result;
use crate::format::key as entry;
use crate::sync::Ordering;

/// Raises `key`'s last acked version, last committed version and
/// automatic-version counter in the queue's key table to at least the
/// values given (taking an entry for the key if it has none), so that a
/// version that was stale in the old file is stale here too and automatic
/// versions continue above the old ones. `KeysFull` when the table has no
/// room; `InvalidArgument` without a key table. Only raises: a version
/// acked here already stays.
pub fn seed_key_versions(
    q: &Queue,
    key: u64,
    last_acked: u64,
    last_committed: u64,
    next_version: u64,
) -> Result<()> {
    let (_, engine) = q.me("migrate")?;
    let keys = engine.keys();
    let e = keys.find_or_insert(key)?;
    // AcqRel: as the fetch_max of an ack and of a send's version (see
    // `KeyTable::assign_version`); these are the same updates, done once.
    keys.field(e, entry::LAST_ACKED)
        .fetch_max(last_acked, Ordering::AcqRel);
    keys.field(e, entry::LAST_COMMITTED)
        .fetch_max(last_committed, Ordering::AcqRel);
    keys.field(e, entry::NEXT_VERSION)
        .fetch_max(next_version.max(last_acked), Ordering::AcqRel);
    Ok(())
}
