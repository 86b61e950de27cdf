"""Attended transfer (REFER with Replaces, RFC 3891) between real phones on loopback.

Phone A (extension 1001) is the project's own SIP stack acting as a phone:
it calls B (1002), holds it, calls C (1003), and sends REFER on one call
whose Refer-To names its dialog of the other with Replaces. B and C are
baresip phones that answer by themselves, send a tone and record what they
hear. The switch must answer 202, NOTIFY A 200 (sipfrag), hang up both of
A's dialogs, and leave one call between B and C whose legs carry RTP both
ways and each phone's tone to the other; with two media workers the calls'
legs sit on different workers, so the transfer moves one phone to a new
leg by re-INVITE. A Replaces naming no dialog gets NOTIFY 481 and changes
nothing.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from appliance.sip.message import Request, Response, parse_address, parse_uri
from appliance.sip.sdp import create_offer
from appliance.sip.session import (
    Answered,
    Credentials,
    Ended,
    OutgoingCall,
    Progress,
    Session,
    SessionEvent,
    SessionManager,
    Target,
)
from appliance.sip.transaction import ClientTransaction, ServerTransaction
from appliance.sip.ua import SipStack
from tests.callcenter.peers import at_8k, has_tone, read_wav
from tests.sip.net import free_media_ports
from tests.sip.test_calls import Baresip
from tests.sip.test_switch import RunningSwitch, callbox_status, password_of, running_switch

A, B, C = "1001", "1002", "1003"
TONES = {B: 440, C: 1000}
"""The tone each of B and C sends (Hz)."""
WAIT = 30.0
FRAMES = 100
"""RTP packets (2 s of 20 ms frames) each leg must send after the transfer."""

pytestmark = pytest.mark.slow


class PhoneSessions(SessionManager):
    """A phone's sessions that also keep every NOTIFY, BYE and CANCEL it receives."""

    def __init__(self, user: str = A) -> None:
        super().__init__(user=user)
        self.received: asyncio.Queue[Request] = asyncio.Queue()

    def offer(self, request: Request, transaction: ServerTransaction | None) -> bool:
        """Note NOTIFY, BYE and CANCEL, then handle the request as any session manager does."""
        if request.method in ("NOTIFY", "BYE", "CANCEL"):
            self.received.put_nowait(request)
        return super().offer(request, transaction)


@dataclass
class PhoneA:
    """Extension 1001 on the project's SIP stack: places calls and sends REFER."""

    stack: SipStack
    sessions: PhoneSessions
    switch_port: int
    events: asyncio.Queue[tuple[Session, SessionEvent]]

    async def call(self, number: str) -> OutgoingCall:
        """Call ``number`` through the switch (answering its 407) until it answers."""
        call = await self.dial(number)
        event = await self.next_event(call)
        while isinstance(event, Progress):
            event = await self.next_event(call)
        assert isinstance(event, Answered), event
        return call

    async def dial(self, number: str) -> OutgoingCall:
        """Call ``number`` through the switch (answering its 407); returns at once."""
        return await self.sessions.call(
            [Target(parse_uri(f"sip:{number}@127.0.0.1:{self.switch_port}"))],
            caller=parse_address(f"<sip:{A}@127.0.0.1>"),
            callee=parse_address(f"<sip:{number}@127.0.0.1>"),
            offer=create_offer("127.0.0.1", free_media_ports(2)),
            listener=lambda session, event: self.events.put_nowait((session, event)),
            credentials=Credentials(A, password_of(A)),
            no_answer_s=WAIT,
        )

    async def next_event(self, session: Session) -> SessionEvent:
        """The next event of ``session`` (others' events in between are dropped)."""
        while True:
            source, event = await asyncio.wait_for(self.events.get(), WAIT)
            if source is session:
                return event

    async def refer(self, on: Session, number: str, replaces: str) -> int:
        """REFER ``on`` to ``number`` with a Replaces URI header; the REFER's final status."""
        answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def response(message: Response, _: ClientTransaction) -> None:
            if message.status >= 200 and not answered.done():
                answered.set_result(message.status)

        escaped = quote(replaces, safe="")  # RFC 3261 19.1.1: hnv-unreserved or escaped
        refer_to = f"<sip:{number}@127.0.0.1:{self.switch_port}?Replaces={escaped}>"
        on.send_request(
            "REFER",
            headers=[("Refer-To", refer_to), ("Referred-By", f"<sip:{A}@127.0.0.1>")],
            on_response=response,
        )
        return await asyncio.wait_for(answered, WAIT)

    async def final_notify(self, on: Session) -> str:
        """The sipfrag status line of the final NOTIFY (``terminated``) in ``on``'s dialog."""
        assert on.dialog is not None
        while True:
            request = await asyncio.wait_for(self.sessions.received.get(), WAIT)
            if request.method != "NOTIFY" or request.call_id != on.dialog.call_id:
                continue
            state = request.headers.get("Subscription-State") or ""
            if state.startswith("terminated"):
                return request.body.decode().splitlines()[0]


async def end_of(session: Session) -> Ended:
    """How ``session`` ended, once it has."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while session.end is None:
        assert asyncio.get_running_loop().time() < deadline, f"{session.id} never ended"
        await asyncio.sleep(0.05)
    return session.end


def replaces_of(session: Session) -> str:
    """The Replaces value naming ``session``'s dialog as its peer (the switch) holds it:
    to-tag is the switch's tag, from-tag ours (RFC 3891 3)."""
    dialog = session.dialog
    assert dialog is not None
    return f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"


async def calls_of(switch: RunningSwitch) -> list[dict[str, Any]]:
    """The switch's live calls, as ``callbox status --json`` lists them."""
    done = await asyncio.to_thread(callbox_status_json, switch.env)
    calls: list[dict[str, Any]] = done["calls"]
    return calls


def callbox_status_json(env: dict[str, str]) -> dict[str, Any]:
    """``callbox status --json``, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    status: dict[str, Any] = json.loads(done.stdout)
    return status


async def wait_for_calls(switch: RunningSwitch, check: Any, what: str) -> list[dict[str, Any]]:
    """The live calls once ``check(calls)`` holds (polled); fails naming ``what``."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        calls = await calls_of(switch)
        if check(calls):
            return calls
        assert asyncio.get_running_loop().time() < deadline, f"never {what}: {calls}"
        await asyncio.sleep(0.3)


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    workers: int = request.param
    return workers


@pytest.fixture
def switch(tmp_path: Path, workers: int) -> Iterator[RunningSwitch]:
    with running_switch(tmp_path, (A, B, C), CALLBOX_MEDIA_WORKERS=str(workers)) as running:
        yield running


def registered_baresip(
    switch: RunningSwitch,
    number: str,
    hz: int,
    tmp_path: Path,
    *,
    answers: bool = True,
    controlled: bool = False,
) -> Baresip:
    """A baresip phone registered as ``number``, sending a tone of ``hz`` and recording
    what it hears (sndfile, in ``heard/``); ``answers`` and ``controlled`` as ``Baresip``'s.

    Its SIP port is picked free just before baresip binds it; when another
    test on the machine takes it meanwhile, baresip exits and is started
    again on another port.
    """
    for attempt in range(3):
        home = tmp_path / f"{number}-{attempt}"
        phone = Baresip(switch, number, home, hz, "udp", answers=answers, controlled=controlled)
        (home / "heard").mkdir()
        with (home / "config").open("a") as config:
            config.write(f"module\tsndfile.so\nsnd_path\t{home / 'heard'}\n")
        phone.start()
        assert phone.process is not None
        deadline = time.monotonic() + WAIT
        while phone.process.poll() is None:
            status = callbox_status(switch.env).stdout
            if re.search(rf"^extension     {number}: ", status, re.MULTILINE):
                return phone
            assert time.monotonic() < deadline, f"{number} never registered:\n{status}"
            time.sleep(0.3)
        phone.stop()
    pytest.fail(f"baresip {number} could not bind a SIP port in 3 attempts")


def heard(phone: Baresip) -> array.array[int]:
    """What ``phone`` heard on its calls at 8 kHz, once it has stopped (files complete)."""
    assert phone.process is not None
    if phone.process.poll() is None:
        phone.stop()
    samples = array.array("h")
    for path in sorted((phone.home / "heard").glob("*dec.wav")):
        rate, channels = read_wav(path)
        samples.extend(at_8k(rate, channels[0]))
    return samples


@pytest.fixture
def phones_bc(switch: RunningSwitch, tmp_path: Path) -> Iterator[dict[str, Baresip]]:
    """B and C registered as baresip phones that answer by themselves, each with a tone."""
    phones: dict[str, Baresip] = {}
    try:
        for number, hz in TONES.items():
            phones[number] = registered_baresip(switch, number, hz, tmp_path)
        yield phones
    finally:
        for phone in phones.values():
            if phone.process is not None and phone.process.poll() is None:
                phone.stop()


@contextlib.asynccontextmanager
async def phone_a_of(switch: RunningSwitch) -> AsyncIterator[PhoneA]:
    """Phone A on the project's stack (an ephemeral port), calling through ``switch``."""
    sessions = PhoneSessions()
    stack = SipStack(sessions=sessions)
    await stack.start("127.0.0.1", 0)
    try:
        yield PhoneA(stack, sessions, switch.port, asyncio.Queue())
    finally:
        await stack.close()


@pytest.fixture
async def phone_a(switch: RunningSwitch, phones_bc: dict[str, Baresip]) -> AsyncIterator[PhoneA]:
    async with phone_a_of(switch) as phone:
        yield phone


def legs_sent(call: dict[str, Any]) -> int:
    """The fewest RTP packets either leg of a status line has sent."""
    return min(int(leg["sent"]) for leg in call["legs"].values())


async def one_call_sending(switch: RunningSwitch, before: int, what: str) -> dict[str, Any]:
    """The one live call, once its two legs have sent ``FRAMES`` packets more than ``before``
    (the sum of every leg's ``legs_sent`` earlier); fails naming ``what``."""
    (call,) = await wait_for_calls(
        switch,
        lambda calls: (
            len(calls) == 1
            and len(calls[0]["legs"]) == 2
            and legs_sent(calls[0]) >= before + FRAMES
        ),
        what,
    )
    return call


async def two_calls(
    a: PhoneA, switch: RunningSwitch, workers: int, *, hold_b: bool = True
) -> tuple[Session, Session]:
    """A calls B and holds it (unless not ``hold_b``), then calls C; each call's legs share
    a worker, and with two workers the two calls sit on different ones."""
    to_b = await a.call(B)
    if hold_b:
        to_b.hold()
        await wait_for_calls(switch, lambda calls: any(c["held"] for c in calls), "B held")
    to_c = await a.call(C)
    calls = await wait_for_calls(
        switch,
        lambda calls: len(calls) == 2 and all(len(c["legs"]) == 2 for c in calls),
        "two calls",
    )
    per_call = [{leg["worker"] for leg in c["legs"].values()} for c in calls]
    assert all(len(w) == 1 for w in per_call), calls
    assert len(set.union(*per_call)) == workers, calls
    return to_b, to_c


@pytest.mark.parametrize(
    ("workers", "refer_on", "hold_b"),
    [
        (1, "call-to-b", True),
        (1, "call-to-c", True),
        (2, "call-to-b", True),
        (2, "call-to-c", True),
        (2, "call-to-b", False),
    ],
    ids=[
        "one-worker-refer-on-b-held",
        "one-worker-refer-on-c-b-held",
        "two-workers-refer-on-b-held",
        "two-workers-refer-on-c-b-held",
        "two-workers-refer-on-b",
    ],
)
async def test_attended_transfer_leaves_one_call_between_b_and_c_with_rtp_both_ways(
    switch: RunningSwitch,
    phones_bc: dict[str, Baresip],
    phone_a: PhoneA,
    workers: int,
    refer_on: str,
    hold_b: bool,
) -> None:
    to_b, to_c = await two_calls(phone_a, switch, workers, hold_b=hold_b)
    before = sum(legs_sent(c) for c in await calls_of(switch))
    # A transfers on either call, naming its other dialog with the switch.
    on, replaced, number = (to_b, to_c, C) if refer_on == "call-to-b" else (to_c, to_b, B)
    assert await phone_a.refer(on, number, replaces_of(replaced)) == 202
    assert await phone_a.final_notify(on) == "SIP/2.0 200 OK"
    for session in (to_b, to_c):
        ended = await end_of(session)
        assert ended.by_peer, ended
    # One call between B and C, held by nobody, whose legs share a worker and each
    # sent FRAMES packets more than both calls' legs had before: B hears C and C hears B.
    call = await one_call_sending(switch, before, "RTP both ways between B and C")
    assert {call["from"], call["to"]} == {B, C}
    assert not call["held"]
    assert len({leg["worker"] for leg in call["legs"].values()}) == 1
    # A sent no audio: each phone's tone reached the other through the bridge. A baresip
    # that was held records nothing it hears after it is resumed (its leg's counters
    # above show the RTP reached it), so B's ears are checked when it was not held.
    for listener, talker in ((C, B), *(((B, C),) if not hold_b else ())):
        samples = await asyncio.to_thread(heard, phones_bc[listener])
        assert has_tone(samples, TONES[talker]), f"{listener} did not hear {talker}'s tone"
    # C, stopped first, hung up: the merged call passed its BYE on to B and ended.
    await wait_for_calls(switch, lambda calls: not calls, "the call over once C hung up")


@pytest.mark.parametrize("workers", [2], ids=["two-workers"])
async def test_a_replaces_naming_no_dialog_gets_481_early_only_486_and_both_calls_stay(
    switch: RunningSwitch, phone_a: PhoneA, workers: int
) -> None:
    to_b, to_c = await two_calls(phone_a, switch, workers)
    assert await phone_a.refer(to_b, C, "no-such-call;to-tag=x;from-tag=y") == 202
    assert await phone_a.final_notify(to_b) == "SIP/2.0 481 Call/Transaction Does Not Exist"
    # RFC 3891 3: early-only may not replace a confirmed dialog.
    assert await phone_a.refer(to_b, C, replaces_of(to_c) + ";early-only") == 202
    assert await phone_a.final_notify(to_b) == "SIP/2.0 486 Busy Here"
    calls = await calls_of(switch)
    assert len(calls) == 2, calls
    assert {c["to"] for c in calls} == {B, C}, calls
    assert not to_b.ended
    assert not to_c.ended
    for session in (to_b, to_c):
        session.hangup()
