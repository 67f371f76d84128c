//! Damaged and hostile queue files (guarantee G10 of the README): every field read from the
//! mapping is untrusted, so a scribbled file must give `Corrupt` or
//! `Incompatible` (or keep working), never a panic, an out-of-bounds access
//! or a hang. Every scenario runs on its own thread under a watchdog, so a
//! hang fails the test instead of blocking CI.
//!
//! The fuzz targets in `fuzz/` explore the same ground at random; this file
//! also replays their committed seeds and regressions (see the end).

#[path = "../fuzz/src/c_abi.rs"]
mod c_abi;
// The C ABI crate (bindings/c) builds only a cdylib and a staticlib (its
// library is named `shmq` too), so its Rust functions are compiled in here
// from its sources; they call the engine as `engine`.
extern crate shmq as engine;
#[allow(dead_code)]
#[path = "../bindings/c/src/lib.rs"]
mod ffi;
#[path = "../fuzz/src/harness.rs"]
mod harness;
#[path = "../fuzz/src/model_ops.rs"]
mod model_ops;

use shmq::internals::layout::{self, dlq, hdr, part, slot, Layout};
use shmq::{Options, Queue, Status, Timeout};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use harness::{unique_path, TempFile};
use shmq_testkit::Rng;

/// How long one scenario may take before it counts as a hang. Generous: the
/// tests also run in debug builds on a loaded machine.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; fails if it panics or outlives the watchdog.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {WATCHDOG:?}: a hang")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let e = handle.join().expect_err("no value and no panic");
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked: {msg}")
        }
    }
}

fn small() -> Options {
    Options {
        capacity: 8,
        max_message_size: 32,
        key_capacity: 4,
        dlq_capacity: 2,
        participant_capacity: 3,
        max_deliveries: 3,
        ..Options::default()
    }
}

fn word(path: &Path, off: usize) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off as u64).unwrap();
    u64::from_le_bytes(b)
}

fn put_word(path: &Path, off: usize, v: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), off as u64).unwrap();
}

fn put_bytes(path: &Path, off: usize, b: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(b, off as u64).unwrap();
}

/// A fresh, closed queue file with the `small` options.
fn fresh(tag: &str) -> (TempFile, Layout) {
    let path = unique_path(tag);
    let q = Queue::create(&path, &small()).unwrap();
    let l = *q.layout();
    drop(q);
    (TempFile(path), l)
}

fn open_status(path: &Path) -> std::result::Result<(), Status> {
    Queue::open(path).map(drop).map_err(|e| e.status())
}

// ----------------------------------------------------------------------
// The header
// ----------------------------------------------------------------------

#[test]
fn every_immutable_header_word_flipped_is_refused() {
    let (f, _) = fresh("hdr-flip");
    let path = f.0.clone();
    bounded("header flips", move || {
        for off in (0..=hdr::CHECKSUM).step_by(8) {
            for bit in [0u32, 7, 31, 63] {
                let orig = word(&path, off);
                put_word(&path, off, orig ^ 1 << bit);
                let got = open_status(&path);
                let inspected = Queue::inspect(&path).map(drop).map_err(|e| e.status());
                put_word(&path, off, orig);
                for (how, r) in [("open", got), ("inspect", inspected)] {
                    assert!(
                        matches!(r, Err(Status::Corrupt | Status::Incompatible)),
                        "{how} with header word {off} bit {bit} flipped gave {r:?}"
                    );
                }
            }
        }
        // Restored, it opens again.
        assert_eq!(open_status(&path), Ok(()));
    });
}

#[test]
fn a_hostile_header_with_a_valid_checksum_is_refused_when_the_layout_is_wrong() {
    let (f, l) = fresh("hdr-hostile");
    let path = f.0.clone();
    bounded("hostile layout", move || {
        // Each layout word changed, the checksum recomputed: the layout no
        // longer matches the parameters (or the file), so open refuses.
        for off in [
            hdr::FILE_SIZE,
            hdr::CAPACITY,
            hdr::MAX_MESSAGE_SIZE,
            hdr::SLOT_STRIDE,
            hdr::KEY_CAPACITY,
            hdr::DLQ_CAPACITY,
            hdr::DLQ_STRIDE,
            hdr::PARTICIPANT_CAPACITY,
            hdr::PARTICIPANTS_OFFSET,
            hdr::SLOTS_OFFSET,
            hdr::KEYS_OFFSET,
            hdr::DLQ_OFFSET,
        ] {
            for v in [0, 1, u64::MAX, 1 << 40, word(&path, off) + 64] {
                let mut img = std::fs::read(&path).unwrap();
                let orig = img.clone();
                img[off..off + 8].copy_from_slice(&v.to_le_bytes());
                harness::fix_checksum(&mut img);
                std::fs::write(&path, &img).unwrap();
                let consistent = Layout::from_header(img.len(), |o| {
                    u64::from_le_bytes(img[o..o + 8].try_into().unwrap())
                })
                .is_ok();
                let got = open_status(&path);
                if consistent {
                    // A header that describes another valid layout of the
                    // same size (fewer dead-letter records, say) is a queue.
                    exercise(&path);
                } else {
                    assert!(
                        matches!(got, Err(Status::Corrupt | Status::Incompatible)),
                        "layout word {off} = {v} (checksum fixed) gave {got:?}"
                    );
                }
                std::fs::write(&path, &orig).unwrap();
            }
        }
        assert_eq!(l.file_size as u64, word(&path, hdr::FILE_SIZE));
    });
}

#[test]
fn scribbled_mutable_header_words_never_panic_or_hang() {
    let (f, _) = fresh("hdr-hot");
    let path = f.0.clone();
    bounded("hot header words", move || {
        let pristine = std::fs::read(&path).unwrap();
        let mut offs: Vec<usize> = vec![hdr::BOOT_ID, hdr::BOOT_ID + 8];
        offs.extend((hdr::TAIL..=hdr::PARTICIPANTS_HIGH).step_by(8));
        for off in offs {
            for v in [1u64, 0x7fff, 1 << 36, u64::MAX / 2] {
                std::fs::write(&path, &pristine).unwrap();
                put_word(&path, off, v);
                exercise(&path);
            }
        }
    });
}

// ----------------------------------------------------------------------
// The file itself
// ----------------------------------------------------------------------

#[test]
fn truncated_and_grown_files_are_refused() {
    let (f, l) = fresh("size");
    let path = f.0.clone();
    bounded("sizes", move || {
        let sizes = [
            0,
            7,
            layout::HEADER_SIZE as u64 - 1,
            layout::HEADER_SIZE as u64,
            l.file_size as u64 - 4096,
            l.file_size as u64 - 1,
            l.file_size as u64 + 1,
            l.file_size as u64 + 4096,
            l.file_size as u64 * 2,
        ];
        for len in sizes {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(len).unwrap();
            let got = open_status(&path);
            assert!(
                matches!(got, Err(Status::Corrupt | Status::Incompatible)),
                "a {len}-byte file (queue is {}) gave {got:?}",
                l.file_size
            );
            let got = Queue::inspect(&path).map(drop).map_err(|e| e.status());
            assert!(got.is_err(), "inspect of a {len}-byte file gave {got:?}");
            file.set_len(l.file_size as u64).unwrap();
        }
    });
}

#[test]
fn a_file_of_zeros_or_noise_is_refused() {
    bounded("zeros and noise", || {
        let path = unique_path("noise");
        let _g = TempFile(path.clone());
        // All zeros: open waits briefly for a creator to finish, then refuses.
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        assert_eq!(open_status(&path), Err(Status::Incompatible));
        let mut rng = Rng(0x1234_5678);
        for _ in 0..20 {
            let mut b = vec![0u8; 16384];
            rng.fill(&mut b);
            std::fs::write(&path, &b).unwrap();
            assert_eq!(open_status(&path), Err(Status::Incompatible));
        }
    });
}

#[test]
fn not_a_regular_file_is_refused() {
    bounded("not a file", || {
        let dir = unique_path("dir");
        std::fs::create_dir(&dir).unwrap();
        let got = open_status(&dir);
        assert!(got.is_err(), "a directory opened: {got:?}");
        assert!(Queue::inspect(&dir).is_err());
        std::fs::remove_dir(&dir).unwrap();

        let fifo = unique_path("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let _g = TempFile(fifo.clone());
        // Opened with O_NONBLOCK (no wait for a writer); the type check on
        // the descriptor refuses it (see tests/security.rs for the rest).
        let got = open_status(&fifo);
        assert_eq!(got, Err(Status::Permission), "a FIFO gave {got:?}");
        assert!(Queue::inspect(&fifo).is_err());

        let got = open_status(Path::new("/dev/null"));
        assert!(got.is_err(), "/dev/null gave {got:?}");

        // A symlink to a valid queue: O_NOFOLLOW refuses to follow it.
        let (target, _) = fresh("link-target");
        let link = unique_path("link");
        std::os::unix::fs::symlink(&target.0, &link).unwrap();
        let _gl = TempFile(link.clone());
        let got = open_status(&link);
        assert!(got.is_err(), "a symlink was followed: {got:?}");
        assert!(Queue::inspect(&link).is_err());
        // Creating over the symlink neither follows it nor clobbers the target.
        let before = std::fs::read(&target.0).unwrap();
        let got = Queue::create(&link, &small())
            .map(drop)
            .map_err(|e| e.status());
        assert_eq!(got, Err(Status::Exists));
        assert_eq!(std::fs::read(&target.0).unwrap(), before);
        // The target itself is fine.
        assert_eq!(open_status(&target.0), Ok(()));
    });
}

// ----------------------------------------------------------------------
// Scribbles on a live queue
// ----------------------------------------------------------------------

/// Every operation once or a few times, each trying once: errors are fine,
/// panics and hangs are not (the caller runs this under the watchdog).
fn operate(q: &Queue) {
    let z = Timeout::TryOnce;
    for n in 0..4u8 {
        let _ = q.send(&[n; 9], z);
    }
    let _ = q.send(&[1; 33], z); // too large
    let mut held = Vec::new();
    for _ in 0..6 {
        if let Ok(m) = q.claim(z) {
            let _ = m.data();
            held.push(m);
        }
    }
    for (outcome, m) in held.into_iter().enumerate() {
        let _ = match outcome % 4 {
            0 => m.ack(),
            1 => m.nack(Duration::ZERO),
            2 => m.reject("damaged test"),
            _ => m.extend(Duration::from_secs(1)).and_then(|_| m.ack()),
        };
    }
    let _ = q.claim(Duration::from_millis(1));
    if let Ok(v) = q.claim_batch(4, z) {
        let _ = q.ack_batch(&v);
    }
    let _ = q.send_batch(&[b"a".as_slice(), b"b"], z);
    let s = q.stats();
    for h in &s.histograms {
        // Scribbled buckets once overflowed `quantile` (BUG 2, fixed).
        let _ = (h.count, h.mean(), h.quantile(0.5), h.quantile(1.0));
    }
    let _ = q.verify();
    let _ = q.recover();
    let _ = q.dlq_list();
    let _ = q.dlq_redrive(None);
    let _ = q.dlq_purge(Some(1));
}

/// Opens (as a participant and for inspection) and operates; errors are fine.
fn exercise(path: &Path) {
    if let Ok(i) = Queue::inspect(path) {
        let _ = i.verify();
        let _ = i.stats();
        let _ = i.dlq_list();
        let _ = i.recover();
    }
    if let Ok(q) = Queue::open(path) {
        operate(&q);
        let _ = q.verify();
    }
}

/// A live queue: messages queued, delayed, claimed (held by the returned
/// handle), one dead-lettered, one reservation open.
fn live_queue(path: &Path) -> Queue {
    let q = Queue::create(path, &small()).unwrap();
    let z = Timeout::TryOnce;
    for n in 0..6u8 {
        q.send(&[n; 12], z).unwrap();
    }
    let m = q.claim(z).unwrap();
    m.reject("set up").unwrap();
    let m = q.claim(z).unwrap();
    m.nack(Duration::from_secs(600)).unwrap();
    // Two claims stay held by this handle until it is dropped.
    let a = q.claim(z).unwrap();
    let b = q.claim(z).unwrap();
    // No outcome: the claims stay until their lease ends.
    let _ = (a, b);
    q
}

#[derive(Clone, Copy, Debug)]
enum Region {
    Slots,
    Participants,
    Keys,
    DeadLetters,
}

fn region(l: &Layout, r: Region) -> (usize, usize) {
    match r {
        Region::Slots => (l.slots_offset, l.keys_offset),
        Region::Participants => (l.participants_offset, l.slots_offset),
        Region::Keys => (l.keys_offset, l.dlq_offset),
        Region::DeadLetters => (l.dlq_offset, l.file_size),
    }
}

/// Scribbles random words (and runs of random bytes) into one region of a
/// live queue, then operates on it through the live handle and a new one.
fn scribble_live(r: Region) {
    for seed in 1..=24u64 {
        bounded(&format!("scribble {r:?} seed {seed}"), move || {
            let path = unique_path("scribble");
            let _g = TempFile(path.clone());
            let q = live_queue(&path);
            let (start, end) = region(q.layout(), r);
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            for _ in 0..1 + rng.index(12) {
                let off = (start + rng.index(end - start)) & !7;
                let v = match rng.index(4) {
                    0 => rng.next(),
                    1 => rng.next() & 0xff,
                    2 => u64::MAX,
                    _ => rng.next() | 0xf,
                };
                put_word(&path, off, v);
            }
            if rng.index(2) == 0 {
                let mut b = vec![0u8; 1 + rng.index(300)];
                rng.fill(&mut b);
                let off = start + rng.index(end - start - b.len().min(end - start));
                put_bytes(&path, off, &b);
            }
            // The live handle keeps going on the damaged file.
            operate(&q);
            let _ = q.verify();
            // A second participant and an inspector open it.
            exercise(&path);
            drop(q);
            exercise(&path);
        });
    }
}

#[test]
fn random_bytes_in_the_slots_of_a_live_queue() {
    scribble_live(Region::Slots);
}

#[test]
fn random_bytes_in_the_participant_table_of_a_live_queue() {
    scribble_live(Region::Participants);
}

#[test]
fn random_bytes_in_the_key_table_of_a_live_queue() {
    scribble_live(Region::Keys);
}

#[test]
fn random_bytes_in_the_dead_letter_area_of_a_live_queue() {
    scribble_live(Region::DeadLetters);
}

// ----------------------------------------------------------------------
// verify() reports the damage
// ----------------------------------------------------------------------

/// Applies `damage` to a live queue's file; returns verify's problems from
/// a fresh inspection handle (and checks the live handle sees them too).
fn problems_after(damage: impl FnOnce(&Path, &Layout) + Send + 'static) -> Vec<String> {
    bounded("verify after damage", move || {
        let path = unique_path("verify");
        let _g = TempFile(path.clone());
        let q = live_queue(&path);
        assert!(
            q.verify().problems.is_empty(),
            "sound before the damage: {:?}",
            q.verify()
        );
        let l = *q.layout();
        damage(&path, &l);
        let live = q.verify().problems;
        let i = Queue::inspect(&path).expect("inspect");
        let fresh = i.verify().problems;
        assert_eq!(live, fresh, "two handles disagree on the damage");
        operate(&q);
        fresh
    })
}

fn slot_word_off(l: &Layout, i: u64) -> usize {
    l.slot(i) + slot::WORD
}

#[test]
fn verify_reports_an_invalid_slot_state() {
    let p = problems_after(|path, l| {
        let off = slot_word_off(l, 5);
        put_word(path, off, word(path, off) | 0xf);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("slot 5") && s.contains("invalid state")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_a_slot_owned_by_nobody() {
    let p = problems_after(|path, l| {
        // Slot 2 is claimed by participant 0; say participant 2 (free) has it.
        let off = slot_word_off(l, 2);
        let w = word(path, off);
        assert_eq!(w & 0xf, 5, "slot 2 is claimed in the live queue");
        put_word(path, off, w & !(0x3ff << 4) | 2 << 4);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("slot 2") && s.contains("not attached")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_an_owner_out_of_range() {
    let p = problems_after(|path, l| {
        let off = slot_word_off(l, 3);
        let w = word(path, off);
        put_word(path, off, w | 0x3ff << 4);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("slot 3") && s.contains("out of range")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_a_payload_length_over_the_maximum() {
    let p = problems_after(|path, l| {
        // Slot 4 holds a ready message.
        put_word(path, l.slot(4) + slot::LEN, 1 << 20);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("slot 4") && s.contains("length")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_a_slot_lap_far_from_the_cursor() {
    let p = problems_after(|path, l| {
        let off = slot_word_off(l, 6);
        let w = word(path, off);
        put_word(path, off, w ^ 1 << 50);
    });
    assert!(
        p.iter().any(|s| s.contains("slot 6") && s.contains("lap")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_a_scribbled_head_cursor() {
    let p = problems_after(|path, _| put_word(path, hdr::HEAD, 1 << 40));
    assert!(p.iter().any(|s| s.contains("head cursor")), "{p:?}");
}

#[test]
fn verify_reports_an_invalid_participant_state() {
    let p = problems_after(|path, l| {
        let off = l.participant(1) + part::STATE;
        put_word(path, off, word(path, off) | 3);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("participant 1") && s.contains("invalid state")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_an_invalid_dead_letter() {
    let p = problems_after(|path, l| {
        put_word(path, l.dead_letter(1) + dlq::WORD, 0xf);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("dead letter 1") && s.contains("invalid state")),
        "{p:?}"
    );
    let p = problems_after(|path, l| {
        // Record 0 holds the rejected message; give it an impossible length.
        assert_eq!(word(path, l.dead_letter(0) + dlq::WORD) & 0xf, dlq::FULL);
        put_word(path, l.dead_letter(0) + dlq::LEN, u64::MAX);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("dead letter 0") && s.contains("out of range")),
        "{p:?}"
    );
}

#[test]
fn verify_reports_a_scribbled_key_entry() {
    let p = problems_after(|path, l| {
        // A holder naming a slot that does not exist.
        put_word(path, l.key_entry(0) + layout::key::KEY, 42);
        put_word(path, l.key_entry(0) + layout::key::HOLDER, u64::MAX);
    });
    assert!(
        p.iter()
            .any(|s| s.contains("key entry 0") && s.contains("beyond")),
        "{p:?}"
    );
}

// ----------------------------------------------------------------------
// The fuzzers' seeds and regressions
// ----------------------------------------------------------------------

fn files_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file() && !p.extension().is_some_and(|e| e == "md"));
    v.sort();
    v
}

/// Replays one fuzz input in a child process (this test binary, running
/// `replay_child`), so that an abort (a panic while unwinding, say) fails
/// only this replay, and a hang is killed by the watchdog.
fn replay_isolated(target: &str, file: &Path) {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "replay_child", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("SHMQ_REPLAY_TARGET", target)
        .env("SHMQ_REPLAY_FILE", file)
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{target} {}: still running after {WATCHDOG:?}: a hang",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success() && stdout.contains("replayed "),
        "{target} {} failed ({status}):\n{}\n{}",
        file.display(),
        stdout,
        stderr
            .chars()
            .rev()
            .take(6000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
}

/// The child side of [`replay_isolated`]; does nothing when run directly.
#[test]
#[ignore = "helper"]
fn replay_child() {
    let (Ok(target), Ok(file)) = (
        std::env::var("SHMQ_REPLAY_TARGET"),
        std::env::var("SHMQ_REPLAY_FILE"),
    ) else {
        return;
    };
    let data = std::fs::read(&file).unwrap();
    match target.as_str() {
        "header" => harness::header(&data),
        "model_ops" => model_ops::model_ops(&data),
        "c_abi" => c_abi::c_abi(&data),
        "legacy" => harness::legacy(&data),
        _ => harness::open_and_operate(&data),
    }
    println!("replayed {file}");
}

#[test]
fn fuzz_seeds_replay_cleanly() {
    let seeds = files_in("fuzz/seeds/open_and_operate");
    assert!(!seeds.is_empty(), "no seeds committed");
    for p in seeds {
        replay_isolated("open_and_operate", &p);
    }
    for target in ["header", "model_ops", "c_abi", "legacy"] {
        let seeds = files_in(&format!("fuzz/seeds/{target}"));
        assert!(!seeds.is_empty(), "no {target} seeds committed");
        for p in seeds {
            replay_isolated(target, &p);
        }
    }
}

fn regression(name: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(name);
    assert!(p.is_file(), "{} is missing", p.display());
    // The target is the name's prefix: `header-`, `model_ops-`, `c_abi-`;
    // any other name is an `open_and_operate` input.
    let target = ["header", "model_ops", "c_abi", "legacy"]
        .into_iter()
        .find(|t| name.starts_with(&format!("{t}-")))
        .unwrap_or("open_and_operate");
    replay_isolated(target, &p);
}

/// Every committed regression has a test below (and so a name in the report).
#[test]
fn every_regression_has_a_test() {
    let src = include_str!("damaged.rs");
    for p in files_in("fuzz/regressions") {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            src.contains(&format!("regression(\"{name}\")")),
            "fuzz/regressions/{name} has no test in tests/damaged.rs"
        );
    }
}

// BUG 1: a hostile header (checksum recomputed) with lease_ns near u64::MAX:
// `now + self.config.lease_ns` overflows in Engine::finish_claim (and the
// same sum in repair_slot; `now + reservation_timeout_ns` in reserve and
// repair_slot). Debug builds panic ("attempt to add with overflow"); release
// builds wrap, so the lease deadline lands in the past and every claim
// expires at once. Input: template 0, LEASE_NS = u64::MAX, send, claim.
#[test]
fn regression_lease_overflow() {
    regression("lease-overflow-claim");
}

// BUG 2: HistogramSnapshot::quantile sums the buckets with `seen += n`;
// buckets read from the mapping are saturated into the snapshot but their
// sum is not, so two scribbled buckets of 2^63 overflow (debug: panic in
// metrics.rs quantile; release: wraps and returns a wrong percentile).
// Input: template 0, participant 0's first two lead-time buckets = 2^63,
// then stats() and quantile(0.5..1.0).
#[test]
fn regression_quantile_overflow() {
    regression("quantile-overflow-stats");
}

// BUG 3: a slot word whose lap is far ahead of the head cursor makes
// Engine::claim_head advance the head one position per iteration (the `_`
// arm: "position p is decided and holds nothing") until the cursor's lap
// catches up: up to 2^27 x capacity iterations, minutes with capacity 4,
// centuries with a large queue. Engine::reserve does the same with the
// tail (the `d > 0` arm). Input: template 0, all four slot words set to
// FREE (claim) or CLAIMED (send) at lap 2^27 - 1, then one claim / send.
#[test]
fn regression_lap_walk_claim() {
    regression("lap-walk-claim");
}

#[test]
fn regression_lap_walk_send() {
    regression("lap-walk-send");
}

// BUG 4: a scribbled cursor at u64::MAX: `p + 1` overflows where reserve
// (tail, the `d > 0` arm) and claim_head (head, the `_` arm) move the cursor
// along (debug: panic "attempt to add with overflow"; release: wraps to 0,
// which is harmless there). Input: template 0, TAIL (or HEAD) = u64::MAX,
// then send (or claim).
#[test]
fn regression_cursor_overflow_send() {
    regression("cursor-overflow-send");
}

#[test]
fn regression_cursor_overflow_claim() {
    regression("cursor-overflow-claim");
}

// BUG 5: participants.rs Table::take reads an entry's CLEANER word and,
// when the entry is CLEANING and the clamped entry it names is LIVE, calls
// `live.alive(c - 1, ..)` with the unclamped `c - 1`; OfdLiveness::alive in
// queue.rs then computes `LOCK_BASE + index`, which overflows for
// c = u64::MAX (debug: panic inside Queue::open; release: probes a lock at
// a wrapped offset). `claim_dead` checks `c - 1 >= capacity`, `take` does
// not. Input: template 0, participant 0 = CLEANING with CLEANER = u64::MAX,
// participant 1 = LIVE, then open.
#[test]
fn regression_cleaner_overflow() {
    regression("cleaner-overflow-open");
}

// BUG 6: keys.rs `unref(r)` returns `((r >> 32) - 1, ..)` for every r != 0;
// a scribbled HOLDER or WAITING word below 2^32 underflows (debug: panic
// "attempt to subtract with overflow"; release: slot index u64::MAX, which
// verify reports but the ring.rs callers of `unref` would pass on). Found by
// the fuzzer in verify() -> verify_keys. Input: template 1 (4 keys), key
// entry 0 = key 42 with HOLDER = 1, then verify().
#[test]
fn regression_key_ref_underflow() {
    regression("key-ref-underflow-verify");
}

// c_abi: a byte-for-byte copy of a live handle (in the caller's memory)
// passed as a handle after the real one was closed: `shell()` found the
// magic, the state IDLE and the old `Inner` pointer, and the call used the
// freed `Inner` (ASan: heap-use-after-free in bindings/c/src). Fixed in
// bindings/c/src/queue/registry.rs: a pointer is a handle only when it is the address of a
// shell in the registry of shells handed out; nothing else is read.
// Input: create, copy the handle's bytes into the pool, close the handle,
// then calls through the copy.
#[test]
fn regression_c_abi_copied_handle_after_close() {
    regression("c_abi-copied-handle-after-close");
}

// model_ops: inputs on which the reference model was wrong (the engine was
// right); each fixed in the model, kept so the model stays right.
// - Closing a handle redelivers or dead-letters its claims slot by slot
//   (the model went by message id), so which one finds room in the dead
//   letters depends on slot order.
// - A producer that finds the queue full runs a maintenance pass, which
//   moves a message waiting for room in the dead letters; the send then
//   succeeds in its slot.
// - A repair pass (here, the one run as of a later time) also moves
//   messages waiting for room in the dead letters, slot by slot.
// - Latest-only: a redriven dead letter whose key has a waiting message of
//   the same version gets STALE (the model had marked the waiting message
//   as possibly parked by a claim that did not reach it).
#[test]
fn regression_model_ops_close_dead_letters_in_slot_order() {
    regression("model_ops-close-dead-letters-in-slot-order");
}

#[test]
fn regression_model_ops_producer_moves_waiting_dead_letter() {
    regression("model_ops-producer-moves-waiting-dead-letter");
}

#[test]
fn regression_model_ops_repair_moves_waiting_dead_letter() {
    regression("model_ops-repair-moves-waiting-dead-letter");
}

#[test]
fn regression_model_ops_latest_only_redrive_stale() {
    regression("model_ops-latest-only-redrive-stale");
}

// - Latest-only: one redrive sends back two dead letters of one key; the
//   later (newer) one replaces the earlier in place, within the same call.
#[test]
fn regression_model_ops_latest_only_redrive_replaces_its_own() {
    regression("model_ops-latest-only-redrive-replaces-its-own");
}

// - Latest-only: since main's e70499a a reservation's commit replaces the
//   key's waiting message in place (or is STALE against it), as a send
//   does; the model expected a commit to queue anew.
#[test]
fn regression_model_ops_latest_only_commit_replaces() {
    regression("model_ops-latest-only-commit-replaces");
}

// c_abi: shmq_claim_batch with a misaligned `out_count` claimed the
// messages, returned SHMQ_OK and silently did not write the count (`put`
// skips a misaligned pointer), so the caller could not know what it held.
// Fixed in bindings/c/src: every optional out-parameter is checked before the call
// acts; a misaligned one is SHMQ_INVALID_ARGUMENT. Input: claims through
// claim_batch with the count pointer one byte into the pool.
#[test]
fn regression_c_abi_misaligned_out_count() {
    regression("c_abi-misaligned-out-count");
}

// c_abi: shmq_read of a claim the handle no longer held (here: already
// acked) copied the payload into the caller's buffer and only then found
// the claim gone, so a failed call wrote to the caller's memory. The engine
// checked the claim once, after the copy (a speed-up). Fixed in
// src/engine/settle.rs: `read_claimed` checks the claim before the copy as
// well as after it. Found by CI's bounded fuzzing (fixed seed 20261207).
#[test]
fn regression_c_abi_read_of_unheld_claim() {
    regression("c_abi-read-of-unheld-claim");
}

// c_abi (harness): send options made of the pool's bytes, or forged, asked
// `shmq_send_ex` to wait for years (a negative `timeout_ns` waits forever)
// on a full queue: libFuzzer's timeout, not a shmq bug. The harness now
// bounds that field (`bound_wait`); the input must run in moments.
#[test]
fn regression_c_abi_forged_send_timeout_hangs() {
    regression("c_abi-forged-send-timeout-hangs");
}

// BUG `head-lag` (found by model_ops, fixed in ring.rs): with every slot
// held (claimed), a producer's try-once send skipped each held slot
// (`Engine::reserve`, up to `capacity` skips, then FULL), so each failed
// send moved the tail one lap while the head stayed. Input: capacity 4, four
// messages claimed, 48 sends that get FULL, one ack, one send, then
// claim_batch(try once) answered EMPTY with that message READY (a claim
// walks at most 4 * capacity + 64 positions per attempt). A held slot is now
// skipped only towards a free slot within the lap.
#[test]
fn regression_model_ops_head_lag_empty() {
    regression("model_ops-head-lag-empty");
}

// c_abi: the harness let the pool's bytes serve as `shmq_options`; they
// asked for a valid queue of 25 million slots, and shmq_create made (and
// formatted) a 104 GiB file in /dev/shm until the run ran out of memory.
// Not an shmq bug (the options were valid): the harness now always writes
// its own bounded options. Kept so the input stays harmless.
#[test]
fn regression_c_abi_huge_options_from_pool() {
    regression("c_abi-huge-options-from-pool");
}

// BUG `version-overflow` (found by open_and_operate, fixed in keys.rs):
// `KeyTable::assign_version` gave a send with version 0
// `cur.max(last_acked) + 1`, read from the key entry's NEXT_VERSION and
// LAST_ACKED words; a scribbled entry at u64::MAX overflowed (debug: panic
// in send_with -> resolve_version; release: version 0, every keyed send of
// that key STALE). Now it is `Corrupt`. Input: template 3 (keys,
// latest-only) with key-table words patched, then keyed sends.
#[test]
fn regression_version_overflow_send() {
    regression("version-overflow-send");
}

// BUG `lazy-cursor-overflow` (found by open_and_operate in CI's bounded run,
// fixed in ring.rs): a handle's private walk position (the lazy cursors of
// `Engine::reserve`/`claim_head`) was stepped with `+= 1`; from a head
// cursor scribbled near u64::MAX it overflowed (debug: panic). Positions
// now step with `wrapping_add`, as the shared cursor always did.
#[test]
fn regression_lazy_cursor_overflow_claim() {
    regression("lazy-cursor-overflow-claim");
}

// BUG `late-commit-replaces` (found by model_ops, fixed in queue.rs): in
// latest-only mode `Reserved::commit_with` replaced the key's waiting
// message before checking that the reservation was still the producer's,
// so the late commit of an abandoned (quarantined) reservation returned OK
// (its payload replaced the waiting message) where G5 says ABANDONED and
// nothing sent. Input: latest-only, a keyed message waiting, a reservation,
// the repair pass as of 6 s later (the reservation is abandoned), then a
// commit with the same key and a newer version. (Its replay depends on the
// claims' 50 us pass of a blocking reservation, real time.)
#[test]
fn regression_model_ops_late_commit_replaces_waiting() {
    regression("model_ops-late-commit-replaces-waiting");
}

// The same bug, the other way: the late commit of an abandoned reservation
// whose version is not newer than the waiting message's got STALE from
// `take_waiting` instead of ABANDONED.
#[test]
fn regression_model_ops_late_commit_stale() {
    regression("model_ops-late-commit-stale");
}

// BUG `dlq-seq-overflow` (found by open_and_operate in CI, fixed in
// engine/dead_letters.rs): the dead-letter id was the header's DLQ_SEQ
// counter `fetch_add(1) + 1`; from a counter scribbled to u64::MAX the sum
// overflowed (debug: panic in `finish_dead_letter` under `Message::reject`).
// It now wraps: an id is a label, never an index.
#[test]
fn regression_dlq_seq_overflow_reject() {
    regression("dlq-seq-overflow-reject");
}

// BUG `latest-only-replacements-wrap-lease` (found by model_ops in the
// narrow-width build, fixed in engine/produce.rs): a latest-only
// replacement takes the slot without stamping its lease word (its deadline
// is in the replacer's record), so after replacements the word kept the
// first reservation's tag; once the slot's sequence wrapped onto that tag
// (8 replacements with 4-bit sequences, about a million with 21-bit ones),
// the next claim took the stale deadline for its own stamp and its lease
// ran out at once: a repair 6 s later redelivered a message whose 30 s lease
// was still running. Commits now re-tag the lease word as they re-tag the
// claim word. (Reproduces in the narrow build: `RUSTFLAGS="--cfg
// shmq_narrow"`; the regular build replays it cleanly either way.)
#[test]
fn regression_model_ops_latest_only_replacements_wrap_lease() {
    regression("model_ops-latest-only-replacements-wrap-lease");
}
