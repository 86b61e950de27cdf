"""Resampling between 8, 16 and 48 kHz keeps passband tones and removes
what the lower rate cannot carry."""

from __future__ import annotations

import pytest

import core
from tests.core.signals import dbm0, goertzel_peak, rms, tone_pcm

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the resampler is in the compiled core only"
)

PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]


def resample_in_frames(resampler: core.Resampler, pcm: bytes, frame_bytes: int) -> bytes:
    return b"".join(
        resampler.process(pcm[i : i + frame_bytes]) for i in range(0, len(pcm), frame_bytes)
    )


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_passband_tone_keeps_its_level_and_frequency(in_rate: int, out_rate: int) -> None:
    frame = in_rate // 50
    pcm = tone_pcm(1000, -10, in_rate, 25 * frame)
    out = resample_in_frames(core.Resampler(in_rate, out_rate), pcm, 2 * frame)
    assert len(out) == 2 * 25 * (out_rate // 50)
    settled = out[len(out) // 2 :]
    assert dbm0(goertzel_peak(settled, out_rate, 1000)) == pytest.approx(-10, abs=0.2)
    assert goertzel_peak(settled, out_rate, 1000) / 2**0.5 >= 0.99 * rms(settled)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (8000, 48000), (16000, 48000)])
def test_upsampling_keeps_a_tone_near_the_band_edge(in_rate: int, out_rate: int) -> None:
    edge = 0.85 * in_rate / 2  # 3.4 kHz from 8 kHz
    pcm = tone_pcm(edge, -10, in_rate, in_rate // 2)
    out = core.Resampler(in_rate, out_rate).process(pcm)
    assert dbm0(goertzel_peak(out[len(out) // 2 :], out_rate, edge)) == pytest.approx(-10, abs=0.5)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16000, 8000), (48000, 8000), (48000, 16000)])
def test_downsampling_removes_what_the_lower_rate_cannot_carry(in_rate: int, out_rate: int) -> None:
    # A tone 30% above the output's Nyquist frequency would alias into the band.
    pcm = tone_pcm(0.65 * out_rate, -3, in_rate, in_rate // 2)
    out = core.Resampler(in_rate, out_rate).process(pcm)
    assert dbm0(rms(out[len(out) // 2 :]) * 2**0.5) < -3 - 70


def test_pieces_of_any_length_give_the_same_stream_as_one_piece() -> None:
    pcm = tone_pcm(440, -10, 8000, 800)
    whole = core.Resampler(8000, 48000).process(pcm)
    pieces = core.Resampler(8000, 48000)
    joined = b"".join(pieces.process(pcm[i : i + 46]) for i in range(0, len(pcm), 46))
    assert joined == whole


def test_downsampling_pieces_not_a_multiple_of_the_ratio_keep_the_stream() -> None:
    pcm = tone_pcm(440, -10, 48000, 4800)
    whole = core.Resampler(48000, 8000).process(pcm)
    pieces = core.Resampler(48000, 8000)
    joined = b"".join(pieces.process(pcm[i : i + 2 * 7]) for i in range(0, len(pcm), 2 * 7))
    assert joined == whole


def test_delay_is_the_filter_group_delay() -> None:
    resampler = core.Resampler(8000, 16000)
    impulse = bytearray(2 * 400)
    impulse[0:2] = (16000).to_bytes(2, "little", signed=True)
    out = core.Resampler(8000, 16000).process(bytes(impulse))
    values = [int.from_bytes(out[i : i + 2], "little", signed=True) for i in range(0, len(out), 2)]
    assert max(range(len(values)), key=lambda i: abs(values[i])) == pytest.approx(
        resampler.delay, abs=1
    )


def test_same_rate_passes_audio_through() -> None:
    pcm = tone_pcm(440, -10, 16000, 320)
    assert core.Resampler(16000, 16000).process(pcm) == pcm


def test_unsupported_rate_is_refused() -> None:
    with pytest.raises(core.CodecError, match="unsupported sample rate 44100 Hz"):
        core.Resampler(44100, 8000)
