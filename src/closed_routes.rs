//! Routes by which safe code could once break memory safety, each closed.
//! Every `compile_fail` block below must fail to compile, and its `no_run`
//! twin (where there is one) must compile, so that the failure is the
//! closed route and not a typo. Built only for `cargo test --doc`, which
//! builds the library with the `internals` door (the tests' self
//! dev-dependency), so the door's users are checked too.

/// A read-only handle's memory cannot be stored into: the engine's memory
/// is no public field, and a `PROT_READ` mapping is a type that only loads.
///
/// ```compile_fail
/// use shmq::{OpenOptions, Queue};
/// use std::sync::atomic::Ordering;
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// ro.engine().mem.u64_at(4096).store(1, Ordering::Relaxed);
/// ```
///
/// ```no_run
/// use shmq::{OpenOptions, Queue};
/// let ro = Queue::open_with("/dev/shm/q", &OpenOptions::read_only()).unwrap();
/// let _slots = ro.engine().capacity();
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
