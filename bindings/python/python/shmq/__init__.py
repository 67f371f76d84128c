"""shmq: a lock-free, crash-safe, bounded message queue in a memory-mapped
file shared by processes on one host, with no broker.

The engine is compiled into this package (the extension module
``shmq._native``, built from the Rust crate by maturin): ``pip install``
gives a working ``import shmq``, with no library to install beside it.

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

A ``Queue`` is used by one thread at a time; open one per thread (a second
thread calling into a Queue while another is inside it gets ``Closed``). A
call releases the GIL while it waits.

With ``multiprocessing``: a ``Queue`` inherited by a forked child (a fork
``Pool`` created after it) opens the child's own handle on its first call
in the child, and a ``Queue`` pickled (a spawn or forkserver worker's
argument) travels as its path and open options and is opened again where
it is unpickled. Either way the parent's claims stay the parent's: a
``Message`` is tied to the process and the handle that claimed it and
cannot be pickled (send its ``data``).

With ``asyncio``: ``await q.claim_async(timeout)``, ``await
q.send_async(data, ...)`` and ``async for m in q.messages_async()`` wait
without a thread: the engine's one waker thread per process sleeps on the
queue's futex words and resolves the waiting coroutine's future through its
event loop's ``call_soon_threadsafe``. A cancelled wait leaves nothing
registered.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import math
import os
import time
import types
from collections.abc import Mapping
from typing import (Any, AsyncIterator, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

from . import _native

__all__ = [
    "Queue",
    "Message",
    "DeadLetter",
    "Peeked",
    "Stats",
    "HistogramStats",
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
    "__version__",
]

#: The version of this package (and of the engine compiled into it).
__version__: str = _native.__version__

Buffer = Union[bytes, bytearray, memoryview]


# ---------------------------------------------------------------------------
# Errors: one class per status; where a built-in exception fits, the class
# is also that exception (``except TimeoutError`` catches ``shmq.Timeout``).


class Error(Exception):
    """A failed shmq call. ``status`` is the status code, ``name`` its name
    (``"SHMQ_FULL"``); the message names the file, the operation and the
    cause."""

    status: int = -1

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def name(self) -> str:
        return _native.status_name(self.status)


class _OSError(Error, OSError):
    """An Error that is also a built-in OSError subclass: ``errno`` is set,
    ``str()`` is the message alone."""

    errno_value: int = 0

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message, status)
        self.errno = self.errno_value
        self.strerror = message

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.status))


class Full(Error):
    """The queue is full and the call was not allowed to wait."""

    status = 1


class Empty(Error):
    """Nothing is claimable and the call was not allowed to wait."""

    status = 2


class Timeout(_OSError, TimeoutError):
    """The call waited for its whole timeout (also a ``TimeoutError``)."""

    status = 3
    errno_value = errno.ETIMEDOUT


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
    """An argument is invalid (also a ``ValueError``)."""

    status = 9


class NotFound(_OSError, FileNotFoundError):
    """The file or the dead letter does not exist (also a
    ``FileNotFoundError``)."""

    status = 10
    errno_value = errno.ENOENT


class Exists(_OSError, FileExistsError):
    """The file already exists (also a ``FileExistsError``)."""

    status = 11
    errno_value = errno.EEXIST


class Incompatible(Error):
    """The file is a queue of another format version or layout."""

    status = 12


class Corrupt(Error):
    """The file breaks an invariant of the format."""

    status = 13


class PermissionDenied(_OSError, PermissionError):
    """The operating system refused access, the file failed the checks on
    open, or the handle is read-only (also a ``PermissionError``)."""

    status = 14
    errno_value = errno.EACCES


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


# The largest values the engine takes: a timeout is an int64_t, a
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
    """A timeout in seconds to the engine's convention (int64_t nanoseconds, 0 =
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


def _left_ns(deadline: Optional[float]) -> int:
    """What is left of a deadline, as a timeout in ns (-1 = forever)."""
    if deadline is None:
        return -1
    left = deadline - time.monotonic()
    return 0 if left <= 0 else max(1, int(left * 1e9))


# The extension raises the classes above and converts the odd timeouts and
# durations with the helpers above, so that a value is refused with the
# same message whichever call it reaches.
_native._init([_ERRORS.get(code, Error) for code in range(max(_ERRORS) + 1)],
              _ns, _duration_ns)

# A forked child's queues open their own handles on their next call (the
# inherited ones are the parent's participants).
os.register_at_fork(after_in_child=_native._forked)


# ---------------------------------------------------------------------------
# Messages.

#: A claimed message (made by the claim calls, never directly): ``data``
#: (bytes, a private copy checked for tearing), ``key``, ``version``,
#: ``deliveries`` (1 on the first delivery), ``enqueued_ns``, ``position``
#: and ``token``; ``view`` is the payload as a memoryview (of the copy) and
#: ``settled`` whether an outcome was given through it. ``borrow()`` is the
#: payload without a copy: a read-only memoryview of the queue's shared
#: memory, not checked for tearing, released by the outcome (a later use
#: raises ValueError; a slice still alive makes the outcome and
#: ``Queue.close`` raise BufferError). A Message cannot be pickled. Give exactly one outcome:
#: ``ack()``, ``nack(delay=0.0)`` or ``reject(reason)`` (``extend(lease)``
#: any number of times before). As a context manager it acks on normal exit
#: and nacks when an exception leaves the block (unless an outcome was
#: given).
Message = _native.Message


class DeadLetter:
    """A dead letter: ``id``, ``reason``, ``attempts``, ``first_enqueued_ns``,
    ``dead_ns``, ``last_consumer_pid``, ``key``, ``version``, ``length`` and,
    from :meth:`Queue.dead_letter`, ``data``."""

    __slots__ = ("id", "reason", "attempts", "first_enqueued_ns", "dead_ns",
                 "last_consumer_pid", "key", "version", "length", "data")

    def __init__(self, fields: Tuple[Any, ...]) -> None:
        (self.id, self.reason, self.attempts, self.first_enqueued_ns, self.dead_ns,
         self.last_consumer_pid, self.key, self.version, self.length, self.data) = fields

    def __repr__(self) -> str:
        return f"<shmq.DeadLetter id={self.id} reason={self.reason!r} attempts={self.attempts}>"


class Peeked:
    """A waiting message as :meth:`Queue.peek` saw it (a private copy):
    ``position``, ``state`` (``"ready"``, ``"pending"`` for a redelivery,
    ``"delayed"``), ``key``, ``version``, ``deliveries`` so far,
    ``enqueued_ns`` (CLOCK_MONOTONIC), ``not_before_ns`` (when a delayed
    message falls due, else None), ``expires_ns`` (its deadline: past it,
    it is never delivered; None without one, as :attr:`Message.expires_ns`)
    and ``data``."""

    __slots__ = ("position", "state", "key", "version", "deliveries", "enqueued_ns",
                 "not_before_ns", "expires_ns", "data")

    def __init__(self, fields: Tuple[int, str, int, int, int, int, Optional[int],
                                     Optional[int], bytes]) -> None:
        (self.position, self.state, self.key, self.version, self.deliveries,
         self.enqueued_ns, self.not_before_ns, self.expires_ns, self.data) = fields

    def __repr__(self) -> str:
        return (f"<shmq.Peeked position={self.position} state={self.state} "
                f"key={self.key} version={self.version} {len(self.data)} bytes>")


# ---------------------------------------------------------------------------
# Stats: typed, with the names and units of `shmq stats --json`, and
# read-only mappings.


class HistogramStats(Mapping[str, Any]):
    """One latency histogram of :meth:`Queue.stats`, in nanoseconds, named
    as in ``shmq stats --json``: ``count``, ``sum_ns``, ``mean_ns``,
    ``p50_ns``, ``p90_ns``, ``p99_ns``, ``p999_ns``, ``max_ns``. Also a
    read-only mapping of those names, which also takes the short names
    ``sum``, ``max``, ``p50``, ``p90``, ``p99`` and ``p999``."""

    __slots__ = ("count", "sum_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns",
                 "max_ns")
    # The slots' types (annotations only: the slots hold the values).
    count: int
    sum_ns: int
    mean_ns: float
    p50_ns: int
    p90_ns: int
    p99_ns: int
    p999_ns: int
    max_ns: int
    _ALIASES = {"sum": "sum_ns", "max": "max_ns", "mean": "mean_ns", "p50": "p50_ns",
                "p90": "p90_ns", "p99": "p99_ns", "p999": "p999_ns"}

    def __init__(self, d: Dict[str, int]) -> None:
        set_ = object.__setattr__
        set_(self, "count", d["count"])
        set_(self, "sum_ns", d["sum"])
        set_(self, "mean_ns", d["sum"] / d["count"] if d["count"] else 0.0)
        for q in ("p50", "p90", "p99", "p999", "max"):
            set_(self, q + "_ns", d[q])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"shmq.HistogramStats is read-only: {name}")

    def __getitem__(self, key: str) -> Any:
        name = self._ALIASES.get(key, key)
        if name not in self.__slots__:
            raise KeyError(key)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__slots__)

    def __len__(self) -> int:
        return len(self.__slots__)

    def __repr__(self) -> str:
        return (f"<shmq.HistogramStats count={self.count} p50_ns={self.p50_ns} "
                f"p99_ns={self.p99_ns} max_ns={self.max_ns}>")


class Stats(Mapping[str, Any]):
    """The metrics of :meth:`Queue.stats`: the names and units of
    ``shmq stats --json`` (durations and ages in nanoseconds), as
    attributes, and a read-only mapping of them.

    Gauges: ``queue`` (the path), ``capacity``, ``depth``, ``delayed``,
    ``in_flight``, ``reserved``, ``dlq_waiting``, ``dead_letters``,
    ``oldest_claimable_age_ns``, ``oldest_in_flight_age_ns``,
    ``producers``, ``consumers``, ``participants``, ``waiting_producers``,
    ``waiting_consumers``. ``counters``: a read-only mapping of the
    counters by name (``sent``, ``acked``, ...; each also an attribute and
    a key of its own: ``s.acked``, ``s["acked"]``). ``histograms``: the
    latency histograms by name (``time_in_queue``, ``processing_time``,
    ``end_to_end_time``; each also a key of its own), as
    :class:`HistogramStats`. And, beyond the JSON: ``taken_ns`` (when the
    snapshot was taken, CLOCK_MONOTONIC), ``keys_in_use``, ``key_capacity``,
    and ``sent_per_s``/``acked_per_s``, the rates since this handle's
    previous ``stats()`` (None on the first)."""

    _GAUGES = ("queue", "capacity", "depth", "delayed", "in_flight", "reserved",
               "dlq_waiting", "dead_letters", "oldest_claimable_age_ns",
               "oldest_in_flight_age_ns", "producers", "consumers", "participants",
               "waiting_producers", "waiting_consumers")
    _EXTRA = ("taken_ns", "keys_in_use", "key_capacity", "sent_per_s", "acked_per_s")
    _COUNTERS = ("sent", "claimed", "acked", "nacked", "rejected", "redelivered", "abandoned",
                 "stale", "conflated", "dead_lettered", "refused_full", "timeouts",
                 "key_waits", "reclaimed", "extended", "bytes_sent", "aborted", "lease_lost",
                 "dead_participants", "purged", "expired")
    _HISTOGRAMS = ("time_in_queue", "processing_time", "end_to_end_time")
    __slots__ = _GAUGES + _EXTRA + ("counters", "histograms", "_keys")

    def __init__(self, path: str, d: Dict[str, Any]) -> None:
        set_ = object.__setattr__
        set_(self, "queue", path)
        for k in self._GAUGES[1:] + self._EXTRA:
            set_(self, k, d.get(k))
        set_(self, "counters", types.MappingProxyType({k: d[k] for k in self._COUNTERS}))
        set_(self, "histograms", types.MappingProxyType(
            {k: HistogramStats(d[k]) for k in self._HISTOGRAMS}))
        set_(self, "_keys", self._GAUGES + ("counters", "histograms") + self._EXTRA
             + self._COUNTERS + self._HISTOGRAMS)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"shmq.Stats is read-only: {name}")

    def __getattr__(self, name: str) -> Any:
        # Only for the names not in __slots__: the counters.
        if name in Stats._COUNTERS:
            return self.counters[name]
        raise AttributeError(f"shmq.Stats has no attribute {name!r}")

    def __getitem__(self, key: str) -> Any:
        if key in self.counters:
            return self.counters[key]
        if key in self.histograms:
            return self.histograms[key]
        if key in self._GAUGES or key in self._EXTRA or key in ("counters", "histograms"):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def to_json(self) -> Dict[str, Any]:
        """A dict shaped like ``shmq stats --json`` (without the histograms'
        buckets)."""
        d: Dict[str, Any] = {k: getattr(self, k) for k in self._GAUGES}
        d["counters"] = dict(self.counters)
        d["histograms"] = {k: dict(h) for k, h in self.histograms.items()}
        return d

    def __repr__(self) -> str:
        return (f"<shmq.Stats {self.queue!r} depth={self.depth} in_flight={self.in_flight} "
                f"sent={self.counters['sent']} acked={self.counters['acked']}>")


# ---------------------------------------------------------------------------
# The queue.


def _reopen(cls: "type[Queue]", path: str, access: int, group_shared: bool,
            trust_any_owner: bool) -> "Queue":
    """Unpickles a :class:`Queue`: opens the file again."""
    return cls._open(path, access, group_shared, trust_any_owner)

_WAITS = {"spin": 0, "spin-then-sleep": 1, "sleep": 2}
_ACCESS_PARTICIPANT, _ACCESS_INSPECT, _ACCESS_READ_ONLY = 0, 1, 2


def _wake(fut: "asyncio.Future[None]") -> None:
    """Resolves an async wait's future (in its loop, from the waker
    thread's ``call_soon_threadsafe``) unless it is over already."""
    if not fut.done():
        fut.set_result(None)


def _path(path: Union[str, "os.PathLike[str]"]) -> str:
    p = os.fspath(path)
    return os.fsdecode(p) if isinstance(p, bytes) else p


class Queue(_native.Queue):
    """One attachment to a queue file. Create with :meth:`create`,
    :meth:`open` or :meth:`inspect`; use as a context manager or call
    :meth:`close`. Claims still held at close are redelivered at once.

    ``send(data, key=0, version=0, timeout=None, *, delay=0.0, ttl=None)``
    sends one message (bytes, bytearray or memoryview), waiting for room up
    to ``timeout`` seconds (None = forever); ``key`` 0 is no key,
    ``version`` 0 on a keyed send is the key's next version; ``ttl``
    (seconds; None or 0: the queue's default) is the message's time to
    live; it returns the version the message carries. ``claim(timeout=None)`` claims the next message
    (a :class:`Message`), raising ``Empty`` (timeout 0) or ``Timeout``.

    Attributes: ``path``, ``capacity``, ``max_message_size``,
    ``key_capacity``, ``lease`` (seconds), ``max_deliveries``,
    ``latest_only``, ``read_only`` and ``closed``."""

    # -- lifecycle --------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Union[str, "os.PathLike[str]"],
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
        sparse: bool = False,
        message_ttl: Optional[float] = None,
        on_expiry: str = "dead-letter",
    ) -> "Queue":
        """Creates a new queue file (``Exists`` if there is one) and attaches
        to it. ``lease`` and ``reservation_timeout`` are in seconds; ``wait``
        is ``"spin"``, ``"spin-then-sleep"`` or ``"sleep"``. ``mode`` is set
        on the new file whatever the umask (0o660 for a queue shared with a
        group, opened by the others with ``group_shared=True``); ``group``
        (a gid or a group name) is the group the file is given. The file's
        space is reserved at creation (``IoError`` "no space" when the file
        system cannot hold it); ``sparse=True`` leaves it sparse instead,
        allocated as it is first written.

        ``message_ttl`` (seconds, None = none) is the default time to live
        of a message: past its commit time plus that (or its send's own
        ``ttl``) it is never delivered, but moved to the dead letters with
        the reason "expired" (``on_expiry="dead-letter"``) or dropped
        (``on_expiry="drop"``), and counted in ``stats().expired``."""
        p = _path(path)
        ttl_ns = 0 if message_ttl is None else _duration_ns(message_ttl, "create: message_ttl")
        if on_expiry not in ("dead-letter", "drop"):
            raise InvalidArgument(
                f"on_expiry must be 'dead-letter' or 'drop', not {on_expiry!r}", 9)
        lease_ns = _duration_ns(lease, "create: lease")
        reservation_ns = _duration_ns(reservation_timeout, "create: reservation_timeout")
        if lease_ns == 0:
            raise InvalidArgument(f"{p}: create: lease is 0: every claim would be taken back at once", 9)
        if reservation_ns == 0:
            raise InvalidArgument(
                f"{p}: create: reservation_timeout is 0: every reservation would be abandoned", 9)
        if isinstance(group, str):
            try:
                group = grp.getgrnam(group).gr_gid
            except KeyError:
                raise NotFound(f"{p}: create: no group named {group!r}", 10) from None
        if wait not in _WAITS:
            raise InvalidArgument(f"wait must be one of {sorted(_WAITS)}, not {wait!r}", 9)
        try:
            h = _native.create(p, capacity, max_message_size, key_capacity, lease_ns,
                               max_deliveries, bool(latest_only), mode, group, dlq_capacity,
                               reservation_ns, participant_capacity, _WAITS[wait], ttl_ns,
                               on_expiry == "drop", bool(sparse))
        except OverflowError as e:
            raise InvalidArgument(f"{p}: create: an option is out of range: {e}", 9) from None
        return cls(h, p)

    @classmethod
    def _open(cls, path: Union[str, "os.PathLike[str]"], access: int, group_shared: bool,
              trust_any_owner: bool) -> "Queue":
        p = _path(path)
        return cls(_native.open(p, access, bool(group_shared), bool(trust_any_owner)), p)

    @classmethod
    def open(cls, path: Union[str, "os.PathLike[str]"], *, read_only: bool = False,
             group_shared: bool = False, trust_any_owner: bool = False) -> "Queue":
        """Opens an existing queue file as a participant; with
        ``read_only=True``, as a read-only handle that maps the file read-only,
        reads stats, verify and dead letters, and raises PermissionDenied on
        every change.

        The file must be a regular file of this user that nobody else may
        write (else PermissionDenied); ``group_shared`` accepts one its group
        may write, ``trust_any_owner`` any owner and mode."""
        access = _ACCESS_READ_ONLY if read_only else _ACCESS_PARTICIPANT
        return cls._open(path, access, group_shared, trust_any_owner)

    @classmethod
    def inspect(cls, path: Union[str, "os.PathLike[str]"], *, group_shared: bool = False,
                trust_any_owner: bool = False) -> "Queue":
        """Opens a queue file without attaching: stats, verify, dead letters.
        Read-only when this process may not write the file."""
        return cls._open(path, _ACCESS_INSPECT, group_shared, trust_any_owner)

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<shmq.Queue {self.path!r} capacity={self.capacity}{' closed' if self.closed else ''}>"

    def __reduce__(self) -> Any:
        """Pickled as its path and open options: unpickling opens the file
        again, a handle of the unpickling process's own (a spawn or
        forkserver worker's). A created queue is opened again as a
        participant, with ``group_shared`` when its group may write it."""
        if self.closed:
            raise Closed(f"{self.path}: pickle: the queue was closed", 17)
        return (_reopen, (type(self), self.path) + tuple(self._reopen_args))

    # -- sending ----------------------------------------------------------

    def send_many(self, messages: Iterable[Buffer], timeout: Optional[float] = None) -> int:
        """Sends messages without keys, in order, in batches; returns how many
        were sent. Waits for room up to ``timeout`` seconds in all (None =
        until every one is sent); with 0, sends what fits now."""
        timeout_ns = _ns(timeout, "send_many: timeout")
        msgs = messages if isinstance(messages, (list, tuple)) else list(messages)
        if not msgs:
            return 0
        blob = b"".join(msgs)
        lens = [len(m) if isinstance(m, bytes) else memoryview(m).nbytes for m in msgs]
        return self._send_packed(blob, 0, lens, timeout_ns)

    def send_packed(self, data: Buffer, size: Union[int, Sequence[int]],
                    timeout: Optional[float] = None) -> int:
        """Sends the messages packed one after another in ``data`` (bytes,
        bytearray, memoryview, array...): each ``size`` bytes long when
        ``size`` is an int (``data`` is then a whole number of them), else
        message ``i`` is ``size[i]`` bytes. Without keys, in order; returns
        how many were sent, waiting for room like :meth:`send_many`. The
        fastest way to send from Python: one call per batch that fits and no
        Python object per message."""
        timeout_ns = _ns(timeout, "send_packed: timeout")
        mv = memoryview(data)
        if not mv.c_contiguous:
            raise InvalidArgument("send_packed: data must be contiguous", 9)
        nbytes = mv.nbytes
        if isinstance(size, int):
            if size <= 0 or nbytes % size:
                raise InvalidArgument(
                    f"send_packed: {nbytes} bytes are not a whole number of {size}-byte messages", 9)
            if nbytes == 0:
                return 0
            return self._send_packed(data, size, None, timeout_ns)
        lens = list(size)
        if any(n < 0 for n in lens) or sum(lens) != nbytes:
            raise InvalidArgument(
                f"send_packed: the sizes add up to {sum(lens)}, data has {nbytes} bytes", 9)
        if not lens:
            return 0
        return self._send_packed(data, 0, lens, timeout_ns)

    # -- claiming ---------------------------------------------------------

    def claim_many(self, count: int, timeout: Optional[float] = None) -> List[Message]:
        """Waits up to ``timeout`` for the first message, then takes what is
        claimable now, up to ``count``. Raises ``Empty``/``Timeout`` when
        there is none."""
        if count <= 0:
            raise InvalidArgument("claim_many: count must be positive", 9)
        return self._claim_many(count, _ns(timeout, "claim: timeout"))

    def take_packed(self, count: int, timeout: Optional[float] = None) -> Tuple[bytes, List[int]]:
        """Claims up to ``count`` messages (waiting up to ``timeout`` for the
        first, like :meth:`claim_many`), copies their payloads one after
        another and acks them all: one call, no Python object per message.
        Returns ``(data, lengths)``: the payloads packed in ``data``,
        message ``i`` being ``lengths[i]`` bytes. Raises ``Empty``/``Timeout``
        when there is none.

        The messages are acked before they are returned, so a consumer that
        dies with them in hand loses them (use :meth:`claim_many` and
        :meth:`ack_many` to ack after processing). A claim whose lease ran
        out before the ack is redelivered as well (at least once)."""
        if count <= 0:
            raise InvalidArgument("take_packed: count must be positive", 9)
        return self._take_packed(count, _ns(timeout, "take_packed: timeout"))

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

    # -- asyncio ----------------------------------------------------------

    async def claim_async(self, timeout: Optional[float] = None) -> Message:
        """:meth:`claim` for asyncio: waits for the next message up to
        ``timeout`` seconds (None = forever) without blocking the event
        loop, woken by the engine's waker thread. Raises ``Empty``
        (timeout 0) or ``Timeout``."""
        timeout_ns = _ns(timeout, "claim: timeout")
        m = self._claim_try()
        if m is not None:
            return m
        loop = asyncio.get_running_loop()
        wait = _native.AsyncWait()
        try:
            while True:
                fut: asyncio.Future[None] = loop.create_future()
                m = self._claim_poll(wait, timeout_ns, loop.call_soon_threadsafe, _wake, fut)
                if m is not None:
                    return m
                await fut
        finally:
            wait.release()

    async def send_async(self, data: Buffer, key: int = 0, version: int = 0,
                         timeout: Optional[float] = None, *, delay: float = 0.0,
                         ttl: Optional[float] = None) -> int:
        """:meth:`send` for asyncio: waits for room up to ``timeout``
        seconds (None = forever) without blocking the event loop. Returns
        the version the message carries. ``ttl`` (seconds) is the message's
        time to live, as :meth:`send`'s (None or 0: the queue's default)."""
        timeout_ns = _ns(timeout, "send: timeout")
        delay_ns = _duration_ns(delay, "send: delay")
        ttl_ns = 0 if ttl is None else _duration_ns(ttl, "send: ttl")
        if key < 0 or version < 0:
            raise InvalidArgument("send: key and version cannot be negative", 9)
        v = self._send_try(data, key, version, delay_ns, ttl_ns)
        if v is not None:
            return v
        loop = asyncio.get_running_loop()
        wait = _native.AsyncWait()
        try:
            while True:
                fut: asyncio.Future[None] = loop.create_future()
                v = self._send_poll(wait, data, key, version, timeout_ns, delay_ns, ttl_ns,
                                    loop.call_soon_threadsafe, _wake, fut)
                if v is not None:
                    return v
                await fut
        finally:
            wait.release()

    async def messages_async(self, timeout: Optional[float] = None) -> AsyncIterator[Message]:
        """:meth:`messages` for asyncio (``async for m in
        q.messages_async(): ...``): yields messages as they come; stops
        after ``timeout`` seconds without one (None = never stops). Give
        each one its outcome."""
        _ns(timeout, "messages: timeout")
        while True:
            try:
                m = await self.claim_async(timeout)
            except (Empty, Timeout):
                return
            yield m

    # -- stats, dead letters ----------------------------------------------

    def stats(self) -> Stats:
        """The metrics, as :class:`Stats`: typed, named and in the units of
        ``shmq stats --json``, and a read-only mapping (``s["acked"]``,
        ``s.acked``, ``s.counters["acked"]``; ``s["time_in_queue"]["p99"]``,
        ``s.histograms["time_in_queue"].p99_ns``). ``sent_per_s`` and
        ``acked_per_s`` are rates since this handle's previous call (None on
        the first)."""
        d = self._stats()
        prev = getattr(self, "_last_stats", None)
        if prev is not None and d["taken_ns"] > prev["taken_ns"]:
            dt = (d["taken_ns"] - prev["taken_ns"]) / 1e9
            d["sent_per_s"] = (d["sent"] - prev["sent"]) / dt
            d["acked_per_s"] = (d["acked"] - prev["acked"]) / dt
        else:
            d["sent_per_s"] = None
            d["acked_per_s"] = None
        self._last_stats = d
        return Stats(self.path, d)

    def peek(self, count: int = 0) -> List[Peeked]:
        """Copies of up to ``count`` (0: every) waiting message, ready, pending
        redelivery or delayed, in ring order; not those in flight. Claims
        nothing and counts no delivery, so it also works on a handle opened
        ``read_only=True``. A scan of every slot: for browsing, not a loop."""
        if count < 0:
            raise InvalidArgument(f"{self.path}: peek: count is negative ({count})", 9)
        return [Peeked(t) for t in self._peek(count)]

    def dead_letters(self) -> List[DeadLetter]:
        """Every dead letter, oldest first (without payloads)."""
        return [DeadLetter(t) for t in self._dead_letters()]

    def dead_letter(self, id: int) -> DeadLetter:
        """The dead letter ``id`` with its payload in ``data``."""
        return DeadLetter(self._dead_letter(id))

    def redrive(self, id: Optional[int] = None) -> int:
        """Sends dead letter ``id`` (or all) back to the queue; returns how many."""
        return self._redrive(id or None)

    def purge(self) -> int:
        """Removes every waiting message (ready, pending redelivery,
        delayed); messages claimed by a consumer stay with it, and its ack
        still succeeds. Returns how many were removed (counted in
        ``stats().purged``); producers waiting for room are woken."""
        return self._purge_queue()

    def purge_dead_letters(self, id: Optional[int] = None) -> int:
        """Deletes dead letter ``id`` (or all); returns how many."""
        return self._purge(id or None)
