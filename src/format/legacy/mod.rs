//! Readers of the file formats of earlier (and the current) shmq versions,
//! for `shmq migrate`: each turns the bytes of a whole queue file into a
//! [`Snapshot`] of its messages, keys, dead letters and participants, so
//! that they can be written into a new file of the current format.
//!
//! One module per version ([`v1`], [`v2`], [`v3`]), each with its own frozen copy
//! of every offset and packed-word width it reads: they never use the live
//! constants of [`crate::format`], which move on when the format changes,
//! so a reader keeps working for files of its version whatever the engine
//! becomes. A new format version adds a module here (a copy of the last
//! one's constants, changed where the format changed) and a row in
//! [`read`].
//!
//! These are plain byte decoders over a copy of the file (`&[u8]`), never
//! over a live mapping: the file must be quiet (nobody attached) when it
//! is read, which the caller checks. Nothing read is trusted: the header
//! is validated (magic, version, checksum, every stored offset recomputed
//! from the parameters within the limits), every loop is bounded by a
//! validated capacity, every length is clamped, and a damaged slot, key or
//! record is skipped and reported in [`Snapshot::damaged`], never a panic.

pub mod v1;
pub mod v2;
pub mod v3;

use crate::error::{Error, Result, Status};

/// The versions [`read`] understands.
pub const VERSIONS: [u64; 3] = [1, 2, 3];

/// The file format version written in a file's header (offset 8 in every
/// version), or `None` when the bytes are not a queue file (too short, or
/// another magic number).
pub fn version_of(bytes: &[u8]) -> Option<u64> {
    (word(bytes, 0)? == u64::from_le_bytes(*b"SHMQUEUE"))
        .then(|| word(bytes, 8))
        .flatten()
}

/// Reads a whole queue file of any version in [`VERSIONS`].
pub fn read(bytes: &[u8]) -> Result<Snapshot> {
    match version_of(bytes) {
        None => Err(Error::new(
            Status::Incompatible,
            "not a shmq queue file (too short, bad magic number, or creation never finished)",
        )),
        Some(1) => decode(bytes, &v1::SPEC),
        Some(2) => decode(bytes, &v2::SPEC),
        Some(3) => decode(bytes, &v3::SPEC),
        Some(v) => Err(Error::new(
            Status::Incompatible,
            format!(
                "format version {v}: this shmq migrates files of versions {:?} only",
                VERSIONS
            ),
        )),
    }
}

/// The frozen description of one format version: every offset and width
/// the decoder reads. Each version module holds its own constant.
#[derive(Debug)]
pub struct Spec {
    /// The version number in the header.
    pub version: u64,
    /// Size of the header region.
    pub header_size: usize,
    /// Alignment of regions.
    pub region_align: usize,
    /// Header field offsets.
    pub hdr: HdrSpec,
    /// Bytes from one participant entry to the next.
    pub part_stride: usize,
    /// Slot field offsets.
    pub slot: SlotSpec,
    /// Key table entry field offsets.
    pub key: KeySpec,
    /// Dead-letter record field offsets.
    pub dlq: DlqSpec,
    /// The offset of the payload in a replacement record, of which a
    /// latest-only queue has one per participant after the dead letters
    /// (0 = the version has none). Only their size matters here: a
    /// replacement in progress when its producer stopped was never
    /// committed, so it is not carried over.
    pub replace_payload: usize,
    /// The slot word: `lap | skipped | seq | owner | state`, the state in
    /// the low `state_bits`, the sequence at `seq_shift`, `seq_bits` wide.
    pub state_bits: u32,
    /// Lowest bit of the sequence in a slot word.
    pub seq_shift: u32,
    /// Width of the sequence.
    pub seq_bits: u32,
    /// The lease and attempts words: `tag << tag_shift | value`.
    pub tag_shift: u32,
    /// The lease word's value counts units of `2^lease_unit_shift` ns.
    pub lease_unit_shift: u32,
    /// The length word: `flags << 32 | length`; the sampled flag.
    pub len_sampled: u64,
    /// The length word's flag saying the message has a deadline in the
    /// slot's `expires` word (0 = the version has no deadlines).
    pub len_expires: u64,
    /// The header flag saying an expired message is dropped rather than
    /// dead-lettered (0 = the version has no expiry).
    pub expiry_drop_flag: u64,
    /// A participant's state word: `pid << pid_shift | … | state`, the
    /// state in the low `part_state_bits`.
    pub pid_shift: u32,
    /// Width of a participant's state.
    pub part_state_bits: u32,
    /// Limits the parameters must respect.
    pub max_capacity: u64,
    /// Largest payload.
    pub max_message_size: u64,
    /// Most key entries.
    pub max_keys: u64,
    /// Most participants.
    pub max_participants: u64,
    /// Largest file.
    pub max_file_size: u64,
    /// The byte a participant locks to say it is alive is
    /// `lock_base + index` (an OFD lock far beyond the file).
    pub lock_base: u64,
}

/// Offsets of the header fields a reader needs.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct HdrSpec {
    pub file_size: usize,
    pub capacity: usize,
    pub max_message_size: usize,
    pub slot_stride: usize,
    pub key_capacity: usize,
    pub dlq_capacity: usize,
    pub dlq_stride: usize,
    pub participant_capacity: usize,
    pub lease_ns: usize,
    pub max_deliveries: usize,
    pub flags: usize,
    pub wait_strategy: usize,
    pub reservation_timeout_ns: usize,
    pub participants_offset: usize,
    pub slots_offset: usize,
    pub keys_offset: usize,
    pub dlq_offset: usize,
    pub created_unix_ns: usize,
    /// The checksum covers the words `8..checksum`.
    pub checksum: usize,
    /// The queue's default time to live, ns (`None`: the version has none).
    pub message_ttl_ns: Option<usize>,
    pub boot_id: usize,
}

/// Offsets of the key table entry fields a reader needs.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct KeySpec {
    pub size: usize,
    pub key: usize,
    pub last_acked: usize,
    pub last_committed: usize,
    pub next_version: usize,
}

/// Offsets of the dead-letter record fields a reader needs.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct DlqSpec {
    pub word: usize,
    pub key: usize,
    pub version: usize,
    pub attempts: usize,
    pub len: usize,
    pub reason_len: usize,
    pub id: usize,
    pub reason: usize,
    pub reason_max: usize,
    pub payload: usize,
    /// The record word's state is its low `state_bits`.
    pub state_bits: u32,
}

/// Offsets of the slot fields a reader needs.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct SlotSpec {
    pub word: usize,
    pub position: usize,
    pub lease: usize,
    pub attempts: usize,
    pub key: usize,
    pub version: usize,
    pub enqueued_ns: usize,
    pub len: usize,
    /// The message's deadline, meaningful when the length word has the
    /// version's `len_expires` flag (`None`: the version has none).
    pub expires: Option<usize>,
    pub payload: usize,
}

/// The parameters and options of the old queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldParams {
    /// Format version of the file.
    pub version: u64,
    /// Slots.
    pub capacity: u64,
    /// Largest payload.
    pub max_message_size: u64,
    /// Key table entries.
    pub key_capacity: u64,
    /// Dead-letter records.
    pub dlq_capacity: u64,
    /// Participant entries.
    pub participant_capacity: u64,
    /// Default lease, nanoseconds.
    pub lease_ns: u64,
    /// Failed deliveries before a message is dead-lettered.
    pub max_deliveries: u64,
    /// Header flags (bit 0: latest-only; from version 3, bit 1: drop
    /// expired messages, see `expiry_drop`).
    pub flags: u64,
    /// The queue's default time to live of a message, ns (0 = none; always
    /// 0 before version 3).
    pub message_ttl_ns: u64,
    /// Whether an expired message is dropped (else dead-lettered with the
    /// reason "expired"; always false before version 3).
    pub expiry_drop: bool,
    /// Wait strategy code.
    pub wait_strategy: u64,
    /// Reservation timeout, nanoseconds.
    pub reservation_timeout_ns: u64,
    /// Wall-clock creation time.
    pub created_unix_ns: u64,
    /// The boot id of the machine when participants last attached.
    pub boot_id: [u64; 2],
}

/// The state of a message found in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldState {
    /// Waiting in ring order.
    Ready,
    /// Waiting off ring order (a redelivery, a late commit).
    Pending,
    /// Waiting for its not-before time.
    Delayed,
    /// Held by a consumer (dead, since the file is quiet).
    Claimed,
    /// On its way to the dead letters when its mover stopped.
    DeadLettering,
}

/// A message found in a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldMessage {
    /// The slot.
    pub slot: u64,
    /// Its ring position (the order of the ring).
    pub position: u64,
    /// Its state.
    pub state: OldState,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Monotonic time of its first commit (a TSC reading when `sampled`).
    pub enqueued_ns: u64,
    /// Whether `enqueued_ns` is a TSC reading.
    pub sampled: bool,
    /// A delayed message's not-before time (monotonic ns of the boot that
    /// wrote it), when its lease word is stamped for its state.
    pub not_before_ns: Option<u64>,
    /// Deliveries counted so far (0 when the word was not stamped for the
    /// slot's last claim).
    pub deliveries: u64,
    /// The message's deadline (monotonic ns of the boot that wrote it),
    /// when its length word has the deadline flag (from version 3).
    pub expires_ns: Option<u64>,
    /// The payload, clamped to the queue's largest payload.
    pub payload: Vec<u8>,
}

/// A key table entry in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldKey {
    /// The key.
    pub key: u64,
    /// Last acked version: a send of this version or older is stale.
    pub last_acked: u64,
    /// Last committed version.
    pub last_committed: u64,
    /// Counter of automatic versions.
    pub next_version: u64,
}

/// A dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldDeadLetter {
    /// Its record.
    pub record: u64,
    /// Its id in the old file.
    pub id: u64,
    /// Key (0 = none).
    pub key: u64,
    /// Version.
    pub version: u64,
    /// Delivery attempts.
    pub attempts: u64,
    /// Why it was dead-lettered (lossy UTF-8).
    pub reason: String,
    /// Whether its record was being moved back to the queue (redriven)
    /// when its owner stopped: the message may also be in a slot.
    pub redriving: bool,
    /// The payload, clamped.
    pub payload: Vec<u8>,
}

/// A participant entry that is not free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldParticipant {
    /// Entry index (its lock byte is `LOCK_BASE + index`).
    pub index: u64,
    /// Registered process.
    pub pid: u32,
    /// Whether it was being cleaned up after.
    pub cleaning: bool,
}

/// Everything a migration carries over from an old file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The parameters.
    pub params: OldParams,
    /// Messages waiting or in flight, in ring order (by position).
    pub messages: Vec<OldMessage>,
    /// Key table entries in use.
    pub keys: Vec<OldKey>,
    /// Dead letters, by id.
    pub dead_letters: Vec<OldDeadLetter>,
    /// Participant entries that are not free.
    pub participants: Vec<OldParticipant>,
    /// The byte participant `i` locks while alive is `lock_base + i`.
    pub lock_base: u64,
    /// Reservations never committed (not messages: their producers died
    /// or stalled before the commit), by slot.
    pub uncommitted: Vec<u64>,
    /// What was skipped as damaged, one sentence each.
    pub damaged: Vec<String>,
}

/// The little-endian word at `off`, `None` past the end.
fn word(bytes: &[u8], off: usize) -> Option<u64> {
    let b = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

const fn align_up(n: usize, to: usize) -> usize {
    (n + to - 1) & !(to - 1)
}

fn corrupt(what: String) -> Error {
    Error::new(Status::Corrupt, what)
}

/// FNV-1a over the header words `8..end`, byte by byte.
fn checksum(bytes: &[u8], end: usize) -> Option<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for off in (8..end).step_by(8) {
        for b in word(bytes, off)?.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Some(h)
}

/// Where the regions are, validated.
struct Regions {
    slot_stride: usize,
    dlq_stride: usize,
    participants: usize,
    slots: usize,
    keys: usize,
    dlq: usize,
}

/// Validates the header of a file of `spec`'s version and places the
/// regions, recomputing every stored offset from the parameters.
fn regions(bytes: &[u8], spec: &Spec) -> Result<(OldParams, Regions)> {
    let h = &spec.hdr;
    let f = |off: usize| word(bytes, off).unwrap_or(0);
    if bytes.len() < spec.header_size {
        return Err(corrupt(format!(
            "file is {} bytes, smaller than a queue header",
            bytes.len()
        )));
    }
    if checksum(bytes, h.checksum) != Some(f(h.checksum)) {
        return Err(corrupt(
            "header checksum mismatch: the layout parameters were overwritten".into(),
        ));
    }
    let p = OldParams {
        version: spec.version,
        capacity: f(h.capacity),
        max_message_size: f(h.max_message_size),
        key_capacity: f(h.key_capacity),
        dlq_capacity: f(h.dlq_capacity),
        participant_capacity: f(h.participant_capacity),
        lease_ns: f(h.lease_ns),
        max_deliveries: f(h.max_deliveries),
        flags: f(h.flags),
        wait_strategy: f(h.wait_strategy),
        reservation_timeout_ns: f(h.reservation_timeout_ns),
        created_unix_ns: f(h.created_unix_ns),
        // Any value is valid: a time to live, and a flag among others.
        message_ttl_ns: h.message_ttl_ns.map_or(0, f),
        expiry_drop: spec.expiry_drop_flag != 0 && f(h.flags) & spec.expiry_drop_flag != 0,
        boot_id: [f(h.boot_id), f(h.boot_id + 8)],
    };
    let in_range = |what: &str, v: u64, lo: u64, hi: u64| {
        if v < lo || v > hi {
            Err(corrupt(format!("header: {what} {v} is not in {lo}..={hi}")))
        } else {
            Ok(())
        }
    };
    in_range("capacity", p.capacity, 1, spec.max_capacity)?;
    in_range(
        "max message size",
        p.max_message_size,
        1,
        spec.max_message_size,
    )?;
    in_range("key capacity", p.key_capacity, 0, spec.max_keys)?;
    in_range("dead-letter capacity", p.dlq_capacity, 1, spec.max_capacity)?;
    in_range(
        "participant capacity",
        p.participant_capacity,
        1,
        spec.max_participants,
    )?;
    // Within these limits nothing below overflows a usize of 64 bits.
    let mms = p.max_message_size as usize;
    let a = spec.region_align;
    let slot_stride = align_up(spec.slot.payload + mms, 64);
    let dlq_stride = align_up(spec.dlq.payload + mms, 64);
    let participants = spec.header_size;
    let slots = align_up(
        participants + p.participant_capacity as usize * spec.part_stride,
        a,
    );
    let keys = align_up(slots + p.capacity as usize * slot_stride, a);
    let dlq = align_up(keys + p.key_capacity as usize * spec.key.size, a);
    let dlq_end = dlq + p.dlq_capacity as usize * dlq_stride;
    let mut file_size = align_up(dlq_end, 4096);
    if spec.replace_payload != 0 && p.flags & 1 != 0 {
        let stride = align_up(spec.replace_payload + mms, 64);
        let with_records = align_up(
            align_up(dlq_end, a) + p.participant_capacity as usize * stride,
            4096,
        );
        // Latest-only files made before the replacement records kept the
        // version number: they end after the dead letters.
        if f(h.file_size) != file_size as u64 {
            file_size = with_records;
        }
    }
    if file_size as u64 > spec.max_file_size {
        return Err(corrupt(format!(
            "header: the layout needs {file_size} bytes"
        )));
    }
    for (off, expect, what) in [
        (h.file_size, file_size, "file size"),
        (h.slot_stride, slot_stride, "slot stride"),
        (h.dlq_stride, dlq_stride, "dead-letter stride"),
        (h.participants_offset, participants, "participants offset"),
        (h.slots_offset, slots, "slots offset"),
        (h.keys_offset, keys, "keys offset"),
        (h.dlq_offset, dlq, "dead-letter offset"),
    ] {
        if f(off) != expect as u64 {
            return Err(corrupt(format!(
                "header {what} is {}, the parameters give {expect}",
                f(off)
            )));
        }
    }
    if bytes.len() != file_size {
        return Err(corrupt(format!(
            "file is {} bytes, its header says {file_size}",
            bytes.len()
        )));
    }
    Ok((
        p,
        Regions {
            slot_stride,
            dlq_stride,
            participants,
            slots,
            keys,
            dlq,
        },
    ))
}

/// An empty, valid file of `spec`'s version with the parameters given
/// (key, dead-letter and participant counts, flags), and the offset of its
/// slots; `None` for parameters out of range. For tests and the fuzz
/// target: a file of an old version made without that version's shmq.
pub fn blank(
    spec: &Spec,
    capacity: u64,
    mms: u64,
    keys: u64,
    dlq: u64,
    parts: u64,
    flags: u64,
) -> Option<(Vec<u8>, usize)> {
    let h = &spec.hdr;
    let ok = (1..=spec.max_capacity.min(1 << 16)).contains(&capacity)
        && (1..=spec.max_message_size.min(1 << 16)).contains(&mms)
        && keys <= spec.max_keys.min(1 << 16)
        && (1..=spec.max_capacity.min(1 << 16)).contains(&dlq)
        && (1..=spec.max_participants).contains(&parts);
    if !ok {
        return None;
    }
    let (m, a) = (mms as usize, spec.region_align);
    let slot_stride = align_up(spec.slot.payload + m, 64);
    let dlq_stride = align_up(spec.dlq.payload + m, 64);
    let participants = spec.header_size;
    let slots = align_up(participants + parts as usize * spec.part_stride, a);
    let keys_off = align_up(slots + capacity as usize * slot_stride, a);
    let dlq_off = align_up(keys_off + keys as usize * spec.key.size, a);
    let mut end = dlq_off + dlq as usize * dlq_stride;
    if spec.replace_payload != 0 && flags & 1 != 0 {
        end = align_up(end, a) + parts as usize * align_up(spec.replace_payload + m, 64);
    }
    let size = align_up(end, 4096);
    let mut b = vec![0u8; size];
    let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    for (off, v) in [
        (0, u64::from_le_bytes(*b"SHMQUEUE")),
        (8, spec.version),
        (h.file_size, size as u64),
        (h.capacity, capacity),
        (h.max_message_size, mms),
        (h.slot_stride, slot_stride as u64),
        (h.key_capacity, keys),
        (h.dlq_capacity, dlq),
        (h.dlq_stride, dlq_stride as u64),
        (h.participant_capacity, parts),
        (h.lease_ns, 30_000_000_000),
        (h.max_deliveries, 10),
        (h.flags, flags),
        (h.wait_strategy, 1),
        (h.reservation_timeout_ns, 5_000_000_000),
        (h.participants_offset, participants as u64),
        (h.slots_offset, slots as u64),
        (h.keys_offset, keys_off as u64),
        (h.dlq_offset, dlq_off as u64),
    ] {
        put(off, v);
    }
    let sum = checksum(&b, h.checksum)?;
    b[h.checksum..h.checksum + 8].copy_from_slice(&sum.to_le_bytes());
    Some((b, slots))
}

/// Decodes a whole file of `spec`'s version.
pub fn decode(bytes: &[u8], spec: &Spec) -> Result<Snapshot> {
    if version_of(bytes) != Some(spec.version) {
        return Err(Error::new(
            Status::Incompatible,
            format!("not a queue file of format version {}", spec.version),
        ));
    }
    let (params, r) = regions(bytes, spec)?;
    // Every offset below is inside the file: the regions were recomputed
    // from validated parameters and the file's size matches them. `word`
    // and `get` still check, so a mistake is a skipped entry, not a panic.
    let f = |off: usize| word(bytes, off);
    let mms = params.max_message_size as usize;
    let mut damaged = Vec::new();

    let mut participants = Vec::new();
    for i in 0..params.participant_capacity {
        let Some(w) = f(r.participants + i as usize * spec.part_stride) else {
            damaged.push(format!("participant {i}: outside the file"));
            continue;
        };
        match w & ((1 << spec.part_state_bits) - 1) {
            0 => {}
            s @ (1 | 2) => participants.push(OldParticipant {
                index: i,
                pid: (w >> spec.pid_shift) as u32,
                cleaning: s == 2,
            }),
            _ => damaged.push(format!("participant {i}: invalid state word {w:#x}")),
        }
    }

    let seq_mask = (1u64 << spec.seq_bits) - 1;
    let mut messages = Vec::new();
    let mut uncommitted = Vec::new();
    for s in 0..params.capacity {
        let base = r.slots + s as usize * r.slot_stride;
        let sl = &spec.slot;
        let (
            Some(w),
            Some(position),
            Some(lease),
            Some(attempts),
            Some(key),
            Some(version),
            Some(enq),
            Some(len),
        ) = (
            f(base + sl.word),
            f(base + sl.position),
            f(base + sl.lease),
            f(base + sl.attempts),
            f(base + sl.key),
            f(base + sl.version),
            f(base + sl.enqueued_ns),
            f(base + sl.len),
        )
        else {
            damaged.push(format!("slot {s}: outside the file"));
            continue;
        };
        let seq = (w >> spec.seq_shift) & seq_mask;
        let state = match w & ((1 << spec.state_bits) - 1) {
            0 => continue,
            1 | 2 | 8 => {
                uncommitted.push(s);
                continue;
            }
            3 => OldState::Ready,
            4 => OldState::Pending,
            5 => OldState::Claimed,
            6 => OldState::Delayed,
            7 => OldState::DeadLettering,
            c => {
                damaged.push(format!("slot {s}: invalid state {c}"));
                continue;
            }
        };
        let value = |x: u64| x & ((1 << spec.tag_shift) - 1);
        let not_before_ns = (state == OldState::Delayed && lease >> spec.tag_shift == seq)
            .then(|| value(lease).saturating_mul(1 << spec.lease_unit_shift));
        let full_len = len & 0xffff_ffff;
        if full_len > mms as u64 {
            damaged.push(format!(
                "slot {s}: length {full_len} is more than the largest payload {mms}; cut to it"
            ));
        }
        let n = (full_len as usize).min(mms);
        let Some(payload) = bytes.get(base + sl.payload..base + sl.payload + n) else {
            damaged.push(format!("slot {s}: payload outside the file"));
            continue;
        };
        // Any deadline is valid (one already past is the migration's to
        // dispose of); only a version with deadlines has the flag.
        let expires_ns = match sl.expires {
            Some(off) if spec.len_expires != 0 && len & spec.len_expires != 0 => {
                match f(base + off) {
                    Some(d) => Some(d),
                    None => {
                        damaged.push(format!("slot {s}: deadline outside the file"));
                        continue;
                    }
                }
            }
            _ => None,
        };
        messages.push(OldMessage {
            slot: s,
            position,
            state,
            key,
            version,
            enqueued_ns: enq,
            sampled: len & spec.len_sampled != 0,
            not_before_ns,
            deliveries: value(attempts),
            expires_ns,
            payload: payload.to_vec(),
        });
    }
    // Ring order. Positions are read from the file: ties (a damaged file)
    // keep slot order.
    messages.sort_by_key(|m| (m.position, m.slot));

    let mut keys = Vec::new();
    for e in 0..params.key_capacity {
        let base = r.keys + e as usize * spec.key.size;
        let k = &spec.key;
        match (
            f(base + k.key),
            f(base + k.last_acked),
            f(base + k.last_committed),
            f(base + k.next_version),
        ) {
            (Some(0), ..) => {}
            (Some(key), Some(last_acked), Some(last_committed), Some(next_version)) => {
                keys.push(OldKey {
                    key,
                    last_acked,
                    last_committed,
                    next_version,
                })
            }
            _ => damaged.push(format!("key entry {e}: outside the file")),
        }
    }

    let mut dead_letters = Vec::new();
    for d in 0..params.dlq_capacity {
        let base = r.dlq + d as usize * r.dlq_stride;
        let q = &spec.dlq;
        let (Some(w), Some(key), Some(version), Some(attempts), Some(len), Some(rlen), Some(id)) = (
            f(base + q.word),
            f(base + q.key),
            f(base + q.version),
            f(base + q.attempts),
            f(base + q.len),
            f(base + q.reason_len),
            f(base + q.id),
        ) else {
            damaged.push(format!("dead letter {d}: outside the file"));
            continue;
        };
        let redriving = match w & ((1 << q.state_bits) - 1) {
            0 | 1 => continue,
            2 => false,
            3 => true,
            c => {
                damaged.push(format!("dead letter {d}: invalid state {c}"));
                continue;
            }
        };
        if len > mms as u64 {
            damaged.push(format!(
                "dead letter {d}: length {len} is more than the largest payload {mms}; cut to it"
            ));
        }
        let n = (len as usize).min(mms);
        let rn = (rlen.min(q.reason_max as u64)) as usize;
        let (Some(payload), Some(reason)) = (
            bytes.get(base + q.payload..base + q.payload + n),
            bytes.get(base + q.reason..base + q.reason + rn),
        ) else {
            damaged.push(format!("dead letter {d}: outside the file"));
            continue;
        };
        dead_letters.push(OldDeadLetter {
            record: d,
            id,
            key,
            version,
            attempts,
            reason: String::from_utf8_lossy(reason).into_owned(),
            redriving,
            payload: payload.to_vec(),
        });
    }
    dead_letters.sort_by_key(|d| (d.id, d.record));

    Ok(Snapshot {
        params,
        messages,
        keys,
        dead_letters,
        participants,
        lock_base: spec.lock_base,
        uncommitted,
        damaged,
    })
}

#[cfg(test)]
mod tests;
