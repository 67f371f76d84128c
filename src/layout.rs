//! The layout of a queue file: every offset of the mapping is defined here and
//! nowhere else.
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
//!  0        8          16          24           32    40       48          56      64        72
//!  +--------+----------+-----------+------------+-----+--------+-----------+-------+---------+---------
//!  | word   | position | lease     | attempts   | key | version| enqueued  | len   | claim   | payload
//!  | (CAS)  | (u64)    | tag|time  | tag|count  |     |        | ns        | flags | gen|tag | max_message_size
//!  +--------+----------+-----------+------------+-----+--------+-----------+-------+---------+---------
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
pub const FORMAT_VERSION: u64 = 2;
/// Size of the header region.
pub const HEADER_SIZE: usize = 4096;
/// Alignment of every region and of the hot words.
pub const HOT_ALIGN: usize = 128;

/// Offsets of the header fields. The immutable part ends at
/// [`hdr::CHECKSUM`], which holds an FNV-1a hash of the bytes before it.
pub mod hdr {
    /// [`super::MAGIC`]; written last at creation, so a reader that sees it
    /// sees a complete header.
    pub const MAGIC: usize = 0;
    /// [`super::FORMAT_VERSION`].
    pub const FORMAT_VERSION: usize = 8;
    /// Total size of the file in bytes.
    pub const FILE_SIZE: usize = 16;
    /// Number of slots: the most messages queued, delayed or in flight.
    pub const CAPACITY: usize = 24;
    /// Largest payload in bytes.
    pub const MAX_MESSAGE_SIZE: usize = 32;
    /// Bytes from one slot to the next.
    pub const SLOT_STRIDE: usize = 40;
    /// Entries in the key table (0 = keys disabled).
    pub const KEY_CAPACITY: usize = 48;
    /// Records in the dead-letter area.
    pub const DLQ_CAPACITY: usize = 56;
    /// Bytes from one dead-letter record to the next.
    pub const DLQ_STRIDE: usize = 64;
    /// Entries in the participant table.
    pub const PARTICIPANT_CAPACITY: usize = 72;
    /// Default lease of a claim, nanoseconds.
    pub const LEASE_NS: usize = 80;
    /// Failed deliveries before a message is dead-lettered (0 = unlimited).
    pub const MAX_DELIVERIES: usize = 88;
    /// Queue flags, see [`super::flags`].
    pub const FLAGS: usize = 96;
    /// The wait strategy (0 spin, 1 spin-then-sleep, 2 sleep).
    pub const WAIT_STRATEGY: usize = 104;
    /// How long a reservation may stay uncommitted before it is abandoned.
    pub const RESERVATION_TIMEOUT_NS: usize = 112;
    /// Offset of the participant table.
    pub const PARTICIPANTS_OFFSET: usize = 120;
    /// Offset of the slots.
    pub const SLOTS_OFFSET: usize = 128;
    /// Offset of the key table.
    pub const KEYS_OFFSET: usize = 136;
    /// Offset of the dead-letter area.
    pub const DLQ_OFFSET: usize = 144;
    /// Wall-clock time of creation, nanoseconds since the Unix epoch.
    pub const CREATED_UNIX_NS: usize = 152;
    /// FNV-1a of bytes `8..CHECKSUM` (everything immutable but the magic,
    /// which is stored last).
    pub const CHECKSUM: usize = 160;
    /// The boot id of the machine when participants last attached (two
    /// words). A different boot id means every old participant is dead.
    pub const BOOT_ID: usize = 192;

    /// Producers' position cursor (a hint: the slot words are the truth).
    pub const TAIL: usize = 256;
    /// Consumers' position cursor (a hint).
    pub const HEAD: usize = 384;
    /// Futex word consumers sleep on (u32), bumped when a message arrives.
    pub const NOT_EMPTY_FUTEX: usize = 512;
    /// Number of consumers asleep or about to sleep.
    pub const NOT_EMPTY_SLEEPERS: usize = 520;
    /// Futex word producers sleep on (u32), bumped when a slot is freed.
    pub const NOT_FULL_FUTEX: usize = 640;
    /// Number of producers asleep or about to sleep.
    pub const NOT_FULL_SLEEPERS: usize = 648;
    /// Bumped after a message becomes claimable off the ring order
    /// (redelivery, late commit, delay).
    pub const SIDE_DIRTY: usize = 768;
    /// The dirty epoch at which a full scan last found nothing claimable.
    pub const SIDE_CLEAN: usize = 776;
    /// Earliest time a delayed message becomes due (hint).
    pub const SIDE_NEXT_DUE: usize = 784;
    /// Where the next side scan starts.
    pub const SIDE_CURSOR: usize = 792;
    /// When the next maintenance scan of the slots is due.
    pub const MAINT_NEXT_NS: usize = 896;
    /// When the next liveness sweep of the participants is due.
    pub const LIVENESS_NEXT_NS: usize = 904;
    /// Messages waiting for room in the dead-letter area (hint).
    pub const DLQ_WAITING: usize = 912;
    /// Where the next dead letter is looked for (hint).
    pub const DLQ_CURSOR: usize = 920;
    /// Sequence of dead letters, gives each an id.
    pub const DLQ_SEQ: usize = 928;
    /// Slots freed by a repair that ran outside any participant entry.
    pub const FREED_UNOWNED: usize = 936;
    /// One more than the highest participant entry ever taken (0: unknown,
    /// as in files made before it existed). Attaching raises it before the
    /// entry is taken; sweeps and tallies look at entries below it only,
    /// instead of the whole table, at every liveness sweep (read from the
    /// mapping: a value above the table's capacity means the capacity).
    pub const PARTICIPANTS_HIGH: usize = 944;
}

/// Queue flags stored in the header.
pub mod flags {
    /// Latest-only mode: a key has at most one waiting message.
    pub const LATEST_ONLY: u64 = 1;
}

/// A participant entry.
pub mod part {
    /// State word: `pid << 32 | generation << 12 | cleaner << 2 | state`
    /// (see `participants`: the cleaner is named in the same CAS that marks
    /// the entry `CLEANING`).
    pub const STATE: usize = 0;
    /// Process start time (clock ticks since boot, /proc/PID/stat field 22).
    pub const START_TIME: usize = 8;
    /// Index + 1 of the participant cleaning up after this one.
    pub const CLEANER: usize = 16;
    /// Monotonic time of attachment.
    pub const ATTACHED_NS: usize = 24;
    /// Roles seen (bit 0 produced, bit 1 consumed).
    pub const ROLES: usize = 32;
    /// Wait points this participant is registered on as a sleeper (bit 0
    /// not-empty, bit 1 not-full), so a cleaner can take its count back.
    pub const SLEEPING: usize = 40;
    /// Slots this participant took from `FREE` (reservations), ever.
    pub const TOOK: usize = 48;
    /// Slots this participant returned to `FREE`, ever. The sum over all
    /// entries of `TOOK - FREED` is the number of occupied slots.
    pub const FREED: usize = 56;
    /// Key table entry + 1 whose holder this participant is taking for a
    /// claim (0 = none): set before the holder CAS, cleared after the
    /// slot's claim CAS, so that a cleaner can free a key whose taker died
    /// between the two (see `Engine::acquire_key`).
    pub const TAKING_KEY: usize = 64;
    /// First counter; see [`crate::metrics::Counter`].
    pub const COUNTERS: usize = 72;
    /// Number of counters.
    pub const COUNTER_COUNT: usize = 23;
    /// First histogram.
    pub const HISTOGRAMS: usize = 256;
    /// Number of histograms (lead time, processing time, end to end).
    pub const HISTOGRAM_COUNT: usize = 3;
    /// Bytes of one histogram: buckets, then count, sum, max.
    pub const HISTOGRAM_SIZE: usize = (crate::metrics::BUCKETS + 3) * 8;
    /// Bytes from one participant to the next.
    pub const STRIDE: usize = super::align_up(
        HISTOGRAMS + HISTOGRAM_COUNT * HISTOGRAM_SIZE,
        super::HOT_ALIGN,
    );

    /// Participant states.
    pub const FREE: u64 = 0;
    /// Attached and (as far as anyone knows) alive.
    pub const LIVE: u64 = 1;
    /// Dead; a survivor is cleaning up after it.
    pub const CLEANING: u64 = 2;
}

/// A slot header; the payload follows at [`slot::PAYLOAD`].
pub mod slot {
    /// The state word, see [`crate::ring::SlotWord`]. Every state change is
    /// one CAS on it.
    pub const WORD: usize = 0;
    /// The ring position at which the message was reserved.
    pub const POSITION: usize = 8;
    /// `tag << 42 | deadline / 2^16 ns`: lease deadline (claimed), not-before
    /// time (delayed) or reservation deadline (reserved); valid only when the
    /// tag equals the word's sequence.
    pub const LEASE: usize = 16;
    /// `tag << 42 | deliveries`: the delivery count, counted by the claimer
    /// (or lazily by whoever reclaims) for the claim whose sequence is the tag.
    pub const ATTEMPTS: usize = 24;
    /// The message key (0 = none).
    pub const KEY: usize = 32;
    /// The message version.
    pub const VERSION: usize = 40;
    /// Monotonic time of the first commit, nanoseconds.
    pub const ENQUEUED_NS: usize = 48;
    /// `flags << 32 | payload length`.
    pub const LEN: usize = 56;
    /// Flag in `LEN`: the message's times are measured precisely (its
    /// enqueue time is a TSC reading, and its consumer times its claim and
    /// ack) for the latency histograms.
    pub const LEN_SAMPLED: u64 = 1 << 32;
    /// `generation:56 | tag:8`: the generation of the slot's current (or
    /// last) claim, counted up once per claim for the life of the file, and
    /// the low bits of the sequence of the claim it was stamped for (see
    /// `ring::ClaimWord`). A claim's fencing token is made from it, so a
    /// token never names another claim however many transitions pass.
    pub const CLAIM: usize = 64;
    /// Start of the payload.
    pub const PAYLOAD: usize = 72;
}

/// A key table entry (issue: per-key versions). 64 bytes.
pub mod key {
    /// The key (0 = entry free). Claimed by CAS.
    pub const KEY: usize = 0;
    /// Last acked version.
    pub const LAST_ACKED: usize = 8;
    /// Last committed version.
    pub const LAST_COMMITTED: usize = 16;
    /// Counter for automatic versions.
    pub const NEXT_VERSION: usize = 24;
    /// Who holds the key: `slot + 1 << 32 | owner << 21 | claim sequence`
    /// (0 = nobody), see [`crate::keys::holder_ref`].
    pub const HOLDER: usize = 32;
    /// Latest-only: the waiting message, `(slot + 1) << 32 | position`
    /// (its low 32 bits; 0 = none).
    pub const WAITING: usize = 40;
    /// Number of this key's messages that are `PENDING` (waiting off ring
    /// order for redelivery or for the key); while it is non-zero a fresh
    /// message of the key is parked behind them, so claims of one key stay
    /// in commit order.
    pub const PARKED: usize = 48;
    /// Coarse monotonic time at which the holder was last taken: a holder
    /// still *in transit* (taken, its claim CAS not made) a lease after it
    /// is a stalled taker's, and is taken over like an expired claim.
    pub const HOLDER_SINCE: usize = 56;
    /// Size of an entry.
    pub const SIZE: usize = 64;
}

/// A participant's replacement record (latest-only queues only; see
/// `ring::Engine::take_waiting`): the new message of the replacement in
/// place that the participant is making, written here before it touches the
/// waiting message's slot, so that whoever repairs after it can finish the
/// replacement (or undo it) instead of losing both messages. The payload
/// follows at [`replace::PAYLOAD`].
pub mod replace {
    /// `(slot + 1) << 32 | phase << 28 | reservation sequence` of the
    /// replacement in progress (0 = none); phases below. Written by its
    /// participant; moved from `INTENT` to `ABORTED` by a repair that undoes
    /// a stalled replacement, and cleared by whoever cleans up after a dead
    /// one.
    pub const WORD: usize = 0;
    /// Monotonic deadline of the replacement's reservation (the slot's own
    /// lease word is not written by a replacer: see `ring`).
    pub const DEADLINE: usize = 8;
    /// The new message's key.
    pub const KEY: usize = 16;
    /// The new message's version.
    pub const VERSION: usize = 24;
    /// The new message's `flags << 32 | length` (as [`super::slot::LEN`]).
    pub const LEN: usize = 32;
    /// The new message's enqueue time.
    pub const ENQUEUED_NS: usize = 40;
    /// Start of the new message's payload.
    pub const PAYLOAD: usize = 64;

    /// Phase: the slot is (or is about to be) taken; its old message is
    /// still whole in it, the record may not be complete yet.
    pub const INTENT: u64 = 1;
    /// Phase: the record is complete; the slot's payload is being
    /// overwritten with it.
    pub const COPY: u64 = 2;
    /// Phase: a repair undid the replacement (the old message is back, or
    /// goes back); its participant must not write the slot.
    pub const ABORTED: u64 = 3;
}

/// A dead-letter record; the payload follows at [`dlq::PAYLOAD`].
pub mod dlq {
    /// `seq << 16 | owner << 4 | state`.
    pub const WORD: usize = 0;
    /// `slot << 32 | slot sequence` of the message it came from.
    pub const SOURCE: usize = 8;
    /// Key of the message.
    pub const KEY: usize = 16;
    /// Version of the message.
    pub const VERSION: usize = 24;
    /// Monotonic time of first enqueue.
    pub const FIRST_ENQUEUED_NS: usize = 32;
    /// Monotonic time it was dead-lettered.
    pub const DEAD_NS: usize = 40;
    /// Delivery attempts.
    pub const ATTEMPTS: usize = 48;
    /// Pid of the last consumer.
    pub const LAST_CONSUMER: usize = 56;
    /// Payload length.
    pub const LEN: usize = 64;
    /// Reason length, bytes.
    pub const REASON_LEN: usize = 72;
    /// The dead-letter id (unique per file).
    pub const ID: usize = 80;
    /// Reason text, up to [`REASON_MAX`] bytes.
    pub const REASON: usize = 96;
    /// Largest reason kept.
    pub const REASON_MAX: usize = 160;
    /// Start of the payload.
    pub const PAYLOAD: usize = 256;

    /// Record states.
    pub const EMPTY: u64 = 0;
    /// Being written by its owner.
    pub const WRITING: u64 = 1;
    /// Holds a dead letter.
    pub const FULL: u64 = 2;
    /// Being moved back to the queue by its owner.
    pub const REDRIVING: u64 = 3;
}

const _: () = assert!(hdr::CHECKSUM < hdr::BOOT_ID);
const _: () = assert!(hdr::PARTICIPANTS_HIGH + 8 <= HEADER_SIZE);
const _: () = assert!(hdr::TAIL % HOT_ALIGN == 0 && hdr::HEAD % HOT_ALIGN == 0);
const _: () =
    assert!(hdr::NOT_EMPTY_FUTEX % HOT_ALIGN == 0 && hdr::NOT_FULL_FUTEX % HOT_ALIGN == 0);
const _: () = assert!(part::COUNTERS + part::COUNTER_COUNT * 8 <= part::HISTOGRAMS);
const _: () = assert!(dlq::REASON + dlq::REASON_MAX <= dlq::PAYLOAD);
const _: () = assert!(replace::ENQUEUED_NS + 8 <= replace::PAYLOAD);
const _: () = assert!(slot::CLAIM + 8 == slot::PAYLOAD);

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
            return Err(Error::new(
                Status::Incompatible,
                format!("format version {version}, this library reads {FORMAT_VERSION}"),
            ));
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
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            capacity: 16,
            max_message_size: 64,
            key_capacity: 8,
            dlq_capacity: 4,
            participant_capacity: 4,
        }
    }

    #[test]
    fn regions_do_not_overlap_and_are_aligned() {
        let l = Layout::new(params()).unwrap();
        assert_eq!(l.slot_stride, 192);
        assert!(l.participants_offset >= HEADER_SIZE);
        assert!(l.slots_offset >= l.participants_offset + 4 * part::STRIDE);
        assert!(l.keys_offset >= l.slots_offset + 16 * l.slot_stride);
        assert!(l.dlq_offset >= l.keys_offset + 8 * key::SIZE);
        assert!(l.file_size >= l.dlq_offset + 4 * l.dlq_stride);
        for off in [
            l.participants_offset,
            l.slots_offset,
            l.keys_offset,
            l.dlq_offset,
        ] {
            assert_eq!(off % HOT_ALIGN, 0);
        }
        assert_eq!(part::STRIDE % HOT_ALIGN, 0);
    }

    #[test]
    fn latest_only_queues_have_a_replacement_record_per_participant() {
        let plain = Layout::new(params()).unwrap();
        assert_eq!(plain.replacement(0), None);
        let l = Layout::with_flags(params(), flags::LATEST_ONLY).unwrap();
        assert_eq!(
            (l.slots_offset, l.keys_offset, l.dlq_offset),
            (plain.slots_offset, plain.keys_offset, plain.dlq_offset)
        );
        assert!(l.replace_offset >= l.dlq_offset + 4 * l.dlq_stride);
        assert_eq!(l.replace_offset % HOT_ALIGN, 0);
        assert!(l.replace_stride >= replace::PAYLOAD + 64);
        assert_eq!(l.replacement(1), Some(l.replace_offset + l.replace_stride));
        assert_eq!(l.replacement(4), None);
        assert!(l.file_size >= l.replacement(3).unwrap() + l.replace_stride);
        let mut words = header_of(&l);
        words[hdr::FLAGS / 8] = flags::LATEST_ONLY;
        words[hdr::CHECKSUM / 8] = header_checksum(&|o| words[o / 8]);
        assert_eq!(
            Layout::from_header(l.file_size, |o| words[o / 8]).unwrap(),
            l
        );
        // The flags are part of the checksummed header: a file sized for
        // one layout is refused under the other.
        words[hdr::FLAGS / 8] = 0;
        words[hdr::CHECKSUM / 8] = header_checksum(&|o| words[o / 8]);
        if plain.file_size != l.file_size {
            assert!(Layout::from_header(l.file_size, |o| words[o / 8]).is_err());
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        for p in [
            Params {
                capacity: 0,
                ..params()
            },
            Params {
                max_message_size: 0,
                ..params()
            },
            Params {
                participant_capacity: 2000,
                ..params()
            },
            Params {
                capacity: u64::MAX,
                ..params()
            },
        ] {
            assert_eq!(
                Layout::new(p).unwrap_err().status(),
                Status::InvalidArgument
            );
        }
    }

    fn header_of(l: &Layout) -> Vec<u64> {
        let mut words = vec![0u64; HEADER_SIZE / 8];
        words[hdr::MAGIC / 8] = MAGIC;
        for (off, v) in l.header_words() {
            words[off / 8] = v;
        }
        words[hdr::CHECKSUM / 8] = header_checksum(&|o| words[o / 8]);
        words
    }

    #[test]
    fn header_round_trips_and_every_flipped_word_is_caught() {
        let l = Layout::new(params()).unwrap();
        let words = header_of(&l);
        assert_eq!(
            Layout::from_header(l.file_size, |o| words[o / 8]).unwrap(),
            l
        );
        assert!(Layout::from_header(l.file_size - 1, |o| words[o / 8]).is_err());
        for i in 0..=hdr::CHECKSUM / 8 {
            let mut bad = words.clone();
            bad[i] ^= 1 << (i % 64);
            let err = Layout::from_header(l.file_size, |o| bad[o / 8]).unwrap_err();
            assert!(matches!(
                err.status(),
                Status::Corrupt | Status::Incompatible
            ));
        }
    }
}
