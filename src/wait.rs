//! Sleeping and waking across processes: a futex word in the mapping and a
//! count of sleepers beside it, so that a waker makes a system call only
//! when somebody sleeps.
//!
//! The handshake (no lost wake-up):
//!
//! ```text
//!  sleeper                               waker
//!  sleepers += 1          (SeqCst)       make the condition true (SeqCst CAS)
//!  seen = futex           (SeqCst)       if sleepers != 0     (SeqCst load)
//!  fence(SeqCst)                             futex += 1
//!  re-check the condition                    FUTEX_WAKE
//!  FUTEX_WAIT(futex, seen)
//!  sleepers -= 1
//! ```
//!
//! In the single total order of SeqCst operations either the waker's load
//! sees the sleeper (and its `futex += 1` makes the wait return at once or
//! wakes it), or the sleeper's re-check comes after the waker's CAS and sees
//! the condition. Sleeps are also bounded by the caller (a few ms), so even a
//! sleeper count left wrong by a crash costs latency, never a hang.

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Blocks on and wakes a futex word.
pub trait Futex {
    /// Sleeps while `*word == expected`, at most `timeout`.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes every sleeper on `word`.
    fn wake(&self, word: &AtomicU32);
}

/// The operating system's shared futex.
#[cfg(not(shmq_loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFutex;

#[cfg(not(shmq_loom))]
impl Futex for OsFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::sys::futex_wait(word, expected, timeout)
    }
    fn wake(&self, word: &AtomicU32) {
        crate::sys::futex_wake(word, i32::MAX)
    }
}

/// A place to wait: the futex word and the sleeper count.
pub struct WaitPoint<'a> {
    futex: &'a AtomicU32,
    sleepers: &'a AtomicU64,
}

impl<'a> WaitPoint<'a> {
    /// The wait point made of these two words.
    pub fn new(futex: &'a AtomicU32, sleepers: &'a AtomicU64) -> Self {
        WaitPoint { futex, sleepers }
    }

    /// Called by a waker after it made the condition true with a SeqCst
    /// operation. Costs one load when nobody sleeps.
    #[inline]
    pub fn notify(&self, f: &impl Futex) {
        crate::sync::loom_only_seqcst_fence();
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.futex.fetch_add(1, Ordering::SeqCst);
            f.wake(self.futex);
        }
    }

    /// Registers as a sleeper; the caller must re-check its condition, then
    /// [`WaitPoint::sleep`] with the returned value, then [`WaitPoint::done`].
    pub fn prepare(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let seen = self.futex.load(Ordering::SeqCst);
        fence(Ordering::SeqCst);
        seen
    }

    /// Sleeps unless a wake came after [`WaitPoint::prepare`].
    pub fn sleep(&self, f: &impl Futex, seen: u32, timeout: Option<Duration>) {
        f.wait(self.futex, seen, timeout);
    }

    /// Unregisters the sleeper.
    pub fn done(&self) {
        // A crash can leave the count one off; never let it wrap below zero.
        let _ = self
            .sleepers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// The futex word (for the async waker, which sleeps on it).
    pub fn futex_word(&self) -> &'a AtomicU32 {
        self.futex
    }

    /// The sleeper count.
    pub fn sleepers_word(&self) -> &'a AtomicU64 {
        self.sleepers
    }

    /// Number of registered sleepers (racy).
    pub fn sleepers(&self) -> u64 {
        self.sleepers.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(shmq_loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Default)]
    struct Counting {
        wakes: Cell<u32>,
        waits: Cell<u32>,
    }
    impl Futex for Counting {
        fn wait(&self, word: &AtomicU32, expected: u32, _t: Option<Duration>) {
            if word.load(Ordering::SeqCst) == expected {
                self.waits.set(self.waits.get() + 1);
            }
        }
        fn wake(&self, _word: &AtomicU32) {
            self.wakes.set(self.wakes.get() + 1);
        }
    }

    #[test]
    fn a_waker_calls_the_kernel_only_when_someone_sleeps() {
        let (f, s) = (AtomicU32::new(0), AtomicU64::new(0));
        let wp = WaitPoint::new(&f, &s);
        let k = Counting::default();
        wp.notify(&k);
        assert_eq!(k.wakes.get(), 0);
        let seen = wp.prepare();
        wp.notify(&k);
        assert_eq!(k.wakes.get(), 1);
        // The wake came after prepare: the sleep returns at once.
        wp.sleep(&k, seen, None);
        assert_eq!(k.waits.get(), 0);
        wp.done();
        wp.done();
        assert_eq!(wp.sleepers(), 0, "never below zero");
    }

    #[test]
    fn real_futex_wakes_another_thread() {
        use std::sync::Arc;
        let words = Arc::new((AtomicU32::new(0), AtomicU64::new(0)));
        let w2 = words.clone();
        let t = std::thread::spawn(move || {
            let wp = WaitPoint::new(&w2.0, &w2.1);
            let seen = wp.prepare();
            wp.sleep(&OsFutex, seen, Some(Duration::from_secs(10)));
            wp.done();
        });
        while words.1.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let start = std::time::Instant::now();
        WaitPoint::new(&words.0, &words.1).notify(&OsFutex);
        t.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
