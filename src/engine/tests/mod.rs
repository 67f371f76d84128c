//! The engine's unit tests: heap-memory queues driven step by step. The
//! helpers here build engines and send; the tests are grouped by concern.

use super::*;
use crate::error::{Result, Status};
use crate::format::key::{self as keyf, WaitingRef};
use crate::format::replace::{self, ReplaceWord};
use crate::format::{dlq, hdr, slot, Layout, Params};
use crate::memory::HeapMemory;
use crate::sync::Ordering;

mod basics;
mod guarantees;
mod inspect;
mod latest_only;

pub(super) fn engine(capacity: u64) -> Engine<HeapMemory> {
    engine_with(capacity, 0, 2)
}

/// An empty queue in heap memory with `key_capacity` key entries and
/// `dlq_capacity` dead-letter records.
pub(super) fn engine_with(
    capacity: u64,
    key_capacity: u64,
    dlq_capacity: u64,
) -> Engine<HeapMemory> {
    let params = Params {
        capacity,
        max_message_size: 32,
        key_capacity,
        dlq_capacity,
        participant_capacity: 4,
    };
    engine_of(Layout::new(params).unwrap())
}

/// An empty queue in heap memory laid out as `layout`.
pub(super) fn engine_of(layout: Layout) -> Engine<HeapMemory> {
    let e = Engine::new(
        HeapMemory::new(layout.file_size),
        layout,
        Config {
            lease_ns: 1_000_000,
            max_deliveries: 3,
            reservation_timeout_ns: 1_000_000,
            message_ttl_ns: 0,
            expiry_drop: false,
        },
    );
    e.format();
    e
}

pub(super) fn send(e: &Engine<HeapMemory>, me: u64, data: &[u8]) -> Result<Reservation> {
    let r = e.reserve(me, 0, data.len())?;
    // SAFETY: a reservation of this test, not yet committed; the payload fits.
    unsafe { e.write_payload(&r, data) };
    e.commit(me, &r, data.len(), 0, 0, None, 0)?;
    Ok(r)
}

pub(super) fn payload(e: &Engine<HeapMemory>, c: &Claim) -> Vec<u8> {
    let mut v = vec![0; c.len];
    e.mem.read_bytes(e.payload_offset(c.slot), &mut v);
    v
}

pub(super) fn keyed_engine(capacity: u64, dlq_capacity: u64) -> Engine<HeapMemory> {
    engine_with(capacity, 8, dlq_capacity)
}

pub(super) fn send_keyed(e: &Engine<HeapMemory>, me: u64, key: u64, version: u64, data: &[u8]) {
    e.keys().find_or_insert(key).unwrap();
    let r = e.reserve(me, 0, data.len()).unwrap();
    // SAFETY: a reservation of this test, not yet committed; the payload fits.
    unsafe { e.write_payload(&r, data) };
    e.commit(me, &r, data.len(), key, version, None, 0).unwrap();
}
