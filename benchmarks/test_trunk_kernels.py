"""Trunk kernels: on each inbound INVITE which trunk sent it, who calls, what was dialled;
on each outside call the route its number takes.

``make bench`` times them; ``make test`` runs each once with timing off.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from appliance.calls.outbound import plan_outbound
from appliance.config.records import OutboundRoute, Trunk, TrunkMode
from appliance.numbers import normalise_number
from appliance.sip.message import Request, parse_message
from appliance.sip.trunk import Trunks

INVITE = parse_message(
    b"INVITE sip:4008001234@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.49;branch=z9hG4bKbench\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:013812345678@198.51.100.49>;tag=f1\r\n"
    b"To: <sip:4008001234@192.0.2.1>\r\nCall-ID: bench@198.51.100.49\r\nCSeq: 1 INVITE\r\n"
    b"P-Asserted-Identity: <sip:+8613812345678@198.51.100.49>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.fixture
def fifty_trunks() -> Trunks:
    trunks = Trunks()
    trunks.configure(
        [
            Trunk(
                name=f"gw{i}",
                mode=TrunkMode.IP,
                host=f"198.51.100.{i}",
                allow=[f"198.51.100.{i}/32"],
                options_interval=0,
            )
            for i in range(50)
        ]
    )
    return trunks


def test_inbound_call_among_50_trunks(benchmark: BenchmarkFixture, fifty_trunks: Trunks) -> None:
    assert isinstance(INVITE, Request)
    call = benchmark(fifty_trunks.inbound_call, INVITE, "198.51.100.49")
    assert call is not None
    assert call.trunk == "gw49"


@pytest.mark.parametrize("number", ["013812345678", "4008001234", "8001"])
def test_normalise_number(benchmark: BenchmarkFixture, number: str) -> None:
    assert benchmark(normalise_number, number)


def test_outbound_route_among_100_routes(benchmark: BenchmarkFixture) -> None:
    # The worst case: the number matches only the last of 100 routes (each a pattern test).
    routes = [
        OutboundRoute(f"r{i}", f"9{i:02d}XXXXXXXX", ["gw"], callers=["all"]) for i in range(99)
    ]
    routes.append(OutboundRoute("mobile", "01[3-9]XXXXXXXXX", ["gw"], strip=1, callers=["all"]))
    plan = benchmark(plan_outbound, routes, "013812345678", "1001")
    assert (plan.route.name, plan.number) == ("mobile", "13812345678")
