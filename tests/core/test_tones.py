"""Call-progress tones: frequency, level and cadence measured from the audio."""

from __future__ import annotations

import pytest

import core
from tests.core.signals import dbm0, dominant_frequency, goertzel_peak, rms

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="tones are in the compiled core only"
)

BLOCK = 80  # 10 ms at 8 kHz

EXPECTED = {
    ("cn", "dial"): core.ToneSpec(450, 0, -10, 1000, 0),
    ("cn", "ringback"): core.ToneSpec(450, 0, -10, 1000, 4000),
    ("cn", "busy"): core.ToneSpec(450, 0, -10, 350, 350),
    ("cn", "congestion"): core.ToneSpec(450, 0, -10, 700, 700),
    ("itu", "dial"): core.ToneSpec(425, 0, -10, 1000, 0),
    ("itu", "ringback"): core.ToneSpec(425, 0, -10, 1000, 4000),
    ("itu", "busy"): core.ToneSpec(425, 0, -10, 500, 500),
    ("itu", "congestion"): core.ToneSpec(425, 0, -10, 250, 250),
    ("us", "dial"): core.ToneSpec(350, 440, -13, 1000, 0),
    ("us", "ringback"): core.ToneSpec(440, 480, -19, 2000, 4000),
    ("us", "busy"): core.ToneSpec(480, 620, -24, 500, 500),
    ("us", "congestion"): core.ToneSpec(480, 620, -24, 250, 250),
}


def runs(audio: bytes) -> list[tuple[bool, int]]:
    """(tone on?, duration ms) of each stretch of 10 ms blocks with or without tone."""
    out: list[tuple[bool, int]] = []
    for i in range(0, len(audio), 2 * BLOCK):
        on = rms(audio[i : i + 2 * BLOCK]) > 100
        if out and out[-1][0] == on:
            out[-1] = (on, out[-1][1] + 10)
        else:
            out.append((on, 10))
    return out


def test_plans_and_tones_are_listed() -> None:
    assert core.tone_plans() == ["cn", "itu", "us"]
    assert core.tone_names() == ["dial", "ringback", "busy", "congestion"]


@pytest.mark.parametrize(("plan", "tone"), list(EXPECTED))
def test_plan_defines_the_tone(plan: str, tone: str) -> None:
    assert core.tone_spec(tone, plan) == EXPECTED[(plan, tone)]


def test_china_is_the_default_plan() -> None:
    assert core.ToneGenerator("busy").generate(8000) == core.ToneGenerator("busy", "cn").generate(
        8000
    )


@pytest.mark.parametrize(("plan", "tone"), list(EXPECTED))
def test_generated_tone_has_its_frequencies_level_and_cadence(plan: str, tone: str) -> None:
    spec = EXPECTED[(plan, tone)]
    cycle_ms = spec.on_ms + spec.off_ms if spec.off_ms else 3000
    generator = core.ToneGenerator(tone, plan)
    # Two whole cycles, made in 20 ms frames as the engine would ask for them.
    audio = b"".join(generator.generate(160) for _ in range(2 * cycle_ms // 20))
    on = audio[: 2 * 8 * min(spec.on_ms, 1000)]
    for frequency in (spec.frequency1, spec.frequency2):
        if frequency:
            assert dominant_frequency(on, 8000, frequency - 20, frequency + 20, step=1) == frequency
            level = dbm0(goertzel_peak(on, 8000, frequency))
            assert level == pytest.approx(spec.level_dbm0, abs=0.5)
    expected = [(True, spec.on_ms), (False, spec.off_ms)] * 2 if spec.off_ms else [(True, 6000)]
    assert runs(audio) == expected


def test_unknown_plan_and_tone_are_refused_naming_the_choices() -> None:
    with pytest.raises(core.CodecError, match="tone plan 'uk': known plans are cn, itu, us"):
        core.ToneGenerator("dial", "uk")
    with pytest.raises(core.CodecError, match="known tones are dial, ringback, busy, congestion"):
        core.ToneGenerator("howler")
