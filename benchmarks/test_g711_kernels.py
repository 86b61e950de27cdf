"""G.711 kernels: one 20 ms frame (the packet path's unit) and one second of audio.

``make bench`` runs these with timing on and writes benchmarks/results/;
``make test`` runs each once with timing off, so the benchmarks never rot.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections.abc import Callable
from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core
from core import _reference

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def _tone(samples: int) -> bytes:
    return array(
        "h", (int(12000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(samples))
    ).tobytes()


FRAME_PCM = _tone(FRAME)
SECOND_PCM = _tone(RATE)

IMPLEMENTATIONS: dict[str, ModuleType] = {"core": core, "python-reference": _reference}


@pytest.mark.parametrize("name", ["core", "python-reference"])
def test_alaw_encode_frame(benchmark: BenchmarkFixture, name: str) -> None:
    out = benchmark(IMPLEMENTATIONS[name].alaw_encode, FRAME_PCM)
    assert len(out) == FRAME


@pytest.mark.parametrize("name", ["core", "python-reference"])
def test_alaw_decode_frame(benchmark: BenchmarkFixture, name: str) -> None:
    codes = core.alaw_encode(FRAME_PCM)
    out = benchmark(IMPLEMENTATIONS[name].alaw_decode, codes)
    assert len(out) == 2 * FRAME


SECOND_KERNELS: dict[str, Callable[[bytes], bytes]] = {
    "ulaw_encode-core": core.ulaw_encode,
    "ulaw_encode-audioop": lambda pcm: audioop.lin2ulaw(pcm, 2),
    "alaw_decode-core": core.alaw_decode,
    "alaw_decode-audioop": lambda codes: audioop.alaw2lin(codes, 2),
}


@pytest.mark.parametrize("kernel", list(SECOND_KERNELS))
def test_one_second_of_audio(benchmark: BenchmarkFixture, kernel: str) -> None:
    """Whole buffers: the C++ table lookups against audioop's segment search."""
    data = SECOND_PCM if "encode" in kernel else core.alaw_encode(SECOND_PCM)
    out = benchmark(SECOND_KERNELS[kernel], data)
    assert len(out) == (RATE if "encode" in kernel else 2 * RATE)
