//! The operating-system calls shmq needs and std does not offer: futexes on
//! shared memory, open-file-description locks, the boot id, process start
//! times and the monotonic clock. Linux only.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout` (None = forever).
/// Returns on a wake, a timeout, a signal or a value mismatch; the caller
/// re-checks its condition in every case. Uses the shared futex (no
/// `FUTEX_PRIVATE_FLAG`), so a wake from another process reaches us.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call;
    // FUTEX_WAIT only reads it. The timespec outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes up to `count` processes sleeping on `word`.
pub fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access it
    // beyond using its address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn flock_for(byte: u64, kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl.l_pid = 0;
    fl
}

/// Takes an open-file-description write lock on one byte of the file, without
/// waiting. `Ok(false)` if another description holds it. The kernel drops the
/// lock when the last descriptor of this description closes, which is how a
/// dead process is told from a live one.
pub fn ofd_try_lock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = flock_for(byte, libc::F_WRLCK as libc::c_short);
    // SAFETY: valid descriptor and a valid flock struct.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Releases a lock taken by [`ofd_try_lock`].
pub fn ofd_unlock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    let mut fl = flock_for(byte, libc::F_UNLCK as libc::c_short);
    // SAFETY: valid descriptor and flock.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether an open file description other than `fd`'s holds a lock on the
/// byte. Probing a byte that `fd`'s own description locks answers `false`,
/// so callers never probe their own byte.
pub fn ofd_locked_by_other(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = flock_for(byte, libc::F_WRLCK as libc::c_short);
    // SAFETY: valid descriptor and flock; F_OFD_GETLK writes into it.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// The kernel's boot id as two words; changes at every boot.
pub fn boot_id() -> [u64; 2] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let lo = u64::from_str_radix(hex.get(0..16).unwrap_or("0"), 16).unwrap_or(0);
    let hi = u64::from_str_radix(hex.get(16..32).unwrap_or("0"), 16).unwrap_or(0);
    [lo, hi]
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if there is no such process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process with this pid exists (it may be a reused pid).
pub fn pid_exists(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's id as of its last `fork()`: set by [`watch_forks`] and,
/// in a forked child, by the `pthread_atfork` hook it installs.
static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn forked_child() {
    // SAFETY: getpid is async-signal-safe, as the child side of fork
    // requires, and has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    // Relaxed: the child has one thread now; later threads are started
    // after this store (thread creation synchronizes).
    PID.store(pid, Ordering::Relaxed);
}

/// Starts keeping [`current_pid`] right across `fork()` (once per process,
/// before the first handle is made). Returns this process's id.
pub fn watch_forks() -> u32 {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Relaxed: `Once` publishes it to every caller after us.
        PID.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: registers a hook that only calls getpid and stores an
        // atomic, both async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
    current_pid()
}

/// This process's id, without a system call (0 before [`watch_forks`]).
/// A child made by `fork()` reads its own id here; one made by a raw
/// `clone` system call, which skips the fork hooks, reads its parent's.
#[inline]
pub fn current_pid() -> u32 {
    // Relaxed: written once per process and once per fork, before any
    // handle of this process can be used (see `forked_child`).
    PID.load(Ordering::Relaxed)
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no system call): the clock
/// of [`Message::enqueued_ns`](crate::Message::enqueued_ns) and
/// [`Message::claimed_ns`](crate::Message::claimed_ns).
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A random, nonzero 64-bit id for a new file: from the kernel's random
/// source (`getrandom`), or, should that fail, the time, the process id
/// and the address of a stack slot mixed together (unique enough to tell
/// files apart, not a secret).
pub fn random_file_id() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is 8 writable bytes, and getrandom writes at most the
    // length it is given.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let mut id = if n == buf.len() as isize {
        u64::from_ne_bytes(buf)
    } else {
        let local = 0u8;
        let mut x = unix_ns()
            ^ (u64::from(std::process::id()) << 32)
            ^ (&local as *const u8 as u64).rotate_left(17);
        // splitmix64's finaliser spreads the bits.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    if id == 0 {
        id = 1;
    }
    id
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn ofd_locks_tell_descriptions_apart() {
        let dir = std::env::temp_dir().join(format!("shmq-sys-{}", std::process::id()));
        std::fs::write(&dir, b"x").unwrap();
        let a = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dir)
            .unwrap();
        let b = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dir)
            .unwrap();
        assert!(ofd_try_lock(a.as_fd(), 5).unwrap());
        assert!(!ofd_try_lock(b.as_fd(), 5).unwrap());
        assert!(ofd_locked_by_other(b.as_fd(), 5).unwrap());
        assert!(!ofd_locked_by_other(b.as_fd(), 6).unwrap());
        drop(a);
        assert!(!ofd_locked_by_other(b.as_fd(), 5).unwrap());
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn process_facts() {
        let me = std::process::id();
        assert!(pid_exists(me));
        assert!(process_start_time(me).is_some());
        assert!(!pid_exists(0));
        assert_ne!(boot_id(), [0, 0]);
        let t = monotonic_ns();
        assert!(monotonic_ns() >= t);
    }

    #[test]
    fn the_pid_is_kept_right_in_a_forked_child() {
        let me = watch_forks();
        assert_eq!(me, std::process::id());
        // SAFETY: the child only reads atomics, calls getpid and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: getpid has no preconditions.
            let real = unsafe { libc::getpid() } as u32;
            let code = if current_pid() == real && real != me {
                0
            } else {
                1
            };
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(current_pid(), me);
    }

    #[test]
    fn futex_wait_times_out_and_mismatch_returns() {
        let w = AtomicU32::new(1);
        futex_wait(&w, 0, Some(Duration::from_secs(5))); // mismatch: returns at once
        let t = std::time::Instant::now();
        futex_wait(&w, 1, Some(Duration::from_millis(5)));
        assert!(t.elapsed() >= Duration::from_millis(4));
        futex_wake(&w, 1);
    }
}
