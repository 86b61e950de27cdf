"""Pure-Python twin of the compiled core: slow, obvious, and the yardstick.

Every kernel here follows the written standard step by step so the C++ one
can be tested against it. ``CALLBOX_CORE=python`` makes ``import core`` use
this module instead of the extension.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

_ALAW_SEGMENT_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_ULAW_SEGMENT_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def _alaw_from_linear(sample: int) -> int:
    pcm = sample >> 3
    mask = 0xD5
    if pcm < 0:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _ALAW_SEGMENT_END)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (pcm >> 1) if seg < 2 else (pcm >> seg)
    return ((seg << 4) | (quant & 0x0F)) ^ mask


def _ulaw_from_linear(sample: int) -> int:
    pcm = sample >> 2
    mask = 0xFF
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    pcm = min(pcm, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(pcm, _ULAW_SEGMENT_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _ulaw_to_linear(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return _ULAW_BIAS - t if u & 0x80 else t - _ULAW_BIAS


def _samples(pcm: Buffer) -> array[int]:
    data = bytes(pcm)
    if len(data) % 2:
        raise ValueError(
            f"PCM input must be whole 16-bit samples: got {len(data)} bytes (an odd length)"
        )
    samples = array("h")
    samples.frombytes(data)
    return samples


def alaw_encode(pcm: Buffer, /) -> bytes:
    return bytes(_alaw_from_linear(s) for s in _samples(pcm))


def ulaw_encode(pcm: Buffer, /) -> bytes:
    return bytes(_ulaw_from_linear(s) for s in _samples(pcm))


def alaw_decode(codes: Buffer, /) -> bytes:
    return array("h", (_alaw_to_linear(c) for c in bytes(codes))).tobytes()


def ulaw_decode(codes: Buffer, /) -> bytes:
    return array("h", (_ulaw_to_linear(c) for c in bytes(codes))).tobytes()


def library_versions() -> dict[str, str]:
    return {}
