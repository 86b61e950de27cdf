"""RTP kernels per packet: parse, build and the receive-statistics update.

Each call crosses the binding once, so the native numbers are an upper bound
of the C++ cost on the packet path (which never crosses into Python).
"""

from __future__ import annotations

from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from core import _reference
from core._loader import impl as _impl

IMPLEMENTATIONS: dict[str, ModuleType] = {"core": _impl, "python-reference": _reference}
PACKET = _reference.build_rtp(8, 1000, 160_000, 0x1234, b"\xd5" * 160)


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_rtp_parse_packet(benchmark: BenchmarkFixture, name: str) -> None:
    parsed = benchmark(IMPLEMENTATIONS[name].parse_rtp, PACKET)
    assert parsed[2] == 1000


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_rtp_build_packet(benchmark: BenchmarkFixture, name: str) -> None:
    packet = benchmark(IMPLEMENTATIONS[name].build_rtp, 8, 1000, 160_000, 0x1234, b"\xd5" * 160)
    assert packet == PACKET


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_receive_stats_update_per_packet(benchmark: BenchmarkFixture, name: str) -> None:
    stats = IMPLEMENTATIONS[name].ReceiveStats()
    stats.update(0, 0, 3)  # past probation: measure the steady state
    state = {"seq": 0}

    def one_packet() -> int:
        seq = state["seq"] = (state["seq"] + 1) & 0xFFFF
        result: int = stats.update(seq, seq * 160, seq * 160 + 3)
        return result

    benchmark(one_packet)
    assert stats.snapshot()[7]
