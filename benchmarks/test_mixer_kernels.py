"""One conference tick of the mixer: every party puts a 20 ms frame, then one mix.

Everyone talking is the worst case: each party gets an own N-1 mix and the
shared mix is only the recorder's. Each put and the mix cross the binding, so
the native numbers bound the C++ cost from above; in the engine the worker
calls the mixer directly. The Python twin is measured at 3 parties only, as
the yardstick; it is far too slow for a real conference.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from core import _reference
from core._loader import impl as _impl
from tests.core.signals import tone_pcm

RATE = 8000


def conference_tick(implementation: ModuleType, parties: int) -> Callable[[], object]:
    """A closure that runs one tick of a conference in which all ``parties`` talk."""
    mixer = implementation.Mixer(RATE, 107374, 15)
    frames = [tone_pcm(300 + 50 * p, -20.0, RATE, RATE // 50) for p in range(parties)]
    for participant in range(parties):
        mixer.add(participant)

    def tick() -> object:
        for participant, frame in enumerate(frames):
            mixer.put(participant, frame)
        return mixer.mix()

    return tick


@pytest.mark.parametrize("parties", [3, 10, 50])
def test_mixer_tick_all_talking(benchmark: BenchmarkFixture, parties: int) -> None:
    _, shared, own, _ = benchmark(conference_tick(_impl, parties))
    assert shared == []
    assert len(own) == parties


def test_mixer_tick_all_talking_python_reference(benchmark: BenchmarkFixture) -> None:
    _, shared, own, _ = benchmark(conference_tick(_reference, 3))
    assert shared == []
    assert len(own) == 3
