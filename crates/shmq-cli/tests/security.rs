//! The command line on hostile files and permissions: it reads a queue it
//! may only read (as `nobody` when the tests run as root), and creates and
//! opens group-shared queues.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use shmq::{Options, Queue, Timeout};
use shmq_testkit::{unique_path, TempFile};

/// The uid and gid of `nobody` on Linux.
const NOBODY: u32 = 65534;

/// A fresh path for a scratch file of this test.
fn scratch(tag: &str) -> PathBuf {
    unique_path(&format!("sec-{tag}"))
}

fn fresh(tag: &str) -> TempFile {
    let path = scratch(tag);
    let opts = Options {
        capacity: 16,
        max_message_size: 64,
        key_capacity: 4,
        ..Options::default()
    };
    drop(Queue::create(&path, &opts).expect("create"));
    TempFile(path)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// The `shmq` binary at a place `nobody` can reach: the build's own copy
/// lives under the checkout, which may sit in a directory only its owner
/// may enter (as /root and every `mktemp -d` are), so it is copied once into
/// a fresh directory of mode 0755 under the system's temporary directory.
fn binary_for_nobody() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shmq-cli-bin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the binary's directory");
        chmod(&dir, 0o755);
        let bin = dir.join("shmq");
        std::fs::copy(env!("CARGO_BIN_EXE_shmq"), &bin).expect("copying the shmq binary");
        chmod(&bin, 0o755);
        bin
    })
}

/// Runs the `shmq` command line, as `nobody` when `as_nobody`.
fn shmq_cli(args: &[&str], as_nobody: bool) -> Output {
    let mut cmd = if as_nobody {
        Command::new(binary_for_nobody())
    } else {
        Command::new(env!("CARGO_BIN_EXE_shmq"))
    };
    cmd.args(args);
    if as_nobody {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let groups = [NOBODY];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(NOBODY) != 0
                    || libc::setuid(NOBODY) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // The copy made for nobody may be refused with ETXTBSY for a moment: a
    // test thread that forked while the copy was open for writing holds the
    // writable descriptor until its child execs.
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => return r.expect("running shmq"),
        }
    }
    panic!("running shmq: the binary stayed busy (ETXTBSY) for a second")
}

#[test]
fn the_command_line_reads_a_queue_it_may_only_read() {
    let f = fresh("cli-ro");
    let path = f.0.to_str().unwrap();
    {
        let q = Queue::open(&f.0).unwrap();
        q.send(b"waiting", Timeout::TryOnce).unwrap();
    }
    // As root, the file is given to nobody and the commands run as nobody:
    // the owner matches, the mode forbids writing.
    let as_nobody = is_root();
    if as_nobody {
        chown(&f.0, NOBODY, NOBODY);
    }
    for mode in [0o400, 0o440] {
        chmod(&f.0, mode);
        let before = std::fs::read(&f.0).unwrap();
        for cmd in [
            &["stats", path, "--json"][..],
            &["info", path],
            &["verify", path],
        ] {
            let out = shmq_cli(cmd, as_nobody);
            assert!(
                out.status.success(),
                "shmq {cmd:?} on a mode {mode:o} file: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = shmq_cli(&["stats", path, "--json"], as_nobody);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["depth"], 1, "{v}");
        // Changing the queue is refused with the cause.
        let out = shmq_cli(&["send", path, "no"], as_nobody);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("PERMISSION") && err.contains(path), "{err}");
        assert_eq!(
            std::fs::read(&f.0).unwrap(),
            before,
            "a reader changed the file"
        );
    }
    if !as_nobody {
        eprintln!("note: ran as the file's owner; the owner check needs root to test");
    } else {
        // nobody may read root's queue (mode 0444) but does not open it
        // without saying it trusts the owner.
        chown(&f.0, 0, 0);
        chmod(&f.0, 0o444);
        let out = shmq_cli(&["stats", path], true);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("owned by uid 0"), "{err}");
        let out = shmq_cli(&["stats", path, "--trust-any-owner"], true);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_command_line_creates_and_opens_group_shared_queues() {
    let q = TempFile(scratch("cli-group"));
    let path = q.0.to_str().unwrap();
    // SAFETY: getegid cannot fail.
    let gid = unsafe { libc::getegid() }.to_string();
    let out = shmq_cli(&["create", path, "--mode", "0660", "--group", &gid], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::metadata(&q.0).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid().to_string()), (0o660, gid));
    // Without --group-shared a group-writable queue is refused, with the
    // way out named.
    let out = shmq_cli(&["send", path, "hello"], false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PERMISSION") && err.contains("--group-shared"),
        "{err}"
    );
    let out = shmq_cli(&["send", path, "hello", "--group-shared"], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = shmq_cli(
        &["stats", path, "--json", "--read-only", "--group-shared"],
        false,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["depth"], 1, "{v}");
    let out = shmq_cli(&["recv", path, "--group-shared"], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
    // An unknown group is an error naming the file and the group.
    let r = scratch("cli-nogroup");
    let rp = r.to_str().unwrap();
    let out = shmq_cli(&["create", rp, "--group", "no-such-group-shmq"], false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(rp) && err.contains("no-such-group-shmq"),
        "{err}"
    );
    assert!(!r.exists());
}
