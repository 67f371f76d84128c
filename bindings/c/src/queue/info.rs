//! The calls on a queue as a whole: what it is (`shmq_info`,
//! `shmq_get_info`), and its check and upkeep (`shmq_verify`,
//! `shmq_recover`, `shmq_flush`).

use super::super::options::SHMQ_FLAG_LATEST_ONLY;
use super::super::options::{SHMQ_ACCESS_INSPECT, SHMQ_ACCESS_PARTICIPANT, SHMQ_ACCESS_READ_ONLY};
use super::super::status::shmq_status;
use engine::{Error, Status};

use super::lifecycle::check_out;
use super::owner::with_queue;
use super::shmq_queue;

/// What a queue is: fixed at creation.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmq_info {
    /// `sizeof(shmq_info)` of the caller: set it before the call.
    pub size: u32,
    /// Number of slots.
    pub capacity: u64,
    /// Largest payload in bytes.
    pub max_message_size: u32,
    /// Entries of the key table.
    pub key_capacity: u64,
    /// Default lease.
    pub lease_ns: u64,
    /// Failed deliveries before dead-lettering (0 = unlimited).
    pub max_deliveries: u32,
    /// `SHMQ_FLAG_*` bits.
    pub flags: u32,
    /// Records of the dead-letter area.
    pub dlq_capacity: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// How this handle is attached: `SHMQ_ACCESS_PARTICIPANT`,
    /// `SHMQ_ACCESS_INSPECT` (not attached, mapped read-write) or
    /// `SHMQ_ACCESS_READ_ONLY`.
    pub access: u32,
}

/// The size of the first published `shmq_info` (up to `file_size`): the
/// smallest `size` accepted.
const INFO_V1: usize = std::mem::offset_of!(shmq_info, file_size) + std::mem::size_of::<u64>();

/// Describes the queue: capacity, max_message_size and the other
/// parameters fixed at creation. Set `out->size = sizeof(shmq_info)` first.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle; `out` is NULL or a writable `shmq_info`.
#[no_mangle]
pub unsafe extern "C" fn shmq_get_info(q: *mut shmq_queue, out: *mut shmq_info) -> shmq_status {
    const OP: &str = "shmq_get_info";
    with_queue(q, OP, |inner| {
        check_out(out, OP).map_err(|e| inner.err(e))?;
        let queue = inner.queue();
        let l = queue.layout();
        let info = shmq_info {
            size: std::mem::size_of::<shmq_info>() as u32,
            capacity: l.params.capacity,
            max_message_size: l.params.max_message_size as u32,
            key_capacity: l.params.key_capacity,
            lease_ns: queue.lease().as_nanos() as u64,
            max_deliveries: queue.max_deliveries(),
            flags: if queue.latest_only() {
                SHMQ_FLAG_LATEST_ONLY
            } else {
                0
            },
            dlq_capacity: l.params.dlq_capacity,
            file_size: l.file_size as u64,
            access: if queue.read_only() {
                SHMQ_ACCESS_READ_ONLY
            } else if queue.participant().is_some() {
                SHMQ_ACCESS_PARTICIPANT
            } else {
                SHMQ_ACCESS_INSPECT
            },
        };
        // SAFETY: checked non-null and aligned; the caller's struct.
        unsafe { super::super::options::write_sized(out, &info, INFO_V1, OP, "shmq_info") }
            .map_err(|e| inner.err(e))
    })
}

/// Checks every invariant of the file. `SHMQ_OK` when it holds; otherwise
/// `SHMQ_CORRUPT`, with the problems listed in `shmq_last_error()`.
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_verify(q: *mut shmq_queue) -> shmq_status {
    with_queue(q, "shmq_verify", |inner| {
        let r = inner.queue().verify();
        if r.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                Status::Corrupt,
                format!(
                    "{}: shmq_verify: {}",
                    inner.path.display(),
                    r.problems.join("; ")
                ),
            ))
        }
    })
}

/// Cleans up after dead participants now: abandons their reservations and
/// redelivers their claims (also done by every handle as it goes).
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_recover(q: *mut shmq_queue) -> shmq_status {
    with_queue(q, "shmq_recover", |inner| {
        inner.queue().recover().map(|_| ())
    })
}

/// Flushes the mapping to the file (for queues on a persistent file system;
/// a queue in /dev/shm needs none and does not survive a reboot).
///
/// Thread safety: one thread at a time per handle.
///
/// # Safety
/// `q` is NULL or a handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_flush(q: *mut shmq_queue) -> shmq_status {
    with_queue(q, "shmq_flush", |inner| inner.queue().flush())
}
