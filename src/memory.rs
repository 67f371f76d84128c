//! The memory a queue lives in: a shared mapping of the queue file, or heap
//! memory for property tests and (as loom atomics) for model checking.
//!
//! The protocol in [`crate::engine`] only ever touches memory through these
//! traits, as atomics or as byte copies, so it never forms a `&[u8]` or `&T`
//! over bytes another process may write.
//!
//! Two traits, so that a read-only handle cannot write by construction:
//! [`Loads`] reads words and bytes (all a `PROT_READ` mapping offers), and
//! [`Memory`] adds the words as atomics (stores, compare-and-swap) and the
//! byte writes. A type that implements only [`Loads`] hands out no
//! `&AtomicU64`, so no code holding it can store into it.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Memory a queue can be read from: 8-byte words addressed by byte offset,
/// loaded with an ordering, and byte copies out of it.
///
/// Callers pass offsets computed from a validated [`crate::format::Layout`];
/// implementations still check bounds, so a bug can fail loudly but never
/// reads outside the region.
pub trait Loads {
    /// Size in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Loads the 8-byte word at `offset` (8-aligned) with `order` (a load
    /// ordering: `Relaxed`, `Acquire` or `SeqCst`).
    fn load_u64(&self, offset: usize, order: Ordering) -> u64;
    /// [`Loads::load_u64`] for a caller that proved the bounds once for
    /// many accesses (the engine's slot words: see `Engine::new`).
    /// Implementations may skip the check; the default keeps it.
    ///
    /// # Safety
    /// `offset` is 8-aligned and `offset + 8 <= self.len()`.
    #[inline]
    unsafe fn load_u64_unchecked(&self, offset: usize, order: Ordering) -> u64 {
        self.load_u64(offset, order)
    }
    /// Loads the 4-byte word at `offset` (4-aligned; futex words).
    fn load_u32(&self, offset: usize, order: Ordering) -> u32;
    /// Copies bytes at `offset` into `dst`. The bytes may change concurrently
    /// if another process misbehaves; the copy is then torn but never unsound.
    fn read_bytes(&self, offset: usize, dst: &mut [u8]);
}

/// Memory a queue can be changed in: [`Loads`], plus the words as atomics
/// and byte writes.
pub trait Memory: Loads {
    /// The 8-byte word at `offset` (8-aligned).
    fn u64_at(&self, offset: usize) -> &AtomicU64;
    /// The 8-byte word at `offset`, for a caller that proved the bounds once
    /// for many accesses (the engine's slot words: see `Engine::new`).
    /// Implementations may skip the check; the default keeps it.
    ///
    /// # Safety
    /// `offset` is 8-aligned and `offset + 8 <= self.len()`.
    #[inline]
    unsafe fn u64_at_unchecked(&self, offset: usize) -> &AtomicU64 {
        self.u64_at(offset)
    }
    /// The 4-byte word at `offset` (4-aligned), used for futexes.
    fn u32_at(&self, offset: usize) -> &AtomicU32;
    /// Copies `src` to `offset` (a plain, non-atomic copy; bounds are
    /// checked).
    ///
    /// # Safety
    /// No other thread or process reads or writes `offset..offset +
    /// src.len()` during the copy, other than with byte copies whose result
    /// it discards once it sees (through a slot or record word it loads
    /// afterwards) that the bytes changed: under the slot protocol, the
    /// caller owns the range (a slot it reserved, a replacement record or a
    /// dead-letter record it took) until a later release store or
    /// compare-and-swap publishes it.
    unsafe fn write_bytes(&self, offset: usize, src: &[u8]);
    /// A raw pointer to `offset`, for zero-copy access by callers that own
    /// the bytes; `None` where the memory is not plain bytes (loom). Using
    /// the pointer is the caller's `unsafe` and its contract.
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8>;
}

/// Checks that `size` bytes at `offset`, `align`-aligned, lie in a region
/// of `len` bytes; panics (an internal error) otherwise.
#[cfg(not(shmq_loom))]
#[inline]
fn check(len: usize, offset: usize, size: usize, align: usize) {
    assert!(
        offset % align == 0 && offset <= len && size <= len - offset,
        "shmq internal error: access of {size} bytes at {offset} outside a region of {len}"
    );
}

/// Plain memory given by a base pointer and a length that is only read: a
/// read-only mapping.
#[cfg(not(shmq_loom))]
pub struct RawLoads {
    base: *const u8,
    len: usize,
}

#[cfg(not(shmq_loom))]
impl RawLoads {
    /// Wraps `len` bytes at `base`, for reading.
    ///
    /// # Safety
    /// `base` must be 8-aligned and valid for reads of `len` bytes for the
    /// life of the value, and may be written (by anyone) only through
    /// atomics or byte copies.
    pub unsafe fn new(base: *const u8, len: usize) -> RawLoads {
        debug_assert_eq!(base as usize % 8, 0);
        RawLoads { base, len }
    }

    /// The word at `offset`, unchecked.
    ///
    /// # Safety
    /// `offset + size_of::<T>() <= self.len` and `offset` is aligned for `T`.
    #[inline]
    unsafe fn at<T>(&self, offset: usize) -> *mut T {
        // SAFETY: in bounds (the caller's guarantee).
        unsafe { self.base.add(offset).cast::<T>().cast_mut() }
    }
}

#[cfg(not(shmq_loom))]
impl Loads for RawLoads {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        check(self.len, offset, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked above).
        unsafe { self.load_u64_unchecked(offset, order) }
    }

    #[inline]
    unsafe fn load_u64_unchecked(&self, offset: usize, order: Ordering) -> u64 {
        debug_assert!(offset % 8 == 0 && offset <= self.len && 8 <= self.len - offset);
        // SAFETY: in bounds and aligned (the caller's guarantee); every
        // access to shared words goes through atomics, so the aliasing rules
        // of `AtomicU64::from_ptr` hold. The reference lives for this load
        // only and is only loaded through: a plain, lock-free atomic load,
        // which the standard library allows on read-only memory (see
        // "Atomic accesses to read-only memory" in `std::sync::atomic`).
        unsafe { AtomicU64::from_ptr(self.at::<u64>(offset)) }.load(order)
    }

    #[inline]
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        check(self.len, offset, 4, 4);
        // SAFETY: as for `load_u64_unchecked`, with 4-byte alignment
        // (checked above).
        unsafe { AtomicU32::from_ptr(self.at::<u32>(offset)) }.load(order)
    }

    #[inline]
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        check(self.len, offset, dst.len(), 1);
        // SAFETY: in bounds; `dst` is private memory. A concurrent writer can
        // only make the copy torn, which callers detect by re-checking the
        // slot word after the copy.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(offset), dst.as_mut_ptr(), dst.len()) }
    }
}

// SAFETY: the memory is only accessed through atomic loads and byte copies,
// which are sound from any thread.
#[cfg(not(shmq_loom))]
unsafe impl Send for RawLoads {}
// SAFETY: as above.
#[cfg(not(shmq_loom))]
unsafe impl Sync for RawLoads {}

/// Plain memory given by a base pointer and a length, read and written: a
/// read-write mapping, or a heap buffer for tests.
#[cfg(not(shmq_loom))]
pub struct RawMemory {
    /// The same region, for the loads.
    loads: RawLoads,
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
        // SAFETY: valid for reads and more (the caller's guarantee).
        let loads = unsafe { RawLoads::new(base, len) };
        RawMemory { loads }
    }
}

#[cfg(not(shmq_loom))]
impl Loads for RawMemory {
    #[inline]
    fn len(&self) -> usize {
        self.loads.len()
    }
    #[inline]
    fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        self.loads.load_u64(offset, order)
    }
    #[inline]
    unsafe fn load_u64_unchecked(&self, offset: usize, order: Ordering) -> u64 {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.loads.load_u64_unchecked(offset, order) }
    }
    #[inline]
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.loads.load_u32(offset, order)
    }
    #[inline]
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.loads.read_bytes(offset, dst)
    }
}

#[cfg(not(shmq_loom))]
impl Memory for RawMemory {
    #[inline]
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        check(self.loads.len, offset, 8, 8);
        // SAFETY: in bounds and 8-aligned (checked above).
        unsafe { self.u64_at_unchecked(offset) }
    }

    #[inline]
    unsafe fn u64_at_unchecked(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset <= self.len() && 8 <= self.len() - offset);
        // SAFETY: in bounds and aligned (the caller's guarantee), valid for
        // writes (`RawMemory::new`'s contract); every access to shared words
        // goes through atomics, so the aliasing rules of
        // `AtomicU64::from_ptr` hold.
        unsafe { AtomicU64::from_ptr(self.loads.at::<u64>(offset)) }
    }

    #[inline]
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        check(self.loads.len, offset, 4, 4);
        // SAFETY: as for `u64_at_unchecked`, with 4-byte alignment (checked
        // above).
        unsafe { AtomicU32::from_ptr(self.loads.at::<u32>(offset)) }
    }

    #[inline]
    unsafe fn write_bytes(&self, offset: usize, src: &[u8]) {
        check(self.loads.len, offset, src.len(), 1);
        // SAFETY: in bounds (checked above) and valid for writes
        // (`RawMemory::new`); nobody else touches the destination meanwhile
        // (this method's contract) and `src` is private memory, so the
        // ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.loads.at::<u8>(offset), src.len())
        }
    }

    #[inline]
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        check(self.loads.len, offset, len, 1);
        // SAFETY: in bounds (checked).
        Some(unsafe { self.loads.at::<u8>(offset) })
    }
}

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
impl Loads for HeapMemory {
    fn len(&self) -> usize {
        self.raw.len()
    }
    fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        self.raw.load_u64(offset, order)
    }
    unsafe fn load_u64_unchecked(&self, offset: usize, order: Ordering) -> u64 {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.raw.load_u64_unchecked(offset, order) }
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.raw.load_u32(offset, order)
    }
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.raw.read_bytes(offset, dst)
    }
}

#[cfg(not(shmq_loom))]
impl Memory for HeapMemory {
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.raw.u64_at(offset)
    }
    unsafe fn u64_at_unchecked(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.raw.u64_at_unchecked(offset) }
    }
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.raw.u32_at(offset)
    }
    unsafe fn write_bytes(&self, offset: usize, src: &[u8]) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.raw.write_bytes(offset, src) }
    }
    fn byte_ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        self.raw.byte_ptr(offset, len)
    }
}

/// Loom's memory: one loom atomic per modelled 8-byte word; u32 futex words
/// live in their own table (kept 8-aligned). Byte copies go word by word.
///
/// # Only the words a model needs
///
/// A queue file is mostly participant metrics (about 12 KB per entry) that
/// the protocol in [`crate::ring`] never touches. Every loom atomic is an
/// object that loom creates, tracks and resets in each of the thousands of
/// executions it explores, so [`LoomMemory::with_regions`] creates atomics
/// only for the byte ranges a model names; touching any other word panics
/// with its offset (a model that needs it must name it).
///
/// The atomics are created up front, in the thread that builds the memory,
/// not lazily at first touch: loom records the creation of an atomic as a
/// non-atomic write by the creating thread, so an atomic created lazily by
/// one model thread and then read by another thread that has not
/// synchronised with it is reported as "Causality violation: Concurrent load
/// and mut accesses", although the real word was there (zero) all along.
///
/// # Crashes
///
/// [`LoomMemory::set_step_budget`] gives the calling loom thread a number of
/// memory accesses (every `u64_at`, `u32_at`, and every word of a byte
/// copy counts one). The access after the last one unwinds with a
/// [`Crashed`] payload *before* it touches any loom state, so a model that
/// runs a participant inside `std::panic::catch_unwind` sees its thread stop
/// for good between two of its accesses, which is what a SIGKILL does to a
/// process. The unwind uses `resume_unwind`, so no panic hook prints it.
#[cfg(shmq_loom)]
pub struct LoomMemory {
    len: usize,
    words: Vec<Option<AtomicU64>>,
    words32: Vec<Option<AtomicU32>>,
}

/// The panic payload of a participant whose step budget ran out (see
/// [`LoomMemory::set_step_budget`]).
#[cfg(shmq_loom)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crashed;

#[cfg(shmq_loom)]
loom::thread_local! {
    /// Memory accesses the current loom thread may still make (None: no
    /// limit).
    static STEP_BUDGET: std::cell::Cell<Option<u64>> = std::cell::Cell::new(None);
    /// When set, a spent budget stalls the thread (until the gate opens)
    /// instead of stopping it for good: see [`LoomMemory::set_stall`].
    static STALL_GATE: std::cell::RefCell<Option<loom::sync::Arc<loom::sync::atomic::AtomicBool>>> =
        std::cell::RefCell::new(None);
}

#[cfg(shmq_loom)]
impl LoomMemory {
    /// `len` zeroed bytes, every word modelled (u64 and u32). Costly for a
    /// whole queue file; prefer [`LoomMemory::with_regions`].
    #[allow(clippy::single_range_in_vec_init)] // one region: the whole file
    pub fn new(len: usize) -> LoomMemory {
        LoomMemory::with_regions(len, &[0..len], &[0..len])
    }

    /// `len` zeroed bytes of which only the 8-byte words overlapping
    /// `regions` exist as u64 atomics, and only those overlapping `regions32`
    /// as u32 (futex) atomics. Accessing any other word panics.
    pub fn with_regions(
        len: usize,
        regions: &[std::ops::Range<usize>],
        regions32: &[std::ops::Range<usize>],
    ) -> LoomMemory {
        let n = len.div_ceil(8);
        let covered = |rs: &[std::ops::Range<usize>], w: usize| {
            rs.iter().any(|r| r.start < (w + 1) * 8 && w * 8 < r.end)
        };
        LoomMemory {
            len: n * 8,
            words: (0..n)
                .map(|w| covered(regions, w).then(|| AtomicU64::new(0)))
                .collect(),
            words32: (0..n)
                .map(|w| covered(regions32, w).then(|| AtomicU32::new(0)))
                .collect(),
        }
    }

    /// Limits the memory accesses of the calling loom thread: after `steps`
    /// more accesses (to any `LoomMemory`), the next one unwinds with
    /// [`Crashed`]. `None` lifts the limit.
    pub fn set_step_budget(steps: Option<u64>) {
        STEP_BUDGET.with(|b| b.set(steps));
        STALL_GATE.with(|g| *g.borrow_mut() = None);
    }

    /// Whether the calling thread still has a stall ahead of it (set by
    /// [`LoomMemory::set_stall`] and not reached); clears it.
    pub fn take_pending_stall() -> bool {
        STEP_BUDGET.with(|b| b.set(None));
        STALL_GATE.with(|g| g.borrow_mut().take().is_some())
    }

    /// Accesses the calling loom thread may still make (None: no limit).
    pub fn step_budget() -> Option<u64> {
        STEP_BUDGET.with(|b| b.get())
    }

    /// Makes the calling loom thread *stall* after `steps` more accesses
    /// instead of crashing: the access after the last one waits (yielding
    /// to the other loom threads) until `gate` is set, then the thread goes
    /// on with no budget. This models a participant stopped (SIGSTOP, a
    /// debugger, a long preemption) between two of its steps while its
    /// lease or reservation runs out, and that comes back afterwards.
    pub fn set_stall(steps: u64, gate: loom::sync::Arc<loom::sync::atomic::AtomicBool>) {
        STEP_BUDGET.with(|b| b.set(Some(steps)));
        STALL_GATE.with(|g| *g.borrow_mut() = Some(gate));
    }

    /// Spends one step of the calling thread's budget, or stops the thread
    /// (unwinds with [`Crashed`]) when none is left. Touches no loom atomic:
    /// the thread-local is loom's, but reading it is not a scheduling point.
    #[inline]
    fn step() {
        let left = STEP_BUDGET.with(|b| {
            let left = b.get();
            if let Some(n) = left {
                b.set(Some(n.saturating_sub(1)));
            }
            left
        });
        if left == Some(0) {
            if let Some(gate) = STALL_GATE.with(|g| g.borrow_mut().take()) {
                STEP_BUDGET.with(|b| b.set(None));
                while !gate.load(loom::sync::atomic::Ordering::SeqCst) {
                    loom::thread::yield_now();
                }
                return;
            }
            std::panic::resume_unwind(Box::new(Crashed));
        }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset % 8 == 0 && offset < self.len,
            "shmq internal error: u64 access at {offset} outside a region of {} (or unaligned)",
            self.len
        );
        match &self.words[offset / 8] {
            Some(w) => w,
            None => panic!("loom memory: the u64 word at offset {offset} is not modelled; add it to the model's regions"),
        }
    }
}

#[cfg(shmq_loom)]
impl Loads for LoomMemory {
    fn len(&self) -> usize {
        self.len
    }
    fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        self.u64_at(offset).load(order)
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.u32_at(offset).load(order)
    }
    fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        assert_eq!(offset % 8, 0, "loom memory copies whole words");
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            LoomMemory::step();
            // Relaxed: ordered by the acquire load of the slot word.
            let b = self
                .word(offset + i * 8)
                .load(Ordering::Relaxed)
                .to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

#[cfg(shmq_loom)]
impl Memory for LoomMemory {
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        LoomMemory::step();
        self.word(offset)
    }
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        LoomMemory::step();
        assert_eq!(offset % 8, 0, "loom memory keeps u32 words 8-aligned");
        assert!(
            offset < self.len,
            "shmq internal error: u32 access at {offset} outside a region of {}",
            self.len
        );
        match &self.words32[offset / 8] {
            Some(w) => w,
            None => panic!("loom memory: the u32 word at offset {offset} is not modelled; add it to the model's regions"),
        }
    }
    unsafe fn write_bytes(&self, offset: usize, src: &[u8]) {
        assert_eq!(offset % 8, 0, "loom memory copies whole words");
        for (i, chunk) in src.chunks(8).enumerate() {
            LoomMemory::step();
            let w = self.word(offset + i * 8);
            let mut b = if chunk.len() < 8 {
                // Keep the bytes past the end of `src` (a partial last word).
                // Relaxed: we own these bytes.
                w.load(Ordering::Relaxed).to_le_bytes()
            } else {
                [0u8; 8]
            };
            b[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: payload bytes are published by the commit CAS.
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }
    fn byte_ptr(&self, _offset: usize, _len: usize) -> Option<*mut u8> {
        None
    }
}

/// Reads a u64 word with relaxed ordering: for immutable header fields and
/// for snapshots whose staleness is acceptable.
#[inline]
pub fn load_relaxed<M: Loads + ?Sized>(m: &M, offset: usize) -> u64 {
    m.load_u64(offset, Ordering::Relaxed)
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;

    #[test]
    fn words_and_bytes_round_trip() {
        let m = HeapMemory::new(64);
        m.u64_at(8).store(7, Ordering::Relaxed);
        assert_eq!(load_relaxed(&m, 8), 7);
        // SAFETY: the heap memory is this test's alone.
        unsafe { m.write_bytes(16, b"hello") };
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
