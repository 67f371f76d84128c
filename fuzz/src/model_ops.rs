//! The `model_ops` target: random operation sequences on a real queue file,
//! through the public `Queue` API, against a plain reference model.
//!
//! Where `tests/model.rs` drives the keyless slot protocol (`ring::Engine`
//! over heap memory), this drives everything above it: two handles on one
//! file (each a participant), keyed sends with explicit and automatic
//! versions, latest-only mode, reservations committed with a key or aborted,
//! claims one at a time and in batches, the four outcomes through `Message`
//! and through raw tokens (also foreign and ended ones), `ack_batch`,
//! `send_batch`, the dead-letter calls (list, get, redrive, purge),
//! `recover`, reopening a handle, and the passage of time.
//!
//! Time: the queue runs on the real clock, and a case lasts milliseconds.
//! Leases are 30 s, reservations time out after 5 s, a delay is an hour, and
//! an extension is 10 s or 100 s. The `Warp` operation runs the engine's
//! repair pass as of 6 s, 61 s or 1000 s from now
//! (`Engine::repair(me, now + w, ..)`, the controllable clock of the engine
//! API): every deadline below `w` has passed for that pass, so leases expire
//! (redelivery or dead letter) and stalled reservations are abandoned
//! (quarantined; their commit gets `ABANDONED`), exactly as the model says.
//! All deadlines are kept in the model as seconds from the start.
//!
//! After every operation the model is compared with the file: each slot's
//! state and owner (and claim token, key, version and payload, for
//! committed messages; a redelivery must be `PENDING`), the dead letters
//! (payload, attempts, key, version, a record id that never changes),
//! every key's last acked version, and `Queue::verify` must find nothing
//! wrong. What the model cannot know in advance it takes from the file and
//! checks: a stale keyed message (older than its key's last acked version)
//! may be dropped by any claim that reaches it; a message waiting for room
//! in the dead-letter area may move there at any repair; and a claim that
//! meets a message whose key is busy parks it (a later latest-only send may
//! then replace it in place or queue anew: the model takes either).
//!
//! Each operation checks its answer: a send or reservation `FULL` only when
//! every slot is held or a message still waits in ring order (producers look
//! only a few slots ahead, G1), never a success with every slot held; `STALE`
//! exactly when the version is not newer than the last acked one (or the
//! waiting one, latest-only); `KEYS_FULL` exactly when the table is full of
//! other keys; a claim returns a committed message nobody holds, whose key
//! no other claim holds, not stale, with its payload, key, version, position
//! and delivery count (G3, G7); `EMPTY` only when nothing is claimable (or a
//! reservation blocks the head); an outcome on an ended or foreign claim is
//! `LEASE_LOST` and changes nothing; a commit after the reservation was
//! abandoned is `ABANDONED` (G5); nack and lease expiry dead-letter on the
//! last allowed delivery (max_deliveries); redrive sends dead letters back
//! with their key and version and the delivery count reset.
//!
//! This file is the byte-driven driver of the keyed reference model in
//! `shmq_testkit::model` (its state, the answers to claims and outcomes,
//! the comparison with the file), which `tests/model_keys.rs` drives from
//! proptest: it decodes operations from the input and models what only
//! these cases reach (reservations, warps, raw tokens, the dead-letter
//! calls).
//!
//! # Input format
//!
//! ```text
//! byte 0   capacity = 1 + b % 8; bit 7: latest-only
//! byte 1   key_capacity = b % 5; max_deliveries = (b >> 3) % 4;
//!          dlq_capacity = 1 + (b >> 5) % 3
//! rest     operations: one byte (op = b % 24) and its argument bytes
//! ```

use shmq::internals::ring::{state, Outcome};
use shmq::{Message, Options, Queue, Reserved, SendOptions, Status, Timeout};
use shmq_testkit::model::state::{Model as Shared, Msg, Params, St};
use shmq_testkit::model::{compare, file, payload, Expect};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{unique_path, Bytes, TempFile};

/// Largest payload: an 8-byte id and up to 16 bytes of pattern.
const MMS: usize = 24;
/// Lease, reservation timeout, delay and extensions, in seconds.
const LEASE_S: u64 = 30;
const RESERVATION_S: u64 = 5;
const DELAY_S: u64 = 3600;
const EXTENDS_S: [u64; 2] = [10, 100];
/// How far the `Warp` operation looks ahead, in seconds.
const WARPS_S: [u64; 3] = [6, 61, 1000];
/// Operations per case, at most.
const BUDGET: usize = 160;

/// The shared reference state, with what only this driver needs.
struct Model {
    m: Shared,
    /// Participant index of each handle.
    me: [u64; 2],
    next_id: u64,
}

shmq_testkit::model_deref!(Model, m);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("model_ops: {}", format!($($fmt)+));
        }
    };
}

fn status<T>(r: &shmq::Result<T>) -> Option<Status> {
    r.as_ref().err().map(|e| e.status())
}

impl Model {
    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A `FULL` from a producer is right: every slot held, or a message
    /// still waits in ring order (producers look a few slots ahead only).
    fn full_ok(&self) -> bool {
        self.occupied() == self.p.capacity
            || self
                .msgs
                .values()
                .any(|m| m.st.is_ready() || matches!(m.st, St::Reserved { .. }))
    }

    fn claimable(&self) -> Vec<u64> {
        self.msgs
            .iter()
            .filter(|(_, m)| m.st.is_ready() && !self.doomed(m) && !self.key_busy(m.key))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Records a new committed (or reserved) message in `slot`.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        id: u64,
        slot: u64,
        position: u64,
        len: usize,
        key: u64,
        version: u64,
        st: St,
    ) {
        ensure!(
            self.occupied() < self.p.capacity,
            "a producer got slot {slot} with every slot held (G1)"
        );
        if let Some(other) = self.slot_of(slot) {
            panic!(
                "model_ops: message {id} got slot {slot}, which holds {other}: {:?} (G2)",
                self.msgs[&other]
            );
        }
        self.msgs.insert(
            id,
            Msg {
                slot,
                position,
                len,
                key,
                version,
                deliveries: 0,
                st,
            },
        );
    }
}

struct Run<'q> {
    qs: [&'q Queue; 2],
    m: Model,
    held: Vec<(usize, u64, Message<'q>)>,
    res: Vec<(usize, u64, Reserved<'q>)>,
}

impl<'q> Run<'q> {
    fn me(&self, h: usize) -> u64 {
        self.m.me[h]
    }

    /// Records a new message in `slot`. A producer that found the queue
    /// full runs the maintenance pass before it tries again, which moves
    /// messages waiting for room in the dead letters: take the file's word
    /// for those first.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        id: u64,
        slot: u64,
        position: u64,
        len: usize,
        key: u64,
        version: u64,
        st: St,
    ) {
        self.dlq_moves();
        self.m.place(id, slot, position, len, key, version, st);
    }

    /// Messages waiting for room in the dead letters that have moved there.
    fn dlq_moves(&mut self) {
        if let Err(e) = compare::waiting_moves(self.qs[0], &mut self.m) {
            panic!("model_ops: {e}");
        }
    }

    /// Decides what a send of `key`/`version` must do and updates the key
    /// table of the model. Returns the expectation and the version.
    fn expect_send(&mut self, key: u64, version: u64, delayed: bool) -> (Expect, u64) {
        let latest_only = self.m.p.latest_only && !delayed;
        let core = &mut self.m.m;
        let msgs = &core.msgs;
        core.keys.expect_send(key, version, latest_only, |w| {
            msgs.get(&w)
                .filter(|wm| wm.st.is_ready() && wm.key == key)
                .map(|wm| wm.version)
        })
    }

    /// Applies the result of a send of message `id` (`position` from
    /// `Sent`, or `None` to find it in the file).
    #[allow(clippy::too_many_arguments)]
    fn sent(
        &mut self,
        what: &str,
        id: u64,
        len: usize,
        key: u64,
        v: u64,
        delayed: bool,
        expect: Expect,
        got: Result<Option<u64>, Status>,
    ) {
        let full_ok = self.m.full_ok();
        if let Some(s) = expect.refusal() {
            match got {
                Err(g) if s == g => return,
                g => panic!("model_ops: {what} of {id} (key {key}): {g:?}, expected {s:?}"),
            }
        }
        let position = match (expect, got) {
            // Still waiting (not parked after all) and not older.
            (
                Expect::Replace {
                    old,
                    maybe_parked: true,
                },
                Err(Status::Stale),
            ) if v <= self.m.msgs[&old].version => return,
            (
                Expect::Replace {
                    maybe_parked: true, ..
                }
                | Expect::Queue,
                Err(Status::Full),
            ) => {
                ensure!(
                    full_ok,
                    "{what} of {id}: FULL with {} of {} slots held, none in ring order: {:?}",
                    self.m.occupied(),
                    self.m.p.capacity,
                    self.m.msgs
                );
                return;
            }
            (
                Expect::Replace {
                    old,
                    maybe_parked: maybe,
                },
                Ok(p),
            ) => {
                let o = self.m.msgs[&old].clone();
                let here = self.find(id, p);
                if here.0 == o.slot {
                    // Replaced in place, keeping the position.
                    ensure!(
                        here.1 == o.position,
                        "{what} of {id}: replaced {old} at position {} but took {} (G7)",
                        o.position,
                        here.1
                    );
                    ensure!(
                        v > o.version,
                        "{what} of {id}: version {v} replaced the waiting version {} (G7)",
                        o.version
                    );
                    self.m.remove(old);
                    self.place(id, o.slot, o.position, len, key, v, St::Fresh);
                    self.m.keys.set_waiting(key, id);
                    return;
                }
                ensure!(
                    maybe,
                    "{what} of {id} (key {key} version {v}): queued anew at slot {} instead of \
                     replacing the waiting {old} {o:?} (G7, latest-only)",
                    here.0
                );
                // It was parked meanwhile: queued anew.
                here
            }
            (Expect::Queue, Ok(p)) => self.find(id, p),
            (_, Err(s)) => {
                panic!("model_ops: {what} of {id} (key {key} version {v}): {s:?}, expected OK")
            }
            (Expect::Refused(_) | Expect::StaleAgainstWaiting { .. }, Ok(_)) => {
                unreachable!("refusals are answered above")
            }
        };
        let st = if delayed {
            St::Delayed { due: None }
        } else {
            St::Fresh
        };
        self.place(id, position.0, position.1, len, key, v, st);
        if key != 0 && self.m.p.latest_only && !delayed {
            self.m.keys.set_waiting(key, id);
        }
    }

    /// The slot and position of message `id`: from its position when given,
    /// else by reading the slots the model has free.
    fn find(&self, id: u64, position: Option<u64>) -> (u64, u64) {
        if let Some(p) = position {
            return (p % self.m.p.capacity, p);
        }
        let q = self.qs[0];
        for i in 0..self.m.p.capacity {
            if file::word(q, i).state() == state::FREE {
                continue;
            }
            // A replaced message's slot is occupied in the model.
            if file::id_in(q, i) == id && self.m.slot_of(i) != Some(id) {
                return (i, file::position_of(q, i));
            }
        }
        panic!("model_ops: message {id} was sent but is in no slot");
    }

    /// Whether message `id` is in a slot the model does not give it.
    fn in_some_slot(&self, id: u64) -> bool {
        let q = self.qs[0];
        (0..self.m.p.capacity).any(|i| {
            file::word(q, i).state() != state::FREE
                && file::id_in(q, i) == id
                && self.m.slot_of(i) != Some(id)
        })
    }

    fn send(&mut self, h: usize, key: u64, version: u64, delayed: bool, len: usize) {
        let id = self.m.new_id();
        let next_before = self.m.keys.given(key);
        let (expect, v) = self.expect_send(key, version, delayed);
        let opts = SendOptions {
            key,
            version,
            timeout: Timeout::TryOnce,
            delay: if delayed {
                Duration::from_secs(DELAY_S)
            } else {
                Duration::ZERO
            },
            ttl: Duration::ZERO,
        };
        let got = if key == 0 && !delayed && version == 0 {
            self.qs[h].send(&payload(id, len), Timeout::TryOnce)
        } else {
            self.qs[h].send_with(&payload(id, len), &opts)
        };
        if let Ok(s) = &got {
            if key != 0 {
                ensure!(
                    s.version == v,
                    "send of {id}: version {}, the model says {v}",
                    s.version
                );
            }
        }
        let got = got.map(|s| Some(s.position)).map_err(|e| e.status());
        if key != 0 && version == 0 && got == Err(Status::Full) {
            // Version 0 is assigned once the send has a place: a send
            // refused FULL gives none away.
            self.m.keys.restore_given(key, next_before);
        }
        self.sent("send", id, len, key, v, delayed, expect, got);
    }

    fn send_batch(&mut self, h: usize, lens: &[usize]) {
        let ids: Vec<u64> = lens.iter().map(|_| self.m.new_id()).collect();
        let msgs: Vec<Vec<u8>> = ids
            .iter()
            .zip(lens)
            .map(|(id, l)| payload(*id, *l))
            .collect();
        let got = self.qs[h].send_batch(&msgs, Timeout::TryOnce);
        let n = match got {
            Ok(n) => n,
            Err(e) if e.status() == Status::Full && !ids.is_empty() => 0,
            Err(e) => panic!("model_ops: send_batch: {e}"),
        };
        if ids.is_empty() {
            ensure!(n == 0, "send_batch of nothing sent {n}");
            return;
        }
        let mut last = None;
        for (k, id) in ids.iter().enumerate() {
            if k >= n {
                ensure!(
                    self.m.full_ok(),
                    "send_batch stopped after {n} of {} with room: {:?}",
                    ids.len(),
                    self.m.msgs
                );
                break;
            }
            let (slot, pos) = self.find(*id, None);
            if let Some(l) = last {
                ensure!(
                    pos > l,
                    "send_batch: message {id} at position {pos} after {l} (G6)"
                );
            }
            last = Some(pos);
            self.place(*id, slot, pos, lens[k], 0, 0, St::Fresh);
        }
    }

    fn reserve(&mut self, h: usize, len: usize) {
        let id = self.m.new_id();
        match self.qs[h].reserve(len, Timeout::TryOnce) {
            Ok(mut r) => {
                r.write(&payload(id, len)).expect("write");
                let p = r.position();
                self.place(
                    id,
                    p % self.m.p.capacity,
                    p,
                    len,
                    0,
                    0,
                    St::Reserved {
                        h,
                        quarantined: false,
                    },
                );
                self.res.push((h, id, r));
            }
            Err(e) if e.status() == Status::Full => {
                ensure!(
                    self.m.full_ok(),
                    "reserve: FULL with room: {:?}",
                    self.m.msgs
                )
            }
            Err(e) => panic!("model_ops: reserve: {e}"),
        }
    }

    fn finish_reservation(&mut self, pick: u8, commit: Option<(u64, u64, bool)>) {
        if self.res.is_empty() {
            return;
        }
        let (h, id, r) = self.res.swap_remove(pick as usize % self.res.len());
        let St::Reserved { quarantined, .. } = self.m.msgs[&id].st else {
            panic!("model_ops: reservation {id} is {:?}", self.m.msgs[&id]);
        };
        let _ = h;
        let Some((key, version, delayed)) = commit else {
            let got = r.abort();
            self.m.msgs.remove(&id);
            ensure!(
                status(&got) == quarantined.then_some(Status::Abandoned),
                "abort of {id} (quarantined {quarantined}): {got:?}"
            );
            return;
        };
        let opts = SendOptions {
            key,
            version,
            timeout: Timeout::TryOnce,
            delay: if delayed {
                Duration::from_secs(DELAY_S)
            } else {
                Duration::ZERO
            },
            ttl: Duration::ZERO,
        };
        let position = r.position();
        let resolved = if key == 0 {
            Ok(0)
        } else {
            self.m.keys.resolve(key, version)
        };
        let got = r.commit_with(&opts);
        let m = self.m.msgs.remove(&id).unwrap();
        let v = match resolved {
            Err(s) => {
                ensure!(
                    status(&got) == Some(s),
                    "commit of {id} key {key}: {got:?}, expected {s:?}"
                );
                return;
            }
            Ok(v) => v,
        };
        if quarantined && crate::harness::avoid("late-commit-replaces") {
            // KNOWN ENGINE BUG `late-commit-replaces` (fuzz/README.md): a
            // latest-only commit of an abandoned reservation replaces the
            // key's waiting message (or is STALE against it) instead of
            // getting ABANDONED.
            let waiting = self.m.keys.get(key).and_then(|k| k.waiting);
            if let (Err(e), Some(w)) = (&got, waiting) {
                // Or STALE against the waiting message.
                if e.status() == Status::Stale
                    && self.m.msgs.get(&w).is_some_and(|wm| v <= wm.version)
                {
                    return;
                }
            }
            if let (Ok(sent), Some(w)) = (&got, waiting) {
                if let Some(wm) = self.m.msgs.get(&w).cloned() {
                    if sent.position == wm.position {
                        self.m.remove(w);
                        self.place(id, wm.slot, wm.position, m.len, key, v, St::Fresh);
                        self.m.keys.set_waiting(key, id);
                        return;
                    }
                }
            }
        }
        if quarantined {
            ensure!(
                status(&got) == Some(Status::Abandoned),
                "commit of {id} after its reservation was abandoned: {got:?} (G5)"
            );
            return;
        }
        // Latest-only: a commit replaces the key's waiting message in place
        // (or is STALE against it), as a send does; the reserved slot is
        // given back.
        if key != 0 && self.m.p.latest_only && !delayed {
            let waiting = self
                .m
                .keys
                .get(key)
                .and_then(|k| Some((k.waiting?, k.maybe_parked)));
            if let Some((w, maybe)) = waiting {
                if let Some(wm) = self.m.msgs.get(&w).cloned() {
                    if wm.st.is_ready() && wm.key == key {
                        if status(&got) == Some(Status::Stale) && v <= wm.version {
                            return;
                        }
                        ensure!(
                            maybe || v > wm.version,
                            "commit of {id} (version {v}): {got:?}, expected STALE against the waiting {w} {wm:?}"
                        );
                        let sent = got
                            .as_ref()
                            .unwrap_or_else(|e| panic!("model_ops: commit of {id}: {e}"));
                        if sent.position == wm.position && sent.position != position {
                            self.m.remove(w);
                            self.place(id, wm.slot, wm.position, m.len, key, v, St::Fresh);
                            self.m.keys.set_waiting(key, id);
                            return;
                        }
                        ensure!(
                            maybe,
                            "commit of {id}: {sent:?} did not replace the waiting {w} {wm:?}"
                        );
                    }
                }
            }
        }
        let sent = got.unwrap_or_else(|e| panic!("model_ops: commit of {id}: {e}"));
        ensure!(
            sent.position == position && (key == 0 || sent.version == v),
            "commit of {id}: {sent:?}, reserved at {position}, version {v}"
        );
        let st = if delayed {
            St::Delayed { due: None }
        } else {
            St::Fresh
        };
        self.place(id, m.slot, m.position, m.len, key, v, st);
        if key != 0 && self.m.p.latest_only && !delayed {
            self.m.keys.set_waiting(key, id);
        }
    }

    /// Checks a message a claim returned and records it as held by `h`.
    fn claimed(&mut self, h: usize, msg: &Message<'q>) -> u64 {
        let (id, _) = self
            .m
            .check_claimed(msg)
            .unwrap_or_else(|e| panic!("model_ops: {e}"));
        self.m.claimed(id, h, msg.token(), LEASE_S);
        id
    }

    /// After a claim: a waiting message whose key is busy may have been
    /// parked (claimed and put back), and is no longer replaced in place.
    fn maybe_parked(&mut self) {
        let busy: Vec<u64> = self
            .m
            .keys
            .iter()
            .filter(|(k, e)| e.waiting.is_some() && self.m.key_busy(*k))
            .map(|(k, _)| k)
            .collect();
        for k in busy {
            if let Some(e) = self.m.keys.get_mut(k) {
                e.maybe_parked = true;
            }
        }
    }

    /// The slot words and cursors, for failure messages.
    fn dump(&self) -> String {
        use shmq::internals::layout::hdr;
        let q = self.qs[0];
        let rd = |off: usize| file::header(q, off);
        let words: Vec<String> = (0..self.m.p.capacity)
            .map(|i| format!("{i}: {:?}", file::word(q, i)))
            .collect();
        format!(
            "tail {} head {} side dirty {} clean {} slots [{}]",
            rd(hdr::TAIL),
            rd(hdr::HEAD),
            rd(hdr::SIDE_DIRTY),
            rd(hdr::SIDE_CLEAN),
            words.join(", ")
        )
    }

    /// The head cursor.
    fn head(&self) -> u64 {
        file::header(self.qs[0], shmq::internals::layout::hdr::HEAD)
    }

    /// KNOWN ENGINE BUG `head-lag` (fuzz/README.md): a producer that finds
    /// every slot held skips each of them, moving the tail a lap per try,
    /// while the head stays; once a slot frees and a message is sent there,
    /// a claim walks at most `4 * capacity + 64` positions per attempt
    /// towards it and answers EMPTY when it has not reached it. Tolerated
    /// only with `SHMQ_FUZZ_AVOID=head-lag`, and only when the failed claim
    /// did move the head that far.
    fn head_lagged(&self, head_before: u64) -> bool {
        let walk = self.m.p.capacity * 4 + 64;
        crate::harness::avoid("head-lag") && self.head().wrapping_sub(head_before) >= walk
    }

    fn empty_ok(&self) -> bool {
        self.m.claimable().is_empty()
            || self.m.msgs.values().any(|m| {
                matches!(
                    m.st,
                    St::Reserved {
                        quarantined: false,
                        ..
                    }
                )
            })
    }

    fn claim(&mut self, h: usize) {
        let head = self.head();
        match self.qs[h].claim(Timeout::TryOnce) {
            Ok(msg) => {
                let id = self.claimed(h, &msg);
                self.held.push((h, id, msg));
            }
            Err(e) if e.status() == Status::Empty => ensure!(
                self.empty_ok() || self.head_lagged(head),
                "claim: EMPTY, but the model has {:?} claimable: {:?}; {}",
                self.m.claimable(),
                self.m.msgs,
                self.dump()
            ),
            Err(e) => panic!("model_ops: claim: {e}"),
        }
        self.maybe_parked();
    }

    fn claim_batch(&mut self, h: usize, max: usize) {
        let head = self.head();
        match self.qs[h].claim_batch(max, Timeout::TryOnce) {
            Ok(v) => {
                ensure!(
                    v.len() <= max && (max == 0 || !v.is_empty()),
                    "claim_batch({max}) gave {}",
                    v.len()
                );
                for msg in v {
                    let id = self.claimed(h, &msg);
                    self.held.push((h, id, msg));
                }
                if max > 0 {
                    // Fewer than asked: nothing else was claimable.
                }
            }
            Err(e) if e.status() == Status::Empty => ensure!(
                max > 0 && (self.empty_ok() || self.head_lagged(head)),
                "claim_batch: EMPTY, but the model has {:?} claimable; {}",
                self.m.claimable(),
                self.dump()
            ),
            Err(e) => panic!("model_ops: claim_batch: {e}"),
        }
        self.maybe_parked();
    }

    /// The model's side of an outcome on `token` through handle `h`;
    /// returns the status the engine must give (None = OK).
    fn outcome(&mut self, h: usize, token: u64, o: Out) -> Option<Status> {
        if self.qs[0].engine().split_token(token).is_none() {
            return Some(Status::InvalidArgument);
        }
        let me = self.me(h);
        let found = self.m.msgs.iter().find_map(|(id, m)| match m.st {
            St::Claimed {
                h: holder,
                token: t,
                ..
            } if t == token && self.m.me[holder] == me => Some(*id),
            _ => None,
        });
        let Some(id) = found else {
            return Some(Status::LeaseLost);
        };
        let settled = match o {
            Out::Ack => self.m.acked(id).map(drop),
            Out::Nack(delayed) => self
                .m
                .nacked(id, || {
                    Ok(if delayed {
                        St::Delayed { due: None }
                    } else {
                        St::Redeliver
                    })
                })
                .map(drop),
            Out::Reject => self.m.rejected(id).map(drop),
            Out::Extend(s) => {
                if let St::Claimed { deadline, .. } = &mut self.m.msgs.get_mut(&id).unwrap().st {
                    *deadline = s;
                }
                Ok(())
            }
        };
        if let Err(e) = settled {
            panic!("model_ops: {o:?} of {id} through handle {h}: {e}");
        }
        None
    }

    /// An outcome through a `Message` this run holds.
    fn settle_held(&mut self, pick: u8, kind: u8, arg: u8) {
        if self.held.is_empty() {
            return;
        }
        let i = pick as usize % self.held.len();
        let (h, id, token) = (self.held[i].0, self.held[i].1, self.held[i].2.token());
        let o = Out::from(kind, arg);
        let want = self.outcome(h, token, o);
        let got = match o {
            Out::Extend(s) => self.held[i].2.extend(Duration::from_secs(s)),
            _ => {
                let (_, _, msg) = self.held.swap_remove(i);
                match o {
                    Out::Ack => msg.ack(),
                    Out::Nack(d) => msg.nack(if d {
                        Duration::from_secs(DELAY_S)
                    } else {
                        Duration::ZERO
                    }),
                    _ => msg.reject("fuzz"),
                }
            }
        };
        ensure!(
            status(&got) == want,
            "{o:?} of message {id} (token {token:#x}) through handle {h}: {got:?}, expected {want:?}"
        );
    }

    /// An outcome by raw token through handle `h`: a live claim of either
    /// handle (foreign ones must be refused), an ended one, or a forgery.
    fn settle_raw(&mut self, h: usize, pick: u8, kind: u8, arg: u8, forged: u64) {
        let live: Vec<u64> = self
            .m
            .msgs
            .values()
            .filter_map(|m| match m.st {
                St::Claimed { token, .. } => Some(token),
                _ => None,
            })
            .collect();
        let token = match pick % 4 {
            0 | 1 if !live.is_empty() => live[pick as usize / 4 % live.len()],
            2 if !self.m.ended_tokens.is_empty() => {
                self.m.ended_tokens[pick as usize / 4 % self.m.ended_tokens.len()]
            }
            _ => match pick / 4 % 3 {
                0 => forged,
                1 => self.qs[0]
                    .engine()
                    .token_of(forged % self.m.p.capacity, forged >> 40),
                _ => forged | 1 << 63,
            },
        };
        let o = Out::from(kind, arg);
        let want = self.outcome(h, token, o);
        let now = shmq::internals::clock::coarse_ns();
        let secs = |s: u64| now + s * 1_000_000_000;
        let eo = match o {
            Out::Ack => Outcome::Ack,
            Out::Nack(d) => Outcome::Nack {
                not_before_ns: if d { secs(DELAY_S) } else { 0 },
            },
            Out::Reject => Outcome::Reject { reason: "raw" },
            Out::Extend(s) => Outcome::Extend {
                deadline_ns: secs(s),
            },
        };
        let got = self.qs[h].settle(token, &eo, None, None);
        ensure!(
            status(&got) == want,
            "raw {o:?} of token {token:#x} through handle {h}: {got:?}, expected {want:?}"
        );
    }

    fn ack_batch(&mut self, h: usize, mask: u8) {
        let mut batch = Vec::new();
        let mut k = 0;
        while k < self.held.len() {
            if mask >> (k % 8) & 1 != 0 {
                batch.push(self.held.swap_remove(k));
            } else {
                k += 1;
            }
        }
        let mut want = 0;
        for (_, _, msg) in &batch {
            if self.outcome(h, msg.token(), Out::Ack).is_none() {
                want += 1;
            }
        }
        let msgs: Vec<Message<'q>> = batch.into_iter().map(|(_, _, m)| m).collect();
        let got = self.qs[h].ack_batch(&msgs);
        ensure!(
            got.as_ref().ok() == Some(&want),
            "ack_batch of {} through handle {h}: {got:?}, expected {want}",
            msgs.len()
        );
    }

    /// The engine's repair pass as of `w` seconds from now.
    fn warp(&mut self, h: usize, w: u64) {
        let now = shmq::internals::clock::coarse_ns() + w * 1_000_000_000;
        self.qs[h]
            .engine()
            .repair(self.me(h), now, &|_| false)
            .expect("repair");
        // The repair pass goes slot by slot.
        let ids: Vec<u64> = self.m.by_slot();
        for id in ids {
            match self.m.msgs[&id].st {
                St::Claimed { deadline, .. } if deadline < w => {
                    self.m.claim_ended(id);
                }
                St::DlqWait => {
                    self.m.dead_letter(id);
                }
                St::Reserved {
                    h,
                    quarantined: false,
                } if RESERVATION_S < w => {
                    self.m.msgs.get_mut(&id).unwrap().st = St::Reserved {
                        h,
                        quarantined: true,
                    }
                }
                _ => {}
            }
        }
    }

    /// The dead letters in the order a redrive takes them.
    fn dlq_order(&self) -> Vec<u64> {
        let mut v: Vec<(u64, u64)> = self
            .m
            .dlq
            .iter()
            .map(|(id, d)| (d.record.expect("record id seen"), *id))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }

    fn record_id(&self, pick: u8) -> Option<u64> {
        let order = self.dlq_order();
        match pick % 4 {
            0 => None,
            1 | 2 if !order.is_empty() => Some(
                self.m.dlq[&order[pick as usize / 4 % order.len()]]
                    .record
                    .unwrap(),
            ),
            _ => Some(1_000_000 + pick as u64),
        }
    }

    fn redrive(&mut self, h: usize, pick: u8) {
        let which = self.record_id(pick);
        let got = self.qs[h].dlq_redrive(which);
        // What is left in the dead letters tells which records went back.
        let left: BTreeSet<u64> = self.qs[h].dlq_list().iter().map(|d| d.id).collect();
        let mut n = 0;
        let mut want_err = None;
        let mut found = false;
        let order = self.dlq_order();
        for (k, &id) in order.iter().enumerate() {
            let d = self.m.dlq[&id].clone();
            let rec = d.record.unwrap();
            if which.is_some_and(|w| w != rec) {
                continue;
            }
            found = true;
            // The record goes back as a send of its payload, key and version.
            let (expect, v) = self.expect_send(d.key, d.version, false);
            if let Some(s) = expect.refusal() {
                ensure!(left.contains(&rec), "redrive sent {id} despite {s:?}");
                if which.is_none() && s == Status::Stale {
                    // Redriving them all: a stale letter stays, the others go on.
                    continue;
                }
                want_err = Some(s);
                break;
            }
            if let Expect::Replace {
                old,
                maybe_parked: true,
            } = expect
            {
                if v <= self.m.msgs[&old].version {
                    if which.is_none() && left.contains(&rec) {
                        // The waiting message was not parked after all: not
                        // newer; stale, it stays, and the others go on.
                        continue;
                    }
                    if status(&got) == Some(Status::Stale) {
                        // The waiting message was not parked after all: not newer.
                        ensure!(left.contains(&rec), "redrive sent {id} despite STALE");
                        want_err = Some(Status::Stale);
                        break;
                    }
                }
            }
            if left.contains(&rec) {
                ensure!(
                    self.m.full_ok(),
                    "redrive of {id} was refused with room: {:?}",
                    self.m.msgs
                );
                break;
            }
            self.m.dlq.remove(&id);
            n += 1;
            if self.m.p.latest_only && d.key != 0 && !self.in_some_slot(id) {
                // Latest-only: a later record of the same key, sent back by
                // this same redrive, replaced it in place.
                let later = order[k + 1..].iter().any(|l| {
                    let ld = &self.m.dlq[l];
                    ld.key == d.key && ld.record.is_some_and(|r| !left.contains(&r))
                });
                ensure!(later, "redrive sent {id} but it is in no slot");
                continue;
            }
            self.sent("redrive", id, d.len, d.key, v, false, expect, Ok(None));
        }
        if let Some(s) = want_err {
            ensure!(status(&got) == Some(s), "redrive: {got:?}, expected {s:?}");
        } else if which.is_some() && !found {
            ensure!(
                status(&got) == Some(Status::NotFound),
                "redrive of an unknown record: {got:?}"
            );
        } else {
            ensure!(
                got.as_ref().ok() == Some(&n),
                "redrive: {got:?}, the model sent {n}"
            );
        }
    }

    fn purge(&mut self, h: usize, pick: u8) {
        let which = self.record_id(pick);
        let got = self.qs[h].dlq_purge(which);
        let before = self.m.dlq.len();
        self.m
            .dlq
            .retain(|_, d| which.is_some_and(|w| Some(w) != d.record));
        let n = before - self.m.dlq.len();
        if which.is_some() && n == 0 {
            ensure!(
                status(&got) == Some(Status::NotFound),
                "purge of an unknown record: {got:?}"
            );
        } else {
            ensure!(
                got.as_ref().ok() == Some(&n),
                "purge: {got:?}, expected {n}"
            );
        }
    }

    /// Drops the reservations (aborting them) and the held messages (their
    /// claims stay).
    fn end(&mut self) {
        for (_, id, r) in std::mem::take(&mut self.res) {
            drop(r);
            self.m.remove(id);
        }
        self.held.clear();
    }

    /// Compares the model with the file; takes the file's word for what the
    /// model cannot know in advance (see the module comment).
    fn check(&mut self, what: &str) {
        self.dlq_moves();
        let q = self.qs[0];
        let me = self.m.me;
        let completed = compare::slots(q, &self.m, |h| me[h]);
        let completed = completed
            .unwrap_or_else(|e| panic!("model_ops: after {what}: {e} (model {:?})", self.m.msgs));
        // A claim reached them: completed without delivery.
        for id in completed {
            self.m.remove(id);
        }
        let checked = compare::dead_letters(q, &mut self.m)
            .and_then(|_| file::acked_versions_agree(q, &self.m.keys, []))
            .and_then(|_| file::verify_clean(self.qs[1], false));
        if let Err(e) = checked {
            panic!("model_ops: after {what}: {e}");
        }
    }
}

/// An outcome, in the model's terms.
#[derive(Clone, Copy, Debug)]
enum Out {
    Ack,
    /// Nack, delayed by an hour when true.
    Nack(bool),
    Reject,
    /// Extend to this many seconds from now.
    Extend(u64),
}

impl Out {
    fn from(kind: u8, arg: u8) -> Out {
        match kind % 4 {
            0 => Out::Ack,
            1 => Out::Nack(arg & 1 != 0),
            2 => Out::Reject,
            _ => Out::Extend(EXTENDS_S[arg as usize % 2]),
        }
    }
}

/// The readings of several input bytes this target makes.
trait Readings {
    fn u64(&mut self) -> u64;
    fn len(&mut self) -> usize;
    fn key(&mut self) -> (u64, u64);
}

impl Readings for Bytes<'_> {
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, _| v << 8 | self.byte() as u64)
    }
    fn len(&mut self) -> usize {
        8 + self.byte() as usize % (MMS - 7)
    }
    fn key(&mut self) -> (u64, u64) {
        let b = self.byte();
        let key = 1 + (b & 7) as u64;
        // Version 0 (automatic) half of the time, else 1..=8.
        let version = if b & 0x80 != 0 {
            0
        } else {
            1 + (b >> 4 & 7) as u64
        };
        (key, version)
    }
}

/// `SHMQ_MODEL_TRACE=1` prints each operation and the model after it.
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("SHMQ_MODEL_TRACE").is_some())
}

/// Runs operations until they end (`None`) or one reopens handle `h`.
fn epoch(run: &mut Run<'_>, ops: &mut Bytes<'_>, budget: &mut usize) -> Option<usize> {
    while !ops.done() && *budget > 0 {
        *budget -= 1;
        let op = ops.byte();
        let h = (op >> 7) as usize;
        let name = match op % 24 {
            0 => {
                let len = ops.len();
                run.send(h, 0, 0, false, len);
                "send"
            }
            1 | 2 => {
                let (key, version) = ops.key();
                let delayed = ops.byte() & 0x40 != 0;
                let len = ops.len();
                run.send(h, key, version, delayed, len);
                "send_with"
            }
            3 => {
                let len = ops.len();
                run.reserve(h, len);
                "reserve"
            }
            4 => {
                let pick = ops.byte();
                let c = ops.byte();
                let (key, version) = ops.key();
                let commit = match c % 3 {
                    0 => (0, 0, false),
                    1 => (key, version, false),
                    _ => (key, version, true),
                };
                run.finish_reservation(pick, Some(commit));
                "commit"
            }
            5 => {
                let pick = ops.byte();
                run.finish_reservation(pick, None);
                "abort"
            }
            6 | 7 => {
                run.claim(h);
                "claim"
            }
            8 => {
                let n = ops.byte() as usize % 5;
                run.claim_batch(h, n);
                "claim_batch"
            }
            9..=11 => {
                let (pick, kind, arg) = (ops.byte(), ops.byte(), ops.byte());
                run.settle_held(pick, kind, arg);
                "outcome"
            }
            12 => {
                let (pick, kind, arg) = (ops.byte(), ops.byte(), ops.byte());
                let forged = ops.u64();
                run.settle_raw(h, pick, kind, arg, forged);
                "raw outcome"
            }
            13 => {
                let mask = ops.byte();
                run.ack_batch(h, mask);
                "ack_batch"
            }
            14 => {
                let w = WARPS_S[ops.byte() as usize % WARPS_S.len()];
                run.warp(h, w);
                "warp"
            }
            15 => {
                let n = ops.byte() as usize % 5;
                let lens: Vec<usize> = (0..n).map(|_| ops.len()).collect();
                run.send_batch(h, &lens);
                "send_batch"
            }
            16 => {
                let pick = ops.byte();
                run.redrive(h, pick);
                "dlq_redrive"
            }
            17 => {
                let pick = ops.byte();
                run.purge(h, pick);
                "dlq_purge"
            }
            18 => {
                let pick = ops.byte();
                if let Some(id) = run.record_id(pick) {
                    let got = run.qs[h].dlq_get(id);
                    let known = run.m.dlq.values().any(|d| d.record == Some(id));
                    ensure!(
                        got.as_ref().map(|d| d.id).ok() == known.then_some(id),
                        "dlq_get({id}): {got:?}"
                    );
                }
                "dlq_get"
            }
            19 => {
                // No time passes: nothing is expired or dead.
                let r = run.qs[h].recover().expect("recover");
                ensure!(
                    r.redelivered == 0 && r.abandoned == 0,
                    "recover repaired {r:?} with nothing expired"
                );
                "recover"
            }
            20 => {
                if !run.held.is_empty() {
                    let i = ops.byte() as usize % run.held.len();
                    let (hh, id, token) = (run.held[i].0, run.held[i].1, run.held[i].2.token());
                    let mut buf = [0u8; MMS];
                    let got = run.qs[hh].read_payload(token, &mut buf);
                    let live = run.m.msgs.get(&id).is_some_and(
                        |m| matches!(m.st, St::Claimed { token: t, .. } if t == token),
                    );
                    match got {
                        Ok(n) => ensure!(
                            live && buf[..n] == payload(id, run.m.msgs[&id].len),
                            "read of {id}: {n} bytes, live {live}"
                        ),
                        Err(e) => ensure!(
                            !live && e.status() == Status::LeaseLost,
                            "read of {id}: {e}, live {live}"
                        ),
                    }
                }
                "read"
            }
            21 => {
                let s = run.qs[h].stats();
                std::hint::black_box(s);
                "stats"
            }
            _ => {
                if ops.byte() & 1 == 0 {
                    return Some(h);
                }
                "nothing"
            }
        };
        if trace() {
            eprintln!("op {op:#04x} {name} (handle {h}): {}", run.dump());
            for (id, m) in &run.m.msgs {
                eprintln!("    {id}: {m:?}");
            }
            eprintln!("    dlq {:?} keys {:?}", run.m.dlq, run.m.keys);
        }
        run.check(name);
    }
    None
}

/// The `model_ops` target.
pub fn model_ops(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (b0, b1) = (data[0], data[1]);
    let o = Options {
        capacity: 1 + (b0 % 8) as u64,
        max_message_size: MMS as u32,
        key_capacity: (b1 % 5) as u64,
        dlq_capacity: 1 + (b1 >> 5) as u64 % 3,
        participant_capacity: 4,
        lease: Duration::from_secs(LEASE_S),
        max_deliveries: (b1 >> 3) as u32 % 4,
        reservation_timeout: Duration::from_secs(RESERVATION_S),
        latest_only: b0 & 0x80 != 0,
        ..Options::default()
    };
    let path = unique_path("model");
    let _guard = TempFile(path.clone());
    let mut qs = [
        Some(Queue::create(&path, &o).expect("create")),
        Some(Queue::open(&path).expect("open")),
    ];
    let me = |q: &Option<Queue>| q.as_ref().unwrap().participant().unwrap();
    let mut model = Model {
        m: Shared::new(Params::of(&o)),
        me: [me(&qs[0]), me(&qs[1])],
        next_id: 1,
    };
    let mut ops = Bytes::new(&data[2..]);
    let mut budget = BUDGET;
    loop {
        let reopen = {
            let mut run = Run {
                qs: [qs[0].as_ref().unwrap(), qs[1].as_ref().unwrap()],
                m: model,
                held: Vec::new(),
                res: Vec::new(),
            };
            let r = epoch(&mut run, &mut ops, &mut budget);
            run.end();
            run.check("the end of the handles' run");
            model = run.m;
            r
        };
        let Some(h) = reopen else { break };
        // Closing redelivers what the handle holds (dead-letters what is out
        // of deliveries).
        qs[h] = None;
        let me_h = model.me[h];
        let ids: Vec<u64> = model
            .by_slot()
            .into_iter()
            .filter(
                |id| matches!(model.msgs[id].st, St::Claimed { h: x, .. } if model.me[x] == me_h),
            )
            .collect();
        // First a repair pass as of now (it moves what waits for room in
        // the dead letters), then the handle's own claims, slot by slot.
        for id in model.by_slot() {
            if model.msgs[&id].st == St::DlqWait {
                model.dead_letter(id);
            }
        }
        for id in ids {
            model.claim_ended(id);
        }
        qs[h] = Some(Queue::open(&path).expect("reopen"));
        model.me[h] = me(&qs[h]);
        let run = Run {
            qs: [qs[0].as_ref().unwrap(), qs[1].as_ref().unwrap()],
            m: model,
            held: Vec::new(),
            res: Vec::new(),
        };
        let mut run = run;
        run.check("reopen");
        model = run.m;
    }
}
