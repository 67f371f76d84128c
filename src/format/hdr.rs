//! Offsets of the header fields. The immutable part ends at
//! [`CHECKSUM`], which holds an FNV-1a hash of the bytes before it.

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
/// A random identity of the file, drawn once at creation (never 0 in a
/// file made since it exists; 0 in older files). Outside the checksum so
/// that older files still open. Tells one queue file from another across
/// hosts: the NATS bridge builds its de-duplication ids on it.
pub const FILE_ID: usize = 168;
/// The queue's default time to live of a message, ns (0 = none): a
/// message's deadline is its commit time plus this, unless its send gave
/// its own. Immutable; outside the checksum (which covers the words before
/// it), and any value is valid.
pub const MESSAGE_TTL_NS: usize = 176;
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
/// Messages past their deadline that were dead-lettered or dropped instead
/// of delivered, ever (counted by whoever found them expired; rare, so one
/// shared word).
pub const EXPIRED: usize = 952;
/// Messages removed unclaimed by a purge of the queue, ever (counted by the
/// purger, once per message it freed; a rare operation, so one shared word).
pub const PURGED: usize = 960;
