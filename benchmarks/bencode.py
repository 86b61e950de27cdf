"""Bencode, the dictionary encoding of rtpengine's ng control protocol.

Values are integers, byte strings, lists and dictionaries with byte-string
keys. rtpengine does not sort dictionary keys, so the decoder accepts any
order (but not a key twice). It parses what comes off a UDP socket: every
malformed input raises :class:`BencodeError` naming the problem and where,
never anything else, and nesting is bounded so no input can exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

Value: TypeAlias = int | bytes | list["Value"] | dict[bytes, "Value"]
# What encode() takes: Value, and str (as UTF-8) anywhere a byte string goes.
Encodable: TypeAlias = (
    int
    | bytes
    | str
    | Sequence["Encodable"]
    | Mapping[str, "Encodable"]
    | Mapping[bytes, "Encodable"]
)

# ng messages nest two or three levels (a dictionary of lists); far deeper is an attack.
MAX_DEPTH = 64
MAX_INTEGER_DIGITS = 20


class BencodeError(ValueError):
    """Bytes that are not one well-formed bencoded value."""


def encode(value: Encodable) -> bytes:
    """The bencoding of ``value``; ``str`` is encoded as UTF-8 bytes."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans: use 'yes'/'no' or 1/0 as the protocol says")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        raw = value.encode("utf-8") if isinstance(value, str) else value
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, Mapping):
        out.append(b"d")
        keys: dict[bytes, Encodable] = {
            k.encode("utf-8") if isinstance(k, str) else k: v for k, v in value.items()
        }
        for key in sorted(keys):  # the standard's order; rtpengine reads any
            _encode(key, out)
            _encode(keys[key], out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode a {type(value).__name__}")


def decode(data: bytes) -> Value:
    """The one value ``data`` holds; trailing bytes are an error."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} trailing bytes after the value at offset {end}")
    return value


def _decode(data: bytes, at: int, depth: int) -> tuple[Value, int]:
    if at >= len(data):
        raise BencodeError(f"data ends at offset {at} where a value should start")
    if depth > MAX_DEPTH:
        raise BencodeError(f"nesting deeper than {MAX_DEPTH} at offset {at}")
    head = data[at : at + 1]
    if head == b"i":
        end = data.find(b"e", at + 1)
        if end < 0:
            raise BencodeError(f"integer at offset {at} has no closing 'e'")
        return _integer(data[at + 1 : end], at), end + 1
    if head.isdigit():
        return _string(data, at)
    if head == b"l":
        items: list[Value] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at, depth + 1)
            items.append(item)
        return items, at + 1
    if head == b"d":
        start = at
        entries: dict[bytes, Value] = {}
        at += 1
        while data[at : at + 1] != b"e":
            if not data[at : at + 1].isdigit():
                raise BencodeError(f"dictionary key at offset {at} is not a byte string")
            key, at = _string(data, at)
            if key in entries:
                raise BencodeError(f"dictionary at offset {start} has the key {key!r} twice")
            entries[key], at = _decode(data, at, depth + 1)
        return entries, at + 1
    raise BencodeError(f"unexpected byte {head!r} at offset {at}")


def _integer(digits: bytes, at: int) -> int:
    body = digits[1:] if digits.startswith(b"-") else digits
    # The standard's canonical form: no leading zeros, no "-0", digits only; and
    # no more digits than a 64-bit integer has (ng carries counters and ports).
    if not body.isdigit() or len(body) > MAX_INTEGER_DIGITS:
        raise BencodeError(
            f"integer at offset {at} is not up to 20 decimal digits: {digits[:24]!r}"
        )
    if (len(body) > 1 and body.startswith(b"0")) or digits == b"-0":
        raise BencodeError(f"integer at offset {at} is not canonical: {digits[:20]!r}")
    return int(digits)


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    colon = data.find(b":", at, at + 21)  # a length longer than 20 digits fits nowhere
    if colon < 0:
        raise BencodeError(f"string length at offset {at} has no ':'")
    length = data[at:colon]
    if not length.isdigit() or (len(length) > 1 and length[:1] == b"0"):
        raise BencodeError(f"string length at offset {at} is not canonical: {length!r}")
    end = colon + 1 + int(length)
    if end > len(data):
        raise BencodeError(
            f"string at offset {at} claims {int(length)} bytes, {len(data) - colon - 1} remain"
        )
    return data[colon + 1 : end], end
