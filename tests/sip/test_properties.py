"""Round trips over generated messages, and a bounded fuzz of the parser."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.sip.message import (
    Address,
    Request,
    Response,
    SipParseError,
    Transport,
    Uri,
    parse_address,
    parse_message,
    parse_uri,
)
from tests.sip.strategies import addresses, requests, responses, uris

TORTURE = sorted((Path(__file__).parent / "torture").glob("*.dat"))
SEEDS = [path.read_bytes() for path in TORTURE]


@given(uris)
def test_uri_round_trips(uri: Uri) -> None:
    assert parse_uri(str(uri)) == uri


@given(addresses)
def test_address_round_trips(address: Address) -> None:
    assert parse_address(str(address)) == address


@given(st.one_of(requests(), responses()), st.sampled_from(["datagram", "stream"]))
def test_message_round_trips(message: Request | Response, transport: Transport) -> None:
    wire = message.to_bytes()
    parsed = parse_message(wire, transport)
    assert type(parsed) is type(message)
    assert parsed.start_line() == message.start_line()
    assert parsed.body == message.body
    assert [f for f in parsed.headers if f[0] != "Content-Length"] == list(message.headers)
    assert parsed.to_bytes() == wire


# Mutations that tend to find parser bugs: flip, insert or delete bytes, cut the
# message short, or repeat a slice (a header line twice, a half line).
INTERESTING = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b'"',
    b"\\",
    b"<",
    b">",
    b"%",
    b"@",
    b"[",
    b"]",
    b"\xff",
    b"\xc3",
    b"=",
    b"?",
    b"9" * 30,
    b"-",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 4))
        if op == 0:
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            data[at:at] = draw(st.sampled_from(INTERESTING))
        elif op == 2:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == 3:
            del data[at:]
        else:
            end = min(len(data), at + draw(st.integers(1, 80)))
            data[at:at] = data[at:end]
    return bytes(data)


def reason_fits_a_status_line(reason: str) -> None:
    assert reason
    assert "\r" not in reason
    assert "\n" not in reason


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from(["datagram", "stream"]))
def test_fuzzed_torture_messages_raise_only_sip_parse_error(
    data: bytes, transport: Transport
) -> None:
    try:
        message = parse_message(data, transport)
    except SipParseError as error:
        reason_fits_a_status_line(error.reason)
        return
    # What the parser accepts, it must be able to send on and read back.
    again = parse_message(message.to_bytes(), transport if transport == "datagram" else "stream")
    assert again.headers.lines("Via") == message.headers.lines("Via")
    assert again.body == message.body


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)
