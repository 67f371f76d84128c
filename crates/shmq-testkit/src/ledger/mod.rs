//! The SIGKILL ledger, one format for every test that kills producers and
//! consumers (`tests/kill.rs`, `tests/keys_kill.rs`, `shmq torture`): what
//! producers and consumers saw, kept outside the queues, in a file of its
//! own that every worker maps. The final checks ([`crate::oracle`]) compare
//! it with the queues; nothing in it is trusted to the engine under test.
//!
//! ```text
//!  header (4 KiB)   magic, sizes, next id, next sample, event counters
//!  instances        6 words per worker process: role|index|pid, killed at, started at, reaped at,
//!                   busy (what the worker holds now), how it was killed, stalls
//!  key cache        2 words per (keyed queue, key): applied version, holder (instance | claim ms)
//!  samples          2 words each: (killed instance, claim time) of a redelivery after a death
//!  records          7 words per message id: send, key, version, claim, claim call time,
//!                   outcomes, claim return time
//! ```
//!
//! Every word is a `u64` touched only through atomics, by any number of
//! processes; a worker killed at any instruction leaves each word either
//! before or after its store. Message ids come from one counter
//! ([`Ledger::alloc`]); an id's record says how far its send got
//! ([`send_state`]) and how far its latest recorded claim got
//! ([`ClaimWord`]). The order of the records is the protocol:
//!
//! - a producer writes the key and version, then `INTENT`, *before* its
//!   first try, and `SENT` (with the version the engine gave) after the send
//!   returned `Ok`; `REFUSED` after `Stale`, `NOT_SENT` when it knows
//!   nothing went out. A producer killed between `Ok` and `SENT` leaves
//!   `INTENT`: the message may or may not be in the queue.
//! - a consumer writes `CLAIMED` (delivery, instance) and the time it
//!   called claim right after a claim; `ACKING` (the intent: this claim,
//!   named by instance and delivery, is about to be acked) before the ack
//!   call, then the result after it returned: `ACKED` (and the id's count of
//!   successful acks goes up) or `LEASE_LOST` (the engine refused a late
//!   outcome); `NACKING` and `NACKED` around a nack. Only a killed consumer
//!   leaves `ACKING` behind: an intent without a result. Such an ack is
//!   "maybe acked" only if the engine agrees (the message was never claimed
//!   again, its queue drained empty, it is not a dead letter), and the
//!   engine's ack counter must lie between the recorded acks and those plus
//!   the intents without a result.
//!
//! The parent marks a worker killed ([`Ledger::mark_killed`]) *before* it
//! sends the SIGKILL, so a consumer that finds a message or a key still
//! recorded as held by another instance can tell at once whether that
//! instance may be dead (allowed: redelivery) or is certainly alive (two
//! holders at once: a violation).
//!
//! Violations found by workers are appended to `violations.log` next to the
//! ledger, one `write` per line, `KIND detail`.
//!
//! One file per part: `words` (the meaning of the words: send states,
//! claim phases, what a worker holds, events, holder words), `records` (the
//! message ids and their records), `instances` (the worker instances and the
//! key cache), `events` (latency samples, event counters and violations).
//! This file holds the layout of the ledger file and its mapping.

mod events;
mod instances;
mod records;
mod words;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

pub use words::{
    busy, holder_word, kill_how, kind, ms_since, phase, send_state, split_holder, ClaimWord, Event,
    OutcomeCounts, OutcomeKind, EVENTS,
};

/// "SHMQTORT".
const MAGIC: u64 = 0x5348_4d51_544f_5254;
/// Words of the header.
const HEADER_WORDS: u64 = 512;

// Header words.
const H_MAGIC: u64 = 0;
const H_RECORDS: u64 = 1;
const H_INSTANCES: u64 = 2;
const H_QUEUES: u64 = 3;
const H_KEYS: u64 = 4;
const H_SAMPLES: u64 = 5;
const H_NEXT_ID: u64 = 8;
const H_NEXT_SAMPLE: u64 = 9;
const H_VIOLATIONS: u64 = 10;
const H_EVENTS: u64 = 16;

/// Words per instance, key cache entry and record.
const INSTANCE_WORDS: u64 = 7;
const KEY_WORDS: u64 = 2;
const RECORD_WORDS: u64 = 7;

/// The instance number of the parent's own consumer (the final drain);
/// workers are numbered from `DRAINER + 1`. 0 means "nobody".
pub const DRAINER: u32 = 1;

/// Sizes of a ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Message records.
    pub records: u64,
    /// Worker instances (every start of a worker takes one).
    pub instances: u64,
    /// Queues.
    pub queues: u64,
    /// Keys per queue (keys are `1..=keys`).
    pub keys: u64,
    /// Latency samples.
    pub samples: u64,
}

impl Sizes {
    fn instances_at(&self) -> u64 {
        HEADER_WORDS
    }
    fn keys_at(&self) -> u64 {
        self.instances_at() + self.instances * INSTANCE_WORDS
    }
    fn samples_at(&self) -> u64 {
        self.keys_at() + self.queues * (self.keys + 1) * KEY_WORDS
    }
    fn records_at(&self) -> u64 {
        self.samples_at() + 2 * self.samples
    }
    fn words(&self) -> u64 {
        self.records_at() + self.records * RECORD_WORDS
    }
}

/// A mapped ledger.
pub struct Ledger {
    _map: memmap2::MmapRaw,
    base: *mut u64,
    words: u64,
    sizes: Sizes,
    violations: File,
    violations_path: PathBuf,
}

fn violations_path(path: &Path) -> PathBuf {
    path.with_file_name("violations.log")
}

impl Ledger {
    /// Creates a ledger file (it must not exist); sparse, so only what is
    /// written takes memory.
    pub fn create(path: &Path, sizes: Sizes) -> std::io::Result<Ledger> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.set_len(sizes.words() * 8)?;
        let header = [
            (H_MAGIC, MAGIC),
            (H_RECORDS, sizes.records),
            (H_INSTANCES, sizes.instances),
            (H_QUEUES, sizes.queues),
            (H_KEYS, sizes.keys),
            (H_SAMPLES, sizes.samples),
            (H_NEXT_ID, 0),
        ];
        for (w, v) in header {
            f.write_all_at(&v.to_le_bytes(), w * 8)?;
        }
        drop(f);
        Ledger::open(path)
    }

    /// Maps an existing ledger.
    pub fn open(path: &Path) -> std::io::Result<Ledger> {
        let bad = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let mut head = [0u8; 48];
        f.read_exact_at(&mut head, 0)?;
        let h = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        if h(0) != MAGIC {
            return Err(bad("not a torture ledger"));
        }
        let sizes = Sizes {
            records: h(1),
            instances: h(2),
            queues: h(3),
            keys: h(4),
            samples: h(5),
        };
        let words = sizes.words();
        let len = f.metadata()?.len();
        if len != words * 8 {
            return Err(bad("size does not match its header"));
        }
        let map = memmap2::MmapOptions::new().len(len as usize).map_raw(&f)?;
        let base = map.as_mut_ptr() as *mut u64;
        let vpath = violations_path(path);
        let violations = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&vpath)?;
        Ok(Ledger {
            _map: map,
            base,
            words,
            sizes,
            violations,
            violations_path: vpath,
        })
    }

    /// The sizes it was created with.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    fn word(&self, i: u64) -> &AtomicU64 {
        assert!(i < self.words, "ledger word {i} out of range");
        // SAFETY: `i` is in bounds (checked above) of a mapping that lives as
        // long as `self`; the mapping is page-aligned and every word offset
        // is a multiple of 8, so the pointer is aligned; every process
        // touches these words only through atomics.
        unsafe { AtomicU64::from_ptr(self.base.add(i as usize)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn claim_words_round_trip_and_records_follow_the_protocol() {
        let w = ClaimWord {
            delivery: 3,
            phase: phase::ACKING,
            fresh: 1,
            instance: 77,
        };
        assert_eq!(ClaimWord::decode(w.encode()), w);

        let dir = std::env::temp_dir().join(format!("shmq-ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger");
        let l = Ledger::create(
            &path,
            Sizes {
                records: 4,
                instances: 8,
                queues: 2,
                keys: 3,
                samples: 2,
            },
        )
        .unwrap();
        assert_eq!(l.alloc(3), Some(0));
        assert_eq!(l.alloc(2), None, "only 4 records");
        l.intent(1, 1, 5, 2, 0);
        l.sent(1, send_state::SENT, 9);
        assert_eq!(l.send_of(1), (send_state::SENT, 1, false, 5));
        assert_eq!(l.key_version_of(1), (2, 9));
        assert!(l.mark_dead_lettered(1));
        assert!(!l.mark_dead_lettered(1));
        assert_eq!(l.record_claim(1, 1, 6, 100, 101), (ClaimWord::default(), 0));
        let (old, t) = l.record_claim(1, 1, 7, 200, 201);
        assert_eq!(l.claim_return_of(1), 201);
        assert_eq!((old.fresh, old.instance, t), (1, 6, 100));
        assert_eq!(l.claim_of(1).fresh, 2);
        assert_eq!(l.claim_time_of(1), 200);
        assert_eq!(
            l.record_phase(1, 6, 1, phase::ACKED).unwrap_err().instance,
            7
        );
        assert!(
            l.record_phase(1, 7, 2, phase::ACKED).is_err(),
            "other delivery"
        );
        l.record_phase(1, 7, 1, phase::ACKED).unwrap();
        assert_eq!(l.claim_of(1).phase, phase::ACKED);
        l.add_outcome(1, OutcomeKind::Acked);
        l.add_outcome(1, OutcomeKind::LeaseLost);
        l.add_outcome(1, OutcomeKind::LeaseLost);
        assert_eq!(
            l.outcomes_of(1),
            OutcomeCounts {
                acks: 1,
                nacks: 0,
                lease_lost: 2
            }
        );
        l.set_busy(6, busy::PAUSED);
        assert_eq!(l.busy(6), busy::PAUSED);
        let h = holder_word(9, 5_000_000_000);
        assert_eq!(split_holder(h), (9, 5000));
        assert_eq!(ms_since(5000, 5_250_000_000), 250);
        l.mark_killed(6, 123);
        assert_eq!((l.killed_at(6), l.killed_at(7)), (Some(123), None));
        l.cached_version(1, 3).store(4, Ordering::SeqCst);
        let again = Ledger::open(&path).unwrap();
        assert_eq!(again.cached_version(1, 3).load(Ordering::SeqCst), 4);
        for ns in [5, 6, 7] {
            again.add_sample(6, ns);
        }
        assert_eq!(l.samples(), vec![(6, 5), (6, 6)]);
        l.mark_reaped(6, 130);
        assert_eq!(l.kill_times(), vec![(123, 130)]);
        l.violation(kind::LOST, "id 1\nsplit");
        assert_eq!(
            again.violations(),
            vec![("lost".to_string(), "id 1 split".to_string())]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
