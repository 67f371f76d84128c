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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// How far the send of a message id got (bits 0..4 of the send word).
pub mod send_state {
    /// The id was allocated, nothing else is known.
    pub const NONE: u64 = 0;
    /// About to be sent (or sent by a producer killed before it said so).
    pub const INTENT: u64 = 1;
    /// The send returned `Ok`.
    pub const SENT: u64 = 2;
    /// The send returned `Stale`: nothing was queued.
    pub const REFUSED: u64 = 3;
    /// Certainly not sent (the rest of a batch that did not fit).
    pub const NOT_SENT: u64 = 4;
}

/// The send word: state (bits 0..4), queue (4..8), dead-lettered (8),
/// producer instance (32..64).
const SEND_STATE_MASK: u64 = 0xf;
const SEND_DEAD: u64 = 1 << 8;

/// How far the latest recorded claim of a message got.
pub mod phase {
    /// Never claimed (as far as the ledger knows).
    pub const NONE: u8 = 0;
    /// Claimed; no outcome given yet.
    pub const CLAIMED: u8 = 1;
    /// The ack call is under way.
    pub const ACKING: u8 = 2;
    /// The ack returned `Ok`.
    pub const ACKED: u8 = 3;
    /// The nack call is under way.
    pub const NACKING: u8 = 4;
    /// The nack returned `Ok`.
    pub const NACKED: u8 = 5;
    /// The ack or nack returned `LeaseLost`: a late outcome, refused.
    pub const LEASE_LOST: u8 = 6;
}

/// What a worker holds now (its instance's busy word), for the supervisor,
/// which stalls workers that hold something.
pub mod busy {
    /// Nothing.
    pub const IDLE: u64 = 0;
    /// A consumer holds claims, or a producer a reservation.
    pub const HOLDING: u64 = 1;
    /// Holding, and pausing on purpose (the moment to stall it).
    pub const PAUSED: u64 = 2;
}

/// How a worker was killed (its instance's kill word).
pub mod kill_how {
    /// A single kill.
    pub const SINGLE: u64 = 1;
    /// The first victim of a double kill.
    pub const FIRST_OF_TWO: u64 = 2;
    /// The second victim of a double kill (killed while the survivors,
    /// maybe itself, repaired after the first).
    pub const SECOND_OF_TWO: u64 = 3;
    /// Killed when the run stopped.
    pub const AT_STOP: u64 = 4;

    /// A readable name.
    pub fn name(h: u64) -> &'static str {
        match h {
            SINGLE => "single kill",
            FIRST_OF_TWO => "first of a double kill",
            SECOND_OF_TWO => "second of a double kill",
            AT_STOP => "killed at the stop",
            _ => "?",
        }
    }
}

/// The counts of a record's outcome word: successful acks, successful
/// nacks, late outcomes refused (16 bits each, bits 0, 16, 32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Acks that returned `Ok`.
    pub acks: u64,
    /// Nacks that returned `Ok`.
    pub nacks: u64,
    /// Outcomes that returned `LeaseLost`.
    pub lease_lost: u64,
}

/// Which count of the outcome word to add to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// An ack returned `Ok`.
    Acked = 0,
    /// A nack returned `Ok`.
    Nacked = 16,
    /// An outcome returned `LeaseLost`.
    LeaseLost = 32,
}

/// A record's claim word: delivery number (bits 0..16), phase (16..20),
/// number of first deliveries seen (20..32, saturating), instance (32..64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimWord {
    /// The delivery number of the latest recorded claim (1 = first).
    pub delivery: u32,
    /// See [`phase`].
    pub phase: u8,
    /// How many claims with delivery number 1 were recorded.
    pub fresh: u32,
    /// The instance that made the latest recorded claim.
    pub instance: u32,
}

impl ClaimWord {
    /// Decodes a claim word.
    pub fn decode(w: u64) -> ClaimWord {
        ClaimWord {
            delivery: (w & 0xffff) as u32,
            phase: ((w >> 16) & 0xf) as u8,
            fresh: ((w >> 20) & 0xfff) as u32,
            instance: (w >> 32) as u32,
        }
    }
    /// Encodes it (saturating the counts).
    pub fn encode(self) -> u64 {
        self.delivery.min(0xffff) as u64
            | ((self.phase as u64) & 0xf) << 16
            | (self.fresh.min(0xfff) as u64) << 20
            | (self.instance as u64) << 32
    }
}

/// Rare events counted by the workers (shared counters in the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Event {
    /// A claim of a message whose previous recorded holder was killed
    /// holding it.
    RedeliveredAfterDeath = 0,
    /// A claim of a message that was nacked before (poison).
    RedeliveredAfterNack,
    /// A key found still marked as held by a killed consumer.
    KeyFromKilled,
    /// A version applied again: its first consumer was killed after
    /// applying it and before its ack.
    Reapplied,
    /// A claim of a message whose previous holder is alive (stalled) and
    /// whose lease had run out.
    RedeliveredAfterExpiry,
    /// A key found held by a live consumer whose lease had run out.
    KeyFromExpired,
    /// A late ack or nack (after the lease) refused with `LeaseLost`.
    LateOutcomeRefused,
    /// A late ack or nack accepted though nobody had taken the message over
    /// (no repair had run yet: allowed).
    LateOutcomeUnraced,
    /// A late commit (after the reservation timeout) refused with
    /// `Abandoned`.
    LateCommitAbandoned,
    /// A late commit accepted before any repair abandoned it (allowed).
    LateCommitUnraced,
    /// `recover()` calls made by consumers (kills can land inside them).
    Recovers,
}

/// Number of [`Event`] counters.
pub const EVENTS: usize = 11;

/// The kinds of violation, as named in reports and in `violations.log`.
pub mod kind {
    /// A message sent with `Ok` was neither acked, nor dead-lettered, nor
    /// superseded by a newer version of its key.
    pub const LOST: &str = "lost";
    /// A payload that does not decode (or does not match its message).
    pub const TORN: &str = "torn";
    /// A message delivered with delivery number 1 more than once.
    pub const DOUBLE_FRESH: &str = "double-fresh";
    /// A message claimed while another live consumer held it, or with a
    /// delivery number that did not go up.
    pub const DOUBLE_CLAIM: &str = "double-claim";
    /// Something delivered that was never sent, or was refused.
    pub const NEVER_SENT: &str = "never-sent";
    /// Two live consumers held one key at once.
    pub const KEY_OVERLAP: &str = "key-overlap";
    /// A version applied over a newer one in the local cache.
    pub const VERSION_BACKWARDS: &str = "version-backwards";
    /// A key's final version is not the newest acked one.
    pub const FINAL_VERSION: &str = "final-version";
    /// A send that had to be refused as stale returned `Ok`, or a send
    /// returned a version it was not given.
    pub const STALE_ACCEPTED: &str = "stale-accepted";
    /// A dead letter that is torn, repeated, or also acked.
    pub const DEAD_LETTER: &str = "dead-letter";
    /// A worker that failed or exited by itself; an unexpected error.
    pub const WORKER: &str = "worker";
    /// A queue that could not be drained, or the run stopped making
    /// progress.
    pub const WEDGED: &str = "wedged";
    /// `verify` found a broken invariant, or `recover` found work left.
    pub const VERIFY: &str = "verify";
    /// The engine's counters disagree with the ledger.
    pub const COUNTERS: &str = "counters";
    /// A late outcome (ack or nack after the lease, commit after the
    /// reservation timeout) accepted although the message had been taken
    /// over, or so long after the deadline that a repair must have run.
    pub const LATE_ACCEPTED: &str = "late-accepted";
    /// A live worker's claim or reservation taken back before its lease or
    /// reservation timeout ran out.
    pub const EARLY_REPAIR: &str = "early-repair";
    /// More messages or reservations than slots, or a send refused while
    /// there was room.
    pub const CAPACITY: &str = "capacity";
    /// Death to claimed again too slow: liveness detection did not work.
    pub const LATENCY: &str = "latency";
    /// An event that must show an effect showed none: consumers killed
    /// holding claims and no redelivery after a death, consumers stalled
    /// holding claims and no late outcome refused, producers stalled
    /// holding reservations and no late commit abandoned.
    pub const UNEXERCISED: &str = "unexercised";
}

/// A key's holder word: the instance (low 32 bits) and when its claim call
/// started, in ms of CLOCK_MONOTONIC (high 32 bits, wrapping).
pub fn holder_word(instance: u32, called_ns: u64) -> u64 {
    instance as u64 | ((called_ns / 1_000_000) & 0xffff_ffff) << 32
}

/// (instance, claim call ms) of a holder word.
pub fn split_holder(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

/// Milliseconds from a holder word's claim time (`then_ms`) to `now_ns`.
pub fn ms_since(then_ms: u32, now_ns: u64) -> u64 {
    ((now_ns / 1_000_000) as u32).wrapping_sub(then_ms) as u64
}

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

    // ------------------------------------------------------------------
    // Message ids and records
    // ------------------------------------------------------------------

    /// Allocates `n` consecutive ids; `None` when the ledger is full.
    pub fn alloc(&self, n: u64) -> Option<u64> {
        // Relaxed: the counter only hands out distinct numbers; what is
        // written to the records is published by their own stores.
        let first = self.word(H_NEXT_ID).fetch_add(n, Ordering::Relaxed);
        (first + n <= self.sizes.records).then_some(first)
    }

    /// Ids handed out so far (capped at the capacity).
    pub fn next_id(&self) -> u64 {
        self.word(H_NEXT_ID)
            .load(Ordering::SeqCst)
            .min(self.sizes.records)
    }

    fn rec(&self, id: u64, w: u64) -> &AtomicU64 {
        assert!(id < self.sizes.records, "message id {id} out of range");
        self.word(self.sizes.records_at() + id * RECORD_WORDS + w)
    }

    /// Before the first try to send `id`: its queue, key and version (0 when
    /// the engine chooses it).
    pub fn intent(&self, id: u64, queue: usize, producer: u32, key: u64, version: u64) {
        self.rec(id, 1).store(key, Ordering::SeqCst);
        self.rec(id, 2).store(version, Ordering::SeqCst);
        self.rec(id, 0).store(
            send_state::INTENT | (queue as u64 & 0xf) << 4 | (producer as u64) << 32,
            Ordering::SeqCst,
        );
    }

    /// The send of `id` ended: `state` is SENT, REFUSED or NOT_SENT;
    /// `version` is the one the message carries.
    pub fn sent(&self, id: u64, state: u64, version: u64) {
        self.rec(id, 2).store(version, Ordering::SeqCst);
        let w = self.rec(id, 0);
        let old = w.load(Ordering::SeqCst);
        w.store((old & !SEND_STATE_MASK) | state, Ordering::SeqCst);
    }

    /// Records the version the engine gave `id` (learnt from its delivery).
    pub fn sent_version(&self, id: u64, version: u64) {
        self.rec(id, 2).store(version, Ordering::SeqCst);
    }

    /// (state, queue, dead-lettered, producer instance) of `id`.
    pub fn send_of(&self, id: u64) -> (u64, usize, bool, u32) {
        let w = self.rec(id, 0).load(Ordering::SeqCst);
        (
            w & SEND_STATE_MASK,
            ((w >> 4) & 0xf) as usize,
            w & SEND_DEAD != 0,
            (w >> 32) as u32,
        )
    }

    /// (key, version) of `id`.
    pub fn key_version_of(&self, id: u64) -> (u64, u64) {
        (
            self.rec(id, 1).load(Ordering::SeqCst),
            self.rec(id, 2).load(Ordering::SeqCst),
        )
    }

    /// Marks `id` dead-lettered; `false` if it already was.
    pub fn mark_dead_lettered(&self, id: u64) -> bool {
        self.rec(id, 0).fetch_or(SEND_DEAD, Ordering::SeqCst) & SEND_DEAD == 0
    }

    /// The claim word of `id`.
    pub fn claim_of(&self, id: u64) -> ClaimWord {
        ClaimWord::decode(self.rec(id, 3).load(Ordering::SeqCst))
    }

    /// Records a claim of `id` (made by a claim call that started at
    /// `called_ns` and returned at `claimed_ns`) and returns the word it
    /// replaced with the call time of that older claim.
    pub fn record_claim(
        &self,
        id: u64,
        delivery: u32,
        instance: u32,
        called_ns: u64,
        claimed_ns: u64,
    ) -> (ClaimWord, u64) {
        let w = self.rec(id, 3);
        let t = self.rec(id, 4);
        let mut cur = w.load(Ordering::SeqCst);
        loop {
            // The time of the claim we replace: written before its claim
            // word, so it is the one of `cur` (two claimers of one message
            // at once are a violation in themselves).
            let old_t = t.load(Ordering::SeqCst);
            let old = ClaimWord::decode(cur);
            let new = ClaimWord {
                delivery,
                phase: phase::CLAIMED,
                fresh: old.fresh + (delivery == 1) as u32,
                instance,
            };
            t.store(called_ns, Ordering::SeqCst);
            match w.compare_exchange(cur, new.encode(), Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.rec(id, 6).store(claimed_ns, Ordering::SeqCst);
                    return (old, old_t);
                }
                Err(x) => {
                    t.store(old_t, Ordering::SeqCst);
                    cur = x;
                }
            }
        }
    }

    /// When the claim call of the latest recorded claim of `id` started.
    pub fn claim_time_of(&self, id: u64) -> u64 {
        self.rec(id, 4).load(Ordering::SeqCst)
    }

    /// When the claim call of the latest recorded claim of `id` returned
    /// (0 while its claimer has not written it yet).
    pub fn claim_return_of(&self, id: u64) -> u64 {
        self.rec(id, 6).load(Ordering::SeqCst)
    }

    /// Moves the claim of `id` recorded by `instance` with `delivery` to
    /// phase `to`; leaves the word alone (and returns it) when somebody
    /// else's claim replaced ours meanwhile.
    pub fn record_phase(
        &self,
        id: u64,
        instance: u32,
        delivery: u32,
        to: u8,
    ) -> Result<(), ClaimWord> {
        let w = self.rec(id, 3);
        let mut cur = w.load(Ordering::SeqCst);
        loop {
            let old = ClaimWord::decode(cur);
            if old.instance != instance || old.delivery != delivery.min(0xffff) {
                return Err(old);
            }
            let new = ClaimWord { phase: to, ..old };
            match w.compare_exchange(cur, new.encode(), Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(x) => cur = x,
            }
        }
    }

    /// Counts an outcome of `id` (saturating at 0xffff).
    pub fn add_outcome(&self, id: u64, k: OutcomeKind) {
        let shift = k as u64;
        let w = self.rec(id, 5);
        let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            ((v >> shift) & 0xffff < 0xffff).then_some(v + (1 << shift))
        });
    }

    /// The outcome counts of `id`.
    pub fn outcomes_of(&self, id: u64) -> OutcomeCounts {
        let v = self.rec(id, 5).load(Ordering::SeqCst);
        OutcomeCounts {
            acks: v & 0xffff,
            nacks: (v >> 16) & 0xffff,
            lease_lost: (v >> 32) & 0xffff,
        }
    }

    // ------------------------------------------------------------------
    // Instances
    // ------------------------------------------------------------------

    fn inst(&self, instance: u32, w: u64) -> &AtomicU64 {
        assert!(
            (instance as u64) < self.sizes.instances,
            "instance {instance} out of range"
        );
        self.word(self.sizes.instances_at() + instance as u64 * INSTANCE_WORDS + w)
    }

    /// Whether `instance` can be registered.
    pub fn has_instance(&self, instance: u32) -> bool {
        (instance as u64) < self.sizes.instances
    }

    /// Records a started worker.
    pub fn register(&self, instance: u32, producer: bool, index: u32, pid: u32, now_ns: u64) {
        self.inst(instance, 2).store(now_ns, Ordering::SeqCst);
        self.inst(instance, 0).store(
            (producer as u64) << 40 | (index as u64 & 0xff) << 32 | pid as u64,
            Ordering::SeqCst,
        );
    }

    /// Marks `instance` as killed at `now_ns`; done before the signal is
    /// sent.
    pub fn mark_killed(&self, instance: u32, now_ns: u64) {
        self.inst(instance, 1)
            .store(now_ns.max(1), Ordering::SeqCst);
    }

    /// Records when the parent reaped the killed `instance`.
    pub fn mark_reaped(&self, instance: u32, now_ns: u64) {
        self.inst(instance, 3)
            .store(now_ns.max(1), Ordering::SeqCst);
    }

    /// Sets what `instance` holds now (see [`busy`]).
    pub fn set_busy(&self, instance: u32, what: u64) {
        // Relaxed: a hint for the supervisor, which checks again after the
        // worker stopped.
        self.inst(instance, 4).store(what, Ordering::Relaxed);
    }

    /// What `instance` holds now (see [`busy`]).
    pub fn busy(&self, instance: u32) -> u64 {
        self.inst(instance, 4).load(Ordering::SeqCst)
    }

    /// Counts a stall of `instance` (before its SIGSTOP).
    pub fn add_stall(&self, instance: u32) {
        self.inst(instance, 6).fetch_add(1, Ordering::SeqCst);
    }

    /// How many times `instance` was stalled.
    pub fn stalls_of(&self, instance: u32) -> u64 {
        self.inst(instance, 6).load(Ordering::SeqCst)
    }

    /// Notes how `instance` was killed (see [`kill_how`]).
    pub fn set_kill_how(&self, instance: u32, how: u64) {
        self.inst(instance, 5).store(how, Ordering::SeqCst);
    }

    /// How `instance` was killed (see [`kill_how`]).
    pub fn kill_how(&self, instance: u32) -> u64 {
        self.inst(instance, 5).load(Ordering::SeqCst)
    }

    /// (killed at, reaped at) of every killed instance that was reaped.
    pub fn kill_times(&self) -> Vec<(u64, u64)> {
        (0..self.sizes.instances as u32)
            .filter_map(|i| {
                let k = self.inst(i, 1).load(Ordering::SeqCst);
                let r = self.inst(i, 3).load(Ordering::SeqCst);
                (k != 0 && r != 0).then_some((k, r))
            })
            .collect()
    }

    /// When `instance` was reaped after its kill.
    pub fn reaped_at(&self, instance: u32) -> Option<u64> {
        match self.inst(instance, 3).load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }

    /// When `instance` was killed (`None`: it was not, as of now).
    pub fn killed_at(&self, instance: u32) -> Option<u64> {
        if !self.has_instance(instance) {
            return None;
        }
        match self.inst(instance, 1).load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }

    // ------------------------------------------------------------------
    // The local cache of keyed queues
    // ------------------------------------------------------------------

    fn key_word(&self, queue: usize, key: u64, w: u64) -> &AtomicU64 {
        assert!(
            (queue as u64) < self.sizes.queues && (1..=self.sizes.keys).contains(&key),
            "key {key} of queue {queue} out of range"
        );
        self.word(
            self.sizes.keys_at() + ((queue as u64) * (self.sizes.keys + 1) + key) * KEY_WORDS + w,
        )
    }

    /// The version of `key` applied last to the cache.
    pub fn cached_version(&self, queue: usize, key: u64) -> &AtomicU64 {
        self.key_word(queue, key, 0)
    }

    /// The holder of `key` now: 0 = nobody, else [`holder_word`].
    pub fn key_holder(&self, queue: usize, key: u64) -> &AtomicU64 {
        self.key_word(queue, key, 1)
    }

    // ------------------------------------------------------------------
    // Latency samples, events, violations
    // ------------------------------------------------------------------

    /// Records that a message held by the killed `instance` was claimed
    /// again at `claim_ns` (dropped when the area is full).
    pub fn add_sample(&self, instance: u32, claim_ns: u64) {
        // Relaxed: the index only has to be unique; the samples are read
        // after every writer is dead.
        let i = self.word(H_NEXT_SAMPLE).fetch_add(1, Ordering::Relaxed);
        if i < self.sizes.samples {
            let at = self.sizes.samples_at() + 2 * i;
            // Relaxed: read after every writer is dead.
            self.word(at).store(instance as u64, Ordering::Relaxed);
            self.word(at + 1).store(claim_ns, Ordering::Relaxed);
        }
    }

    /// Every sample taken, as (instance, claim time); read after the
    /// workers are gone.
    pub fn samples(&self) -> Vec<(u32, u64)> {
        let n = self
            .word(H_NEXT_SAMPLE)
            .load(Ordering::SeqCst)
            .min(self.sizes.samples);
        (0..n)
            .map(|i| {
                let at = self.sizes.samples_at() + 2 * i;
                (
                    self.word(at).load(Ordering::SeqCst) as u32,
                    self.word(at + 1).load(Ordering::SeqCst),
                )
            })
            .collect()
    }

    /// Counts an event.
    pub fn event(&self, e: Event) {
        // Relaxed: a counter read after every writer is dead.
        self.word(H_EVENTS + e as u64)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The event counters, indexed by [`Event`].
    pub fn events(&self) -> [u64; EVENTS] {
        std::array::from_fn(|i| self.word(H_EVENTS + i as u64).load(Ordering::SeqCst))
    }

    /// Records a violation: one line `KIND detail` in `violations.log`.
    pub fn violation(&self, kind: &str, detail: &str) {
        // Relaxed: a counter read after every writer is dead.
        self.word(H_VIOLATIONS).fetch_add(1, Ordering::Relaxed);
        let line = format!("{kind} {}\n", detail.replace('\n', " "));
        // One write per line: an O_APPEND write of a short line is not
        // interleaved with another process's. Nothing else can be done if
        // it fails; the counter still says something went wrong.
        let _ = (&self.violations).write_all(line.as_bytes());
    }

    /// Every violation recorded, as `kind: detail` lines for a test's
    /// failure message.
    pub fn problems(&self) -> Vec<String> {
        self.violations()
            .into_iter()
            .map(|(k, d)| format!("{k}: {d}"))
            .collect()
    }

    /// Every violation recorded in `violations.log`, as (kind, detail).
    pub fn violations(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.violations_path).unwrap_or_default();
        let mut v: Vec<(String, String)> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(' ') {
                Some((k, d)) => (k.to_string(), d.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        // A line may be lost with its writer; the counter still counts it.
        let counted = self.word(H_VIOLATIONS).load(Ordering::SeqCst) as usize;
        if counted > v.len() {
            v.push((
                kind::WORKER.to_string(),
                format!(
                    "{} violation(s) counted whose line was never written",
                    counted - v.len()
                ),
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
