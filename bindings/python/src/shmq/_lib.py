"""The C library through ctypes: struct layouts and function signatures,
mirroring include/shmq.h (ABI version 2)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

ABI_VERSION = 2
FLAG_LATEST_ONLY = 1
FLAG_SET_GROUP = 2
ACCESS_PARTICIPANT = 0
ACCESS_INSPECT = 1
ACCESS_READ_ONLY = 2
OPEN_GROUP_SHARED = 1
OPEN_TRUST_ANY_OWNER = 2
DLQ_ALL = 0
REASON_MAX = 256


class Options(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("capacity", c_uint64),
        ("max_message_size", c_uint32),
        ("key_capacity", c_uint64),
        ("lease_ns", c_uint64),
        ("max_deliveries", c_uint32),
        ("flags", c_uint32),
        ("mode", c_uint32),
        ("wait_strategy", c_uint32),
        ("dlq_capacity", c_uint64),
        ("reservation_timeout_ns", c_uint64),
        ("participant_capacity", c_uint32),
        ("group", c_uint32),
    ]


class OpenOptions(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("access", c_uint32),
        ("flags", c_uint32),
    ]


class SendOptions(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("key", c_uint64),
        ("version", c_uint64),
        ("timeout_ns", c_int64),
        ("delay_ns", c_uint64),
    ]


class Message(Structure):
    """shmq_message: filled by the claim calls, copied whole (never built
    field by field: its size, handle_id and reserved words are checked)."""

    _fields_ = [
        ("size", c_uint32),
        ("deliveries", c_uint32),
        ("data", POINTER(c_uint8)),
        ("len", c_size_t),
        ("key", c_uint64),
        ("version", c_uint64),
        ("enqueued_ns", c_uint64),
        ("position", c_uint64),
        ("token", c_uint64),
        ("handle_id", c_uint64),
        ("reserved", c_uint64 * 3),
    ]


class Histogram(Structure):
    _fields_ = [
        (name, c_uint64)
        for name in ("count", "sum", "p50", "p90", "p99", "p999", "max")
    ]


STAT_FIELDS = (
    "taken_ns capacity depth delayed in_flight reserved dlq_waiting dead_letters "
    "oldest_claimable_age_ns oldest_in_flight_age_ns producers consumers participants "
    "sent claimed acked nacked rejected redelivered abandoned stale conflated "
    "dead_lettered refused_full timeouts key_waits reclaimed extended bytes_sent "
    "aborted lease_lost dead_participants"
).split()
HISTOGRAM_FIELDS = ("time_in_queue", "processing_time", "end_to_end_time")
STAT_FIELDS_2 = ("keys_in_use", "key_capacity")


class Stats(Structure):
    _fields_ = (
        [("size", c_uint32)]
        + [(name, c_uint64) for name in STAT_FIELDS]
        + [(name, Histogram) for name in HISTOGRAM_FIELDS]
        + [(name, c_uint64) for name in STAT_FIELDS_2]
    )


class Info(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("capacity", c_uint64),
        ("max_message_size", c_uint32),
        ("key_capacity", c_uint64),
        ("lease_ns", c_uint64),
        ("max_deliveries", c_uint32),
        ("flags", c_uint32),
        ("dlq_capacity", c_uint64),
        ("file_size", c_uint64),
        ("access", c_uint32),
    ]


class DeadLetter(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("id", c_uint64),
        ("attempts", c_uint64),
        ("first_enqueued_ns", c_uint64),
        ("dead_ns", c_uint64),
        ("last_consumer_pid", c_uint64),
        ("key", c_uint64),
        ("version", c_uint64),
        ("len", c_size_t),
        ("reason", c_char * REASON_MAX),
    ]


class Iovec(Structure):
    _fields_ = [("data", c_void_p), ("len", c_size_t)]


def _candidates() -> list[str]:
    env = os.environ.get("SHMQ_LIBRARY")
    if env:
        return [env]
    found = ctypes.util.find_library("shmq")
    names = [found] if found else []
    return names + ["libshmq.so.0", "libshmq.so"]


def _load() -> ctypes.CDLL:
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise ImportError(
        "shmq: cannot load the shared library libshmq.so.0 "
        "(install it with bindings/c/install.sh, or set SHMQ_LIBRARY to its path): "
        + "; ".join(errors)
    )


lib = _load()

_Q = c_void_p  # shmq_queue *
_S = c_int  # shmq_status

_SIGNATURES = {
    "shmq_abi_version": (c_uint32, []),
    "shmq_status_name": (c_char_p, [c_int]),
    "shmq_last_error": (c_char_p, []),
    "shmq_options_init": (None, [POINTER(Options)]),
    "shmq_send_options_init": (None, [POINTER(SendOptions)]),
    "shmq_create": (_S, [c_char_p, POINTER(Options), POINTER(_Q)]),
    "shmq_open": (_S, [c_char_p, POINTER(_Q)]),
    "shmq_open_options_init": (None, [POINTER(OpenOptions)]),
    "shmq_open_ex": (_S, [c_char_p, POINTER(OpenOptions), POINTER(_Q)]),
    "shmq_inspect": (_S, [c_char_p, POINTER(_Q)]),
    "shmq_close": (_S, [_Q]),
    "shmq_get_info": (_S, [_Q, POINTER(Info)]),
    "shmq_verify": (_S, [_Q]),
    "shmq_recover": (_S, [_Q]),
    "shmq_flush": (_S, [_Q]),
    "shmq_send": (_S, [_Q, c_void_p, c_size_t, c_uint64, c_uint64, c_int64]),
    "shmq_send_ex": (
        _S,
        [_Q, c_void_p, c_size_t, POINTER(SendOptions), POINTER(c_uint64), POINTER(c_uint64)],
    ),
    "shmq_send_batch": (_S, [_Q, POINTER(Iovec), c_size_t, POINTER(c_size_t), c_int64]),
    "shmq_send_packed": (
        _S,
        [_Q, c_void_p, c_size_t, c_void_p, c_size_t, POINTER(c_size_t), c_int64],
    ),
    "shmq_claim": (_S, [_Q, POINTER(Message), c_int64]),
    "shmq_claim_copy": (_S, [_Q, POINTER(Message), c_void_p, c_size_t, c_int64]),
    "shmq_claim_packed": (
        _S,
        [_Q, c_void_p, c_size_t, POINTER(Message), c_size_t, POINTER(c_size_t), c_int64],
    ),
    "shmq_read": (_S, [_Q, POINTER(Message), c_void_p, c_size_t, POINTER(c_size_t)]),
    "shmq_ack": (_S, [_Q, POINTER(Message)]),
    "shmq_nack": (_S, [_Q, POINTER(Message), c_uint64]),
    "shmq_reject": (_S, [_Q, POINTER(Message), c_char_p]),
    "shmq_extend_lease": (_S, [_Q, POINTER(Message), c_uint64]),
    "shmq_ack_batch": (_S, [_Q, POINTER(Message), c_size_t, POINTER(c_size_t)]),
    "shmq_latest_acked_version": (_S, [_Q, c_uint64, POINTER(c_uint64)]),
    "shmq_get_stats": (_S, [_Q, POINTER(Stats)]),
    "shmq_dlq_list": (_S, [_Q, POINTER(DeadLetter), c_size_t, POINTER(c_size_t)]),
    "shmq_dlq_get": (
        _S,
        [_Q, c_uint64, POINTER(DeadLetter), c_void_p, c_size_t, POINTER(c_size_t)],
    ),
    "shmq_dlq_redrive": (_S, [_Q, c_uint64, POINTER(c_size_t)]),
    "shmq_dlq_purge": (_S, [_Q, c_uint64, POINTER(c_size_t)]),
}

for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

# The batch calls once more, as separate function objects (``lib[name]``
# makes a new one) that take plain addresses: converting an int to a
# ``void *`` is the cheapest argument ctypes has, so the packed batch calls
# of the package cost one conversion per argument and nothing per message.
def _by_address(name: str, argtypes: list) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    f = lib[name]
    f.restype = _S
    f.argtypes = argtypes
    return f


send_packed_at = _by_address(
    "shmq_send_packed", [_Q, c_void_p, c_size_t, c_void_p, c_size_t, c_void_p, c_int64]
)
claim_packed_at = _by_address(
    "shmq_claim_packed", [_Q, c_void_p, c_size_t, c_void_p, c_size_t, c_void_p, c_int64]
)
ack_batch_at = _by_address("shmq_ack_batch", [_Q, c_void_p, c_size_t, c_void_p])

# Where a message's length sits in an array of shmq_message read as 64-bit
# words (the packed calls read lengths from there without a Message object).
MESSAGE_WORDS = ctypes.sizeof(Message) // 8
MESSAGE_LEN_WORD = Message.len.offset // 8
assert ctypes.sizeof(Message) % 8 == 0 and ctypes.sizeof(c_size_t) == 8

if lib.shmq_abi_version() != ABI_VERSION:
    raise ImportError(
        f"shmq: the loaded library has ABI version {lib.shmq_abi_version()}, "
        f"this package needs {ABI_VERSION}"
    )

__all__ = ["lib", "c_char"]
