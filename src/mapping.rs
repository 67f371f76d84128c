//! The shared mapping of a queue file.
//!
//! Owns the `mmap` of one open queue file: read-write for a handle that may
//! change the queue ([`Mapping`], which is [`Memory`]), `PROT_READ` for a
//! read-only one ([`ReadOnlyMapping`], which is only [`Loads`]: no code
//! holding one can store into it), and its registration
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
use crate::memory::{Loads, Memory, RawLoads, RawMemory};
use crate::sigbus::{self, Registration};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A file mapped and registered with the `SIGBUS` handler.
struct Mapped {
    /// Declared first so that it drops first: the range is unregistered
    /// before `map` unmaps it.
    guard: Registration,
    map: memmap2::MmapRaw,
}

impl Mapped {
    /// Maps the first `len` bytes of `file` (opened read-write when
    /// `writable`, else at least for reading) and registers them with the
    /// `SIGBUS` handler.
    fn new(file: &File, len: usize, path: &Path, writable: bool) -> Result<Mapped> {
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
        // SAFETY: `map` is a mapping of `len` bytes that this value owns and
        // that outlives the registration (`guard` is declared, so dropped,
        // first).
        let guard = unsafe { sigbus::register(map.as_ptr(), len, writable) };
        Ok(Mapped { guard, map })
    }
}

/// The read-write shared mapping of a queue file.
pub struct Mapping {
    /// Points into `mapped`, which lives as long as it.
    mem: RawMemory,
    /// Shared with whatever must keep the pages mapped beyond the handle's
    /// own use of them ([`Mapping::keep_alive`]): unmapped when the last
    /// holder drops it.
    mapped: std::sync::Arc<Mapped>,
}

/// Keeps a read-write mapping mapped while it lives (see
/// [`Mapping::keep_alive`]): the async waker holds one for every futex word
/// it waits on, so the word's page cannot be unmapped under it.
#[derive(Clone)]
pub struct KeepAlive(#[allow(dead_code)] std::sync::Arc<Mapped>);

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive")
    }
}

impl Mapping {
    /// Maps the first `len` bytes of `file` (opened read-write) read-write
    /// and registers them with the `SIGBUS` handler. A file this process
    /// may only read is mapped as a [`ReadOnlyMapping`].
    pub fn new(file: &File, len: usize, path: &Path) -> Result<Mapping> {
        let mapped = Mapped::new(file, len, path, true)?;
        // SAFETY: the mapping is page-aligned, `len` bytes long, readable
        // and writable (mapped read-write above), and lives in the same
        // struct as the RawMemory that points into it; other processes
        // access it only through atomics and byte copies.
        let mem = unsafe { RawMemory::new(mapped.map.as_mut_ptr(), len) };
        Ok(Mapping {
            mem,
            mapped: std::sync::Arc::new(mapped),
        })
    }

    /// What keeps these pages mapped, for as long as the holder needs an
    /// address inside them to stay valid after the handle is gone.
    pub fn keep_alive(&self) -> KeepAlive {
        KeepAlive(self.mapped.clone())
    }

    /// Whether the file shrank under the mapping: pages were replaced with
    /// zeros and nothing read from the mapping since can be trusted to be
    /// the file's. One relaxed load of process memory.
    #[inline]
    pub fn broken(&self) -> bool {
        self.mapped.guard.broken()
    }

    /// Writes dirty pages back to the file (`msync`).
    pub fn flush(&self) -> io::Result<()> {
        self.mapped.map.flush()
    }
}

/// The read-only (`PROT_READ`) shared mapping of a queue file: it only
/// loads, so nothing can write through it.
pub struct ReadOnlyMapping {
    /// Points into `mapped`, which lives as long as it.
    mem: RawLoads,
    mapped: Mapped,
}

impl ReadOnlyMapping {
    /// Maps the first `len` bytes of `file` (opened at least for reading)
    /// `PROT_READ` and registers them with the `SIGBUS` handler.
    pub fn new(file: &File, len: usize, path: &Path) -> Result<ReadOnlyMapping> {
        let mapped = Mapped::new(file, len, path, false)?;
        // SAFETY: the mapping is page-aligned, `len` bytes long, readable,
        // and lives in the same struct as the RawLoads that points into it;
        // other processes write it only through atomics and byte copies.
        let mem = unsafe { RawLoads::new(mapped.map.as_ptr(), len) };
        Ok(ReadOnlyMapping { mem, mapped })
    }

    /// Whether the file shrank under the mapping (see [`Mapping::broken`]).
    #[inline]
    pub fn broken(&self) -> bool {
        self.mapped.guard.broken()
    }
}

/// The loads of a mapping, passed on to its memory.
macro_rules! loads_of_mem {
    () => {
        #[inline]
        fn len(&self) -> usize {
            self.mem.len()
        }
        #[inline]
        fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
            self.mem.load_u64(offset, order)
        }
        #[inline]
        unsafe fn load_u64_unchecked(&self, offset: usize, order: Ordering) -> u64 {
            // SAFETY: the caller's guarantee, passed on.
            unsafe { self.mem.load_u64_unchecked(offset, order) }
        }
        #[inline]
        fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
            self.mem.load_u32(offset, order)
        }
        #[inline]
        fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
            self.mem.read_bytes(offset, dst)
        }
    };
}

impl Loads for Mapping {
    loads_of_mem!();
}

impl Loads for ReadOnlyMapping {
    loads_of_mem!();
}

impl Memory for Mapping {
    #[inline]
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.mem.u64_at(offset)
    }
    #[inline]
    unsafe fn u64_at_unchecked(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.mem.u64_at_unchecked(offset) }
    }
    #[inline]
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.mem.u32_at(offset)
    }
    #[inline]
    unsafe fn write_bytes(&self, offset: usize, src: &[u8]) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.mem.write_bytes(offset, src) }
    }
    #[inline]
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        self.mem.byte_ptr(offset, len)
    }
}
