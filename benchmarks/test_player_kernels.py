"""The prompt player on a worker's tick: one 20 ms frame of a looping prompt
(music on hold) at each output rate, and decoding a prompt file once.

A frame is a copy out of the shared, already resampled PCM, so what the
native numbers show is mostly the binding crossing and the bytes object;
in the engine the worker calls ``Player::next`` directly.
"""

from __future__ import annotations

import struct

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core
from tests.core.signals import tone_pcm

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the player is in the compiled core only"
)


def alaw_wav(seconds: int) -> bytes:
    """A WAV of ``seconds`` of an 8 kHz A-law tone, as a prompt file holds it."""
    codes = core.alaw_encode(tone_pcm(440, -10, 8000, 8000 * seconds))
    fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    body += struct.pack("<I", len(codes)) + codes
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_player_next_frame(benchmark: BenchmarkFixture, rate: int) -> None:
    prompt = core.Prompt.decode(alaw_wav(2), "hold.wav")
    player = core.Player([prompt], rate=rate, loop=True, barge_in="")
    frame = benchmark(player.next_frame)
    assert frame is not None
    assert len(frame) == 2 * rate // 50


def test_prompt_decode_10_s_alaw(benchmark: BenchmarkFixture) -> None:
    wav = alaw_wav(10)
    assert benchmark(core.Prompt.decode, wav, "menu.wav").samples == 80000
