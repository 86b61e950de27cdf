"""Real phones register with digest on loopback: sipsak, SIPp, baresip; keep-alives over UDP.

sipsak 0.9.8, SIPp 3.6 and baresip 1.0 know only MD5 (sipsak and SIPp read
only the first challenge, baresip gives up on any SHA-256 one), so the
registrar here offers MD5, as the switch does by default.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.config.records import Extension
from appliance.sip.auth import authorization
from appliance.sip.message import Request, parse_message
from appliance.sip.registrar import (
    Registrar,
    RegistrarLimits,
    RegistrationChange,
    RegistrationEvent,
)
from appliance.sip.transaction import Timers
from appliance.sip.ua import SipStack
from tests.sip.net import free_port

SCENARIOS = Path(__file__).parent / "sipp"
WAIT = 20.0
PASSWORD = "phone-1001-secret"

pytestmark = pytest.mark.slow


class Switchboard:
    """A SIP stack with a registrar for extension 1001 on a loopback port."""

    def __init__(self, keepalive_interval: float = 30.0, t1: float = 0.5) -> None:
        self.registrar = Registrar(
            "callbox",
            {"1001": Extension(number="1001", password=PASSWORD)}.get,
            limits=RegistrarLimits(keepalive_interval=keepalive_interval),
        )
        self.stack = SipStack(timers=Timers(t1=t1), registrar=self.registrar)
        self.events: asyncio.Queue[RegistrationEvent] = asyncio.Queue()
        self.registrar.add_listener(self.events.put_nowait)
        self.failures: list[tuple[str, str]] = []
        self.registrar.auth_failed = lambda source, why: self.failures.append((source, why))
        self.port = 0

    async def start(self) -> None:
        await self.stack.start("127.0.0.1", 0)
        assert self.stack.transport is not None
        self.port = self.stack.transport.udp_address[1]

    async def next_event(self) -> RegistrationEvent:
        return await asyncio.wait_for(self.events.get(), WAIT)


@pytest.fixture
async def board() -> AsyncIterator[Switchboard]:
    switchboard = Switchboard()
    await switchboard.start()
    yield switchboard
    await switchboard.stack.close()


async def run(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_sipsak_register_with_password_gets_401_then_200(board: Switchboard) -> None:
    code, out = await run(
        "sipsak", "-U", "-vvv", "-x", "300", "-u", "1001", "-a", PASSWORD,
        "-s", f"sip:1001@127.0.0.1:{board.port}",
    )  # fmt: skip
    assert code == 0, out
    assert "SIP/2.0 401 Unauthorized" in out
    assert "SIP/2.0 200 OK" in out
    event = await board.next_event()
    assert (event.change, event.extension) == (RegistrationChange.REGISTERED, "1001")
    (binding,) = board.registrar.contacts("1001")
    assert binding.user_agent.startswith("sipsak")
    assert 290 <= binding.expires_in(board.registrar.now()) <= 300


async def test_sipsak_with_a_wrong_password_is_refused_and_reported(board: Switchboard) -> None:
    code, out = await run(
        "sipsak", "-U", "-vv", "-u", "1001", "-a", "not-the-password",
        "-s", f"sip:1001@127.0.0.1:{board.port}",
    )  # fmt: skip
    assert code != 0, out
    assert "403 Forbidden" in out
    assert board.failures == [("127.0.0.1", "wrong response")]
    assert board.registrar.bindings == {}


async def test_sipp_registers_with_digest_and_removes_its_binding(
    board: Switchboard, tmp_path: Path
) -> None:
    code, out = await run(
        "sipp", f"127.0.0.1:{board.port}", "-sf", str(SCENARIOS / "register_auth.xml"),
        "-s", "1001", "-au", "1001", "-ap", PASSWORD, "-m", "1", "-i", "127.0.0.1",
        "-p", str(free_port()), "-nostdin", "-timeout", "30", "-timeout_error", "-trace_err",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out[-2000:]
    registered = await board.next_event()
    assert registered.change is RegistrationChange.REGISTERED
    assert registered.contact.endswith(";transport=UDP")
    unregistered = await board.next_event()
    assert unregistered.change is RegistrationChange.UNREGISTERED
    assert board.registrar.bindings == {}


async def test_baresip_registers_with_a_password_and_unregisters_on_exit(
    board: Switchboard, tmp_path: Path
) -> None:
    (tmp_path / "config").write_text(
        f"poll_method\tepoll\nsip_listen\t127.0.0.1:{free_port()}\n"
        "module_path\t/usr/lib/baresip/modules\nmodule_app\taccount.so\n"
    )
    (tmp_path / "accounts").write_text(
        f"<sip:1001@127.0.0.1:{board.port};transport=udp>;auth_pass={PASSWORD};regint=600\n"
    )
    process = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(tmp_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        registered = await board.next_event()
        assert (registered.change, registered.extension) == (RegistrationChange.REGISTERED, "1001")
        (binding,) = board.registrar.contacts("1001")
        assert binding.user_agent.startswith("baresip")
        assert not binding.behind_nat
        status = board.registrar.status()
        assert [(s["extension"], s["contact"]) for s in status] == [("1001", registered.contact)]
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), WAIT)
    unregistered = await board.next_event()
    assert unregistered.change is RegistrationChange.UNREGISTERED


async def test_a_phone_behind_nat_gets_keepalive_options_and_is_dropped_when_silent() -> None:
    board = Switchboard(keepalive_interval=0.2, t1=0.05)
    await board.start()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    try:
        await register_from_behind_nat(board, phone)
        assert (await board.next_event()).change is RegistrationChange.REGISTERED
        # The keep-alive arrives on the socket the REGISTER came from, not the
        # private contact address; the phone answers the first one.
        options = await receive_request(phone)
        assert options.method == "OPTIONS"
        assert str(options.uri) == "sip:1001@10.0.0.5:5062"
        phone.sendto(options.response(200, "OK", to_tag="ph").to_bytes(), ("127.0.0.1", board.port))
        # Then it goes silent: the next keep-alive times out and the binding goes.
        event = await board.next_event()
        assert event.change is RegistrationChange.UNREACHABLE
        assert board.registrar.bindings == {}
    finally:
        phone.close()
        await board.stack.close()


async def register_from_behind_nat(board: Switchboard, phone: socket.socket) -> None:
    """REGISTER with a private Contact, answering the challenge with auth.authorization."""
    local_port = phone.getsockname()[1]
    authorization_line = ""
    for cseq in (1, 2):
        phone.sendto(
            (
                f"REGISTER sip:127.0.0.1:{board.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bKnat{cseq}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:1001@callbox>;tag=n1\r\n"
                f"To: <sip:1001@callbox>\r\nCall-ID: nat-{local_port}@10.0.0.5\r\n"
                f"CSeq: {cseq} REGISTER\r\nContact: <sip:1001@10.0.0.5:5062>\r\n"
                f"{authorization_line}Content-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", board.port),
        )
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(phone, 65535), WAIT)
        response = parse_message(data)
        challenge = response.headers.get("WWW-Authenticate")
        if challenge is None:
            break
        value = authorization(
            challenge,
            method="REGISTER",
            uri=f"sip:127.0.0.1:{board.port}",
            username="1001",
            password=PASSWORD,
        )
        authorization_line = f"Authorization: {value}\r\n"


async def receive_request(phone: socket.socket) -> Request:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(phone, 65535), WAIT)
    request = parse_message(data)
    assert isinstance(request, Request)
    return request
