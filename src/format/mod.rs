//! The file format of a queue: every offset of the mapping, and every packed
//! word in it with its encoding, is defined here and nowhere else.
//!
//! One module per region: [`hdr`] (the header), [`part`] (a participant
//! entry and its state word, [`part::EntryState`]), [`slot`] (a slot, its
//! state word [`slot::SlotWord`] / [`slot::SlotState`] and its tagged
//! metadata words), [`key`] (a key entry, its holder and waiting words),
//! [`replace`] (a replacement record and its word) and [`dlq`] (a
//! dead-letter record and its word). [`Layout`] places the regions. Code
//! outside this module reads and writes words through these types and
//! never shifts or masks a word itself.
//!
//! ```text
//!  offset 0                                   HEADER_SIZE (4 KiB)
//!  +------------------------------------------+
//!  | header: immutable parameters (checksummed)|  magic, format, sizes, offsets
//!  |         boot id                            |
//!  |  128 B  tail          (producers)          |  each hot word alone on its
//!  |  128 B  head          (consumers)          |  own 128-byte region, because
//!  |  128 B  not-empty futex + sleepers         |  the CPU fetches 64-byte
//!  |  128 B  not-full futex + sleepers          |  lines in pairs
//!  |  128 B  side path: dirty/clean epochs, due |
//!  |  128 B  maintenance clocks, hints          |
//!  +------------------------------------------+ participants_offset
//!  | participant 0 | participant 1 | ...       |  PARTICIPANT_STRIDE each:
//!  |  state word, pid, start time, counters,   |  owner-written metrics
//!  |  histograms (lead, processing, end-to-end)|
//!  +------------------------------------------+ slots_offset
//!  | slot 0 | slot 1 | ... | slot capacity-1   |  slot_stride each:
//!  +------------------------------------------+ keys_offset
//!  | key entry 0 | ... key_capacity-1          |  KEY_ENTRY_SIZE each
//!  +------------------------------------------+ dlq_offset
//!  | dead letter 0 | ... dlq_capacity-1        |  dlq_stride each
//!  +------------------------------------------+ replace_offset
//!  | latest-only queues only: one replacement  |  replace_stride each
//!  | record per participant                    |  (see [`replace`])
//!  +------------------------------------------+ file_size
//! ```
//!
//! A slot:
//!
//! ```text
//!  0        8          16          24           32    40       48          56      64        72        80
//!  +--------+----------+-----------+------------+-----+--------+-----------+-------+---------+---------+---------
//!  | word   | position | lease     | attempts   | key | version| enqueued  | len   | claim   | expires | payload
//!  | (CAS)  | (u64)    | tag|time  | tag|count  |     |        | ns        | flags | gen|tag | ns      | max_message_size
//!  +--------+----------+-----------+------------+-----+--------+-----------+-------+---------+---------+---------
//! ```
//!
//! Every field is a little-endian word accessed only through atomics (or by
//! byte copies of the payload under slot ownership). Nothing here is trusted
//! when read back: [`Layout::from_header`] validates a header before any other
//! offset is used, and the protocol clamps every length it reads.

use crate::error::{Error, Result, Status};

/// "SHMQUEUE" in ASCII, little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQUEUE");
/// The version of this file format. Any change of layout or protocol bumps it.
pub const FORMAT_VERSION: u64 = 3;
/// Size of the header region.
pub const HEADER_SIZE: usize = 4096;
/// Alignment of every region and of the hot words.
pub const HOT_ALIGN: usize = 128;

pub mod dlq;
pub mod hdr;
pub mod key;
pub mod legacy;
pub mod part;
pub mod replace;
pub mod slot;

/// Queue flags stored in the header.
pub mod flags {
    /// Latest-only mode: a key has at most one waiting message.
    pub const LATEST_ONLY: u64 = 1;
    /// An expired message is dropped (and counted) instead of moved to
    /// the dead letters.
    pub const EXPIRY_DROP: u64 = 2;
}

const _: () = assert!(hdr::CHECKSUM < hdr::FILE_ID && hdr::FILE_ID + 8 <= hdr::BOOT_ID);
const _: () = assert!(hdr::PARTICIPANTS_HIGH + 8 <= HEADER_SIZE);
const _: () = assert!(hdr::PURGED + 8 <= HEADER_SIZE);
const _: () = assert!(hdr::TAIL % HOT_ALIGN == 0 && hdr::HEAD % HOT_ALIGN == 0);
const _: () =
    assert!(hdr::NOT_EMPTY_FUTEX % HOT_ALIGN == 0 && hdr::NOT_FULL_FUTEX % HOT_ALIGN == 0);
const _: () = assert!(part::COUNTERS + part::COUNTER_COUNT * 8 <= part::HISTOGRAMS);
const _: () = assert!(dlq::REASON + dlq::REASON_MAX <= dlq::PAYLOAD);
const _: () = assert!(replace::ENQUEUED_NS + 8 <= replace::PAYLOAD);
const _: () = assert!(slot::CLAIM + 8 == slot::EXPIRES && slot::EXPIRES + 8 == slot::PAYLOAD);
const _: () = assert!(replace::EXPIRES + 8 <= replace::PAYLOAD);

/// Rounds `n` up to a multiple of `to` (a power of two).
pub const fn align_up(n: usize, to: usize) -> usize {
    (n + to - 1) & !(to - 1)
}

/// Hard limits on layout parameters, so that sizes never overflow and every
/// index fits the bits given to it in the packed words.
pub mod limits {
    /// Most slots (positions are split into lap and index with u64 math).
    pub const MAX_CAPACITY: u64 = 1 << 30;
    /// Largest payload.
    pub const MAX_MESSAGE_SIZE: u64 = 1 << 26;
    /// Most key entries.
    pub const MAX_KEYS: u64 = 1 << 28;
    /// Most participants (the owner field of a slot word has 10 bits).
    pub const MAX_PARTICIPANTS: u64 = 1023;
    /// Largest file.
    pub const MAX_FILE_SIZE: u64 = 1 << 42;
}

/// The parameters that fix a file's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Number of slots.
    pub capacity: u64,
    /// Largest payload.
    pub max_message_size: u64,
    /// Key table entries.
    pub key_capacity: u64,
    /// Dead-letter records.
    pub dlq_capacity: u64,
    /// Participant entries.
    pub participant_capacity: u64,
}

/// Where everything is, derived from [`Params`] (or validated from a header).
/// Copied into each handle at open, so a later scribble on the header cannot
/// move what this process believes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The parameters.
    pub params: Params,
    /// Bytes from one slot to the next.
    pub slot_stride: usize,
    /// Bytes from one dead letter to the next.
    pub dlq_stride: usize,
    /// Offset of the participant table.
    pub participants_offset: usize,
    /// Offset of the slots.
    pub slots_offset: usize,
    /// Offset of the key table.
    pub keys_offset: usize,
    /// Offset of the dead-letter area.
    pub dlq_offset: usize,
    /// Offset of the replacement records (latest-only queues; 0 = none).
    pub replace_offset: usize,
    /// Bytes from one replacement record to the next (0 = none).
    pub replace_stride: usize,
    /// Total size.
    pub file_size: usize,
}

fn invalid(what: &str) -> Error {
    Error::new(Status::InvalidArgument, what.to_string())
}

impl Layout {
    /// Computes the layout for new parameters, refusing ones out of range:
    /// the layout of a queue without flags (no replacement records).
    pub fn new(p: Params) -> Result<Layout> {
        Layout::with_flags(p, 0)
    }

    /// Computes the layout of a queue with header flags `flags` (see
    /// [`flags`]): a latest-only queue has a replacement record per
    /// participant after the dead letters.
    pub fn with_flags(p: Params, flags: u64) -> Result<Layout> {
        if p.capacity == 0 || p.capacity > limits::MAX_CAPACITY {
            return Err(invalid(&format!(
                "capacity must be 1..={}, got {}",
                limits::MAX_CAPACITY,
                p.capacity
            )));
        }
        if p.max_message_size == 0 || p.max_message_size > limits::MAX_MESSAGE_SIZE {
            return Err(invalid(&format!(
                "max_message_size must be 1..={}, got {}",
                limits::MAX_MESSAGE_SIZE,
                p.max_message_size
            )));
        }
        if p.key_capacity > limits::MAX_KEYS {
            return Err(invalid(&format!(
                "key_capacity must be at most {}, got {}",
                limits::MAX_KEYS,
                p.key_capacity
            )));
        }
        if p.dlq_capacity == 0 || p.dlq_capacity > limits::MAX_CAPACITY {
            return Err(invalid(&format!(
                "dead-letter capacity must be 1..={}, got {}",
                limits::MAX_CAPACITY,
                p.dlq_capacity
            )));
        }
        if p.participant_capacity == 0 || p.participant_capacity > limits::MAX_PARTICIPANTS {
            return Err(invalid(&format!(
                "participant capacity must be 1..={}, got {}",
                limits::MAX_PARTICIPANTS,
                p.participant_capacity
            )));
        }
        let mms = p.max_message_size as usize;
        let slot_stride = align_up(slot::PAYLOAD + mms, 64);
        let dlq_stride = align_up(dlq::PAYLOAD + mms, 64);
        let participants_offset = HEADER_SIZE;
        let slots_offset = align_up(
            participants_offset + p.participant_capacity as usize * part::STRIDE,
            HOT_ALIGN,
        );
        let keys_offset = align_up(slots_offset + p.capacity as usize * slot_stride, HOT_ALIGN);
        let dlq_offset = align_up(keys_offset + p.key_capacity as usize * key::SIZE, HOT_ALIGN);
        let dlq_end = dlq_offset + p.dlq_capacity as usize * dlq_stride;
        let (replace_offset, replace_stride, end) = if flags & flags::LATEST_ONLY != 0 {
            let stride = align_up(replace::PAYLOAD + mms, 64);
            let off = align_up(dlq_end, HOT_ALIGN);
            (off, stride, off + p.participant_capacity as usize * stride)
        } else {
            (0, 0, dlq_end)
        };
        let file_size = align_up(end, 4096);
        if file_size as u64 > limits::MAX_FILE_SIZE {
            return Err(invalid(&format!(
                "the file would be {file_size} bytes, more than the limit of {}",
                limits::MAX_FILE_SIZE
            )));
        }
        Ok(Layout {
            params: p,
            slot_stride,
            dlq_stride,
            participants_offset,
            slots_offset,
            keys_offset,
            dlq_offset,
            replace_offset,
            replace_stride,
            file_size,
        })
    }

    /// Validates a header read from a file of `actual_len` bytes. `field`
    /// reads one u64 of the header. Returns the layout, or `Incompatible`
    /// (not a queue of this format) or `Corrupt` (a queue, but damaged).
    pub fn from_header(actual_len: usize, field: impl Fn(usize) -> u64) -> Result<Layout> {
        if actual_len < HEADER_SIZE {
            return Err(Error::new(
                Status::Incompatible,
                format!("file is {actual_len} bytes, smaller than a queue header"),
            ));
        }
        let magic = field(hdr::MAGIC);
        if magic != MAGIC {
            return Err(Error::new(
                Status::Incompatible,
                "not a shmq queue file (bad magic number, or creation never finished)",
            ));
        }
        let version = field(hdr::FORMAT_VERSION);
        if version != FORMAT_VERSION {
            return Err(Error::new(Status::Incompatible, version_refusal(version)));
        }
        if header_checksum(&field) != field(hdr::CHECKSUM) {
            return Err(Error::new(
                Status::Corrupt,
                "header checksum mismatch: the layout parameters were overwritten",
            ));
        }
        let corrupt = |what: String| Error::new(Status::Corrupt, what);
        let params = Params {
            capacity: field(hdr::CAPACITY),
            max_message_size: field(hdr::MAX_MESSAGE_SIZE),
            key_capacity: field(hdr::KEY_CAPACITY),
            dlq_capacity: field(hdr::DLQ_CAPACITY),
            participant_capacity: field(hdr::PARTICIPANT_CAPACITY),
        };
        let layout = Layout::with_flags(params, field(hdr::FLAGS))
            .map_err(|e| corrupt(format!("header: {}", e.message())))?;
        let stored = [
            (hdr::FILE_SIZE, layout.file_size, "file size"),
            (hdr::SLOT_STRIDE, layout.slot_stride, "slot stride"),
            (hdr::DLQ_STRIDE, layout.dlq_stride, "dead-letter stride"),
            (
                hdr::PARTICIPANTS_OFFSET,
                layout.participants_offset,
                "participants offset",
            ),
            (hdr::SLOTS_OFFSET, layout.slots_offset, "slots offset"),
            (hdr::KEYS_OFFSET, layout.keys_offset, "keys offset"),
            (hdr::DLQ_OFFSET, layout.dlq_offset, "dead-letter offset"),
        ];
        for (off, expect, what) in stored {
            let got = field(off);
            if got != expect as u64 {
                return Err(corrupt(format!(
                    "header {what} is {got}, the parameters give {expect}"
                )));
            }
        }
        if actual_len != layout.file_size {
            return Err(corrupt(format!(
                "file is {actual_len} bytes, its header says {}",
                layout.file_size
            )));
        }
        Ok(layout)
    }

    /// The header words that describe this layout, for creation.
    pub fn header_words(&self) -> [(usize, u64); 13] {
        let p = &self.params;
        [
            (hdr::FORMAT_VERSION, FORMAT_VERSION),
            (hdr::FILE_SIZE, self.file_size as u64),
            (hdr::CAPACITY, p.capacity),
            (hdr::MAX_MESSAGE_SIZE, p.max_message_size),
            (hdr::SLOT_STRIDE, self.slot_stride as u64),
            (hdr::KEY_CAPACITY, p.key_capacity),
            (hdr::DLQ_CAPACITY, p.dlq_capacity),
            (hdr::DLQ_STRIDE, self.dlq_stride as u64),
            (hdr::PARTICIPANT_CAPACITY, p.participant_capacity),
            (hdr::PARTICIPANTS_OFFSET, self.participants_offset as u64),
            (hdr::SLOTS_OFFSET, self.slots_offset as u64),
            (hdr::KEYS_OFFSET, self.keys_offset as u64),
            (hdr::DLQ_OFFSET, self.dlq_offset as u64),
        ]
    }

    /// Offset of slot `index`.
    #[inline]
    pub fn slot(&self, index: u64) -> usize {
        debug_assert!(index < self.params.capacity);
        self.slots_offset + index as usize * self.slot_stride
    }

    /// Offset of participant `index`.
    #[inline]
    pub fn participant(&self, index: u64) -> usize {
        debug_assert!(index < self.params.participant_capacity);
        self.participants_offset + index as usize * part::STRIDE
    }

    /// Offset of key entry `index`.
    #[inline]
    pub fn key_entry(&self, index: u64) -> usize {
        debug_assert!(index < self.params.key_capacity);
        self.keys_offset + index as usize * key::SIZE
    }

    /// Offset of dead-letter record `index`.
    #[inline]
    pub fn dead_letter(&self, index: u64) -> usize {
        debug_assert!(index < self.params.dlq_capacity);
        self.dlq_offset + index as usize * self.dlq_stride
    }

    /// Offset of participant `index`'s replacement record, if the queue has
    /// them (latest-only) and the index is in the table.
    #[inline]
    pub fn replacement(&self, index: u64) -> Option<usize> {
        (self.replace_stride != 0 && index < self.params.participant_capacity)
            .then(|| self.replace_offset + index as usize * self.replace_stride)
    }
}

/// Why a file of format `version` (not [`FORMAT_VERSION`]) is refused,
/// and what to do about it: an older file's messages move into a new file
/// with `shmq migrate`; a newer file needs a newer shmq.
pub fn version_refusal(version: u64) -> String {
    if version < FORMAT_VERSION {
        format!(
            "the file was made by format version {version}, this shmq reads version \
             {FORMAT_VERSION}: move its messages into a new file with `shmq migrate OLD NEW`"
        )
    } else {
        format!(
            "the file was made by format version {version}, newer than this shmq reads \
             (version {FORMAT_VERSION}): open it with a newer shmq"
        )
    }
}

/// The checksum of the immutable header fields (all but the magic).
pub fn header_checksum(field: &impl Fn(usize) -> u64) -> u64 {
    let mut h = Fnv::new();
    for off in (8..hdr::CHECKSUM).step_by(8) {
        h.word(field(off));
    }
    h.finish()
}

/// FNV-1a over 64-bit words, for the header checksum.
pub struct Fnv(u64);

impl Fnv {
    /// A fresh hash.
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    /// Mixes in one word, byte by byte.
    pub fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The hash.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

#[cfg(test)]
mod tests;
