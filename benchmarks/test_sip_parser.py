"""SIP message kernels: parse and serialise the messages a switch sees most.

``make bench`` times them; ``make test`` runs each once with timing off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from appliance.sip.message import parse_message

TORTURE = Path(__file__).parents[1] / "tests" / "sip" / "torture"

OPTIONS = (
    b"OPTIONS sip:callbox@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:callbox@192.0.2.10>\r\n"
    b'From: "Trunk" <sip:trunk@192.0.2.20>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@192.0.2.20\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n\r\n"
)

MESSAGES = {
    "options": OPTIONS,
    "wsinv": (TORTURE / "wsinv.dat").read_bytes(),
    "longreq": (TORTURE / "longreq.dat").read_bytes(),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_parse(benchmark: BenchmarkFixture, name: str) -> None:
    data = MESSAGES[name]
    message = benchmark(parse_message, data)
    assert message.headers


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_serialise(benchmark: BenchmarkFixture, name: str) -> None:
    message = parse_message(MESSAGES[name])
    wire = benchmark(message.to_bytes)
    assert parse_message(wire).headers == message.headers
