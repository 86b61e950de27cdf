"""Trunks against real peers on loopback: SIPp as a provider, our own registrar, silence."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.config.records import Codec, Extension, Transport, Trunk, TrunkMode
from appliance.sip.message import Request, parse_message
from appliance.sip.registrar import Registrar
from appliance.sip.transaction import Timers
from appliance.sip.trunk import (
    TrunkEvent,
    Trunks,
    TrunkTimers,
)
from appliance.sip.ua import SipStack
from tests.sip.net import Certificate, free_port

SCENARIOS = Path(__file__).parent / "sipp"
WAIT = 30.0
# T1 of 50 ms: a request nobody answers times out after 64*T1 = 3.2 s.
FAST = Timers(t1=0.05, t2=0.4, t4=0.5)
FAST_RETRY = TrunkTimers(retry_min=0.2, retry_max=1.0, stop_wait=5.0)

pytestmark = pytest.mark.slow


@dataclass
class Switch:
    """A SIP stack with trunks, and the events they report."""

    stack: SipStack
    trunks: Trunks
    events: list[TrunkEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def heard(self, event: TrunkEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, trunk: str, aspect: str, state: str) -> TrunkEvent:
        """The first event of ``trunk`` with that aspect and state (waiting for it)."""
        async with asyncio.timeout(WAIT):
            while True:
                for event in self.events:
                    if (event.trunk, event.aspect, event.state) == (trunk, aspect, state):
                        return event
                self._changed.clear()
                await self._changed.wait()

    def states(self, aspect: str) -> list[str]:
        return [e.state for e in self.events if e.aspect == aspect]


@contextlib.asynccontextmanager
async def switch_with(*trunks: Trunk) -> AsyncIterator[Switch]:
    registry = Trunks(FAST_RETRY)
    stack = SipStack(timers=FAST, trunks=registry)
    running = Switch(stack, registry)
    registry.add_listener(running.heard)
    await stack.start("127.0.0.1", 0)
    registry.configure(list(trunks))
    try:
        yield running
    finally:
        await stack.close()


@contextlib.asynccontextmanager
async def sipp_uas(
    scenario: str, port: int, tmp_path: Path, *options: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / scenario), *options, "-i", "127.0.0.1",
        "-p", str(port), "-m", "1", "-nostdin", "-timeout", "30", "-timeout_error",
        "-trace_err", "-trace_logs",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    kind = socket.SOCK_STREAM if "-t" in options else socket.SOCK_DGRAM
    try:
        await bound(port, kind)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds: for state that changes without an event (refreshes)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.05)


async def bound(port: int, kind: socket.SocketKind) -> None:
    """Wait until some process (SIPp) is ready on ``port``: listening for TCP, bound for UDP.

    A TCP socket is bound a moment before it listens, and a connection in that moment is
    refused, so TCP waits for the LISTEN state in ``/proc/net/tcp``.
    """
    async with asyncio.timeout(WAIT):
        while not (listening(port) if kind == socket.SOCK_STREAM else udp_bound(port)):  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.02)


def udp_bound(port: int) -> bool:
    """Whether some process has bound UDP ``port`` on 127.0.0.1 (our own bind then fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (state 0A in the kernel's table)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            return True
    return False


async def finished(process: asyncio.subprocess.Process, tmp_path: Path) -> None:
    """Wait for SIPp and fail with its output and error log unless it passed."""
    async with asyncio.timeout(WAIT):
        out, _ = await process.communicate()
    assert process.returncode == 0, out.decode(errors="replace")[-3000:] + error_logs(tmp_path)


def error_logs(folder: Path) -> str:
    """The end of SIPp's error logs in ``folder``."""
    return "".join(p.read_text(errors="replace") for p in folder.glob("*_errors.log"))[-3000:]


def provider(port: int, transport: Transport = Transport.UDP, **settings: object) -> Trunk:
    values: dict[str, object] = {
        "name": "provider",
        "mode": TrunkMode.REGISTER,
        "host": "127.0.0.1",
        "port": port,
        "transport": transport,
        "domain": "provider.test",
        "username": "trunk-user",
        "password": "trunk-secret",
        "options_interval": 0,
    }
    values.update(settings)
    return Trunk(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("transport", "sipp_transport"), [(Transport.UDP, ()), (Transport.TCP, ("-t", "t1"))]
)
async def test_trunk_registers_with_digest_refreshes_at_half_expiry_and_unregisters_on_stop(
    tmp_path: Path, transport: Transport, sipp_transport: tuple[str, ...]
) -> None:
    port = free_port()
    async with (
        sipp_uas(
            "provider_register.xml", port, tmp_path, *sipp_transport, "-set", "grant", "4"
        ) as sipp,
        switch_with(provider(port, transport)) as switch,
    ):
        registered = await switch.until("provider", "registration", "registered")
        assert registered.reason == "granted 4 s"
        state = switch.trunks.states["provider"]
        # The refresh comes at about half the 4 s grant; SIPp checks its credentials.
        await eventually(lambda: state.successes >= 2)
        await switch.trunks.stop()
        await finished(sipp, tmp_path)
    assert switch.states("registration") == ["registering", "registered", "unregistered"]
    assert switch.events[-1].reason == "removed (Expires: 0)"


async def test_trunk_answers_423_with_the_min_expires_the_provider_asks_for(tmp_path: Path) -> None:
    port = free_port()
    async with (
        sipp_uas("provider_423.xml", port, tmp_path) as sipp,
        switch_with(provider(port, register_expires=60)) as switch,
    ):
        registered = await switch.until("provider", "registration", "registered")
        assert registered.reason == "granted 120 s"
        status = switch.trunks.status()[0]["registration"]
        assert 100 < status["expires_in"] <= 120
        assert switch.trunks.states["provider"].expires_wanted == 120  # refreshes ask for 120 s
        await switch.trunks.stop()
        await finished(sipp, tmp_path)


def number_owner(password: str) -> Registrar:
    """Our own registrar as the provider: account 80001234, SHA-256 digest only."""
    account = Extension(number="80001234", password=password)
    return Registrar("provider.test", {"80001234": account}.get, algorithms=("SHA-256",))


def account_trunk(
    port: int,
    transport: Transport = Transport.UDP,
    password: str = "provider-secret",
    **settings: object,
) -> Trunk:
    """A trunk registering account 80001234 to ``number_owner``'s registrar."""
    return provider(port, transport, username="80001234", password=password, **settings)


@contextlib.asynccontextmanager
async def provider_stack(registrar: Registrar) -> AsyncIterator[SipStack]:
    stack = SipStack(registrar=registrar)
    await stack.start("127.0.0.1", 0)
    try:
        yield stack
    finally:
        await stack.close()


async def test_trunk_registers_with_sha256_digest_to_a_registrar() -> None:
    registrar = number_owner("provider-secret")
    async with provider_stack(registrar) as far:
        assert far.transport is not None
        trunk = account_trunk(far.transport.udp_address[1])
        async with switch_with(trunk) as switch:
            await switch.until("provider", "registration", "registered")
            (binding,) = registrar.contacts("80001234")
            assert binding.contact.uri.user == "80001234"
            await switch.trunks.stop()
            assert registrar.contacts("80001234") == []


async def test_a_trunk_named_by_host_name_registers_and_its_address_becomes_trusted() -> None:
    registrar = number_owner("provider-secret")
    async with provider_stack(registrar) as far:
        assert far.transport is not None
        trunk = account_trunk(far.transport.udp_address[1], host="localhost", domain="")
        async with switch_with(trunk) as switch:
            await switch.until("provider", "registration", "registered")
            invite = parse_message(
                b"INVITE sip:80001234@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:1@x>;tag=a\r\nTo: <sip:80001234@127.0.0.1>\r\n"
                b"Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            assert isinstance(invite, Request)
            assert switch.trunks.match("127.0.0.1", invite) == trunk


async def test_wrong_password_fails_and_backs_off_with_the_state_visible() -> None:
    registrar = number_owner("provider-secret")
    async with provider_stack(registrar) as far:
        assert far.transport is not None
        trunk = account_trunk(far.transport.udp_address[1], password="wrong-guess")
        async with switch_with(trunk) as switch:
            failed = await switch.until("provider", "registration", "failed")
            assert failed.reason == "403 Forbidden"
            status = switch.trunks.status()[0]["registration"]
            assert status["state"] == "failed"
            assert status["failures"] >= 1
            assert status["retry_in"] is not None
            # Back-off: it keeps trying, each failure counted.
            state = switch.trunks.states["provider"]
            await eventually(lambda: state.failures >= 3)
            assert registrar.contacts("80001234") == []


async def test_silent_provider_times_out_and_the_trunk_retries() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        async with switch_with(provider(silent.getsockname()[1])) as switch:
            failed = await switch.until("provider", "registration", "failed")
            assert failed.reason == f"no answer from 127.0.0.1:{silent.getsockname()[1]}"
            # The REGISTER was retransmitted (UDP) before the timeout.
            silent.setblocking(False)
            received = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    silent.recv(65535)
                    received += 1
            assert received > 1


async def test_tcp_trunk_with_nobody_listening_fails_with_the_reason() -> None:
    port = free_port()
    async with switch_with(provider(port, Transport.TCP)) as switch:
        failed = await switch.until("provider", "registration", "failed")
        assert failed.reason.startswith(f"cannot connect to 127.0.0.1:{port} over tcp")


async def test_options_monitor_sees_the_trunk_up_then_down_when_it_stops_answering(
    tmp_path: Path,
) -> None:
    port = free_port()
    gateway = Trunk(
        name="gateway", mode=TrunkMode.IP, host="127.0.0.1", port=port,
        allow=["127.0.0.1"], options_interval=1, options_down_after=2,
    )  # fmt: skip
    async with sipp_uas("options_uas.xml", port, tmp_path) as sipp, switch_with(gateway) as switch:
        up = await switch.until("gateway", "options", "up")
        assert up.reason == "answered 405 Method Not Allowed"  # alive, whatever it says
        await finished(sipp, tmp_path)  # it answered its OPTIONS and left
        down = await switch.until("gateway", "options", "down")
        assert down.reason == "no answer to OPTIONS (2 in a row)"
        assert switch.states("options") == ["up", "down"]
        status = switch.trunks.status()[0]
        assert status["options"]["state"] == "down"
        assert status["last_change_reason"] == "options down: no answer to OPTIONS (2 in a row)"


async def test_outbound_invite_offers_the_trunks_codecs_and_answers_its_challenge(
    tmp_path: Path,
) -> None:
    port = free_port()
    carrier = Trunk(
        name="carrier", mode=TrunkMode.IP, host="127.0.0.1", port=port, allow=["127.0.0.1"],
        username="trunk-user", password="trunk-secret", caller_id="02150001234",
        codecs=[Codec.G729, Codec.PCMA], options_interval=0,
    )  # fmt: skip
    async with (
        sipp_uas("trunk_invite_401.xml", port, tmp_path) as sipp,
        switch_with(carrier) as switch,
    ):
        outbound = await switch.trunks.outbound_invite("013812345678", ("127.0.0.1", 30000))
        challenged = await switch.trunks.ask(outbound.request, outbound.flow)
        assert challenged is not None
        assert challenged.status == 401
        retry = switch.trunks.authorize("carrier", outbound.request, challenged)
        assert retry is not None
        final = await switch.trunks.ask(retry, outbound.flow)
        assert final is not None
        assert (final.status, final.reason) == (486, "Busy Here")  # SIPp took the credentials
        await finished(sipp, tmp_path)


async def test_behind_nat_the_trunk_registers_the_address_the_provider_saw(tmp_path: Path) -> None:
    port = free_port()
    async with (
        sipp_uas("provider_nat.xml", port, tmp_path) as sipp,
        switch_with(provider(port)) as switch,
    ):
        await switch.until("provider", "registration", "registered")
        status = switch.trunks.status()[0]["registration"]
        assert status["contact"] == "sip:trunk-user@192.0.2.77:5999"
        await switch.trunks.stop()
        await finished(sipp, tmp_path)


@contextlib.asynccontextmanager
async def tls_provider(certificate: Certificate, registrar: Registrar) -> AsyncIterator[int]:
    """A provider's stack serving ``registrar`` over TLS with ``certificate``; yields its port."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certificate.cert, certificate.key)
    far = SipStack(registrar=registrar)
    await far.start("127.0.0.1", 0, tls=server, tls_port=0)
    try:
        assert far.transport is not None
        assert far.transport.tls_address is not None
        yield far.transport.tls_address[1]
    finally:
        await far.close()


async def test_a_trunk_registers_over_tls_and_checks_the_providers_certificate(
    certificate: Certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider's self-signed certificate is the only CA the trunk's default context trusts.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    registrar = number_owner("provider-secret")
    async with tls_provider(certificate, registrar) as tls_port:
        trunk = account_trunk(tls_port, Transport.TLS)
        async with switch_with(trunk) as switch:
            await switch.until("provider", "registration", "registered")
            (binding,) = registrar.contacts("80001234")
            assert binding.flow.transport == "TLS"
            assert binding.contact.uri.param("transport") == "tls"


async def test_a_tls_trunk_refuses_a_certificate_it_cannot_verify(
    certificate: Certificate,
) -> None:
    async with tls_provider(certificate, number_owner("provider-secret")) as tls_port:
        trunk = provider(tls_port, Transport.TLS)
        async with switch_with(trunk) as switch:
            failed = await switch.until("provider", "registration", "failed")
            assert "certificate verify failed" in failed.reason


async def test_trunk_events_can_be_followed_with_async_for() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        gateway = Trunk(
            name="gateway", mode=TrunkMode.IP, host="127.0.0.1", port=silent.getsockname()[1],
            allow=["127.0.0.1"], options_interval=1, options_down_after=1,
        )  # fmt: skip
        async with switch_with(gateway) as switch:
            heard = []
            async with asyncio.timeout(WAIT):
                async for event in switch.trunks.events():
                    heard.append(event)
                    break
            assert heard == [
                TrunkEvent("gateway", "options", "down", "no answer to OPTIONS (1 in a row)")
            ]


async def test_a_tcp_trunk_registers_again_at_once_when_its_connection_closes() -> None:
    registrar = number_owner("provider-secret")  # grants 3600 s: no refresh for 30 min
    async with provider_stack(registrar) as far:
        assert far.transport is not None
        trunk = account_trunk(far.transport.tcp_address[1], Transport.TCP)
        async with switch_with(trunk) as switch:
            await switch.until("provider", "registration", "registered")
            state = switch.trunks.states["provider"]
            assert state.successes == 1
            # The provider drops the connection (as a restart would).
            for connection in list(far.transport._connections.values()):
                connection.close()
            await eventually(lambda: state.successes == 2)
            (binding,) = registrar.contacts("80001234")
            assert binding.flow.transport == "TCP"
