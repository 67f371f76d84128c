//! The async waker across fork(): the child has no waker thread (threads
//! do not survive fork), so its first async wait starts its own instead of
//! registering with the parent's, which would never wake it. Alone in its
//! test binary, so that no other test's thread holds a lock at the fork.

use std::time::Duration;

use shmq::internals::waker;
use shmq::{Options, Queue, Timeout};
use shmq_testkit::{unique_path, TempFile};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// What the child found, as bits of its exit code (0: all as expected).
const NO_MESSAGE: i32 = 1;
const WRONG_MESSAGE: i32 = 2;
const NO_WAKER_THREAD: i32 = 4;
const LEFT_REGISTERED: i32 = 8;

#[test]
fn a_forked_child_starts_its_own_waker_thread() {
    let p = unique_path("async-fork");
    let _cleanup = TempFile(p.clone());
    let q = Queue::create(
        &p,
        &Options {
            capacity: 8,
            max_message_size: 64,
            ..Options::default()
        },
    )
    .unwrap();
    // The parent's waker thread runs, with a registration pending at the
    // fork (a future polled once and kept).
    let parent_waiter = Queue::open(&p).unwrap();
    let rt = current_thread();
    let e = rt
        .block_on(parent_waiter.claim_async(Duration::from_millis(20)))
        .unwrap_err();
    assert_eq!(e.status(), shmq::Status::Timeout);
    assert!(waker::thread_cpu_ns().is_some(), "the parent's waker runs");
    drop(rt);
    struct Nobody;
    impl std::task::Wake for Nobody {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let nobody = std::task::Waker::from(std::sync::Arc::new(Nobody));
    let mut pending = Box::pin(parent_waiter.claim_async(Timeout::Forever));
    let polled = std::future::Future::poll(
        pending.as_mut(),
        &mut std::task::Context::from_waker(&nobody),
    );
    assert!(polled.is_pending());
    assert_eq!(waker::registrations(), 1);

    // SAFETY: the child opens its own handle, runs a current-thread runtime
    // (the allocator is reset in the child by glibc) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let mut code = 0;
        let h = Queue::open(&p).unwrap();
        match current_thread().block_on(h.claim_async(Duration::from_secs(10))) {
            Ok(m) => {
                if m.data().ok().as_deref() != Some(&b"to the child"[..]) {
                    code |= WRONG_MESSAGE;
                }
                let _ = m.ack();
            }
            Err(_) => code |= NO_MESSAGE,
        }
        if waker::thread_cpu_ns().is_none() {
            code |= NO_WAKER_THREAD;
        }
        if waker::registrations() != 0 {
            code |= LEFT_REGISTERED;
        }
        drop(h);
        // SAFETY: leaves the child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    // Wait until the child sleeps on the queue too, then send.
    let start = std::time::Instant::now();
    while q
        .engine()
        .sleepers(shmq::internals::engine::WaitOn::NotEmpty)
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child never waited"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    q.send(b"to the child", Timeout::TryOnce).unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child found bits (see consts)"
    );
    assert_eq!(q.stats().depth, 0);
    drop(pending);
    assert_eq!(waker::registrations(), 0);
}
