//! Operating-system helpers of the bench: CPU pinning, spawning peers,
//! busy-polled socket and pipe I/O, CPU time of a process, shared words.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Pins the calling thread to `cpu` (ignored when the CPU does not exist).
pub fn pin(cpu: i32) {
    if cpu < 0 {
        return;
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set for cpu < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu as usize % libc::CPU_SETSIZE as usize, &mut set) };
    // SAFETY: valid set pointer and size; 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

/// Lets the calling thread (and the processes it starts, which inherit its
/// affinity) run on every CPU again.
pub fn unpin() {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..cpus() {
        // SAFETY: CPU_SET writes inside the set for cpu < CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set) };
    }
    // SAFETY: valid set pointer and size; 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

/// Number of CPUs of the machine (not only those this thread may use).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// A started peer process.
pub struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts `shmq __bench-peer ARGS...` and waits for its `ready`.
    pub fn start(args: &[String]) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("__bench-peer").args(args);
        Peer::spawn(cmd, args.first().map_or("", String::as_str))
    }

    /// Starts `cmd`, a peer of another language that speaks the same
    /// protocol (`ready`, then `done COUNT ELAPSED_NS EXTRA`), and waits for
    /// its `ready`. `what` names it in errors.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Peer, String> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting bench peer {what:?}: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no peer stdout")?);
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("bench peer {what:?} did not start: {line:?}"));
        }
        Ok(Peer { child, out })
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the result line: (count, elapsed ns, extra).
    pub fn finish(mut self) -> Result<(u64, u64, String), String> {
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("bench peer failed ({status})"));
        }
        let mut it = line.split_whitespace();
        if it.next() != Some("done") {
            return Err(format!("bench peer said {line:?}"));
        }
        let count = it.next().and_then(|s| s.parse().ok()).ok_or("bad count")?;
        let ns = it
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("bad elapsed")?;
        Ok((count, ns, it.next().unwrap_or("").to_string()))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system) of a process, in clock ticks.
/// CPU time of every thread of process `pid` in nanoseconds, from the
/// scheduler's own account (`/proc/PID/task/*/schedstat`, first field:
/// nanoseconds on a CPU). Exact, unlike the clock ticks of `/proc/PID/stat`
/// (10 ms each: over a quiet second they can only say 0%, 1%, 2%...).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let s = std::fs::read_to_string(path).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

/// CPU time (user + system) of process `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A memory figure of the calling process in KiB: a field of
/// `/proc/self/status` such as `VmRSS` (resident) or `RssAnon` (resident,
/// not backed by a file: the heap and the stacks).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Clock ticks per second.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// A socket pair or pipe whose ends stay open across exec (no CLOEXEC).
pub fn socketpair() -> Result<(i32, i32), String> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    if r != 0 {
        return Err(format!("socketpair: {}", std::io::Error::last_os_error()));
    }
    nonblocking(fds[0]);
    nonblocking(fds[1]);
    Ok((fds[0], fds[1]))
}

/// A pipe (read end, write end), both non-blocking, inherited by children.
pub fn pipe() -> Result<(i32, i32), String> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    nonblocking(fds[0]);
    nonblocking(fds[1]);
    Ok((fds[0], fds[1]))
}

fn nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Closes a descriptor.
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// Reads exactly `buf.len()` bytes, spinning on EAGAIN.
pub fn read_exact_spin(fd: i32, buf: &mut [u8]) -> Result<(), String> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the buffer range is valid for writes.
        let n = unsafe { libc::read(fd, buf[off..].as_mut_ptr().cast(), buf.len() - off) };
        if n > 0 {
            off += n as usize;
        } else if n == 0 {
            return Err("peer closed".into());
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(format!("read: {e}"));
            }
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// Writes all of `buf`, spinning on EAGAIN.
pub fn write_all_spin(fd: i32, buf: &[u8]) -> Result<(), String> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the buffer range is valid for reads.
        let n = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if n >= 0 {
            off += n as usize;
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(format!("write: {e}"));
            }
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// Two words at the start of a small shared mapping: a futex word and a
/// timestamp, for the bare futex hop.
pub struct SharedWords<'a> {
    base: *mut u8,
    _map: std::marker::PhantomData<&'a memmap2::MmapRaw>,
}

impl<'a> SharedWords<'a> {
    /// The words of `map` (at least 16 bytes).
    pub fn new(map: &'a memmap2::MmapRaw) -> Self {
        assert!(map.len() >= 16);
        SharedWords {
            base: map.as_mut_ptr(),
            _map: std::marker::PhantomData,
        }
    }
    /// The futex word (offset 0).
    pub fn futex(&self) -> &AtomicU32 {
        // SAFETY: in bounds (checked at construction), page-aligned base;
        // accessed only atomically by both processes.
        unsafe { AtomicU32::from_ptr(self.base.cast()) }
    }
    /// The timestamp (offset 8).
    pub fn stamp(&self) -> &AtomicU64 {
        // SAFETY: as for `futex`, at offset 8 (8-aligned).
        unsafe { AtomicU64::from_ptr(self.base.add(8).cast()) }
    }
}
