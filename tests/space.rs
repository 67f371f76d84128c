//! The space of a queue file: `create` reserves the whole file before the
//! file can be taken for a queue, refuses a file system too small with a
//! one-line "no space" error (bytes needed and free, a container's 64 MiB
//! `/dev/shm` named as such), and leaves nothing behind; `sparse` opts out,
//! and a sparse file whose file system fills up later gives "the file
//! system is full", not a truncation.
//!
//! The full file systems are small tmpfs mounts, which only root may make:
//! those tests say they were skipped otherwise (the CI runs as root).

use std::os::unix::fs::MetadataExt;

use shmq::internals::layout::{Layout, Params};
use shmq::{Options, Queue, Status, Timeout};
use shmq_testkit::{unique_path, SmallTmpfs, TempFile};

/// 100 000 slots of 4 KiB: about 820 MiB, far more than the small tmpfs.
fn big() -> Options {
    Options {
        capacity: 100_000,
        max_message_size: 4096,
        ..Options::default()
    }
}

/// Bytes the file system allocated to the file.
fn allocated(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_created_file_is_allocated_whole_unless_sparse() {
    let reserved = TempFile(unique_path("space-whole"));
    let q = Queue::create(&reserved.0, &Options::default()).unwrap();
    let size = std::fs::metadata(&reserved.0).unwrap().len();
    assert!(
        allocated(&reserved.0) >= size,
        "{} of {size} bytes allocated",
        allocated(&reserved.0)
    );
    drop(q);

    let sparse = TempFile(unique_path("space-sparse"));
    let opts = Options {
        sparse: true,
        ..big()
    };
    let q = Queue::create(&sparse.0, &opts).unwrap();
    let size = std::fs::metadata(&sparse.0).unwrap().len();
    assert!(
        allocated(&sparse.0) < size / 2,
        "a sparse file of {size} bytes has {} allocated",
        allocated(&sparse.0)
    );
    q.send(b"x", Timeout::TryOnce).unwrap();
}

#[test]
fn create_refuses_a_queue_larger_than_its_file_system() {
    let Some(fs) = SmallTmpfs::mount("refuse", 64) else {
        return;
    };
    let path = fs.file("orders");
    let Err(e) = Queue::create(&path, &big()) else {
        panic!("must be refused");
    };
    let m = e.message();
    assert_eq!(e.status(), Status::Io, "{e:?}");
    assert!(!m.contains('\n'), "one line: {m}");
    assert!(
        m.starts_with(&format!("{}: create: no space", path.display())),
        "{m}"
    );
    let needed = Layout::new(Params {
        capacity: 100_000,
        max_message_size: 4096,
        key_capacity: 0,
        dlq_capacity: 100_000,
        participant_capacity: 64,
    })
    .unwrap()
    .file_size;
    assert!(m.contains(&format!("needs {needed} bytes")), "{m}");
    assert!(m.contains("bytes free (64.0 MiB)"), "{m}");
    assert!(
        m.contains("is a 64 MiB tmpfs, the default /dev/shm of a container"),
        "{m}"
    );
    assert!(m.contains("--shm-size"), "{m}");
    // Nothing left behind, nothing allocated.
    assert!(!path.exists());
    let used: u64 = std::fs::read_dir(&fs.dir).unwrap().count() as u64;
    assert_eq!(used, 0);

    // A queue that fits is created and works.
    let small = Options {
        capacity: 1000,
        max_message_size: 4096,
        ..Options::default()
    };
    let q = Queue::create(&path, &small).unwrap();
    q.send(b"fits", Timeout::TryOnce).unwrap();
}

#[test]
fn a_sparse_file_on_a_full_file_system_says_so_not_truncated() {
    let Some(fs) = SmallTmpfs::mount("sparse", 16) else {
        return;
    };
    let path = fs.file("orders");
    let opts = Options {
        sparse: true,
        ..big()
    };
    // Created at once, whatever its size.
    let q = Queue::create(&path, &opts).unwrap();
    let mut sent = 0u64;
    let e = loop {
        // Each message takes a fresh page of the file (4 KiB slots).
        match q.send(&[7u8; 4096], Timeout::TryOnce) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100_000, "16 MiB cannot hold 100 000 pages");
    };
    let m = e.message();
    assert_eq!(e.status(), Status::Corrupt, "{e:?}");
    assert!(m.contains("the file system is full"), "{m}");
    assert!(!m.contains("truncated while mapped"), "{m}");
    assert!(q.is_broken());
    // Every later call says the same; verify reports it as the problem.
    let again = q.send(b"x", Timeout::TryOnce).unwrap_err();
    assert!(
        again.message().contains("the file system is full"),
        "{again:?}"
    );
    let report = q.verify();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("the file system is full")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_truncated_file_is_still_called_truncated() {
    let f = TempFile(unique_path("space-truncated"));
    let q = Queue::create(&f.0, &Options::default()).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&f.0).unwrap();
    file.set_len(4096).unwrap();
    let e = q.send(b"x", Timeout::TryOnce).unwrap_err();
    assert_eq!(e.status(), Status::Corrupt, "{e:?}");
    assert!(e.message().contains("truncated while mapped"), "{e:?}");
    assert!(!e.message().contains("file system is full"), "{e:?}");
}
