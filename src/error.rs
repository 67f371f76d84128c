//! Errors: the stable status codes shared with the C ABI, and an error value
//! that carries a message naming the file, the operation and the cause.

use std::fmt;

/// The outcome of an operation. The numeric values are part of the C ABI
/// (`shmq_status`) and never change; new codes are only appended.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The queue is full and the call was not allowed to wait.
    Full = 1,
    /// Nothing is claimable and the call was not allowed to wait.
    Empty = 2,
    /// The call waited for its whole timeout.
    Timeout = 3,
    /// The payload is larger than the queue's `max_message_size`.
    TooLarge = 4,
    /// The claim named by the token is no longer held (lease expired, the
    /// message was redelivered, or the outcome was already given).
    LeaseLost = 5,
    /// The reservation was abandoned before it was committed: nothing was
    /// sent, the caller may retry.
    Abandoned = 6,
    /// A keyed send found no free entry in the key table.
    KeysFull = 7,
    /// A keyed send carried a version that is not newer than the key's last
    /// acked version; nothing was queued.
    Stale = 8,
    /// An argument is invalid (null pointer, wrong length, bad option...).
    InvalidArgument = 9,
    /// The file or the dead letter does not exist.
    NotFound = 10,
    /// The file already exists.
    Exists = 11,
    /// The file is a queue of another format version or layout.
    Incompatible = 12,
    /// The file's contents break an invariant of the format, or the file
    /// was truncated while mapped.
    Corrupt = 13,
    /// Access refused: by the operating system, by the checks on the file
    /// (not a regular file, another owner, writable by others; see
    /// [`OpenOptions`](crate::OpenOptions)), or because the handle is
    /// read-only.
    Permission = 14,
    /// Another input/output error.
    Io = 15,
    /// A bug in shmq (for example a panic caught at the C boundary).
    Internal = 16,
    /// The handle was closed, or is used by two threads at once (C ABI).
    Closed = 17,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 18] = [
        Status::Ok,
        Status::Full,
        Status::Empty,
        Status::Timeout,
        Status::TooLarge,
        Status::LeaseLost,
        Status::Abandoned,
        Status::KeysFull,
        Status::Stale,
        Status::InvalidArgument,
        Status::NotFound,
        Status::Exists,
        Status::Incompatible,
        Status::Corrupt,
        Status::Permission,
        Status::Io,
        Status::Internal,
        Status::Closed,
    ];

    /// The stable upper-case name, as in the C header (`SHMQ_` omitted).
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Full => "FULL",
            Status::Empty => "EMPTY",
            Status::Timeout => "TIMEOUT",
            Status::TooLarge => "TOO_LARGE",
            Status::LeaseLost => "LEASE_LOST",
            Status::Abandoned => "ABANDONED",
            Status::KeysFull => "KEYS_FULL",
            Status::Stale => "STALE",
            Status::InvalidArgument => "INVALID_ARGUMENT",
            Status::NotFound => "NOT_FOUND",
            Status::Exists => "EXISTS",
            Status::Incompatible => "INCOMPATIBLE",
            Status::Corrupt => "CORRUPT",
            Status::Permission => "PERMISSION",
            Status::Io => "IO",
            Status::Internal => "INTERNAL",
            Status::Closed => "CLOSED",
        }
    }

    /// Converts an integer received from C totally: unknown values are `None`.
    pub fn from_code(code: i64) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i64 == code)
    }
}

/// An error: a status and a human message naming the file, the operation and
/// the cause.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    /// Shared, so that the errors of normal flow (`Empty`, `Full`), which a
    /// polling caller meets at every poll, are built once per handle.
    message: std::sync::Arc<str>,
}

impl Error {
    /// A new error with its status and message.
    pub fn new(status: Status, message: impl Into<std::sync::Arc<str>>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// An error from the operating system, mapped to the closest status.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        let status = match err.kind() {
            std::io::ErrorKind::NotFound => Status::NotFound,
            std::io::ErrorKind::AlreadyExists => Status::Exists,
            std::io::ErrorKind::PermissionDenied => Status::Permission,
            _ => Status::Io,
        };
        Error::new(status, format!("{context}: {err}"))
    }

    /// The status code.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_total() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Status::from_code(i as i64), Some(*s));
        }
        assert_eq!(Status::from_code(-1), None);
        assert_eq!(Status::from_code(1000), None);
    }
}
