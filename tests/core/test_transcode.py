"""Transcoding between every pair of codecs keeps a tone's frequency and level."""

from __future__ import annotations

import itertools

import pytest

import core
from tests.core.signals import dbm0, dominant_frequency, goertzel_peak, tone_pcm

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="transcoding is in the compiled core only"
)

CODECS = ["PCMU", "PCMA", "G722", "G729", "opus"]
FRAMES = 25


@pytest.mark.parametrize(("source", "target"), list(itertools.product(CODECS, CODECS)))
def test_tone_crosses_the_transcoder_at_its_frequency_and_level(source: str, target: str) -> None:
    encoder = core.Encoder(source)
    transcoder = core.Transcoder(source, target)
    decoder = core.Decoder(target)
    n = encoder.frame_samples
    out = []
    for i in range(FRAMES):
        frame = tone_pcm(1000, -10, encoder.sample_rate, n, start=i * n)
        out += [decoder.decode(p) for p in transcoder.transcode(encoder.encode(frame))]
    # Each 20 ms in gives one 20 ms out, but for the resampler's delay.
    assert len(out) >= FRAMES - 1
    pcm = b"".join(out[len(out) // 2 :])
    rate = decoder.sample_rate
    # Two lossy codecs in a row (G.729 twice over) may each lose a little level.
    assert dbm0(goertzel_peak(pcm, rate, 1000)) == pytest.approx(-10, abs=2.5)
    assert dominant_frequency(pcm, rate, 300, 3400, step=25) == pytest.approx(1000, abs=25)


def test_lost_packet_is_concealed_and_still_sent_on() -> None:
    encoder = core.Encoder("PCMA")
    transcoder = core.Transcoder("PCMA", "opus", target_fmtp="useinbandfec=1")
    for i in range(10):
        transcoder.transcode(encoder.encode(tone_pcm(1000, -10, 8000, 160, start=160 * i)))
    assert len(transcoder.transcode_lost()) == 1


def test_a_longer_source_packet_gives_several_target_packets() -> None:
    # 40 ms of PCMA (a peer with ptime 40) is two 20 ms G.722 packets.
    transcoder = core.Transcoder("PCMA", "G722")
    assert [len(p) for p in transcoder.transcode(bytes(320))] == [160, 160]


def test_target_ptime_reframes_the_audio() -> None:
    # 20 ms PCMA packets in, 30 ms G.729 packets out: two for every three.
    transcoder = core.Transcoder("PCMA", "G729", target_frame_ms=30)
    sizes = [[len(p) for p in transcoder.transcode(bytes(160))] for _ in range(6)]
    assert sizes == [[], [30], [30], [], [30], [30]]


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(core.CodecError, match="unknown codec 'iLBC'"):
        core.Transcoder("iLBC", "PCMA")
