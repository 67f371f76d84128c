//! The "physical" reference: a bare single-producer single-consumer Vyukov
//! ring in a `/dev/shm` mapping shared by two processes, with none of
//! shmq's guarantees (no leases, no recovery, no metrics). It shows what the
//! hardware allows for the same payloads and slot sizes.
//!
//! ```text
//!  0      256                      256 + capacity × STRIDE
//!  | pad  | slot 0 | slot 1 | ...  |
//!  slot: seq (u64) | payload (N bytes), padded to a multiple of 128 bytes;
//!  the payload right after seq when both fit one 64-byte line (N <= 56),
//!  else from byte 64 of the slot
//! ```
//! A slot at position `p` is writable when `seq == p` and readable when
//! `seq == p + 1`; the reader hands it back with `seq = p + capacity`. There
//! is no shared head or tail: each side keeps its own position and meets the
//! other only in the slot's sequence word.
//!
//! It is measured at its best, so that a ratio to it means something: the
//! payload size `N` is a constant of the type (the copies in and out are a
//! few vector moves inlined into the loop, not a `memcpy` call of a length
//! read at run time), the slot stride is a constant (128 bytes for payloads
//! up to 120: the CPU fetches pairs of 64-byte lines, and a slot sharing a
//! pair with its neighbour would bounce between the two CPUs), and the
//! capacity is a power of two (a position becomes a slot by a mask, not a
//! 64-bit division, which alone costs tens of cycles a message).

use std::fs::OpenOptions;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes before slot 0 (the first slot starts on its own pair of lines).
const HEADER: usize = 256;

/// A bare ring of `N`-byte payloads mapped from a file.
pub struct BareRing<const N: usize> {
    _map: memmap2::MmapRaw,
    base: *mut u8,
    mask: u64,
    _payload: PhantomData<[u8; N]>,
}

impl<const N: usize> BareRing<N> {
    /// Where the payload starts in its slot: right after the sequence word
    /// when both fit one 64-byte line, else on the next line, so that no
    /// copy is split across two lines and the word the other side spins on
    /// is not in a line the payload copy needs.
    const OFFSET: usize = if 8 + N <= 64 { 8 } else { 64 };
    /// Bytes between the starts of two slots: the sequence word and the
    /// payload, rounded up to a multiple of 128.
    const STRIDE: usize = (Self::OFFSET + N).div_ceil(128) * 128;

    fn len(capacity: u64) -> usize {
        HEADER + capacity as usize * Self::STRIDE
    }

    /// Creates the file for `capacity` slots (a power of two).
    pub fn create(path: &str, capacity: u64) -> std::io::Result<Self> {
        if !capacity.is_power_of_two() {
            return Err(std::io::Error::other("capacity must be a power of two"));
        }
        let len = Self::len(capacity);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        f.set_len(len as u64)?;
        let r = Self::map(&f, capacity)?;
        for i in 0..capacity {
            // Relaxed: the peer maps the file only after this process has
            // created it (it is started afterwards), so process creation
            // orders these stores before its first load.
            r.seq(i).store(i, Ordering::Relaxed);
        }
        Ok(r)
    }

    /// Opens a ring created by [`BareRing::create`] with the same sizes.
    pub fn open(path: &str, capacity: u64) -> std::io::Result<Self> {
        if !capacity.is_power_of_two() {
            return Err(std::io::Error::other("capacity must be a power of two"));
        }
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(&f, capacity)
    }

    fn map(f: &std::fs::File, capacity: u64) -> std::io::Result<Self> {
        let len = Self::len(capacity);
        if f.metadata()?.len() < len as u64 {
            return Err(std::io::Error::other("ring file shorter than its sizes"));
        }
        let map = memmap2::MmapOptions::new().len(len).map_raw(f)?;
        if map.len() < len {
            return Err(std::io::Error::other("short mapping"));
        }
        Ok(BareRing {
            base: map.as_mut_ptr(),
            _map: map,
            mask: capacity - 1,
            _payload: PhantomData,
        })
    }

    /// The start of the slot of position `pos`.
    #[inline(always)]
    fn slot(&self, pos: u64) -> *mut u8 {
        // SAFETY: `pos & mask` < capacity, so the slot and its STRIDE bytes
        // lie inside the mapping of HEADER + capacity × STRIDE bytes.
        unsafe {
            self.base
                .add(HEADER + (pos & self.mask) as usize * Self::STRIDE)
        }
    }

    fn seq(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: the slot is in bounds (see `slot`) and 8-aligned (the
        // mapping is page-aligned, HEADER and STRIDE are multiples of 128);
        // both processes access this word only atomically.
        unsafe { AtomicU64::from_ptr(self.slot(pos).cast()) }
    }

    /// Sends one payload (spinning while the ring is full). `pos` is the
    /// producer's private position.
    #[inline(always)]
    pub fn push(&self, pos: &mut u64, data: &[u8; N]) {
        let p = *pos;
        let seq = self.seq(p);
        // Acquire: pairs with the consumer's release that handed the slot
        // back, so its reads of the old payload happen before our write.
        while seq.load(Ordering::Acquire) != p {
            std::hint::spin_loop();
        }
        // SAFETY: the slot is ours (seq == p) until the release below; the
        // payload's N bytes lie inside the slot's stride, after the word.
        unsafe {
            self.slot(p)
                .add(Self::OFFSET)
                .cast::<[u8; N]>()
                .write_unaligned(*data)
        };
        // Release: publishes the payload with the sequence word.
        seq.store(p + 1, Ordering::Release);
        *pos = p + 1;
    }

    /// Receives one payload into `out` (spinning while the ring is empty).
    /// `pos` is the consumer's private position.
    #[inline(always)]
    pub fn pop(&self, pos: &mut u64, out: &mut [u8; N]) {
        let p = *pos;
        let seq = self.seq(p);
        // Acquire: pairs with the producer's release, so the payload it
        // wrote is visible.
        while seq.load(Ordering::Acquire) != p + 1 {
            std::hint::spin_loop();
        }
        // SAFETY: the slot is ours to read (seq == p + 1) until the release
        // below; the payload lies inside the slot's stride.
        *out = unsafe {
            self.slot(p)
                .add(Self::OFFSET)
                .cast::<[u8; N]>()
                .read_unaligned()
        };
        // Release: our read of the payload happens before the producer's
        // next write to this slot.
        seq.store(p + self.mask + 1, Ordering::Release);
        *pos = p + 1;
    }
}

// SAFETY: the mapping is accessed through atomics and copies under the ring
// protocol; one producer and one consumer, each in its own process or thread.
unsafe impl<const N: usize> Send for BareRing<N> {}
