//! Time: `CLOCK_MONOTONIC` nanoseconds, cheaply.
//!
//! A message costs about as much as one `clock_gettime` (15–20 ns here), and
//! a message needs up to three timestamps (commit, claim, ack), so the clock
//! decides throughput. Where the CPU has an invariant TSC, [`Clock::now`]
//! reads it and scales it with a multiplier calibrated once per process
//! against `CLOCK_MONOTONIC`, re-anchoring to `CLOCK_MONOTONIC` every
//! [`ANCHOR_NS`] so that processes agree to well under a microsecond and
//! leases never drift. Elsewhere it calls `clock_gettime` (a vDSO call, not
//! a system call). Readings of one clock never go backwards.

use std::cell::Cell;
use std::sync::OnceLock;

/// How often a clock re-anchors to `CLOCK_MONOTONIC`.
pub const ANCHOR_NS: u64 = 10_000_000;

/// Ticks-to-nanoseconds multiplier in 32.32 fixed point, or `None` when the
/// TSC is not usable.
fn tsc_mult() -> Option<u64> {
    static MULT: OnceLock<Option<u64>> = OnceLock::new();
    *MULT.get_or_init(calibrate)
}

#[cfg(target_arch = "x86_64")]
fn invariant_tsc() -> bool {
    // cpuid is safe on every x86_64 CPU.
    let max_ext = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    if max_ext < 0x8000_0007 {
        return false;
    }
    // Leaf 0x80000007 exists (checked above).
    let edx = std::arch::x86_64::__cpuid(0x8000_0007).edx;
    edx & (1 << 8) != 0
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn rdtsc() -> u64 {
    0
}

fn calibrate() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("SHMQ_NO_TSC").is_some() || !invariant_tsc() {
            return None;
        }
        // Two readings 2 ms apart; each pair brackets rdtsc between two
        // clock reads to bound the error of the pairing.
        let pair = || {
            let t0 = crate::sys::monotonic_ns();
            let c = rdtsc();
            let t1 = crate::sys::monotonic_ns();
            (c, t0 / 2 + t1 / 2)
        };
        let (c0, t0) = pair();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let (c1, t1) = pair();
        if c1 <= c0 || t1 <= t0 {
            return None;
        }
        let mult = (((t1 - t0) as u128) << 32) / (c1 - c0) as u128;
        // Refuse absurd rates (under 100 MHz or over 20 GHz).
        let ghz_ok = mult > (1u128 << 32) / 20 && mult < (10u128 << 32);
        ghz_ok.then_some(mult as u64)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// A monotonic clock owned by one handle (not shared between threads).
pub struct Clock {
    mult: Option<u64>,
    anchor_tsc: Cell<u64>,
    anchor_ns: Cell<u64>,
    /// TSC reading after which the clock re-anchors.
    renew_tsc: Cell<u64>,
    last: Cell<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock; the first one in a process calibrates the TSC (2 ms).
    pub fn new() -> Clock {
        let c = Clock {
            mult: tsc_mult(),
            anchor_tsc: Cell::new(0),
            anchor_ns: Cell::new(0),
            renew_tsc: Cell::new(0),
            last: Cell::new(0),
        };
        c.anchor();
        c
    }

    fn anchor(&self) -> u64 {
        let ns = crate::sys::monotonic_ns();
        if let Some(mult) = self.mult {
            let tsc = rdtsc();
            self.anchor_tsc.set(tsc);
            self.anchor_ns.set(ns);
            let ticks = ((ANCHOR_NS as u128) << 32) / mult as u128;
            self.renew_tsc.set(tsc.saturating_add(ticks as u64));
        }
        ns
    }

    /// Nanoseconds of `CLOCK_MONOTONIC`.
    #[inline]
    pub fn now(&self) -> u64 {
        let t = match self.mult {
            None => crate::sys::monotonic_ns(),
            Some(mult) => {
                let tsc = rdtsc();
                let base = self.anchor_tsc.get();
                if tsc >= self.renew_tsc.get() || tsc < base {
                    self.anchor()
                } else {
                    self.anchor_ns.get() + (((tsc - base) as u128 * mult as u128) >> 32) as u64
                }
            }
        };
        let t = t.max(self.last.get());
        self.last.set(t);
        t
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the kernel's tick-time, a few
/// nanoseconds to read (no TSC read), up to a few milliseconds behind
/// `CLOCK_MONOTONIC`. Good enough for leases, delays and the enqueue time of
/// unsampled messages.
#[inline]
pub fn coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer; CLOCK_MONOTONIC_COARSE exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_clock_monotonic_and_never_goes_back() {
        let c = Clock::new();
        let mut prev = 0;
        for _ in 0..200 {
            let a = crate::sys::monotonic_ns();
            let t = c.now();
            let b = crate::sys::monotonic_ns();
            assert!(t >= prev);
            // Within 50 µs of the system clock, even on a loaded machine.
            assert!(t + 50_000 >= a && t <= b + 50_000, "a={a} t={t} b={b}");
            prev = t;
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
    }
}
