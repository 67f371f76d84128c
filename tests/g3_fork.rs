//! G3 and G8 across fork(): a child that inherits a Rust `Queue` (and a claim
//! and a reservation made through it) is not its parent. Every operation
//! through the inherited handle fails and names the cause, and dropping it
//! in the child leaves the shared file alone: no repair, no release of the
//! parent's entry, no unlock of the lock the child shares with the parent.

use shmq::{Options, Queue, Status, Timeout};
use shmq_testkit::{unique_path, TempFile};
use std::time::Duration;

/// What the child found, as bits of its exit code (0: all as expected).
const SEND_ACCEPTED: i32 = 1;
const ACK_ACCEPTED: i32 = 2;
const NO_CAUSE: i32 = 4;
const RECOVER_ACCEPTED: i32 = 8;

#[test]
fn g3_a_forked_child_dropping_an_inherited_handle_leaves_the_parents_claims_alone() {
    let p = unique_path("g3-fork");
    let _cleanup = TempFile(p.clone());
    let q = Queue::create(
        &p,
        &Options {
            capacity: 8,
            max_message_size: 64,
            lease: Duration::from_secs(60),
            ..Options::default()
        },
    )
    .unwrap();
    let other = Queue::open(&p).unwrap();
    q.send(b"held by the parent", Timeout::TryOnce).unwrap();
    let m = q.claim(Timeout::TryOnce).unwrap();
    let mut r = q.reserve(32, Timeout::TryOnce).unwrap();
    r.write(b"reserved by the parent").unwrap();
    let parent = std::process::id();

    // SAFETY: the child uses only the inherited handle and the allocator
    // (glibc's is reset in the child), then leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let mut code = 0;
        let cause = |e: &shmq::Error| {
            e.status() == Status::InvalidArgument
                && e.message().contains("before fork()")
                && e.message().contains(&format!("process {parent}"))
        };
        // The inherited reservation goes away without aborting anything.
        drop(r);
        match q.send(b"from the child", Timeout::TryOnce) {
            Ok(_) => code |= SEND_ACCEPTED,
            Err(e) if !cause(&e) => code |= NO_CAUSE,
            Err(_) => {}
        }
        match q.recover() {
            Ok(_) => code |= RECOVER_ACCEPTED,
            Err(e) if !cause(&e) => code |= NO_CAUSE,
            Err(_) => {}
        }
        match m.ack() {
            Ok(_) => code |= ACK_ACCEPTED,
            Err(e) if !cause(&e) => code |= NO_CAUSE,
            Err(_) => {}
        }
        drop(q);
        // SAFETY: leaves the child without running the parent's atexit
        // handlers or the test harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child died: status {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child's findings (bits)");

    // The parent still holds its claim and its reservation, and is alive.
    let me = q.participant().unwrap();
    assert!(
        other
            .participants()
            .iter()
            .any(|p| p.index == me && p.alive && p.pid == parent),
        "{:?}",
        other.participants()
    );
    assert_eq!(
        other.claim(Timeout::TryOnce).unwrap_err().status(),
        Status::Empty,
        "the parent's claim was redelivered"
    );
    assert_eq!(m.data().unwrap(), b"held by the parent");
    m.ack().unwrap();
    r.commit().unwrap();
    let got = other.claim(Timeout::TryOnce).unwrap();
    assert_eq!(got.data().unwrap(), b"reserved by the parent");
    got.ack().unwrap();
    let report = other.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}
