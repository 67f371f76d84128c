//! An embedding program that owns `SIGBUS`: shmq installs no handler, the
//! program's own handler hands shmq's faults to `shmq::sigbus::handle_sigbus`
//! first, and a queue file truncated while mapped still gives `Corrupt`
//! instead of killing the process (G10). One test: the handler is
//! process-wide.

use shmq::{Options, Queue, Status, Timeout};
use std::sync::atomic::{AtomicUsize, Ordering};

static HANDLED_BY_SHMQ: AtomicUsize = AtomicUsize::new(0);

extern "C" fn program_handler(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // si_addr is meaningful for a fault (si_code > 0).
    let addr = unsafe {
        match info.as_ref() {
            Some(i) if i.si_code > 0 => i.si_addr(),
            _ => std::ptr::null_mut(),
        }
    };
    if shmq::sigbus::handle_sigbus(addr) {
        HANDLED_BY_SHMQ.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Not shmq's: this program's policy is to die.
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(86) };
}

#[test]
fn a_program_with_its_own_sigbus_handler_chains_to_shmq() {
    shmq::sigbus::leave_sigbus_to_the_program();
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = program_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0);
    }
    let p = std::env::temp_dir().join(format!("shmq-sigbus-program-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    let opts = Options {
        capacity: 64,
        max_message_size: 1024,
        ..Options::default()
    };
    let q = Queue::create(&p, &opts).unwrap();
    q.send(b"before", Timeout::TryOnce).unwrap();
    // Still ours: shmq did not replace the program's handler.
    // SAFETY: querying the disposition into memory we own.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur);
        assert_eq!(cur.sa_sigaction, program_handler as *const () as usize);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let mut status = None;
    for _ in 0..64 {
        match q.send(b"after", Timeout::TryOnce) {
            Err(e) => {
                status = Some(e.status());
                break;
            }
            Ok(_) => {
                if let Ok(m) = q.claim(Timeout::TryOnce) {
                    let _ = m.ack();
                }
            }
        }
    }
    assert_eq!(status, Some(Status::Corrupt));
    assert!(HANDLED_BY_SHMQ.load(Ordering::Relaxed) > 0);
    drop(q);
    let _ = std::fs::remove_file(&p);
}
