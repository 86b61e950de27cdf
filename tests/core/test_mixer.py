"""The conference mixer (core/mixer/), on the C++ core and on the Python twin."""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Mapping
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core import _loader, _reference
from tests.core.signals import amplitude, goertzel_peak, samples_of, tone_pcm

RATE = 8000
FRAME = 160
# Whole cycles per 20 ms frame, so each tone is orthogonal to the others over a frame.
TONES = (400, 700, 1000, 1300, 1600, 1900)
LEVEL_DBM0 = -16.0  # six of these sum below the limiter's threshold
FULL_SCALE = 32767


def frame_of(
    frequency: float, tick: int, level_dbm0: float = LEVEL_DBM0, rate: int = RATE
) -> bytes:
    """Tick ``tick`` of a continuous tone."""
    return tone_pcm(frequency, level_dbm0, rate, rate // 50, tick * (rate // 50))


def heard(output: bytes, frequency: float, rate: int = RATE) -> float:
    """The tone's level in ``output`` relative to a tone sent at LEVEL_DBM0 (1.0 = as sent)."""
    return goertzel_peak(output, rate, frequency) / amplitude(LEVEL_DBM0)


def run_ticks(mixer: core.Mixer, tones: Mapping[int, float], ticks: int) -> core.MixedTick:
    """Each participant in ``tones`` sends its tone for ``ticks`` ticks; the last tick's output."""
    assert ticks > 0
    for tick in range(ticks):
        for participant, frequency in tones.items():
            mixer.put(participant, frame_of(frequency, tick, rate=mixer.frame_samples * 50))
        result = mixer.mix()
    return result


@pytest.mark.parametrize("rate", [8000, 16000])
def test_each_participant_hears_everyone_but_themselves(twin: ModuleType, rate: int) -> None:
    mixer = twin.Mixer(rate)
    tones = dict(enumerate(TONES[:5]))
    for participant in tones:
        mixer.add(participant)
    result = run_ticks(mixer, tones, 2)
    for listener, own_tone in tones.items():
        output = result.output(listener)
        assert heard(output, own_tone, rate) < 0.01
        for talker, tone in tones.items():
            if talker != listener:
                assert heard(output, tone, rate) == pytest.approx(1.0, abs=0.01)


def test_listeners_who_said_nothing_share_one_common_mix(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    for participant in range(5):
        mixer.add(participant)
    result = run_ticks(mixer, {0: TONES[0], 1: TONES[1]}, 1)
    assert result.shared == (2, 3, 4)
    assert set(result.own) == {0, 1}
    assert heard(result.common, TONES[0]) == pytest.approx(1.0, abs=0.01)
    assert heard(result.common, TONES[1]) == pytest.approx(1.0, abs=0.01)
    assert all(result.output(listener) is result.common for listener in result.shared)


def test_a_silent_listener_routed_away_from_a_talker_gets_its_own_mix(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    for participant in range(3):
        mixer.add(participant)
    mixer.set_hears(2, 0, False)
    result = run_ticks(mixer, {0: TONES[0], 1: TONES[1]}, 1)
    assert result.shared == ()
    assert heard(result.own[2], TONES[0]) < 0.01
    assert heard(result.own[2], TONES[1]) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("parties", [3, 10, 50])
def test_full_scale_parties_never_wrap_or_clip_flat(twin: ModuleType, parties: int) -> None:
    """Everyone sends the same full-scale sine (the worst case) plus one silent listener."""
    mixer = twin.Mixer()
    for participant in range(parties + 1):
        mixer.add(participant)
    for tick in range(4):
        sent = tone_pcm(1000, 3.14, RATE, FRAME, tick * FRAME)
        for participant in range(parties):
            mixer.put(participant, sent)
        result = mixer.mix()
        for listener, talkers in ((parties, parties), (0, parties - 1)):
            output = samples_of(result.output(listener))
            expected = [s * talkers for s in samples_of(sent)]
            assert all(out * want >= 0 for out, want in zip(output, expected, strict=True))
            assert max(abs(s) for s in output) < FULL_SCALE
            if tick > 0:
                # The gain settled in the first millisecond of the onset: a
                # scaled sine, under the limiter's target, not a flat top.
                assert max(abs(s) for s in output) <= 29491
                assert correlation(output, expected) > 0.9999


def correlation(a: array[int] | list[int], b: array[int] | list[int]) -> float:
    """Normalised cross-correlation at lag 0 (1.0 = the same shape)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_limiter_falls_at_once_and_recovers_smoothly(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    for participant in range(12):
        mixer.add(participant)
    gains = []
    for tick in range(80):
        loud = 10 <= tick < 20
        mixer.put(0, frame_of(TONES[0], tick))
        if loud:
            for participant in range(1, 11):
                mixer.put(participant, frame_of(TONES[1], tick, level_dbm0=3.14))
        result = mixer.mix()
        gains.append(mixer.limiter_gain_db)
        peak = max(abs(s) for s in samples_of(result.output(11)))
        assert peak < FULL_SCALE
    assert gains[:10] == [0.0] * 10
    assert gains[10] < -20  # 10 full-scale talkers: about -21 dB needed, taken in one tick
    assert max(gains[10:20]) - min(gains[10:20]) < 0.01
    recovery = [b - a for a, b in itertools.pairwise(gains[19:])]
    assert all(0 <= step <= 0.6 for step in recovery)
    assert gains[-1] == 0.0


def test_limiter_gain_ramps_within_a_tick_without_steps(twin: ModuleType) -> None:
    """While the gain recovers, a steady tone's envelope rises smoothly sample by sample."""
    mixer = twin.Mixer()
    for participant in range(3):
        mixer.add(participant)
    level = -1.0
    for tick in range(3):
        mixer.put(0, frame_of(1000, tick, level_dbm0=3.14))
        mixer.put(1, frame_of(1000, tick, level_dbm0=3.14))
        mixer.mix()
    tick = 3
    mixer.put(0, frame_of(1000, tick, level_dbm0=level))
    output = samples_of(mixer.mix().output(2))
    expected = samples_of(frame_of(1000, tick, level_dbm0=level))
    ratios = [o / e for o, e in zip(output, expected, strict=True) if abs(e) > 8000]
    # Rising by about 1/160 of 0.5 dB per sample; each ratio is rounded to 1/8000.
    assert all(-2 / 8000 < b - a < 0.001 for a, b in itertools.pairwise(ratios))
    assert ratios[-1] - ratios[0] > 0.02


def test_gain_scales_a_participant_for_every_listener(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    mixer.add(0, gain_db=6.0)
    mixer.add(1)
    mixer.add(2)
    mixer.set_gain(1, -20.0)
    result = run_ticks(mixer, {0: TONES[0], 1: TONES[1]}, 1)
    assert heard(result.output(2), TONES[0]) == pytest.approx(10 ** (6 / 20), rel=0.01)
    assert heard(result.output(2), TONES[1]) == pytest.approx(0.1, rel=0.02)
    assert heard(result.output(1), TONES[0]) == pytest.approx(10 ** (6 / 20), rel=0.01)


def test_muted_participant_is_heard_by_no_one_but_still_hears_and_talks(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    for participant in range(3):
        mixer.add(participant)
    mixer.set_muted(0, True)
    result = run_ticks(mixer, {0: TONES[0], 1: TONES[1]}, 1)
    for listener in (1, 2):
        assert heard(result.output(listener), TONES[0]) < 0.01
    assert heard(result.output(0), TONES[1]) == pytest.approx(1.0, abs=0.01)
    assert mixer.talking(0)
    mixer.set_muted(0, False)
    result = run_ticks(mixer, {0: TONES[0]}, 1)
    assert heard(result.output(2), TONES[0]) == pytest.approx(1.0, abs=0.01)


def test_talker_events_start_at_once_and_stop_after_the_hangover(twin: ModuleType) -> None:
    mixer = twin.Mixer(talk_threshold_dbfs=-40.0, hangover_ms=100)  # 5 frames
    mixer.add(7)
    mixer.add(8)
    quiet = tone_pcm(TONES[0], -50.0, RATE, FRAME)
    # talk 3 ticks, pause 4 (shorter than the hangover), talk 2, then silence.
    script = (
        ["talk"] * 3 + ["quiet", "missing", "quiet", "missing"] + ["talk"] * 2 + ["missing"] * 6
    )
    events = []
    for tick, what in enumerate(script):
        if what == "talk":
            mixer.put(7, frame_of(TONES[0], tick, level_dbm0=-20.0))
        elif what == "quiet":
            mixer.put(7, quiet)
        mixer.put(8, quiet)
        events.append(mixer.mix().events)
    started = core.TalkerEvent(7, True)
    stopped = core.TalkerEvent(7, False)
    assert events[0] == (started,)
    assert all(e == () for e in events[1:13])
    assert events[13] == (stopped,)  # the fifth quiet tick after the last talk
    assert events[14:] == [()]
    assert not mixer.talking(7)
    assert not mixer.talking(8)


AGENT, CALLER, SUPERVISOR = 1, 2, 3
VOICE = {AGENT: TONES[0], CALLER: TONES[1], SUPERVISOR: TONES[2]}


@pytest.mark.parametrize(
    ("mode", "hears"),
    [
        (
            core.SupervisorMode.LISTEN,
            {AGENT: {CALLER}, CALLER: {AGENT}, SUPERVISOR: {AGENT, CALLER}},
        ),
        (
            core.SupervisorMode.WHISPER,
            {AGENT: {CALLER, SUPERVISOR}, CALLER: {AGENT}, SUPERVISOR: {AGENT, CALLER}},
        ),
        (
            core.SupervisorMode.BARGE,
            {AGENT: {CALLER, SUPERVISOR}, CALLER: {AGENT, SUPERVISOR}, SUPERVISOR: {AGENT, CALLER}},
        ),
    ],
)
def test_supervisor_modes_route_agent_caller_and_supervisor(
    twin: ModuleType, mode: core.SupervisorMode, hears: dict[int, set[int]]
) -> None:
    mixer = twin.Mixer()
    for participant in VOICE:
        mixer.add(participant)
    # Start from another mode, so switching modes is tested too.
    mixer.supervise(SUPERVISOR, AGENT, CALLER, core.SupervisorMode.WHISPER)
    mixer.supervise(SUPERVISOR, AGENT, CALLER, mode)
    result = run_ticks(mixer, VOICE, 2)
    for listener, talkers in hears.items():
        for talker, tone in VOICE.items():
            level = heard(result.output(listener), tone)
            if talker in talkers:
                assert level == pytest.approx(1.0, abs=0.01), (listener, talker)
            else:
                assert level < 0.01, (listener, talker)
            assert mixer.hears(listener, talker) == (talker in talkers)


def test_removed_participant_leaves_no_routing_behind(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    mixer.add(1)
    mixer.add(2)
    mixer.set_hears(1, 2, False)
    mixer.remove(2)
    mixer.add(2)
    assert mixer.hears(1, 2)
    assert mixer.participants == [1, 2]


def test_bad_calls_raise_value_errors_that_name_the_problem(twin: ModuleType) -> None:
    mixer = twin.Mixer()
    mixer.add(1)
    with pytest.raises(ValueError, match="already in the mixer"):
        mixer.add(1)
    with pytest.raises(ValueError, match="no participant 9"):
        mixer.put(9, bytes(2 * FRAME))
    with pytest.raises(ValueError, match="160 samples"):
        mixer.put(1, bytes(2 * 80))
    with pytest.raises(ValueError, match="gain_db"):
        mixer.set_gain(1, 30.0)
    with pytest.raises(ValueError, match="sample_rate"):
        twin.Mixer(11025)


frames = st.lists(st.integers(-32768, 32767), min_size=FRAME, max_size=FRAME)
participant_tick = st.one_of(
    st.none(),  # no frame this tick
    st.tuples(frames, st.integers(0, 40960), st.booleans()),  # frame, gain Q12, muted
)


@settings(max_examples=60, deadline=None)
@given(
    ticks=st.lists(st.lists(participant_tick, min_size=4, max_size=4), min_size=1, max_size=4),
    deaf=st.sets(st.tuples(st.integers(0, 3), st.integers(0, 3))),
)
def test_random_frames_give_the_same_bounded_unwrapped_output_on_both(
    ticks: list[list[tuple[list[int], int, bool] | None]], deaf: set[tuple[int, int]]
) -> None:
    mixers = [_loader.impl.Mixer(RATE, 107374, 3), _reference.Mixer(RATE, 107374, 3)]
    for mixer in mixers:
        for participant in range(4):
            mixer.add(participant)
        for listener, talker in deaf:
            mixer.set_hears(listener, talker, False)
    for tick in ticks:
        results = []
        for mixer in mixers:
            for participant, sent in enumerate(tick):
                if sent is not None:
                    mixer.put(participant, array("h", sent[0]).tobytes())
                    mixer.set_gain(participant, sent[1])
                    mixer.set_muted(participant, sent[2])
            results.append(mixer.mix())
        assert results[0] == results[1]
        common, shared, own, _ = results[0]
        # What each output would be with no limiter: the limiter may scale
        # and bend it but never flip its sign (wrap-around would).
        said = {
            participant: [(s * sent[1]) >> 12 for s in sent[0]]
            for participant, sent in enumerate(tick)
            if sent is not None and not sent[2]
        }
        outputs: dict[int | None, bytes] = {None: common}  # None: the common mix
        outputs |= dict.fromkeys(shared, common) | dict(own)
        for hearer, output in outputs.items():
            heard_from = [
                pcm
                for talker, pcm in said.items()
                if hearer is None or (talker != hearer and (hearer, talker) not in deaf)
            ]
            unlimited = [sum(column) for column in zip(*heard_from, strict=True)] or [0] * FRAME
            mixed = samples_of(output)
            assert max(abs(s) for s in mixed) < FULL_SCALE
            assert all(out * want >= 0 for out, want in zip(mixed, unlimited, strict=True))
