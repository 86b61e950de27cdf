"""SIP over TLS: a certificate made with the openssl command, real TLS clients on loopback.

Debian's SIPp is built without OpenSSL ("To use a TLS transport you must
compile SIPp with OpenSSL"), so the second peer is ``openssl s_client``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from appliance.config.records import Extension
from appliance.sip.auth import authorization
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.registrar import (
    Registrar,
    RegistrarLimits,
    RegistrationChange,
    RegistrationEvent,
)
from appliance.sip.ua import SipStack
from tests.sip.net import Certificate

WAIT = 20.0
PASSWORD = "phone-1001-secret"


@dataclass
class TlsStack:
    stack: SipStack
    registrar: Registrar
    address: tuple[str, int]


@pytest.fixture
async def tls_stack(certificate: Certificate) -> AsyncIterator[TlsStack]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert, certificate.key)
    registrar = Registrar(
        "callbox",
        {"1001": Extension(number="1001", password=PASSWORD)}.get,
        limits=RegistrarLimits(keepalive_interval=0.2),
    )
    stack = SipStack(registrar=registrar)
    await stack.start("127.0.0.1", 0, tls=context, tls_port=0)
    assert stack.transport is not None
    assert stack.transport.tls_address is not None
    yield TlsStack(stack, registrar, stack.transport.tls_address)
    await stack.close()


class TlsPhone:
    """An asyncio TLS client that trusts the test certificate."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.local = f"{host}:{port}"

    @classmethod
    async def connect(cls, address: tuple[str, int], certificate: Certificate) -> TlsPhone:
        context = ssl.create_default_context(cafile=str(certificate.cert))
        reader, writer = await asyncio.open_connection(
            *address, ssl=context, server_hostname="callbox.test"
        )
        return cls(reader, writer)

    async def receive(self) -> Request | Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(self.reader.readexactly(length), WAIT)
        return parse_message(head + body, "stream")

    async def ask(self, method: str, cseq: int, *extra: str) -> Response:
        lines = "".join(f"{line}\r\n" for line in extra)
        self.writer.write(
            (
                f"{method} sip:1001@callbox.test SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {self.local};branch=z9hG4bKtls{cseq}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:1001@callbox.test>;tag=tl\r\n"
                f"To: <sip:1001@callbox.test>\r\nCall-ID: tls-phone@10.0.0.5\r\n"
                f"CSeq: {cseq} {method}\r\n{lines}Content-Length: 0\r\n\r\n"
            ).encode()
        )
        response = await self.receive()
        assert isinstance(response, Response)
        return response

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_options_over_tls_gets_200_with_the_tls_via(
    tls_stack: TlsStack, certificate: Certificate
) -> None:
    phone = await TlsPhone.connect(tls_stack.address, certificate)
    try:
        response = await phone.ask("OPTIONS", 1)
        assert response.status == 200
        assert response.top_via.transport == "TLS"
        # A second request reuses the same connection.
        assert (await phone.ask("OPTIONS", 2)).status == 200
        assert tls_stack.stack.transport is not None
        assert tls_stack.stack.transport.connection_count == 1
    finally:
        await phone.close()
    assert tls_stack.stack.where().endswith(f"tls 127.0.0.1:{tls_stack.address[1]}")


async def test_phone_registered_over_tls_is_reached_on_its_connection_until_it_closes(
    tls_stack: TlsStack, certificate: Certificate
) -> None:
    phone = await TlsPhone.connect(tls_stack.address, certificate)
    events: asyncio.Queue[RegistrationEvent] = asyncio.Queue()
    tls_stack.registrar.add_listener(events.put_nowait)
    try:
        contact = "Contact: <sip:1001@10.0.0.5:5061;transport=tls>"
        challenge = await phone.ask("REGISTER", 1, contact)
        assert challenge.status == 401
        credentials = authorization(
            challenge.headers.values("WWW-Authenticate")[0],
            method="REGISTER",
            uri="sip:1001@callbox.test",
            username="1001",
            password=PASSWORD,
        )
        ok = await phone.ask("REGISTER", 2, contact, f"Authorization: {credentials}")
        assert ok.status == 200
        (binding,) = tls_stack.registrar.contacts("1001")
        assert binding.source == f"tls {phone.local}"
        assert binding.behind_nat
        # The keep-alive to the private contact comes down the phone's own TLS connection.
        options = await phone.receive()
        assert isinstance(options, Request)
        assert options.method == "OPTIONS"
        assert options.top_via.transport == "TLS"
    finally:
        await phone.close()
    assert (await events.get()).change is RegistrationChange.REGISTERED
    # The connection was the only way to the phone: the binding goes with it.
    gone = await asyncio.wait_for(events.get(), WAIT)
    assert gone.change is RegistrationChange.UNREACHABLE
    assert tls_stack.registrar.bindings == {}


async def test_openssl_s_client_gets_200_to_options_over_tls(
    tls_stack: TlsStack, certificate: Certificate
) -> None:
    host, port = tls_stack.address
    options = (
        f"OPTIONS sip:callbox@{host}:{port};transport=tls SIP/2.0\r\n"
        "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKssl1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=s1\r\n"
        f"To: <sip:callbox@{host}>\r\nCall-ID: s-client@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    process = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", str(certificate.cert),
        "-verify_return_error", "-servername", "callbox.test", "-quiet",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(options.encode())
    await process.stdin.drain()
    try:
        status_line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    finally:
        # -quiet implies -ign_eof: s_client stays until it is stopped.
        process.terminate()
        await asyncio.wait_for(process.communicate(), WAIT)
    assert status_line == b"SIP/2.0 200 OK\r\n"
