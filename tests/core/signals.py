"""Test signals and measurements for the codec tests: tones and Goertzel.

Levels are in dBm0 with spandsp's convention (a full-scale sine is +3.14 dBm0,
G.711's digital milliwatt), so generated and measured levels compare with
the levels the C++ side is configured in.
"""

from __future__ import annotations

import math
from array import array

FULL_SCALE_DBM0 = 3.14


def amplitude(level_dbm0: float) -> float:
    """Peak amplitude of a sine at ``level_dbm0``."""
    return 32768.0 * 10 ** ((level_dbm0 - FULL_SCALE_DBM0) / 20)


def dbm0(peak: float) -> float:
    """Level of a sine with peak amplitude ``peak``."""
    return 20 * math.log10(max(peak, 1e-9) / 32768.0) + FULL_SCALE_DBM0


def tones(parts: list[tuple[float, float]], rate: int, samples: int, start: int = 0) -> list[float]:
    """Sum of sines given as (frequency, level dBm0), from sample ``start``."""
    return [
        sum(amplitude(level) * math.sin(2 * math.pi * f * n / rate) for f, level in parts)
        for n in range(start, start + samples)
    ]


def pcm(samples: list[float]) -> bytes:
    """16-bit native PCM of ``samples``, rounded and clipped."""
    return array("h", (max(-32768, min(32767, round(s))) for s in samples)).tobytes()


def tone_pcm(frequency: float, level_dbm0: float, rate: int, samples: int, start: int = 0) -> bytes:
    """One sine as PCM."""
    return pcm(tones([(frequency, level_dbm0)], rate, samples, start))


def samples_of(data: bytes) -> array[int]:
    """PCM bytes as an array of samples."""
    out = array("h")
    out.frombytes(data)
    return out


def goertzel_peak(data: bytes, rate: int, frequency: float) -> float:
    """Peak amplitude of the ``frequency`` component of PCM ``data`` (Goertzel)."""
    samples = samples_of(data)
    coeff = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2 * math.sqrt(max(power, 0.0)) / len(samples)


def dominant_frequency(data: bytes, rate: int, low: int, high: int, step: int = 5) -> int:
    """The frequency in [low, high] (``step`` Hz grid) with the most energy."""
    return max(range(low, high + 1, step), key=lambda f: goertzel_peak(data, rate, f))


def rms(data: bytes) -> float:
    """Root mean square of PCM ``data``."""
    samples = samples_of(data)
    return math.sqrt(sum(x * x for x in samples) / max(len(samples), 1))
