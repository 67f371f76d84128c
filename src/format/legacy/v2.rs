//! Format version 2: files made from the fencing-token change (a slot's
//! claim word at 64, the payload at 72; a key entry's holder time at 56)
//! until the next format change. Every constant here is a frozen copy of
//! the format as it was: do not replace them with the live constants of
//! `crate::format`, which move on.

use super::{DlqSpec, HdrSpec, KeySpec, SlotSpec, Spec};

/// The layout of a version-2 file.
pub const SPEC: Spec = Spec {
    version: 2,
    header_size: 4096,
    region_align: 128,
    hdr: HDR,
    // 256 bytes of words and counters, then 3 histograms of 496 buckets
    // and count, sum, max, rounded up to 128 bytes.
    part_stride: 12288,
    slot: SlotSpec {
        word: 0,
        position: 8,
        lease: 16,
        attempts: 24,
        key: 32,
        version: 40,
        enqueued_ns: 48,
        len: 56,
        // claim word at 64
        expires: None,
        payload: 72,
    },
    key: KEY,
    dlq: DLQ,
    replace_payload: 64,
    state_bits: 4,
    seq_shift: 14,
    seq_bits: 21,
    tag_shift: 42,
    lease_unit_shift: 16,
    len_sampled: 1 << 32,
    len_expires: 0,
    expiry_drop_flag: 0,
    pid_shift: 32,
    part_state_bits: 2,
    max_capacity: 1 << 30,
    max_message_size: 1 << 26,
    max_keys: 1 << 28,
    max_participants: 1023,
    max_file_size: 1 << 42,
    lock_base: 1 << 40,
};

/// The header of versions 1 and 2.
pub(super) const HDR: HdrSpec = HdrSpec {
    file_size: 16,
    capacity: 24,
    max_message_size: 32,
    slot_stride: 40,
    key_capacity: 48,
    dlq_capacity: 56,
    dlq_stride: 64,
    participant_capacity: 72,
    lease_ns: 80,
    max_deliveries: 88,
    flags: 96,
    wait_strategy: 104,
    reservation_timeout_ns: 112,
    participants_offset: 120,
    slots_offset: 128,
    keys_offset: 136,
    dlq_offset: 144,
    created_unix_ns: 152,
    checksum: 160,
    message_ttl_ns: None,
    boot_id: 192,
};

/// A key entry of versions 1 and 2 (64 bytes).
pub(super) const KEY: KeySpec = KeySpec {
    size: 64,
    key: 0,
    last_acked: 8,
    last_committed: 16,
    next_version: 24,
};

/// A dead-letter record of versions 1 and 2.
pub(super) const DLQ: DlqSpec = DlqSpec {
    word: 0,
    key: 16,
    version: 24,
    attempts: 48,
    len: 64,
    reason_len: 72,
    id: 80,
    reason: 96,
    reason_max: 160,
    payload: 256,
    state_bits: 4,
};
