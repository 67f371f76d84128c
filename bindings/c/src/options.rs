//! `shmq_options` (a new queue's options) and `shmq_send_options` (one
//! send's options). Both begin with their `size`, so a program compiled
//! against an older, shorter struct keeps working: fields past its `size`
//! take their defaults.

use std::mem::{offset_of, size_of};
use std::time::Duration;

use super::status::invalid;
use engine::Error;
use engine::{Access, Expiry, OpenOptions, Options, SendOptions, Timeout, WaitStrategy};

/// `shmq_options.flags`: latest-only mode (a newer message of a key replaces
/// the waiting one in place).
pub const SHMQ_FLAG_LATEST_ONLY: u32 = 1;
/// `shmq_options.flags`: give the new file to the group `group` (`fchown`;
/// the creator must belong to it unless it is root). Without this flag
/// `group` is ignored and the file keeps the creator's group.
pub const SHMQ_FLAG_SET_GROUP: u32 = 2;
/// `shmq_options.flags`: leave the new file sparse instead of reserving
/// its space. By default `shmq_create` allocates every block of the file
/// (`posix_fallocate`) and returns `SHMQ_IO` ("no space") when the file
/// system cannot hold it; a sparse file's pages are taken when first
/// touched, and a file system full then fails that call with
/// `SHMQ_CORRUPT` ("the file system is full").
pub const SHMQ_FLAG_SPARSE: u32 = 4;
/// `shmq_options.flags`: a message past its deadline (see
/// `message_ttl_ns`) is dropped and counted (`shmq_stats.expired`) instead
/// of moved to the dead letters with the reason "expired".
pub const SHMQ_FLAG_EXPIRY_DROP: u32 = 8;
/// Every flag this version knows.
const KNOWN_FLAGS: u32 =
    SHMQ_FLAG_LATEST_ONLY | SHMQ_FLAG_SET_GROUP | SHMQ_FLAG_SPARSE | SHMQ_FLAG_EXPIRY_DROP;

/// `shmq_options.mode` of a queue shared with a group: owner and group read
/// and write (0660). Members of the group open it with
/// `SHMQ_OPEN_GROUP_SHARED`.
pub const SHMQ_MODE_GROUP_SHARED: u32 = 0o660;

/// `shmq_options.wait_strategy`: spin (lowest latency, burns a CPU).
pub const SHMQ_WAIT_SPIN: u32 = 0;
/// `shmq_options.wait_strategy`: spin briefly, then sleep (the default).
pub const SHMQ_WAIT_SPIN_THEN_SLEEP: u32 = 1;
/// `shmq_options.wait_strategy`: sleep at once.
pub const SHMQ_WAIT_SLEEP: u32 = 2;

/// The options of a new queue. Fill with `shmq_options_init`, then change
/// what you need. `size` must stay `sizeof(shmq_options)` as set by init.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_options {
    /// `sizeof(shmq_options)` of the caller, for evolution.
    pub size: u32,
    /// Most messages queued, delayed or in flight at once (default 1024).
    pub capacity: u64,
    /// Largest payload in bytes (default 256).
    pub max_message_size: u32,
    /// Entries of the key table; 0 = no keyed messages (default 0).
    pub key_capacity: u64,
    /// How long a claim is held before it is redelivered (default 30 s).
    pub lease_ns: u64,
    /// Failed deliveries before dead-lettering; 0 = unlimited (default 10).
    pub max_deliveries: u32,
    /// `SHMQ_FLAG_*` bits (default 0).
    pub flags: u32,
    /// File mode bits of the new file (default 0600; 0 means 0600;
    /// `SHMQ_MODE_GROUP_SHARED` for a queue shared with a group). Set on the
    /// new descriptor, so the umask does not change it.
    pub mode: u32,
    /// `SHMQ_WAIT_*` (default `SHMQ_WAIT_SPIN_THEN_SLEEP`).
    pub wait_strategy: u32,
    /// Records of the dead-letter area; 0 = capacity (default 0).
    pub dlq_capacity: u64,
    /// How long a reservation may stay uncommitted before it is abandoned
    /// (default 5 s).
    pub reservation_timeout_ns: u64,
    /// Most handles attached at once (default 64).
    pub participant_capacity: u32,
    /// The group id the new file is given when `flags` has
    /// `SHMQ_FLAG_SET_GROUP` (default: none).
    pub group: u32,
    /// The default time to live of a message, ns (default 0: none). A
    /// message whose deadline (commit time plus its send's `ttl_ns`, else
    /// this) has passed is never delivered: it is dead-lettered with the
    /// reason "expired", or dropped with `SHMQ_FLAG_EXPIRY_DROP`, and
    /// counted in `shmq_stats.expired`. Since ABI 3.
    pub message_ttl_ns: u64,
}

/// The size of the first published `shmq_options` (up to `mode`): the
/// smallest `size` accepted.
const OPTIONS_V1: usize = offset_of!(shmq_options, mode) + size_of::<u32>();

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Default for shmq_options {
    fn default() -> Self {
        let o = Options::default();
        shmq_options {
            size: size_of::<shmq_options>() as u32,
            capacity: o.capacity,
            max_message_size: o.max_message_size,
            key_capacity: o.key_capacity,
            lease_ns: nanos(o.lease),
            max_deliveries: o.max_deliveries,
            flags: if o.latest_only {
                SHMQ_FLAG_LATEST_ONLY
            } else {
                0
            },
            mode: o.mode,
            wait_strategy: o.wait_strategy as u32,
            dlq_capacity: o.dlq_capacity,
            reservation_timeout_ns: nanos(o.reservation_timeout),
            participant_capacity: o.participant_capacity,
            group: 0,
            message_ttl_ns: nanos(o.message_ttl),
        }
    }
}

/// Reads a caller's struct that begins with a `u32` size: the first
/// `min(size, sizeof(T))` bytes over `T::default()`.
///
/// # Safety
/// `p` is non-null, aligned, and readable for its declared `size` bytes
/// (at least 4).
pub(crate) unsafe fn read_sized<T: Default + Copy>(
    p: *const T,
    min: usize,
    op: &str,
    what: &str,
) -> Result<T, Error> {
    // SAFETY: the caller guarantees the first u32 (the size) is readable.
    let size = unsafe { p.cast::<u32>().read() } as usize;
    if size < min {
        return Err(invalid(
            op,
            format!(
                "{what}->size is {size}, less than the smallest known {min}: \
                 set it with the init function or to sizeof({what})"
            ),
        ));
    }
    let mut out = T::default();
    let n = size.min(size_of::<T>());
    // SAFETY: the caller's struct has `size >= n` readable bytes; `out` is a
    // plain repr(C) struct of integers with `n <= sizeof(T)` bytes of room,
    // so any bytes are a valid value.
    unsafe {
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), n);
    }
    Ok(out)
}

/// Writes `v` over a caller's struct that begins with a `u32` size: the
/// first `min(size, sizeof(T))` bytes; the caller's `size` stays.
///
/// # Safety
/// `p` is non-null, aligned, and writable for its declared `size` bytes.
pub(crate) unsafe fn write_sized<T: Copy>(
    p: *mut T,
    v: &T,
    min: usize,
    op: &str,
    what: &str,
) -> Result<(), Error> {
    // SAFETY: the caller guarantees the first u32 is readable.
    let size = unsafe { p.cast::<u32>().read() } as usize;
    if size < min {
        return Err(invalid(
            op,
            format!(
                "{what}->size is {size}, less than the smallest known {min}: \
                 set it to sizeof({what}) before the call"
            ),
        ));
    }
    let n = size.min(size_of::<T>());
    // SAFETY: the caller's struct has `size >= n` writable bytes; skip the
    // leading u32 so the caller's size is kept.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (v as *const T).cast::<u8>().add(4),
            p.cast::<u8>().add(4),
            n - 4,
        );
    }
    Ok(())
}

impl shmq_options {
    /// Converts to engine options, checking every field.
    pub(crate) fn engine_options(&self, op: &str) -> Result<Options, Error> {
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(invalid(
                op,
                format!(
                    "opts->flags has unknown bits {:#x}",
                    self.flags & !KNOWN_FLAGS
                ),
            ));
        }
        let wait_strategy = match self.wait_strategy {
            SHMQ_WAIT_SPIN => WaitStrategy::Spin,
            SHMQ_WAIT_SPIN_THEN_SLEEP => WaitStrategy::SpinThenSleep,
            SHMQ_WAIT_SLEEP => WaitStrategy::Sleep,
            w => return Err(invalid(op, format!("opts->wait_strategy {w} is unknown"))),
        };
        if self.lease_ns == 0 {
            return Err(invalid(op, "opts->lease_ns is 0"));
        }
        Ok(Options {
            capacity: self.capacity,
            max_message_size: self.max_message_size,
            key_capacity: self.key_capacity,
            dlq_capacity: self.dlq_capacity,
            participant_capacity: self.participant_capacity,
            lease: Duration::from_nanos(self.lease_ns),
            max_deliveries: self.max_deliveries,
            reservation_timeout: Duration::from_nanos(self.reservation_timeout_ns),
            latest_only: self.flags & SHMQ_FLAG_LATEST_ONLY != 0,
            mode: if self.mode == 0 { 0o600 } else { self.mode },
            group: (self.flags & SHMQ_FLAG_SET_GROUP != 0).then_some(self.group),
            wait_strategy,
            sparse: self.flags & SHMQ_FLAG_SPARSE != 0,
            message_ttl: Duration::from_nanos(self.message_ttl_ns),
            on_expiry: if self.flags & SHMQ_FLAG_EXPIRY_DROP != 0 {
                Expiry::Drop
            } else {
                Expiry::DeadLetter
            },
        })
    }
}

/// Reads `shmq_options` from C.
///
/// # Safety
/// `p` is non-null, aligned, readable for its `size`.
pub(crate) unsafe fn read_options(p: *const shmq_options, op: &str) -> Result<Options, Error> {
    // SAFETY: forwarded from the caller.
    let o = unsafe { read_sized(p, OPTIONS_V1, op, "shmq_options") }?;
    o.engine_options(op)
}

/// Fills `opts` with the defaults and sets `opts->size`. NULL is ignored.
///
/// Thread safety: any thread; `opts` is the caller's.
///
/// # Safety
/// `opts` is NULL or points to a writable `shmq_options`.
#[no_mangle]
pub unsafe extern "C" fn shmq_options_init(opts: *mut shmq_options) {
    if opts.is_null() || !opts.is_aligned() {
        return;
    }
    // SAFETY: non-null and aligned; the caller provides a whole struct.
    unsafe { opts.write(shmq_options::default()) };
}

/// `shmq_open_options.access`: attach as a participant that sends, claims
/// and settles (the default, what `shmq_open` does).
pub const SHMQ_ACCESS_PARTICIPANT: u32 = 0;
/// `shmq_open_options.access`: do not attach (what `shmq_inspect` does):
/// mapped read-write when this process may write the file, read-only
/// otherwise.
pub const SHMQ_ACCESS_INSPECT: u32 = 1;
/// `shmq_open_options.access`: do not attach, map the file read-only.
/// Stats, info, verify and dead-letter listing work; every call that would
/// change the queue returns `SHMQ_PERMISSION`; nothing is written to the
/// file.
pub const SHMQ_ACCESS_READ_ONLY: u32 = 2;

/// `shmq_open_options.flags`: accept a file its group may write (a queue
/// created with `SHMQ_MODE_GROUP_SHARED`), and one owned by another user
/// when the file's group is one of this process's groups.
pub const SHMQ_OPEN_GROUP_SHARED: u32 = 1;
/// `shmq_open_options.flags`: accept a file whatever its owner and mode (it
/// must still be a regular file). Only for files in a directory that no
/// untrusted user can write.
pub const SHMQ_OPEN_TRUST_ANY_OWNER: u32 = 2;
/// Every open flag this version knows.
const KNOWN_OPEN_FLAGS: u32 = SHMQ_OPEN_GROUP_SHARED | SHMQ_OPEN_TRUST_ANY_OWNER;

/// How `shmq_open_ex` opens a file. Fill with `shmq_open_options_init`.
///
/// By default a file is opened only when it is a regular file (not a
/// symbolic link, directory, FIFO or device), owned by the effective user
/// and writable by nobody else; otherwise `SHMQ_PERMISSION`, with the cause
/// in `shmq_last_error()`. The checks use `fstat` on the opened descriptor.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_open_options {
    /// `sizeof(shmq_open_options)` of the caller, for evolution.
    pub size: u32,
    /// `SHMQ_ACCESS_*` (default `SHMQ_ACCESS_PARTICIPANT`).
    pub access: u32,
    /// `SHMQ_OPEN_*` bits (default 0).
    pub flags: u32,
}

const OPEN_OPTIONS_V1: usize = size_of::<shmq_open_options>();

impl Default for shmq_open_options {
    fn default() -> Self {
        shmq_open_options {
            size: size_of::<shmq_open_options>() as u32,
            access: SHMQ_ACCESS_PARTICIPANT,
            flags: 0,
        }
    }
}

/// Reads `shmq_open_options` from C (NULL = the defaults).
///
/// # Safety
/// `p` is NULL or aligned and readable for its `size`.
pub(crate) unsafe fn read_open_options(
    p: *const shmq_open_options,
    op: &str,
) -> Result<OpenOptions, Error> {
    let o = if p.is_null() {
        shmq_open_options::default()
    } else {
        if !p.is_aligned() {
            return Err(invalid(op, "opts is misaligned"));
        }
        // SAFETY: forwarded from the caller.
        unsafe { read_sized(p, OPEN_OPTIONS_V1, op, "shmq_open_options") }?
    };
    let access = match o.access {
        SHMQ_ACCESS_PARTICIPANT => Access::Participant,
        SHMQ_ACCESS_INSPECT => Access::Inspect,
        SHMQ_ACCESS_READ_ONLY => Access::ReadOnly,
        a => return Err(invalid(op, format!("opts->access {a} is unknown"))),
    };
    if o.flags & !KNOWN_OPEN_FLAGS != 0 {
        return Err(invalid(
            op,
            format!(
                "opts->flags has unknown bits {:#x}",
                o.flags & !KNOWN_OPEN_FLAGS
            ),
        ));
    }
    Ok(OpenOptions {
        access,
        group_shared: o.flags & SHMQ_OPEN_GROUP_SHARED != 0,
        trust_any_owner: o.flags & SHMQ_OPEN_TRUST_ANY_OWNER != 0,
    })
}

/// Fills `opts` with the defaults (a participant, default checks) and sets
/// `opts->size`. NULL is ignored.
///
/// Thread safety: any thread; `opts` is the caller's.
///
/// # Safety
/// `opts` is NULL or points to a writable `shmq_open_options`.
#[no_mangle]
pub unsafe extern "C" fn shmq_open_options_init(opts: *mut shmq_open_options) {
    if opts.is_null() || !opts.is_aligned() {
        return;
    }
    // SAFETY: non-null and aligned; the caller provides a whole struct.
    unsafe { opts.write(shmq_open_options::default()) };
}

/// The options of one send (`shmq_send_ex`, `shmq_commit_ex`). Fill with
/// `shmq_send_options_init`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_send_options {
    /// `sizeof(shmq_send_options)` of the caller, for evolution.
    pub size: u32,
    /// Key (0 = none).
    pub key: u64,
    /// Version (0 on a keyed send = the key's next version).
    pub version: u64,
    /// How long to wait for room: 0 = try once, negative = forever,
    /// positive = up to that many nanoseconds. Ignored by commit.
    pub timeout_ns: i64,
    /// Claimable only after this many nanoseconds (0 = at once).
    pub delay_ns: u64,
    /// The message's time to live, ns (0 = the queue's default
    /// `message_ttl_ns`): past its commit time plus this it is never
    /// delivered. Since ABI 3.
    pub ttl_ns: u64,
}

/// The size of the first published `shmq_send_options` (up to
/// `delay_ns`): the smallest `size` accepted.
const SEND_OPTIONS_V1: usize = offset_of!(shmq_send_options, delay_ns) + size_of::<u64>();

impl Default for shmq_send_options {
    fn default() -> Self {
        shmq_send_options {
            size: size_of::<shmq_send_options>() as u32,
            key: 0,
            version: 0,
            timeout_ns: 0,
            delay_ns: 0,
            ttl_ns: 0,
        }
    }
}

/// Reads `shmq_send_options` from C (NULL = the defaults).
///
/// # Safety
/// `p` is NULL or aligned and readable for its `size`.
pub(crate) unsafe fn read_send_options(
    p: *const shmq_send_options,
    op: &str,
) -> Result<SendOptions, Error> {
    let o = if p.is_null() {
        shmq_send_options::default()
    } else {
        if !p.is_aligned() {
            return Err(invalid(op, "opts is misaligned"));
        }
        // SAFETY: forwarded from the caller.
        unsafe { read_sized(p, SEND_OPTIONS_V1, op, "shmq_send_options") }?
    };
    Ok(SendOptions {
        key: o.key,
        version: o.version,
        timeout: Timeout::from_nanos(o.timeout_ns),
        delay: Duration::from_nanos(o.delay_ns),
        ttl: Duration::from_nanos(o.ttl_ns),
    })
}

/// Fills `opts` with the defaults (no key, try once, no delay) and sets
/// `opts->size`. NULL is ignored.
///
/// Thread safety: any thread; `opts` is the caller's.
///
/// # Safety
/// `opts` is NULL or points to a writable `shmq_send_options`.
#[no_mangle]
pub unsafe extern "C" fn shmq_send_options_init(opts: *mut shmq_send_options) {
    if opts.is_null() || !opts.is_aligned() {
        return;
    }
    // SAFETY: non-null and aligned; the caller provides a whole struct.
    unsafe { opts.write(shmq_send_options::default()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip() {
        let o = shmq_options::default();
        assert_eq!(o.engine_options("t").unwrap(), Options::default());
    }

    #[test]
    fn a_short_struct_takes_defaults_for_the_rest() {
        // `participant_capacity` lies past `size`: ignored.
        let mut o = shmq_options {
            size: OPTIONS_V1 as u32,
            capacity: 7,
            participant_capacity: 3,
            ..Default::default()
        };
        // SAFETY: `o` is a whole, aligned struct.
        let got = unsafe { read_options(&o, "t") }.unwrap();
        assert_eq!(got.capacity, 7);
        assert_eq!(
            got.participant_capacity,
            Options::default().participant_capacity
        );
        o.size = 3;
        // SAFETY: as above.
        assert!(unsafe { read_options(&o, "t") }.is_err());
    }

    #[test]
    fn the_group_is_used_only_with_its_flag() {
        let mut o = shmq_options {
            group: 42,
            ..Default::default()
        };
        assert_eq!(o.engine_options("t").unwrap().group, None);
        o.flags |= SHMQ_FLAG_SET_GROUP;
        assert_eq!(o.engine_options("t").unwrap().group, Some(42));
    }

    #[test]
    fn open_options_are_read_totally() {
        // SAFETY: NULL means the defaults.
        let d = unsafe { read_open_options(std::ptr::null(), "t") }.unwrap();
        assert_eq!(d, OpenOptions::default());
        let mut o = shmq_open_options {
            access: SHMQ_ACCESS_READ_ONLY,
            flags: SHMQ_OPEN_GROUP_SHARED | SHMQ_OPEN_TRUST_ANY_OWNER,
            ..Default::default()
        };
        // SAFETY: a whole, aligned struct.
        let got = unsafe { read_open_options(&o, "t") }.unwrap();
        assert_eq!(got.access, Access::ReadOnly);
        assert!(got.group_shared && got.trust_any_owner);
        o.access = 7;
        // SAFETY: as above.
        assert!(unsafe { read_open_options(&o, "t") }.is_err());
        o.access = SHMQ_ACCESS_INSPECT;
        o.flags = 0x10;
        // SAFETY: as above.
        assert!(unsafe { read_open_options(&o, "t") }.is_err());
    }
}
