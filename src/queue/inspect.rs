//! Looking at a queue without changing it: a snapshot of its metrics
//! ([`Stats`]) and a check of its invariants ([`VerifyReport`]).

use super::checks::TRUNCATED;
use super::maintenance::OfdLiveness;
use super::wait::Point;
use super::{Queue, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::layout::{self, dlq, hdr, part, slot};
use crate::memory::Memory;
use crate::metrics::{Counter, Histogram, HistogramSnapshot};
use crate::participants::{Liveness, Table};
use crate::ring::{self, state};
use crate::sync::Ordering;

/// A snapshot of a queue's metrics (the README lists them).
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Monotonic time of the snapshot.
    pub taken_ns: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Messages claimable now (ready, pending redelivery, due delayed).
    pub depth: u64,
    /// Messages delayed (not yet due).
    pub delayed: u64,
    /// Messages claimed and not yet settled.
    pub in_flight: u64,
    /// Slots reserved by producers and not yet committed.
    pub reserved: u64,
    /// Messages waiting for room in the dead-letter area.
    pub dlq_waiting: u64,
    /// Records in the dead-letter area.
    pub dead_letters: u64,
    /// Age of the oldest claimable message (delayed ones excluded), ns.
    pub oldest_claimable_age_ns: u64,
    /// Age of the oldest claim in flight, ns.
    pub oldest_in_flight_age_ns: u64,
    /// Live participants that have sent.
    pub producers: u64,
    /// Live participants that have claimed.
    pub consumers: u64,
    /// Live participants.
    pub participants: u64,
    /// Producers asleep waiting for room (back-pressure felt now).
    pub producers_waiting: u64,
    /// Consumers asleep waiting for messages.
    pub consumers_waiting: u64,
    /// Entries of the key table in use.
    pub keys_in_use: u64,
    /// Entries of the key table.
    pub key_capacity: u64,
    /// Counters, indexed by [`Counter`].
    pub counters: Vec<u64>,
    /// Histograms, indexed by [`Histogram`].
    pub histograms: Vec<HistogramSnapshot>,
}

impl Stats {
    /// The value of a counter.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }
    /// A histogram.
    pub fn histogram(&self, h: Histogram) -> &HistogramSnapshot {
        &self.histograms[h as usize]
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every broken invariant, one line each; empty when the file is sound.
    pub problems: Vec<String>,
    /// Things worth knowing that are not wrong (e.g. dead participants not
    /// yet cleaned up).
    pub notes: Vec<String>,
}

impl Queue {
    /// A snapshot of every metric (a scan of the file: not for a hot loop).
    pub fn stats(&self) -> Stats {
        let e = &self.engine;
        let l = &e.layout;
        let now = self.now();
        let mut s = Stats {
            taken_ns: now,
            capacity: l.params.capacity,
            depth: 0,
            delayed: 0,
            in_flight: 0,
            reserved: 0,
            dlq_waiting: 0,
            dead_letters: 0,
            oldest_claimable_age_ns: 0,
            oldest_in_flight_age_ns: 0,
            producers: 0,
            consumers: 0,
            participants: 0,
            producers_waiting: self.sleepers(Point::NotFull),
            consumers_waiting: self.sleepers(Point::NotEmpty),
            keys_in_use: e.keys().in_use(),
            key_capacity: l.params.key_capacity,
            counters: vec![0; crate::metrics::COUNTERS.len()],
            histograms: vec![HistogramSnapshot::default(); 3],
        };
        for i in 0..l.params.capacity {
            let w = e.slot_word(i);
            match w.state() {
                state::READY | state::PENDING => {
                    s.depth += 1;
                    let age = now.saturating_sub(self.slot_enqueued_ns(i));
                    s.oldest_claimable_age_ns = s.oldest_claimable_age_ns.max(age);
                }
                state::DELAYED => {
                    let due = self.slot_lease_time(i);
                    if due <= now {
                        s.depth += 1;
                    } else {
                        s.delayed += 1;
                    }
                }
                state::CLAIMED => {
                    s.in_flight += 1;
                    let deadline = self.slot_lease_time(i);
                    let claimed_at = deadline.saturating_sub(e.config.lease_ns);
                    s.oldest_in_flight_age_ns = s
                        .oldest_in_flight_age_ns
                        .max(now.saturating_sub(claimed_at));
                }
                state::RESERVED | state::PASSED | state::ABANDONED => s.reserved += 1,
                state::DLQ_WAIT => s.dlq_waiting += 1,
                _ => {}
            }
        }
        s.dead_letters = self.dead_letter_count();
        let table = Table::new(&e.mem, l);
        for p in 0..l.params.participant_capacity {
            let entry = table.entry(p);
            if entry.state == part::LIVE {
                s.participants += 1;
                // Relaxed: informative, like the whole snapshot.
                let roles = self.roles_word(p).load(Ordering::Relaxed);
                s.producers += (roles & ROLE_PRODUCER != 0) as u64;
                s.consumers += (roles & ROLE_CONSUMER != 0) as u64;
            }
            self.add_participant_metrics(p, &mut s);
        }
        s
    }

    /// When the message in slot `i` was first enqueued (monotonic ns).
    // raw read: to move into the engine's typed snapshot
    fn slot_enqueued_ns(&self, i: u64) -> u64 {
        // Relaxed: a snapshot for stats; nothing is decided on it.
        self.engine
            .mem
            .u64_at(self.engine.layout.slot(i) + slot::ENQUEUED_NS)
            .load(Ordering::Relaxed)
    }

    /// The time in slot `i`'s lease word: the lease's end for a claimed
    /// message, the due time for a delayed one (`seq << 42 | time >> 16`).
    // raw read: to move into the engine's typed snapshot
    fn slot_lease_time(&self, i: u64) -> u64 {
        // Relaxed: as `slot_enqueued_ns`.
        let lease = self
            .engine
            .mem
            .u64_at(self.engine.layout.slot(i) + slot::LEASE)
            .load(Ordering::Relaxed);
        (lease & ((1 << 42) - 1)) << 16
    }

    /// The payload length in slot `i`'s length word (without its flags).
    // raw read: to move into the engine's typed snapshot
    fn slot_len(&self, i: u64) -> u64 {
        // Relaxed: verify reports what it sees.
        self.engine
            .mem
            .u64_at(self.engine.layout.slot(i) + slot::LEN)
            .load(Ordering::Relaxed)
            & 0xffff_ffff
    }

    /// Adds participant `p`'s counters and histograms to `s`.
    // raw read: to move into the engine's typed snapshot
    fn add_participant_metrics(&self, p: u64, s: &mut Stats) {
        let e = &self.engine;
        let base = e.layout.participant(p);
        for (c, v) in s.counters.iter_mut().enumerate() {
            // Relaxed: counters are informative sums.
            let n = e
                .mem
                .u64_at(base + part::COUNTERS + c * 8)
                .load(Ordering::Relaxed);
            *v = v.wrapping_add(n);
        }
        for (h, snap) in s.histograms.iter_mut().enumerate() {
            let which = crate::metrics::HISTOGRAMS[h].0;
            snap.add_from(&e.mem, base, which);
        }
    }

    /// The tail and head cursors, as verify compares them.
    // raw read: to move into the engine's typed snapshot
    fn cursors(&self) -> (u64, u64) {
        let mem = &self.engine.mem;
        // Relaxed: verify reports what it sees; cursors that move under it
        // are checked again at the next run.
        (
            mem.u64_at(hdr::TAIL).load(Ordering::Relaxed),
            mem.u64_at(hdr::HEAD).load(Ordering::Relaxed),
        )
    }

    /// Checks every invariant of the file that can be checked while it is in
    /// use, and reports what is wrong.
    pub fn verify(&self) -> VerifyReport {
        let mut rep = VerifyReport::default();
        if self.engine.mem.broken() {
            rep.problems.push(TRUNCATED.to_string());
        }
        let e = &self.engine;
        let l = &e.layout;
        let table = Table::new(&e.mem, l);
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: self.stale_boot(),
        };
        let mut entries = Vec::new();
        for p in 0..l.params.participant_capacity {
            let en = table.entry(p);
            if en.state > part::CLEANING {
                rep.problems
                    .push(format!("participant {p}: invalid state {}", en.state));
            }
            let alive = en.state == part::LIVE && (Some(p) == self.me || live.alive(p, en.pid));
            if en.state == part::LIVE && !alive {
                rep.notes.push(format!(
                    "participant {p} (pid {}) is dead and not yet cleaned up (run recover)",
                    en.pid
                ));
            }
            entries.push(en);
        }
        let cap = l.params.capacity;
        let (tail, head) = self.cursors();
        let tail_lap = lap_field(tail / cap);
        for i in 0..cap {
            let w = e.slot_word(i);
            if w.state() >= state::COUNT {
                rep.problems
                    .push(format!("slot {i}: invalid state {}", w.state()));
                continue;
            }
            let lap_ok = (0..=2).any(|d| lap_field(tail_lap + d) == w.lap());
            if !lap_ok {
                rep.problems.push(format!(
                    "slot {i}: at lap {}, but the tail cursor is at lap {tail_lap}",
                    w.lap()
                ));
            }
            let owned = matches!(
                w.state(),
                state::RESERVED
                    | state::PASSED
                    | state::CLAIMED
                    | state::DLQ_WAIT
                    | state::ABANDONED
            );
            if owned {
                if w.owner() >= l.params.participant_capacity {
                    rep.problems
                        .push(format!("slot {i}: owner {} out of range", w.owner()));
                } else if entries[w.owner() as usize].state == part::FREE
                    && !(w.state() == state::DLQ_WAIT && self.dlq_parked(i, w))
                {
                    // A message left waiting for room in the dead letters is
                    // sound whoever moved it there: any participant's repair
                    // takes the move over once there is room.
                    rep.problems.push(format!(
                        "slot {i}: {} by participant {}, which is not attached (run recover)",
                        state::name(w.state()),
                        w.owner()
                    ));
                }
            }
            if w.state() != state::FREE {
                let len = self.slot_len(i);
                if len > l.params.max_message_size
                    && !matches!(w.state(), state::RESERVED | state::PASSED)
                {
                    rep.problems
                        .push(format!("slot {i}: payload length {len} over the maximum"));
                }
            }
        }
        self.verify_keys(&mut rep);
        if head > tail.saturating_add(cap) {
            rep.problems
                .push(format!("head cursor {head} is past the tail cursor {tail}"));
        }
        for r in 0..l.params.dlq_capacity {
            let (state, lengths) = self.dead_letter_shape(r);
            if state > dlq::REDRIVING {
                rep.problems
                    .push(format!("dead letter {r}: invalid state {state}"));
            }
            if let Some((len, rl)) = lengths {
                if len > l.params.max_message_size || rl > dlq::REASON_MAX as u64 {
                    rep.problems.push(format!(
                        "dead letter {r}: length {len} or reason length {rl} out of range"
                    ));
                }
            }
        }
        rep
    }

    /// Whether `DLQ_WAIT` slot `i` (word `w`) is marked as waiting for room
    /// in the dead letters (see `Engine::dlq_waiting`).
    fn dlq_parked(&self, i: u64, w: ring::SlotWord) -> bool {
        self.engine.dlq_waiting(i, w)
    }

    /// The key table's part of [`Queue::verify`].
    fn verify_keys(&self, rep: &mut VerifyReport) {
        let e = &self.engine;
        let l = &e.layout;
        let keys = e.keys();
        let cap = l.params.capacity;
        let mut pending: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for i in 0..cap {
            if e.slot_word(i).state() == state::PENDING {
                let k = self.slot_key(i);
                if k != 0 {
                    *pending.entry(k).or_default() += 1;
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for n in 0..keys.capacity() {
            let Some(entry) = self.key_entry(n) else {
                continue;
            };
            let k = entry.key;
            if !seen.insert(k) {
                rep.problems.push(format!(
                    "key entry {n}: key {k} appears twice in the key table"
                ));
            } else if keys.find(k) != Some(n) {
                rep.problems.push(format!(
                    "key entry {n}: key {k} cannot be found from its hash (a broken probe chain)"
                ));
            }
            for (what, r) in [("holder", entry.holder), ("waiting", entry.waiting)] {
                if let Some((s, _)) = crate::keys::unref(r) {
                    if s >= cap {
                        rep.problems.push(format!("key entry {n} (key {k}): {what} names slot {s}, beyond the {cap} slots"));
                    }
                }
            }
            let (acked, next) = (entry.last_acked, entry.next_version);
            if acked > next {
                rep.problems.push(format!(
                    "key entry {n} (key {k}): last acked version {acked} is above the highest version given, {next}"
                ));
            }
            let parked = entry.parked;
            let actual = pending.get(&k).copied().unwrap_or(0);
            if parked != actual {
                rep.notes.push(format!(
                    "key {k}: parked count {parked}, but {actual} of its messages are pending (a hint left off by a crash; harmless)"
                ));
            }
        }
    }

    /// The words of key-table entry `n` that verify checks, or `None` for
    /// an unused entry.
    // raw read: to move into the engine's typed snapshot
    fn key_entry(&self, n: u64) -> Option<KeyEntryWords> {
        let keys = self.engine.keys();
        // Relaxed: verify reports what it sees.
        let f = |off: usize| keys.field(n, off).load(Ordering::Relaxed);
        let key = f(layout::key::KEY);
        if key == 0 {
            return None;
        }
        Some(KeyEntryWords {
            key,
            holder: f(layout::key::HOLDER),
            waiting: f(layout::key::WAITING),
            last_acked: f(layout::key::LAST_ACKED),
            next_version: f(layout::key::NEXT_VERSION),
            parked: f(layout::key::PARKED),
        })
    }
}

/// A key-table entry as verify reads it (raw words).
struct KeyEntryWords {
    key: u64,
    /// Slot reference of the message holding the key (see `keys::unref`).
    holder: u64,
    /// Slot reference of the key's waiting message (latest-only).
    waiting: u64,
    last_acked: u64,
    next_version: u64,
    /// How many of the key's messages are pending (a hint).
    parked: u64,
}

/// The lap field of a slot word (28 bits) for a lap count.
// raw read: to move into the engine's typed snapshot
fn lap_field(lap: u64) -> u64 {
    lap & ((1 << 28) - 1)
}
