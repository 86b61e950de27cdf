"""Key layouts for LMDB: byte strings that sort the way range scans need them.

LMDB orders keys bytewise, so numbers go in big-endian and fixed width:
a call keyed by ``time_key(start, id)`` sorts by start time, and every call
of a day is one contiguous range between ``time_key(day_start)`` and
``time_key(day_end)``.
"""

from __future__ import annotations

import struct

_U64 = struct.Struct(">Q")
SEPARATOR = b"\x00"


def time_key(microseconds: int, suffix: bytes = b"") -> bytes:
    """A key that sorts by time: big-endian u64 microseconds since the epoch, then ``suffix``."""
    if not 0 <= microseconds < 1 << 64:
        raise ValueError(f"time must be 0..2^64-1 microseconds since the epoch, got {microseconds}")
    return _U64.pack(microseconds) + suffix


def time_of(key: bytes) -> int:
    """The microseconds since the epoch at the front of a ``time_key``."""
    (value,) = _U64.unpack_from(key)
    return int(value)


def name_key(*parts: str) -> bytes:
    """A key from one or more names; parts are joined with a NUL so prefixes scan cleanly."""
    for part in parts:
        if "\x00" in part:
            raise ValueError(f"a key part may not contain NUL: {part!r}")
    return SEPARATOR.join(p.encode("utf-8") for p in parts)


def prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key that starts with ``prefix`` (None: no such key)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
