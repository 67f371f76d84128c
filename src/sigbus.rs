//! Surviving a queue file that shrinks under its mapping.
//!
//! Owns the process-wide `SIGBUS` handler and the registry of shmq mappings
//! it consults. A process that can write a queue file can also `ftruncate`
//! it; the next access to a mapped page past the new end of the file then
//! raises `SIGBUS`, whose default action kills the process. shmq promises
//! "errors or continued service, never a crash or a hang" instead, so:
//!
//! - Every mapping of a queue file is registered here (its address range
//!   and whether it is writable) for as long as it is mapped.
//! - On the first registration a `SIGBUS` handler is installed, once per
//!   process, remembering the handler it replaces.
//! - For a fault inside a registered mapping the handler replaces the pages
//!   from the faulting one to the end of the mapping with anonymous zero
//!   pages (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)`, a system call,
//!   async-signal-safe), marks the registration *broken* and returns. The
//!   faulting instruction runs again and reads zeros.
//! - Any other `SIGBUS` goes to the previous handler, called directly; a
//!   default or ignored disposition is restored and the signal raised
//!   again, so a fault outside shmq still kills the process as it would
//!   have without shmq.
//!
//! The queue checks the broken flag (one relaxed load of process memory,
//! never of the mapping) when an operation starts and before it reports
//! success, and answers `Corrupt` ("file was truncated while mapped").
//! Zero pages are indistinguishable from another process writing zeros
//! into the file, which every reader of the mapping already survives
//! (SPEC G10): an operation that was running when the fault hit finishes
//! on bounded loops and validated values, then its result is replaced by
//! the error.
//!
//! Prior art: Sapling's indexedlog zero-fills the faulting page of its
//! mmapped logs in a `SIGBUS` handler (there, for btrfs checksum failures)
//! and chains to the previous handler; its region lookup takes a lock.
//! Here the lookup is lock-free (a seqlock per registration in blocks that
//! are never freed), so the handler makes no call that is not
//! async-signal-safe, and the whole tail is replaced with one `mmap`.
//! Databases such as SQLite and LMDB instead tell their users never to
//! shrink a mapped file; shmq cannot trust every process with write access
//! to obey that. The alternative of re-checking the file size with `fstat`
//! before every access would put a system call on the fast path (G11).
//!
//! An embedding program that owns `SIGBUS` calls
//! [`leave_sigbus_to_the_program`] before its first queue, and from its own
//! handler calls [`handle_sigbus`] with the fault address first: shmq's
//! faults are handled there, every other one is the program's.
//!
//! Limits, written down: a handler installed by someone else *after* ours
//! sees shmq's faults first (it must chain to ours, or call
//! [`handle_sigbus`]); a mapping grown by the
//! other process is not affected (the mapping's size is fixed at open, the
//! pages past it are simply not mapped); atomics here are `std`'s, not
//! the loom shim's, because a signal handler runs outside any loom model
//! and this module is not built under loom.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

/// Registrations per block; blocks are chained when one fills up.
const BLOCK: usize = 64;

/// `zeroed_from` when nothing was replaced.
const NOTHING_ZEROED: usize = usize::MAX;

/// One registered mapping.
///
/// `seq` is a seqlock over `start`, `end` and `writable`: odd while a
/// registration writes them, even when they are stable. The handler reads
/// them between two loads of `seq` and ignores the entry unless both loads
/// gave the same even value, so a half-written entry can never make it zero
/// pages of another mapping.
struct Entry {
    seq: AtomicUsize,
    /// Owned by a live [`Registration`] (claimed by compare-and-swap).
    taken: AtomicBool,
    /// First byte of the mapping (page-aligned).
    start: AtomicUsize,
    /// One past its last page; 0 when the entry maps nothing.
    end: AtomicUsize,
    /// Whether the mapping allows writes (the zero pages get the same).
    writable: AtomicBool,
    /// Set by the handler: pages of this mapping were replaced.
    broken: AtomicBool,
    /// The lowest address replaced so far, or [`NOTHING_ZEROED`].
    zeroed_from: AtomicUsize,
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            seq: AtomicUsize::new(0),
            taken: AtomicBool::new(false),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            writable: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            zeroed_from: AtomicUsize::new(NOTHING_ZEROED),
        }
    }

    /// Writes the mapped range under the seqlock. Only the owner of the
    /// entry writes it.
    fn publish(&self, start: usize, end: usize, writable: bool) {
        // Relaxed: only the owner changes `seq`; the fence orders the odd
        // value before the field stores for a concurrent reader.
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.writable.store(writable, Ordering::Relaxed);
        // Release: a reader that sees the new even value sees the fields.
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The stable range of the entry, if it covers `addr`.
    fn covering(&self, addr: usize) -> Option<(usize, usize, bool)> {
        // Acquire: pairs with the Release store that ended a publish.
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let start = self.start.load(Ordering::Relaxed);
        let end = self.end.load(Ordering::Relaxed);
        let writable = self.writable.load(Ordering::Relaxed);
        // Acquire fence: the field loads above happen before the re-check.
        fence(Ordering::Acquire);
        let s2 = self.seq.load(Ordering::Relaxed);
        (s1 == s2 && start <= addr && addr < end).then_some((start, end, writable))
    }
}

/// A block of entries; blocks are leaked, never freed, so the handler can
/// walk them at any moment.
struct Block {
    entries: [Entry; BLOCK],
    next: AtomicPtr<Block>,
}

impl Block {
    const fn new() -> Block {
        #[allow(clippy::declare_interior_mutable_const)]
        const E: Entry = Entry::new();
        Block {
            entries: [E; BLOCK],
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn next(&self) -> Option<&'static Block> {
        // Acquire: pairs with the Release CAS that linked the block, so its
        // (zero-initialised) entries are visible.
        let p = self.next.load(Ordering::Acquire);
        // SAFETY: non-null pointers here come from Box::leak and are never
        // freed.
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

static FIRST: Block = Block::new();

/// The page size, read once when the handler is installed (sysconf is not
/// on the async-signal-safe list).
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The disposition of `SIGBUS` before ours, for chaining.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: written once inside `INSTALL.call_once`, before `PREVIOUS_SET` is
// set with Release; read only after an Acquire load of `PREVIOUS_SET`.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static PREVIOUS_SET: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Set by [`leave_sigbus_to_the_program`]: never install the handler.
static LEFT_TO_PROGRAM: AtomicBool = AtomicBool::new(false);

/// Tells shmq not to install its `SIGBUS` handler in this process: the
/// embedding program installs its own and calls [`handle_sigbus`] from it
/// first. Call it before the first queue is created or opened; a handler
/// already installed stays. Without a handler, a queue file truncated by
/// another process while mapped kills this process at the next access (the
/// default action of `SIGBUS`) instead of giving `Corrupt`, unless the
/// program's handler calls [`handle_sigbus`].
pub fn leave_sigbus_to_the_program() {
    // Relaxed: read by `install` in this thread or after a later
    // synchronising call (opening a queue).
    LEFT_TO_PROGRAM.store(true, Ordering::Relaxed);
}

/// For an embedding program's own `SIGBUS` handler (see
/// [`leave_sigbus_to_the_program`]): if the fault at `fault_addr` (the
/// handler's `siginfo_t::si_addr`, for a fault with `si_code > 0`) lies in a
/// mapping of a queue file, replaces the pages from there to the end of the
/// mapping with zero pages, marks the queue broken (its calls then answer
/// `Corrupt`) and returns true: the handler should return, and the faulting
/// access runs again and reads zeros. False for any other fault, which is
/// the program's to handle. Async-signal-safe: only atomics and `mmap`.
pub fn handle_sigbus(fault_addr: *const libc::c_void) -> bool {
    let addr = fault_addr as usize;
    addr != 0 && zero_tail(addr)
}

/// Installs the handler once per process.
fn install() {
    if LEFT_TO_PROGRAM.load(Ordering::Relaxed) {
        return;
    }
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: querying the current disposition into memory we own; the
        // Once makes this the only writer of PREVIOUS.
        let got =
            unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), (*PREVIOUS.0.get()).as_mut_ptr()) };
        if got != 0 {
            return;
        }
        // Release: the handler that sees the flag sees PREVIOUS.
        PREVIOUS_SET.store(true, Ordering::Release);
        // SAFETY: sigaction is plain old data; all-zero is a valid value.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigbus as *const () as usize;
        // SA_ONSTACK: run on the alternate stack where there is one (std
        // sets one up per thread for its stack-overflow handler).
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sa_mask is ours to initialise.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: a valid sigaction whose handler has the SA_SIGINFO
        // signature.
        unsafe { libc::sigaction(libc::SIGBUS, &new, ptr::null_mut()) };
    });
}

/// The handler. Only atomics, `mmap`, `sigaction` and `raise` are used, all
/// async-signal-safe; errno is preserved for the interrupted code.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; its location is valid in a handler.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo (or null from a direct
    // call) to an SA_SIGINFO handler.
    let info_ref = unsafe { info.as_ref() };
    let addr = match info_ref {
        // SAFETY: si_addr is meaningful for a fault (si_code > 0), not for
        // a signal sent with kill().
        Some(i) if i.si_code > 0 => (unsafe { i.si_addr() }) as usize,
        _ => 0,
    };
    if addr != 0 && zero_tail(addr) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    // SAFETY: forwarding the kernel's arguments.
    unsafe { chain(sig, info, ctx) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Replaces the pages of the registered mapping holding `addr`, from its
/// page to the end (or to what an earlier fault already replaced), with
/// zero pages. False when `addr` is in no registered mapping, was already
/// replaced (a fault on our own zero pages is not a truncation), or the
/// `mmap` failed.
fn zero_tail(addr: usize) -> bool {
    let page = PAGE.load(Ordering::Relaxed);
    let mut block = Some(&FIRST);
    while let Some(b) = block {
        for e in &b.entries {
            let Some((_, end, writable)) = e.covering(addr) else {
                continue;
            };
            let from = addr & !(page - 1);
            let upto = end.min(e.zeroed_from.load(Ordering::Relaxed));
            if from >= upto {
                return false;
            }
            let prot = if writable {
                libc::PROT_READ | libc::PROT_WRITE
            } else {
                libc::PROT_READ
            };
            // SAFETY: [from, upto) lies inside a live shmq mapping (the
            // registration covers exactly the mapping and is removed before
            // the unmap); replacing its pages changes only what the mapping
            // reads, which every user of it treats as untrusted shared
            // memory.
            let got = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    upto - from,
                    prot,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if got == libc::MAP_FAILED {
                return false;
            }
            // Relaxed: read by this thread after the handler returns (and by
            // the handler itself); `Registration::broken` puts a compiler
            // fence before its load.
            e.zeroed_from.store(from, Ordering::Relaxed);
            e.broken.store(true, Ordering::Relaxed);
            return true;
        }
        block = b.next();
    }
    false
}

/// Hands the signal to the disposition that was there before ours.
///
/// # Safety
/// Called from the handler with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Acquire: pairs with the Release store after PREVIOUS was written.
    let prev = if PREVIOUS_SET.load(Ordering::Acquire) {
        // SAFETY: written before the flag was set and never again.
        Some(unsafe { (*PREVIOUS.0.get()).assume_init_ref() })
    } else {
        None
    };
    let handler = prev.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    // SAFETY: as in on_sigbus.
    let sent = unsafe { info.as_ref() }.map_or(true, |i| i.si_code <= 0);
    if handler == libc::SIG_IGN && sent {
        return; // kill(SIGBUS) while ignored: ignore it, as before us
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The default action (a fault cannot be ignored): restore it and
        // let the signal happen again. A fault re-executes the faulting
        // instruction on return; a sent signal is raised again, pending
        // until this handler returns.
        // SAFETY: sigaction is plain old data; all-zero is SIG_DFL with an
        // empty mask.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: a valid sigaction; sigaction and raise are
        // async-signal-safe.
        unsafe {
            libc::sigaction(sig, &dfl, ptr::null_mut());
            if sent {
                libc::raise(sig);
            }
        }
        return;
    }
    let Some(prev) = prev else { return };
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: installed without SA_SIGINFO: the one-argument signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// A mapping registered with the handler; unregisters on drop. Drop it
/// *before* unmapping, so that the address range is never registered while
/// something else may be mapped there.
pub(crate) struct Registration {
    entry: &'static Entry,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("start", &self.entry.start.load(Ordering::Relaxed))
            .field("end", &self.entry.end.load(Ordering::Relaxed))
            .field("broken", &self.broken())
            .finish()
    }
}

/// Registers the mapping at `start` (page-aligned), `len` bytes long, and
/// installs the handler if this is the first registration.
///
/// # Safety
/// `start..start + len` is a mapping that the caller owns and keeps mapped
/// for as long as the returned [`Registration`] lives, and that nothing
/// reads through a reference (only atomics, byte copies or volatile
/// accesses): a `SIGBUS` in the range makes the handler map zero pages over
/// the rest of it, under whatever reads it.
pub(crate) unsafe fn register(start: *const u8, len: usize, writable: bool) -> Registration {
    install();
    let page = PAGE.load(Ordering::Relaxed);
    let start = start as usize;
    let end = start.saturating_add(len.div_ceil(page) * page);
    let entry = claim_entry();
    // Relaxed: the entry is ours (claimed by CAS), and the handler reads
    // these only for a fault in this mapping, which comes after this call.
    entry.broken.store(false, Ordering::Relaxed);
    entry.zeroed_from.store(NOTHING_ZEROED, Ordering::Relaxed);
    entry.publish(start, end, writable);
    Registration { entry }
}

/// Takes a free entry, adding a block when every one is taken.
fn claim_entry() -> &'static Entry {
    let mut block: &'static Block = &FIRST;
    loop {
        for e in &block.entries {
            // Acquire: we see the previous owner's last writes (its
            // unpublish) before we reuse the entry.
            if e.taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return e;
            }
        }
        block = match block.next() {
            Some(b) => b,
            None => {
                let fresh: &'static Block = Box::leak(Box::new(Block::new()));
                // Release: the new block's contents before its link.
                match block.next.compare_exchange(
                    ptr::null_mut(),
                    (fresh as *const Block).cast_mut(),
                    Ordering::Release,
                    Ordering::Acquire,
                ) {
                    Ok(_) => fresh,
                    // Someone linked another block first: use theirs. Ours
                    // stays leaked (a few kilobytes, at most once per race).
                    // SAFETY: non-null, from another thread's Box::leak.
                    Err(p) => unsafe { &*p },
                }
            }
        };
    }
}

impl Registration {
    /// Whether pages of this mapping were replaced because the file shrank.
    /// One relaxed load of process memory; costs no system call.
    #[inline]
    pub fn broken(&self) -> bool {
        // The handler runs on the thread that faulted, between two of its
        // instructions: a compiler fence keeps the load after the accesses
        // to the mapping that precede it in program order. A handle that
        // moved to another thread moved with a happens-before edge.
        compiler_fence(Ordering::SeqCst);
        self.entry.broken.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.entry.publish(0, 0, false);
        // Release: the unpublish happens before the next owner's claim.
        self.entry.taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("shmq-sigbus-{name}-{}", std::process::id()))
    }

    #[test]
    fn a_truncated_mapping_reads_zeros_and_is_marked_broken() {
        let path = scratch("zero");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let len = 4 * 4096;
        file.set_len(len as u64).unwrap();
        // SAFETY: a fresh shared mapping of our own file.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = p.cast::<u8>();
        // SAFETY: our mapping, unmapped only after `reg` is dropped.
        let reg = unsafe { register(base, len, true) };
        // SAFETY: in bounds of the mapping.
        unsafe { base.add(3 * 4096).write_volatile(7) };
        assert!(!reg.broken());
        file.set_len(4096).unwrap();
        // SAFETY: in bounds; past the end of the file now, so it faults and
        // the handler replaces the page.
        let v = unsafe { base.add(3 * 4096).read_volatile() };
        assert_eq!(v, 0);
        assert!(reg.broken());
        // The first page still is the file's.
        // SAFETY: in bounds.
        unsafe { base.write_volatile(9) };
        let mut b = [0u8; 1];
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], 9);
        drop(reg);
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(p, len) };
    }

    #[test]
    fn entries_are_reused_and_blocks_added() {
        // Address space of our own that nothing else can be mapped into,
        // so the fake registrations cover no one else's pages.
        let n = BLOCK * 2 + 3;
        let len = n * 4096;
        // SAFETY: a fresh inaccessible anonymous mapping.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = p.cast::<u8>();
        let regs: Vec<_> = (0..n)
            // SAFETY: pages of our mapping, unmapped only after the
            // registrations are dropped; nothing touches them.
            .map(|i| unsafe { register(base.wrapping_add(i * 4096), 4096, false) })
            .collect();
        assert!(regs.iter().all(|r| !r.broken()));
        drop(regs);
        // SAFETY: as above.
        let again = unsafe { register(base, 4096, true) };
        assert!(!again.broken());
        drop(again);
        // SAFETY: unmapping what we mapped, after unregistering it.
        unsafe { libc::munmap(p, len) };
    }
}
