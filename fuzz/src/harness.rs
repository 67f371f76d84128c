//! The logic of the fuzz targets, shared with `tests/damaged.rs` (which
//! includes this file with `#[path]` to replay the committed seeds and
//! regressions in a plain `cargo test`). Depends only on `shmq` and `std`.
//!
//! # `open_and_operate` input format
//!
//! ```text
//! byte 0      mode: bit 0..1 == 0 -> raw image (the rest of the input is the
//!             whole file); otherwise patch mode:
//!               bit 2 -> recompute the header checksum after patching (a
//!                        hostile writer, not just a random scribble)
//!               bit 3 -> also open a read-only style inspection handle
//! byte 1      template: which valid queue image to start from (see TEMPLATES)
//! byte 2      number of patches (mod 48)
//! patches     11 bytes each: kind (1), offset (2, LE), value (8, LE)
//!               kind bits 0..1: 0 store u64, 1 xor u64, 2 store one byte,
//!                               3 store an "interesting" u64 (value selects)
//!               kind bits 2..4: region (header, participants, slots, keys,
//!                               dead letters, whole file, hot header words)
//!             the offset is taken modulo the region's length
//! rest        operations, one byte each (+ argument bytes), see `Session`
//! ```
//!
//! In both modes a magic number of 0 is replaced by a non-zero wrong one:
//! `Queue::open` waits up to a second for a creator to store the magic, and
//! that wait (bounded, and by design) would only slow the fuzzer down.

#![allow(dead_code)]

use shmq::internals::layout::{self, hdr, Layout};
use shmq::{Histogram, Options, Queue, SendOptions, Timeout};
use std::sync::OnceLock;
use std::time::Duration;

/// A valid queue image and its layout.
pub struct Template {
    pub bytes: Vec<u8>,
    pub layout: Layout,
}

/// Scratch files come from the test kit, shared with every other test.
pub use shmq_testkit::{unique_path, TempFile};

/// A fuzz input read one byte at a time, then zeros: the reader of the
/// operation lists of `model_ops` and `c_abi` (each adds its own readings
/// of several bytes).
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, pos: 0 }
    }
    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// Whether every byte was read.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

fn opts(
    capacity: u64,
    mms: u32,
    keys: u64,
    dlq: u64,
    parts: u32,
    lease: Duration,
    max_deliveries: u32,
) -> Options {
    Options {
        capacity,
        max_message_size: mms,
        key_capacity: keys,
        dlq_capacity: dlq,
        participant_capacity: parts,
        lease,
        max_deliveries,
        ..Options::default()
    }
}

/// Number of templates.
pub const TEMPLATES: usize = 5;

/// Builds template `which`: a small queue brought into an interesting state
/// (messages ready, claimed, delayed, dead-lettered, waiting for room in the
/// dead-letter area, reserved and uncommitted), then copied while the handle
/// is still open. Opened again from the copy, the handle that made it counts
/// as a dead participant (it holds no lock on the copy), so the copy also
/// drives the clean-up paths.
pub fn build_template(which: usize) -> Template {
    let path = unique_path("template");
    let _guard = TempFile(path.clone());
    let secs = Duration::from_secs;
    let o = match which % TEMPLATES {
        // Empty, keyless.
        0 => opts(4, 16, 0, 2, 2, secs(30), 2),
        // Every slot state at once.
        1 => opts(8, 16, 4, 2, 3, secs(30), 2),
        // The smallest queue there is, one message ready.
        2 => opts(1, 1, 0, 1, 1, secs(30), 1),
        // Short lease: held claims have expired when reopened.
        3 => {
            let mut o = opts(8, 64, 8, 4, 4, Duration::from_millis(1), 3);
            o.latest_only = true;
            o.reservation_timeout = Duration::from_millis(1);
            o
        }
        // Dead-letter area full, one message waiting for room.
        _ => opts(4, 8, 0, 1, 2, secs(30), 0),
    };
    let q = Queue::create(&path, &o).expect("template: create");
    let layout = *q.layout();
    let z = Timeout::TryOnce;
    let snapshot = |q: &Queue| {
        let _ = q;
        std::fs::read(&path).expect("template: read")
    };
    let bytes = match which % TEMPLATES {
        0 => snapshot(&q),
        1 => {
            for n in 0..7u8 {
                q.send(&[n; 5], z).expect("template send");
            }
            let held = q.claim(z).expect("claim");
            let m = q.claim(z).expect("claim");
            m.nack(secs(600)).expect("nack delayed");
            let m = q.claim(z).expect("claim");
            m.nack(Duration::ZERO).expect("nack");
            let m = q.claim(z).expect("claim");
            m.reject("template reject").expect("reject");
            let m = q.claim(z).expect("claim");
            m.ack().expect("ack");
            let mut r = q.reserve(3, z).expect("reserve");
            r.write(b"abc").expect("write");
            let b = snapshot(&q);
            drop(r);
            let _ = held; // no outcome: the claim stays until its lease ends
            b
        }
        2 => {
            q.send(b"x", z).expect("send");
            snapshot(&q)
        }
        3 => {
            for n in 0..6u8 {
                q.send(&[n; 40], z).expect("send");
            }
            let a = q.claim(z).expect("claim");
            let b = q.claim(z).expect("claim");
            let _ = q.reserve(10, z).map(std::mem::forget);
            std::thread::sleep(Duration::from_millis(3));
            let s = snapshot(&q);
            let _ = (a, b); // no outcome
            s
        }
        _ => {
            for n in 0..3u8 {
                q.send(&[n; 8], z).expect("send");
            }
            for _ in 0..2 {
                let m = q.claim(z).expect("claim");
                m.reject("full dlq").expect("reject");
            }
            let held = q.claim(z).expect("claim");
            let s = snapshot(&q);
            let _ = held; // no outcome: the claim stays until its lease ends
            s
        }
    };
    drop(q);
    Template { bytes, layout }
}

fn template(which: usize) -> &'static Template {
    static T: OnceLock<Vec<Template>> = OnceLock::new();
    &T.get_or_init(|| (0..TEMPLATES).map(build_template).collect())[which % TEMPLATES]
}

fn rd64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    for (i, x) in w.iter_mut().enumerate() {
        *x = b.get(off + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(w)
}

fn wr64(b: &mut [u8], off: usize, v: u64) {
    if off + 8 <= b.len() {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Whether a known engine bug (named in `fuzz/README.md`) should be steered
/// around, so that a long run finds new bugs instead of the same one again:
/// `SHMQ_FUZZ_AVOID=lease-overflow,...` or `SHMQ_FUZZ_AVOID=all`. Unset (the
/// default, and in `cargo test`), nothing is avoided.
pub fn avoid(bug: &str) -> bool {
    static AVOID: OnceLock<Vec<String>> = OnceLock::new();
    let list = AVOID.get_or_init(|| {
        std::env::var("SHMQ_FUZZ_AVOID")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    list.iter().any(|b| b == bug || b == "all")
}

/// Steers a patched image around the known bugs the caller asked to avoid.
fn steer(img: &mut [u8]) {
    if img.len() < layout::HEADER_SIZE {
        return;
    }
    if avoid("lease-overflow") {
        // BUG 1: `now + lease_ns` / `now + reservation_timeout_ns` overflow.
        for off in [hdr::LEASE_NS, hdr::RESERVATION_TIMEOUT_NS] {
            let v = rd64(img, off);
            wr64(img, off, v & ((1 << 60) - 1));
        }
    }
}

/// Steers around BUG 4 (`cursor-overflow`), BUG 5 (`cleaner-overflow`),
/// BUG 6 (`key-ref-underflow`) and BUG 3 (`lap-walk`): a slot word whose lap is far ahead of
/// the cursors (or a head cursor far behind the tail) makes claim and send
/// advance their cursor one position per iteration, up to 2^27 x capacity
/// times. Pulls such laps and cursors back near the tail's lap.
fn steer_laps(img: &mut [u8], l: &Layout) {
    if img.len() < l.file_size {
        return;
    }
    if avoid("cursor-overflow") {
        // BUG 4: a cursor at u64::MAX makes `p + 1` overflow.
        for off in [hdr::TAIL, hdr::HEAD] {
            let v = rd64(img, off);
            wr64(img, off, v & ((1 << 62) - 1));
        }
    }
    if avoid("cleaner-overflow") {
        // BUG 5: a CLEANER word near u64::MAX reaches `LOCK_BASE + index`.
        for i in 0..l.params.participant_capacity {
            let off = l.participant(i) + layout::part::CLEANER;
            let v = rd64(img, off);
            wr64(img, off, v & 0xffff);
        }
    }
    if avoid("key-ref-underflow") {
        // BUG 6: a holder or waiting reference below 2^32 underflows unref.
        for e in 0..l.params.key_capacity {
            for f in [layout::key::HOLDER, layout::key::WAITING] {
                let off = l.key_entry(e) + f;
                if rd64(img, off) >> 32 == 0 {
                    wr64(img, off, 0);
                }
            }
        }
    }
    if avoid("version-overflow") {
        // KNOWN BUG `version-overflow`: a key entry's NEXT_VERSION or
        // LAST_ACKED at u64::MAX overflows `max(..) + 1` in
        // `KeyTable::assign_version` (keys.rs) on a send with version 0.
        for e in 0..l.params.key_capacity {
            for f in [layout::key::NEXT_VERSION, layout::key::LAST_ACKED] {
                let off = l.key_entry(e) + f;
                let v = rd64(img, off);
                wr64(img, off, v & ((1 << 62) - 1));
            }
        }
    }
    const MASK: u64 = (1 << 28) - 1;
    let diff = |a: u64, b: u64| ((a.wrapping_sub(b) << 36) as i64) >> 36;
    if !avoid("lap-walk") {
        return;
    }
    let cap = l.params.capacity;
    let tail = rd64(img, hdr::TAIL);
    let head = rd64(img, hdr::HEAD);
    let tail_lap = (tail / cap) & MASK;
    if diff(tail_lap, (head / cap) & MASK).abs() > 4 {
        wr64(img, hdr::HEAD, tail);
    }
    for i in 0..cap {
        let off = l.slot(i);
        let w = rd64(img, off);
        if diff((w >> 36) & MASK, tail_lap) > 4 {
            wr64(img, off, w & ((1 << 36) - 1) | tail_lap << 36);
        }
    }
}

/// Recomputes the header checksum of an image, as a hostile writer could.
pub fn fix_checksum(b: &mut [u8]) {
    if b.len() >= layout::HEADER_SIZE {
        let sum = layout::header_checksum(&|off| rd64(b, off));
        wr64(b, hdr::CHECKSUM, sum);
    }
}

/// Values that tend to break arithmetic.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    7,
    0xf,
    0x3ff,
    1 << 22,
    (1 << 28) - 1,
    1 << 32,
    (1 << 36) - 1,
    1 << 42,
    i64::MAX as u64,
    u64::MAX - 1,
    u64::MAX,
    0x8000_0000_0000_0000,
];

/// The hot, mutable header words (cursors, futexes, hints).
const HOT: [usize; 15] = [
    hdr::TAIL,
    hdr::HEAD,
    hdr::NOT_EMPTY_FUTEX,
    hdr::NOT_EMPTY_SLEEPERS,
    hdr::NOT_FULL_FUTEX,
    hdr::NOT_FULL_SLEEPERS,
    hdr::SIDE_DIRTY,
    hdr::SIDE_CLEAN,
    hdr::SIDE_NEXT_DUE,
    hdr::SIDE_CURSOR,
    hdr::MAINT_NEXT_NS,
    hdr::LIVENESS_NEXT_NS,
    hdr::DLQ_CURSOR,
    hdr::DLQ_SEQ,
    hdr::FREED_UNOWNED,
];

/// Applies patches to an image of layout `l`; returns the bytes consumed.
pub fn apply_patches(img: &mut [u8], l: &Layout, count: usize, input: &[u8]) -> usize {
    let regions = [
        (0, layout::HEADER_SIZE),
        (l.participants_offset, l.slots_offset),
        (l.slots_offset, l.keys_offset),
        (l.keys_offset, l.dlq_offset),
        (l.dlq_offset, l.file_size),
        (0, img.len()),
        (0, 0), // hot header words
        (l.slots_offset, l.keys_offset),
    ];
    let mut used = 0;
    for p in input.chunks_exact(11).take(count) {
        used += 11;
        let kind = p[0];
        let raw_off = u16::from_le_bytes([p[1], p[2]]) as usize;
        let value = u64::from_le_bytes(p[3..11].try_into().unwrap());
        let (start, end) = regions[(kind as usize >> 2) % regions.len()];
        let off = if end == 0 {
            HOT[raw_off % HOT.len()]
        } else if (kind >> 2) % 8 == 7 {
            // A slot word or slot field: slot index and field from the offset.
            let slots = l.params.capacity as usize;
            l.slot((raw_off % slots) as u64) + (raw_off / slots % 8) * 8
        } else if end > start {
            start + raw_off % (end - start)
        } else {
            continue;
        };
        if off >= img.len() {
            continue;
        }
        let aligned = off & !7;
        match kind & 3 {
            0 => wr64(img, aligned, value),
            1 => {
                let v = rd64(img, aligned) ^ value;
                wr64(img, aligned, v)
            }
            2 => img[off] = value as u8,
            _ => wr64(
                img,
                aligned,
                INTERESTING[value as usize % INTERESTING.len()],
            ),
        }
    }
    used
}

/// Feeds the operations: bytes of the input, then zeros.
pub struct Ops<'a> {
    data: &'a [u8],
    pos: usize,
    /// Operations left (bounds every run).
    pub budget: usize,
}

impl Ops<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len() || self.budget == 0
    }
    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = v << 8 | self.byte() as u64;
        }
        v
    }
}

enum After {
    Done,
    Reopen,
}

fn use_stats(q: &Queue) {
    let s = q.stats();
    for h in [
        Histogram::LeadTime,
        Histogram::Processing,
        Histogram::EndToEnd,
    ] {
        let snap = s.histogram(h);
        // BUG 2 (`quantile-overflow`): summing saturated buckets overflows.
        let quantiles: &[f64] = if avoid("quantile-overflow") {
            &[]
        } else {
            &[0.0, 0.5, 0.9, 0.99, 1.0]
        };
        for &p in quantiles {
            std::hint::black_box(snap.quantile(p));
        }
        std::hint::black_box(snap.mean());
    }
    std::hint::black_box(s);
}

fn payload(ops: &mut Ops<'_>, mms: usize) -> Vec<u8> {
    let len = ops.byte() as usize;
    // Mostly fitting payloads, sometimes one byte over the maximum.
    let len = if len == 255 { mms + 1 } else { len % (mms + 1) };
    vec![len as u8; len]
}

/// One attachment's worth of operations. Every call tries once (timeouts 0)
/// or waits at most a few milliseconds.
fn session(q: &Queue, peer: Option<&Queue>, ops: &mut Ops<'_>) -> After {
    let mms = q.layout().params.max_message_size as usize;
    let mut held = Vec::new();
    let z = Timeout::TryOnce;
    while !ops.done() {
        ops.budget -= 1;
        let op = ops.byte();
        let pick = |held: &Vec<_>, b: u8| (b as usize) % held.len().max(1);
        match op % 24 {
            0 | 1 => {
                let _ = q.send(&payload(ops, mms), z);
            }
            2 => {
                let delay = Duration::from_micros(ops.byte() as u64 * 50);
                let key = if ops.byte() & 1 == 1 { 7 } else { 0 };
                let so = SendOptions::new().delay(delay).key(key).version(0);
                let _ = q.send_with(&payload(ops, mms), &so);
            }
            3 | 4 => {
                if let Ok(m) = q.claim(z) {
                    held.push(m);
                }
            }
            5 => {
                let i = pick(&held, ops.byte());
                if let Some(m) = held.get(i) {
                    let _ = m.data();
                    let mut small = [0u8; 2];
                    let _ = m.read_into(&mut small);
                    std::hint::black_box((m.len(), m.key(), m.deliveries(), m.token()));
                }
            }
            6 => {
                let i = pick(&held, ops.byte());
                if i < held.len() {
                    let _ = held.swap_remove(i).ack();
                }
            }
            7 => {
                let i = pick(&held, ops.byte());
                let delay = Duration::from_micros(ops.byte() as u64 * 20);
                if i < held.len() {
                    let _ = held.swap_remove(i).nack(delay);
                }
            }
            8 => {
                let i = pick(&held, ops.byte());
                if i < held.len() {
                    let _ = held.swap_remove(i).reject("fuzz");
                }
            }
            9 => {
                let i = pick(&held, ops.byte());
                if let Some(m) = held.get(i) {
                    let _ = m.extend(Duration::from_millis(ops.byte() as u64));
                }
            }
            10 => use_stats(q),
            11 => {
                std::hint::black_box(q.verify());
            }
            12 => {
                let _ = q.recover();
            }
            13 => {
                std::hint::black_box(q.dlq_list());
            }
            14 => {
                let id = match ops.byte() {
                    0..=127 => None,
                    b => Some(b as u64 % 8),
                };
                let _ = q.dlq_redrive(id);
            }
            15 => {
                let id = match ops.byte() {
                    0..=127 => None,
                    b => Some(b as u64 % 8),
                };
                let _ = q.dlq_purge(id);
            }
            16 => {
                let n = ops.byte() as usize % 6;
                let msgs: Vec<Vec<u8>> = (0..n).map(|_| payload(ops, mms)).collect();
                let _ = q.send_batch(&msgs, z);
            }
            17 => {
                let n = ops.byte() as usize % 6;
                if let Ok(v) = q.claim_batch(n, z) {
                    held.extend(v);
                }
            }
            18 => {
                let n = ops.byte() as usize;
                let take = n % (held.len() + 1);
                let batch: Vec<_> = held.drain(..take).collect();
                let _ = q.ack_batch(&batch);
            }
            19 => {
                let len = ops.byte() as usize % (mms + 1);
                let how = ops.byte();
                if let Ok(mut r) = q.reserve(len, z) {
                    let _ = r.write(&vec![9u8; len]);
                    match how % 3 {
                        0 => {
                            let _ = r.commit();
                        }
                        1 => {
                            let _ = r.abort();
                        }
                        _ => drop(r),
                    }
                }
            }
            20 => {
                // A short wait: the sleeping path, bounded.
                if let Ok(m) = q.claim(Duration::from_micros(200)) {
                    held.push(m);
                }
            }
            21 => {
                // A raw token that names nothing we hold.
                let t = ops.u64();
                let _ = q.read_payload(t, &mut [0u8; 4]);
                let _ = q.settle(t, &shmq::internals::ring::Outcome::Ack, None, None);
            }
            22 => {
                if let Some(p) = peer {
                    match ops.byte() % 4 {
                        0 => {
                            if let Ok(m) = p.claim(z) {
                                let _ = m.ack();
                            }
                        }
                        1 => {
                            let _ = p.send(b"peer", z);
                        }
                        2 => std::hint::black_box(p.verify()).problems.clear(),
                        _ => {
                            let _ = p.recover();
                        }
                    }
                }
            }
            _ => {
                if ops.byte() & 3 == 0 {
                    return After::Reopen;
                }
                use_stats(q);
            }
        }
    }
    After::Done
}

/// Writes `img` to a fresh file and opens it; runs the operations.
fn open_and_run(img: &[u8], inspect_too: bool, ops: &mut Ops<'_>) {
    let path = unique_path("case");
    let _guard = TempFile(path.clone());
    if std::fs::write(&path, img).is_err() {
        return;
    }
    if inspect_too {
        if let Ok(i) = Queue::inspect(&path) {
            use_stats(&i);
            std::hint::black_box(i.verify());
            std::hint::black_box(i.dlq_list());
            let _ = i.recover();
            let _ = i.dlq_redrive(None);
            let _ = i.claim(Timeout::TryOnce);
            let _ = i.send(b"no", Timeout::TryOnce);
        }
    }
    for _ in 0..3 {
        let Ok(q) = Queue::open(&path) else { return };
        let peer = if inspect_too {
            Queue::inspect(&path).ok()
        } else {
            Queue::open(&path).ok()
        };
        match session(&q, peer.as_ref(), ops) {
            After::Done => {
                std::hint::black_box(q.verify());
                return;
            }
            After::Reopen => continue,
        }
    }
}

fn guard_magic(img: &mut [u8]) {
    if img.len() >= 8 && rd64(img, hdr::MAGIC) == 0 {
        wr64(img, hdr::MAGIC, layout::MAGIC ^ 1);
    }
}

/// The `open_and_operate` target.
pub fn open_and_operate(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 3 == 0 {
        let mut img = rest.to_vec();
        guard_magic(&mut img);
        let mut ops = Ops {
            data: &[],
            pos: 0,
            budget: 16,
        };
        // A raw image drives the same fixed operations every time.
        let script = [10u8, 11, 13, 3, 5, 0, 6, 12, 0, 3, 7, 0, 0, 14];
        ops.data = &script;
        open_and_run(&img, mode & 8 != 0, &mut ops);
        return;
    }
    if rest.len() < 2 {
        return;
    }
    let t = template(rest[0] as usize);
    let count = rest[1] as usize % 48;
    let mut img = t.bytes.clone();
    let used = apply_patches(&mut img, &t.layout, count, &rest[2..]);
    if mode & 4 != 0 {
        steer(&mut img);
        fix_checksum(&mut img);
    }
    steer_laps(&mut img, &t.layout);
    guard_magic(&mut img);
    let mut ops = Ops {
        data: &rest[2 + used..],
        pos: 0,
        budget: 96,
    };
    open_and_run(&img, mode & 8 != 0, &mut ops);
}

/// The `header` target: the first 8 bytes give the file length (taken
/// modulo a few sizes so that it is sometimes right), the next byte selects
/// fixing the magic, version and checksum, the rest is the header.
pub fn header(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let len_word = u64::from_le_bytes(data[..8].try_into().unwrap());
    let flags = data[8];
    let mut h = data[9..].to_vec();
    h.resize(layout::HEADER_SIZE, 0);
    if flags & 1 != 0 {
        wr64(&mut h, hdr::MAGIC, layout::MAGIC);
    }
    if flags & 2 != 0 {
        wr64(&mut h, hdr::FORMAT_VERSION, layout::FORMAT_VERSION);
    }
    if flags & 4 != 0 {
        fix_checksum(&mut h);
    }
    // The length: raw, or the stored file size (right), or near it.
    let stored = rd64(&h, hdr::FILE_SIZE);
    let actual = match flags >> 4 {
        0 => len_word as usize,
        1 => stored as usize,
        2 => stored.wrapping_add(len_word % 16) as usize,
        _ => (len_word % (1 << 44)) as usize,
    };
    let field = |off: usize| rd64(&h, off);
    match Layout::from_header(actual, field) {
        Ok(l) => {
            // What the engine relies on from here: regions in order, each
            // inside the file, sizes within the limits.
            let p = l.params;
            assert_eq!(l.file_size, actual);
            assert!(l.participants_offset >= layout::HEADER_SIZE);
            let part_end =
                l.participants_offset + p.participant_capacity as usize * layout::part::STRIDE;
            assert!(part_end <= l.slots_offset);
            assert!(l.slot_stride >= layout::slot::PAYLOAD + p.max_message_size as usize);
            assert!(l.slots_offset + p.capacity as usize * l.slot_stride <= l.keys_offset);
            assert!(l.keys_offset + p.key_capacity as usize * layout::key::SIZE <= l.dlq_offset);
            assert!(l.dlq_stride >= layout::dlq::PAYLOAD + p.max_message_size as usize);
            assert!(l.dlq_offset + p.dlq_capacity as usize * l.dlq_stride <= l.file_size);
            if l.replace_stride != 0 {
                let end = l.dlq_offset + p.dlq_capacity as usize * l.dlq_stride;
                assert!(l.replace_offset >= end);
                assert!(l.replace_stride >= layout::replace::PAYLOAD + p.max_message_size as usize);
                let recs = p.participant_capacity as usize * l.replace_stride;
                assert!(l.replace_offset + recs <= l.file_size);
            }
            assert!(p.capacity >= 1 && p.participant_capacity >= 1 && p.dlq_capacity >= 1);
            assert!(p.participant_capacity <= layout::limits::MAX_PARTICIPANTS);
            assert!((l.file_size as u64) <= layout::limits::MAX_FILE_SIZE);
            assert_eq!(Layout::with_flags(p, field(hdr::FLAGS)).ok(), Some(l));
        }
        Err(e) => {
            assert!(
                matches!(
                    e.status(),
                    shmq::Status::Corrupt | shmq::Status::Incompatible
                ),
                "from_header gave {:?}",
                e
            );
        }
    }
}

/// `legacy`: the readers of old format versions (`format::legacy`) on an
/// image of version 1, 2 or 3 with a valid header and arbitrary slots, keys
/// and dead letters. Byte 0 picks the version (bit 1 set: 3, else bit 0: 2
/// or 1) and, from its bit 2 up, version 3's default time to live; bytes
/// 1..5 the parameters, byte 5 the flags (bit 0 latest-only, bit 1 drop
/// expired messages); the rest is written from the slots' offset onwards,
/// and its first 8 bytes also as participant 0's state word. Never
/// panics; what it returns stays within the parameters.
pub fn legacy(data: &[u8]) {
    use shmq::internals::format::legacy::{blank, decode, read, v1, v2, v3};
    if data.len() < 6 {
        return;
    }
    let spec = if data[0] & 2 != 0 {
        &v3::SPEC
    } else if data[0] & 1 == 0 {
        &v1::SPEC
    } else {
        &v2::SPEC
    };
    let cap = 1 + (data[1] % 8) as u64;
    let mms = 1 + (data[2] % 200) as u64;
    let keys = (data[3] % 4) as u64;
    let dlq = 1 + (data[4] % 3) as u64;
    let flags = (data[5] & 3) as u64;
    let Some((mut img, slots)) = blank(spec, cap, mms, keys, dlq, 1, flags) else {
        return;
    };
    // Outside the checksum: any value.
    let ttl = match data[0] >> 2 {
        0 => 0,
        n => u64::MAX >> (n - 1),
    };
    if let Some(off) = spec.hdr.message_ttl_ns {
        img[off..off + 8].copy_from_slice(&ttl.to_le_bytes());
    }
    let rest = &data[6..];
    let n = rest.len().min(img.len() - slots);
    img[slots..slots + n].copy_from_slice(&rest[..n]);
    let m = rest.len().min(8);
    img[4096..4096 + m].copy_from_slice(&rest[..m]);
    let a = read(&img);
    let b = decode(&img, spec);
    assert_eq!(a.is_ok(), b.is_ok());
    if let Ok(s) = a {
        assert!(s.messages.len() as u64 <= cap);
        assert!(s.dead_letters.len() as u64 <= dlq);
        assert!(s.keys.len() as u64 <= keys);
        assert!(s.messages.iter().all(|x| x.payload.len() as u64 <= mms));
        assert!(s.dead_letters.iter().all(|x| x.payload.len() as u64 <= mms));
        assert!(s.dead_letters.iter().all(|x| x.reason.len() <= 3 * 160));
        if spec.version < 3 {
            // No deadlines nor time to live before version 3.
            assert!(s.messages.iter().all(|x| x.expires_ns.is_none()));
            assert!(s.params.message_ttl_ns == 0 && !s.params.expiry_drop);
        } else {
            assert_eq!(s.params.message_ttl_ns, ttl);
            assert_eq!(s.params.expiry_drop, flags & 2 != 0);
        }
    }
}
