//! Routes by which safe code could once break memory safety, each closed.
//! Every `compile_fail` block below must fail to compile, and its `no_run`
//! twin (where there is one) must compile, so that the failure is the
//! closed route and not a typo. Built only for `cargo test --doc`, which
//! builds the library with the `internals` door (the tests' self
//! dev-dependency), so the door's users are checked too.

/// A read-only handle's memory cannot be stored into: its engine is an
/// engine over a `PROT_READ` mapping, a type that only loads, so neither
/// the engine's writing methods nor the words as atomics exist for it; and
/// the engine's memory is no public field. (`Queue::engine`, behind the
/// door, gives only a read-write handle's engine: on a read-only handle it
/// panics, before anything is touched.)
///
/// ```compile_fail
/// use shmq::{OpenOptions, Queue};
/// use std::sync::atomic::Ordering;
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// ro.read_only_engine().unwrap().mem.u64_at(4096).store(1, Ordering::Relaxed);
/// ```
///
/// ```no_run
/// use shmq::{OpenOptions, Queue};
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// let _slots = ro.read_only_engine().unwrap().capacity();
/// ```
///
/// The memory of a read-only handle's engine hands out no `&AtomicU64`:
///
/// ```compile_fail
/// use shmq::internals::memory::Memory;
/// use shmq::{OpenOptions, Queue};
/// use std::sync::atomic::Ordering;
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// let e = ro.read_only_engine().unwrap();
/// e.mem().u64_at(4096).store(1, Ordering::Relaxed);
/// ```
///
/// ```no_run
/// use shmq::internals::memory::Memory;
/// use shmq::Queue;
/// use std::sync::atomic::Ordering;
/// let rw = Queue::open("/dev/shm/q").unwrap();
/// let e = rw.engine();
/// e.mem().u64_at(4096).store(1, Ordering::Relaxed);
/// ```
///
/// Nor does the engine itself, whose words and writing steps need memory
/// that stores:
///
/// ```compile_fail
/// use shmq::{OpenOptions, Queue};
/// use std::sync::atomic::Ordering;
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// let e = ro.read_only_engine().unwrap();
/// e.liveness_due_word().store(0, Ordering::Relaxed);
/// ```
///
/// ```compile_fail
/// use shmq::{OpenOptions, Queue};
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// ro.read_only_engine().unwrap().add_roles(0, 1);
/// ```
///
/// ```no_run
/// use shmq::Queue;
/// use std::sync::atomic::Ordering;
/// let rw = Queue::open("/dev/shm/q").unwrap();
/// let e = rw.engine();
/// e.liveness_due_word().store(0, Ordering::Relaxed);
/// e.add_roles(0, 1);
/// ```
///
/// ```no_run
/// use shmq::{OpenOptions, Queue};
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// let e = ro.read_only_engine().unwrap();
/// let _word = e.slot_word(0);
/// let _stats = ro.stats();
/// ```
///
/// ```compile_fail
/// use shmq::internals::mapping::ReadOnlyMapping;
/// use shmq::internals::memory::Memory;
/// use std::sync::atomic::Ordering;
/// fn scribble(m: &ReadOnlyMapping) {
///     m.u64_at(4096).store(1, Ordering::Relaxed);
/// }
/// ```
///
/// ```no_run
/// use shmq::internals::mapping::ReadOnlyMapping;
/// use shmq::internals::memory::Loads;
/// use std::sync::atomic::Ordering;
/// fn look(m: &ReadOnlyMapping) -> u64 {
///     m.load_u64(4096, Ordering::Relaxed)
/// }
/// ```
pub struct ReadOnlyWrite;

/// Registering a range with the `SIGBUS` handler (which may later map zero
/// pages over it) is no public function.
///
/// ```compile_fail
/// let page = [0u8; 4096];
/// let _r = shmq::sigbus::register(page.as_ptr(), 4096, true);
/// ```
///
/// ```compile_fail
/// let page = [0u8; 4096];
/// let _r = unsafe { shmq::sigbus::register(page.as_ptr(), 4096, true) };
/// ```
pub struct SigbusRegister;

/// A plain (non-atomic) write into memory other processes share is an
/// `unsafe fn`: the caller owns the range under the slot protocol.
///
/// ```compile_fail
/// use shmq::internals::memory::{HeapMemory, Memory};
/// let m = HeapMemory::new(64);
/// m.write_bytes(0, b"scribble");
/// ```
///
/// ```no_run
/// use shmq::internals::memory::{HeapMemory, Memory};
/// let m = HeapMemory::new(64);
/// // SAFETY: the memory is this example's alone.
/// unsafe { m.write_bytes(0, b"mine") };
/// ```
pub struct WriteBytes;

/// A message's payload is not lent as `&[u8]` over bytes another process
/// may rewrite: it is copied ([`crate::Message::data`],
/// [`crate::Message::read_into`]), checked for tearing.
///
/// ```compile_fail
/// use shmq::{Queue, Timeout};
/// let q = Queue::open("/dev/shm/q").unwrap();
/// let m = q.claim(Timeout::TryOnce).unwrap();
/// let _bytes: &[u8] = unsafe { m.payload_unchecked() };
/// ```
///
/// ```no_run
/// use shmq::{Queue, Timeout};
/// let q = Queue::open("/dev/shm/q").unwrap();
/// let m = q.claim(Timeout::TryOnce).unwrap();
/// let _bytes: Vec<u8> = m.data().unwrap();
/// ```
pub struct PayloadUnchecked;
