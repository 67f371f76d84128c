//! Who is attached, whether they are alive, and cleaning up after the dead.
//!
//! Each open handle is a participant: it takes a free entry of the table and
//! holds an open-file-description (OFD) lock on the byte
//! [`LOCK_BASE`]` + index` of the queue file. The kernel drops that lock when
//! the process dies, however it dies, so any survivor can tell the dead from
//! the slow at once, without a lease timeout; a recycled PID cannot fool it,
//! because the lock belongs to the open file description, not to a PID. A
//! child that inherits the descriptor through `fork` shares the lock, so the
//! registered PID must also still exist.
//!
//! The entry's state word is `pid << 32 | generation << 2 | state`
//! ([`part::FREE`], [`part::LIVE`], [`part::CLEANING`]). A participant found
//! dead is moved to `CLEANING` by the survivor that found it (recorded in
//! [`part::CLEANER`]), which repairs every slot the dead one owned and then
//! frees the entry. A cleaner that dies is itself found dead, and its work is
//! taken over. An entry is never reused while it is being cleaned, so a
//! cleaner never mistakes a newcomer's slots for the dead one's.

use crate::layout::{hdr, part, Layout};
use crate::memory::Memory;
use crate::sync::Ordering;

/// The lock byte of participant 0; far beyond any file, so the locks never
/// overlap data (OFD locks are advisory and do not affect the mapping).
pub const LOCK_BASE: u64 = 1 << 40;

/// An entry's decoded state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// FREE, LIVE or CLEANING.
    pub state: u64,
    /// Bumped on every registration.
    pub generation: u64,
    /// The registered process.
    pub pid: u32,
}

impl EntryState {
    /// Decodes a state word.
    pub fn decode(w: u64) -> EntryState {
        EntryState {
            state: w & 3,
            generation: (w >> 2) & 0x3fff_ffff,
            pid: (w >> 32) as u32,
        }
    }
    /// Encodes it.
    pub fn encode(self) -> u64 {
        (self.pid as u64) << 32 | (self.generation & 0x3fff_ffff) << 2 | (self.state & 3)
    }
}

/// How a participant's liveness is probed (OFD locks for files, a set of
/// killed indices in tests).
pub trait Liveness {
    /// Whether participant `index` (registered by `pid`) is alive.
    fn alive(&self, index: u64, pid: u32) -> bool;
}

/// The participant table of a queue.
pub struct Table<'m, M: Memory> {
    mem: &'m M,
    layout: &'m Layout,
}

impl<'m, M: Memory> Table<'m, M> {
    /// The table of the queue in `mem`.
    pub fn new(mem: &'m M, layout: &'m Layout) -> Self {
        Table { mem, layout }
    }

    fn state_word(&self, index: u64) -> &crate::sync::AtomicU64 {
        self.mem
            .u64_at(self.layout.participant(index) + part::STATE)
    }

    /// Reads entry `index`.
    pub fn entry(&self, index: u64) -> EntryState {
        // Acquire: pairs with the release of registration and cleanup.
        EntryState::decode(self.state_word(index).load(Ordering::Acquire))
    }

    /// Number of entries.
    #[allow(clippy::misnamed_getters)] // the table's capacity is the participant capacity
    pub fn capacity(&self) -> u64 {
        self.layout.params.participant_capacity
    }

    /// How many entries can be in use: entries at or above this were never
    /// taken (see [`hdr::PARTICIPANTS_HIGH`]). The whole table when unknown
    /// or when the word says more than the table holds.
    pub fn in_use_bound(&self) -> u64 {
        // Acquire: pairs with the release of `raise_bound`, which comes
        // before the entry is taken. A sweep that misses an entry taken
        // after this load sees it at the next sweep.
        let high = self
            .mem
            .u64_at(hdr::PARTICIPANTS_HIGH)
            .load(Ordering::Acquire);
        if high == 0 || high > self.capacity() {
            self.capacity()
        } else {
            high
        }
    }

    /// Records that entry `index` may be taken, before it is.
    pub fn raise_bound(&self, index: u64) {
        // Release: see `in_use_bound`.
        self.mem
            .u64_at(hdr::PARTICIPANTS_HIGH)
            .fetch_max(index + 1, Ordering::Release);
    }

    /// Takes entry `index` for `pid`, whose lock byte the caller already
    /// holds. Returns `false` if the entry is being cleaned by a live
    /// cleaner. If the entry still says LIVE or CLEANING (its previous owner
    /// died, since we got its lock), `clean` is called first to repair what
    /// it left.
    pub fn take(
        &self,
        index: u64,
        pid: u32,
        start_time: u64,
        now: u64,
        live: &dyn Liveness,
        clean: &mut dyn FnMut(u64),
    ) -> bool {
        let word = self.state_word(index);
        loop {
            let raw = word.load(Ordering::Acquire);
            let e = EntryState::decode(raw);
            if e.state == part::CLEANING {
                let cleaner = self
                    .mem
                    .u64_at(self.layout.participant(index) + part::CLEANER);
                let c = cleaner.load(Ordering::Acquire);
                // The cleaner index is read from the mapping: check it.
                if c != 0 && c - 1 != index && c - 1 < self.capacity() {
                    let ce = self.entry(c - 1);
                    if ce.state == part::LIVE && live.alive(c - 1, ce.pid) {
                        return false;
                    }
                }
            }
            if e.state != part::FREE {
                clean(index);
            }
            let new = EntryState {
                state: part::LIVE,
                generation: e.generation + 1,
                pid,
            };
            let base = self.layout.participant(index);
            // Relaxed: published by the release CAS below.
            self.mem
                .u64_at(base + part::START_TIME)
                .store(start_time, Ordering::Relaxed);
            self.mem
                .u64_at(base + part::ATTACHED_NS)
                .store(now, Ordering::Relaxed);
            self.mem
                .u64_at(base + part::ROLES)
                .store(0, Ordering::Relaxed);
            self.mem
                .u64_at(base + part::CLEANER)
                .store(0, Ordering::Relaxed);
            self.mem
                .u64_at(base + part::SLEEPING)
                .store(0, Ordering::Relaxed);
            if word
                .compare_exchange(raw, new.encode(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Frees our own entry at close.
    pub fn release(&self, index: u64) {
        let word = self.state_word(index);
        let raw = word.load(Ordering::Acquire);
        let e = EntryState::decode(raw);
        let free = EntryState {
            state: part::FREE,
            ..e
        };
        let _ = word.compare_exchange(raw, free.encode(), Ordering::AcqRel, Ordering::Acquire);
    }

    /// Finds entries whose owner (or cleaner) is dead and marks them as being
    /// cleaned by `me`. Returns their indices; the caller repairs the slots
    /// and then calls [`Table::finish_cleaning`].
    pub fn claim_dead(&self, me: u64, live: &dyn Liveness) -> Vec<u64> {
        let mut dead = Vec::new();
        for i in 0..self.in_use_bound() {
            if i == me {
                continue;
            }
            let word = self.state_word(i);
            let raw = word.load(Ordering::Acquire);
            let e = EntryState::decode(raw);
            let orphaned = match e.state {
                part::LIVE => !live.alive(i, e.pid),
                part::CLEANING => {
                    let c = self
                        .mem
                        .u64_at(self.layout.participant(i) + part::CLEANER)
                        .load(Ordering::Acquire);
                    if c == 0 || c - 1 == me || c > self.capacity() {
                        true
                    } else {
                        let ce = self.entry(c - 1);
                        !(ce.state == part::LIVE && live.alive(c - 1, ce.pid))
                    }
                }
                _ => false,
            };
            if !orphaned {
                continue;
            }
            let cleaning = EntryState {
                state: part::CLEANING,
                ..e
            };
            if word
                .compare_exchange(raw, cleaning.encode(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.mem
                    .u64_at(self.layout.participant(i) + part::CLEANER)
                    .store(me + 1, Ordering::Release);
                dead.push(i);
            }
        }
        dead
    }

    /// Frees an entry after its slots were repaired.
    pub fn finish_cleaning(&self, index: u64) {
        let word = self.state_word(index);
        let raw = word.load(Ordering::Acquire);
        let e = EntryState::decode(raw);
        if e.state == part::CLEANING {
            let free = EntryState {
                state: part::FREE,
                ..e
            };
            let _ = word.compare_exchange(raw, free.encode(), Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Live entries with their pids (racy snapshot).
    pub fn live(&self) -> Vec<(u64, EntryState)> {
        (0..self.capacity())
            .map(|i| (i, self.entry(i)))
            .filter(|(_, e)| e.state == part::LIVE)
            .collect()
    }
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;
    use crate::layout::Params;
    use crate::memory::HeapMemory;
    use std::cell::RefCell;

    struct Fake(RefCell<Vec<u64>>);
    impl Liveness for Fake {
        fn alive(&self, index: u64, _pid: u32) -> bool {
            !self.0.borrow().contains(&index)
        }
    }

    fn table() -> (HeapMemory, Layout) {
        let l = Layout::new(Params {
            capacity: 1,
            max_message_size: 8,
            key_capacity: 0,
            dlq_capacity: 1,
            participant_capacity: 3,
        })
        .unwrap();
        (HeapMemory::new(l.file_size), l)
    }

    #[test]
    fn take_sweep_clean_and_reuse() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let dead = Fake(RefCell::new(vec![]));
        let mut cleaned = vec![];
        assert!(t.take(0, 100, 1, 0, &dead, &mut |i| cleaned.push(i)));
        assert!(t.take(1, 101, 1, 0, &dead, &mut |i| cleaned.push(i)));
        assert!(cleaned.is_empty());
        assert_eq!(t.live().len(), 2);
        // Participant 1 dies: participant 0 finds it and cleans up.
        dead.0.borrow_mut().push(1);
        assert_eq!(t.claim_dead(0, &dead), vec![1]);
        assert_eq!(t.entry(1).state, part::CLEANING);
        // Nobody else may claim it while a live cleaner works on it.
        assert!(t.claim_dead(2, &dead).is_empty());
        t.finish_cleaning(1);
        assert_eq!(t.entry(1).state, part::FREE);
        // A newcomer reuses the entry with a new generation.
        dead.0.borrow_mut().clear();
        assert!(t.take(1, 102, 1, 0, &dead, &mut |i| cleaned.push(i)));
        let e = t.entry(1);
        assert_eq!((e.state, e.pid, e.generation), (part::LIVE, 102, 2));
        t.release(1);
        assert_eq!(t.entry(1).state, part::FREE);
    }

    #[test]
    fn a_dead_cleaner_is_taken_over_and_a_stale_entry_is_cleaned_on_take() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let dead = Fake(RefCell::new(vec![]));
        for i in 0..3 {
            assert!(t.take(i, 100 + i as u32, 1, 0, &dead, &mut |_| {}));
        }
        dead.0.borrow_mut().push(2);
        assert_eq!(t.claim_dead(1, &dead), vec![2]);
        // The cleaner (1) dies before finishing: 0 takes the work over.
        dead.0.borrow_mut().push(1);
        let mut got = t.claim_dead(0, &dead);
        got.sort();
        assert_eq!(got, vec![1, 2]);
        // An entry left LIVE by a dead owner is cleaned by whoever takes it.
        let mut cleaned = vec![];
        dead.0.borrow_mut().clear();
        t.finish_cleaning(1);
        assert!(t.take(1, 200, 1, 0, &dead, &mut |i| cleaned.push(i)));
        assert!(cleaned.is_empty());
        let w = EntryState {
            state: part::LIVE,
            generation: 9,
            pid: 7,
        };
        m.u64_at(l.participant(2))
            .store(w.encode(), Ordering::Relaxed);
        assert!(t.take(2, 201, 1, 0, &dead, &mut |i| cleaned.push(i)));
        assert_eq!(cleaned, vec![2]);
        assert_eq!(EntryState::decode(w.encode()), w);
    }
}
