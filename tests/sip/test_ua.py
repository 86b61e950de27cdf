"""The switch's UA core answers out-of-dialog requests as RFC 3261 8.2 says (real sockets)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.sip.message import Response, parse_message
from appliance.sip.ua import WARNING_NO_CALLS, SipStack
from tests.sip.test_transaction import ManualClock

TORTURE = Path(__file__).parent / "torture"
WAIT = 10.0


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    sip = SipStack()
    await sip.start("127.0.0.1", 0)
    yield sip
    await sip.close()


class Connection:
    """A TCP client that reads whole responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def ask(self, data: bytes) -> Response:
        self.writer.write(data)
        await self.writer.drain()
        return await self.next_response()

    async def next_response(self) -> Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(self.reader.readexactly(length), WAIT)
        response = parse_message(head + body, "stream")
        assert isinstance(response, Response)
        return response


@pytest.fixture
async def tcp(stack: SipStack) -> AsyncIterator[Connection]:
    assert stack.transport is not None
    reader, writer = await asyncio.open_connection(*stack.transport.tcp_address)
    yield Connection(reader, writer)
    writer.close()
    await writer.wait_closed()


def request(method: str, to_tag: str = "") -> bytes:
    return (
        f"{method} sip:callbox@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK{method.lower()}1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c1\r\n"
        f"To: <sip:callbox@127.0.0.1>{to_tag}\r\nCall-ID: ua-{method}@example.com\r\n"
        f"CSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_options_gets_200_with_capabilities_and_a_to_tag(tcp: Connection) -> None:
    response = await tcp.ask(request("OPTIONS"))
    assert (response.status, response.reason) == (200, "OK")
    assert response.headers.values("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Supported") == ""
    assert response.to.tag


async def test_invite_gets_480_with_warning_and_no_100_before_it(tcp: Connection) -> None:
    # RFC 3261 17.2.1: answered within 200 ms, the INVITE needs no 100 Trying.
    final = await tcp.ask(request("INVITE"))
    assert (final.status, final.reason) == (480, "Temporarily Unavailable")
    assert final.headers.get("Warning") == WARNING_NO_CALLS


async def test_ack_is_never_answered(tcp: Connection) -> None:
    tcp.writer.write(request("ACK"))
    response = await tcp.ask(request("OPTIONS"))
    assert response.cseq.method == "OPTIONS"


@pytest.mark.parametrize(
    ("method", "status", "reason"),
    [
        ("BYE", 481, "Call/Transaction Does Not Exist"),
        ("CANCEL", 481, "Call/Transaction Does Not Exist"),
        ("REGISTER", 405, "Method Not Allowed"),
        ("SUBSCRIBE", 405, "Method Not Allowed"),
        ("FROBNICATE", 501, "Not Implemented"),
    ],
)
async def test_requests_the_core_cannot_serve_get_the_rfc_response(
    tcp: Connection, method: str, status: int, reason: str
) -> None:
    response = await tcp.ask(request(method))
    assert (response.status, response.reason) == (status, reason)
    assert "INVITE" in response.headers.values("Allow")


async def test_request_inside_an_unknown_dialog_gets_481(tcp: Connection) -> None:
    response = await tcp.ask(request("OPTIONS", ";tag=nosuchdialog"))
    assert response.status == 481


async def test_cancel_of_an_answered_invite_gets_200(tcp: Connection) -> None:
    assert (await tcp.ask(request("INVITE"))).status == 480
    cancel = request("CANCEL").replace(b"z9hG4bKcancel1", b"z9hG4bKinvite1")
    response = await tcp.ask(cancel)
    assert (response.status, response.cseq.method) == (200, "CANCEL")


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("unkscm", 416, "Unsupported URI Scheme"),  # RFC 4475 3.3.2
        ("novelsc", 416, "Unsupported URI Scheme"),  # 3.3.3
        ("bext01", 420, "Bad Extension"),  # 3.3.5
        ("invut", 415, "Unsupported Media Type"),  # 3.3.6
        ("regaut01", 405, "Method Not Allowed"),  # 3.3.7: no registrar yet
        ("zeromf", 200, "OK"),  # 3.3.11: a UAS answers Max-Forwards 0
    ],
)
async def test_rfc4475_application_layer_messages_get_their_response(
    tcp: Connection, name: str, status: int, reason: str
) -> None:
    data = (TORTURE / f"{name}.dat").read_bytes()
    response = await tcp.ask(data)
    if response.status == 100:
        response = await tcp.next_response()
    assert (response.status, response.reason) == (status, reason)
    if name == "bext01":
        assert response.headers.values("Unsupported") == [
            "nothingSupportsThis",
            "nothingSupportsThisEither",
        ]
    if name == "invut":
        assert response.headers.get("Accept") == "application/sdp"


async def test_request_missing_required_fields_gets_400_naming_the_field(tcp: Connection) -> None:
    # RFC 4475 3.3.1: the answer cannot echo a To it never got, so read it raw.
    tcp.writer.write((TORTURE / "insuf.dat").read_bytes())
    head = await asyncio.wait_for(tcp.reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"SIP/2.0 400 Missing To header field\r\n")
    assert b"CSeq: 193942 INVITE\r\n" in head


async def test_retransmitted_request_over_udp_gets_the_same_answer_until_timer_j() -> None:
    # RFC 3261 17.2.2: the answered transaction absorbs retransmissions for 64*T1,
    # kept by the layer as the response's bytes; the core's random To tag shows
    # whether a request reached it again.
    clock = ManualClock()
    sip = SipStack(clock=clock)
    await sip.start("127.0.0.1", 0)
    assert sip.transport is not None
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.setblocking(False)
        phone.connect(sip.transport.udp_address)

        async def ask(data: bytes) -> bytes:
            await loop.sock_sendall(phone, data)
            return await asyncio.wait_for(loop.sock_recv(phone, 65535), WAIT)

        # rport (RFC 3581): the answer comes back to this socket, not to the Via's port.
        options = request("OPTIONS").replace(b"TCP 127.0.0.1:5999;", b"UDP 127.0.0.1:5999;rport;")
        first = await ask(options)
        assert first.startswith(b"SIP/2.0 200 OK\r\n")
        clock.advance(31.9)
        assert await ask(options) == first
        clock.advance(0.3)  # past timer J (64*T1, batched within 0.1 s)
        fresh = await ask(options)
    await sip.close()
    assert fresh.startswith(b"SIP/2.0 200 OK\r\n")
    assert fresh != first
