"""SIP transport layer (RFC 3261 section 18) on asyncio: UDP, TCP and TLS.

``SipTransport`` listens on one host and port for both UDP and TCP, cuts
TCP streams into messages by Content-Length (``StreamFramer``), answers RFC
5626 CRLF keep-alive pings, parses each message and hands it up with the
``Flow`` it arrived on, after the RFC 3261 18.2.1 Via processing
(``received`` and RFC 3581 ``rport``).

A malformed request is answered with the parser's status and reason where
a response can be built, otherwise dropped with a debug log line; either
way the connection and the listener carry on. Only a stream whose framing
is lost (no usable Content-Length) is closed after its 400, because the
start of the next message can no longer be found.

TLS (RFC 3261 26.3.1, port 5061 by default) is one more stream listener
(``start_tls``) on the same code: ``StreamConnection`` only needs an
``asyncio.Transport``, and asyncio's SSL transport gives it decrypted
bytes. TLS connections are kept and reused exactly like TCP ones.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from appliance.sip.message import (
    MAX_MESSAGE_BYTES,
    Request,
    Response,
    SipParseError,
    Transport,
    Via,
    error_response,
    parse_message,
    via_text,
)
from appliance.sip.security import SourceGuard

log = logging.getLogger(__name__)

TransportName = Literal["UDP", "TCP", "TLS"]

PING = b"\r\n\r\n"
"""RFC 5626 3.5.1: a client's keep-alive ping on a stream."""
PONG = b"\r\n"
"""RFC 5626 3.5.1: the server's answer to a ping."""

MAX_UDP_FLOWS = 65536
"""UDP flows (one per source address and port) kept for reuse."""

_CONTENT_LENGTH_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$")


@dataclass(frozen=True)
class TransportLimits:
    """What one source may cost the listener."""

    connections_per_source: int = 64
    """Open TCP connections from one IP address."""
    messages_per_second: float = 500.0
    """Sustained messages from one IP address (token bucket)."""
    burst: int = 1000
    """Messages one IP address may send at once before the rate applies."""
    udp_receive_buffer: int = 4 * 1024 * 1024
    """Bytes the kernel may queue on the UDP listener (capped by net.core.rmem_max).

    The default (about 200 KB) holds only a few hundred small datagrams: a
    pause of the loop for a garbage collection under load overflows it, and
    every datagram dropped costs its sender a retransmission 500 ms later.
    """


class SourceLimiter:
    """Per-source token buckets: ``allow(ip)`` is False once a source floods.

    ``clock`` returns seconds (monotonic); tests pass their own.
    """

    def __init__(self, limits: TransportLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, source: str) -> bool:
        """Take one token for ``source``; False when it has none left."""
        now = self.clock()
        tokens, last = self._buckets.get(source, (float(self.limits.burst), now))
        tokens = min(
            float(self.limits.burst), tokens + (now - last) * self.limits.messages_per_second
        )
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1.0, now)
        if len(self._buckets) > 65536:
            # Forget full buckets so spoofed UDP sources cannot grow the table forever.
            full = float(self.limits.burst)
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < full}
        return True


class FramingError(Exception):
    """A stream whose next message cannot be delimited; ``head`` is what was read."""

    def __init__(self, reason: str, head: bytes, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.head = head
        self.status = status


class StreamFramer:
    """Cuts a byte stream into SIP messages by Content-Length (RFC 3261 18.3).

    ``feed`` returns complete messages and ``PING`` for each keep-alive
    ping; CRLFs between messages are skipped (RFC 3261 7.5).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return what is now complete. Raises FramingError."""
        self._buffer += data
        frames: list[bytes] = []
        while True:
            buffer = self._buffer
            if buffer.startswith(PING):
                frames.append(PING)
                del buffer[:4]
                continue
            if buffer.startswith(b"\r\n"):
                if len(buffer) < 4 and PING.startswith(bytes(buffer)):
                    break
                del buffer[:2]
                continue
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_MESSAGE_BYTES:
                    raise FramingError("Message Too Large", bytes(buffer[:4096]), 513)
                break
            head = bytes(buffer[:end])
            lengths = set(_CONTENT_LENGTH_RE.findall(head))
            if len(lengths) != 1:
                # Without one agreed length the next message cannot be found.
                del buffer[: end + 4]
                problem = "Missing" if not lengths else "Conflicting"
                raise FramingError(f"{problem} Content-Length", head)
            length = int(lengths.pop())
            if end + 4 + length > MAX_MESSAGE_BYTES:
                raise FramingError("Message Too Large", head, 513)
            if len(buffer) < end + 4 + length:
                break
            frames.append(bytes(buffer[: end + 4 + length]))
            del buffer[: end + 4 + length]
        return frames


@dataclass(eq=False)
class Flow:
    """Where a message came from and how to answer on the same path.

    For TCP it is the connection; for UDP the listener's socket and the
    source address. RFC 5626 calls this a flow.
    """

    transport: TransportName
    remote: tuple[str, int]
    local: tuple[str, int]
    _send: Callable[[bytes], None] = field(repr=False)

    @property
    def reliable(self) -> bool:
        """True for stream transports (no retransmissions, RFC 3261 17)."""
        return self.transport != "UDP"

    def send(self, data: bytes) -> None:
        """Send bytes back along this flow."""
        self._send(data)


MessageHandler = Callable[[Request | Response, Flow], None]


def received_via(via: Via, source: tuple[str, int]) -> Via:
    """RFC 3261 18.2.1 and RFC 3581 4: note where a request really came from."""
    host, port = source
    updates: dict[str, str | None] = {}
    if via.rport is True:
        updates["rport"] = str(port)
        updates["received"] = host
    elif via.host.strip("[]") != host:
        updates["received"] = host
    return via.with_params(**updates) if updates else via


def response_destination(via: Via, source: tuple[str, int]) -> tuple[str, int]:
    """RFC 3261 18.2.2 with RFC 3581: where an unreliable response goes."""
    if (maddr := via.param("maddr")) is not None:
        return maddr.strip("[]"), via.port or 5060
    received = via.received
    rport = via.rport
    if received is not None and isinstance(rport, int) and rport is not True:
        return received, rport
    if received is not None:
        return received, via.port or 5060
    if rport is True:
        return source
    return via.host.strip("[]"), via.port or 5060


class SipTransport:
    """UDP and TCP listeners on one address, handing parsed messages to ``handler``."""

    def __init__(
        self,
        handler: MessageHandler,
        limits: TransportLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        guard: SourceGuard | None = None,
    ) -> None:
        self.handler = handler
        self.flow_closed: Callable[[Flow], None] = lambda flow: None
        """Told when a TCP or TLS connection (a flow) has closed."""
        self.guard = guard
        self.limits = limits or TransportLimits()
        self.limiter = SourceLimiter(self.limits, clock)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], StreamConnection] = {}
        self._udp_flows: dict[tuple[str, int], Flow] = {}
        self._per_source: dict[str, int] = {}
        self.udp_address: tuple[str, int] = ("", 0)
        self.tcp_address: tuple[str, int] = ("", 0)
        self.tls_address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind UDP and TCP on ``host``:``port`` (port 0: one free port for both)."""
        # With port 0 the UDP port the kernel picks may be taken for TCP (by any
        # connection's ephemeral port), so a few other ports are tried then.
        attempts = 20 if port == 0 else 1
        for attempt in range(attempts):
            try:
                await self._bind(host, port)
                return
            except OSError as error:
                if attempt == attempts - 1 or error.errno != errno.EADDRINUSE:
                    raise

    async def _bind(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(self), local_addr=(host, port)
        )
        self._udp = udp
        udp.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, self.limits.udp_receive_buffer
        )
        self.udp_address = _address(udp.get_extra_info("sockname"))
        try:
            self._tcp = await loop.create_server(
                lambda: StreamConnection(self, "TCP"), host, self.udp_address[1]
            )
        except OSError:
            udp.close()
            self._udp = None
            raise
        self.tcp_address = _address(self._tcp.sockets[0].getsockname())

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        """Listen for TLS on ``host``:``port`` (port 0: a free one) with a server ``context``."""
        loop = asyncio.get_running_loop()
        self._tls = await loop.create_server(
            lambda: StreamConnection(self, "TLS"), host, port, ssl=context
        )
        self.tls_address = _address(self._tls.sockets[0].getsockname())

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._udp is not None:
            self._udp.close()
        for connection in list(self._connections.values()):
            connection.close()
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
                await server.wait_closed()

    @property
    def connection_count(self) -> int:
        """Open TCP connections, both accepted and opened by us."""
        return len(self._connections)

    def send_udp(self, data: bytes, destination: tuple[str, int]) -> None:
        """Send one datagram from the listening socket (an IP address, not a name)."""
        if self._udp is None or self._udp.is_closing():
            log.debug("not sent to %s: UDP listener closed", destination)
            return
        self._udp.sendto(data, destination)

    async def connect_tcp(self, destination: tuple[str, int]) -> Flow:
        """A TCP flow to ``destination``, reusing an open connection (RFC 3261 18.1.1)."""
        return await self._connect(destination, "TCP", None)

    async def connect_tls(
        self, destination: tuple[str, int], context: ssl.SSLContext, server_hostname: str
    ) -> Flow:
        """A TLS flow to ``destination``, reusing an open TLS connection."""
        return await self._connect(destination, "TLS", context, server_hostname)

    async def _connect(
        self,
        destination: tuple[str, int],
        name: TransportName,
        context: ssl.SSLContext | None,
        server_hostname: str | None = None,
    ) -> Flow:
        existing = self._connections.get(destination)
        if existing is not None and existing.transport_name == name:
            return existing.flow
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: StreamConnection(self, name),
            destination[0],
            destination[1],
            ssl=context,
            server_hostname=server_hostname,
        )
        return connection.flow

    def udp_flow(self, destination: tuple[str, int]) -> Flow:
        """A flow that sends datagrams to ``destination`` from the listener.

        A UDP flow holds no state of its own, so one per source serves every
        datagram from it: each transaction keeps its flow for 32 s after its
        answer (timer J), and fewer objects alive means shorter pauses of the
        garbage collector.
        """
        flow = self._udp_flows.get(destination)
        if flow is None:
            if len(self._udp_flows) >= MAX_UDP_FLOWS:
                # Spoofed sources must not grow the table; dropped flows still work.
                self._udp_flows.clear()
            flow = Flow(
                "UDP", destination, self.udp_address, lambda d: self.send_udp(d, destination)
            )
            self._udp_flows[destination] = flow
        return flow

    def send_response(self, response: Response, flow: Flow) -> None:
        """Send a response: on the request's connection, or by RFC 3261 18.2.2 over UDP."""
        if flow.reliable:
            flow.send(response.to_bytes())
            return
        self.send_udp(*self.response_datagram(response, flow))

    def response_datagram(self, response: Response, flow: Flow) -> tuple[bytes, tuple[str, int]]:
        """The bytes of a response over UDP and where RFC 3261 18.2.2 sends them."""
        try:
            destination = response_destination(response.top_via, flow.remote)
        except (SipParseError, IndexError):
            destination = flow.remote
        if not _is_ip(destination[0]):
            # A sent-by name would need RFC 3263 DNS lookups (not built yet); the
            # request's source address reaches the sender in every case we meet.
            destination = flow.remote
        return response.to_bytes(), destination

    def receive(self, data: bytes, flow: Flow, framing: Transport) -> None:
        """Parse one message and pass it up; answer or drop it if malformed."""
        guard = self.guard
        if guard is not None and guard.banned(flow.remote[0]):
            return
        if not self.limiter.allow(flow.remote[0]):
            log.debug("dropped message from %s: over the rate limit", flow.remote)
            return
        try:
            message = parse_message(data, framing)
        except SipParseError as error:
            self._reject(error, flow)
            return
        if isinstance(message, Request):
            if guard is not None and guard.is_scanner(message):
                log.debug("dropped request from scanner at %s", flow.remote)
                return
            try:
                message.headers.replace_first_value(
                    "Via", via_text(received_via(message.top_via, flow.remote))
                )
            except SipParseError as error:
                self._reject(error, flow)
                return
        try:
            self.handler(message, flow)
        except Exception:
            # A bug above must not take the listener down with it.
            log.exception("SIP message handler failed for a message from %s", flow.remote)

    def _reject(self, error: SipParseError, flow: Flow) -> None:
        response = error_response(error)
        if response is None:
            log.debug("dropped malformed message from %s: %s", flow.remote, error.reason)
            return
        log.debug("answered malformed request from %s: %s", flow.remote, error.reason)
        flow.send(response.to_bytes())

    def _register(self, connection: StreamConnection) -> bool:
        source = connection.flow.remote[0]
        if self.guard is not None and self.guard.banned(source):
            return False
        if self._per_source.get(source, 0) >= self.limits.connections_per_source:
            log.debug("refused connection from %s: too many from this source", source)
            return False
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._connections[connection.flow.remote] = connection
        return True

    def _unregister(self, connection: StreamConnection) -> None:
        if self._connections.get(connection.flow.remote) is connection:
            del self._connections[connection.flow.remote]
            source = connection.flow.remote[0]
            self._per_source[source] -= 1
            if not self._per_source[source]:
                del self._per_source[source]


@functools.lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    # Asked for each response sent over UDP, nearly always of the same few hosts.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address(sockname: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    host = str(ipaddress.ip_address(sockname[0]))
    return host, int(sockname[1])


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if not data.strip(b"\r\n\t "):
            # Keep-alive datagrams (CRLF, or empty) need no answer on UDP.
            return
        remote = (str(addr[0]), int(addr[1]))
        self.owner.receive(data, self.owner.udp_flow(remote), "datagram")

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier send must not stop the listener.
        log.debug("UDP error: %s", exc)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framing, keep-alive pongs, limits."""

    def __init__(self, owner: SipTransport, transport_name: TransportName) -> None:
        self.owner = owner
        self.transport_name = transport_name
        self.framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self.flow = Flow(transport_name, ("", 0), ("", 0), self._write)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.flow = Flow(
            self.transport_name,
            _address(transport.get_extra_info("peername")),
            _address(transport.get_extra_info("sockname")),
            self._write,
        )
        if not self.owner._register(self):
            transport.abort()
            self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except FramingError as error:
            self._framing_lost(error)
            return
        for frame in frames:
            if frame == PING:
                self._write(PONG)
            else:
                self.owner.receive(frame, self.flow, "stream")

    def _framing_lost(self, error: FramingError) -> None:
        log.debug(
            "closing %s connection from %s: %s", self.transport_name, self.flow.remote, error.reason
        )
        try:
            parse_message(error.head + b"\r\n\r\n", "stream")
        except SipParseError as parse_error:
            # Answer with the framing problem: it is why the connection closes.
            framing_error = SipParseError(
                error.reason, error.status, method=parse_error.method, headers=parse_error.headers
            )
            response = error_response(framing_error)
            if response is not None:
                self._write(response.to_bytes())
        self.close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Close after pending writes."""
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._unregister(self)
        self._transport = None
        self.owner.flow_closed(self.flow)
