"""Round trips over generated messages, and a bounded fuzz of the parser."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import given, settings
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
from appliance.sip.transport import PING, StreamFramer
from tests.sip.strategies import UNTIMED, addresses, requests, responses, uris, without_length

TORTURE = sorted((Path(__file__).parent / "torture").glob("*.dat"))
SEEDS = [path.read_bytes() for path in TORTURE]


@UNTIMED
@given(uris)
def test_uri_round_trips(uri: Uri) -> None:
    assert parse_uri(str(uri)) == uri


@UNTIMED
@given(addresses)
def test_address_round_trips(address: Address) -> None:
    assert parse_address(str(address)) == address


@UNTIMED
@given(st.one_of(requests(), responses()), st.sampled_from(["datagram", "stream"]))
def test_message_round_trips(message: Request | Response, transport: Transport) -> None:
    wire = message.to_bytes()
    parsed = parse_message(wire, transport)
    assert type(parsed) is type(message)
    assert parsed.start_line() == message.start_line()
    assert parsed.body == message.body
    assert without_length(parsed.headers) == without_length(message.headers)
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


@settings(UNTIMED, max_examples=1500)
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


@settings(UNTIMED, max_examples=500)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@UNTIMED
@given(
    st.lists(st.tuples(st.one_of(requests(), responses()), st.booleans()), min_size=1, max_size=4),
    st.lists(st.integers(1, 400), max_size=10),
)
def test_stream_framer_finds_the_same_messages_however_the_stream_is_cut(
    messages: list[tuple[Request | Response, bool]], cuts: list[int]
) -> None:
    expected: list[bytes] = []
    stream = b""
    for message, ping_first in messages:
        if ping_first:
            stream += PING
            expected.append(PING)
        stream += message.to_bytes()
        expected.append(message.to_bytes())
    framer = StreamFramer()
    frames: list[bytes] = []
    position = 0
    for size in [*cuts, len(stream)]:
        frames += framer.feed(stream[position : position + size])
        position += size
    assert frames == expected
