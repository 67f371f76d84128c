//! The `c_abi` target: the C ABI (bindings/c, `extern "C"`) called with
//! arbitrary arguments, as a careless or hostile C program would (guarantee G12 of the README).
//!
//! Every pointer passed is NULL or points to memory that is really there:
//! a pool of buffers whose bytes the input sets and scribbles on (aligned
//! and misaligned pointers into it), the handles shmq handed out (live or
//! closed: shells are never freed), and copies of real claims and
//! reservations. Lengths are honest about the memory behind a non-null
//! pointer, or impossible (over `isize::MAX`, which no call may read). What
//! is arbitrary: which handle (NULL, a closed one, the pool's bytes taken as
//! a handle), message and reservation structs with forged or stale tokens
//! and ids, outcomes given twice or through the other handle, `size` fields
//! of the sized structs, flags, wait strategies, lengths, counts, status
//! integers, and the order of everything (use after close included).
//!
//! Paths are never taken from the input: a fresh file in /dev/shm, the
//! queue's file, a file that is no queue, a directory, a missing directory,
//! the empty string, or NULL. Timeouts are 0 or at most 200 us, never
//! "forever". Option values are small, or too large to be accepted (so that
//! no call maps a huge file; an options struct is never the pool's bytes).
//!
//! What must hold: no crash (ASan watches every access), every call returns
//! a known status and never `SHMQ_INTERNAL` (a panic caught at the
//! boundary), a failed call leaves a message in `shmq_last_error()` and
//! writes nothing to the pool (out-parameters are written only on success),
//! and a message claimed through one handle is never accepted by another
//! (of the same queue or another one, live or made later).
//!
//! Input: operations, one byte each (op = b % 41) and their argument bytes;
//! the first 64 bytes also seed the pool.

use crate::ffi::claim::*;
use crate::ffi::dlq::*;
use crate::ffi::options::*;
use crate::ffi::queue::*;
use crate::ffi::send::*;
use crate::ffi::stats::*;
use crate::ffi::status::*;
use std::ffi::{c_char, CStr, CString};
use std::mem::size_of;
use std::path::PathBuf;

use crate::harness::{unique_path, Bytes, TempFile};

const POOL_BUFS: usize = 4;
const POOL_LEN: usize = 2048;
/// Operations per case, at most.
const BUDGET: usize = 96;
/// Handles kept, at most.
const MAX_HANDLES: usize = 6;

/// The readings of several input bytes this target makes.
trait Readings {
    fn u16(&mut self) -> u16;
    fn u32(&mut self) -> u32;
    fn u64(&mut self) -> u64;
    /// A length: small, near a power of two, or impossible.
    fn len(&mut self) -> usize;
    /// A timeout: try once, or a short wait.
    fn timeout(&mut self) -> i64;
}

impl Readings for Bytes<'_> {
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) << 32 | self.u32() as u64
    }
    fn len(&mut self) -> usize {
        match self.byte() {
            0..=199 => self.byte() as usize,
            200..=239 => self.u16() as usize,
            240..=249 => (1usize << (self.byte() % 64))
                .wrapping_add(self.byte() as usize % 3)
                .wrapping_sub(1),
            _ => usize::MAX - self.byte() as usize,
        }
    }
    fn timeout(&mut self) -> i64 {
        match self.byte() % 4 {
            0 | 1 => 0,
            2 => 1,
            _ => 1 + (self.byte() as i64) * 800,
        }
    }
}

/// Memory the calls may point into.
struct Pool {
    bufs: Vec<Vec<u128>>,
}

impl Pool {
    fn base(&mut self, b: usize) -> *mut u8 {
        self.bufs[b % POOL_BUFS].as_mut_ptr().cast()
    }
    fn bytes(&self) -> Vec<u8> {
        self.bufs
            .iter()
            .flat_map(|b| b.iter().flat_map(|w| w.to_le_bytes()))
            .collect()
    }
}

/// A pointer and the bytes behind it (0 for NULL).
#[derive(Clone, Copy)]
struct Ptr {
    p: *mut u8,
    avail: usize,
}

impl Ptr {
    fn null() -> Ptr {
        Ptr {
            p: std::ptr::null_mut(),
            avail: 0,
        }
    }
    fn cast<T>(self) -> *mut T {
        self.p.cast()
    }
}

struct State {
    pool: Pool,
    /// Every handle handed out (live or closed), and whether it is closed.
    handles: Vec<(*mut shmq_queue, bool)>,
    /// Queue files made by this case.
    files: Vec<TempFile>,
    /// A file that is no queue.
    junk: TempFile,
    /// Claims handed out (possibly ended since).
    msgs: Vec<shmq_message>,
    /// The `handle_id` that each handle's claims carry, once it claimed.
    ids: Vec<(*mut shmq_queue, u64)>,
    /// Reservations handed out (possibly finished since).
    res: Vec<shmq_reservation>,
    /// A directory (a path that is no file).
    scratch_dir: PathBuf,
    /// Where the pool holds a byte-for-byte copy of a handle, if it does.
    copy: Option<*mut shmq_queue>,
}

const KNOWN: i32 = 17;

fn last_error() -> String {
    // SAFETY: shmq_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(shmq_last_error()) }
        .to_string_lossy()
        .into_owned()
}

impl State {
    /// A pointer into the pool with at least `need` bytes behind it
    /// (`None`-like NULL when `sel` says so or nothing fits).
    fn ptr(&mut self, ops: &mut Bytes<'_>, need: usize) -> Ptr {
        let sel = ops.byte();
        if sel % 8 == 0 || need > POOL_LEN {
            return Ptr::null();
        }
        let room = POOL_LEN - need;
        let off = ops.u16() as usize % (room + 1);
        // Mostly aligned to 8, sometimes not.
        let off = if sel % 8 == 7 { off } else { off & !7 };
        let base = self.pool.base((sel >> 3) as usize);
        Ptr {
            // SAFETY: off <= POOL_LEN - need, inside the buffer.
            p: unsafe { base.add(off) },
            avail: POOL_LEN - off,
        }
    }

    /// A handle: NULL, one shmq handed out (live or closed), or the pool's
    /// bytes taken for one.
    fn handle(&mut self, ops: &mut Bytes<'_>) -> *mut shmq_queue {
        let sel = ops.byte();
        match sel % 8 {
            0 => std::ptr::null_mut(),
            1 => self.ptr(ops, 256).cast(),
            2 if self.copy.is_some() => self.copy.unwrap(),
            _ if self.handles.is_empty() => std::ptr::null_mut(),
            _ => self.handles[sel as usize / 8 % self.handles.len()].0,
        }
    }

    /// A live handle if there is one (most calls want one to get anywhere).
    fn live(&mut self, ops: &mut Bytes<'_>) -> *mut shmq_queue {
        let sel = ops.byte();
        let live: Vec<_> = self.handles.iter().filter(|h| !h.1).map(|h| h.0).collect();
        if sel % 4 == 0 || live.is_empty() {
            return self.handle(ops);
        }
        live[sel as usize / 4 % live.len()]
    }

    /// Writes `v` to the pool (or nowhere) and returns a pointer to it:
    /// a real struct, a copy with changed bytes, or the pool's bytes.
    fn place<T: Copy>(&mut self, ops: &mut Bytes<'_>, v: Option<T>) -> *mut T {
        self.place_telling(ops, v).0
    }

    /// [`State::place`], and whether the pointer is to `v` as it was.
    fn place_telling<T: Copy>(&mut self, ops: &mut Bytes<'_>, v: Option<T>) -> (*mut T, bool) {
        let p = self.ptr(ops, size_of::<T>());
        if p.p.is_null() {
            return (std::ptr::null_mut(), false);
        }
        let how = ops.byte();
        if let Some(v) = v {
            if how % 4 != 0 {
                // SAFETY: `size_of::<T>()` bytes of the pool; unaligned write.
                unsafe { p.cast::<T>().write_unaligned(v) };
            }
        }
        if how % 4 == 1 {
            // Forge: flip bits of one 8-byte word.
            let words = size_of::<T>() / 8;
            if words > 0 {
                let w = ops.byte() as usize % words;
                let x = ops.u64();
                // SAFETY: inside the struct's bytes.
                unsafe {
                    let q = p.p.add(w * 8).cast::<u64>();
                    q.write_unaligned(q.read_unaligned() ^ x);
                }
            }
        }
        (p.cast(), v.is_some() && how % 4 > 1)
    }

    /// A message, and the real one it is an unchanged copy of, if it is.
    fn message(&mut self, ops: &mut Bytes<'_>) -> (*mut shmq_message, Option<shmq_message>) {
        let sel = ops.byte() as usize;
        let m = (!self.msgs.is_empty()).then(|| self.msgs[sel % self.msgs.len()]);
        let (p, intact) = self.place_telling(ops, m);
        (p, m.filter(|_| intact))
    }

    /// Remembers a message `q` handed out, and the id its claims carry.
    fn claimed(&mut self, q: *mut shmq_queue, m: shmq_message) {
        if !self.ids.iter().any(|(h, _)| *h == q) {
            self.ids.push((q, m.handle_id));
        }
        self.msgs.push(m);
        if self.msgs.len() > 16 {
            self.msgs.remove(0);
        }
    }

    /// Checks that `q` did not accept `m` (an unchanged copy of a real
    /// message) when another handle claimed it.
    fn never_foreign(&self, op: &str, q: *mut shmq_queue, m: Option<shmq_message>, ok: bool) {
        let (Some(m), true) = (m, ok) else { return };
        if let Some((_, id)) = self.ids.iter().find(|(h, _)| *h == q) {
            assert_eq!(
                *id, m.handle_id,
                "{op}: accepted a message claimed through another handle"
            );
        }
    }

    fn reservation(&mut self, ops: &mut Bytes<'_>) -> *mut shmq_reservation {
        let sel = ops.byte() as usize;
        let r = (!self.res.is_empty()).then(|| self.res[sel % self.res.len()]);
        self.place(ops, r)
    }

    /// A path, never from the input.
    fn path(&mut self, ops: &mut Bytes<'_>) -> Option<CString> {
        let p: PathBuf = match ops.byte() % 8 {
            0 => return None,
            1 | 2 => {
                let p = unique_path("cabi");
                self.files.push(TempFile(p.clone()));
                p
            }
            3 if !self.files.is_empty() => {
                let i = ops.byte() as usize % self.files.len();
                self.files[i].0.clone()
            }
            4 => self.junk.0.clone(),
            5 => self.scratch_dir.clone(),
            6 => self.scratch_dir.join("missing-dir/queue"),
            _ => PathBuf::new(),
        };
        use std::os::unix::ffi::OsStrExt;
        Some(CString::new(p.as_os_str().as_bytes()).unwrap())
    }

    /// Options with arbitrary `size`, flags and small (or plainly too
    /// large) values.
    fn options(&mut self, ops: &mut Bytes<'_>) -> *mut shmq_options {
        let mut o = shmq_options::default();
        let pick = |ops: &mut Bytes<'_>, small: u64, bad: &[u64]| -> u64 {
            let b = ops.byte();
            if b < 240 {
                b as u64 % small
            } else {
                bad[b as usize % bad.len()]
            }
        };
        let f = ops.byte();
        if f & 1 != 0 {
            o.size = match ops.byte() % 4 {
                0 => ops.u32(),
                1 => ops.byte() as u32,
                _ => o.size - 8 * (ops.byte() as u32 % 6),
            };
        }
        if f & 2 != 0 {
            o.capacity = pick(ops, 40, &[1 << 31, u64::MAX, 1 << 40]);
            o.max_message_size = pick(ops, 300, &[1 << 27, u32::MAX as u64]) as u32;
            o.key_capacity = pick(ops, 20, &[1 << 29, u64::MAX]);
            o.dlq_capacity = pick(ops, 6, &[1 << 31, u64::MAX]);
            o.participant_capacity = pick(ops, 6, &[1024, u32::MAX as u64]) as u32;
        }
        if f & 4 != 0 {
            o.lease_ns = match ops.byte() % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => ops.u64(),
            };
            o.reservation_timeout_ns = ops.u64() >> (ops.byte() % 64);
            o.max_deliveries = ops.u32() % 5;
        }
        if f & 8 != 0 {
            o.flags = ops.u32() >> (ops.byte() % 32);
            o.wait_strategy = ops.byte() as u32 % 5;
            o.mode = 0o600 | (ops.u16() as u32 & 0o77);
        }
        // Always these values (never the pool's bytes or a forgery): a
        // capacity and message size that are valid but huge would make a
        // file of many gigabytes in /dev/shm.
        let p = self.ptr(ops, size_of::<shmq_options>());
        if !p.p.is_null() {
            // SAFETY: `size_of::<shmq_options>()` bytes of the pool.
            unsafe { p.cast::<shmq_options>().write_unaligned(o) };
        }
        p.cast()
    }

    fn remember(&mut self, h: *mut shmq_queue) {
        if self.handles.len() >= MAX_HANDLES {
            // Too many: close the oldest live one (its shell stays valid).
            if let Some(i) = self.handles.iter().position(|h| !h.1) {
                // SAFETY: a handle shmq gave out.
                let _ = unsafe { shmq_close(self.handles[i].0) };
                self.handles[i].1 = true;
            }
            // Forget the oldest closed one (the shell stays valid).
            if let Some(i) = self.handles.iter().position(|h| h.1) {
                self.handles.remove(i);
            }
        }
        self.handles.push((h, false));
    }
}

/// Bounds the wait of send options that the pool's bytes made or a forgery
/// changed: a negative `timeout_ns` waits forever and a huge one for years,
/// both legitimately, on a full queue (a hang of the harness, not a
/// finding). The other fields stay as the input made them.
fn bound_wait(opts: *mut shmq_send_options) {
    if opts.is_null() {
        return;
    }
    // SAFETY: `opts` points at `size_of::<shmq_send_options>()` bytes of
    // the pool (`State::place`); unaligned accesses.
    unsafe {
        let t = std::ptr::addr_of_mut!((*opts).timeout_ns);
        let v = t.read_unaligned();
        if !(0..=1_000_000).contains(&v) {
            t.write_unaligned(v.rem_euclid(1_000_000));
        }
    }
}

/// Checks what every call must give; returns whether it succeeded.
fn check(op: &str, st: shmq_status, pool_before: &[u8], pool: &Pool) -> bool {
    let code = st as i32;
    assert!((0..=KNOWN).contains(&code), "{op}: unknown status {code}");
    assert!(
        st != shmq_status::SHMQ_INTERNAL,
        "{op}: SHMQ_INTERNAL (a panic inside shmq): {}",
        last_error()
    );
    if st == shmq_status::SHMQ_OK {
        return true;
    }
    assert!(
        !last_error().is_empty(),
        "{op}: {st:?} without a last error"
    );
    assert!(
        pool.bytes() == pool_before,
        "{op}: failed with {st:?} but wrote to the caller's memory"
    );
    false
}

/// The `c_abi` target.
pub fn c_abi(data: &[u8]) {
    let scratch_dir = std::env::temp_dir();
    let junk = TempFile(unique_path("cabi-junk"));
    let _ = std::fs::write(
        &junk.0,
        b"not a queue, just some bytes that are not a header",
    );
    let mut seed = data.iter().take(64).copied().cycle();
    let bufs = (0..POOL_BUFS)
        .map(|_| {
            (0..POOL_LEN / 16)
                .map(|_| {
                    let mut w = [0u8; 16];
                    for b in w.iter_mut() {
                        *b = seed.next().unwrap_or(0);
                    }
                    u128::from_le_bytes(w)
                })
                .collect()
        })
        .collect();
    let mut s = State {
        pool: Pool { bufs },
        handles: Vec::new(),
        files: Vec::new(),
        junk,
        msgs: Vec::new(),
        ids: Vec::new(),
        res: Vec::new(),
        scratch_dir,
        copy: None,
    };
    let mut ops = Bytes::new(data);
    // Start with one queue, so that most operations reach the engine.
    {
        let p = unique_path("cabi");
        s.files.push(TempFile(p.clone()));
        let c = CString::new(p.to_str().unwrap()).unwrap();
        let o = shmq_options {
            capacity: 4,
            max_message_size: 64,
            key_capacity: 4,
            dlq_capacity: 2,
            max_deliveries: 2,
            ..Default::default()
        };
        let mut h = std::ptr::null_mut();
        // SAFETY: valid path, options and out-pointer.
        let st = unsafe { shmq_create(c.as_ptr(), &o, &mut h) };
        assert_eq!(st, shmq_status::SHMQ_OK, "{}", last_error());
        s.handles.push((h, false));
    }
    let mut budget = BUDGET;
    while !ops.done() && budget > 0 {
        budget -= 1;
        step(&mut s, &mut ops);
    }
    // Close what is still open (a second close is fine too).
    for (h, closed) in s.handles.clone() {
        // SAFETY: handles shmq gave out; closed ones answer SHMQ_CLOSED.
        let st = unsafe { shmq_close(h) };
        assert_eq!(
            st == shmq_status::SHMQ_OK,
            !closed,
            "final close: {st:?} {}",
            last_error()
        );
    }
}

fn step(s: &mut State, ops: &mut Bytes<'_>) {
    let op = ops.byte();
    // Runs one call: the pool is compared with its bytes just before.
    macro_rules! call {
        ($name:expr, $e:expr) => {{
            let before = s.pool.bytes();
            let st = $e;
            check($name, st, &before, &s.pool)
        }};
    }
    // SAFETY (for every call below): each pointer is NULL, a handle shmq
    // gave out, or points into the pool with as many bytes behind it as the
    // call may touch (see `State::ptr`).
    unsafe {
        match op % 41 {
            0 | 1 => {
                let path = s.path(ops);
                let opts = if ops.byte() % 4 == 0 {
                    std::ptr::null_mut()
                } else {
                    s.options(ops)
                };
                let mut h = std::ptr::null_mut();
                let to_pool = ops.byte() % 4 == 0;
                let out: *mut *mut shmq_queue = if to_pool {
                    s.ptr(ops, 8).cast()
                } else {
                    &mut h
                };
                let p = path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
                if call!("shmq_create", shmq_create(p, opts, out)) {
                    s.remember(out.read_unaligned());
                }
            }
            2 | 3 => {
                let path = s.path(ops);
                let inspect = ops.byte() & 1 != 0;
                let mut h = std::ptr::null_mut();
                let out: *mut *mut shmq_queue = if ops.byte() % 4 == 0 {
                    s.ptr(ops, 8).cast()
                } else {
                    &mut h
                };
                let p = path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
                if call!(
                    "shmq_open",
                    if inspect {
                        shmq_inspect(p, out)
                    } else {
                        shmq_open(p, out)
                    }
                ) {
                    s.remember(out.read_unaligned());
                }
            }
            4 => {
                let q = s.handle(ops);
                if call!("shmq_close", shmq_close(q)) {
                    for h in s.handles.iter_mut().filter(|h| h.0 == q) {
                        h.1 = true;
                    }
                }
            }
            5 | 6 => {
                let q = s.live(ops);
                let len = ops.len();
                let data = s.ptr(ops, len.min(POOL_LEN));
                let data = if len > data.avail && len <= isize::MAX as usize {
                    Ptr::null()
                } else {
                    data
                };
                let (key, version) = (ops.byte() as u64 % 6, ops.byte() as u64 % 5);
                let t = ops.timeout();
                call!(
                    "shmq_send",
                    shmq_send(q, data.p.cast(), len, key, version, t)
                );
            }
            7 => {
                let q = s.live(ops);
                let len = ops.len();
                let data = s.ptr(ops, len.min(POOL_LEN));
                let data = if len > data.avail && len <= isize::MAX as usize {
                    Ptr::null()
                } else {
                    data
                };
                let mut so = shmq_send_options::default();
                if ops.byte() & 1 != 0 {
                    so.size = ops.u32() >> (ops.byte() % 32);
                }
                so.key = ops.byte() as u64 % 6;
                so.version = ops.byte() as u64 % 5;
                so.timeout_ns = ops.timeout();
                so.delay_ns = [0, 1, 1_000_000_000, u64::MAX][ops.byte() as usize % 4];
                let opts = if ops.byte() % 4 == 0 {
                    std::ptr::null_mut()
                } else {
                    s.place(ops, Some(so))
                };
                bound_wait(opts);
                let outp = s.ptr(ops, 8).cast::<u64>();
                let outv = s.ptr(ops, 8).cast::<u64>();
                call!(
                    "shmq_send_ex",
                    shmq_send_ex(q, data.p.cast(), len, opts, outp, outv)
                );
            }
            8 => {
                // An array of iovecs in the pool, each pointing into the pool.
                let q = s.live(ops);
                let arr = s.ptr(ops, size_of::<shmq_iovec>());
                let max = arr.avail / size_of::<shmq_iovec>();
                let count = match ops.byte() {
                    255 if arr.p.is_null() => usize::MAX / 8,
                    254 => usize::MAX / 2,
                    b => b as usize % (max + 1).min(8),
                };
                if !arr.p.is_null() && count <= max {
                    for i in 0..count {
                        let len = ops.len();
                        let d = s.ptr(ops, len.min(POOL_LEN));
                        let d = if len > d.avail && len <= isize::MAX as usize {
                            Ptr::null()
                        } else {
                            d
                        };
                        let v = shmq_iovec {
                            data: d.p.cast(),
                            len,
                        };
                        arr.cast::<shmq_iovec>().add(i).write_unaligned(v);
                    }
                }
                let sent = s.ptr(ops, 8);
                let t = ops.timeout();
                call!(
                    "shmq_send_batch",
                    shmq_send_batch(q, arr.p.cast(), count, sent.cast(), t)
                );
            }
            9 => {
                let q = s.live(ops);
                let data = s.ptr(ops, 1);
                let data_len = if data.p.is_null() {
                    ops.len()
                } else {
                    ops.u16() as usize % (data.avail + 1)
                };
                let lens = s.ptr(ops, 8);
                let count = if lens.p.is_null() {
                    ops.len()
                } else {
                    ops.byte() as usize % (lens.avail / 8 + 1).min(10)
                };
                let t = ops.timeout();
                let sent = s.ptr(ops, 8);
                call!(
                    "shmq_send_packed",
                    shmq_send_packed(
                        q,
                        data.p.cast(),
                        data_len,
                        lens.cast(),
                        count,
                        sent.cast(),
                        t
                    )
                );
            }
            10 | 11 => {
                let q = s.live(ops);
                let len = ops.len();
                let mut r = std::mem::zeroed::<shmq_reservation>();
                let out: *mut shmq_reservation = if ops.byte() % 4 == 0 {
                    s.ptr(ops, size_of::<shmq_reservation>()).cast()
                } else {
                    &mut r
                };
                let t = ops.timeout();
                if call!("shmq_reserve", shmq_reserve(q, len, out, t)) {
                    let r = out.read_unaligned();
                    // Write the payload in place, as a producer would.
                    if r.capacity > 0 && !r.data.is_null() {
                        std::ptr::write_bytes(r.data, 0x5a, r.capacity);
                    }
                    s.res.push(r);
                    if s.res.len() > 16 {
                        s.res.remove(0);
                    }
                }
            }
            12 => {
                let q = s.live(ops);
                let r = s.reservation(ops);
                let len = ops.len();
                call!(
                    "shmq_commit",
                    shmq_commit(q, r, len, ops.byte() as u64 % 6, ops.byte() as u64 % 5)
                );
            }
            13 => {
                let q = s.live(ops);
                let r = s.reservation(ops);
                let len = ops.len();
                let mut so = shmq_send_options {
                    key: ops.byte() as u64 % 6,
                    delay_ns: ops.byte() as u64,
                    ..Default::default()
                };
                if ops.byte() & 1 != 0 {
                    so.size = ops.byte() as u32;
                }
                let opts = s.place(ops, Some(so));
                let outp = s.ptr(ops, 8).cast::<u64>();
                call!(
                    "shmq_commit_ex",
                    shmq_commit_ex(q, r, len, opts, outp, std::ptr::null_mut())
                );
            }
            14 => {
                let q = s.live(ops);
                let r = s.reservation(ops);
                call!("shmq_abort", shmq_abort(q, r));
            }
            15..=17 => {
                let q = s.live(ops);
                let mut m = std::mem::zeroed::<shmq_message>();
                let out: *mut shmq_message = if ops.byte() % 4 == 0 {
                    s.ptr(ops, size_of::<shmq_message>()).cast()
                } else {
                    &mut m
                };
                let t = ops.timeout();
                if call!("shmq_claim", shmq_claim(q, out, t)) {
                    let m = out.read_unaligned();
                    // The payload is readable while the claim is held.
                    if m.len > 0 {
                        let d = std::slice::from_raw_parts(m.data, m.len);
                        std::hint::black_box(d.iter().map(|b| *b as u64).sum::<u64>());
                    }
                    s.claimed(q, m);
                }
            }
            18 => {
                let q = s.live(ops);
                let buf = s.ptr(ops, 1);
                let len = if buf.p.is_null() {
                    ops.len()
                } else {
                    ops.u16() as usize % (buf.avail + 1)
                };
                let out = s.ptr(ops, size_of::<shmq_message>()).cast::<shmq_message>();
                let t = ops.timeout();
                if call!(
                    "shmq_claim_copy",
                    shmq_claim_copy(q, out, buf.p.cast(), len, t)
                ) {
                    s.claimed(q, out.read_unaligned());
                }
            }
            19 => {
                let q = s.live(ops);
                let msgs = s.ptr(ops, size_of::<shmq_message>());
                let max = if msgs.p.is_null() {
                    ops.len()
                } else {
                    ops.byte() as usize % (msgs.avail / size_of::<shmq_message>() + 1).min(6)
                };
                let count = s.ptr(ops, 8);
                let t = ops.timeout();
                if call!(
                    "shmq_claim_batch",
                    shmq_claim_batch(q, msgs.cast(), max, count.cast(), t)
                ) && !count.p.is_null()
                    && msgs.p as usize % 8 == 0
                {
                    let n = count.cast::<usize>().read_unaligned();
                    assert!(n >= 1 && n <= max, "claim_batch: {n} of {max}");
                    for i in 0..n {
                        s.claimed(q, msgs.cast::<shmq_message>().add(i).read());
                    }
                }
            }
            20 => {
                let q = s.live(ops);
                let buf = s.ptr(ops, 1);
                let len = if buf.p.is_null() {
                    ops.len()
                } else {
                    ops.u16() as usize % (buf.avail + 1)
                };
                let msgs = s.ptr(ops, size_of::<shmq_message>());
                let max = if msgs.p.is_null() {
                    ops.len()
                } else {
                    ops.byte() as usize % (msgs.avail / size_of::<shmq_message>() + 1).min(6)
                };
                let count = s.ptr(ops, 8);
                let t = ops.timeout();
                call!(
                    "shmq_claim_packed",
                    shmq_claim_packed(q, buf.p.cast(), len, msgs.cast(), max, count.cast(), t)
                );
            }
            21 => {
                let q = s.live(ops);
                let (m, real) = s.message(ops);
                let buf = s.ptr(ops, 1);
                let len = if buf.p.is_null() {
                    ops.len()
                } else {
                    ops.u16() as usize % (buf.avail + 1)
                };
                let out_len = s.ptr(ops, 8);
                let ok = call!(
                    "shmq_read",
                    shmq_read(q, m, buf.p.cast(), len, out_len.cast())
                );
                s.never_foreign("shmq_read", q, real, ok);
            }
            22..=24 => {
                let q = s.live(ops);
                let (m, real) = s.message(ops);
                let ok = call!("shmq_ack", shmq_ack(q, m));
                s.never_foreign("shmq_ack", q, real, ok);
            }
            25 => {
                let q = s.live(ops);
                let (m, real) = s.message(ops);
                let delay = [0, 1, 1_000_000, u64::MAX][ops.byte() as usize % 4];
                let ok = call!("shmq_nack", shmq_nack(q, m, delay));
                s.never_foreign("shmq_nack", q, real, ok);
            }
            26 => {
                let q = s.live(ops);
                let (m, real) = s.message(ops);
                // A reason: NULL, or a NUL-terminated string in the pool.
                let r = s.ptr(ops, 1);
                if !r.p.is_null() {
                    *r.p.add(r.avail - 1) = 0;
                }
                let ok = call!("shmq_reject", shmq_reject(q, m, r.p.cast::<c_char>()));
                s.never_foreign("shmq_reject", q, real, ok);
            }
            27 => {
                let q = s.live(ops);
                let (m, real) = s.message(ops);
                let lease = [0, 1, 1_000_000_000, u64::MAX][ops.byte() as usize % 4];
                let ok = call!("shmq_extend_lease", shmq_extend_lease(q, m, lease));
                s.never_foreign("shmq_extend_lease", q, real, ok);
            }
            28 => {
                // An array of messages in the pool: real ones and forged.
                let q = s.live(ops);
                let arr = s.ptr(ops, size_of::<shmq_message>());
                let max = arr.avail / size_of::<shmq_message>();
                let count = if arr.p.is_null() {
                    ops.len()
                } else {
                    ops.byte() as usize % (max + 1).min(6)
                };
                if !arr.p.is_null() {
                    for i in 0..count {
                        let sel = ops.byte() as usize;
                        if !s.msgs.is_empty() && sel % 4 != 0 {
                            let m = s.msgs[sel / 4 % s.msgs.len()];
                            arr.cast::<shmq_message>().add(i).write_unaligned(m);
                        }
                    }
                }
                let acked = s.ptr(ops, 8);
                call!(
                    "shmq_ack_batch",
                    shmq_ack_batch(q, arr.cast(), count, acked.cast())
                );
            }
            29 => {
                let q = s.live(ops);
                let out = s.ptr(ops, 8);
                call!(
                    "shmq_latest_acked_version",
                    shmq_latest_acked_version(q, ops.byte() as u64 % 6, out.cast())
                );
            }
            30 => {
                let q = s.live(ops);
                let out = s.ptr(ops, 8);
                let size = match ops.byte() % 4 {
                    0 => ops.u32(),
                    1 => ops.byte() as u32 * 8,
                    _ => size_of::<shmq_dead_letter>() as u32 + 8 * (ops.byte() as u32 % 3),
                };
                let max = if out.p.is_null() {
                    ops.len()
                } else {
                    out.cast::<u32>().write_unaligned(size);
                    let stride = (size as usize).max(1);
                    if (size as usize) < size_of::<shmq_dead_letter>() {
                        // Refused before any write, whatever the count.
                        ops.byte() as usize % 4
                    } else {
                        ops.byte() as usize % (out.avail / stride + 1).min(4)
                    }
                };
                let total = s.ptr(ops, 8);
                call!(
                    "shmq_dlq_list",
                    shmq_dlq_list(q, out.cast(), max, total.cast())
                );
            }
            31 => {
                let q = s.live(ops);
                let id = match ops.byte() % 4 {
                    0 => ops.u64(),
                    b => b as u64,
                };
                let out = s.ptr(ops, size_of::<shmq_dead_letter>());
                if !out.p.is_null() {
                    out.cast::<u32>()
                        .write_unaligned(ops.u32() >> (ops.byte() % 32));
                }
                let buf = s.ptr(ops, 1);
                let len = if buf.p.is_null() {
                    ops.len()
                } else {
                    ops.u16() as usize % (buf.avail + 1)
                };
                let out_len = s.ptr(ops, 8);
                call!(
                    "shmq_dlq_get",
                    shmq_dlq_get(q, id, out.cast(), buf.p.cast(), len, out_len.cast())
                );
            }
            32 => {
                let q = s.live(ops);
                let id = ops.byte() as u64 % 5;
                let out = s.ptr(ops, 8);
                let purge = ops.byte() & 1 != 0;
                call!(
                    "shmq_dlq_redrive/purge",
                    if purge {
                        shmq_dlq_purge(q, id, out.cast())
                    } else {
                        shmq_dlq_redrive(q, id, out.cast())
                    }
                );
            }
            33 => {
                let q = s.live(ops);
                let out = s.ptr(ops, size_of::<shmq_stats>());
                if !out.p.is_null() {
                    let size = match ops.byte() % 4 {
                        0 => ops.u32(),
                        1 => ops.byte() as u32,
                        _ => size_of::<shmq_stats>() as u32 - 8 * (ops.byte() as u32 % 4),
                    };
                    out.cast::<u32>().write_unaligned(size);
                }
                call!("shmq_get_stats", shmq_get_stats(q, out.cast()));
            }
            34 => {
                let q = s.live(ops);
                let out = s.ptr(ops, size_of::<shmq_info>());
                if !out.p.is_null() {
                    out.cast::<u32>()
                        .write_unaligned(ops.u32() >> (ops.byte() % 32));
                }
                call!("shmq_get_info", shmq_get_info(q, out.cast()));
            }
            35 => {
                let q = s.handle(ops);
                call!(
                    "shmq_verify/recover/flush",
                    match ops.byte() % 3 {
                        0 => shmq_verify(q),
                        1 => shmq_recover(q),
                        _ => shmq_flush(q),
                    }
                );
            }
            36 => {
                // Any integer as a status.
                let code = ops.u32() as i32 >> (ops.byte() % 32);
                let name = CStr::from_ptr(shmq_status_name(code)).to_string_lossy();
                assert!(name.starts_with("SHMQ_"), "status name {name}");
                assert_eq!(
                    name == "SHMQ_UNKNOWN",
                    !(0..=KNOWN).contains(&code),
                    "status {code} is {name}"
                );
                assert_eq!(shmq_abi_version(), crate::ffi::SHMQ_ABI_VERSION);
            }
            37 => {
                let p = s.ptr(ops, size_of::<shmq_options>());
                if ops.byte() & 1 != 0 {
                    shmq_options_init(p.cast());
                } else {
                    shmq_send_options_init(p.cast());
                }
            }
            38 => {
                // Scribble on the pool.
                let b = ops.byte() as usize % POOL_BUFS;
                let off = ops.u16() as usize % POOL_LEN;
                let n = (ops.byte() as usize % 32).min(POOL_LEN - off);
                let base = s.pool.base(b);
                for k in 0..n {
                    *base.add(off + k) = ops.byte();
                }
            }
            39 => {
                // A copy of a handle's bytes in the pool (a stale or forged
                // handle that looks like a real one), then used as one.
                if !s.handles.is_empty() {
                    let h = s.handles[ops.byte() as usize % s.handles.len()].0;
                    let to = s.ptr(ops, 256);
                    if !to.p.is_null() {
                        std::ptr::copy_nonoverlapping(
                            h.cast::<u8>(),
                            to.p,
                            size_of::<shmq_queue>(),
                        );
                        s.copy = Some(to.cast());
                    }
                }
            }
            _ => {
                // A message through the other handle, or after close.
                let q = s.handle(ops);
                let (m, real) = s.message(ops);
                let ok = call!(
                    "outcome",
                    match ops.byte() % 4 {
                        0 => shmq_ack(q, m),
                        1 => shmq_nack(q, m, 0),
                        2 => shmq_reject(q, m, std::ptr::null()),
                        _ => shmq_extend_lease(q, m, 1),
                    }
                );
                s.never_foreign("outcome", q, real, ok);
            }
        }
    }
}
