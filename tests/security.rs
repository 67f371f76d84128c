//! Hostile files and permissions (issue 7): who can do what through a queue
//! file. The mode and group of new files; the checks on files that are not
//! regular, belong to another user or may be written by others; read-only
//! handles that never write; and files truncated or grown by another
//! process while they are mapped, which give errors or keep working but
//! never crash or hang the process.
//!
//! Every scenario that could hang runs under a watchdog. The owner checks
//! against another uid need a second user: when the tests run as root they
//! give the file to `nobody` (chown; nothing here runs as `nobody`, so where
//! the checkout lives does not matter); otherwise those parts say they were
//! skipped. The automatic read-only fallback as root is shown by the command
//! line run as `nobody`, in crates/shmq-cli/tests/security.rs.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use shmq::internals::layout::Layout;
use shmq::internals::memory::Memory;
use shmq::{Access, OpenOptions, Options, Queue, Status, Timeout};
use shmq_testkit::{unique_path, TempFile};

/// The uid and gid of `nobody` on Linux.
const NOBODY: u32 = 65534;

/// How long one scenario may take before it counts as a hang.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A fresh path for a scratch file of this test.
fn scratch(tag: &str) -> PathBuf {
    unique_path(&format!("sec-{tag}"))
}

fn small() -> Options {
    Options {
        capacity: 16,
        max_message_size: 64,
        key_capacity: 4,
        ..Options::default()
    }
}

fn fresh(tag: &str) -> (TempFile, Layout) {
    let path = scratch(tag);
    let q = Queue::create(&path, &small()).expect("create");
    let l = *q.layout();
    drop(q);
    (TempFile(path), l)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Runs `f` on its own thread; fails if it panics or outlives the watchdog.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => {
            h.join().unwrap();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {WATCHDOG:?}: a hang")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(h.join().expect_err("no value and no panic"))
        }
    }
}

/// The error of `r`, which must be one.
fn error_of<T: std::fmt::Debug>(r: shmq::Result<T>, what: &str) -> shmq::Error {
    match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}) but should have failed"),
        Err(e) => e,
    }
}

/// Asserts `r` failed with `status` and a message naming the file, the
/// operation and the cause.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    r: shmq::Result<T>,
    status: Status,
    path: &Path,
    op: &str,
    cause: &str,
) {
    let e = error_of(r, op);
    assert_eq!(e.status(), status, "{op}: {e:?}");
    let m = e.message();
    let p = path.display().to_string();
    assert!(
        m.contains(&p),
        "{op}: the message does not name the file: {m}"
    );
    assert!(
        m.contains(op),
        "{op}: the message does not name the operation: {m}"
    );
    assert!(
        m.contains(cause),
        "{op}: the message does not say {cause:?}: {m}"
    );
}

// ----------------------------------------------------------------------
// Creating
// ----------------------------------------------------------------------

#[test]
fn new_files_get_exactly_the_chosen_mode_whatever_the_umask() {
    // The umask is process-wide: set it to the two extremes around creates
    // (another test of this binary creating at the same time only gets a
    // different mode on its own scratch file).
    for umask in [0o000, 0o077] {
        // SAFETY: umask cannot fail.
        let old = unsafe { libc::umask(umask) };
        let a = TempFile(scratch("mode"));
        let b = TempFile(scratch("mode-group"));
        let qa = Queue::create(&a.0, &small());
        let qb = Queue::create(&b.0, &small().group_shared(None));
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        drop((qa.unwrap(), qb.unwrap()));
        assert_eq!(mode_of(&a.0), 0o600, "umask {umask:o}");
        assert_eq!(mode_of(&b.0), 0o660, "umask {umask:o}");
        // SAFETY: getegid cannot fail.
        assert_eq!(std::fs::metadata(&b.0).unwrap().gid(), unsafe {
            libc::getegid()
        });
    }
}

#[test]
fn a_new_file_is_given_to_the_chosen_group() {
    // SAFETY: getegid cannot fail.
    let mine = unsafe { libc::getegid() };
    let a = TempFile(scratch("group-mine"));
    drop(Queue::create(&a.0, &small().group_shared(Some(mine))).unwrap());
    assert_eq!(std::fs::metadata(&a.0).unwrap().gid(), mine);
    assert_eq!(
        shmq::internals::permissions::group_id(&mine.to_string()).unwrap(),
        mine
    );
    if is_root() {
        let b = TempFile(scratch("group-nogroup"));
        drop(Queue::create(&b.0, &small().group_shared(Some(NOBODY))).unwrap());
        let m = std::fs::metadata(&b.0).unwrap();
        assert_eq!((m.gid(), m.mode() & 0o777), (NOBODY, 0o660));
    } else {
        // A group we are not in: refused, and no file is left behind.
        let b = scratch("group-root");
        let gid = 0;
        if !shmq::internals::permissions::in_our_groups(gid) {
            let e = error_of(
                Queue::create(&b, &small().group_shared(Some(gid))),
                "create",
            );
            assert_eq!(e.status(), Status::Permission, "{e:?}");
            assert!(e.message().contains("group 0"), "{e:?}");
            assert!(!b.exists(), "a refused create left its file");
        }
    }
}

#[test]
fn create_never_follows_or_replaces_an_existing_path() {
    let (target, _) = fresh("create-target");
    let before = std::fs::read(&target.0).unwrap();
    let link = TempFile(scratch("create-link"));
    std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
    let dangling = TempFile(scratch("create-dangling"));
    std::os::unix::fs::symlink(scratch("nowhere"), &dangling.0).unwrap();
    for p in [&target.0, &link.0, &dangling.0] {
        let e = error_of(Queue::create(p, &small()), "create");
        assert_eq!(e.status(), Status::Exists, "{}: {e:?}", p.display());
    }
    assert_eq!(std::fs::read(&target.0).unwrap(), before);
    assert!(std::fs::symlink_metadata(&dangling.0)
        .unwrap()
        .file_type()
        .is_symlink());
}

// ----------------------------------------------------------------------
// Opening: what the file is, who owns it, who may write it
// ----------------------------------------------------------------------

const EVERY_ACCESS: [Access; 3] = [Access::Participant, Access::Inspect, Access::ReadOnly];

#[test]
fn open_refuses_what_is_not_a_regular_file() {
    bounded("not regular files", || {
        let (target, _) = fresh("link-target");
        let link = TempFile(scratch("link"));
        std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
        let dir = TempFile(scratch("dir"));
        std::fs::create_dir(&dir.0).unwrap();
        let fifo = TempFile(scratch("fifo"));
        let c = std::ffi::CString::new(fifo.0.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let sock = TempFile(scratch("socket"));
        let _listener = std::os::unix::net::UnixListener::bind(&sock.0).unwrap();
        let cases: [(&Path, &str); 5] = [
            (&link.0, "symbolic link"),
            (&dir.0, "directory"),
            // Without O_NONBLOCK a read-only open of a FIFO would block
            // until a writer came: the watchdog would catch that.
            (&fifo.0, "FIFO"),
            (&sock.0, "not a regular file"),
            (Path::new("/dev/null"), "character device"),
        ];
        for (path, cause) in cases {
            for access in EVERY_ACCESS {
                let opts = OpenOptions::new().access(access).trust_any_owner(true);
                assert_refused(
                    Queue::open_with(path, &opts),
                    Status::Permission,
                    path,
                    "open",
                    cause,
                );
            }
        }
        // The target itself is fine.
        Queue::open(&target.0).unwrap();
    });
}

#[test]
fn open_refuses_files_others_may_write_unless_told_to_accept_them() {
    let (f, _) = fresh("modes");
    let path = &f.0;
    let open = |o: OpenOptions| Queue::open_with(path, &o).map(drop);
    for mode in [0o602, 0o606, 0o622, 0o666] {
        chmod(path, mode);
        for access in EVERY_ACCESS {
            let o = OpenOptions::new().access(access);
            assert_refused(open(o), Status::Permission, path, "open", "every user");
            assert_refused(
                open(o.group_shared(true)),
                Status::Permission,
                path,
                "open",
                "every user",
            );
            open(o.trust_any_owner(true)).unwrap();
        }
    }
    for mode in [0o620, 0o660, 0o670] {
        chmod(path, mode);
        for access in EVERY_ACCESS {
            let o = OpenOptions::new().access(access);
            assert_refused(open(o), Status::Permission, path, "open", "group_shared");
            open(o.group_shared(true)).unwrap();
            open(o.trust_any_owner(true)).unwrap();
        }
    }
    // Readable by others is not a risk to the queue: accepted.
    chmod(path, 0o644);
    open(OpenOptions::new()).unwrap();
    // A group-shared queue works as one for its members.
    chmod(path, 0o660);
    let o = OpenOptions::new().group_shared(true);
    let a = Queue::open_with(path, &o).unwrap();
    let b = Queue::open_with(path, &o).unwrap();
    a.send(b"shared", Timeout::TryOnce).unwrap();
    let m = b.claim(Timeout::TryOnce).unwrap();
    assert_eq!(m.data().unwrap(), b"shared");
    m.ack().unwrap();
}

#[test]
fn open_refuses_a_file_of_another_user_unless_told_to_accept_it() {
    if !is_root() {
        eprintln!(
            "skipped: checking the owner needs a file of another user, which only root can make \
             (chown); the check itself is the same code as for the modes"
        );
        return;
    }
    let (f, _) = fresh("owner");
    let path = &f.0;
    let open = |o: OpenOptions| Queue::open_with(path, &o).map(drop);
    chown(path, NOBODY, NOBODY);
    for access in EVERY_ACCESS {
        let o = OpenOptions::new().access(access);
        assert_refused(
            open(o),
            Status::Permission,
            path,
            "open",
            "owned by uid 65534",
        );
        // The file's group is not one of ours either.
        assert_refused(
            open(o.group_shared(true)),
            Status::Permission,
            path,
            "open",
            "owned by uid 65534",
        );
        open(o.trust_any_owner(true)).unwrap();
    }
    // Another user's file in one of our groups: a group-shared queue.
    chown(path, NOBODY, 0);
    chmod(path, 0o660);
    assert_refused(
        open(OpenOptions::new()),
        Status::Permission,
        path,
        "open",
        "owned by uid 65534",
    );
    open(OpenOptions::new().group_shared(true)).unwrap();
}

// ----------------------------------------------------------------------
// Read-only handles
// ----------------------------------------------------------------------

/// The permissions of the mapping of `path` in this process, from
/// /proc/self/maps (e.g. "r--s").
fn mapping_perms(path: &Path) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let p = path.display().to_string();
    maps.lines()
        .filter(|l| l.ends_with(&p))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn a_read_only_handle_reads_everything_and_changes_nothing() {
    let (f, _) = fresh("read-only");
    let path = &f.0;
    let writer = Queue::open(path).unwrap();
    for i in 0..3u8 {
        writer.send(&[i; 8], Timeout::TryOnce).unwrap();
    }
    writer
        .claim(Timeout::TryOnce)
        .unwrap()
        .reject("poison")
        .unwrap();
    let held = writer.claim(Timeout::TryOnce).unwrap();
    let before = std::fs::read(path).unwrap();

    let ro = Queue::open_with(path, &OpenOptions::read_only()).unwrap();
    assert!(ro.read_only());
    assert_eq!(ro.participant(), None);
    // Mapped PROT_READ, shared: a stray write would fault, not land.
    let perms = mapping_perms(path);
    assert!(
        perms.contains(&"r--s".to_string()),
        "mappings of the file: {perms:?}"
    );
    // Reading works.
    let s = ro.stats();
    assert_eq!((s.depth, s.in_flight, s.dead_letters), (1, 1, 1));
    assert_eq!(s.participants, 1);
    assert!(ro.verify().problems.is_empty(), "{:?}", ro.verify());
    let dl = ro.dlq_list();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, "poison");
    assert_eq!(ro.dlq_get(dl[0].id).unwrap().payload, vec![0u8; 8]);
    assert_eq!(ro.participants().len(), 1);
    assert_eq!(ro.layout().params.capacity, 16);
    ro.flush().unwrap();
    // Its engine is the one over memory that only loads: the door gives no
    // read-write engine for it (the type refuses a store at compile time;
    // see the closed routes' doctests).
    assert!(writer.read_only_engine().is_none());
    let e = ro.read_only_engine().expect("a read-only handle's engine");
    assert_eq!(e.capacity(), 16);
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ro.engine();
    }))
    .is_err());
    // Every change is refused, naming the file, the operation and why.
    let cause = "read-only";
    let p = path.as_path();
    assert_refused(
        ro.send(b"x", Timeout::TryOnce),
        Status::Permission,
        p,
        "send",
        cause,
    );
    assert_refused(
        ro.send_batch(&[b"x"], Timeout::TryOnce),
        Status::Permission,
        p,
        "send_batch",
        cause,
    );
    assert_refused(
        ro.reserve(4, Timeout::TryOnce).map(|r| r.position()),
        Status::Permission,
        p,
        "reserve",
        cause,
    );
    assert_refused(
        ro.claim(Timeout::TryOnce),
        Status::Permission,
        p,
        "claim",
        cause,
    );
    assert_refused(
        ro.claim(Timeout::Forever),
        Status::Permission,
        p,
        "claim",
        cause,
    );
    assert_refused(
        ro.claim_batch(4, Timeout::TryOnce),
        Status::Permission,
        p,
        "claim_batch",
        cause,
    );
    assert_refused(
        ro.settle(
            held.token(),
            &shmq::internals::ring::Outcome::Ack,
            None,
            None,
        ),
        Status::Permission,
        p,
        "ack",
        cause,
    );
    assert_refused(
        ro.dlq_redrive(None),
        Status::Permission,
        p,
        "dlq redrive",
        cause,
    );
    assert_refused(
        ro.dlq_purge(None),
        Status::Permission,
        p,
        "dlq purge",
        cause,
    );
    assert_refused(ro.recover(), Status::Permission, p, "recover", cause);
    assert_refused(ro.evict_keys(), Status::Permission, p, "evict_keys", cause);
    assert_refused(
        ro.read_payload(held.token(), &mut [0u8; 64]),
        Status::Permission,
        p,
        "read",
        cause,
    );
    drop(ro);
    // Not one byte of the file changed: no participant entry, no lock
    // state, no counter.
    assert!(
        std::fs::read(path).unwrap() == before,
        "the read-only handle wrote to the file"
    );
    // The writer is unaffected.
    held.ack().unwrap();
    assert_eq!(
        writer.claim(Timeout::TryOnce).unwrap().data().unwrap(),
        vec![2u8; 8]
    );
}

#[test]
fn an_inspection_handle_is_read_only_exactly_when_the_file_is_not_writable() {
    let (f, _) = fresh("inspect");
    let q = Queue::inspect(&f.0).unwrap();
    assert!(!q.read_only());
    drop(q);
    if is_root() {
        // Root may write any file: the fallback is shown by the command
        // line run as nobody (crates/shmq-cli/tests/security.rs).
        return;
    }
    for mode in [0o400, 0o440] {
        chmod(&f.0, mode);
        assert_refused(Queue::open(&f.0), Status::Permission, &f.0, "open", "");
        let q = Queue::inspect(&f.0).unwrap();
        assert!(q.read_only(), "mode {mode:o}");
        assert_eq!(q.stats().capacity, 16);
        assert_refused(
            q.send(b"x", Timeout::TryOnce),
            Status::Permission,
            &f.0,
            "send",
            "read-only",
        );
    }
}

// ----------------------------------------------------------------------
// Truncation and growth by another process while mapped
// ----------------------------------------------------------------------

/// Truncates `path` to `len` bytes from another process (coreutils).
fn truncate_elsewhere(path: &Path, len: usize) {
    let st = Command::new("truncate")
        .arg("-s")
        .arg(len.to_string())
        .arg(path)
        .status()
        .expect("running truncate");
    assert!(st.success());
}

#[track_caller]
fn assert_truncated<T: std::fmt::Debug>(r: shmq::Result<T>, path: &Path, op: &str) {
    assert_refused(r, Status::Corrupt, path, op, "truncated while mapped");
}

/// The sizes a truncation leaves: nothing, the header page only, half the
/// file.
fn truncations(l: &Layout) -> [usize; 3] {
    [0, 4096, l.file_size / 2 / 4096 * 4096]
}

#[test]
fn a_busy_participant_gets_corrupt_when_another_process_truncates_the_file() {
    for cut in 0..3 {
        bounded("busy participant", move || {
            let (f, l) = fresh("trunc-busy");
            let path = f.0.clone();
            let to = truncations(&l)[cut];
            let (started, go) = mpsc::channel();
            let worker = {
                let path = path.clone();
                std::thread::spawn(move || {
                    let q = Queue::open(&path).unwrap();
                    let mut ok = 0u64;
                    loop {
                        let r = q
                            .send(b"payload!", Timeout::TryOnce)
                            .and_then(|_| q.claim(Timeout::TryOnce))
                            .and_then(|m| m.ack());
                        match r {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                return (ok, e, q.is_broken(), q.send(b"again", Timeout::TryOnce))
                            }
                        }
                        if ok == 100 {
                            let _ = started.send(());
                        }
                    }
                })
            };
            go.recv().unwrap();
            truncate_elsewhere(&path, to);
            let (ok, e, broken, again) = worker.join().expect("the worker crashed");
            assert!(ok >= 100);
            assert!(broken, "cut to {to}: {e:?}");
            assert_eq!(e.status(), Status::Corrupt, "cut to {to}: {e:?}");
            assert!(e.message().contains("truncated while mapped"), "{e:?}");
            assert!(e.message().contains(&path.display().to_string()), "{e:?}");
            assert_truncated(again, &path, "send");
            // A new open refuses the short file from its size.
            let st = Queue::open(&path).map(drop).map_err(|e| e.status());
            assert!(
                matches!(st, Err(Status::Corrupt | Status::Incompatible)),
                "cut to {to}: reopening gave {st:?}"
            );
        });
    }
}

#[test]
fn a_waiter_blocked_forever_returns_corrupt_when_the_file_is_truncated() {
    for cut in 0..3 {
        bounded("blocked waiter", move || {
            let (f, l) = fresh("trunc-wait");
            let path = f.0.clone();
            let to = truncations(&l)[cut];
            let consumer = {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Claims everything the producer sends and holds it
                    // (no ack), then waits forever for more.
                    let q = Queue::open(&path).unwrap();
                    let mut held = 0;
                    let e = loop {
                        match q.claim(Timeout::Forever) {
                            // Not acked: it stays claimed (lease 30 s).
                            Ok(_m) => held += 1,
                            Err(e) => break e,
                        }
                    };
                    assert!(held <= 16);
                    (e, q.claim(Timeout::TryOnce).map(|m| m.position()))
                })
            };
            let producer = {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Fills the queue, then waits forever for room.
                    let q = Queue::open(&path).unwrap();
                    loop {
                        if let Err(e) = q.send(b"x", Timeout::Forever) {
                            return e;
                        }
                    }
                })
            };
            // Let both settle into their waits.
            std::thread::sleep(Duration::from_millis(100));
            let reader = Queue::open_with(&path, &OpenOptions::read_only()).unwrap();
            truncate_elsewhere(&path, to);
            let _ = reader.stats();
            let _ = reader.verify();
            // Both were blocked: the consumer on an empty queue (it holds
            // every message), the producer on a full one.
            let (e, again) = consumer.join().expect("consumer crashed");
            assert_eq!(e.status(), Status::Corrupt, "cut to {to}: {e:?}");
            assert_truncated(again, &path, "claim");
            let e = producer.join().expect("producer crashed");
            assert_eq!(e.status(), Status::Corrupt, "cut to {to}: {e:?}");
            assert!(e.message().contains("truncated while mapped"), "{e:?}");
        });
    }
}

#[test]
fn a_payload_read_in_place_after_truncation_reads_zeros_and_the_ack_is_refused() {
    bounded("in place", || {
        let (f, _) = fresh("trunc-inplace");
        let q = Queue::open(&f.0).unwrap();
        q.send(b"secret payload", Timeout::TryOnce).unwrap();
        let m = q.claim(Timeout::TryOnce).unwrap();
        assert!(!q.is_broken());
        // ftruncate from this process, on another descriptor.
        File::options()
            .write(true)
            .open(&f.0)
            .unwrap()
            .set_len(0)
            .unwrap();
        // SAFETY: we hold the claim; the bytes are in our mapping (now zero
        // pages): reading them must not crash.
        let bytes: Vec<u8> = (0..m.len())
            .map(|i| unsafe { m.payload_ptr().add(i).read_volatile() })
            .collect();
        assert_eq!(bytes, vec![0u8; b"secret payload".len()]);
        assert!(q.is_broken());
        assert_truncated(m.ack(), &f.0, "ack");
        assert_truncated(q.claim(Timeout::TryOnce), &f.0, "claim");
        assert_truncated(q.check_intact("stats"), &f.0, "stats");
        let _ = q.stats();
        let rep = q.verify();
        assert!(
            rep.problems
                .iter()
                .any(|p| p.contains("truncated while mapped")),
            "{rep:?}"
        );
        // Closing a broken handle is fine.
        q.close().unwrap();
    });
}

#[test]
fn a_grown_file_is_ignored_by_those_who_have_it_mapped() {
    bounded("growth", || {
        let (f, l) = fresh("grow");
        let a = Queue::open(&f.0).unwrap();
        let b = Queue::open(&f.0).unwrap();
        a.send(b"before", Timeout::TryOnce).unwrap();
        let file = File::options().write(true).open(&f.0).unwrap();
        file.set_len(l.file_size as u64 * 2).unwrap();
        // Garbage in the new part changes nothing for the mapped.
        file.write_all_at(&[0xff; 4096], l.file_size as u64)
            .unwrap();
        for i in 0..200u32 {
            a.send(&i.to_le_bytes(), Timeout::TryOnce).unwrap();
            let m = b.claim(Timeout::TryOnce).unwrap();
            m.ack().unwrap();
        }
        let m = b.claim(Timeout::TryOnce).unwrap();
        m.ack().unwrap();
        assert!(!a.is_broken() && !b.is_broken());
        assert!(a.verify().problems.is_empty(), "{:?}", a.verify());
        assert_eq!(a.stats().capacity, 16);
        assert_eq!(a.stats().depth, 0);
        // A new open checks the size against the header: refused while the
        // file is too long, accepted once it has its size again.
        assert_eq!(
            Queue::open(&f.0).map(drop).map_err(|e| e.status()),
            Err(Status::Corrupt)
        );
        file.set_len(l.file_size as u64).unwrap();
        let c = Queue::open(&f.0).unwrap();
        a.send(b"after", Timeout::TryOnce).unwrap();
        assert_eq!(c.claim(Timeout::TryOnce).unwrap().data().unwrap(), b"after");
    });
}

/// Forks a child that runs `f` and exits with what it returns; returns the
/// child's wait status. `f` must not allocate (the parent has threads).
fn in_child(f: impl FnOnce() -> i32) -> libc::c_int {
    // SAFETY: the child only runs `f` (loads, no allocation) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = f();
        // SAFETY: leaving the child without running the parent's atexit.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

#[test]
fn a_sigbus_outside_shmq_mappings_still_kills_the_process() {
    // A queue, so the handler is installed in this process.
    let (f, _) = fresh("chain");
    let q = Queue::open(&f.0).unwrap();
    let word = q.engine().mem().byte_ptr(0, 8).unwrap() as usize;

    // A mapping shmq does not know, of a file that then shrinks.
    let other = TempFile(scratch("chain-other"));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&other.0)
        .unwrap();
    file.set_len(8192).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of our own file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    file.set_len(0).unwrap();
    let foreign = p as usize;

    // Touching it is the crash it always was: SIGBUS reaches the default.
    let st = in_child(|| {
        // SAFETY: inside the mapping, past the end of the file: faults.
        let v = unsafe { std::ptr::read_volatile((foreign + 4096) as *const u8) };
        v as i32 + 10
    });
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGBUS,
        "a foreign SIGBUS was swallowed: wait status {st:#x}"
    );

    // The queue's own mapping, truncated: the child survives and sees it.
    File::options()
        .write(true)
        .open(&f.0)
        .unwrap()
        .set_len(0)
        .unwrap();
    let st = in_child(|| {
        // SAFETY: inside the queue's mapping (alive in the child too).
        let v = unsafe { std::ptr::read_volatile(word as *const u64) };
        if v == 0 && q.is_broken() {
            0
        } else {
            1
        }
    });
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "the child did not survive a truncated queue: wait status {st:#x}"
    );
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(p, 8192) };
}
