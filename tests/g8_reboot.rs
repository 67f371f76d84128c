//! G8 and G3 across a reboot: the first attach under a new boot id cleans up
//! every participant of the old boot, exactly once, and never one that
//! attached under the new boot, even when several attach at the same time.
//!
//! A reboot is simulated by scribbling the boot id in the header. The old
//! participant's lock is then still held (after a real reboot it would be
//! gone too), so only the post-reboot recovery can take it for dead.

use shmq::internals::memory::Memory;
use shmq::internals::participants::hooks;
use shmq::{Counter, Options, Queue, Status, Timeout};
use shmq_testkit::{unique_path, TempFile};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

/// What an attacher reports: its entry, what it claimed (payload,
/// deliveries), what it read once everyone had attached, how its ack went.
type Report = (u64, (String, u32), shmq::Result<String>, Result<(), String>);

/// Claims a message, holds it while the test looks, then checks it is still
/// held and acks it.
fn attacher(q: Queue, claimed: Option<&Barrier>, holding: &Barrier, checked: &Barrier) -> Report {
    let m = q.claim(Duration::from_secs(5)).unwrap();
    let got = (
        String::from_utf8(m.data().unwrap()).unwrap(),
        m.deliveries(),
    );
    if let Some(b) = claimed {
        b.wait();
    }
    holding.wait();
    checked.wait();
    let still = m.data().map(|d| String::from_utf8(d).unwrap());
    let acked = m.ack().map_err(|e| e.to_string());
    (q.participant().unwrap(), got, still, acked)
}

/// Handles attaching at once after each simulated reboot.
const ATTACHERS: usize = 6;
const ROUNDS: usize = 10;

#[test]
fn g8_concurrent_attaches_after_a_reboot_clean_up_the_old_boot_once_and_never_the_living() {
    let p = unique_path("g8-reboot");
    let _cleanup = TempFile(p.clone());
    drop(
        Queue::create(
            &p,
            &Options {
                capacity: 32,
                max_message_size: 64,
                lease: Duration::from_secs(60),
                participant_capacity: 16,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    // Repairs nothing, holds no entry: it only looks.
    let probe = Queue::inspect(&p).unwrap();
    for round in 0..ROUNDS {
        // A participant of the old boot, holding a claim.
        let old = Queue::open(&p).unwrap();
        old.send(format!("old-{round}").as_bytes(), Timeout::TryOnce)
            .unwrap();
        let held = old.claim(Timeout::TryOnce).unwrap();
        for t in 0..ATTACHERS {
            old.send(format!("new-{round}-{t}").as_bytes(), Timeout::TryOnce)
                .unwrap();
        }
        let dead_before = probe.stats().counter(Counter::DeadParticipants);
        let holding = Arc::new(Barrier::new(ATTACHERS + 1));
        let checked = Arc::new(Barrier::new(ATTACHERS + 1));
        probe
            .engine()
            .mem()
            .u64_at(shmq::internals::layout::hdr::BOOT_ID)
            .fetch_xor(1, Ordering::SeqCst);

        // Even rounds: the first attacher is stopped just before it cleans
        // up after the old boot, and the others attach and claim meanwhile
        // (a test hook stops it). Odd rounds: all attach at once.
        let stopped = round % 2 == 0;
        let others = if stopped { ATTACHERS - 1 } else { ATTACHERS };
        let (recovering_tx, recovering_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut threads = Vec::new();
        if stopped {
            let (p, holding, checked) = (p.clone(), holding.clone(), checked.clone());
            threads.push(std::thread::spawn(move || {
                hooks::set(
                    hooks::Point::BeforeBootRecovery,
                    Some(Box::new(move |_| {
                        let _ = recovering_tx.send(());
                        let _ = go_rx.recv_timeout(Duration::from_secs(30));
                    })),
                );
                let q = Queue::open(&p).unwrap();
                hooks::set(hooks::Point::BeforeBootRecovery, None);
                attacher(q, None, &holding, &checked)
            }));
            if recovering_rx.recv_timeout(Duration::from_secs(20)).is_err() {
                panic!("round {round}: the first attach after the reboot did not clean up");
            }
        }
        let start = Arc::new(Barrier::new(others));
        let others_hold = Arc::new(Barrier::new(others + 1));
        for _ in 0..others {
            let (p, start, others_hold, holding, checked) = (
                p.clone(),
                start.clone(),
                others_hold.clone(),
                holding.clone(),
                checked.clone(),
            );
            threads.push(std::thread::spawn(move || {
                start.wait();
                let q = Queue::open(&p).unwrap();
                attacher(q, Some(&others_hold), &holding, &checked)
            }));
        }
        others_hold.wait();
        let _ = go_tx.send(());
        holding.wait();
        let st = probe.stats();
        let alive = probe.participants().iter().filter(|p| p.alive).count();
        checked.wait();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

        let dead = probe.stats().counter(Counter::DeadParticipants) - dead_before;
        assert_eq!(
            dead, 1,
            "round {round}: {dead} participants cleaned up after the reboot, expected only the old one; {results:?}"
        );
        assert_eq!(
            (st.participants, alive as u64, st.in_flight),
            (ATTACHERS as u64, ATTACHERS as u64, ATTACHERS as u64),
            "round {round}: live entries, alive participants, claims in flight while all hold one; {results:?}"
        );
        let mut payloads: Vec<_> = results.iter().map(|r| r.1 .0.clone()).collect();
        payloads.sort();
        payloads.dedup();
        assert_eq!(
            payloads.len(),
            ATTACHERS,
            "round {round}: a message was delivered twice: {results:?}"
        );
        for (index, (data, deliveries), still, acked) in &results {
            assert_eq!(
                still.as_ref().ok(),
                Some(data),
                "round {round}: participant {index} lost its claim: {results:?}"
            );
            assert!(
                acked.is_ok(),
                "round {round}: participant {index}: {acked:?}"
            );
            let first = if data.starts_with("old-") { 2 } else { 1 };
            assert_eq!(*deliveries, first, "round {round}: {data}");
        }
        // The old participant was dead to the new boot: its claim was taken
        // back.
        assert_eq!(held.ack().unwrap_err().status(), Status::LeaseLost);
        drop(old);
        let drain = Queue::open(&p).unwrap();
        let last = drain.claim(Timeout::TryOnce).unwrap();
        last.ack().unwrap();
        assert_eq!(
            drain.claim(Timeout::TryOnce).unwrap_err().status(),
            Status::Empty
        );
        drop(drain);
        let report = probe.verify();
        assert!(
            report.problems.is_empty(),
            "round {round}: {:?}",
            report.problems
        );
        assert!(report.notes.is_empty(), "round {round}: {:?}", report.notes);
    }
}
