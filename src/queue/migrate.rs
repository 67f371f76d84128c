//! What `shmq migrate` needs of a new queue beyond the public API: a key's
//! versions and a message's delivery count carried over from the old file. Reached only through
//! `shmq::internals::queue::migrate`; not part of the public API.

use super::Queue;
use crate::error::{Error, Result, Status};
use crate::format::key as entry;
use crate::format::slot::{self, AttemptsWord, SlotState};
use crate::memory::{Loads, Memory};
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

/// Sets the delivery count of the message this handle just sent at
/// `position` (still waiting: ready, pending or delayed) to `count`, so
/// that its next claim counts delivery `count + 1` and `max_deliveries`
/// applies as it did in the old file. Only for a file that no other
/// participant has open (the new file of a migration, under its temporary
/// name): the word is stored, not compared and swapped. `NotFound` when
/// the slot no longer holds that message.
pub fn seed_deliveries(q: &Queue, position: u64, count: u64) -> Result<()> {
    let (_, engine) = q.me("migrate")?;
    let i = position % engine.capacity();
    let w = engine.slot_word(i);
    let base = engine.layout.slot(i);
    // Acquire: as `slot_word`; the slot's position was written before the
    // commit that published the word.
    let at = engine
        .mem
        .load_u64(base + slot::POSITION, Ordering::Acquire);
    let waiting = matches!(
        w.state(),
        SlotState::Ready | SlotState::Pending | SlotState::Delayed
    );
    if at != position || !waiting {
        return Err(Error::new(
            Status::NotFound,
            format!("no waiting message at position {position}"),
        ));
    }
    // Tagged with the word's present sequence: the next claim has another
    // sequence, so it counts `count + 1` (see `Engine::count_attempt`).
    // Relaxed: nobody else has the file open; the claim that reads it is
    // this thread's.
    engine
        .mem
        .u64_at(base + slot::ATTEMPTS)
        .store(AttemptsWord::new(w.seq(), count).0, Ordering::Relaxed);
    Ok(())
}
