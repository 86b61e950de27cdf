"""G.711 A-law and u-law, and the versions of the linked C libraries.

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader


def alaw_encode(pcm: Buffer) -> bytes:
    """Encode 16-bit linear PCM to G.711 A-law, one byte per sample.

    Raises ``ValueError`` if ``pcm`` is not a whole number of 16-bit samples.
    """
    result: bytes = _loader.impl.alaw_encode(pcm)
    return result


def ulaw_encode(pcm: Buffer) -> bytes:
    """Encode 16-bit linear PCM to G.711 u-law, one byte per sample.

    Raises ``ValueError`` if ``pcm`` is not a whole number of 16-bit samples.
    """
    result: bytes = _loader.impl.ulaw_encode(pcm)
    return result


def alaw_decode(codes: Buffer) -> bytes:
    """Decode G.711 A-law bytes to 16-bit linear PCM (two bytes per code)."""
    result: bytes = _loader.impl.alaw_decode(codes)
    return result


def ulaw_decode(codes: Buffer) -> bytes:
    """Decode G.711 u-law bytes to 16-bit linear PCM (two bytes per code)."""
    result: bytes = _loader.impl.ulaw_decode(codes)
    return result


def library_versions() -> dict[str, str]:
    """Versions of the C libraries the core is linked with (empty for the Python twin)."""
    result: dict[str, str] = _loader.impl.library_versions()
    return result
