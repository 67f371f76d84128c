//! The space a queue file takes on its file system: reserved in full when
//! the file is created, and named when it ran out.
//!
//! A queue file is mapped and written through the mapping, so a page the
//! file system cannot give (a full tmpfs, a full disk under a sparse file)
//! is not an error code but a `SIGBUS` at the instruction that touched it,
//! long after the file was created. [`reserve`] therefore allocates every
//! block of a new file up front (`posix_fallocate`) and refuses, with the
//! bytes needed and the bytes free, when they are not there. The creator
//! may opt out ([`Options::sparse`](crate::Options::sparse)); its file's
//! pages are then allocated when first touched, and a `SIGBUS` from a file
//! system that ran out is told from a truncation by [`full_file_system`]:
//! a file whose size still covers the mapping was not truncated.
//!
//! Limits, written down: where the file system has no `fallocate`, glibc's
//! `posix_fallocate` writes a byte into every block instead (slow on a big
//! file, but a reservation all the same); a C library that returns
//! `EOPNOTSUPP` instead leaves the file sparse, as if `sparse` had been
//! asked for. On a copy-on-write file system (btrfs, ZFS) an allocated
//! block may still need a new one when it is first written, so a full disk
//! can still surface later, as [`full_file_system`] reports it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Status};

/// `f_type` of a tmpfs (`TMPFS_MAGIC` in `linux/magic.h`).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The size of a container's default `/dev/shm` (Docker, Podman).
const CONTAINER_SHM: u64 = 64 << 20;

/// What the file system holding a file has room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSpace {
    /// Bytes an unprivileged user may still allocate (`df`'s "Avail").
    pub free: u64,
    /// Bytes free to root, who may use the blocks kept back for it.
    pub free_to_root: u64,
    /// The file system's size in bytes.
    pub size: u64,
    /// Whether it is a tmpfs (memory; its size is its mount option).
    pub tmpfs: bool,
}

/// `statvfs` and `statfs` of the file system holding `file`.
pub fn fs_space(file: &File) -> io::Result<FsSpace> {
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a struct to fill.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut v) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a struct to fill.
    let tmpfs =
        unsafe { libc::fstatfs(file.as_raw_fd(), &mut s) } == 0 && s.f_type as i64 == TMPFS_MAGIC;
    let unit = v.f_frsize as u64;
    Ok(FsSpace {
        free: (v.f_bavail as u64).saturating_mul(unit),
        free_to_root: (v.f_bfree as u64).saturating_mul(unit),
        size: (v.f_blocks as u64).saturating_mul(unit),
        tmpfs,
    })
}

/// How a new file's space was reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Every block is allocated: no access to the mapping can fault for
    /// want of space (on a file system that does not copy on write).
    Whole,
    /// The file system cannot allocate ahead (`EOPNOTSUPP`): the file is
    /// sparse, its pages allocated when first touched.
    Unsupported,
}

/// Allocates the first `len` bytes of the new file `file` (named `path`
/// in errors), growing it to `len`. Refuses with `Io` and a one-line "no
/// space" message naming the bytes needed and free (and a container's
/// 64 MiB `/dev/shm` as such) when the file system cannot hold them. Fast
/// when it cannot: the free space is checked before anything is allocated.
pub fn reserve(file: &File, path: &Path, len: u64) -> Result<Reserved> {
    let ctx = |what: &str| format!("{}: create: {what}", path.display());
    if let Ok(space) = fs_space(file) {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let free = if root { space.free_to_root } else { space.free };
        if len > free {
            return Err(no_space(path, len, Some(space)));
        }
    }
    let Ok(off_len) = libc::off_t::try_from(len) else {
        return Err(Error::new(
            Status::InvalidArgument,
            ctx(&format!("{len} bytes is beyond the largest file offset")),
        ));
    };
    let rc = loop {
        // SAFETY: a valid descriptor of a file we opened for writing; the
        // range is in bounds of off_t (checked above).
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
        if rc != libc::EINTR {
            break rc;
        }
    };
    match rc {
        0 => Ok(Reserved::Whole),
        libc::ENOSPC | libc::EFBIG | libc::EDQUOT => Err(no_space(path, len, fs_space(file).ok())),
        libc::EOPNOTSUPP => Ok(Reserved::Unsupported),
        e => Err(Error::io(
            ctx(&format!("reserving {len} bytes")),
            io::Error::from_raw_os_error(e),
        )),
    }
}

/// The "no space" error of a file `path` that needs `needed` bytes.
fn no_space(path: &Path, needed: u64, space: Option<FsSpace>) -> Error {
    let mut msg = format!(
        "{}: create: no space: the queue needs {needed} bytes ({})",
        path.display(),
        human(needed)
    );
    if let Some(s) = space {
        msg.push_str(&format!(
            " and its file system has {} bytes free ({})",
            s.free,
            human(s.free)
        ));
        if s.tmpfs {
            msg.push_str(&tmpfs_hint(path, s));
            return Error::new(Status::Io, msg);
        }
    }
    msg.push_str(": free some space or make the queue smaller (capacity, max message size)");
    Error::new(Status::Io, msg)
}

/// What to say about the tmpfs holding `path`.
fn tmpfs_hint(path: &Path, s: FsSpace) -> String {
    let dir = directory_of(path);
    if s.size == CONTAINER_SHM {
        format!(
            ": {} is a 64 MiB tmpfs, the default /dev/shm of a container: run the container \
             with a larger --shm-size (docker run --shm-size=1g) or choose another directory",
            dir.display()
        )
    } else {
        format!(
            ": {} is a tmpfs of {} (memory; its size is a mount option): make the queue \
             smaller, remount it larger or choose another directory",
            dir.display(),
            human(s.size)
        )
    }
}

/// The directory a path names its file in, absolute when it can be.
fn directory_of(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Why a mapping of `mapped_len` bytes of `file` faulted when the file
/// still is that long (or longer): it was not truncated, so a page could
/// not be allocated — the file system is full (a sparse file) or the
/// kernel is out of memory for it. `None` when the file is shorter than the
/// mapping (it was truncated) or cannot be examined.
pub fn full_file_system(file: &File, mapped_len: u64) -> Option<String> {
    let len = file.metadata().ok()?.len();
    if len < mapped_len {
        return None;
    }
    let mut msg = String::from(
        "the file system is full: a page of the file could not be allocated when first \
         touched (a sparse file; it was not truncated)",
    );
    if let Ok(s) = fs_space(file) {
        msg.push_str(&format!(", {} bytes free", s.free));
    }
    msg.push_str(
        "; pages past it read as zeros and the queue cannot be trusted any more: \
         free space, then recreate it without sparse",
    );
    Some(msg)
}

/// A byte count for people: `512 B`, `4.0 KiB`, `812.5 MiB` (the command
/// line prints sizes with it too).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_file_is_reserved_whole() {
        let path = std::env::temp_dir().join(format!("shmq-space-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let got = reserve(&file, &path, 1 << 20);
        let len = file.metadata().unwrap().len();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(got, Ok(Reserved::Whole | Reserved::Unsupported)));
        assert_eq!(len, 1 << 20);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(852_000_000), "812.5 MiB");
    }

    #[test]
    fn more_than_the_file_system_holds_is_refused_at_once() {
        let path = std::env::temp_dir().join(format!("shmq-space-big-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let space = fs_space(&file).unwrap();
        // More than the whole file system: refused by the check (or by the
        // allocation) whoever we are.
        let want = space.size.saturating_mul(2).max(1 << 40);
        let got = reserve(&file, &path, want);
        std::fs::remove_file(&path).unwrap();
        let e = got.unwrap_err();
        assert_eq!(e.status(), Status::Io, "{e:?}");
        assert!(e.message().contains("no space"), "{e:?}");
        assert!(
            e.message().contains(&format!("needs {want} bytes")),
            "{e:?}"
        );
        assert!(!e.message().contains('\n'), "one line: {e:?}");
    }
}
