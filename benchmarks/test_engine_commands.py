"""How long a command from Python to the media engine takes to come back.

Each call queues a command for a worker and waits for the worker thread to
apply it. Before the worker was woken for commands they waited for its next
20 ms tick (about 10 ms on average); now the post wakes it, so what is left
is the queue, the eventfd wake-up and the thread switches.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the media engine is in the compiled core only"
)


@pytest.fixture
def engine() -> Iterator[core.Engine]:
    with core.Engine(workers=1, port_min=20000, port_max=20999) as engine:
        yield engine


def test_engine_leg_stats(benchmark: BenchmarkFixture, engine: core.Engine) -> None:
    leg = engine.create_rtp_leg(codec="PCMA")
    stats = benchmark(leg.stats)
    assert stats.packets_received == 0


def test_engine_create_and_close_leg(benchmark: BenchmarkFixture, engine: core.Engine) -> None:
    def create_and_close() -> core.LegStats:
        return engine.create_rtp_leg(codec="PCMA").close()

    assert benchmark(create_and_close).packets_sent == 0
