//! Scratch files: queue files and directories under `/dev/shm` (the temp
//! directory where there is none), unique per process and call, removed
//! when their guard is dropped, however the test ends; and a small tmpfs to
//! fill on purpose ([`SmallTmpfs`], root only).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where scratch files go: `/dev/shm` when there is one.
pub fn base_dir() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

/// Hands out the N of scratch names.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh path `shmq-TAG-PID-N` in [`base_dir`]; nothing is created.
pub fn unique_path(tag: &str) -> PathBuf {
    // Relaxed: the counter only has to hand out distinct numbers.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    base_dir().join(format!("shmq-{tag}-{}-{n}", std::process::id()))
}

/// Removes the path (a file, link, FIFO, socket or empty directory) when
/// dropped.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0).or_else(|_| std::fs::remove_dir(&self.0));
    }
}

/// A directory (for ledgers, hand-shake files, runs) and a queue file
/// beside it, both removed with everything in them when dropped.
pub struct Scratch {
    /// The directory, created empty.
    pub dir: PathBuf,
    /// The queue file's path; not created.
    pub queue: PathBuf,
}

impl Scratch {
    /// A fresh pair named after `name`.
    pub fn new(name: &str) -> Scratch {
        let stem = unique_path(name);
        let dir = stem.with_extension("d");
        let queue = stem.with_extension("q");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&queue);
        std::fs::create_dir(&dir).expect("create the scratch directory");
        Scratch { dir, queue }
    }

    /// A path in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.queue);
    }
}

/// A small tmpfs mounted on a fresh directory for one test, to fill a file
/// system on purpose; unmounted and removed when dropped.
pub struct SmallTmpfs {
    /// The mount point.
    pub dir: PathBuf,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `mib` MiB (`mount -t tmpfs -o size=MIBm`). Only
    /// root may: `None` otherwise, or when the mount fails (a container
    /// without the capability), after printing why the caller skips.
    pub fn mount(name: &str, mib: u64) -> Option<SmallTmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a {mib} MiB tmpfs needs root (the CI runs as root)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "shmq-tmpfs-{name}-{}-{}",
            std::process::id(),
            // Relaxed: only distinct numbers are needed.
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,mode=0700"))
            .arg("tmpfs")
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallTmpfs { dir }),
            other => {
                let _ = std::fs::remove_dir(&dir);
                eprintln!("skipped: cannot mount a tmpfs: {other:?}");
                None
            }
        }
    }

    /// A path in the file system.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        // Lazy: a handle a failed test leaves open does not keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
