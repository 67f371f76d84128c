//! The "physical" reference: a bare single-producer single-consumer Vyukov
//! ring in a `/dev/shm` mapping shared by two processes, with none of
//! shmq's guarantees (no leases, no recovery, no metrics). It shows what the
//! hardware allows for the same payloads and slot sizes.
//!
//! ```text
//!  0      128     256                      256 + slots × stride
//!  | head | tail | slot 0 | slot 1 | ...  |
//!  slot: seq (u64) | payload, padded to a multiple of 128 bytes
//! ```
//! A slot at position `p` is writable when `seq == p` and readable when
//! `seq == p + 1`; the reader hands it back with `seq = p + capacity`.

use std::fs::OpenOptions;
use std::sync::atomic::{AtomicU64, Ordering};

const HEADER: usize = 256;

/// A bare ring mapped from a file.
pub struct BareRing {
    _map: memmap2::MmapRaw,
    base: *mut u8,
    capacity: u64,
    stride: usize,
    payload: usize,
}

impl BareRing {
    fn stride(payload: usize) -> usize {
        (8 + payload).div_ceil(128) * 128
    }

    /// Creates the file for `capacity` slots of `payload` bytes.
    pub fn create(path: &str, capacity: u64, payload: usize) -> std::io::Result<BareRing> {
        let stride = Self::stride(payload);
        let len = HEADER + capacity as usize * stride;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        f.set_len(len as u64)?;
        let r = Self::map(&f, len, capacity, payload)?;
        for i in 0..capacity {
            r.seq(i).store(i, Ordering::Relaxed);
        }
        Ok(r)
    }

    /// Opens a ring created by [`BareRing::create`] with the same sizes.
    pub fn open(path: &str, capacity: u64, payload: usize) -> std::io::Result<BareRing> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let len = HEADER + capacity as usize * Self::stride(payload);
        Self::map(&f, len, capacity, payload)
    }

    fn map(
        f: &std::fs::File,
        len: usize,
        capacity: u64,
        payload: usize,
    ) -> std::io::Result<BareRing> {
        let map = memmap2::MmapOptions::new().len(len).map_raw(f)?;
        if (map.len() as u64) < len as u64 {
            return Err(std::io::Error::other("short mapping"));
        }
        Ok(BareRing {
            base: map.as_mut_ptr(),
            _map: map,
            capacity,
            stride: Self::stride(payload),
            payload,
        })
    }

    fn seq(&self, slot: u64) -> &AtomicU64 {
        debug_assert!(slot < self.capacity);
        // SAFETY: in bounds of the mapping (slot < capacity), 8-aligned
        // (HEADER and stride are multiples of 128); shared words are only
        // accessed atomically.
        unsafe { AtomicU64::from_ptr(self.base.add(HEADER + slot as usize * self.stride).cast()) }
    }

    /// Sends one payload (spinning while the ring is full). `pos` is the
    /// producer's private position.
    #[inline]
    pub fn push(&self, pos: &mut u64, data: &[u8]) {
        let slot = *pos % self.capacity;
        let seq = self.seq(slot);
        // Acquire: the consumer's release hands the slot back.
        while seq.load(Ordering::Acquire) != *pos {
            std::hint::spin_loop();
        }
        let n = data.len().min(self.payload);
        // SAFETY: the slot is ours (seq == pos) until the release below; the
        // payload lies inside the slot's stride.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.add(HEADER + slot as usize * self.stride + 8),
                n,
            )
        };
        seq.store(*pos + 1, Ordering::Release);
        *pos += 1;
    }

    /// Receives one payload into `buf` (spinning while empty).
    #[inline]
    pub fn pop(&self, pos: &mut u64, buf: &mut [u8]) {
        let slot = *pos % self.capacity;
        let seq = self.seq(slot);
        while seq.load(Ordering::Acquire) != *pos + 1 {
            std::hint::spin_loop();
        }
        let n = buf.len().min(self.payload);
        // SAFETY: the slot is ours to read (seq == pos + 1) until the release.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(HEADER + slot as usize * self.stride + 8),
                buf.as_mut_ptr(),
                n,
            )
        };
        seq.store(*pos + self.capacity, Ordering::Release);
        *pos += 1;
    }
}

// SAFETY: the mapping is accessed through atomics and copies under the ring
// protocol; one producer and one consumer, each in its own process or thread.
unsafe impl Send for BareRing {}
