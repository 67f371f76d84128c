//! Who may use a queue file: how it is created and opened, and what an
//! opened file must be before shmq maps it.
//!
//! Owns the open flags, the mode and group of a new file, and the checks on
//! an existing one. The threat is a local user who plants a file (or a
//! symbolic link, FIFO or device) where a queue is expected, for example in
//! the world-writable `/dev/shm`, so that a participant sends its messages
//! into a file the attacker reads, or consumes messages the attacker wrote,
//! or blocks forever in `open`. So:
//!
//! - A new file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`: never an
//!   existing file and never through a link. Its mode is set with `fchmod`
//!   on the new descriptor (0600 unless the caller chose another; the
//!   umask cannot widen or narrow it), its group with `fchown` when asked.
//! - An existing file is opened with `O_NOFOLLOW` (a symbolic link is
//!   refused), `O_NONBLOCK` (opening a FIFO cannot block) and `O_NOCTTY`,
//!   then checked with `fstat` on that descriptor, never on the path, so
//!   there is no window between check and use: it must be a regular file,
//!   owned by the effective uid, and writable by nobody else. The caller
//!   widens this with [`OpenOptions::group_shared`] (a group may write it;
//!   a file of one of our groups may have another owner) or
//!   [`OpenOptions::trust_any_owner`] (any owner and mode).
//! - A refusal is a `Permission` error naming the file, the operation and
//!   the cause.
//!
//! What the checks cannot do: a user who may legitimately write the file
//! can still scribble over the queue; that is survived by validating
//! everything read from the mapping (G10) and by [`crate::sigbus`].

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result, Status};
use crate::options::{Access, OpenOptions, Options};

/// Mode bits that let the file's group write it.
const GROUP_WRITE: u32 = 0o020;
/// Mode bits that let every other user write it.
const OTHER_WRITE: u32 = 0o002;

fn refused(path: &Path, op: &str, cause: impl std::fmt::Display) -> Error {
    Error::new(
        Status::Permission,
        format!("{}: {op}: refused: {cause}", path.display()),
    )
}

/// An error of `open(2)`, with the causes that mean "not a file we may use"
/// turned into `Permission`.
fn open_error(path: &Path, op: &str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => refused(
            path,
            op,
            "it is a symbolic link, and shmq never follows one (O_NOFOLLOW)",
        ),
        Some(libc::EISDIR) => refused(path, op, "it is a directory, not a queue file"),
        Some(libc::ENXIO) | Some(libc::ENODEV) => {
            refused(path, op, format!("it is not a regular file ({e})"))
        }
        Some(libc::EROFS) => refused(path, op, "the file system is read-only"),
        _ => Error::io(format!("{}: {op}: opening the file", path.display()), e),
    }
}

/// Creates a new queue file for `opts`: `O_CREAT | O_EXCL | O_NOFOLLOW`,
/// read-write, then `fchmod` to `opts.mode` and `fchown` to `opts.group`.
/// The file is removed again if the mode or group cannot be set.
pub(crate) fn create_file(path: &Path, opts: &Options) -> Result<File> {
    if opts.mode & !0o777 != 0 {
        return Err(Error::new(
            Status::InvalidArgument,
            format!(
                "{}: create: mode {:o} has bits beyond 0777",
                path.display(),
                opts.mode
            ),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(opts.mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(format!("{}: create", path.display()), e))?;
    let undo = |e: Error| {
        let _ = std::fs::remove_file(path);
        e
    };
    // fchmod on the descriptor: the umask applied by open(2) is undone.
    file.set_permissions(std::fs::Permissions::from_mode(opts.mode))
        .map_err(|e| {
            undo(Error::io(
                format!("{}: create: setting mode {:04o}", path.display(), opts.mode),
                e,
            ))
        })?;
    if let Some(gid) = opts.group {
        // SAFETY: a valid descriptor; uid -1 keeps the owner.
        let r = unsafe { libc::fchown(file.as_raw_fd(), u32::MAX, gid) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(undo(Error::io(
                format!(
                    "{}: create: giving the file to group {gid} (the creator must belong to it)",
                    path.display()
                ),
                e,
            )));
        }
    }
    Ok(file)
}

/// Opens an existing queue file for `access`: `O_NOFOLLOW | O_NONBLOCK |
/// O_NOCTTY | O_CLOEXEC`, read-write for a participant, read-only for a
/// read-only handle, and for an inspection read-write when the process may
/// write the file, else read-only. Returns the file and whether it was
/// opened for writing. Checks nothing about the file yet: see
/// [`check_file`].
pub(crate) fn open_file(path: &Path, access: Access) -> Result<(File, bool)> {
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
    };
    match access {
        Access::Participant => open(true)
            .map(|f| (f, true))
            .map_err(|e| open_error(path, "open", e)),
        Access::ReadOnly => open(false)
            .map(|f| (f, false))
            .map_err(|e| open_error(path, "open", e)),
        Access::Inspect => match open(true) {
            Ok(f) => Ok((f, true)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
                ) =>
            {
                open(false)
                    .map(|f| (f, false))
                    .map_err(|e| open_error(path, "open", e))
            }
            Err(e) => Err(open_error(path, "open", e)),
        },
    }
}

/// What a file that is not a regular file is.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Checks an opened file with `fstat` on its descriptor: a regular file,
/// owned by the effective uid (or, with `group_shared`, belonging to one of
/// our groups), writable by nobody beyond what `opts` accepts. Clears
/// `O_NONBLOCK` on success. Returns the file's metadata.
pub(crate) fn check_file(file: &File, path: &Path, opts: &OpenOptions) -> Result<Metadata> {
    const OP: &str = "open";
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("{}: {OP}: fstat", path.display()), e))?;
    if !meta.file_type().is_file() {
        return Err(refused(
            path,
            OP,
            format!("it is {}, not a regular file", kind(&meta)),
        ));
    }
    if !opts.trust_any_owner {
        let me = effective_uid();
        if meta.uid() != me && !(opts.group_shared && in_our_groups(meta.gid())) {
            return Err(refused(
                path,
                OP,
                format!(
                    "the file is owned by uid {}, not by this process's effective uid {me} \
                     (accept it with trust_any_owner, or with group_shared when the file's \
                     group {} is one of ours)",
                    meta.uid(),
                    meta.gid()
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & OTHER_WRITE != 0 {
            return Err(refused(
                path,
                OP,
                format!(
                    "mode {mode:04o} lets every user write the file (accept it with trust_any_owner)"
                ),
            ));
        }
        if mode & GROUP_WRITE != 0 && !opts.group_shared {
            return Err(refused(
                path,
                OP,
                format!(
                    "mode {mode:04o} lets group {} write the file (accept a queue shared \
                     with a group with group_shared)",
                    meta.gid()
                ),
            ));
        }
    }
    // Back to blocking mode: O_NONBLOCK only guarded the open itself.
    // SAFETY: a valid descriptor; F_GETFL/F_SETFL take and return flags.
    unsafe {
        let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Ok(meta)
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether `gid` is this process's effective group or one of its
/// supplementary groups.
pub fn in_our_groups(gid: u32) -> bool {
    // SAFETY: getegid cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: a count query with a null list.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return false;
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: the buffer holds `n` entries.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    got > 0 && groups[..got as usize].contains(&gid)
}

/// The id of a group given by name or by number (for [`Options::group`]).
pub fn group_id(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let c = CString::new(name).map_err(|_| {
        Error::new(
            Status::InvalidArgument,
            format!("group {name:?}: holds a NUL byte"),
        )
    })?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: group is plain old data; all-zero is a valid value.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid name, struct, buffer of the given length and out
        // pointer; getgrnam_r writes only within them.
        let r = unsafe {
            libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out)
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if r != 0 {
            return Err(Error::io(
                format!("group {name:?}: looking it up"),
                io::Error::from_raw_os_error(r),
            ));
        }
        if out.is_null() {
            return Err(Error::new(
                Status::NotFound,
                format!("group {name:?}: no such group"),
            ));
        }
        return Ok(grp.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_number_and_name() {
        assert_eq!(group_id("0").unwrap(), 0);
        assert_eq!(group_id("root").unwrap(), 0);
        assert_eq!(
            group_id("no-such-group-shmq").unwrap_err().status(),
            Status::NotFound
        );
        // SAFETY: getegid cannot fail.
        assert!(in_our_groups(unsafe { libc::getegid() }));
    }
}
