//! The async futures (`claim_async`, `send_async`, feature `async`) on
//! tokio's runtimes: many producer and consumer tasks lose and double
//! nothing; an idle async consumer costs next to no CPU; a delayed message
//! becomes claimable by time alone; a dropped future leaves no registration
//! and no sleeper behind. The fork case is in `async_fork.rs`, alone in its
//! process.
//!
//! The tests of this file run one at a time (they read process-wide
//! figures: the waker's registrations and CPU time).

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use shmq::internals::engine::WaitOn;
use shmq::internals::waker;
use shmq::{Options, Queue, SendOptions, Status, Timeout};
use shmq_testkit::{unique_path, TempFile};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn queue(tag: &str, capacity: u64) -> (TempFile, Queue) {
    let p = unique_path(tag);
    let q = Queue::create(
        &p,
        &Options {
            capacity,
            max_message_size: 64,
            ..Options::default()
        },
    )
    .unwrap();
    (TempFile(p), q)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

const PER_PRODUCER: u64 = 2_000;

/// Producers send `(producer, i)` as 16 bytes; consumers claim, record and
/// ack until every message came through. The queue is small, so producers
/// wait for room and consumers for messages, both asynchronously.
#[test]
fn many_tasks_on_a_current_thread_runtime_lose_and_double_nothing() {
    let _s = serial();
    let (file, q) = queue("async-ct", 8);
    let (producers, consumers) = (4u64, 4u64);
    let total = producers * PER_PRODUCER;
    let seen = Rc::new(RefCell::new(HashSet::new()));
    let local = tokio::task::LocalSet::new();
    for p in 0..producers {
        let h = Queue::open(&file.0).unwrap();
        local.spawn_local(async move {
            for i in 0..PER_PRODUCER {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&p.to_le_bytes());
                b[8..].copy_from_slice(&i.to_le_bytes());
                h.send_async(&b, Timeout::Forever).await.unwrap();
            }
        });
    }
    for _ in 0..consumers {
        let h = Queue::open(&file.0).unwrap();
        let seen = seen.clone();
        local.spawn_local(async move {
            while (seen.borrow().len() as u64) < total {
                match h.claim_async(Duration::from_millis(50)).await {
                    Ok(m) => {
                        let d = m.data().unwrap();
                        m.ack().unwrap();
                        assert!(seen.borrow_mut().insert(d), "delivered twice");
                    }
                    Err(e) if e.status() == Status::Timeout => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
    current_thread().block_on(local);
    assert_eq!(seen.borrow().len() as u64, total);
    assert_eq!(q.stats().depth, 0);
    drop(q);
}

#[test]
fn many_tasks_on_a_multi_thread_runtime_lose_and_double_nothing() {
    let _s = serial();
    let (file, q) = queue("async-mt", 8);
    let (producers, consumers) = (4u64, 4u64);
    let total = producers * PER_PRODUCER;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let mut h = Queue::open(&file.0).unwrap();
        // The `_mut` futures hold the handle exclusively: they are Send.
        tasks.push(rt.spawn(async move {
            for i in 0..PER_PRODUCER {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&p.to_le_bytes());
                b[8..].copy_from_slice(&i.to_le_bytes());
                h.send_async_mut(&b, SendOptions::new().timeout(Timeout::Forever))
                    .await
                    .unwrap();
            }
        }));
    }
    for _ in 0..consumers {
        let mut h = Queue::open(&file.0).unwrap();
        let seen = seen.clone();
        tasks.push(rt.spawn(async move {
            while (seen.lock().unwrap().len() as u64) < total {
                match h.claim_async_mut(Duration::from_millis(50)).await {
                    Ok(m) => {
                        let d = m.data().unwrap();
                        m.ack().unwrap();
                        assert!(seen.lock().unwrap().insert(d), "delivered twice");
                    }
                    Err(e) if e.status() == Status::Timeout => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(seen.lock().unwrap().len() as u64, total);
    assert_eq!(q.stats().depth, 0);
}

fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A consumer task waiting on an empty queue sleeps: over a second, the
/// waker thread and the whole process (the runtime's thread included) use
/// a few ms of CPU at most. The bound asserted is generous (a loaded test
/// machine); the figure is printed.
#[test]
fn an_idle_async_consumer_uses_no_cpu() {
    let _s = serial();
    let (file, q) = queue("async-idle", 8);
    let path = file.0.clone();
    let waiting = Arc::new(AtomicBool::new(false));
    let w2 = waiting.clone();
    let consumer = std::thread::spawn(move || {
        let h = Queue::open(&path).unwrap();
        current_thread().block_on(async {
            let fut = h.claim_async(Timeout::Forever);
            w2.store(true, Ordering::SeqCst);
            let m = fut.await.unwrap();
            assert_eq!(m.data().unwrap(), b"wake up");
            m.ack().unwrap();
        });
    });
    while !waiting.load(Ordering::SeqCst) || q.engine().sleepers(WaitOn::NotEmpty) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (thread0, proc0) = (waker::thread_cpu_ns().unwrap(), process_cpu_ns());
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (thread1, proc1) = (waker::thread_cpu_ns().unwrap(), process_cpu_ns());
    let wall = start.elapsed().as_nanos() as f64;
    let (thread_ns, proc_ns) = (thread1 - thread0, proc1 - proc0);
    println!(
        "idle async consumer over {:.2} s: waker thread {} us CPU ({:.4}% of a CPU), process {} us ({:.4}%)",
        wall / 1e9,
        thread_ns / 1000,
        thread_ns as f64 / wall * 100.0,
        proc_ns / 1000,
        proc_ns as f64 / wall * 100.0,
    );
    assert!(thread_ns < 20_000_000, "waker thread used {thread_ns} ns");
    assert!(proc_ns < 50_000_000, "process used {proc_ns} ns");
    q.send(b"wake up", Timeout::TryOnce).unwrap();
    consumer.join().unwrap();
}

/// A delayed message is due by time, not by a futex bump: the waiting
/// claim's bounded registration brings it back to look.
#[test]
fn a_delayed_message_becomes_claimable_by_time() {
    let _s = serial();
    let (_file, q) = queue("async-delay", 8);
    let delay = Duration::from_millis(300);
    let start = Instant::now();
    q.send_with(b"later", &SendOptions::new().delay(delay))
        .unwrap();
    let got = current_thread().block_on(async {
        let m = q.claim_async(Duration::from_secs(10)).await.unwrap();
        let d = m.data().unwrap();
        m.ack().unwrap();
        d
    });
    let took = start.elapsed();
    assert_eq!(got, b"later");
    assert!(took >= delay - Duration::from_millis(20), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Timeouts keep the blocking meanings: zero is `Empty` at once, a
/// positive one is `Timeout` after waiting it.
#[test]
fn timeouts_mean_what_they_mean_for_the_blocking_calls() {
    let _s = serial();
    let (_file, q) = queue("async-timeouts", 2);
    let rt = current_thread();
    let e = rt.block_on(q.claim_async(Timeout::TryOnce)).unwrap_err();
    assert_eq!(e.status(), Status::Empty);
    let start = Instant::now();
    let e = rt
        .block_on(q.claim_async(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.status(), Status::Timeout);
    assert!(start.elapsed() >= Duration::from_millis(100));
    rt.block_on(q.send_async(b"a", Timeout::TryOnce)).unwrap();
    rt.block_on(q.send_async(b"b", Timeout::TryOnce)).unwrap();
    let e = rt
        .block_on(q.send_async(b"c", Timeout::TryOnce))
        .unwrap_err();
    assert_eq!(e.status(), Status::Full);
    let e = rt
        .block_on(q.send_async(b"c", Duration::from_millis(50)))
        .unwrap_err();
    assert_eq!(e.status(), Status::Timeout);
    assert_eq!(waker::registrations(), 0);
    assert_eq!(q.engine().sleepers(WaitOn::NotFull), 0);
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A future polled once registers (one registration, one sleeper);
/// dropped, it leaves neither behind. A send wakes a pending one.
#[test]
fn a_dropped_future_leaves_no_registration() {
    let _s = serial();
    let (_file, q) = queue("async-drop", 8);
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);

    let mut fut = Box::pin(q.claim_async(Timeout::Forever));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(waker::registrations(), 1);
    assert_eq!(q.engine().sleepers(WaitOn::NotEmpty), 1);
    drop(fut);
    assert_eq!(waker::registrations(), 0);
    assert_eq!(q.engine().sleepers(WaitOn::NotEmpty), 0);

    // Woken by a send from another handle, through the waker thread.
    let other = Queue::open(q.path()).unwrap();
    let mut fut = Box::pin(q.claim_async(Timeout::Forever));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    other.send(b"x", Timeout::TryOnce).unwrap();
    let start = Instant::now();
    while !flag.0.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(5), "never woken");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The wake is one-shot: the thread forgot the registration, and took
    // the waiter off the sleeper count (producers stop paying a system
    // call for it) before waking it.
    assert_eq!(waker::registrations(), 0);
    assert_eq!(q.engine().sleepers(WaitOn::NotEmpty), 0);
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(m)) => m.ack().unwrap(),
        other => panic!("{:?}", other.map(|r| r.map(|_| ()))),
    }
    drop(fut);
    assert_eq!(q.engine().sleepers(WaitOn::NotEmpty), 0);
}
