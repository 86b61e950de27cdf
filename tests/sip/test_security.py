"""Password guessers are slowed then banned, scanners dropped: real UDP and TCP on loopback.

The guesser sends from 127.0.0.2 and the honest phone from 127.0.0.1 (all
of 127/8 is loopback on Linux), so one source's ban shows against the other.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from appliance.config.records import Extension
from appliance.settings import SecuritySettings
from appliance.sip.auth import authorization
from appliance.sip.message import Response, parse_message
from appliance.sip.registrar import Registrar
from appliance.sip.security import SourceGuard
from appliance.sip.ua import SipStack
from tests.sip.test_registrar import WallClock

WAIT = 20.0
LIMITS = SecuritySettings(slow_after=2, slow_s=0.3, ban_after=3, window_s=300, ban_s=600)


@dataclass
class Guarded:
    stack: SipStack
    guard: SourceGuard
    now: WallClock
    target: tuple[str, int]


async def guarded_stack(limits: SecuritySettings) -> Guarded:
    now = WallClock()
    guard = SourceGuard(limits, now)
    registrar = Registrar(
        "callbox", {"1001": Extension(number="1001", password="phone-1001-secret")}.get
    )
    stack = SipStack(registrar=registrar, guard=guard)
    await stack.start("127.0.0.1", 0)
    assert stack.transport is not None
    return Guarded(stack, guard, now, stack.transport.udp_address)


@pytest.fixture
async def guarded() -> AsyncIterator[Guarded]:
    setup = await guarded_stack(LIMITS)
    yield setup
    await setup.stack.close()


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    made = []
    for host in ("127.0.0.1", "127.0.0.2"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        made.append(sock)
    yield made[0], made[1]
    for sock in made:
        sock.close()


def request(method: str, sock: socket.socket, cseq: int, *extra: str) -> bytes:
    host, port = sock.getsockname()
    lines = "".join(f"{line}\r\n" for line in extra)
    return (
        f"{method} sip:1001@callbox SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK{method}{port}x{cseq}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:1001@callbox>;tag=t{port}\r\n"
        f"To: <sip:1001@callbox>\r\nCall-ID: {method}-{port}-{cseq}@{host}\r\n"
        f"CSeq: {cseq} {method}\r\nContact: <sip:1001@{host}:{port}>\r\n{lines}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def ask(sock: socket.socket, data: bytes, target: tuple[str, int]) -> Response:
    sock.sendto(data, target)
    reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), WAIT)
    response = parse_message(reply)
    assert isinstance(response, Response)
    return response


async def guess(sock: socket.socket, target: tuple[str, int], cseq: int) -> Response:
    """One REGISTER with a wrong password: 401, then the guessed answer."""
    challenge = await ask(sock, request("REGISTER", sock, cseq), target)
    assert challenge.status == 401
    credentials = authorization(
        challenge.headers.values("WWW-Authenticate")[0],
        method="REGISTER",
        uri="sip:1001@callbox",
        username="1001",
        password="password123",
    )
    return await ask(
        sock, request("REGISTER", sock, cseq + 1, f"Authorization: {credentials}"), target
    )


def nothing_waiting(sock: socket.socket) -> bool:
    try:
        sock.recv(65535)
    except BlockingIOError:
        return True
    return False


async def test_repeated_wrong_passwords_slow_then_ban_the_source_and_log_it(
    guarded: Guarded, sockets: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    honest, guesser = sockets
    assert (await guess(guesser, guarded.target, 1)).status == 403
    started = time.monotonic()
    assert (await guess(guesser, guarded.target, 3)).status == 403
    # The second failure reaches slow_after: its refusal waited slow_s.
    assert time.monotonic() - started >= LIMITS.slow_s
    with caplog.at_level(logging.WARNING, logger="appliance.sip.security"):
        assert (await guess(guesser, guarded.target, 5)).status == 403
    assert [r.getMessage() for r in caplog.records] == [
        "banned 127.0.0.2 for 600 s after 3 failed authentications (last: wrong response)"
    ]
    assert guarded.guard.bans() == {"127.0.0.2": 600}

    # Banned: the guesser's OPTIONS goes unanswered while the honest phone's is answered.
    guesser.sendto(request("OPTIONS", guesser, 7), guarded.target)
    assert (await ask(honest, request("OPTIONS", honest, 1), guarded.target)).status == 200
    assert nothing_waiting(guesser)

    guarded.now.now += LIMITS.ban_s
    assert (await ask(guesser, request("OPTIONS", guesser, 8), guarded.target)).status == 200


async def test_a_banned_source_cannot_open_tcp_connections(guarded: Guarded) -> None:
    for _ in range(LIMITS.ban_after):
        guarded.guard.failed("127.0.0.2", "wrong response")
    assert guarded.guard.banned("127.0.0.2")
    reader, writer = await asyncio.open_connection(*guarded.target, local_addr=("127.0.0.2", 0))
    writer.write(b"OPTIONS sip:x@callbox SIP/2.0\r\n\r\n")
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    writer.close()


async def test_scanner_user_agents_are_dropped_silently(
    guarded: Guarded, sockets: tuple[socket.socket, socket.socket]
) -> None:
    honest, _ = sockets
    for cseq, agent in enumerate(("friendly-scanner", "sipvicious 0.3", "VaxSIPUserAgent/3.1")):
        honest.sendto(request("OPTIONS", honest, cseq, f"User-Agent: {agent}"), guarded.target)
    answered = await ask(
        honest, request("OPTIONS", honest, 9, "User-Agent: Yealink"), guarded.target
    )
    # The only answer is to the phone's own OPTIONS: the scanners' came first and got none.
    assert answered.cseq.number == 9
    assert nothing_waiting(honest)


async def test_scanners_are_answered_when_dropping_is_off(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    setup = await guarded_stack(SecuritySettings(drop_scanners=False))
    try:
        honest, _ = sockets
        scan = request("OPTIONS", honest, 1, "User-Agent: friendly-scanner")
        assert (await ask(honest, scan, setup.target)).status == 200
    finally:
        await setup.stack.close()
