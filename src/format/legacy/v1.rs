//! Format version 1: files made before the fencing-token change (no claim
//! word: a slot's payload at 64; no replacement records for latest-only
//! queues). Its header, key entries and dead-letter records are those of
//! version 2 (shared from [`super::v2`], themselves frozen). Every
//! constant here is a frozen copy of the format as it was.

use super::{v2, SlotSpec, Spec};

/// The layout of a version-1 file.
pub const SPEC: Spec = Spec {
    version: 1,
    header_size: 4096,
    region_align: 128,
    hdr: v2::HDR,
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
        expires: None,
        payload: 64,
    },
    key: v2::KEY,
    dlq: v2::DLQ,
    replace_payload: 0,
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
