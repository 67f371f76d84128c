//! The key table: per-key versions and per-key exclusivity (guarantee G7).
//!
//! A fixed table of `key_capacity` entries in the mapping, open addressing
//! with linear probing. An entry is taken for a key by one CAS of its `KEY`
//! word from 0; entries are never removed while participants are attached
//! (see [`KeyTable::evict_settled`]), so a probe chain never breaks.
//!
//! Per entry ([`crate::format::key`]):
//! - `LAST_ACKED`: the highest version acked. A send whose version is not
//!   newer is refused (`Stale`); a queued message not newer than it (an
//!   older version, or a second copy of the acked one) is completed without
//!   delivery when a consumer reaches it.
//! - `NEXT_VERSION`: the highest version given or seen, for automatic
//!   versions (version 0 on a send).
//! - `HOLDER`: the claim holding the key ([`KeyHolder`](crate::format::key::KeyHolder)), or 0. It is taken *before* the slot's claim CAS (naming the
//!   sequence that CAS will give the slot) and released after the slot's
//!   outcome CAS. While the slot still shows the sequence before it in a
//!   claimable state, the holder is *in transit* and counts as held: no
//!   other message of the key can be claimed in between, which keeps claims
//!   of one key in commit order. A holder whose slot shows neither is stale
//!   (its claim ended, or its owner crashed) and is taken over; a taker that
//!   dies in transit is released by whoever cleans up after it (the
//!   participant's `TAKING_KEY` word names the entry).
//! - `WAITING`: latest-only mode: the waiting message ([`WaitingRef`](crate::format::key::WaitingRef)),
//!   checked against the slot before use.
//! - `PARKED`: how many of the key's messages are pending off ring order.

use crate::error::{Error, Result, Status};
use crate::format::key;
use crate::format::Layout;
use crate::memory::{Loads, Memory};
use crate::sync::{AtomicU64, Ordering};

/// The key table of a queue.
pub struct KeyTable<'m, M: Loads> {
    mem: &'m M,
    layout: &'m Layout,
    /// The entry + 1 found last by this handle (see [`KeyTable::with_hint`]).
    hint: Option<&'m std::sync::atomic::AtomicU64>,
}

/// Mixes a key into a table index (splitmix64's finaliser).
#[inline]
fn hash(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<'m, M: Loads> KeyTable<'m, M> {
    /// The key table in `mem`.
    pub fn new(mem: &'m M, layout: &'m Layout) -> Self {
        KeyTable {
            mem,
            layout,
            hint: None,
        }
    }

    /// The key table in `mem`, remembering the entry found last in `hint`
    /// (process memory, one per handle): the lookups of one keyed operation
    /// (version, holder, parked count, last acked) then hash and probe once.
    /// A hint is only used after its entry's key word is checked, so any
    /// value in it is safe.
    pub fn with_hint(
        mem: &'m M,
        layout: &'m Layout,
        hint: &'m std::sync::atomic::AtomicU64,
    ) -> Self {
        KeyTable {
            mem,
            layout,
            hint: Some(hint),
        }
    }

    /// The hinted entry, if it holds `k`.
    #[inline]
    fn hinted(&self, k: u64) -> Option<u64> {
        // Relaxed: the hint is private to this handle and checked below.
        let h = self.hint?.load(std::sync::atomic::Ordering::Relaxed);
        let e = h.checked_sub(1)?;
        // Acquire: as in `find`, the entry's fields were initialised before
        // its key was published.
        (e < self.capacity() && k != 0 && self.load_field(e, key::KEY, Ordering::Acquire) == k)
            .then_some(e)
    }

    #[inline]
    fn remember(&self, e: u64) {
        if let Some(h) = self.hint {
            h.store(e + 1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Number of entries.
    #[inline]
    #[allow(clippy::misnamed_getters)] // the table's capacity is the key capacity
    pub fn capacity(&self) -> u64 {
        self.layout.params.key_capacity
    }

    /// The entry of `k`, if the key has one.
    pub fn find(&self, k: u64) -> Option<u64> {
        let cap = self.capacity();
        if cap == 0 || k == 0 {
            return None;
        }
        if let Some(e) = self.hinted(k) {
            return Some(e);
        }
        let start = hash(k) % cap;
        for n in 0..cap {
            let e = (start + n) % cap;
            // Acquire: an entry's fields were initialised before its key was
            // published.
            match self.load_field(e, key::KEY, Ordering::Acquire) {
                0 => return None,
                x if x == k => {
                    self.remember(e);
                    return Some(e);
                }
                _ => {}
            }
        }
        None
    }

    /// The last acked version of entry `e`.
    #[inline]
    pub fn last_acked(&self, e: u64) -> u64 {
        // Acquire: pairs with the AcqRel fetch_max at ack.
        self.load_field(e, key::LAST_ACKED, Ordering::Acquire)
    }

    /// Loads a field of entry `e`.
    #[inline]
    pub fn load_field(&self, e: u64, f: usize, order: Ordering) -> u64 {
        self.mem.load_u64(self.layout.key_entry(e) + f, order)
    }

    /// Number of entries in use (a scan).
    pub fn in_use(&self) -> u64 {
        (0..self.capacity())
            // Relaxed: a count for reports.
            .filter(|e| self.load_field(*e, key::KEY, Ordering::Relaxed) != 0)
            .count() as u64
    }
}

impl<'m, M: Memory> KeyTable<'m, M> {
    /// A field of entry `e`.
    #[inline]
    pub fn field(&self, e: u64, f: usize) -> &'m AtomicU64 {
        self.mem.u64_at(self.layout.key_entry(e) + f)
    }

    /// The entry of `k`, taking a free one if the key has none yet.
    /// `KeysFull` when every entry belongs to another key.
    pub fn find_or_insert(&self, k: u64) -> Result<u64> {
        let cap = self.capacity();
        if cap == 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                "keyed send on a queue created without a key table (key_capacity 0)",
            ));
        }
        if let Some(e) = self.hinted(k) {
            return Ok(e);
        }
        let start = hash(k) % cap;
        for n in 0..cap {
            let e = (start + n) % cap;
            let w = self.field(e, key::KEY);
            let mut cur = w.load(Ordering::Acquire);
            if cur == 0 {
                // The fields of a never-used entry are zero: publish the key.
                match w.compare_exchange(0, k, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.remember(e);
                        return Ok(e);
                    }
                    Err(now) => cur = now,
                }
            }
            if cur == k {
                self.remember(e);
                return Ok(e);
            }
        }
        Err(Error::new(
            Status::KeysFull,
            format!("all {cap} entries of the key table are taken by other keys"),
        ))
    }

    /// Gives the version of a send: `version`, or the next one when it is 0.
    /// `Stale` when it is not newer than the last acked version.
    pub fn assign_version(&self, e: u64, version: u64) -> Result<u64> {
        let next = self.field(e, key::NEXT_VERSION);
        let v = if version == 0 {
            // AcqRel: versions given out are unique and increasing.
            let mut cur = next.load(Ordering::Acquire);
            loop {
                // Read from the mapping: a version counter at the end of
                // the range is a scribble (2^64 versions are never given).
                let Some(n) = cur.max(self.last_acked(e)).checked_add(1) else {
                    return Err(Error::new(
                        Status::Corrupt,
                        "the key's version counter is at its maximum (a damaged key table)",
                    ));
                };
                match next.compare_exchange(cur, n, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break n,
                    Err(x) => cur = x,
                }
            }
        } else {
            next.fetch_max(version, Ordering::AcqRel);
            version
        };
        let acked = self.last_acked(e);
        if v <= acked {
            return Err(Error::new(
                Status::Stale,
                format!("version {v} is not newer than the last acked version {acked}"),
            ));
        }
        Ok(v)
    }

    /// Removes the entries that nobody holds and no message refers to
    /// (`in_use(key)` false), rebuilding the table so probe chains stay
    /// whole. Only safe when no other participant is attached: the caller
    /// checks that. Returns how many entries were evicted.
    pub fn evict_settled(&self, in_use: &dyn Fn(u64) -> bool) -> u64 {
        let cap = self.capacity();
        let mut keep = Vec::new();
        let mut evicted = 0;
        for e in 0..cap {
            let k = self.field(e, key::KEY).load(Ordering::Acquire);
            if k == 0 {
                continue;
            }
            let fields: Vec<u64> = (0..key::SIZE / 8)
                .map(|i| self.field(e, i * 8).load(Ordering::Relaxed))
                .collect();
            if in_use(k) {
                keep.push(fields);
            } else {
                evicted += 1;
            }
            for i in 0..key::SIZE / 8 {
                self.field(e, i * 8).store(0, Ordering::Relaxed);
            }
        }
        for fields in keep {
            let start = hash(fields[0]) % cap;
            for n in 0..cap {
                let e = (start + n) % cap;
                if self.field(e, key::KEY).load(Ordering::Relaxed) == 0 {
                    for (i, v) in fields.iter().enumerate().skip(1) {
                        self.field(e, i * 8).store(*v, Ordering::Relaxed);
                    }
                    self.field(e, key::KEY).store(fields[0], Ordering::Release);
                    break;
                }
            }
        }
        evicted
    }
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;
    use crate::format::Params;
    use crate::memory::HeapMemory;

    fn table(cap: u64) -> (HeapMemory, Layout) {
        let l = Layout::new(Params {
            capacity: 1,
            max_message_size: 8,
            key_capacity: cap,
            dlq_capacity: 1,
            participant_capacity: 1,
        })
        .unwrap();
        (HeapMemory::new(l.file_size), l)
    }

    #[test]
    fn insert_find_and_full() {
        let (m, l) = table(4);
        let t = KeyTable::new(&m, &l);
        let es: Vec<u64> = (1..=4).map(|k| t.find_or_insert(k).unwrap()).collect();
        for (k, e) in (1..=4).zip(&es) {
            assert_eq!(t.find(k), Some(*e));
            assert_eq!(t.find_or_insert(k).unwrap(), *e);
        }
        assert_eq!(t.find_or_insert(5).unwrap_err().status(), Status::KeysFull);
        assert_eq!(t.find(5), None);
        assert_eq!(t.in_use(), 4);
    }

    #[test]
    fn versions_auto_explicit_and_stale() {
        let (m, l) = table(4);
        let t = KeyTable::new(&m, &l);
        let e = t.find_or_insert(7).unwrap();
        assert_eq!(t.assign_version(e, 0).unwrap(), 1);
        assert_eq!(t.assign_version(e, 5).unwrap(), 5);
        assert_eq!(t.assign_version(e, 0).unwrap(), 6);
        t.field(e, key::LAST_ACKED).store(6, Ordering::Relaxed);
        assert_eq!(t.assign_version(e, 6).unwrap_err().status(), Status::Stale);
        assert_eq!(t.assign_version(e, 3).unwrap_err().status(), Status::Stale);
        assert_eq!(t.assign_version(e, 0).unwrap(), 7);
    }

    #[test]
    fn eviction_keeps_chains_whole() {
        let (m, l) = table(8);
        let t = KeyTable::new(&m, &l);
        for k in 1..=8 {
            t.find_or_insert(k).unwrap();
        }
        assert_eq!(t.evict_settled(&|k| k % 2 == 0), 4);
        for k in 1..=8 {
            assert_eq!(t.find(k).is_some(), k % 2 == 0, "key {k}");
        }
        assert_eq!(t.in_use(), 4);
    }
}
