//! Who is attached, whether they are alive, and cleaning up after the dead.
//!
//! Each open handle is a participant: it takes a free entry of the table and
//! holds an open-file-description (OFD) lock on the byte
//! [`LOCK_BASE`]` + index` of the queue file. The kernel drops that lock when
//! the process dies, however it dies, so any survivor can tell the dead from
//! the slow at once, without a lease timeout; a recycled PID cannot fool it,
//! because the lock belongs to the open file description, not to a PID. A
//! child that inherits the descriptor through `fork` shares the lock, so the
//! registered PID must also still exist (and an inherited handle does
//! nothing in the child, see `Queue`).
//!
//! The entry's state word is
//! `pid << 32 | generation << 12 | cleaner << 2 | state`
//! ([`part::FREE`], [`part::LIVE`], [`part::CLEANING`]). A participant found
//! dead is moved to `CLEANING` by the survivor that found it, which names
//! itself (`cleaner` = its index + 1) in the same compare-and-swap; it
//! repairs every slot the dead one owned and then frees the entry. So:
//!
//! - an entry being cleaned always names a cleaner, and is reused (taken by
//!   a newcomer) or taken over by another survivor only once that cleaner is
//!   dead: a repair never mistakes a newcomer's slots for the dead one's;
//! - a cleaner that dies is itself found dead, and its work is taken over;
//! - the generation (20 bits, bumped at every registration) and the pid make
//!   every registration's word distinct, so a compare-and-swap from a word
//!   read earlier fails once the entry was released or taken again.
//!
//! The separate [`part::CLEANER`] word is still written for readers of the
//! file, but nothing decides by it.

use crate::format::{hdr, part, Layout};
use crate::memory::{Loads, Memory};
use crate::sync::Ordering;

pub use crate::format::part::{EntryState, LOCK_BASE};

/// How a participant's liveness is probed (OFD locks for files, a set of
/// killed indices in tests).
pub trait Liveness {
    /// Whether participant `index` (registered by `pid`) is alive.
    fn alive(&self, index: u64, pid: u32) -> bool;
}

/// The participant table of a queue.
pub struct Table<'m, M: Loads> {
    mem: &'m M,
    layout: &'m Layout,
}

impl<'m, M: Loads> Table<'m, M> {
    /// The table of the queue in `mem`.
    pub fn new(mem: &'m M, layout: &'m Layout) -> Self {
        Table { mem, layout }
    }

    /// Reads entry `index`.
    pub fn entry(&self, index: u64) -> EntryState {
        // Acquire: pairs with the release of registration and cleanup.
        EntryState::decode(self.load_state(index, Ordering::Acquire))
    }

    /// Loads entry `index`'s state word.
    fn load_state(&self, index: u64, order: Ordering) -> u64 {
        self.mem
            .load_u64(self.layout.participant(index) + part::STATE, order)
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
        let high = self.mem.load_u64(hdr::PARTICIPANTS_HIGH, Ordering::Acquire);
        if high == 0 || high > self.capacity() {
            self.capacity()
        } else {
            high
        }
    }

    /// The words of every entry in use: what a later
    /// [`Table::claim_unchanged`] may take for dead.
    pub fn snapshot(&self) -> Vec<(u64, u64)> {
        (0..self.in_use_bound())
            // Acquire: as in `entry`.
            .map(|i| (i, self.load_state(i, Ordering::Acquire)))
            .filter(|(_, raw)| {
                matches!(EntryState::decode(*raw).state, part::LIVE | part::CLEANING)
            })
            .collect()
    }

    /// Live entries with their pids (racy snapshot).
    pub fn live(&self) -> Vec<(u64, EntryState)> {
        (0..self.capacity())
            .map(|i| (i, self.entry(i)))
            .filter(|(_, e)| e.state == part::LIVE)
            .collect()
    }
}

impl<'m, M: Memory> Table<'m, M> {
    fn state_word(&self, index: u64) -> &crate::sync::AtomicU64 {
        self.mem
            .u64_at(self.layout.participant(index) + part::STATE)
    }

    /// Records that entry `index` may be taken, before it is.
    pub fn raise_bound(&self, index: u64) {
        // Release: see `in_use_bound`.
        self.mem
            .u64_at(hdr::PARTICIPANTS_HIGH)
            .fetch_max(index + 1, Ordering::Release);
    }

    /// Whether the cleaner named by entry `index` (being cleaned, `e`) is
    /// dead, so that its work may be taken over. A name that cannot be a
    /// cleaner (none, out of range, the entry itself) counts as dead: only
    /// a damaged file holds one, and the entry must not stay stuck.
    fn cleaner_dead(&self, index: u64, e: EntryState, live: &dyn Liveness) -> bool {
        let c = e.cleaner;
        if c == 0 || c > self.capacity() || c - 1 == index {
            return true;
        }
        let ce = self.entry(c - 1);
        !(ce.state == part::LIVE && live.alive(c - 1, ce.pid))
    }

    /// Takes entry `index` for `pid`, whose lock byte the caller already
    /// holds. Returns the word it stored (the caller's registration), or
    /// `None` if the entry is being cleaned by a live cleaner. If the entry
    /// still says LIVE (its previous owner died, since we got its lock) or
    /// CLEANING by a dead cleaner, `clean` is called first to repair what
    /// the previous owner left.
    pub fn take(
        &self,
        index: u64,
        pid: u32,
        start_time: u64,
        now: u64,
        live: &dyn Liveness,
        clean: &mut dyn FnMut(u64),
    ) -> Option<EntryState> {
        let word = self.state_word(index);
        loop {
            let raw = word.load(Ordering::Acquire);
            let e = EntryState::decode(raw);
            if e.state == part::CLEANING && !self.cleaner_dead(index, e, live) {
                return None;
            }
            if e.state != part::FREE {
                clean(index);
            }
            let new = EntryState {
                state: part::LIVE,
                generation: e.generation + 1,
                pid,
                cleaner: 0,
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
                return Some(EntryState::decode(new.encode()));
            }
        }
    }

    /// Frees our own entry at close, if it is still the registration `mine`
    /// (a survivor may have cleaned it up already, e.g. after a reboot).
    pub fn release(&self, index: u64, mine: EntryState) {
        let free = EntryState {
            state: part::FREE,
            ..mine
        };
        let _ = self.state_word(index).compare_exchange(
            mine.encode(),
            free.encode(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Marks entry `index`, read as `raw`, as being cleaned by `me`: one
    /// compare-and-swap that names the cleaner. False if the word changed.
    fn mark_cleaning(&self, me: u64, index: u64, raw: u64) -> bool {
        let cleaning = EntryState {
            state: part::CLEANING,
            cleaner: me + 1,
            ..EntryState::decode(raw)
        };
        if self
            .state_word(index)
            .compare_exchange(raw, cleaning.encode(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // Relaxed: informative only (the state word names the cleaner).
        self.mem
            .u64_at(self.layout.participant(index) + part::CLEANER)
            .store(me + 1, Ordering::Relaxed);
        #[cfg(not(shmq_loom))]
        hooks::fire(hooks::Point::AfterClaim, index);
        true
    }

    /// Finds entries whose owner (or cleaner) is dead and marks them as being
    /// cleaned by `me`. Returns their indices; the caller repairs the slots
    /// and then calls [`Table::finish_cleaning`]. Entries `me` was already
    /// cleaning (a sweep that stopped on an error, or the work of a dead
    /// previous holder of our index) are returned too.
    pub fn claim_dead(&self, me: u64, live: &dyn Liveness) -> Vec<u64> {
        let mut dead = Vec::new();
        for i in 0..self.in_use_bound() {
            if i == me {
                continue;
            }
            let raw = self.state_word(i).load(Ordering::Acquire);
            let e = EntryState::decode(raw);
            let orphaned = match e.state {
                part::LIVE => !live.alive(i, e.pid),
                part::CLEANING => e.cleaner == me + 1 || self.cleaner_dead(i, e, live),
                _ => false,
            };
            if orphaned && self.mark_cleaning(me, i, raw) {
                dead.push(i);
            }
        }
        dead
    }

    /// Marks as being cleaned by `me`, without asking whether they are
    /// alive, the entries of `snapshot` that still hold the word they held
    /// then (registered, or being cleaned, by the same participant): after
    /// a reboot, those of the previous boot. An entry released, taken again
    /// or taken over since is left alone. Returns their indices, as
    /// [`Table::claim_dead`] does.
    pub fn claim_unchanged(&self, me: u64, snapshot: &[(u64, u64)]) -> Vec<u64> {
        snapshot
            .iter()
            .filter(|&&(i, raw)| i != me && i < self.capacity() && self.mark_cleaning(me, i, raw))
            .map(|&(i, _)| i)
            .collect()
    }

    /// Frees an entry after `me` repaired its slots; not if another
    /// participant took the work over meanwhile.
    pub fn finish_cleaning(&self, index: u64, me: u64) {
        let word = self.state_word(index);
        let raw = word.load(Ordering::Acquire);
        let e = EntryState::decode(raw);
        if e.state == part::CLEANING && e.cleaner == me + 1 {
            let free = EntryState {
                state: part::FREE,
                cleaner: 0,
                ..e
            };
            let _ = word.compare_exchange(raw, free.encode(), Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// Test hooks: they let a test stop a participant at a chosen point, to
/// force an interleaving that is otherwise a few instructions wide. Per
/// thread: a hook fires only in calls made by the thread that set it, so
/// tests running side by side in one process do not see each other's.
#[doc(hidden)]
#[cfg(not(shmq_loom))]
pub mod hooks {
    use std::cell::RefCell;

    /// Where a hook fires.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Point {
        /// In a sweep, right after it marked entry `index` as being cleaned
        /// by it, before it repairs anything.
        AfterClaim,
        /// In the attach that cleans up after the participants of a previous
        /// boot, once it has its own entry `index`, before it cleans up.
        BeforeBootRecovery,
    }

    type Hook = Box<dyn FnMut(u64)>;

    thread_local! {
        static HOOKS: RefCell<[Option<Hook>; 2]> = const { RefCell::new([None, None]) };
    }

    /// Calls `hook(index)` when this thread reaches `point` (`None` removes
    /// the hook).
    pub fn set(point: Point, hook: Option<Hook>) {
        HOOKS.with(|h| h.borrow_mut()[point as usize] = hook);
    }

    pub(crate) fn fire(point: Point, index: u64) {
        // Taken out while it runs, so that a hook may itself call in.
        let Some(mut f) = HOOKS.with(|h| h.borrow_mut()[point as usize].take()) else {
            return;
        };
        f(index);
        HOOKS.with(|h| {
            let mut h = h.borrow_mut();
            if h[point as usize].is_none() {
                h[point as usize] = Some(f);
            }
        });
    }
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;
    use crate::format::Params;
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

    fn no_clean(_: u64) {}

    #[test]
    fn take_sweep_clean_and_reuse() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let dead = Fake(RefCell::new(vec![]));
        let mut cleaned = vec![];
        assert!(t
            .take(0, 100, 1, 0, &dead, &mut |i| cleaned.push(i))
            .is_some());
        assert!(t
            .take(1, 101, 1, 0, &dead, &mut |i| cleaned.push(i))
            .is_some());
        assert!(cleaned.is_empty());
        assert_eq!(t.live().len(), 2);
        // Participant 1 dies: participant 0 finds it and cleans up.
        dead.0.borrow_mut().push(1);
        assert_eq!(t.claim_dead(0, &dead), vec![1]);
        assert_eq!((t.entry(1).state, t.entry(1).cleaner), (part::CLEANING, 1));
        // Nobody else may claim it while a live cleaner works on it.
        assert!(t.claim_dead(2, &dead).is_empty());
        // Another participant cannot finish it for us.
        t.finish_cleaning(1, 2);
        assert_eq!(t.entry(1).state, part::CLEANING);
        t.finish_cleaning(1, 0);
        assert_eq!(t.entry(1).state, part::FREE);
        // A newcomer reuses the entry with a new generation.
        dead.0.borrow_mut().clear();
        let mine = t
            .take(1, 102, 1, 0, &dead, &mut |i| cleaned.push(i))
            .unwrap();
        let e = t.entry(1);
        assert_eq!(e, mine);
        assert_eq!(
            (e.state, e.pid, e.generation, e.cleaner),
            (part::LIVE, 102, 2, 0)
        );
        t.release(1, mine);
        assert_eq!(t.entry(1).state, part::FREE);
    }

    #[test]
    fn an_entry_being_cleaned_is_reused_only_once_its_cleaner_is_dead() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let dead = Fake(RefCell::new(vec![]));
        for i in 0..2 {
            assert!(t
                .take(i, 100 + i as u32, 1, 0, &dead, &mut no_clean)
                .is_some());
        }
        dead.0.borrow_mut().push(1);
        assert_eq!(t.claim_dead(0, &dead), vec![1]);
        // A newcomer holding entry 1's lock is refused while 0 cleans.
        dead.0.borrow_mut().clear();
        let mut cleaned = vec![];
        assert!(t
            .take(1, 200, 1, 0, &dead, &mut |i| cleaned.push(i))
            .is_none());
        assert!(cleaned.is_empty());
        // The cleaner dies before finishing: the newcomer repairs what the
        // dead owner left, then takes the entry.
        dead.0.borrow_mut().push(0);
        assert!(t
            .take(1, 200, 1, 0, &dead, &mut |i| cleaned.push(i))
            .is_some());
        assert_eq!(cleaned, vec![1]);
        // The dead cleaner's late finish frees nothing.
        t.finish_cleaning(1, 0);
        assert_eq!(t.entry(1).state, part::LIVE);
    }

    #[test]
    fn a_dead_cleaner_is_taken_over_and_a_stale_entry_is_cleaned_on_take() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let dead = Fake(RefCell::new(vec![]));
        for i in 0..3 {
            assert!(t
                .take(i, 100 + i as u32, 1, 0, &dead, &mut no_clean)
                .is_some());
        }
        dead.0.borrow_mut().push(2);
        assert_eq!(t.claim_dead(1, &dead), vec![2]);
        // The cleaner (1) dies before finishing: 0 takes the work over.
        dead.0.borrow_mut().push(1);
        let mut got = t.claim_dead(0, &dead);
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(t.entry(2).cleaner, 1);
        // An entry left LIVE by a dead owner is cleaned by whoever takes it.
        let mut cleaned = vec![];
        dead.0.borrow_mut().clear();
        t.finish_cleaning(1, 0);
        assert!(t
            .take(1, 200, 1, 0, &dead, &mut |i| cleaned.push(i))
            .is_some());
        assert!(cleaned.is_empty());
        t.finish_cleaning(2, 0);
        let w = EntryState {
            state: part::LIVE,
            generation: 9,
            pid: 7,
            cleaner: 0,
        };
        m.u64_at(l.participant(2))
            .store(w.encode(), Ordering::Relaxed);
        assert!(t
            .take(2, 201, 1, 0, &dead, &mut |i| cleaned.push(i))
            .is_some());
        assert_eq!(cleaned, vec![2]);
        let c = EntryState {
            state: part::CLEANING,
            generation: 0xf_ffff,
            pid: u32::MAX,
            cleaner: 1023,
        };
        assert_eq!(EntryState::decode(c.encode()), c);
    }

    #[test]
    fn a_cleaner_adopts_the_work_left_under_its_own_index() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let dead = Fake(RefCell::new(vec![]));
        for i in 0..2 {
            assert!(t
                .take(i, 100 + i as u32, 1, 0, &dead, &mut no_clean)
                .is_some());
        }
        dead.0.borrow_mut().push(1);
        assert_eq!(t.claim_dead(0, &dead), vec![1]);
        // Our sweep stopped before finishing (or the previous holder of our
        // index died mid-clean): our next sweep takes entry 1 up again.
        dead.0.borrow_mut().clear();
        assert_eq!(t.claim_dead(0, &dead), vec![1]);
    }

    #[test]
    fn after_a_reboot_only_entries_unchanged_since_the_snapshot_are_taken() {
        let (m, l) = table();
        let t = Table::new(&m, &l);
        let alive = Fake(RefCell::new(vec![]));
        assert!(t.take(0, 100, 1, 0, &alive, &mut no_clean).is_some());
        let mine = t.take(1, 101, 1, 0, &alive, &mut no_clean).unwrap();
        let snap = t.snapshot();
        assert_eq!(snap.len(), 2);
        // Entry 1 is released and taken again (a new registration) after
        // the snapshot; entry 0 is left as it was.
        t.release(1, mine);
        assert!(t.take(1, 300, 1, 0, &alive, &mut no_clean).is_some());
        assert!(t.take(2, 301, 1, 0, &alive, &mut no_clean).is_some());
        assert_eq!(t.claim_unchanged(2, &snap), vec![0]);
        assert_eq!(t.entry(0).state, part::CLEANING);
        assert_eq!(t.entry(1).pid, 300);
        assert_eq!(t.entry(1).state, part::LIVE);
    }
}
