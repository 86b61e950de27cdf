"""The jitter buffer per 20 ms frame: one put and one playout get, steady state.

Each call crosses the binding, so the native numbers bound the C++ cost from
above; in the engine the worker calls the buffer directly. The public wrapper
(argument checks, dataclass per tick) is measured too: it is what a Python
caller such as a recorder test pays.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core
from core import _reference
from core._loader import impl as _impl

IMPLEMENTATIONS: dict[str, ModuleType] = {"core": _impl, "python-reference": _reference}
PAYLOAD = b"\xd5" * 160  # 20 ms of G.711
HELD = 1  # frames waiting in the buffer before each tick: on target, so NORMAL each tick


def steady_frames(put: Callable[..., object], get: Callable[[int], object]) -> Callable[[], None]:
    """A closure that feeds one on-time frame and plays one tick, HELD frames ahead."""
    state = {"i": 0}
    for i in range(HELD):
        put(PAYLOAD, i * 160, i, 160, i * 20, 1)

    def one_frame() -> None:
        i = state["i"] = state["i"] + 1
        ahead = i + HELD - 1
        put(PAYLOAD, (ahead * 160) & 0xFFFFFFFF, ahead & 0xFFFF, 160, ahead * 20, 1)
        get(i * 20)

    return one_frame


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_jitter_put_and_get_per_frame(benchmark: BenchmarkFixture, name: str) -> None:
    jb = IMPLEMENTATIONS[name].JitterBuffer(8000, 20, 1000, 200)
    benchmark(steady_frames(jb.put, lambda now: jb.get(now, True)))
    assert core.JitterStats(*jb.stats()).played > 0


def test_jitter_put_and_get_per_frame_through_the_public_wrapper(
    benchmark: BenchmarkFixture,
) -> None:
    jb = core.JitterBuffer()
    benchmark(steady_frames(jb.put, jb.get))
    assert jb.stats().played > 0
