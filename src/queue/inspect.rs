//! Looking at a queue without changing it: a snapshot of its metrics
//! ([`Stats`]) and a check of its invariants ([`VerifyReport`]).

use super::dead_letters::{dead_letter_count, dead_letter_shape};
use super::maintenance::OfdLiveness;
use super::wait::Point;
use super::{read_engine, Queue, ROLE_CONSUMER, ROLE_PRODUCER};
use crate::memory::Loads;
use crate::metrics::{Counter, Histogram, HistogramSnapshot};
use crate::participants::Liveness;
use crate::ring::{Engine, SlotState};

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

/// What `info` shows of a queue file: its identity, parameters and the
/// participant table as stored (liveness is the caller's to probe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The file format version.
    pub format_version: u64,
    /// Wall-clock time of creation (ns since the Unix epoch).
    pub created_unix_ns: u64,
    /// The boot id the participant table belongs to (the kernel's boot
    /// id when the table was last recovered).
    pub boot_id: [u64; 2],
    /// The file's random identity, drawn at creation: tells this queue
    /// from any other, on any host (0 in a file made by a version before
    /// it existed).
    pub file_id: u64,
    /// The layout (parameters and offsets): the file format's own type,
    /// for this repository's command line; not part of the product API.
    #[doc(hidden)]
    pub layout: crate::format::Layout,
    /// The entries that are registered (`live`) or being cleaned up.
    pub participants: Vec<InfoParticipant>,
}

/// A participant entry as stored, for [`Info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoParticipant {
    /// Entry index.
    pub index: u64,
    /// Registered process.
    pub pid: u32,
    /// Whether a survivor is cleaning up after it (else: registered).
    pub cleaning: bool,
    /// Whether it has sent.
    pub producer: bool,
    /// Whether it has claimed.
    pub consumer: bool,
    /// Monotonic time it attached.
    pub attached_ns: u64,
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
    /// The file's identity, layout and participant entries, as stored (a
    /// read of the header and the table; nothing is probed or changed).
    pub fn info(&self) -> Info {
        read_engine!(self, |e| info_of(e))
    }

    /// A snapshot of every metric (a scan of the file: not for a hot loop).
    pub fn stats(&self) -> Stats {
        read_engine!(self, |e| self.stats_in(e))
    }

    /// Checks every invariant of the file that can be checked while it is in
    /// use, and reports what is wrong.
    pub fn verify(&self) -> VerifyReport {
        read_engine!(self, |e| self.verify_in(e))
    }

    /// [`Queue::stats`] over the handle's engine.
    fn stats_in<M: Loads>(&self, e: &Engine<M>) -> Stats {
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
            producers_waiting: e.sleepers(Point::NotFull),
            consumers_waiting: e.sleepers(Point::NotEmpty),
            keys_in_use: e.keys().in_use(),
            key_capacity: l.params.key_capacity,
            counters: vec![0; crate::metrics::COUNTERS.len()],
            histograms: vec![HistogramSnapshot::default(); 3],
        };
        for i in 0..l.params.capacity {
            let w = e.slot_word(i);
            match w.state() {
                SlotState::Ready | SlotState::Pending => {
                    s.depth += 1;
                    let age = now.saturating_sub(e.slot_snapshot(i).enqueued_ns);
                    s.oldest_claimable_age_ns = s.oldest_claimable_age_ns.max(age);
                }
                SlotState::Delayed => {
                    let due = e.slot_snapshot(i).lease_time_ns();
                    if due <= now {
                        s.depth += 1;
                    } else {
                        s.delayed += 1;
                    }
                }
                SlotState::Claimed => {
                    s.in_flight += 1;
                    let deadline = e.slot_snapshot(i).lease_time_ns();
                    let claimed_at = deadline.saturating_sub(e.config.lease_ns);
                    s.oldest_in_flight_age_ns = s
                        .oldest_in_flight_age_ns
                        .max(now.saturating_sub(claimed_at));
                }
                SlotState::Reserved | SlotState::Passed | SlotState::Abandoned => s.reserved += 1,
                SlotState::DlqWait => s.dlq_waiting += 1,
                _ => {}
            }
        }
        s.dead_letters = dead_letter_count(e);
        for p in 0..l.params.participant_capacity {
            let snap = e.participant_snapshot(p);
            if snap.entry.is_live() {
                s.participants += 1;
                s.producers += (snap.roles & ROLE_PRODUCER != 0) as u64;
                s.consumers += (snap.roles & ROLE_CONSUMER != 0) as u64;
            }
            e.add_participant_metrics(p, &mut s.counters, &mut s.histograms);
        }
        // Queue-wide counters kept in the header rather than per participant.
        let h = e.header_counters();
        s.counters[crate::metrics::Counter::Purged as usize] += h.purged;
        s.counters[crate::metrics::Counter::Expired as usize] += h.expired;
        s
    }

    /// [`Queue::verify`] over the handle's engine.
    fn verify_in<M: Loads>(&self, e: &Engine<M>) -> VerifyReport {
        let mut rep = VerifyReport::default();
        if self.is_broken() {
            rep.problems.push(self.broken_cause());
        }
        let l = &e.layout;
        let live = OfdLiveness {
            file: &self.file,
            stale_boot: self.stale_boot(),
        };
        let mut entries = Vec::new();
        for p in 0..l.params.participant_capacity {
            let en = e.participant_snapshot(p).entry;
            if !en.is_valid() {
                rep.problems
                    .push(format!("participant {p}: invalid state {}", en.state));
            }
            let alive = en.is_live() && (Some(p) == self.me || live.alive(p, en.pid));
            if en.is_live() && !alive {
                rep.notes.push(format!(
                    "participant {p} (pid {}) is dead and not yet cleaned up (run recover)",
                    en.pid
                ));
            }
            entries.push(en);
        }
        let cap = l.params.capacity;
        let cursors = e.header_counters();
        let (tail, head) = (cursors.tail, cursors.head);
        let tail_lap = cursors.tail_lap(cap);
        for i in 0..cap {
            let w = e.slot_word(i);
            if !w.state().is_valid() {
                rep.problems
                    .push(format!("slot {i}: invalid state {}", w.state()));
                continue;
            }
            if !cursors.lap_near_tail(w.lap(), cap) {
                rep.problems.push(format!(
                    "slot {i}: at lap {}, but the tail cursor is at lap {tail_lap}",
                    w.lap()
                ));
            }
            if w.state().is_owned() {
                if w.owner() >= l.params.participant_capacity {
                    rep.problems
                        .push(format!("slot {i}: owner {} out of range", w.owner()));
                } else if entries[w.owner() as usize].is_free()
                    && !(w.state() == SlotState::DlqWait && e.dlq_waiting(i, w))
                {
                    // A message left waiting for room in the dead letters is
                    // sound whoever moved it there: any participant's repair
                    // takes the move over once there is room.
                    rep.problems.push(format!(
                        "slot {i}: {} by participant {}, which is not attached (run recover)",
                        w.state().name(),
                        w.owner()
                    ));
                }
            }
            if w.state() != SlotState::Free {
                let len = e.slot_snapshot(i).len.length();
                if len > l.params.max_message_size
                    && !matches!(w.state(), SlotState::Reserved | SlotState::Passed)
                {
                    rep.problems
                        .push(format!("slot {i}: payload length {len} over the maximum"));
                }
            }
        }
        self.verify_keys(e, &mut rep);
        if head > tail.saturating_add(cap) {
            rep.problems
                .push(format!("head cursor {head} is past the tail cursor {tail}"));
        }
        for r in 0..l.params.dlq_capacity {
            let (word, record) = dead_letter_shape(e, r);
            if !word.is_valid() {
                rep.problems
                    .push(format!("dead letter {r}: invalid state {}", word.state()));
            }
            if let Some(d) = record {
                if !d.lengths_fit(l.params.max_message_size) {
                    rep.problems.push(format!(
                        "dead letter {r}: length {} or reason length {} out of range",
                        d.stored_len, d.stored_reason_len
                    ));
                }
            }
        }
        rep
    }

    /// The key table's part of [`Queue::verify`].
    fn verify_keys<M: Loads>(&self, e: &Engine<M>, rep: &mut VerifyReport) {
        let l = &e.layout;
        let keys = e.keys();
        let cap = l.params.capacity;
        let mut pending: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for i in 0..cap {
            if e.slot_word(i).state() == SlotState::Pending {
                let k = e.slot_snapshot(i).key;
                if k != 0 {
                    *pending.entry(k).or_default() += 1;
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for n in 0..keys.capacity() {
            let Some(entry) = e.key_entry_snapshot(n) else {
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
            let named = [
                ("holder", entry.holder().map(|h| h.slot)),
                ("waiting", entry.waiting().map(|w| w.slot)),
            ];
            for (what, s) in named {
                if let Some(s) = s {
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
}

/// [`Queue::info`] over the handle's engine.
fn info_of<M: Loads>(e: &Engine<M>) -> Info {
    let id = e.header_identity();
    let participants = (0..e.layout.params.participant_capacity)
        .filter_map(|i| {
            let p = e.participant_snapshot(i);
            (p.entry.is_live() || p.entry.is_cleaning()).then_some(InfoParticipant {
                index: i,
                pid: p.entry.pid,
                cleaning: p.entry.is_cleaning(),
                producer: p.roles & ROLE_PRODUCER != 0,
                consumer: p.roles & ROLE_CONSUMER != 0,
                attached_ns: p.attached_ns,
            })
        })
        .collect();
    Info {
        format_version: id.format_version,
        created_unix_ns: id.created_unix_ns,
        boot_id: id.boot_id,
        file_id: id.file_id,
        layout: e.layout,
        participants,
    }
}
