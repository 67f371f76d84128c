//! Reading what the model is compared with in the queue file, and the
//! checks of the file both drivers make after every step. Nothing here
//! changes the file; each check returns what disagreed.

use super::keys::KeyTable;
use super::payload::id_of;
use shmq::internals::layout::slot;
use shmq::internals::memory::{Loads, Memory};
use shmq::internals::ring::SlotWord;
use shmq::{DeadLetter, Queue};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The engine keeps times in units of 2^16 ns, rounded up.
pub const TIME_SHIFT: u32 = 16;

/// The state word of slot `i`.
pub fn word(q: &Queue, i: u64) -> SlotWord {
    q.engine().slot_word(i)
}

/// Field `f` (an offset of `shmq::internals::layout::slot`) of slot `i`.
pub fn field(q: &Queue, i: u64, f: usize) -> u64 {
    let e = q.engine();
    // Relaxed: the model reads between calls of this one thread; the engine
    // calls that wrote the field returned before.
    e.mem()
        .u64_at(e.layout().slot(i) + f)
        .load(Ordering::Relaxed)
}

/// The ring position stored in slot `i`.
pub fn position_of(q: &Queue, i: u64) -> u64 {
    field(q, i, slot::POSITION)
}

/// The payload length stored in slot `i`.
pub fn len_of(q: &Queue, i: u64) -> usize {
    (field(q, i, slot::LEN) & 0xffff_ffff) as usize
}

/// The first `len` payload bytes of slot `i`.
pub fn payload_of(q: &Queue, i: u64, len: usize) -> Vec<u8> {
    let e = q.engine();
    let mut data = vec![0u8; len];
    e.mem().read_bytes(e.payload_offset(i), &mut data);
    data
}

/// The message id the payload of slot `i` names (its first 8 bytes).
pub fn id_in(q: &Queue, i: u64) -> u64 {
    id_of(&payload_of(q, i, 8))
}

/// The not-before time stored in a delayed slot (engine time, ns).
pub fn due_of(q: &Queue, i: u64) -> u64 {
    (field(q, i, slot::LEASE) & ((1 << 42) - 1)) << TIME_SHIFT
}

/// A time as the engine stores it (rounded up to its unit).
pub fn engine_time(ns: u64) -> u64 {
    ((ns + (1 << TIME_SHIFT) - 1) >> TIME_SHIFT) << TIME_SHIFT
}

/// The dead letters, by the message id their payload names; two with one
/// payload disagree with any model.
pub fn dead_letters(q: &Queue) -> Result<BTreeMap<u64, DeadLetter>, String> {
    let list = q.dlq_list();
    let n = list.len();
    let by_id: BTreeMap<u64, DeadLetter> =
        list.into_iter().map(|d| (id_of(&d.payload), d)).collect();
    if by_id.len() != n {
        return Err(format!(
            "two dead letters with one payload: {:?}",
            by_id.keys().collect::<Vec<_>>()
        ));
    }
    Ok(by_id)
}

/// `latest_acked_version` agrees with the model for every key of the table
/// and every key in `also` (which need not have an entry: 0).
pub fn acked_versions_agree(
    q: &Queue,
    keys: &KeyTable,
    also: impl IntoIterator<Item = u64>,
) -> Result<(), String> {
    let mut all: Vec<u64> = keys.iter().map(|(k, _)| k).chain(also).collect();
    all.sort_unstable();
    all.dedup();
    for k in all {
        let got = q.latest_acked_version(k);
        if got != keys.last_acked(k) {
            return Err(format!(
                "latest_acked_version({k}) = {got}, the model says {}",
                keys.last_acked(k)
            ));
        }
    }
    Ok(())
}

/// `verify` finds no problem (nor a note, with `no_notes`).
pub fn verify_clean(q: &Queue, no_notes: bool) -> Result<(), String> {
    let r = q.verify();
    if r.problems.is_empty() && (!no_notes || r.notes.is_empty()) {
        return Ok(());
    }
    Err(format!(
        "verify: problems {:?}, notes {:?}",
        r.problems, r.notes
    ))
}

/// The header word at offset `off` (an offset of `shmq::internals::layout::hdr`).
pub fn header(q: &Queue, off: usize) -> u64 {
    // Relaxed: as in `field`, read between this thread's calls.
    q.engine().mem().u64_at(off).load(Ordering::Relaxed)
}
