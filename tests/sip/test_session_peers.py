"""Outgoing sessions against a real peer on loopback: SIPp as a gateway that challenges.

The stack places a call to a bare URI (no registration, no flow known: the
manager opens one, UDP or TCP), answers the 401 with its credentials, takes
the 200 and hangs up; SIPp checks the digest (``verifyauth``) and every
message it expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.sip.causes import Cause
from appliance.sip.message import parse_address, parse_uri
from appliance.sip.sdp import create_offer
from appliance.sip.session import (
    Answered,
    Credentials,
    Ended,
    Progress,
    Session,
    SessionError,
    SessionEvent,
    SessionManager,
    Target,
)
from appliance.sip.ua import SipStack
from tests.sip.net import free_media_ports, free_port

SCENARIOS = Path(__file__).parent / "sipp"
WAIT = 30.0

pytestmark = pytest.mark.slow


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    sip = SipStack(sessions=SessionManager())
    await sip.start("127.0.0.1", 0)
    yield sip
    await sip.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_outgoing_call_answers_the_gateways_401_and_hangs_up(
    stack: SipStack, tmp_path: Path, transport: str
) -> None:
    port = free_port()
    gateway = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / "uas_auth.xml"), "-m", "1", "-i", "127.0.0.1",
        "-p", str(port), "-mp", str(free_media_ports()), "-t", "u1" if transport == "udp" else "t1",
        "-nostdin", "-timeout", "30", "-timeout_error", "-trace_err",
        cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    events: asyncio.Queue[SessionEvent] = asyncio.Queue()

    def listen(_: Session, event: SessionEvent) -> None:
        events.put_nowait(event)

    assert stack.sessions is not None
    target = Target(parse_uri(f"sip:gw@127.0.0.1:{port};transport={transport}"))
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        # Over TCP the call needs SIPp's listener up: retry the connection until it is.
        try:
            call = await stack.sessions.call(
                [target],
                caller=parse_address("<sip:1001@callbox.example>"),
                callee=parse_address(f"<sip:gw@127.0.0.1:{port}>"),
                offer=create_offer("127.0.0.1", 40000),
                listener=listen,
                credentials=Credentials("trunk-user", "trunk-secret"),
                no_answer_s=20,
            )
            break
        except SessionError:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
    progress = await asyncio.wait_for(events.get(), WAIT)
    assert isinstance(progress, Progress), progress
    assert (progress.status, progress.reason) == (180, "Ringing")
    answered = await asyncio.wait_for(events.get(), WAIT)
    assert isinstance(answered, Answered), answered
    assert answered.media is not None
    assert answered.media.codec.name == "PCMA"
    assert call.flow.transport == transport.upper()
    call.hangup(Cause.NORMAL_CLEARING)
    ended = await asyncio.wait_for(events.get(), WAIT)
    assert isinstance(ended, Ended)
    assert (ended.cause, ended.by_peer) == (Cause.NORMAL_CLEARING, False)
    out, _ = await asyncio.wait_for(gateway.communicate(), 60)
    assert gateway.returncode == 0, out.decode(errors="replace")[-3000:]
