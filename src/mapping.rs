//! The shared mapping of a queue file.
//!
//! Owns the `mmap` of one open queue file: read-write for a handle that may
//! change the queue, `PROT_READ` for a read-only one, and its registration
//! with [`crate::sigbus`] for the whole time it is mapped, so that a file
//! shrunk by another process turns into a *broken* mapping (zero pages and
//! a flag) instead of a `SIGBUS` that kills the process.
//!
//! The size is fixed when the file is mapped (the size validated against
//! the header's parameters at open, or the size the creator gave it): a file
//! grown later by another process is not seen, its new pages are simply not
//! mapped.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::memory::{Memory, RawMemory};
use crate::sigbus::{self, Registration};

/// The shared mapping of a queue file.
pub struct Mapping {
    /// Declared first so that it drops first: the range is unregistered
    /// before `map` unmaps it.
    guard: Registration,
    map: memmap2::MmapRaw,
    mem: RawMemory,
    writable: bool,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` (opened read-write when
    /// `writable`, else at least for reading) and registers them with the
    /// `SIGBUS` handler.
    pub fn new(file: &File, len: usize, path: &Path, writable: bool) -> Result<Mapping> {
        let mut opts = memmap2::MmapOptions::new();
        opts.len(len);
        let map = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        }
        .map_err(|e| {
            Error::io(
                format!(
                    "{}: mapping {len} bytes {}",
                    path.display(),
                    if writable { "read-write" } else { "read-only" }
                ),
                e,
            )
        })?;
        // Registered before anything reads the mapping: the file may already
        // be shorter than `len` (truncated since its size was read).
        let guard = sigbus::register(map.as_ptr(), len, writable);
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives
        // in the same struct as the RawMemory that points into it. A
        // read-only mapping is never written through: the queue refuses
        // every operation that changes the queue on a read-only handle
        // before it touches the mapping (`Queue::me`), so RawMemory's write
        // paths are never reached for it.
        let mem = unsafe { RawMemory::new(map.as_mut_ptr(), len) };
        Ok(Mapping {
            guard,
            map,
            mem,
            writable,
        })
    }

    /// Whether the mapping allows writes.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the file shrank under the mapping: pages were replaced with
    /// zeros and nothing read from the mapping since can be trusted to be
    /// the file's. One relaxed load of process memory.
    #[inline]
    pub fn broken(&self) -> bool {
        self.guard.broken()
    }

    /// Writes dirty pages back to the file (`msync`).
    pub fn flush(&self) -> io::Result<()> {
        if self.writable {
            self.map.flush()
        } else {
            Ok(())
        }
    }
}

impl Memory for Mapping {
    #[inline]
    fn len(&self) -> usize {
        self.mem.len()
    }
    #[inline]
    fn u64_at(&self, offset: usize) -> &crate::sync::AtomicU64 {
        self.mem.u64_at(offset)
    }
    #[inline]
    unsafe fn u64_at_unchecked(&self, offset: usize) -> &crate::sync::AtomicU64 {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.mem.u64_at_unchecked(offset) }
    }
    #[inline]
    fn u32_at(&self, offset: usize) -> &crate::sync::AtomicU32 {
        self.mem.u32_at(offset)
    }
    #[inline]
    fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.mem.write_bytes(offset, src)
    }
    #[inline]
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.mem.read_bytes(offset, dst)
    }
    #[inline]
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        self.mem.byte_ptr(offset, len)
    }
}
