"""The SIP transport on real loopback sockets: UDP, TCP framing, keep-alive, bad input, limits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from appliance.sip.message import Request, Response, parse_message
from appliance.sip.transport import (
    PING,
    PONG,
    Flow,
    FramingError,
    SipTransport,
    SourceLimiter,
    StreamFramer,
    TransportLimits,
)

WAIT = 10.0


def options(branch: str = "z9hG4bKabc", extra: str = "") -> bytes:
    return (
        "OPTIONS sip:callbox@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP client.invalid:5099;rport;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:tester@example.com>;tag=t1\r\n"
        "To: <sip:callbox@127.0.0.1>\r\n"
        f"Call-ID: {branch}@client\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@dataclass
class Recorder:
    """Handler that records what arrives and answers every request with 200."""

    transport: SipTransport | None = None
    received: asyncio.Queue[tuple[Request | Response, Flow]] = field(default_factory=asyncio.Queue)

    def __call__(self, message: Request | Response, flow: Flow) -> None:
        self.received.put_nowait((message, flow))
        if isinstance(message, Request) and self.transport is not None:
            self.transport.send_response(message.response(200, "OK", to_tag="srv"), flow)


@pytest.fixture
async def served() -> AsyncIterator[tuple[SipTransport, Recorder]]:
    recorder = Recorder()
    transport = SipTransport(recorder, TransportLimits(connections_per_source=3))
    recorder.transport = transport
    await transport.start("127.0.0.1", 0)
    yield transport, recorder
    await transport.close()


async def udp_exchange(sock: socket.socket, data: bytes, to: tuple[str, int]) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, to)
    return await asyncio.wait_for(loop.sock_recv(sock, 65535), WAIT)


async def udp_answer(sock: socket.socket, data: bytes, transport: SipTransport) -> Response:
    answer = parse_message(await udp_exchange(sock, data, transport.udp_address))
    assert isinstance(answer, Response)
    return answer


@pytest.fixture
def udp_client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def test_udp_request_is_delivered_with_received_and_rport_and_answered(
    served: tuple[SipTransport, Recorder], udp_client: socket.socket
) -> None:
    transport, recorder = served
    response = await udp_answer(udp_client, options(), transport)
    request, flow = recorder.received.get_nowait()
    assert isinstance(request, Request)
    port = udp_client.getsockname()[1]
    assert request.top_via.received == "127.0.0.1"
    assert request.top_via.rport == port
    assert (flow.transport, flow.remote) == ("UDP", ("127.0.0.1", port))
    assert (response.status, response.to.tag) == (200, "srv")


async def test_malformed_udp_request_gets_400_with_reason_and_listener_survives(
    served: tuple[SipTransport, Recorder], udp_client: socket.socket
) -> None:
    transport, recorder = served
    bad = options().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    answer = await udp_answer(udp_client, bad, transport)
    assert (answer.status, answer.reason) == (400, "CSeq method does not match Request-Line")
    assert recorder.received.empty()
    good = parse_message(
        await udp_exchange(udp_client, options("z9hG4bKok"), transport.udp_address)
    )
    assert isinstance(good, Response)
    assert good.status == 200


async def test_garbage_and_broken_responses_over_udp_are_dropped_silently(
    served: tuple[SipTransport, Recorder], udp_client: socket.socket
) -> None:
    transport, recorder = served
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(udp_client, b"\x00\xff garbage", transport.udp_address)
    await loop.sock_sendto(udp_client, b"SIP/2.0 99999 no\r\n\r\n", transport.udp_address)
    await loop.sock_sendto(udp_client, b"\r\n\r\n", transport.udp_address)
    # The first thing back is the answer to the good request: nothing answered the rest.
    good = parse_message(
        await udp_exchange(udp_client, options("z9hG4bKok"), transport.udp_address)
    )
    assert isinstance(good, Response)
    assert good.status == 200
    assert recorder.received.qsize() == 1


async def tcp_open(
    transport: SipTransport,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*transport.tcp_address)


async def send(writer: asyncio.StreamWriter, *chunks: bytes) -> None:
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def read_message(reader: asyncio.StreamReader) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    message = parse_message(head + await read_body(reader, head), "stream")
    assert isinstance(message, Response)
    return message


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return await asyncio.wait_for(reader.readexactly(length), WAIT)


async def test_tcp_frames_by_content_length_across_and_within_writes(
    served: tuple[SipTransport, Recorder],
) -> None:
    transport, recorder = served
    reader, writer = await tcp_open(transport)
    with_body = options("z9hG4bK2", "Content-Type: text/plain\r\n").replace(
        b"Content-Length: 0\r\n\r\n", b"Content-Length: 5\r\n\r\nhello"
    )
    stream = b"\r\n" + options("z9hG4bK1") + with_body + options("z9hG4bK3")
    await send(writer, stream[:50])
    await send(writer, stream[50:])
    statuses = [(await read_message(reader)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    got = [recorder.received.get_nowait() for _ in range(3)]
    assert [m.top_via.branch for m, _ in got] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert got[1][0].body == b"hello"
    assert all(flow.transport == "TCP" for _, flow in got)
    await close(writer)


async def test_tcp_keepalive_ping_gets_a_pong(served: tuple[SipTransport, Recorder]) -> None:
    transport, _ = served
    reader, writer = await tcp_open(transport)
    await send(writer, PING)
    assert await asyncio.wait_for(reader.readexactly(2), WAIT) == PONG
    await close(writer)


async def test_malformed_tcp_request_gets_400_and_connection_stays_open(
    served: tuple[SipTransport, Recorder],
) -> None:
    transport, _ = served
    reader, writer = await tcp_open(transport)
    bad = options().replace(b"Max-Forwards: 70", b"Max-Forwards: 700")
    await send(writer, bad + options("z9hG4bKafter"))
    first = await read_message(reader)
    assert (first.status, first.reason) == (400, "Bad Max-Forwards: 700 is out of range")
    second = await read_message(reader)
    assert second.status == 200
    await close(writer)


async def test_tcp_request_without_content_length_gets_400_then_close(
    served: tuple[SipTransport, Recorder],
) -> None:
    transport, _ = served
    reader, writer = await tcp_open(transport)
    await send(writer, options().replace(b"Content-Length: 0\r\n", b""))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"SIP/2.0 400 Missing Content-Length\r\n")
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    await close(writer)


async def test_connections_over_the_per_source_limit_are_refused(
    served: tuple[SipTransport, Recorder],
) -> None:
    transport, _ = served
    kept = [await tcp_open(transport) for _ in range(3)]
    for reader, writer in kept:
        await send(writer, PING)
        assert await asyncio.wait_for(reader.readexactly(2), WAIT) == PONG
    reader, writer = await tcp_open(transport)
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    for _, kept_writer in kept:
        await close(kept_writer)
    await close(writer)


async def test_outgoing_tcp_connection_is_reused_and_carries_both_ways() -> None:
    client_recorder, server_recorder = Recorder(), Recorder()
    client, server = SipTransport(client_recorder), SipTransport(server_recorder)
    server_recorder.transport = server
    await server.start("127.0.0.1", 0)
    await client.start("127.0.0.1", 0)
    try:
        flow = await client.connect_tcp(server.tcp_address)
        assert await client.connect_tcp(server.tcp_address) is flow
        flow.send(options("z9hG4bKout"))
        response, back = await asyncio.wait_for(client_recorder.received.get(), WAIT)
        assert isinstance(response, Response)
        assert response.status == 200
        assert back is flow
        assert client.connection_count == 1
    finally:
        await client.close()
        await server.close()


def test_framer_waits_for_a_whole_ping_and_skips_single_crlf() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [PING]
    assert framer.feed(b"\r\n" + options()) == [options()]


def test_framer_refuses_conflicting_content_lengths() -> None:
    framer = StreamFramer()
    with pytest.raises(FramingError, match="Conflicting Content-Length"):
        framer.feed(options().replace(b"Content-Length: 0\r\n", b"l: 4\r\nContent-Length: 0\r\n"))


def test_framer_refuses_a_head_that_never_ends() -> None:
    framer = StreamFramer()
    with pytest.raises(FramingError) as caught:
        framer.feed(b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * 70000)
    assert caught.value.status == 513


def test_source_limiter_refuses_a_flood_and_refills_with_time() -> None:
    now = [0.0]
    limiter = SourceLimiter(TransportLimits(messages_per_second=10, burst=5), lambda: now[0])
    assert [limiter.allow("192.0.2.1") for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("192.0.2.2")
    now[0] += 0.1
    assert limiter.allow("192.0.2.1")
    assert not limiter.allow("192.0.2.1")


async def test_a_flooding_source_is_cut_off_while_others_are_served() -> None:
    recorder = Recorder()
    transport = SipTransport(recorder, TransportLimits(messages_per_second=1e-6, burst=2))
    recorder.transport = transport
    await transport.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Limits are per IP address: the other source binds another loopback address.
        for sock, address in ((flooder, "127.0.0.1"), (other, "127.0.0.2")):
            sock.bind((address, 0))
            sock.setblocking(False)
        for n in range(2):
            assert (await udp_answer(flooder, options(f"z9hG4bKf{n}"), transport)).status == 200
        await loop.sock_sendto(flooder, options("z9hG4bKf2"), transport.udp_address)
        # Loopback keeps order: the third request was handled (or not) before this one.
        assert (await udp_answer(other, options("z9hG4bKo"), transport)).status == 200
        with pytest.raises(BlockingIOError):
            flooder.recv(65535)
        assert recorder.received.qsize() == 3
    finally:
        flooder.close()
        other.close()
        await transport.close()
