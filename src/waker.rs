//! The async waker: one thread per process that sleeps on every futex word
//! an async waiter registered, and wakes the waiter's
//! [`std::task::Waker`] when its word changes or its time is up.
//!
//! A futex cannot be polled, so a future that finds the queue empty (or
//! full) cannot hand the futex to its executor. Instead it registers
//! *(futex word, the value it saw, a `Waker`, a time limit)* here, and this
//! thread sleeps in `futex_waitv` (Linux 5.16 and later) over every
//! registered word at once, plus a private futex of its own, the *bell*,
//! that every registration rings so that the thread re-arms with the new
//! word. Registrations are one-shot, like a future's wake: the thread wakes
//! the `Waker` and forgets the registration; a future that must wait again
//! registers again. A future dropped before its wake takes its registration
//! back ([`Ticket`]'s drop).
//!
//! ```text
//!  future (any thread)                    waker thread
//!  sleepers += 1, seen = word (SeqCst)    lock; bell_seen = bell
//!  re-check the queue                     for each registration:
//!  lock; push (word, seen, waker); unlock   word != seen or time up -> take it
//!  bell += 1; FUTEX_WAKE(bell) if parked   else wait on word == seen
//!                                         unlock; wake what was taken
//!                                         futex_waitv(words..., bell == bell_seen)
//! ```
//!
//! No lost wake-up: the future's value `seen` was read after it counted
//! itself a sleeper, so a producer that changes the queue afterwards also
//! bumps the word (the handshake of [`crate::wait`]); the thread compares
//! the word with `seen` before sleeping and the kernel compares it again
//! inside `futex_waitv`. A registration made after the thread read the
//! bell finds the bell changed, and `futex_waitv` returns at once.
//!
//! Nothing here busy-polls: the thread sleeps until a word changes, the bell
//! rings, or the earliest time limit of a registration passes (the queue
//! gives each one a bounded limit, so that delayed messages falling due and
//! leases running out are seen, as the blocking wait's bounded sleeps do).
//!
//! Limits: `futex_waitv` takes at most 128 words; the thread waits on the
//! first [`MAX_WORDS`] distinct words and checks the others on a beat of
//! [`OVERFLOW_BEAT`] (each queue file has two words, so this starts past
//! 63 queue files waited on at once). On a kernel without `futex_waitv`
//! (`ENOSYS`) the thread checks every registration on the same beat.
//!
//! Memory: every registration holds a [`KeepAlive`] of the mapping its word
//! is in, and the thread holds one for every word it passes to the kernel
//! for the length of the call, so no page it waits on is unmapped under it.
//!
//! Fork: a forked child has no waker thread. The waker is per process: the
//! first registration in a process whose id differs from the waker's makes
//! a new one (the parent's, copied into the child, is left untouched,
//! possibly with its lock held by a parent thread that does not exist in
//! the child).

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mapping::KeepAlive;
use crate::sys;

/// Most futex words one `futex_waitv` call waits on, besides the bell
/// (the kernel's limit is 128 in all).
pub const MAX_WORDS: usize = 127;
/// How often words beyond [`MAX_WORDS`] (or all of them, on a kernel
/// without `futex_waitv`) are checked.
pub const OVERFLOW_BEAT: Duration = Duration::from_millis(1);

/// `futex_waitv`'s system call number (the same on every architecture
/// that uses the unified numbering, which is all but alpha, ia64 and mips).
const SYS_FUTEX_WAITV: libc::c_long = 449;
/// `FUTEX2_SIZE_U32`: a 32-bit futex word.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX2_PRIVATE`: a futex of this process only (the bell).
const FUTEX2_PRIVATE: u32 = 128;

/// `struct futex_waitv` of `<linux/futex.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// A waiter's place in a wait point's sleeper count, given back by
/// whoever ends its registration: the waker thread when it wakes the
/// waiter (the word changed, or its time is up: from then on the waiter
/// will look at the queue again and needs no more bumps, so producers stop
/// paying a system call per message for it), or the waiter itself when it
/// takes the registration back first (a dropped future, or a try that
/// succeeded before it registered).
pub struct Counted {
    /// The wait point's sleeper count and the participant's sleeping word,
    /// in the mapping `_keep` keeps mapped.
    sleepers: *const AtomicU64,
    sleeping: *const AtomicU64,
    /// The participant's sleeping bit for this wait point.
    bit: u64,
    /// How many async waiters of one handle are counted at each wait
    /// point: the bit is cleared when the last of them ends.
    mine: Arc<[AtomicU32; 2]>,
    slot: usize,
    _keep: KeepAlive,
}

// SAFETY: the raw pointers point into the mapping `_keep` keeps mapped and
// are only used for atomic operations, sound from any thread.
unsafe impl Send for Counted {}

impl Counted {
    /// A waiter counted already (`sleepers` incremented as
    /// `WaitPoint::prepare` does, the bit set when `mine[slot]` went from 0
    /// to 1), to be given back once.
    pub fn new(
        sleepers: &AtomicU64,
        sleeping: &AtomicU64,
        bit: u64,
        mine: Arc<[AtomicU32; 2]>,
        slot: usize,
        keep: KeepAlive,
    ) -> Counted {
        Counted {
            sleepers,
            sleeping,
            bit,
            mine,
            slot,
            _keep: keep,
        }
    }

    /// Gives the place back: off the sleeper count, and off the sleeping
    /// bit if it was this handle's last async waiter there.
    pub fn release(self) {
        // SAFETY: `_keep` keeps the mapping that holds both (aligned) words
        // mapped; they are only accessed atomically.
        let (sleepers, sleeping) = unsafe { (&*self.sleepers, &*self.sleeping) };
        // As `WaitPoint::done`: SeqCst, never below zero.
        let _ = sleepers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        // AcqRel: a count of this process only, ordering the bit's
        // clearing after the setting by the waiter that counted last.
        if self.mine[self.slot].fetch_sub(1, Ordering::AcqRel) == 1 {
            // Relaxed: read only by a cleaner after our death (as in the
            // blocking wait).
            sleeping.fetch_and(!self.bit, Ordering::Relaxed);
        }
    }
}

/// One registration.
struct Entry {
    id: u64,
    /// The futex word, in the mapping `_keep` keeps mapped.
    word: *const AtomicU32,
    /// The value the waiter saw: it is woken when the word differs.
    seen: u32,
    /// `CLOCK_MONOTONIC` ns at which it is woken anyway.
    deadline: u64,
    waker: Waker,
    keep: KeepAlive,
    /// Given back when the registration ends.
    counted: Option<Counted>,
}

// SAFETY: `word` points into the mapping that `keep` keeps mapped, and is
// only loaded atomically, which is sound from any thread.
unsafe impl Send for Entry {}

impl Entry {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: `keep` keeps the mapping that holds the (aligned) word
        // mapped for as long as this entry lives; it is only accessed
        // atomically.
        unsafe { &*self.word }
    }
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    next_id: u64,
    started: bool,
    /// What the thread waits on since its last scan: the words (address
    /// and value) and the time limit. A registration on one of these words
    /// with the same value and a later limit needs no bell: the thread
    /// looks at every registration when that wait ends.
    armed: Vec<(u64, u32)>,
    armed_deadline: u64,
}

/// The waker of one process.
struct Reactor {
    /// The process it belongs to.
    pid: u32,
    state: Mutex<State>,
    /// The bell: bumped by every registration, so that the thread re-arms.
    bell: AtomicU32,
    /// Whether the thread is (about to be) asleep in the kernel, so that a
    /// registration rings the bell with a system call only then.
    parked: AtomicBool,
}

/// This process's waker (see the module's notes on fork).
static CURRENT: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());

fn reactor() -> &'static Reactor {
    let pid = sys::watch_forks();
    loop {
        // Acquire: pairs with the Release of the CAS below, so the
        // reactor's fields are seen initialised.
        let p = CURRENT.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: reactors are leaked, never freed: the pointer stays
            // valid for the life of the process (and of a forked child).
            let r = unsafe { &*p };
            if r.pid == pid {
                return r;
            }
        }
        let fresh = Box::into_raw(Box::new(Reactor {
            pid,
            state: Mutex::new(State::default()),
            bell: AtomicU32::new(0),
            parked: AtomicBool::new(false),
        }));
        match CURRENT.compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // The one we replaced (if any) was the parent's: left as it is.
            // SAFETY: just leaked above, valid for ever.
            Ok(_) => return unsafe { &*fresh },
            Err(_) => {
                // SAFETY: `fresh` was never published; we still own it.
                drop(unsafe { Box::from_raw(fresh) });
            }
        }
    }
}

/// A registration: dropping it takes the registration back if the thread
/// has not woken it yet.
pub struct Ticket {
    reactor: &'static Reactor,
    id: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).finish()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.reactor.pid != sys::current_pid() {
            // A ticket of the parent's waker, dropped in a forked child:
            // its lock may be held by a thread that does not exist here.
            return;
        }
        let taken = {
            let mut st = lock(self.reactor);
            st.entries
                .iter()
                .position(|e| e.id == self.id)
                .map(|i| st.entries.swap_remove(i))
        };
        // Dropped outside the lock: a waker's drop may run any code. The
        // thread may still be asleep on the word: harmless (it holds its
        // own keep-alive for the call), it re-arms at its next wake.
        if let Some(mut e) = taken {
            if let Some(c) = e.counted.take() {
                c.release();
            }
        }
    }
}

fn lock(r: &Reactor) -> std::sync::MutexGuard<'_, State> {
    // A panic under the lock (a waker's clone) leaves consistent state.
    r.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wakes `waker` when `word` no longer holds `seen`, or after `timeout`,
/// whichever comes first (once), giving back `counted` first. `keep` keeps
/// the mapping of `word` mapped. On an error `counted` is given back too.
pub fn register(
    word: &AtomicU32,
    seen: u32,
    timeout: Duration,
    waker: Waker,
    keep: KeepAlive,
    counted: Option<Counted>,
) -> Result<Ticket> {
    let r = reactor();
    let deadline =
        sys::monotonic_ns().saturating_add(timeout.as_nanos().min(u64::MAX as u128) as u64);
    let addr = word as *const AtomicU32 as u64;
    let (id, covered) = {
        let mut st = lock(r);
        if !st.started {
            if let Err(e) = std::thread::Builder::new()
                .name("shmq-waker".into())
                .spawn(move || run(r))
            {
                drop(st);
                if let Some(c) = counted {
                    c.release();
                }
                return Err(Error::io("starting the async waker thread", e));
            }
            st.started = true;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.entries.push(Entry {
            id,
            word: word as *const AtomicU32,
            seen,
            deadline,
            waker,
            keep,
            counted,
        });
        // The thread's wait (or the one it is about to start) ends when
        // this word changes from `seen` or before our limit: it will see
        // this registration then, without a bell.
        let covered = deadline >= st.armed_deadline && st.armed.contains(&(addr, seen));
        (id, covered)
    };
    if !covered {
        // SeqCst, both: if the load sees the thread not parked, its store
        // of `parked` comes later in the total order, after it read the
        // bell (under the lock): either that read came after our push (and
        // the thread sees the entry) or before it (and the bump makes its
        // `futex_waitv` return at once).
        r.bell.fetch_add(1, Ordering::SeqCst);
        if r.parked.load(Ordering::SeqCst) {
            futex_wake_private(&r.bell);
        }
    }
    Ok(Ticket { reactor: r, id })
}

/// How many registrations are waiting in this process (for tests).
pub fn registrations() -> usize {
    let p = CURRENT.load(Ordering::Acquire);
    if p.is_null() {
        return 0;
    }
    // SAFETY: reactors are never freed.
    let r = unsafe { &*p };
    if r.pid != sys::current_pid() {
        return 0;
    }
    lock(r).entries.len()
}

/// The waker thread's CPU time so far, in ns, if it was started in this
/// process (for tests: an idle waiter must cost next to nothing).
pub fn thread_cpu_ns() -> Option<u64> {
    THREAD_CLOCK
        .lock()
        .ok()
        .and_then(|c| *c)
        .filter(|(pid, _)| *pid == sys::current_pid())
        .map(|(_, clock)| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid timespec pointer; the clock id is the waker
            // thread's, which lives as long as the process.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        })
}

/// The waker thread's CPU-time clock, with the process it runs in.
static THREAD_CLOCK: Mutex<Option<(u32, libc::clockid_t)>> = Mutex::new(None);

fn futex_wake_private(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 of this process; FUTEX_WAKE
    // only uses its address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// The waker thread.
fn run(r: &'static Reactor) {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: valid out pointer; the calling thread's own clock.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0 {
        if let Ok(mut c) = THREAD_CLOCK.lock() {
            *c = Some((r.pid, clock));
        }
    }
    let mut waitv: Vec<FutexWaitv> = Vec::with_capacity(MAX_WORDS + 1);
    let mut keeps: Vec<KeepAlive> = Vec::with_capacity(MAX_WORDS);
    let mut fire: Vec<Waker> = Vec::new();
    let mut no_waitv = false;
    loop {
        waitv.clear();
        keeps.clear();
        let mut deadline = u64::MAX;
        let bell_seen;
        {
            let mut st = lock(r);
            // SeqCst: see `register`.
            bell_seen = r.bell.load(Ordering::SeqCst);
            let now = sys::monotonic_ns();
            let mut overflow = false;
            let mut i = 0;
            while i < st.entries.len() {
                let e = &st.entries[i];
                // SeqCst: the producer's bump is SeqCst; any order would
                // do, the kernel compares again before sleeping.
                let cur = e.word().load(Ordering::SeqCst);
                if cur != e.seen || now >= e.deadline {
                    let mut e = st.entries.swap_remove(i);
                    // Off the sleeper count before the waiter runs again.
                    if let Some(c) = e.counted.take() {
                        c.release();
                    }
                    fire.push(e.waker);
                    continue;
                }
                deadline = deadline.min(e.deadline);
                let addr = e.word as u64;
                if !waitv.iter().any(|w| w.uaddr == addr) {
                    if waitv.len() < MAX_WORDS && !no_waitv {
                        waitv.push(FutexWaitv {
                            val: cur as u64,
                            uaddr: addr,
                            flags: FUTEX2_SIZE_U32,
                            reserved: 0,
                        });
                        keeps.push(e.keep.clone());
                    } else {
                        overflow = true;
                    }
                }
                i += 1;
            }
            if overflow {
                deadline = deadline.min(now.saturating_add(OVERFLOW_BEAT.as_nanos() as u64));
            }
            st.armed.clear();
            for w in &waitv {
                st.armed.push((w.uaddr, w.val as u32));
            }
            st.armed_deadline = deadline;
            // SeqCst: see `register`.
            r.parked.store(true, Ordering::SeqCst);
        }
        for w in fire.drain(..) {
            // A waker that panics must not end the thread every other
            // async waiter of the process relies on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
        }
        waitv.push(FutexWaitv {
            val: bell_seen as u64,
            uaddr: r.bell.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
            reserved: 0,
        });
        let ts = (deadline != u64::MAX).then_some(libc::timespec {
            tv_sec: (deadline / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        if !no_waitv {
            // SAFETY: `waitv` holds `len` valid entries whose addresses are
            // aligned u32 words kept mapped by `keeps` (and the bell, which
            // lives for ever) for the whole call; the timespec outlives it.
            let rc = unsafe {
                libc::syscall(
                    SYS_FUTEX_WAITV,
                    waitv.as_ptr(),
                    waitv.len() as libc::c_uint,
                    0 as libc::c_uint,
                    ts_ptr,
                    libc::CLOCK_MONOTONIC,
                )
            };
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                no_waitv = true;
            }
        }
        if no_waitv {
            // An old kernel: sleep on the bell until the earliest time
            // limit, which is at most a beat away while words are waited
            // on (they all count as beyond the limit then).
            let left = (deadline != u64::MAX)
                .then(|| Duration::from_nanos(deadline.saturating_sub(sys::monotonic_ns())));
            futex_wait_private(&r.bell, bell_seen, left);
        }
        // SeqCst: see `register`.
        r.parked.store(false, Ordering::SeqCst);
    }
}

fn futex_wait_private(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: a valid, aligned u32 of this process; the timespec outlives
    // the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use crate::memory::Memory;
    use std::task::Wake;
    use std::time::Instant;

    /// The tests count the process's registrations: one at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
    }

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A scratch file of `len` bytes, mapped (and already unlinked).
    fn scratch_mapping(len: usize) -> Mapping {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // Relaxed: only hands out distinct numbers.
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("shmq-waker-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(len as u64).unwrap();
        let m = Mapping::new(&file, len, &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        m
    }

    fn wait_for(flag: &Flag) {
        let start = Instant::now();
        while !flag.0.load(Ordering::SeqCst) {
            assert!(start.elapsed() < Duration::from_secs(5), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// More distinct words than one `futex_waitv` takes: a word beyond the
    /// limit is found on the beat, one within it by the kernel's wake, and
    /// the others stay registered; taking the tickets back empties the
    /// waker.
    #[test]
    fn words_beyond_the_kernels_limit_are_woken_too() {
        let _s = serial();
        let m = scratch_mapping(4096);
        let n = MAX_WORDS + 20;
        let flags: Vec<Arc<Flag>> = (0..n)
            .map(|_| Arc::new(Flag(AtomicBool::new(false))))
            .collect();
        let tickets: Vec<Ticket> = (0..n)
            .map(|i| {
                register(
                    m.u32_at(i * 4),
                    0,
                    Duration::from_secs(60),
                    Waker::from(flags[i].clone()),
                    m.keep_alive(),
                    None,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(registrations(), n);
        // Beyond the limit, changed without a wake.
        m.u32_at((n - 1) * 4).store(1, Ordering::SeqCst);
        wait_for(&flags[n - 1]);
        // Within it, changed and woken as a producer does.
        m.u32_at(0).fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(m.u32_at(0), i32::MAX);
        wait_for(&flags[0]);
        assert!(flags[1..n - 1].iter().all(|f| !f.0.load(Ordering::SeqCst)));
        assert_eq!(registrations(), n - 2);
        drop(tickets);
        assert_eq!(registrations(), 0);
    }

    /// A registration's time limit wakes it when its word never changes.
    #[test]
    fn a_registration_is_woken_at_its_time_limit() {
        let _s = serial();
        let m = scratch_mapping(4096);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let start = Instant::now();
        let _t = register(
            m.u32_at(2048),
            0,
            Duration::from_millis(30),
            Waker::from(flag.clone()),
            m.keep_alive(),
            None,
        )
        .unwrap();
        wait_for(&flag);
        assert!(start.elapsed() >= Duration::from_millis(29));
    }
}
