//! Options of a queue (fixed at creation) and of single calls.

use std::time::Duration;

/// How a call waits for room or for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum WaitStrategy {
    /// Spin (yielding now and then): lowest latency, burns a CPU.
    Spin = 0,
    /// Spin briefly, then sleep on a futex in the mapping (the default).
    #[default]
    SpinThenSleep = 1,
    /// Sleep at once.
    Sleep = 2,
}

impl WaitStrategy {
    /// The machine name: `spin`, `spin-then-sleep` or `sleep` (as the
    /// Python binding spells them).
    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::Spin => "spin",
            WaitStrategy::SpinThenSleep => "spin-then-sleep",
            WaitStrategy::Sleep => "sleep",
        }
    }

    /// From the stored integer; unknown values give the default.
    pub fn from_u64(v: u64) -> WaitStrategy {
        match v {
            0 => WaitStrategy::Spin,
            2 => WaitStrategy::Sleep,
            _ => WaitStrategy::SpinThenSleep,
        }
    }
}

impl std::fmt::Display for WaitStrategy {
    /// For people: `spin`, `spin, then sleep`, `sleep`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitStrategy::Spin => "spin",
            WaitStrategy::SpinThenSleep => "spin, then sleep",
            WaitStrategy::Sleep => "sleep",
        })
    }
}

/// The options of a new queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Most messages queued, delayed or in flight at once (number of slots).
    pub capacity: u64,
    /// Largest payload in bytes.
    pub max_message_size: u32,
    /// Entries of the key table (0 = no keyed messages).
    pub key_capacity: u64,
    /// Records of the dead-letter area (0 = same as capacity).
    pub dlq_capacity: u64,
    /// Entries of the participant table: most handles attached at once.
    pub participant_capacity: u32,
    /// How long a claim is held before it is redelivered.
    pub lease: Duration,
    /// Failed deliveries before a message is dead-lettered (0 = unlimited).
    pub max_deliveries: u32,
    /// How long a reservation may stay uncommitted before it is abandoned.
    pub reservation_timeout: Duration,
    /// Latest-only mode: a newer message of a key replaces the waiting one.
    pub latest_only: bool,
    /// File mode bits of the new file (0600 by default: owner only; 0660
    /// for a queue shared with a group, see [`Options::group_shared`]). Set
    /// with `fchmod` on the new descriptor, so the umask does not change it.
    /// Other handles refuse to open a file writable by its group unless
    /// they ask for [`OpenOptions::group_shared`], and one writable by
    /// others unless they ask for [`OpenOptions::trust_any_owner`].
    pub mode: u32,
    /// The group the new file is given (`fchown` on the new descriptor), or
    /// `None` to keep the creator's (or the directory's, when it is
    /// set-group-id). The creator must belong to the group unless it is
    /// root; see [`group_id`](crate::group_id) to look up a name.
    pub group: Option<u32>,
    /// How calls wait.
    pub wait_strategy: WaitStrategy,
    /// Leave the new file sparse instead of reserving its space. By default
    /// [`Queue::create`](crate::Queue::create) allocates every block of the
    /// file up front (`posix_fallocate`) and refuses with `Io` ("no
    /// space", the bytes needed and free) when the file system cannot hold
    /// it. A sparse file is created at once whatever its size, and its
    /// pages are taken from the file system when first touched: when it is
    /// full then, the operation that touched the page fails with `Corrupt`
    /// ("the file system is full") and the queue must be recreated. For
    /// file systems that cannot allocate ahead the file is sparse anyway.
    pub sparse: bool,
    /// The default time to live of a message (zero: none). A message whose
    /// deadline (its commit time plus its time to live: its send's own
    /// [`SendOptions::ttl`], else this) has passed is never delivered: a
    /// claim that meets it, or the maintenance scan, disposes of it as
    /// [`Options::on_expiry`] says and counts it (`expired`). A
    /// redelivered message keeps its deadline.
    pub message_ttl: Duration,
    /// What becomes of an expired message.
    pub on_expiry: Expiry,
}

/// What becomes of a message whose time to live ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Expiry {
    /// Moved to the dead letters with the reason "expired" (the default:
    /// every queue has a dead-letter area). When that area is full it waits
    /// in its slot for room, as any dead letter does.
    #[default]
    DeadLetter,
    /// Deleted, and counted in `expired` only.
    Drop,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: 1024,
            max_message_size: 256,
            key_capacity: 0,
            dlq_capacity: 0,
            participant_capacity: 64,
            lease: Duration::from_secs(30),
            max_deliveries: 10,
            reservation_timeout: Duration::from_secs(5),
            latest_only: false,
            mode: 0o600,
            group: None,
            wait_strategy: WaitStrategy::SpinThenSleep,
            sparse: false,
            message_ttl: Duration::ZERO,
            on_expiry: Expiry::DeadLetter,
        }
    }
}

impl Options {
    /// Refuses settings no queue can run with: a zero lease (every claim
    /// would be taken back at the next repair) or a zero reservation
    /// timeout (every reservation abandoned before its commit).
    pub fn validate(&self) -> crate::error::Result<()> {
        use crate::error::{Error, Status};
        if self.lease.is_zero() {
            return Err(Error::new(
                Status::InvalidArgument,
                "lease is 0: every claim would be taken back at once",
            ));
        }
        if self.reservation_timeout.is_zero() {
            return Err(Error::new(
                Status::InvalidArgument,
                "reservation_timeout is 0: every reservation would be abandoned",
            ));
        }
        Ok(())
    }

    /// With a default time to live of messages (see
    /// [`Options::message_ttl`]).
    pub fn message_ttl(mut self, ttl: Duration) -> Options {
        self.message_ttl = ttl;
        self
    }

    /// With what becomes of expired messages (see [`Options::on_expiry`]).
    pub fn on_expiry(mut self, e: Expiry) -> Options {
        self.on_expiry = e;
        self
    }

    /// A queue shared with a group: mode 0660, and the file given to
    /// `group` (`None`: the creator's group). Members of the group open it
    /// with [`OpenOptions::group_shared`].
    pub fn group_shared(mut self, group: Option<u32>) -> Options {
        self.mode = 0o660;
        self.group = group;
        self
    }
}

/// What an opened handle may do: [`OpenOptions::access`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum Access {
    /// Attach as a participant that sends, claims and settles (the
    /// default; what [`crate::Queue::open`] does). Needs write access.
    #[default]
    Participant = 0,
    /// Do not attach: stats, verify, recover and dead letters (what
    /// [`crate::Queue::inspect`] does). The file is mapped read-write when
    /// this process may write it, read-only otherwise.
    Inspect = 1,
    /// Do not attach and map the file `PROT_READ`: stats, info, verify and
    /// listing dead letters work; every operation that would change the
    /// queue returns `Permission`, and nothing is ever written to the file
    /// (no participant entry, no lock).
    ReadOnly = 2,
}

/// How an existing queue file is opened: [`crate::Queue::open_with`].
///
/// By default a file is opened only when it is a regular file (not a
/// symbolic link, directory, FIFO or device), owned by this process's
/// effective user, and writable by nobody else. The checks use `fstat` on
/// the opened descriptor, never the path, so the file cannot be swapped
/// between the check and the use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Participant, inspection or read-only handle.
    pub access: Access,
    /// Accept a file its group may write (mode 0660: a queue created with
    /// [`Options::group_shared`]), and one owned by another user when the
    /// file's group is one of this process's groups.
    pub group_shared: bool,
    /// Accept a file whatever its owner and mode (it must still be a
    /// regular file): the caller vouches for it, for example because it
    /// sits in a directory only trusted users can write. A file writable by
    /// others can be changed by any local user.
    pub trust_any_owner: bool,
}

impl OpenOptions {
    /// A participant with the default checks.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }
    /// A read-only handle with the default checks.
    pub fn read_only() -> OpenOptions {
        OpenOptions {
            access: Access::ReadOnly,
            ..OpenOptions::default()
        }
    }
    /// With this access.
    pub fn access(mut self, access: Access) -> OpenOptions {
        self.access = access;
        self
    }
    /// Accepting a group-shared file.
    pub fn group_shared(mut self, yes: bool) -> OpenOptions {
        self.group_shared = yes;
        self
    }
    /// Accepting any owner and mode.
    pub fn trust_any_owner(mut self, yes: bool) -> OpenOptions {
        self.trust_any_owner = yes;
        self
    }
}

/// How long a call may wait: the C API's `timeout_ns` (0 = try once,
/// negative = forever, positive = up to that many nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Try once; `Full` or `Empty` if it cannot be done now.
    TryOnce,
    /// Wait as long as it takes.
    Forever,
    /// Wait up to this long, then `Timeout`.
    For(Duration),
}

impl Timeout {
    /// From the C convention.
    pub fn from_nanos(ns: i64) -> Timeout {
        match ns {
            0 => Timeout::TryOnce,
            n if n < 0 => Timeout::Forever,
            n => Timeout::For(Duration::from_nanos(n as u64)),
        }
    }
}

impl From<Duration> for Timeout {
    fn from(d: Duration) -> Timeout {
        if d.is_zero() {
            Timeout::TryOnce
        } else {
            Timeout::For(d)
        }
    }
}

impl From<Option<Duration>> for Timeout {
    /// `None` waits forever.
    fn from(d: Option<Duration>) -> Timeout {
        d.map_or(Timeout::Forever, Timeout::from)
    }
}

/// Options of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendOptions {
    /// Key (0 = none).
    pub key: u64,
    /// Version (0 on a keyed send = the key's next version).
    pub version: u64,
    /// How long to wait for room.
    pub timeout: Timeout,
    /// Claimable only after this delay.
    pub delay: Duration,
    /// The message's time to live (zero: the queue's default,
    /// [`Options::message_ttl`]). Its deadline is its commit time plus
    /// this; a delay does not move it.
    pub ttl: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            key: 0,
            version: 0,
            timeout: Timeout::TryOnce,
            delay: Duration::ZERO,
            ttl: Duration::ZERO,
        }
    }
}

impl SendOptions {
    /// Try once, no key, no delay.
    pub fn new() -> Self {
        Self::default()
    }
    /// With a key.
    pub fn key(mut self, key: u64) -> Self {
        self.key = key;
        self
    }
    /// With a version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
    /// With a timeout.
    pub fn timeout(mut self, t: impl Into<Timeout>) -> Self {
        self.timeout = t.into();
        self
    }
    /// With a delay before the message becomes claimable.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    /// With a time to live of its own (see [`SendOptions::ttl`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}
