"""A phone's INVITE with Replaces (RFC 3891) to the switch, between real peers on loopback.

Phones 1001, 1003 and 1004 are the project's own SIP stack acting as phones,
each with RTP from an ``RtpCaller`` sending a tone of its own and keeping
what it hears. 1002 is a baresip phone (answers by itself, 440 Hz tone,
records what it hears) for calls that are answered, or the project's stack
at the port a SIPp registered for 1002 for a phone that only rings.

- Takeover: 1001's desk phone talks to 1002; 1001's softphone sends an
  INVITE whose Replaces names the desk phone's dialog with the switch. The
  softphone is answered, the desk phone gets BYE, and 1002 and the
  softphone hear each other's tone. Likewise on the called side: a second
  phone of 1002 takes over from the 1002 that answered (on the stack).
- Pickup: 1001 calls 1002, which rings; 1003 (1002's pickup group) sends
  an INVITE whose Replaces names the switch's early dialog with 1002. The
  caller and 1003 are answered and hear each other's tone; 1002 gets CANCEL
  with ``Reason: SIP;cause=200;text="Call completed elsewhere"``.
- Refusals change nothing: no such dialog 481, another extension's dialog
  403 (1004, in no pickup group), ``early-only`` on a confirmed dialog 486,
  an ended dialog 481, the caller's own early dialog with the switch (one
  the switch did not initiate) 481.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from appliance.sip.message import parse_address, parse_uri
from appliance.sip.sdp import DEFAULT_PREFERENCE, SessionDescription, create_answer, create_offer
from appliance.sip.session import (
    Answered,
    Credentials,
    Ended,
    IncomingCall,
    OutgoingCall,
    Progress,
    Session,
    SessionEvent,
    Target,
)
from appliance.sip.ua import SipStack
from tests.callcenter.peers import GATEWAY, RtpCaller, has_tone
from tests.sip.test_attended_transfer import (
    WAIT,
    PhoneSessions,
    calls_of,
    end_of,
    heard,
    legs_sent,
    one_call_sending,
    registered_baresip,
    replaces_of,
    wait_for_calls,
)
from tests.sip.test_calls import Baresip, Phones
from tests.sip.test_switch import RunningSwitch, password_of, running_switch

A, B, C, D = "1001", "1002", "1003", "1004"
B_TONE = 440
"""What the baresip phone 1002 sends (Hz)."""
TONES = {A: 1000, C: 1400, D: 1800}
SOFTPHONE_TONE = 1400
"""1001's second phone: a tone of its own, so 1002 hearing it proves the takeover."""
SECOND_B_TONE = 1800
"""1002's second phone, taking over from the first."""
PCMA = tuple(codec for codec in DEFAULT_PREFERENCE if codec.name == "PCMA")

pytestmark = pytest.mark.slow


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[RunningSwitch]:
    groups = f"{B}=sales {C}=sales"
    with running_switch(tmp_path, (A, B, C, D), pickup_groups=groups) as running:
        yield running


class StackPhone:
    """A phone of extension ``number`` on the project's SIP stack, its RTP a tone of ``hz``."""

    def __init__(self, number: str, switch: RunningSwitch, hz: float) -> None:
        self.number = number
        self.switch = switch
        self.sessions = PhoneSessions(number)
        self.stack = SipStack(sessions=self.sessions)
        self.rtp = RtpCaller(tone_hz=hz)
        self.rtp.start_tone()
        self.events: asyncio.Queue[tuple[Session, SessionEvent]] = asyncio.Queue()

    async def close(self) -> None:
        """Stop the stack and the RTP."""
        await self.stack.close()
        self.rtp.close()

    def offer(self) -> SessionDescription:
        """A PCMA offer of the phone's RTP socket (what ``RtpCaller`` sends)."""
        return create_offer(GATEWAY, self.rtp.port, PCMA, rtcp_mux=False)

    async def invite(self, dialled: str, replaces: str | None = None) -> OutgoingCall:
        """Call ``dialled`` through the switch (answering its 407), with ``replaces``."""
        return await self.sessions.call(
            [Target(parse_uri(f"sip:{dialled}@127.0.0.1:{self.switch.port}"))],
            caller=parse_address(f"<sip:{self.number}@127.0.0.1>"),
            callee=parse_address(f"<sip:{dialled}@127.0.0.1>"),
            offer=self.offer(),
            listener=lambda session, event: self.events.put_nowait((session, event)),
            credentials=Credentials(self.number, password_of(self.number)),
            no_answer_s=WAIT,
            headers=[("Replaces", replaces)] if replaces is not None else [],
        )

    async def outcome(self, call: OutgoingCall) -> Answered | Ended:
        """How ``call`` ends its ringing: answered or refused (provisionals skipped).

        Once answered the phone sends its RTP to the switch's leg at once: a relay
        leg sends only what the other phone sent, so one side must start.
        """
        while True:
            source, event = await asyncio.wait_for(self.events.get(), WAIT)
            if source is call and isinstance(event, Answered | Ended):
                break
        if isinstance(event, Answered) and event.media is not None:
            self.rtp.remote = (event.media.remote_address, event.media.remote_port)
        return event

    async def answered(self, dialled: str, replaces: str | None = None) -> OutgoingCall:
        """``invite``, once answered."""
        call = await self.invite(dialled, replaces)
        event = await self.outcome(call)
        assert isinstance(event, Answered), event
        return call

    async def refused(self, dialled: str, replaces: str) -> int | None:
        """The status an INVITE with ``replaces`` is refused with."""
        event = await self.outcome(await self.invite(dialled, replaces))
        assert isinstance(event, Ended), event
        return event.status

    async def hears(self, hz: float, since: int = 0) -> None:
        """Wait until the phone has heard 2 s of a tone of ``hz`` (after sample ``since``)."""
        deadline = asyncio.get_running_loop().time() + WAIT
        while not has_tone(self.rtp.heard_since(since), hz, seconds=2.0):
            assert asyncio.get_running_loop().time() < deadline, f"{self.number} never heard {hz}"
            await asyncio.sleep(0.5)


@pytest.fixture
async def phones(switch: RunningSwitch) -> AsyncIterator[dict[str, StackPhone]]:
    """1001, 1003 and 1004 on the project's stack, and 1001's second phone ("soft")."""
    made = {
        **{n: StackPhone(n, switch, hz) for n, hz in TONES.items()},
        "soft": StackPhone(A, switch, SOFTPHONE_TONE),
    }
    for phone in made.values():
        await phone.stack.start("127.0.0.1", 0)
    try:
        yield made
    finally:
        for phone in made.values():
            await phone.close()


@pytest.fixture
def baresip_b(switch: RunningSwitch, tmp_path: Path) -> Iterator[Baresip]:
    """1002 as a baresip phone that answers by itself, stopped at the end if still running."""
    phone = registered_baresip(switch, B, B_TONE, tmp_path)
    try:
        yield phone
    finally:
        if phone.process is not None and phone.process.poll() is None:
            phone.stop()


class RingingPhone:
    """1002 on the project's stack at the port a SIPp registered it from: it rings and
    keeps its calls; one that ``answers`` answers at once with its RTP (a 440 Hz tone)."""

    def __init__(self, switch: RunningSwitch, tmp_path: Path, *, answers: bool) -> None:
        registration = Phones(switch, tmp_path / "ringing", B)
        registration.register_callee()
        self.port = registration.callee_port
        self.answers = answers
        self.sessions = PhoneSessions(B)
        self.sessions.on_incoming = self._ring
        self.stack = SipStack(sessions=self.sessions)
        self.rtp = RtpCaller(tone_hz=B_TONE)
        self.rtp.start_tone()
        self.calls: list[IncomingCall] = []

    def _ring(self, call: IncomingCall) -> None:
        self.calls.append(call)
        call.ringing()
        offer = call.offer
        if self.answers and offer is not None:
            call.answer(create_answer(offer, GATEWAY, self.rtp.port, PCMA, rtcp_mux=False))
            audio = offer.media[0]
            self.rtp.remote = (offer.address_of(audio), audio.port)

    async def ringing(self) -> IncomingCall:
        """The call ringing here, once it is."""
        deadline = asyncio.get_running_loop().time() + WAIT
        while not self.calls:
            assert asyncio.get_running_loop().time() < deadline, "1002 never rang"
            await asyncio.sleep(0.05)
        return self.calls[0]


@pytest.fixture(params=[False], ids=["ringing"])
async def stack_b(
    switch: RunningSwitch, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[RingingPhone]:
    """1002 on the project's stack: ringing only, or answering when the param says so."""
    phone = await asyncio.to_thread(RingingPhone, switch, tmp_path, answers=request.param)
    await phone.stack.start("127.0.0.1", phone.port)
    try:
        yield phone
    finally:
        await phone.stack.close()
        phone.rtp.close()


def early_dialog_at_switch(call: OutgoingCall) -> str:
    """The Replaces value naming the switch's early dialog with ``call``'s phone."""
    ((call_id, local_tag, remote_tag),) = call.early_dialogs
    return f"{call_id};to-tag={remote_tag};from-tag={local_tag}"


@pytest.mark.parametrize("held", [False, True], ids=["talking", "held-by-the-desk-phone"])
async def test_a_second_phone_of_the_extension_takes_over_the_call_and_the_first_gets_bye(
    switch: RunningSwitch, phones: dict[str, StackPhone], baresip_b: Baresip, held: bool
) -> None:
    desk, soft = phones[A], phones["soft"]
    to_b = await desk.answered(B)
    await desk.hears(B_TONE)
    if held:
        to_b.hold()
        await wait_for_calls(switch, lambda calls: any(c["held"] for c in calls), "1002 held")
    before = sum(legs_sent(c) for c in await calls_of(switch))
    took = await soft.answered(B, replaces_of(to_b))
    ended = await end_of(to_b)
    assert ended.by_peer, ended
    # One call, still between 1001 and 1002, held by nobody (the softphone does not
    # hold 1002, so 1002 is resumed), whose legs go on sending.
    call = await one_call_sending(switch, before, "RTP both ways after the takeover")
    assert {call["from"], call["to"]} == {A, B}, call
    assert not call["held"], call
    await soft.hears(B_TONE)
    # A baresip that was held records nothing it hears after it is resumed (see
    # test_attended_transfer), so 1002's ears are checked when it was not held.
    if not held:
        samples = await asyncio.to_thread(heard, baresip_b)
        assert has_tone(samples, SOFTPHONE_TONE), "1002 did not hear the softphone"
    took.hangup()
    await wait_for_calls(switch, lambda calls: not calls, "the call over")


@pytest.mark.parametrize("stack_b", [True], ids=["answering"], indirect=True)
async def test_a_second_phone_of_the_called_extension_takes_over_and_the_first_gets_bye(
    switch: RunningSwitch, phones: dict[str, StackPhone], stack_b: RingingPhone
) -> None:
    desk = phones[A]
    second = StackPhone(B, switch, SECOND_B_TONE)
    await second.stack.start("127.0.0.1", 0)
    try:
        to_b = await desk.answered(B)
        answered = await stack_b.ringing()
        await desk.hears(B_TONE)
        took = await second.answered(A, replaces_of(answered))
        assert (await end_of(answered)).by_peer
        await desk.hears(SECOND_B_TONE)
        await second.hears(TONES[A])
        (call,) = await calls_of(switch)
        assert {call["from"], call["to"]} == {A, B}, call
        took.hangup()
        assert (await end_of(to_b)).by_peer
    finally:
        await second.close()


async def test_a_phone_of_the_pickup_group_picks_up_a_ringing_call_which_the_ringer_gets_cancel(
    switch: RunningSwitch, phones: dict[str, StackPhone], stack_b: RingingPhone
) -> None:
    caller, picker, stranger = phones[A], phones[C], phones[D]
    to_b = await caller.invite(B)
    rung = await stack_b.ringing()
    dialog = replaces_of(rung)
    # Refused, nothing changed: 1004 is in no pickup group; the caller's own early
    # dialog with the switch was not initiated by the switch (RFC 3891 3).
    assert await stranger.refused(B, dialog) == 403
    while not to_b.early_dialogs:
        _, event = await asyncio.wait_for(caller.events.get(), WAIT)
        assert isinstance(event, Progress), event
    assert await picker.refused(B, early_dialog_at_switch(to_b)) == 481
    assert rung.end is None
    assert to_b.end is None
    picked = await picker.answered(B, dialog)
    assert isinstance(await caller.outcome(to_b), Answered)
    cancel = await asyncio.wait_for(stack_b.sessions.received.get(), WAIT)
    assert cancel.method == "CANCEL"
    assert cancel.headers.get("Reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert (await end_of(rung)).status == 487
    await caller.hears(TONES[C])
    await picker.hears(TONES[A])
    (call,) = await calls_of(switch)
    assert {call["from"], call["to"]} == {A, C}, call
    picked.hangup()
    assert (await end_of(to_b)).by_peer
    await wait_for_calls(switch, lambda calls: not calls, "the call over")


async def test_refused_replacements_of_a_confirmed_dialog_change_nothing(
    switch: RunningSwitch, phones: dict[str, StackPhone], baresip_b: Baresip
) -> None:
    desk, soft, stranger = phones[A], phones["soft"], phones[D]
    to_b = await desk.answered(B)
    assert await soft.refused(B, "no-such-call;to-tag=x;from-tag=y") == 481
    assert await stranger.refused(B, replaces_of(to_b)) == 403
    assert await soft.refused(B, replaces_of(to_b) + ";early-only") == 486
    # The call goes on between the desk phone and 1002, RTP both ways.
    assert to_b.end is None
    before = sum(legs_sent(c) for c in await calls_of(switch))
    call = await one_call_sending(switch, before, "the call still up")
    assert {call["from"], call["to"]} == {A, B}, call
    await desk.hears(B_TONE, since=len(desk.rtp.heard_since(0)))
    to_b.hangup()
    await end_of(to_b)
    await wait_for_calls(switch, lambda calls: not calls, "the call over")
    assert await soft.refused(B, replaces_of(to_b)) == 481
