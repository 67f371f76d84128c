//! The header's format step and its reading at open, before an engine
//! exists: the creator writes the parameters and options, then publishes
//! the magic number once the rest of the file is formatted; an opener
//! waits for the magic, then reads the parameters, the protocol's settings
//! and the modes. Nothing read here is trusted: the layout checks the
//! parameters, and the settings are clamped.

use super::Config;
use crate::format::{self, hdr, Layout};
use crate::memory::{Loads, Memory};
use crate::options::{Options, WaitStrategy};
use crate::sync::Ordering;

/// Writes the header of a new file: the layout's words, then the options,
/// the creation time, the checksum, the file's random id and the boot id. The magic number comes
/// later ([`publish_magic`]), once the rest of the file is formatted.
pub fn write_header<M: Memory>(
    mem: &M,
    layout: &Layout,
    opts: &Options,
    flags: u64,
    created_unix_ns: u64,
    file_id: u64,
    boot_id: [u64; 2],
) {
    // Relaxed stores: nobody else reads the file until the magic number
    // is stored with release ordering (`publish_magic`).
    let put = |off: usize, v: u64| mem.u64_at(off).store(v, Ordering::Relaxed);
    for (off, v) in layout.header_words() {
        put(off, v);
    }
    put(
        hdr::LEASE_NS,
        opts.lease.as_nanos().min(u64::MAX as u128) as u64,
    );
    put(hdr::MAX_DELIVERIES, opts.max_deliveries as u64);
    put(hdr::FLAGS, flags);
    put(hdr::WAIT_STRATEGY, opts.wait_strategy as u64);
    put(
        hdr::RESERVATION_TIMEOUT_NS,
        opts.reservation_timeout.as_nanos().min(u64::MAX as u128) as u64,
    );
    put(hdr::CREATED_UNIX_NS, created_unix_ns);
    put(
        hdr::MESSAGE_TTL_NS,
        opts.message_ttl.as_nanos().min(u64::MAX as u128) as u64,
    );
    put(
        hdr::CHECKSUM,
        format::header_checksum(&|off| header_word(mem, off)),
    );
    put(hdr::FILE_ID, file_id);
    put(hdr::BOOT_ID, boot_id[0]);
    put(hdr::BOOT_ID + 8, boot_id[1]);
}

/// Stores the magic number: the file is ready for others.
pub fn publish_magic<M: Memory>(mem: &M) {
    // Release: the header and the formatting before it are visible to
    // whoever sees the magic.
    mem.u64_at(hdr::MAGIC)
        .store(format::MAGIC, Ordering::Release);
}

/// Whether a creator has finished the file (its magic number is stored).
pub fn magic_published<M: Loads>(mem: &M) -> bool {
    // Acquire: pairs with the release of `publish_magic`, so the header
    // read after this is the creator's.
    mem.load_u64(hdr::MAGIC, Ordering::Acquire) != 0
}

/// One word of the header (for [`Layout::from_header`], which checks them).
pub fn header_word<M: Loads>(mem: &M, off: usize) -> u64 {
    // Relaxed: read after the acquire of `magic_published` (or by the
    // creator itself), and checked by the layout or clamped by the caller.
    mem.load_u64(off, Ordering::Relaxed)
}

/// The lease, delivery limit and reservation timeout stored in the header.
pub fn stored_config<M: Loads>(mem: &M) -> Config {
    Config {
        lease_ns: header_word(mem, hdr::LEASE_NS),
        max_deliveries: header_word(mem, hdr::MAX_DELIVERIES).min(u32::MAX as u64) as u32,
        reservation_timeout_ns: header_word(mem, hdr::RESERVATION_TIMEOUT_NS),
        message_ttl_ns: header_word(mem, hdr::MESSAGE_TTL_NS),
        expiry_drop: header_word(mem, hdr::FLAGS) & format::flags::EXPIRY_DROP != 0,
    }
}

/// Whether the queue is latest-only, and its wait strategy, as stored in
/// the header.
pub fn stored_modes<M: Loads>(mem: &M) -> (bool, WaitStrategy) {
    let latest_only = header_word(mem, hdr::FLAGS) & format::flags::LATEST_ONLY != 0;
    (
        latest_only,
        WaitStrategy::from_u64(header_word(mem, hdr::WAIT_STRATEGY)),
    )
}

/// The header flags of a new queue with these options.
pub fn flags_of(latest_only: bool, expiry_drop: bool) -> u64 {
    let mut f = 0;
    if latest_only {
        f |= format::flags::LATEST_ONLY;
    }
    if expiry_drop {
        f |= format::flags::EXPIRY_DROP;
    }
    f
}
