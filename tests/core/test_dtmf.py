"""In-band DTMF: every digit from the generator is detected, the detector
meets ITU-T Q.24's edges, and speech in Mandarin and English gives no digits."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from tests.core.signals import amplitude, dbm0, goertzel_peak, pcm, tones
from tests.core.tools import run_tool

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="DTMF is in the compiled core only"
)

KEYPAD = "123A456B789C*0#D"  # rows 697/770/852/941 Hz, columns 1209/1336/1477/1633 Hz
LOW = (697, 770, 852, 941)
HIGH = (1209, 1336, 1477, 1633)
# Leading silences that put the tone's start at different points of the
# detector's 102-sample blocks.
ALIGNMENTS = range(0, 102, 17)


def dtmf_pcm(
    digit: str,
    *,
    lead: int = 0,
    ms: int = 100,
    low_dbm0: float = -10,
    high_dbm0: float = -10,
    deviation: float = 0.0,
    column_deviation: float | None = None,
    snr_db: float | None = None,
) -> bytes:
    """One digit made in the test (not by the generator under test), then 100 ms of silence.

    ``deviation`` shifts both tones (``column_deviation``, if given, the
    high-group one); ``snr_db`` adds white noise that much below the pair's power.
    """
    i = KEYPAD.index(digit)
    column_shift = deviation if column_deviation is None else column_deviation
    pair = [
        (LOW[i // 4] * (1 + deviation), low_dbm0),
        (HIGH[i % 4] * (1 + column_shift), high_dbm0),
    ]
    samples = [0.0] * lead + tones(pair, 8000, 8 * ms) + [0.0] * 800
    if snr_db is not None:
        power = (amplitude(low_dbm0) ** 2 + amplitude(high_dbm0) ** 2) / 2
        sigma = math.sqrt(power * 10 ** (-snr_db / 10))
        noise = random.Random(lead)
        samples = [s + noise.gauss(0, sigma) for s in samples]
    return pcm(samples)


def detected(**signal: Any) -> dict[str, str]:
    """What the detector finds for each digit alone, made by ``dtmf_pcm(**signal)``,
    over several block alignments (alignments that disagree show as ``a|b``)."""
    found = {}
    for digit in KEYPAD:
        results = {
            core.DtmfDetector().process(dtmf_pcm(digit, lead=lead, **signal)) for lead in ALIGNMENTS
        }
        found[digit] = "|".join(sorted(results))
    return found


def test_generated_digits_are_all_detected_in_order() -> None:
    generator = core.DtmfGenerator()
    generator.queue(KEYPAD)
    detector = core.DtmfDetector()
    found = ""
    while generator.busy:
        found += detector.process(generator.generate(160))
    assert found == KEYPAD


def test_generator_sends_each_digit_at_its_frequencies_and_level() -> None:
    generator = core.DtmfGenerator(level_dbm0=-12, on_ms=100, off_ms=50)
    generator.queue("5")
    tone = generator.generate(800)
    assert dbm0(goertzel_peak(tone, 8000, 770)) == pytest.approx(-12, abs=0.5)
    assert dbm0(goertzel_peak(tone, 8000, 1336)) == pytest.approx(-12, abs=0.5)
    assert goertzel_peak(generator.generate(400), 8000, 770) < 1
    assert not generator.busy


def test_generator_twist_makes_the_high_group_tone_louder() -> None:
    generator = core.DtmfGenerator(level_dbm0=-10, twist=4)
    generator.queue("1")
    tone = generator.generate(800)
    assert dbm0(goertzel_peak(tone, 8000, 697)) == pytest.approx(-10, abs=0.5)
    assert dbm0(goertzel_peak(tone, 8000, 1209)) == pytest.approx(-6, abs=0.5)


def test_generator_refuses_a_non_digit() -> None:
    with pytest.raises(core.CodecError, match="not a DTMF digit: 'x'"):
        core.DtmfGenerator().queue("12x")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "G729", "opus"])
def test_generated_digits_survive_each_codec(codec: str) -> None:
    generator = core.DtmfGenerator(on_ms=80, off_ms=80)
    generator.queue(KEYPAD)
    encoder, decoder = core.Encoder(codec), core.Decoder(codec)
    to_codec = core.Resampler(8000, encoder.sample_rate)
    from_codec = core.Resampler(decoder.sample_rate, 8000)
    detector = core.DtmfDetector()
    found = ""
    # Every digit and pause, then a few frames for the codecs' and resamplers' delay.
    for _ in range(16 * 160 // 20 + 5):
        sent = encoder.encode(to_codec.process(generator.generate(160)))
        found += detector.process(from_codec.process(decoder.decode(sent)))
    assert found == KEYPAD


def test_a_lost_frame_reported_with_skip_does_not_split_a_digit() -> None:
    generator = core.DtmfGenerator(on_ms=100, off_ms=100)
    generator.queue("1234")
    skipping, zero_filling = core.DtmfDetector(), core.DtmfDetector()
    found_skipping = found_zero_filling = ""
    for i in range(45):
        frame = generator.generate(160)
        if i % 10 == 2:  # the third 20 ms of each 100 ms tone is lost
            skipping.skip(160)
            found_zero_filling += zero_filling.process(bytes(320))
        else:
            found_skipping += skipping.process(frame)
            found_zero_filling += zero_filling.process(frame)
    assert found_skipping == "1234"
    # Silence in place of the loss would split every digit in two.
    assert found_zero_filling == "11223344"


def test_40_ms_tones_are_detected() -> None:
    assert detected(ms=40) == {d: d for d in KEYPAD}


def test_40_ms_tones_with_40_ms_pauses_are_told_apart() -> None:
    stream = b"".join(
        pcm(tones([(LOW[i // 4], -10), (HIGH[i % 4], -10)], 8000, 320) + [0.0] * 320)
        for i in range(16)
    )
    assert core.DtmfDetector().process(stream) == KEYPAD


def test_tones_at_minus_26_dbm0_are_detected() -> None:
    assert detected(low_dbm0=-26, high_dbm0=-26) == {d: d for d in KEYPAD}


@pytest.mark.parametrize(
    ("low", "high"), [(-10, -18), (-18, -10)], ids=["low-louder", "high-louder"]
)
def test_8_db_twist_either_way_is_detected(low: float, high: float) -> None:
    assert detected(low_dbm0=low, high_dbm0=high) == {d: d for d in KEYPAD}


def test_twist_beyond_the_limit_is_rejected() -> None:
    assert detected(low_dbm0=-8, high_dbm0=-22) == {d: "" for d in KEYPAD}


def test_tones_below_the_minimum_level_are_rejected() -> None:
    assert detected(low_dbm0=-36, high_dbm0=-36) == {d: "" for d in KEYPAD}


@pytest.mark.parametrize("deviation", [0.012, -0.012])
def test_tones_1_2_percent_off_nominal_are_detected(deviation: float) -> None:
    assert detected(deviation=deviation) == {d: d for d in KEYPAD}


@pytest.mark.parametrize("deviation", [0.015, -0.015])
def test_tones_1_5_percent_off_nominal_are_detected(deviation: float) -> None:
    assert detected(deviation=deviation) == {d: d for d in KEYPAD}


@pytest.mark.parametrize("deviation", [0.035, -0.035])
def test_tones_3_5_percent_off_nominal_are_rejected(deviation: float) -> None:
    assert detected(deviation=deviation) == {d: "" for d in KEYPAD}


@pytest.mark.parametrize(
    ("row", "column"),
    [(0.035, 0.0), (-0.035, 0.0), (0.0, 0.035), (0.0, -0.035)],
    ids=["row-high", "row-low", "column-high", "column-low"],
)
def test_one_tone_3_5_percent_off_nominal_is_rejected(row: float, column: float) -> None:
    assert detected(deviation=row, column_deviation=column) == {d: "" for d in KEYPAD}


def test_tones_in_white_noise_15_db_below_are_detected() -> None:
    assert detected(snr_db=15) == {d: d for d in KEYPAD}


@pytest.mark.parametrize(
    ("low", "high", "row", "column"),
    [(-18, -26, 0.015, -0.015), (-26, -18, -0.015, 0.015)],
    ids=["low-louder", "high-louder"],
)
def test_q24_edges_together_are_detected(
    low: float, high: float, row: float, column: float
) -> None:
    """40 ms, the weaker tone at -26 dBm0, 8 dB of twist, 1.5% off and 15 dB SNR, all at once."""
    found = detected(
        ms=40, low_dbm0=low, high_dbm0=high, deviation=row, column_deviation=column, snr_db=15
    )
    assert found == {d: d for d in KEYPAD}


@pytest.mark.parametrize(
    "signal",
    [
        {"deviation": 0.025},
        {"deviation": -0.025},
        {"low_dbm0": -30, "high_dbm0": -30},
        {"low_dbm0": -10, "high_dbm0": -20},
        {"low_dbm0": -10, "high_dbm0": -20, "snr_db": 20},
    ],
    ids=["2.5%-high", "2.5%-low", "min-level", "max-twist", "max-twist-in-noise"],
)
def test_a_tone_right_at_a_limit_is_one_digit_or_none_never_several(
    signal: dict[str, float],
) -> None:
    for digit, found in detected(ms=200, **signal).items():
        assert set(found.split("|")) <= {"", digit}


def test_the_same_digit_after_a_40_ms_pause_is_detected_again() -> None:
    five = tones([(770, -10), (1336, -10)], 8000, 320)
    assert core.DtmfDetector().process(pcm(five + [0.0] * 320 + five + [0.0] * 800)) == "55"


def test_bad_detector_settings_are_refused() -> None:
    with pytest.raises(core.CodecError, match="twists must be >= 0 dB"):
        core.DtmfDetector(twist=-1)


SPEECH = {
    "cmn": "您好,欢迎致电客户服务中心。查询账户余额请按一,办理新业务请按二,人工服务请按零。"
    "我们的工作时间是周一至周五上午九点到下午六点,节假日除外。谢谢您的来电,祝您生活愉快。",
    "en": "Thank you for calling customer service. For your account balance, press one. "
    "For new orders, press two. To speak with an agent, press zero. Our office hours are "
    "Monday to Friday, nine in the morning to six in the evening. Please stay on the line.",
    "en+f3": "Hello, this is Sarah from the accounts team, calling about the invoice we sent "
    "last Tuesday. Could you please call me back on extension four four seven? Thanks a lot!",
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Synthesised speech, 8 kHz, normalised to -1 dBFS peaks (loud speech talks off most)."""
    folder = tmp_path_factory.mktemp("speech")
    out = {}
    for voice, text in SPEECH.items():
        wav, raw = folder / f"{voice}.wav", folder / f"{voice}.raw"
        run_tool(["espeak-ng", "-v", voice, "-w", str(wav), text])
        run_tool(
            ["sox", str(wav), "-t", "raw", "-r", "8000", "-c", "1", "-b", "16", "-e",
             "signed-integer", "-L", str(raw), "gain", "-n", "-1"]
        )  # fmt: skip
        out[voice] = raw.read_bytes()
    return out


@pytest.mark.parametrize("voice", list(SPEECH))
def test_speech_gives_no_false_digits(speech: dict[str, bytes], voice: str) -> None:
    audio = speech[voice]
    assert len(audio) > 2 * 8000 * 5  # several seconds of speech
    detector = core.DtmfDetector()
    found = "".join(detector.process(audio[i : i + 320]) for i in range(0, len(audio), 320))
    assert found == ""


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(min_size=0, max_size=640).map(lambda b: b[: len(b) // 2 * 2]),
            st.integers(0, 400),  # a loss of that many samples
        ),
        max_size=12,
    )
)
def test_any_audio_gives_only_keypad_digits(pieces: list[bytes | int]) -> None:
    detector = core.DtmfDetector()
    for piece in pieces:
        if isinstance(piece, int):
            detector.skip(piece)
        else:
            assert set(detector.process(piece)) <= set(KEYPAD)
    full_scale = pcm([32767.0 if (n // 3) % 2 else -32768.0 for n in range(1600)])
    assert set(detector.process(full_scale)) <= set(KEYPAD)
