"""shmq: a lock-free, crash-safe, bounded message queue in a memory-mapped
file shared by processes on one host, with no broker.

This package is a thin ctypes layer over the shared library ``libshmq.so.0``
(standard library only). Set ``SHMQ_LIBRARY`` to the library's path if it is
not installed where the dynamic loader looks.

Example::

    import shmq
    with shmq.Queue.create("/dev/shm/orders", capacity=1024) as q:
        q.send(b"order 7")
        m = q.claim(timeout=1.0)
        print(m.data)
        m.ack()

Timeouts are in seconds: ``0`` tries once (``Full``/``Empty``), ``None``
waits forever (the default of ``send`` and ``claim``, like ``queue.Queue``;
so do ``math.inf`` and any timeout too long to count in nanoseconds), a
positive number waits up to that long (``Timeout``). Durations (delays,
leases) are 0 or positive seconds. A negative or NaN timeout, and a
negative, NaN, infinite or too long duration, raise ``InvalidArgument`` (a
``ValueError``) before the call.

A ``Queue`` is used by one thread at a time; open one per thread. A forked
child must open its own. The library releases the GIL while it waits.
"""

from __future__ import annotations

import array
import ctypes
import grp
import math
import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _lib
from ._lib import lib

__all__ = [
    "Queue",
    "Message",
    "DeadLetter",
    "Error",
    "Full",
    "Empty",
    "Timeout",
    "TooLarge",
    "LeaseLost",
    "Abandoned",
    "KeysFull",
    "Stale",
    "InvalidArgument",
    "NotFound",
    "Exists",
    "Incompatible",
    "Corrupt",
    "PermissionDenied",
    "IoError",
    "Internal",
    "Closed",
    "ABI_VERSION",
]

ABI_VERSION: int = _lib.ABI_VERSION

Buffer = Union[bytes, bytearray, memoryview]


# ---------------------------------------------------------------------------
# Errors: one class per status.


class Error(Exception):
    """A failed shmq call. ``status`` is the C status code, ``name`` its name
    (``"SHMQ_FULL"``); the message names the file, the operation and the
    cause."""

    status: int = -1

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def name(self) -> str:
        return lib.shmq_status_name(self.status).decode()


class Full(Error):
    """The queue is full and the call was not allowed to wait."""

    status = 1


class Empty(Error):
    """Nothing is claimable and the call was not allowed to wait."""

    status = 2


class Timeout(Error):
    """The call waited for its whole timeout."""

    status = 3


class TooLarge(Error):
    """The payload is larger than the queue's max_message_size."""

    status = 4


class LeaseLost(Error):
    """The claim is no longer held (lease expired, or outcome already given)."""

    status = 5


class Abandoned(Error):
    """The reservation was abandoned before its commit: nothing was sent."""

    status = 6


class KeysFull(Error):
    """A keyed send found no free entry in the key table."""

    status = 7


class Stale(Error):
    """A keyed send's version is not newer than the key's last acked one."""

    status = 8


class InvalidArgument(Error, ValueError):
    """An argument is invalid."""

    status = 9


class NotFound(Error):
    """The file or the dead letter does not exist."""

    status = 10


class Exists(Error):
    """The file already exists."""

    status = 11


class Incompatible(Error):
    """The file is a queue of another format version or layout."""

    status = 12


class Corrupt(Error):
    """The file breaks an invariant of the format."""

    status = 13


class PermissionDenied(Error):
    """The operating system refused access."""

    status = 14


class IoError(Error):
    """Another input/output error."""

    status = 15


class Internal(Error):
    """A bug in shmq."""

    status = 16


class Closed(Error):
    """The queue was closed, or is used by two threads at once."""

    status = 17


_ERRORS: Dict[int, type] = {
    cls.status: cls
    for cls in (
        Full,
        Empty,
        Timeout,
        TooLarge,
        LeaseLost,
        Abandoned,
        KeysFull,
        Stale,
        InvalidArgument,
        NotFound,
        Exists,
        Incompatible,
        Corrupt,
        PermissionDenied,
        IoError,
        Internal,
        Closed,
    )
}


def _raise(status: int) -> None:
    detail = lib.shmq_last_error().decode(errors="replace")
    cls = _ERRORS.get(status, Error)
    raise cls(detail or lib.shmq_status_name(status).decode(), status)


def _check(status: int) -> None:
    if status != 0:
        _raise(status)


# The largest values the C integers hold: a timeout is an int64_t, a
# duration (delay, lease) a uint64_t, both in nanoseconds.
_I64_MAX = 2**63 - 1
_U64_MAX = 2**64 - 1


def _seconds(value: Any, what: str) -> float:
    """``value`` as a float number of seconds, or InvalidArgument (a
    ValueError) naming ``what``: not a number, NaN, or too large for a
    float."""
    try:
        s = float(value)
    except OverflowError:
        raise InvalidArgument(f"{what} is too large: {value!r} seconds", 9) from None
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} must be a number of seconds, not {value!r}", 9) from None
    if math.isnan(s):
        raise InvalidArgument(f"{what} is NaN", 9)
    return s


def _ns(seconds: Optional[float], what: str = "timeout") -> int:
    """A timeout in seconds to the C convention (int64_t nanoseconds, 0 =
    try once, -1 = forever). None, infinity and any timeout too long to
    count in an int64_t (292 years) wait forever; a negative or NaN timeout
    raises InvalidArgument (a ValueError); a positive one waits at least
    1 ns."""
    if seconds is None:
        return -1
    s = _seconds(seconds, what)
    if s < 0:
        raise InvalidArgument(
            f"{what} cannot be negative: {seconds!r} (None waits forever, 0 tries once)", 9)
    if s == 0:
        return 0
    ns = s * 1e9
    if ns > _I64_MAX:  # infinity too
        return -1
    return max(1, int(ns))


def _deadline(timeout: Optional[float]) -> Optional[float]:
    """The time.monotonic() at which a timeout ends (None: never), checked
    like :func:`_ns`."""
    ns = _ns(timeout)
    return None if ns < 0 else time.monotonic() + ns / 1e9


def _duration_ns(seconds: float, what: str = "duration") -> int:
    """A duration in seconds (a delay, a lease) as uint64_t nanoseconds.
    Negative, NaN, infinite or too long for a uint64_t (584 years) raises
    InvalidArgument (a ValueError) naming ``what``; a positive one is at
    least 1 ns (never rounded down to 0, which means "none")."""
    s = _seconds(seconds, what)
    if s < 0:
        raise InvalidArgument(f"{what} cannot be negative: {seconds!r} seconds", 9)
    if math.isinf(s):
        raise InvalidArgument(f"{what} cannot be infinite", 9)
    if s == 0:
        return 0
    ns = s * 1e9
    if ns > _U64_MAX:
        raise InvalidArgument(
            f"{what} is too large: {seconds!r} seconds (at most {_U64_MAX / 1e9:.0f})", 9)
    return max(1, int(ns))


def _pointer(data: Buffer) -> Any:
    """Something ctypes passes as ``const void *`` for ``data``, kept alive
    by the caller, and its length in bytes."""
    if isinstance(data, bytes):
        return data, len(data)
    mv = memoryview(data)
    if not mv.c_contiguous:
        b = mv.tobytes()
        return b, len(b)
    if mv.readonly:
        b = mv.tobytes()
        return b, len(b)
    return (ctypes.c_char * mv.nbytes).from_buffer(mv), mv.nbytes


# ---------------------------------------------------------------------------
# Messages.


class Message:
    """A claimed message: ``data`` (bytes, a private copy checked for
    tearing), ``key``, ``version``, ``deliveries`` (1 on the first delivery),
    ``enqueued_ns``, ``position`` and ``token``. Give exactly one outcome:
    :meth:`ack`, :meth:`nack` or :meth:`reject` (:meth:`extend` any number of
    times before). As a context manager it acks on normal exit and nacks when
    an exception leaves the block (unless an outcome was given)."""

    __slots__ = ("_q", "_raw", "data", "key", "version", "deliveries",
                 "enqueued_ns", "position", "token", "_done")

    def __init__(self, q: "Queue", raw: _lib.Message, data: bytes) -> None:
        self._q = q
        self._raw = raw
        self.data: bytes = data
        self.key: int = raw.key
        self.version: int = raw.version
        self.deliveries: int = raw.deliveries
        self.enqueued_ns: int = raw.enqueued_ns
        self.position: int = raw.position
        self.token: int = raw.token
        self._done = False

    def __repr__(self) -> str:
        return (f"<shmq.Message position={self.position} len={len(self.data)} "
                f"key={self.key} version={self.version} deliveries={self.deliveries}>")

    @property
    def view(self) -> memoryview:
        """The payload as a memoryview (of the private copy)."""
        return memoryview(self.data)

    @property
    def settled(self) -> bool:
        """Whether an outcome was given through this object."""
        return self._done

    def ack(self) -> None:
        """Done: the message is deleted. Raises LeaseLost if the claim was
        lost meanwhile (it may be processed again elsewhere)."""
        self._done = True
        _check(lib.shmq_ack(self._q._handle(), ctypes.byref(self._raw)))

    def nack(self, delay: float = 0.0) -> None:
        """Try again after ``delay`` seconds (a failed delivery: dead-lettered
        on the last of max_deliveries)."""
        delay_ns = _duration_ns(delay, "nack: delay")
        self._done = True
        _check(lib.shmq_nack(self._q._handle(), ctypes.byref(self._raw), delay_ns))

    def reject(self, reason: str = "rejected") -> None:
        """Give up: the message goes to the dead letters with ``reason``."""
        self._done = True
        _check(lib.shmq_reject(self._q._handle(), ctypes.byref(self._raw),
                               reason.encode("utf-8", "replace")))

    def extend(self, lease: float) -> None:
        """Still working: the lease now ends ``lease`` seconds from now."""
        _check(lib.shmq_extend_lease(self._q._handle(), ctypes.byref(self._raw),
                                     _duration_ns(lease, "extend: lease")))

    def __enter__(self) -> "Message":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._done:
            return
        if exc_type is None:
            self.ack()
        else:
            try:
                self.nack()
            except Error:
                pass


class _Take:
    """The buffers of :meth:`Queue.take_packed`, made once per queue: room
    for ``count`` payloads and ``count`` shmq_message entries (as 64-bit
    words, so that their lengths are read by slicing)."""

    __slots__ = ("count", "size", "buf", "buf_at", "raws", "raws_at")

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self.buf = ctypes.create_string_buffer(count * size)
        self.buf_at = ctypes.addressof(self.buf)
        self.raws = array.array("Q", bytes(8 * _lib.MESSAGE_WORDS * count))
        self.raws_at = self.raws.buffer_info()[0]


class DeadLetter:
    """A dead letter: ``id``, ``reason``, ``attempts``, ``first_enqueued_ns``,
    ``dead_ns``, ``last_consumer_pid``, ``key``, ``version``, ``length`` and,
    from :meth:`Queue.dead_letter`, ``data``."""

    __slots__ = ("id", "reason", "attempts", "first_enqueued_ns", "dead_ns",
                 "last_consumer_pid", "key", "version", "length", "data")

    def __init__(self, d: _lib.DeadLetter, data: Optional[bytes] = None) -> None:
        self.id: int = d.id
        self.reason: str = d.reason.decode("utf-8", "replace")
        self.attempts: int = d.attempts
        self.first_enqueued_ns: int = d.first_enqueued_ns
        self.dead_ns: int = d.dead_ns
        self.last_consumer_pid: int = d.last_consumer_pid
        self.key: int = d.key
        self.version: int = d.version
        self.length: int = d.len
        self.data: Optional[bytes] = data

    def __repr__(self) -> str:
        return f"<shmq.DeadLetter id={self.id} reason={self.reason!r} attempts={self.attempts}>"


# ---------------------------------------------------------------------------
# The queue.


class Queue:
    """One attachment to a queue file. Create with :meth:`create`,
    :meth:`open` or :meth:`inspect`; use as a context manager or call
    :meth:`close`. Claims still held at close are redelivered at once."""

    def __init__(self, handle: ctypes.c_void_p, path: str) -> None:
        self._q: Optional[ctypes.c_void_p] = handle
        self.path = path
        info = _lib.Info()
        info.size = ctypes.sizeof(info)
        _check(lib.shmq_get_info(handle, ctypes.byref(info)))
        self.capacity: int = info.capacity
        self.max_message_size: int = info.max_message_size
        self.key_capacity: int = info.key_capacity
        self.lease: float = info.lease_ns / 1e9
        self.max_deliveries: int = info.max_deliveries
        self.latest_only: bool = bool(info.flags & _lib.FLAG_LATEST_ONLY)
        #: True for a read-only handle: mapped read-only, never writes the
        #: file; every change raises PermissionDenied.
        self.read_only: bool = info.access == _lib.ACCESS_READ_ONLY
        self._buf: Any = None
        self._msgs: Any = None
        self._take: Optional[_Take] = None
        self._fixed_lens: Tuple[int, int, Any] = (0, 0, None)
        self._out = ctypes.c_size_t()
        self._out_at = ctypes.addressof(self._out)
        self._last_stats: Optional[Dict[str, Any]] = None

    # -- lifecycle --------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Union[str, os.PathLike],
        capacity: int = 1024,
        max_message_size: int = 256,
        key_capacity: int = 0,
        lease: float = 30.0,
        max_deliveries: int = 10,
        *,
        latest_only: bool = False,
        mode: int = 0o600,
        group: Union[int, str, None] = None,
        dlq_capacity: int = 0,
        reservation_timeout: float = 5.0,
        participant_capacity: int = 64,
        wait: str = "spin-then-sleep",
    ) -> "Queue":
        """Creates a new queue file (``Exists`` if there is one) and attaches
        to it. ``lease`` and ``reservation_timeout`` are in seconds; ``wait``
        is ``"spin"``, ``"spin-then-sleep"`` or ``"sleep"``. ``mode`` is set
        on the new file whatever the umask (0o660 for a queue shared with a
        group, opened by the others with ``group_shared=True``); ``group``
        (a gid or a group name) is the group the file is given."""
        o = _lib.Options()
        lib.shmq_options_init(ctypes.byref(o))
        o.capacity = capacity
        o.max_message_size = max_message_size
        o.key_capacity = key_capacity
        o.lease_ns = _duration_ns(lease, "create: lease")
        o.max_deliveries = max_deliveries
        o.flags = _lib.FLAG_LATEST_ONLY if latest_only else 0
        o.mode = mode
        if group is not None:
            if isinstance(group, str):
                try:
                    group = grp.getgrnam(group).gr_gid
                except KeyError:
                    raise NotFound(f"{os.fspath(path)}: create: no group named {group!r}", 10)
            o.flags |= _lib.FLAG_SET_GROUP
            o.group = group
        o.dlq_capacity = dlq_capacity
        o.reservation_timeout_ns = _duration_ns(reservation_timeout, "create: reservation_timeout")
        o.participant_capacity = participant_capacity
        waits = {"spin": 0, "spin-then-sleep": 1, "sleep": 2}
        if wait not in waits:
            raise InvalidArgument(f"wait must be one of {sorted(waits)}, not {wait!r}", 9)
        o.wait_strategy = waits[wait]
        p = os.fspath(path)
        h = ctypes.c_void_p()
        _check(lib.shmq_create(os.fsencode(p), ctypes.byref(o), ctypes.byref(h)))
        return cls(h, p)

    @classmethod
    def _open(cls, path: Union[str, os.PathLike], access: int, group_shared: bool,
              trust_any_owner: bool) -> "Queue":
        o = _lib.OpenOptions()
        lib.shmq_open_options_init(ctypes.byref(o))
        o.access = access
        o.flags = ((_lib.OPEN_GROUP_SHARED if group_shared else 0)
                   | (_lib.OPEN_TRUST_ANY_OWNER if trust_any_owner else 0))
        p = os.fspath(path)
        h = ctypes.c_void_p()
        _check(lib.shmq_open_ex(os.fsencode(p), ctypes.byref(o), ctypes.byref(h)))
        return cls(h, p)

    @classmethod
    def open(cls, path: Union[str, os.PathLike], *, read_only: bool = False,
             group_shared: bool = False, trust_any_owner: bool = False) -> "Queue":
        """Opens an existing queue file as a participant; with
        ``read_only=True``, as a read-only handle that maps the file read-only,
        reads stats, verify and dead letters, and raises PermissionDenied on
        every change.

        The file must be a regular file of this user that nobody else may
        write (else PermissionDenied); ``group_shared`` accepts one its group
        may write, ``trust_any_owner`` any owner and mode."""
        access = _lib.ACCESS_READ_ONLY if read_only else _lib.ACCESS_PARTICIPANT
        return cls._open(path, access, group_shared, trust_any_owner)

    @classmethod
    def inspect(cls, path: Union[str, os.PathLike], *, group_shared: bool = False,
                trust_any_owner: bool = False) -> "Queue":
        """Opens a queue file without attaching: stats, verify, dead letters.
        Read-only when this process may not write the file."""
        return cls._open(path, _lib.ACCESS_INSPECT, group_shared, trust_any_owner)

    def close(self) -> None:
        """Detaches; idempotent."""
        h, self._q = self._q, None
        if h is not None:
            _check(lib.shmq_close(h))

    @property
    def closed(self) -> bool:
        return self._q is None

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<shmq.Queue {self.path!r} capacity={self.capacity}{' closed' if self.closed else ''}>"

    def _handle(self) -> ctypes.c_void_p:
        if self._q is None:
            raise Closed(f"{self.path}: the queue was closed", 17)
        return self._q

    # -- sending ----------------------------------------------------------

    def send(self, data: Buffer, key: int = 0, version: int = 0,
             timeout: Optional[float] = None, *, delay: float = 0.0) -> int:
        """Sends one message (bytes, bytearray or memoryview). Waits for room
        up to ``timeout`` seconds (None = forever). ``key`` 0 is no key;
        ``version`` 0 on a keyed send is the key's next version. Returns the
        version the message carries."""
        timeout_ns = _ns(timeout, "send: timeout")
        delay_ns = _duration_ns(delay, "send: delay")
        ptr, n = _pointer(data)
        if delay_ns == 0 and key == 0:
            _check(lib.shmq_send(self._handle(), ptr, n, 0, version, timeout_ns))
            return version
        o = _lib.SendOptions()
        lib.shmq_send_options_init(ctypes.byref(o))
        o.key, o.version, o.timeout_ns = key, version, timeout_ns
        o.delay_ns = delay_ns
        v = ctypes.c_uint64()
        _check(lib.shmq_send_ex(self._handle(), ptr, n, ctypes.byref(o), None, ctypes.byref(v)))
        return v.value

    def send_many(self, messages: Iterable[Buffer], timeout: Optional[float] = None) -> int:
        """Sends messages without keys, in order, in batches; returns how many
        were sent. Waits for room up to ``timeout`` seconds in all (None =
        until every one is sent); with 0, sends what fits now."""
        _ns(timeout, "send_many: timeout")
        msgs = messages if isinstance(messages, (list, tuple)) else list(messages)
        if not msgs:
            return 0
        blob = b"".join(msgs)
        lens = array.array("Q", [len(m) if isinstance(m, bytes) else memoryview(m).nbytes
                                 for m in msgs])
        deadline = _deadline(timeout)
        sent = 0
        offset = 0
        out = ctypes.c_size_t()
        base = ctypes.c_char_p(blob)
        addr = ctypes.cast(base, ctypes.c_void_p).value or 0
        lens_addr = lens.buffer_info()[0]
        itemsize = lens.itemsize
        h = self._handle()
        while sent < len(msgs):
            if deadline is None:
                t = -1
            else:
                left = deadline - time.monotonic()
                t = 0 if left <= 0 else max(1, int(left * 1e9))
            st = lib.shmq_send_packed(h, addr + offset, len(blob) - offset,
                                      lens_addr + sent * itemsize, len(msgs) - sent,
                                      ctypes.byref(out), t)
            if st in (Full.status, Timeout.status):
                break
            _check(st)
            n = out.value
            offset += sum(lens[sent:sent + n])
            sent += n
        return sent

    def send_packed(self, data: Buffer, size: Union[int, Sequence[int]],
                    timeout: Optional[float] = None) -> int:
        """Sends the messages packed one after another in ``data`` (bytes,
        bytearray, memoryview, array...): each ``size`` bytes long when
        ``size`` is an int (``data`` is then a whole number of them), else
        message ``i`` is ``size[i]`` bytes. Without keys, in order; returns
        how many were sent, waiting for room like :meth:`send_many`. The
        fastest way to send from Python: one C call per batch that fits and
        no Python object per message."""
        _ns(timeout, "send_packed: timeout")
        mv = memoryview(data)
        if not mv.c_contiguous:
            raise InvalidArgument("send_packed: data must be contiguous", 9)
        nbytes = mv.nbytes
        if isinstance(size, int):
            if size <= 0 or nbytes % size:
                raise InvalidArgument(
                    f"send_packed: {nbytes} bytes are not a whole number of {size}-byte messages", 9)
            count = nbytes // size
            s, c, lens = self._fixed_lens
            if (s, c) != (size, count):
                lens = array.array("Q", [size]) * count
                self._fixed_lens = (size, count, lens)
        else:
            lens = array.array("Q", size)
            count = len(lens)
            if sum(lens) != nbytes:
                raise InvalidArgument(
                    f"send_packed: the sizes add up to {sum(lens)}, data has {nbytes} bytes", 9)
        if count == 0:
            return 0
        if isinstance(data, bytes):
            keep: Any = data
            addr = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        elif mv.readonly:
            keep = mv.tobytes()
            addr = ctypes.cast(ctypes.c_char_p(keep), ctypes.c_void_p).value or 0
        else:
            keep = (ctypes.c_char * nbytes).from_buffer(mv.cast("B"))
            addr = ctypes.addressof(keep)
        lens_addr = lens.buffer_info()[0]
        deadline = _deadline(timeout)
        h = self._handle()
        sent = 0
        offset = 0
        while sent < count:
            if deadline is None:
                t = -1
            else:
                left = deadline - time.monotonic()
                t = 0 if left <= 0 else max(1, int(left * 1e9))
            st = _lib.send_packed_at(h, addr + offset, nbytes - offset, lens_addr + sent * 8,
                                     count - sent, self._out_at, t)
            if st in (Full.status, Timeout.status):
                break
            _check(st)
            n = self._out.value
            offset += size * n if isinstance(size, int) else sum(lens[sent:sent + n])
            sent += n
        del keep
        return sent

    # -- claiming ---------------------------------------------------------

    def _buffers(self, count: int) -> None:
        if self._msgs is None or len(self._msgs) < count:
            self._msgs = (_lib.Message * count)()
            self._buf = ctypes.create_string_buffer(count * max(self.max_message_size, 1))

    def claim(self, timeout: Optional[float] = None) -> Message:
        """Claims the next message, waiting up to ``timeout`` seconds (None =
        forever). Raises ``Empty`` (timeout 0) or ``Timeout``."""
        return self.claim_many(1, timeout)[0]

    def claim_many(self, count: int, timeout: Optional[float] = None) -> List[Message]:
        """Waits up to ``timeout`` for the first message, then takes what is
        claimable now, up to ``count``. Raises ``Empty``/``Timeout`` when
        there is none."""
        if count <= 0:
            raise InvalidArgument("claim_many: count must be positive", 9)
        timeout_ns = _ns(timeout, "claim: timeout")
        self._buffers(count)
        n = ctypes.c_size_t()
        buf, raws = self._buf, self._msgs
        _check(lib.shmq_claim_packed(self._handle(), buf, len(buf), raws, count,
                                     ctypes.byref(n), timeout_ns))
        count = n.value
        total = 0
        lens = []
        for i in range(count):
            ln = raws[i].len
            lens.append(ln)
            total += ln
        blob = ctypes.string_at(buf, total)
        out = []
        at = 0
        for i in range(count):
            raw = _lib.Message.from_buffer_copy(raws[i])
            out.append(Message(self, raw, blob[at:at + lens[i]]))
            at += lens[i]
        return out

    def ack_many(self, messages: Sequence[Message]) -> int:
        """Acks every message not yet settled; returns how many were acked (a
        message whose lease was lost is skipped). Messages claimed through
        another Queue raise InvalidArgument, and none is acked."""
        todo = [m for m in messages if not m._done]
        if not todo:
            return 0
        arr = (_lib.Message * len(todo))()
        for i, m in enumerate(todo):
            arr[i] = m._raw  # whole: the library checks size and handle_id too
        n = ctypes.c_size_t()
        st = lib.shmq_ack_batch(self._handle(), arr, len(todo), ctypes.byref(n))
        if st != InvalidArgument.status:  # refused before any ack otherwise
            for m in todo:
                m._done = True
        _check(st)
        return n.value

    def take_packed(self, count: int, timeout: Optional[float] = None) -> Tuple[bytes, List[int]]:
        """Claims up to ``count`` messages (waiting up to ``timeout`` for the
        first, like :meth:`claim_many`), copies their payloads one after
        another and acks them all: two C calls, no Python object per
        message. Returns ``(data, lengths)``: the payloads packed in
        ``data``, message ``i`` being ``lengths[i]`` bytes. Raises
        ``Empty``/``Timeout`` when there is none.

        The messages are acked before they are returned, so a consumer that
        dies with them in hand loses them (use :meth:`claim_many` and
        :meth:`ack_many` to ack after processing). A claim whose lease ran
        out before the ack is redelivered as well (at least once)."""
        if count <= 0:
            raise InvalidArgument("take_packed: count must be positive", 9)
        timeout_ns = _ns(timeout, "take_packed: timeout")
        t = self._take
        if t is None or t.count < count:
            t = self._take = _Take(count, max(self.max_message_size, 1))
        h = self._handle()
        _check(_lib.claim_packed_at(h, t.buf_at, count * t.size, t.raws_at, count,
                                    self._out_at, timeout_ns))
        n = self._out.value
        lens = t.raws[_lib.MESSAGE_LEN_WORD:n * _lib.MESSAGE_WORDS:_lib.MESSAGE_WORDS]
        data = ctypes.string_at(t.buf_at, sum(lens))
        _check(_lib.ack_batch_at(h, t.raws_at, n, self._out_at))
        return data, lens.tolist()

    def take_many(self, count: int, timeout: Optional[float] = None) -> List[bytes]:
        """:meth:`take_packed` as a list of payloads (acked already)."""
        data, lens = self.take_packed(count, timeout)
        out = []
        at = 0
        for n in lens:
            out.append(data[at:at + n])
            at += n
        return out

    def messages(self, timeout: Optional[float] = None) -> Iterator[Message]:
        """Yields messages as they come; stops after ``timeout`` seconds
        without one (None = never stops). Give each one its outcome."""
        _ns(timeout, "messages: timeout")
        while True:
            try:
                yield self.claim(timeout)
            except (Empty, Timeout):
                return

    def __iter__(self) -> Iterator[Message]:
        """Blocks for the next message, forever."""
        return self.messages(None)

    # -- keys, stats, dead letters ---------------------------------------

    def latest_acked_version(self, key: int) -> int:
        """The last acked version of ``key`` (0 if none)."""
        v = ctypes.c_uint64()
        _check(lib.shmq_latest_acked_version(self._handle(), key, ctypes.byref(v)))
        return v.value

    def stats(self) -> Dict[str, Any]:
        """The metrics: depth, in_flight, ages, live producers and consumers,
        counters (sent, acked, ...), and the latency histograms
        (``time_in_queue``, ``processing_time``, ``end_to_end_time``: dicts of
        count, sum, p50, p90, p99, p999, max in ns). ``sent_per_s`` and
        ``acked_per_s`` are rates since this handle's previous call (None on
        the first)."""
        s = _lib.Stats()
        s.size = ctypes.sizeof(s)
        _check(lib.shmq_get_stats(self._handle(), ctypes.byref(s)))
        d: Dict[str, Any] = {name: getattr(s, name)
                             for name in _lib.STAT_FIELDS + list(_lib.STAT_FIELDS_2)}
        for name in _lib.HISTOGRAM_FIELDS:
            h = getattr(s, name)
            d[name] = {f: getattr(h, f) for f, _ in _lib.Histogram._fields_}
        prev = self._last_stats
        if prev is not None and d["taken_ns"] > prev["taken_ns"]:
            dt = (d["taken_ns"] - prev["taken_ns"]) / 1e9
            d["sent_per_s"] = (d["sent"] - prev["sent"]) / dt
            d["acked_per_s"] = (d["acked"] - prev["acked"]) / dt
        else:
            d["sent_per_s"] = None
            d["acked_per_s"] = None
        self._last_stats = d
        return d

    def dead_letters(self) -> List[DeadLetter]:
        """Every dead letter, oldest first (without payloads)."""
        total = ctypes.c_size_t()
        h = self._handle()
        _check(lib.shmq_dlq_list(h, None, 0, ctypes.byref(total)))
        if total.value == 0:
            return []
        arr = (_lib.DeadLetter * total.value)()
        arr[0].size = ctypes.sizeof(_lib.DeadLetter)
        _check(lib.shmq_dlq_list(h, arr, len(arr), ctypes.byref(total)))
        return [DeadLetter(arr[i]) for i in range(min(total.value, len(arr)))]

    def dead_letter(self, id: int) -> DeadLetter:
        """The dead letter ``id`` with its payload in ``data``."""
        d = _lib.DeadLetter()
        d.size = ctypes.sizeof(d)
        buf = ctypes.create_string_buffer(max(self.max_message_size, 1))
        n = ctypes.c_size_t()
        _check(lib.shmq_dlq_get(self._handle(), id, ctypes.byref(d), buf, len(buf),
                                ctypes.byref(n)))
        return DeadLetter(d, buf.raw[:n.value])

    def redrive(self, id: Optional[int] = None) -> int:
        """Sends dead letter ``id`` (or all) back to the queue; returns how many."""
        n = ctypes.c_size_t()
        _check(lib.shmq_dlq_redrive(self._handle(), id or _lib.DLQ_ALL, ctypes.byref(n)))
        return n.value

    def purge(self, id: Optional[int] = None) -> int:
        """Deletes dead letter ``id`` (or all); returns how many."""
        n = ctypes.c_size_t()
        _check(lib.shmq_dlq_purge(self._handle(), id or _lib.DLQ_ALL, ctypes.byref(n)))
        return n.value

    def verify(self) -> None:
        """Raises ``Corrupt`` (listing the problems) unless every invariant
        of the file holds."""
        _check(lib.shmq_verify(self._handle()))

    def recover(self) -> None:
        """Cleans up after dead participants now."""
        _check(lib.shmq_recover(self._handle()))

    def flush(self) -> None:
        """Flushes the mapping to the file (persistent file systems only)."""
        _check(lib.shmq_flush(self._handle()))
