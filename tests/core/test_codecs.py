"""The codec interface: each codec keeps a tone, reports its timing, conceals
losses and refuses bad input with a message naming the problem."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from array import array

import opuslib
import pytest

import core
from tests.core.signals import (
    dbm0,
    dominant_frequency,
    goertzel_peak,
    rms,
    samples_of,
    tone_pcm,
)

CODECS = ["PCMU", "PCMA", "G722", "G729", "opus"]
TONE_HZ = 1000
TONE_DBM0 = -10.0
FRAMES = 25  # half a second: codecs with adaptive state settle within it

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="codecs beyond G.711 are in the compiled core only"
)


def encoded_tone(encoder: core.Encoder, frames: int = FRAMES) -> list[bytes]:
    n = encoder.frame_samples
    return [
        encoder.encode(tone_pcm(TONE_HZ, TONE_DBM0, encoder.sample_rate, n, start=i * n))
        for i in range(frames)
    ]


def assert_tone(
    pcm: bytes, rate: int, frequency: float = TONE_HZ, tolerance_db: float = 1.5
) -> None:
    """The tone is there, at its frequency and level, and dominates the signal."""
    level = dbm0(goertzel_peak(pcm, rate, frequency))
    assert abs(level - TONE_DBM0) <= tolerance_db, f"{level:.1f} dBm0 at {frequency} Hz"
    assert abs(dominant_frequency(pcm, rate, 300, 3400, step=25) - frequency) <= 25
    # Little else: the tone carries most of the signal's power.
    assert goertzel_peak(pcm, rate, frequency) / math.sqrt(2) >= 0.8 * rms(pcm)


@pytest.mark.parametrize(
    ("name", "clock", "rate", "frame_samples"),
    [
        ("PCMU", 8000, 8000, 160),
        ("PCMA", 8000, 8000, 160),
        ("G722", 8000, 16000, 320),
        ("G729", 8000, 8000, 160),
        ("opus", 48000, 48000, 960),
    ],
)
def test_codec_reports_rtp_clock_sample_rate_and_frame(
    name: str, clock: int, rate: int, frame_samples: int
) -> None:
    for side in (core.Encoder(name), core.Decoder(name)):
        assert (side.name, side.rtp_clock_rate, side.sample_rate) == (name, clock, rate)
        assert (side.frame_ms, side.frame_samples) == (20, frame_samples)


def test_codec_info_gives_the_rtpmap_clock_without_making_a_codec() -> None:
    assert core.codec_info("g722") == core.CodecInfo("G722", 8000, 16000, 20)
    assert core.codec_info("opus").rtp_clock_rate == 48000
    with pytest.raises(core.CodecError, match="unknown codec 'AMR'"):
        core.codec_info("AMR")


def test_codec_names_are_case_insensitive() -> None:
    assert core.codec_names() == CODECS
    assert core.Encoder("pcma").name == "PCMA"
    assert core.Decoder("OPUS").name == "opus"


@pytest.mark.parametrize("name", CODECS)
def test_tone_survives_encode_and_decode_at_its_frequency_and_level(name: str) -> None:
    encoder, decoder = core.Encoder(name), core.Decoder(name)
    decoded = b"".join(decoder.decode(p) for p in encoded_tone(encoder))
    assert len(decoded) == 2 * FRAMES * decoder.frame_samples
    assert_tone(decoded[len(decoded) // 2 :], decoder.sample_rate)


@pytest.mark.parametrize(("name", "size"), [("PCMA", 160), ("G722", 160), ("G729", 20)])
def test_fixed_rate_codecs_give_their_payload_size(name: str, size: int) -> None:
    assert {len(p) for p in encoded_tone(core.Encoder(name), frames=3)} == {size}


@pytest.mark.parametrize(
    ("name", "frame_ms", "samples", "size"),
    [("PCMA", 30, 240, 240), ("G722", 10, 160, 80), ("G729", 40, 320, 40), ("opus", 60, 2880, 0)],
)
def test_ptime_sets_the_frame_the_payload_and_the_concealment(
    name: str, frame_ms: int, samples: int, size: int
) -> None:
    encoder = core.Encoder(name, frame_ms=frame_ms)
    decoder = core.Decoder(name, frame_ms=frame_ms)
    assert encoder.frame_samples == decoder.frame_samples == samples
    payloads = encoded_tone(encoder, frames=3)
    if size:
        assert {len(p) for p in payloads} == {size}
    assert {len(decoder.decode(p)) for p in payloads} == {2 * samples}
    assert len(decoder.conceal()) == 2 * samples


@pytest.mark.parametrize(
    ("name", "frame_ms", "message"),
    [
        ("opus", 30, "opus frames must be 10, 20, 40 or 60 ms: got 30"),
        ("PCMA", 25, "PCMA frames must be 10 to 60 in steps of 10 ms: got 25"),
        ("G729", 0, "G729 frames must be 10 to 60 in steps of 10 ms: got 0"),
    ],
)
def test_ptime_the_codec_cannot_packetise_is_refused(
    name: str, frame_ms: int, message: str
) -> None:
    with pytest.raises(core.CodecError, match=message):
        core.Encoder(name, frame_ms=frame_ms)
    with pytest.raises(core.CodecError, match=message):
        core.Decoder(name, frame_ms=frame_ms)


def test_g729_decodes_a_single_10_ms_frame_and_a_trailing_sid() -> None:
    payload = encoded_tone(core.Encoder("G729"), frames=1)[0]
    decoder = core.Decoder("G729")
    assert len(decoder.decode(payload[:10])) == 2 * 80
    assert len(decoder.decode(payload[:10] + b"\x00\x00")) == 2 * 160


def test_g729_annexb_sends_nothing_or_sid_for_silence() -> None:
    encoder = core.Encoder("G729", "annexb=yes")
    silence = bytes(2 * encoder.frame_samples)
    sizes = {len(encoder.encode(silence)) for _ in range(20)}
    assert sizes <= {0, 2, 10, 12}
    assert 20 not in sizes


# G.729's own concealment (G.729 section 4.4) damps its gains every 5 ms
# subframe, so its first concealed frame is markedly quieter.
CONCEALMENT_LOSS_DB = {"PCMU": 6, "PCMA": 6, "G722": 6, "G729": 12, "opus": 6}


@pytest.mark.parametrize("name", CODECS)
def test_concealment_continues_the_tone_after_a_loss(name: str) -> None:
    decoder = core.Decoder(name)
    for payload in encoded_tone(core.Encoder(name)):
        decoder.decode(payload)
    concealed = decoder.conceal()
    assert len(concealed) == 2 * decoder.frame_samples
    # The first concealed frame repeats the tone, quieter by a bounded amount.
    assert dominant_frequency(concealed, decoder.sample_rate, 300, 3400, step=25) == pytest.approx(
        TONE_HZ, abs=25
    )
    level = dbm0(goertzel_peak(concealed, decoder.sample_rate, TONE_HZ))
    assert level >= TONE_DBM0 - CONCEALMENT_LOSS_DB[name]


@pytest.mark.parametrize("name", ["PCMA", "G722", "opus"])
def test_long_loss_fades_to_silence(name: str) -> None:
    decoder = core.Decoder(name)
    for payload in encoded_tone(core.Encoder(name)):
        decoder.decode(payload)
    concealed = [decoder.conceal() for _ in range(10)]
    assert rms(concealed[-1]) < 0.1 * rms(concealed[0])


def test_opus_fec_rebuilds_a_lost_frame_from_the_next_packet() -> None:
    encoder = core.Encoder("opus", "useinbandfec=1; maxaveragebitrate=32000")
    payloads = encoded_tone(encoder)
    decoder = core.Decoder("opus")
    for payload in payloads[:20]:
        decoder.decode(payload)
    # Packet 20 is lost; packet 21 carries its FEC copy.
    rebuilt = decoder.conceal_with_next(payloads[21])
    assert len(rebuilt) == 2 * 960
    assert_tone(rebuilt, 48000, tolerance_db=3)
    assert_tone(decoder.decode(payloads[21]), 48000, tolerance_db=3)


def test_opus_from_our_encoder_decodes_with_opuslib() -> None:
    theirs = opuslib.Decoder(48000, 1)
    decoded = b"".join(theirs.decode(p, 960) for p in encoded_tone(core.Encoder("opus")))
    assert_tone(decoded[len(decoded) // 2 :], 48000)


def test_opus_from_opuslib_decodes_with_ours() -> None:
    theirs = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    ours = core.Decoder("opus")
    decoded = b"".join(
        ours.decode(theirs.encode(tone_pcm(TONE_HZ, TONE_DBM0, 48000, 960, start=i * 960), 960))
        for i in range(FRAMES)
    )
    assert_tone(decoded[len(decoded) // 2 :], 48000)


def test_stereo_opus_from_a_peer_decodes_to_mono() -> None:
    theirs = opuslib.Encoder(48000, 2, opuslib.APPLICATION_AUDIO)
    ours = core.Decoder("opus", "sprop-stereo=1")
    decoded = []
    for i in range(FRAMES):
        mono = samples_of(tone_pcm(TONE_HZ, TONE_DBM0, 48000, 960, start=i * 960))
        stereo = array("h", (s for sample in mono for s in (sample, sample))).tobytes()
        decoded.append(ours.decode(theirs.encode(stereo, 960)))
    assert {len(d) for d in decoded} == {2 * 960}
    assert_tone(b"".join(decoded[FRAMES // 2 :]), 48000)


def test_opus_maxplaybackrate_8000_sends_narrowband() -> None:
    # A narrowband Opus packet has TOC configuration 0-3 (SILK NB) or 16-19 (CELT NB).
    payloads = encoded_tone(core.Encoder("opus", "maxplaybackrate=8000"), frames=5)
    assert all((p[0] >> 3) in (0, 1, 2, 3, 16, 17, 18, 19) for p in payloads)


def test_opus_maxaveragebitrate_limits_the_payload_size() -> None:
    low = encoded_tone(core.Encoder("opus", "maxaveragebitrate=8000; cbr=1"), frames=10)
    # 8 kbit/s for 20 ms is 20 octets.
    assert max(len(p) for p in low) <= 22


def test_opus_usedtx_sends_tiny_packets_for_silence() -> None:
    encoder = core.Encoder("opus", "usedtx=1")
    sizes = [len(encoder.encode(bytes(2 * 960))) for _ in range(30)]
    # After a few frames of silence DTX sends only 1-2 octet packets.
    assert max(sizes[-10:]) <= 2
    assert max(len(p) for p in encoded_tone(core.Encoder("opus"), frames=3)) > 2


def test_wrong_frame_size_names_the_expected_size() -> None:
    with pytest.raises(core.CodecError, match=r"G722 encodes frames of 320 samples .*got 160"):
        core.Encoder("G722").encode(bytes(320))


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="odd length"):
        core.Encoder("PCMA").encode(bytes(321))


def test_unknown_codec_names_the_known_ones() -> None:
    with pytest.raises(core.CodecError, match="unknown codec 'GSM': known codecs are PCMU, PCMA"):
        core.Encoder("GSM")


@pytest.mark.parametrize(
    ("name", "fmtp", "message"),
    [
        ("opus", "maxplaybackrate=4000", r"maxplaybackrate=4000 \(expected an integer from 8000"),
        ("opus", "useinbandfec=yes", r"useinbandfec=yes"),
        ("opus", "maxaveragebitrate=lots", r"maxaveragebitrate=lots"),
        ("G729", "annexb=maybe", r"annexb=maybe \(expected yes or no\)"),
        ("opus", "stereo", r"bad fmtp parameter 'stereo': expected name=value"),
    ],
)
def test_bad_fmtp_is_refused_naming_the_parameter(name: str, fmtp: str, message: str) -> None:
    with pytest.raises(core.CodecError, match=message):
        core.Encoder(name, fmtp)


def test_python_twin_refuses_codecs_naming_the_switch() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["CALLBOX_CORE"] = "python"
    script = (
        "import core\ntry:\n    core.Encoder('opus')\nexcept NotImplementedError as e:\n"
        "    print(e)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == (
        "core.Encoder needs the compiled core; CALLBOX_CORE=python has only G.711"
    )


def test_codec_errors_are_value_errors() -> None:
    assert issubclass(core.CodecError, ValueError)


def test_fmtp_parses_names_case_insensitively_and_ignores_blanks() -> None:
    assert core.parse_fmtp(" UseInbandFEC=1;; stereo = 0 ;") == {
        "useinbandfec": "1",
        "stereo": "0",
    }


def test_corrupt_payloads_are_refused() -> None:
    with pytest.raises(core.CodecError, match="G729 payload must be 10-octet frames"):
        core.Decoder("G729").decode(bytes(7))
    with pytest.raises(core.CodecError, match="corrupt Opus payload"):
        # TOC code 3 with a frame count of zero is invalid (RFC 6716 3.2.5).
        core.Decoder("opus").decode(b"\x03\x00")


@pytest.mark.parametrize("name", ["PCMA", "G722"])
@pytest.mark.parametrize("lost", [1, 2])
def test_pitch_concealment_joins_the_real_audio_without_a_click(name: str, lost: int) -> None:
    encoder, decoder = core.Encoder(name), core.Decoder(name)
    payloads = encoded_tone(encoder, frames=FRAMES + lost + 1)
    before = b"".join(decoder.decode(p) for p in payloads[:FRAMES])
    # Two lost frames cross the changes to two and three repeated periods.
    concealed = b"".join(decoder.conceal() for _ in range(lost))
    after = decoder.decode(payloads[FRAMES + lost])
    stream = samples_of(before + concealed + after)
    steps = [abs(b - a) for a, b in itertools.pairwise(stream)]
    largest_in_real_audio = max(steps[len(steps) // 4 : len(before) // 2 - 1])
    # Into, through and out of the concealment no step is larger than the
    # tone's own largest sample-to-sample step, with a little slack.
    first, last = len(before) // 2 - 3, (len(before) + len(concealed)) // 2 + 3
    assert max(steps[first:last]) <= 1.2 * largest_in_real_audio
