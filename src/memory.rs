//! The memory a queue lives in: a shared mapping of the queue file, or heap
//! memory for property tests and (as loom atomics) for model checking.
//!
//! The protocol in [`crate::ring`] only ever touches memory through this
//! trait, as atomics or as byte copies, so it never forms a `&[u8]` or `&T`
//! over bytes another process may write.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Memory holding a queue: 8-byte words addressed by byte offset.
///
/// Callers pass offsets computed from a validated [`crate::layout::Layout`];
/// implementations still check bounds, so a bug can fail loudly but never
/// reads outside the region.
pub trait Memory {
    /// Size in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The 8-byte word at `offset` (8-aligned).
    fn u64_at(&self, offset: usize) -> &AtomicU64;
    /// The 4-byte word at `offset` (4-aligned), used for futexes.
    fn u32_at(&self, offset: usize) -> &AtomicU32;
    /// Copies `src` to `offset`. The caller owns those bytes (a reserved slot).
    fn write_bytes(&self, offset: usize, src: &[u8]);
    /// Copies bytes at `offset` into `dst`. The bytes may change concurrently
    /// if another process misbehaves; the copy is then torn but never unsound.
    fn read_bytes(&self, offset: usize, dst: &mut [u8]);
    /// A raw pointer to `offset`, for zero-copy access by callers that own
    /// the bytes; `None` where the memory is not plain bytes (loom).
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8>;
}

/// Plain memory given by a base pointer and a length: a mapping, or a heap
/// buffer for tests.
#[cfg(not(shmq_loom))]
pub struct RawMemory {
    base: *mut u8,
    len: usize,
}

#[cfg(not(shmq_loom))]
impl RawMemory {
    /// Wraps `len` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be 8-aligned and valid for reads and writes of `len` bytes
    /// for the life of the value, and may be shared only with code that
    /// accesses it through atomics or byte copies.
    pub unsafe fn new(base: *mut u8, len: usize) -> RawMemory {
        debug_assert_eq!(base as usize % 8, 0);
        RawMemory { base, len }
    }

    #[inline]
    fn check(&self, offset: usize, size: usize, align: usize) {
        assert!(
            offset % align == 0 && offset <= self.len && size <= self.len - offset,
            "shmq internal error: access of {size} bytes at {offset} outside a region of {}",
            self.len
        );
    }
}

#[cfg(not(shmq_loom))]
impl Memory for RawMemory {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked above, base is 8-aligned);
        // every access to shared words goes through atomics, so the aliasing
        // rules of `AtomicU64::from_ptr` hold.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast::<u64>()) }
    }

    #[inline]
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: as for `u64_at`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast::<u32>()) }
    }

    #[inline]
    fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        // SAFETY: in bounds; the caller owns the destination bytes (a reserved
        // slot) and `src` is private memory, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(offset), src.len()) }
    }

    #[inline]
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        // SAFETY: in bounds; `dst` is private memory. A concurrent writer can
        // only make the copy torn, which callers detect by re-checking the
        // slot word after the copy.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(offset), dst.as_mut_ptr(), dst.len()) }
    }

    #[inline]
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked).
        Some(unsafe { self.base.add(offset) })
    }
}

// SAFETY: the memory is only accessed through atomics and byte copies, which
// are sound from any thread.
#[cfg(not(shmq_loom))]
unsafe impl Send for RawMemory {}
// SAFETY: as above.
#[cfg(not(shmq_loom))]
unsafe impl Sync for RawMemory {}

/// Heap memory for tests: a zeroed, 8-aligned buffer that lives as long as
/// the value.
#[cfg(not(shmq_loom))]
pub struct HeapMemory {
    words: Box<[u64]>,
    raw: RawMemory,
}

#[cfg(not(shmq_loom))]
impl HeapMemory {
    /// `len` zeroed bytes (rounded up to whole words).
    pub fn new(len: usize) -> HeapMemory {
        let mut words = vec![0u64; len.div_ceil(8)].into_boxed_slice();
        let base = words.as_mut_ptr().cast::<u8>();
        // SAFETY: the box is 8-aligned, `len` bytes long at least, and lives
        // in this struct beside the RawMemory, which never outlives it.
        let raw = unsafe { RawMemory::new(base, len) };
        HeapMemory { words, raw }
    }

    /// Number of words, for tests that scribble.
    pub fn word_count(&self) -> usize {
        self.words.len()
    }
}

#[cfg(not(shmq_loom))]
impl Memory for HeapMemory {
    fn len(&self) -> usize {
        self.raw.len()
    }
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.raw.u64_at(offset)
    }
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.raw.u32_at(offset)
    }
    fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.raw.write_bytes(offset, src)
    }
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.raw.read_bytes(offset, dst)
    }
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        self.raw.byte_ptr(offset, len)
    }
}

/// Loom's memory: one loom atomic per 8-byte word; u32 futex words live in
/// their own table. Byte copies go word by word.
#[cfg(shmq_loom)]
pub struct LoomMemory {
    words: Vec<AtomicU64>,
    words32: Vec<AtomicU32>,
}

#[cfg(shmq_loom)]
impl LoomMemory {
    /// `len` zeroed bytes.
    pub fn new(len: usize) -> LoomMemory {
        LoomMemory {
            words: (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
            words32: (0..len.div_ceil(8)).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

#[cfg(shmq_loom)]
impl Memory for LoomMemory {
    fn len(&self) -> usize {
        self.words.len() * 8
    }
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert_eq!(offset % 8, 0);
        &self.words[offset / 8]
    }
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert_eq!(offset % 8, 0, "loom memory keeps u32 words 8-aligned");
        &self.words32[offset / 8]
    }
    fn write_bytes(&self, offset: usize, src: &[u8]) {
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: payload bytes are published by the commit CAS.
            self.words[offset / 8 + i].store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            // Relaxed: ordered by the acquire load of the slot word.
            let b = self.words[offset / 8 + i]
                .load(Ordering::Relaxed)
                .to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
    fn byte_ptr(&self, _offset: usize, _len: usize) -> Option<*mut u8> {
        None
    }
}

/// Reads a u64 word with relaxed ordering: for immutable header fields and
/// for snapshots whose staleness is acceptable.
#[inline]
pub fn load_relaxed<M: Memory + ?Sized>(m: &M, offset: usize) -> u64 {
    m.u64_at(offset).load(Ordering::Relaxed)
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;

    #[test]
    fn words_and_bytes_round_trip() {
        let m = HeapMemory::new(64);
        m.u64_at(8).store(7, Ordering::Relaxed);
        assert_eq!(load_relaxed(&m, 8), 7);
        m.write_bytes(16, b"hello");
        let mut out = [0u8; 5];
        m.read_bytes(16, &mut out);
        assert_eq!(&out, b"hello");
        m.u32_at(40).store(3, Ordering::Relaxed);
        assert_eq!(m.u32_at(40).load(Ordering::Relaxed), 3);
    }

    #[test]
    #[should_panic(expected = "outside a region")]
    fn out_of_bounds_is_caught() {
        let m = HeapMemory::new(64);
        m.u64_at(64);
    }
}
