"""The recorder: one frame pushed into the ring, and MP3 conversion per minute of audio.

The push crosses the binding and the public wrapper, so it bounds from above
what the engine's worker pays (it will push in C++). The ring is large enough
that the writer thread keeps up and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core

MINUTE_FRAMES = 60 * 1000 // core.FRAME_MS


@pytest.fixture
def service() -> Iterator[core.RecorderService]:
    """A recorder service for one benchmark."""
    with core.RecorderService() as svc:
        yield svc


@pytest.mark.parametrize("rate", [8000, 16000])
def test_record_push_per_frame(
    benchmark: BenchmarkFixture, service: core.RecorderService, tmp_path: Path, rate: int
) -> None:
    rec = service.start(tmp_path / "call.wav", sample_rate=rate, ring_frames=100000)
    frame = bytes(rec.frame_bytes)
    benchmark(rec.write, frame, frame)
    assert rec.close().frames_written > 0


@pytest.mark.parametrize(
    ("rate", "mode"), [(8000, "mono"), (16000, "mono"), (16000, "joint_stereo")]
)
def test_wav_to_mp3_per_minute_of_audio(
    benchmark: BenchmarkFixture,
    service: core.RecorderService,
    tmp_path: Path,
    rate: int,
    mode: str,
) -> None:
    wav = tmp_path / "call.wav"
    rec = service.start(wav, sample_rate=rate, ring_frames=MINUTE_FRAMES)
    # A sweep-like signal, so LAME has something to encode (silence is cheaper).
    frame = bytes((i * 37) & 0xFF for i in range(rec.frame_bytes))
    for _ in range(MINUTE_FRAMES):
        rec.write(frame, frame[::-1])
    rec.close()
    bitrate = 32 if mode == "mono" else 64
    benchmark(core.wav_to_mp3, wav, tmp_path / "call.mp3", bitrate_kbps=bitrate, mode=mode)
