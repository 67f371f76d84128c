//! Status codes, the thread-local last error, and the panic boundary.
//!
//! Every fallible C function runs its body through `call`: the body
//! returns a `Result`, an error is stored as this thread's last error and
//! turned into its status, and a panic is caught and reported as
//! `SHMQ_INTERNAL` instead of unwinding into C.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use engine::{Error, Status};

/// The outcome of a call. The values are stable; new ones are only appended.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum shmq_status {
    /// Success.
    SHMQ_OK = 0,
    /// The queue is full and the call was not allowed to wait.
    SHMQ_FULL = 1,
    /// Nothing is claimable and the call was not allowed to wait.
    SHMQ_EMPTY = 2,
    /// The call waited for its whole timeout.
    SHMQ_TIMEOUT = 3,
    /// The payload is larger than the queue's max_message_size (or a buffer
    /// is too small for a payload).
    SHMQ_TOO_LARGE = 4,
    /// The claim is no longer held: its lease expired, it was redelivered,
    /// or its outcome was already given.
    SHMQ_LEASE_LOST = 5,
    /// The reservation was abandoned before its commit: nothing was sent,
    /// the caller may retry.
    SHMQ_ABANDONED = 6,
    /// A keyed send found no free entry in the key table.
    SHMQ_KEYS_FULL = 7,
    /// A keyed send's version is not newer than the key's last acked
    /// version: nothing was queued.
    SHMQ_STALE = 8,
    /// An argument is invalid (NULL pointer, bad length, unknown flag,
    /// forged token...).
    SHMQ_INVALID_ARGUMENT = 9,
    /// The file, the reservation or the dead letter does not exist.
    SHMQ_NOT_FOUND = 10,
    /// The file already exists.
    SHMQ_EXISTS = 11,
    /// The file is a queue of another format version or layout.
    SHMQ_INCOMPATIBLE = 12,
    /// The file breaks an invariant of the format, or was truncated while
    /// mapped.
    SHMQ_CORRUPT = 13,
    /// Access refused: by the operating system, by the checks on the file
    /// (not a regular file, another owner, writable by others), or because
    /// the handle is read-only.
    SHMQ_PERMISSION = 14,
    /// Another input/output error.
    SHMQ_IO = 15,
    /// A bug in shmq, e.g. a panic caught at the C boundary.
    SHMQ_INTERNAL = 16,
    /// The handle was closed (use after close), or is used by two threads
    /// at once.
    SHMQ_CLOSED = 17,
}

impl From<Status> for shmq_status {
    fn from(s: Status) -> shmq_status {
        match s {
            Status::Ok => shmq_status::SHMQ_OK,
            Status::Full => shmq_status::SHMQ_FULL,
            Status::Empty => shmq_status::SHMQ_EMPTY,
            Status::Timeout => shmq_status::SHMQ_TIMEOUT,
            Status::TooLarge => shmq_status::SHMQ_TOO_LARGE,
            Status::LeaseLost => shmq_status::SHMQ_LEASE_LOST,
            Status::Abandoned => shmq_status::SHMQ_ABANDONED,
            Status::KeysFull => shmq_status::SHMQ_KEYS_FULL,
            Status::Stale => shmq_status::SHMQ_STALE,
            Status::InvalidArgument => shmq_status::SHMQ_INVALID_ARGUMENT,
            Status::NotFound => shmq_status::SHMQ_NOT_FOUND,
            Status::Exists => shmq_status::SHMQ_EXISTS,
            Status::Incompatible => shmq_status::SHMQ_INCOMPATIBLE,
            Status::Corrupt => shmq_status::SHMQ_CORRUPT,
            Status::Permission => shmq_status::SHMQ_PERMISSION,
            Status::Io => shmq_status::SHMQ_IO,
            Status::Internal => shmq_status::SHMQ_INTERNAL,
            Status::Closed => shmq_status::SHMQ_CLOSED,
        }
    }
}

/// Names of the statuses, NUL-terminated, in code order.
const NAMES: [&CStr; 18] = [
    c"SHMQ_OK",
    c"SHMQ_FULL",
    c"SHMQ_EMPTY",
    c"SHMQ_TIMEOUT",
    c"SHMQ_TOO_LARGE",
    c"SHMQ_LEASE_LOST",
    c"SHMQ_ABANDONED",
    c"SHMQ_KEYS_FULL",
    c"SHMQ_STALE",
    c"SHMQ_INVALID_ARGUMENT",
    c"SHMQ_NOT_FOUND",
    c"SHMQ_EXISTS",
    c"SHMQ_INCOMPATIBLE",
    c"SHMQ_CORRUPT",
    c"SHMQ_PERMISSION",
    c"SHMQ_IO",
    c"SHMQ_INTERNAL",
    c"SHMQ_CLOSED",
];
const _: () = assert!(NAMES.len() == Status::ALL.len());

thread_local! {
    /// The detail of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Whether `text` is already `"NAME: MESSAGE"`, compared in place.
fn same_text(text: &[u8], name: &str, message: &str) -> bool {
    text.len() == name.len() + 2 + message.len()
        && text.starts_with(name.as_bytes())
        && text[name.len()..].starts_with(b": ")
        && text.ends_with(message.as_bytes())
}

/// Stores `e` as this thread's last error.
pub(crate) fn set_last_error(e: &Error) {
    // A consumer polling an empty queue (or a producer a full one) fails
    // the same way call after call: the text is already there, so the
    // polling path neither formats nor allocates.
    let unchanged = LAST_ERROR
        .try_with(|slot| same_text(slot.borrow().as_bytes(), e.status().name(), e.message()))
        .unwrap_or(false);
    if unchanged {
        return;
    }
    let text = format!("{}: {}", e.status().name(), e.message());
    // An interior NUL cannot come from shmq's messages, but a path can hold
    // anything: cut there rather than lose the whole message.
    let bytes: Vec<u8> = text
        .into_bytes()
        .into_iter()
        .take_while(|b| *b != 0)
        .collect();
    let c = CString::new(bytes).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; the status
    // still reaches the caller.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

/// An `InvalidArgument` error naming the operation and the cause.
pub(crate) fn invalid(op: &str, cause: impl std::fmt::Display) -> Error {
    Error::new(Status::InvalidArgument, format!("{op}: {cause}"))
}

/// Runs `body` behind the panic boundary and turns its result into a
/// status, storing the error as the last error.
pub(crate) fn call(op: &'static str, body: impl FnOnce() -> Result<(), Error>) -> shmq_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => shmq_status::SHMQ_OK,
        Ok(Err(e)) => {
            set_last_error(&e);
            e.status().into()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&Error::new(
                Status::Internal,
                format!("{op}: internal error (a bug in shmq, please report): panic: {what}"),
            ));
            shmq_status::SHMQ_INTERNAL
        }
    }
}

/// The name of a status (`"SHMQ_FULL"`), or `"SHMQ_UNKNOWN"` for a value
/// that is no status. The value is read as an integer, so any value is safe.
///
/// Thread safety: any thread. The string is static: never free it.
#[no_mangle]
pub extern "C" fn shmq_status_name(s: c_int) -> *const c_char {
    match Status::from_code(s as i64) {
        Some(st) => NAMES[st as usize].as_ptr(),
        None => c"SHMQ_UNKNOWN".as_ptr(),
    }
}

/// The detail of the last failed call on this thread: the status name, the
/// file, the operation and the cause, e.g.
/// `"FULL: /dev/shm/orders: send: the queue is full"`. An empty string if
/// no call has failed on this thread yet. Successful calls leave it as it is.
///
/// Thread safety: thread-local, any thread. Ownership: owned by shmq; valid
/// until the next failing shmq call on the same thread. Never free it.
#[no_mangle]
pub extern "C" fn shmq_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The ABI version of the loaded library; compare it with
/// `SHMQ_ABI_VERSION` from the header you compiled against.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn shmq_abi_version() -> u32 {
    super::SHMQ_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_engine() {
        for s in Status::ALL {
            assert_eq!(shmq_status::from(s) as i32, s as i32);
            // SAFETY: shmq_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(shmq_status_name(s as c_int)) };
            assert_eq!(name.to_str().unwrap(), format!("SHMQ_{}", s.name()));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmq_status_name(-3)) };
        assert_eq!(unknown.to_str().unwrap(), "SHMQ_UNKNOWN");
    }

    #[test]
    fn panics_become_internal() {
        let st = call("shmq_test", || panic!("boom"));
        assert_eq!(st, shmq_status::SHMQ_INTERNAL);
        // SAFETY: shmq_last_error returns a valid NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(shmq_last_error()) };
        assert!(msg.to_str().unwrap().contains("shmq_test"));
        assert!(msg.to_str().unwrap().contains("boom"));
    }

    #[test]
    fn a_repeated_error_keeps_its_text_in_place() {
        let empty = Error::new(Status::Empty, "/dev/shm/q: claim: nothing is claimable");
        assert_eq!(call("t", || Err(empty.clone())), shmq_status::SHMQ_EMPTY);
        let first = shmq_last_error();
        assert_eq!(call("t", || Err(empty.clone())), shmq_status::SHMQ_EMPTY);
        // The same text, not built again: the same allocation.
        assert_eq!(shmq_last_error(), first);
        // SAFETY: shmq_last_error returns a valid NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(first) };
        assert_eq!(
            msg.to_str().unwrap(),
            "EMPTY: /dev/shm/q: claim: nothing is claimable"
        );
        let full = Error::new(Status::Full, "/dev/shm/q: claim: nothing is claimable");
        assert_eq!(call("t", || Err(full)), shmq_status::SHMQ_FULL);
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(shmq_last_error()) };
        assert!(msg.to_str().unwrap().starts_with("FULL: "));
    }
}
