"""Callbox media core: the compiled engine that every call's audio passes through.

This package is the public, typed surface. The work is done by a private C++
extension (``core._core``, built by setup.py). Two environment switches pick
another implementation at import time:

- ``CALLBOX_CORE=sanitize``: the AddressSanitizer/UBSan build
  (``core._core_sanitize``, built with ``CALLBOX_SANITIZE=1``);
- ``CALLBOX_CORE=python``: the pure-Python reference twin (``core._reference``),
  slow but obvious, used to test the compiled kernels against.

Audio is 16-bit signed linear PCM in native byte order, 8 kHz unless a
function says otherwise. Functions take any bytes-like object.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "IMPLEMENTATION",
    "alaw_decode",
    "alaw_encode",
    "library_versions",
    "ulaw_decode",
    "ulaw_encode",
]


def _load() -> tuple[str, ModuleType]:
    choice = os.environ.get("CALLBOX_CORE", "native")
    if choice == "native":
        from core import _core

        return choice, _core
    if choice == "sanitize":
        from core import _core_sanitize

        return choice, _core_sanitize
    if choice == "python":
        from core import _reference

        return choice, _reference
    raise ImportError(
        f"CALLBOX_CORE={choice!r} is not an implementation: use native, sanitize or python"
    )


IMPLEMENTATION, _impl = _load()
"""Which implementation is loaded: ``native``, ``sanitize`` or ``python``."""


def alaw_encode(pcm: Buffer) -> bytes:
    """Encode 16-bit linear PCM to G.711 A-law, one byte per sample.

    Raises ``ValueError`` if ``pcm`` is not a whole number of 16-bit samples.
    """
    result: bytes = _impl.alaw_encode(pcm)
    return result


def ulaw_encode(pcm: Buffer) -> bytes:
    """Encode 16-bit linear PCM to G.711 u-law, one byte per sample.

    Raises ``ValueError`` if ``pcm`` is not a whole number of 16-bit samples.
    """
    result: bytes = _impl.ulaw_encode(pcm)
    return result


def alaw_decode(codes: Buffer) -> bytes:
    """Decode G.711 A-law bytes to 16-bit linear PCM (two bytes per code)."""
    result: bytes = _impl.alaw_decode(codes)
    return result


def ulaw_decode(codes: Buffer) -> bytes:
    """Decode G.711 u-law bytes to 16-bit linear PCM (two bytes per code)."""
    result: bytes = _impl.ulaw_decode(codes)
    return result


def library_versions() -> dict[str, str]:
    """Versions of the C libraries the core is linked with (empty for the Python twin)."""
    result: dict[str, str] = _impl.library_versions()
    return result
