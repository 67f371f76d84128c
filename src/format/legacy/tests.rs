//! The readers over the checked-in fixtures (tests/fixtures/migrate-v*,
//! see the README there), over damaged copies of them, and over a file of
//! the current format made by this engine.

use super::*;

/// A fixture, decompressed with the system's gzip (`None` without it).
fn fixture(version: u64) -> Option<Vec<u8>> {
    let path = format!(
        "{}/tests/fixtures/migrate-v{version}.shmq.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new("gzip")
        .args(["-dc", &path])
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

fn texts(s: &Snapshot) -> Vec<(String, OldState, u64, u64)> {
    s.messages
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.payload).into_owned(),
                m.state,
                m.key,
                m.version,
            )
        })
        .collect()
}

#[test]
fn both_fixtures_read_the_same_messages_keys_and_dead_letters() {
    for v in [1, 2] {
        let Some(bytes) = fixture(v) else {
            eprintln!("skipped: gzip is not installed");
            return;
        };
        assert_eq!(version_of(&bytes), Some(v));
        let s = read(&bytes).unwrap();
        assert!(s.damaged.is_empty(), "{:?}", s.damaged);
        assert_eq!(s.params.capacity, 16);
        assert_eq!(s.params.max_message_size, 64);
        assert_eq!(s.params.key_capacity, 8);
        assert_eq!(s.params.max_deliveries, 3);
        assert_eq!(s.params.lease_ns, 3_600_000_000_000);
        use OldState::*;
        assert_eq!(
            texts(&s),
            vec![
                ("abandoned".into(), Claimed, 0, 0),
                ("keyless one".into(), Ready, 0, 0),
                ("keyless two".into(), Ready, 0, 0),
                ("seven v3".into(), Ready, 7, 3),
                ("nine v6".into(), Ready, 9, 6),
                ("later".into(), Delayed, 0, 0),
            ],
            "version {v}"
        );
        assert!(s.messages[5].not_before_ns.is_some());
        assert_eq!(s.messages[0].deliveries, 1);
        let k9 = s.keys.iter().find(|k| k.key == 9).unwrap();
        assert_eq!((k9.last_acked, k9.last_committed), (5, 6));
        assert_eq!(s.dead_letters.len(), 1);
        assert_eq!(s.dead_letters[0].payload, b"doomed");
        assert_eq!(s.dead_letters[0].reason, "fixture: rejected on purpose");
        assert_eq!(s.participants.len(), 1, "the dead consumer's entry");
    }
}

#[test]
fn a_file_of_one_version_is_not_read_as_another() {
    let Some(bytes) = fixture(1) else { return };
    assert!(decode(&bytes, &v2::SPEC).is_err());
    let mut other = bytes.clone();
    other[8] = 9;
    assert_eq!(read(&other).unwrap_err().status(), Status::Incompatible);
    assert!(read(&bytes[..100]).is_err());
}

#[test]
fn damaged_copies_never_panic_and_a_header_scribble_is_refused() {
    for v in [1, 2] {
        let Some(bytes) = fixture(v) else { return };
        // Flip a byte of the checksummed header: refused as corrupt.
        let mut b = bytes.clone();
        b[24] ^= 1;
        assert_eq!(read(&b).unwrap_err().status(), Status::Corrupt);
        // Scribble over the slots, keys and dead letters with a simple
        // generator: every outcome is a snapshot or an error.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ v;
        for round in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..(1 + round % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 4096 + (x as usize % (b.len() - 4096));
                b[at] = (x >> 32) as u8;
            }
            if let Ok(s) = read(&b) {
                assert!(s.messages.len() <= 16 && s.dead_letters.len() <= 4);
                assert!(s.messages.iter().all(|m| m.payload.len() <= 64));
            }
        }
        // Every length cut short.
        for n in [0, 7, 8, 16, 4095, 4096, bytes.len() - 1] {
            assert!(read(&bytes[..n]).is_err());
        }
    }
}

#[test]
fn a_blank_file_of_each_version_reads_empty_and_a_bad_size_is_refused() {
    for spec in [&v1::SPEC, &v2::SPEC, &v3::SPEC] {
        let (b, slots) = blank(spec, 4, 32, 2, 2, 1, 0).unwrap();
        let s = decode(&b, spec).unwrap();
        assert!(s.messages.is_empty() && s.keys.is_empty() && s.dead_letters.is_empty());
        assert_eq!(slots, 4096 + 12288);
        let mut longer = b.clone();
        longer.extend_from_slice(&[0; 4096]);
        assert_eq!(decode(&longer, spec).unwrap_err().status(), Status::Corrupt);
        assert!(blank(spec, 0, 32, 2, 2, 1, 0).is_none());
    }
}

#[test]
fn a_latest_only_v2_file_made_before_the_replacement_records_is_read() {
    // Latest-only files made before the replacement records kept version
    // 2 and end after the dead letters; later ones have the records.
    let (with, _) = blank(&v2::SPEC, 4, 2000, 2, 2, 3, 1).unwrap();
    assert!(decode(&with, &v2::SPEC).is_ok());
    let (mut without, _) = blank(&v2::SPEC, 4, 2000, 2, 2, 3, 0).unwrap();
    assert!(without.len() < with.len());
    let h = &v2::SPEC.hdr;
    without[h.flags..h.flags + 8].copy_from_slice(&1u64.to_le_bytes());
    let sum = checksum(&without, h.checksum).unwrap();
    without[h.checksum..h.checksum + 8].copy_from_slice(&sum.to_le_bytes());
    let s = decode(&without, &v2::SPEC).unwrap();
    assert_eq!(s.params.flags, 1);
    // Version 1 never had them.
    let (v1_lo, _) = blank(&v1::SPEC, 4, 2000, 2, 2, 3, 1).unwrap();
    assert_eq!(v1_lo.len(), without.len());
}

/// A file of format 3 made by this engine: a queue with a default time to
/// live that drops expired messages, a message with its own time to live,
/// one with the queue's (delivered once), one delayed and a dead letter.
/// Its bytes, or `None` when the engine writes another format by now (then
/// version 3 needs a fixture made by its binary: tests/fixtures/README.md).
fn current_v3_file(name: &str) -> Option<Vec<u8>> {
    use crate::{Expiry, Options, Queue, SendOptions};
    use std::time::Duration;
    if crate::format::FORMAT_VERSION != 3 {
        eprintln!("skipped: the engine no longer writes format 3");
        return None;
    }
    if cfg!(shmq_narrow) {
        // Built with the test widths of the packed words: its files are not
        // format 3's bytes (the reader's frozen widths are the real ones).
        eprintln!("skipped: a shmq_narrow build does not write format 3's widths");
        return None;
    }
    let path = std::env::temp_dir().join(format!("shmq-legacy-v3-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let opts = Options {
        capacity: 8,
        max_message_size: 64,
        key_capacity: 4,
        dlq_capacity: 2,
        participant_capacity: 2,
        message_ttl: Duration::from_secs(3600),
        on_expiry: Expiry::Drop,
        ..Options::default()
    };
    let q = Queue::create(&path, &opts).unwrap();
    let no_wait = Duration::ZERO;
    let send = |data: &[u8], so: SendOptions| q.send_with(data, &so.timeout(no_wait)).unwrap();
    send(b"doomed", SendOptions::new());
    q.claim(no_wait).unwrap().reject("on purpose").unwrap();
    send(b"queue ttl", SendOptions::new().key(7).version(3));
    send(
        b"own ttl",
        SendOptions::new().ttl(Duration::from_secs(36_000)),
    );
    send(b"later", SendOptions::new().delay(Duration::from_secs(600)));
    let held = q.claim(no_wait).unwrap();
    assert_eq!(held.data().unwrap(), b"queue ttl");
    // Left held: the handle gives it back as it closes (a delivery
    // counted).
    drop(q);
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    Some(bytes)
}

#[test]
fn a_v3_file_of_this_engine_reads_with_its_deadlines_and_time_to_live() {
    let Some(bytes) = current_v3_file("reads") else {
        return;
    };
    let now = crate::sys::monotonic_ns();
    assert_eq!(version_of(&bytes), Some(3));
    let s = read(&bytes).unwrap();
    assert!(s.damaged.is_empty(), "{:?}", s.damaged);
    assert_eq!(s.params.version, 3);
    assert_eq!(s.params.message_ttl_ns, 3_600_000_000_000);
    assert!(s.params.expiry_drop);
    assert_eq!((s.params.capacity, s.params.max_message_size), (8, 64));
    use OldState::*;
    assert_eq!(
        texts(&s),
        vec![
            ("queue ttl".into(), Pending, 7, 3),
            ("own ttl".into(), Ready, 0, 0),
            ("later".into(), Delayed, 0, 0),
        ]
    );
    let left = |m: &OldMessage| m.expires_ns.unwrap().saturating_sub(now);
    let hour = 3_600_000_000_000u64;
    // The queue's hour, and the message's own ten hours, from the commit.
    assert!((hour - 60_000_000_000..=hour).contains(&left(&s.messages[0])));
    assert!((10 * hour - 60_000_000_000..=10 * hour).contains(&left(&s.messages[1])));
    // A delay does not move a deadline.
    assert!(left(&s.messages[2]) <= hour);
    assert!(s.messages[2].not_before_ns.is_some());
    assert_eq!(s.messages[0].deliveries, 1);
    assert_eq!(s.keys.len(), 1);
    assert_eq!(s.dead_letters.len(), 1);
    assert_eq!(s.dead_letters[0].payload, b"doomed");
    assert_eq!(s.dead_letters[0].reason, "on purpose");
    // Not a file of version 2, and a deadline flag is nothing there.
    assert!(decode(&bytes, &v2::SPEC).is_err());
    assert!(v2::SPEC.len_expires == 0 && v2::SPEC.slot.expires.is_none());
}

#[test]
fn damaged_v3_files_never_panic() {
    let Some(bytes) = current_v3_file("damaged") else {
        return;
    };
    let mut b = bytes.clone();
    b[24] ^= 1;
    assert_eq!(read(&b).unwrap_err().status(), Status::Corrupt);
    // The time to live is outside the checksum: any value is read as is.
    let mut b = bytes.clone();
    b[176..184].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(read(&b).unwrap().params.message_ttl_ns, u64::MAX);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..(1 + round % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = 4096 + (x as usize % (b.len() - 4096));
            b[at] = (x >> 32) as u8;
        }
        if let Ok(s) = read(&b) {
            assert!(s.messages.len() <= 8 && s.dead_letters.len() <= 2);
            assert!(s.messages.iter().all(|m| m.payload.len() <= 64));
        }
    }
    for n in [0, 8, 4095, 4096, bytes.len() - 1] {
        assert!(read(&bytes[..n]).is_err());
    }
}
