//! The checks every operation runs before it touches the mapping (attached,
//! writable, not forked, file not truncated) and again before it reports
//! success, and the errors they build, naming the file and the operation.

use super::{Mapping, Queue, Store};
use crate::error::{Error, Result, Status};
use crate::metrics::Counter;
use crate::ring::Engine;
use crate::sys;

/// The cause given by every operation on a queue whose file shrank under
/// its mapping (see [`crate::sigbus`]).
pub(super) const TRUNCATED: &str =
    "file was truncated while mapped (pages past its new end read as zeros); \
                         the queue cannot be trusted any more: recreate it";

impl Queue {
    /// Our participant index and the read-write engine, after the checks
    /// of every operation that changes the queue ([`Queue::writer`]). The
    /// checks are three loads of handle memory; the errors are built out
    /// of line.
    #[inline(always)]
    pub(super) fn me(&self, op: &str) -> Result<(u64, &Engine<Mapping>)> {
        match (self.me, &self.store) {
            (Some(me), Store::Write(e)) if !e.broken() && !self.inherited() => Ok((me, e)),
            _ => Err(self.not_me(op)),
        }
    }

    /// Whether this handle was copied into this process by `fork()` (one
    /// load of a process-wide word; see [`sys::current_pid`]). Such a handle
    /// is its parent's participant: it refuses every operation, and
    /// dropping it leaves the file alone.
    #[inline(always)]
    fn inherited(&self) -> bool {
        self.pid != sys::current_pid()
    }

    #[cold]
    #[inline(never)]
    fn forked_err(&self, op: &str) -> Error {
        Error::new(
            Status::InvalidArgument,
            format!(
                "{}: {op}: the queue handle was opened by process {} before fork(): a forked \
                 child must open its own handle (dropping this one in the child leaves the \
                 queue alone)",
                self.path.display(),
                self.pid
            ),
        )
    }

    #[cold]
    #[inline(never)]
    fn not_me(&self, op: &str) -> Error {
        if let Err(e) = self.writer(op) {
            return e;
        }
        Error::new(
            Status::InvalidArgument,
            format!(
                "{}: {op}: this handle was opened for inspection only",
                self.path.display()
            ),
        )
    }

    /// The read-write engine, which every operation that changes the queue
    /// goes through: `Permission` on a read-only handle (its engine only
    /// loads), `Corrupt` on a broken one.
    #[inline(always)]
    pub(super) fn writer(&self, op: &str) -> Result<&Engine<Mapping>> {
        match &self.store {
            Store::Write(e) => {
                self.intact(op)?;
                Ok(e)
            }
            Store::Read(_) => Err(self.read_only_err(op)),
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn read_only_err(&self, op: &str) -> Error {
        Error::new(
            Status::Permission,
            format!(
                "{}: {op}: this handle is read-only (opened read-only, or this process \
                 may not write the file): it cannot change the queue",
                self.path.display()
            ),
        )
    }

    /// `Corrupt` once the file shrank under the mapping. One relaxed load
    /// of process memory: checked when an operation starts and again before
    /// it reports success, since the fault may hit in between.
    #[inline(always)]
    pub(super) fn intact(&self, op: &str) -> Result<()> {
        if self.inherited() {
            return Err(self.forked_err(op));
        }
        if self.store.broken() {
            return Err(self.truncated_err(op));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn truncated_err(&self, op: &str) -> Error {
        Error::new(
            Status::Corrupt,
            format!("{}: {op}: {}", self.path.display(), self.broken_cause()),
        )
    }

    /// `r`, or `Corrupt` if the file shrank under the mapping while the
    /// operation ran: whatever it read or wrote may have been zero pages,
    /// so neither its success nor its error (`Full`, `Empty`, `LeaseLost`,
    /// ...) can be trusted.
    #[inline]
    pub(super) fn checked<T>(&self, op: &str, r: Result<T>) -> Result<T> {
        match self.intact(op) {
            Ok(()) => r,
            Err(e) => Err(e),
        }
    }

    /// `Corrupt` when the file was truncated while mapped, naming the file
    /// and `op`; for callers of the calls that cannot fail.
    pub fn check_intact(&self, op: &str) -> Result<()> {
        self.intact(op)
    }

    pub(super) fn err(&self, op: &str, e: Error) -> Error {
        Error::new(
            e.status(),
            format!("{}: {op}: {}", self.path.display(), e.message()),
        )
    }

    /// Prefixes an error with the file and operation unless it already is.
    pub(super) fn err_once(&self, op: &str, e: Error) -> Error {
        let prefix = format!("{}: ", self.path.display());
        if e.message().starts_with(&prefix) {
            e
        } else {
            self.err(op, e)
        }
    }

    /// An error of a keyed operation, named once ([`Queue::err_once`]); a
    /// version refused as stale is counted.
    pub(super) fn keyed_err(&self, op: &str, e: Error) -> Error {
        if e.status() == Status::Stale {
            self.count(Counter::Stale, 1);
        }
        self.err_once(op, e)
    }

    #[inline(always)]
    pub(super) fn check_len(&self, len: usize, op: &str) -> Result<()> {
        if len as u64 > self.file_layout().params.max_message_size {
            return Err(self.too_large(len, op));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self, len: usize, op: &str) -> Error {
        let max = self.file_layout().params.max_message_size;
        Error::new(
            Status::TooLarge,
            format!(
                "{}: {op}: {len} bytes is more than max_message_size {max}",
                self.path.display()
            ),
        )
    }
}
