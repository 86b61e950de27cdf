"""Semi-attended transfer (REFER with Replaces naming a consultation call still ringing).

Phone A (1001, the project's SIP stack) talks to B (1002), holds it or not,
calls C (1003) and, while C still rings, sends REFER on its call with B whose
Replaces names its early dialog with the switch towards C. The switch answers
202, ends A's early dialog (487), takes B off hold and plays it ringback while
the call rings on at C. When C answers, B and C talk (each hears the other's
tone), A gets NOTIFY 200 and a BYE. When C does not answer, A gets the
failure by NOTIFY and a BYE, and B a BYE with the cause (19, no answer); when
B hangs up first, C is CANCELled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from appliance.sip.session import OutgoingCall, Progress
from tests.callcenter.peers import has_tone
from tests.sip.test_attended_transfer import (
    TONES,
    A,
    B,
    C,
    PhoneA,
    calls_of,
    end_of,
    heard,
    one_call_sending,
    phone_a_of,
    registered_baresip,
    wait_for_calls,
)
from tests.sip.test_calls import Baresip, Phones, finish
from tests.sip.test_switch import RunningSwitch, running_switch

RINGBACK_HZ = 450
"""The ringback B hears (the ``cn`` plan: 450 Hz, 1 s on, 4 s off)."""
RINGING_S = 6.0
"""How long C rings after the transfer before it answers: B hears a whole ringback cadence."""
NO_ANSWER_S = 12
"""The switch's no-answer time in the test where C never answers (counted from A's call)."""

pytestmark = pytest.mark.slow


@pytest.fixture
async def phone_a(switch: RunningSwitch) -> AsyncIterator[PhoneA]:
    async with phone_a_of(switch) as phone:
        yield phone


def early_replaces_of(call: OutgoingCall) -> str:
    """The Replaces value naming ``call``'s early dialog as the switch holds it."""
    ((call_id, local_tag, remote_tag),) = call.early_dialogs
    return f"{call_id};to-tag={remote_tag};from-tag={local_tag}"


async def ringing(a: PhoneA, number: str) -> OutgoingCall:
    """A calls ``number``; returns once the switch has passed the phone's ringing on (180)."""
    call = await a.dial(number)
    event = await a.next_event(call)
    while not (isinstance(event, Progress) and event.status == 180):
        assert isinstance(event, Progress), event
        event = await a.next_event(call)
    return call


async def transfer_while_c_rings(
    a: PhoneA, switch: RunningSwitch, *, hold_b: bool, early_only: bool = False
) -> tuple[OutgoingCall, OutgoingCall]:
    """A calls B (holding it if ``hold_b``), calls C and, while C rings, REFERs B to C with
    Replaces naming its early dialog (with ``early-only``, which RFC 3891 3 allows for an
    early one): 202, and A's early dialog ends with 487."""
    to_b = await a.call(B)
    if hold_b:
        to_b.hold()
        await wait_for_calls(switch, lambda calls: any(c["held"] for c in calls), "B held")
    to_c = await ringing(a, C)
    replaces = early_replaces_of(to_c) + (";early-only" if early_only else "")
    assert await a.refer(to_b, C, replaces) == 202
    ended = await end_of(to_c)
    assert ended.status == 487, ended
    return to_b, to_c


@pytest.mark.parametrize(
    ("workers", "hold_b", "early_only", "a_leaves"),
    [
        (1, True, True, False),
        (2, True, False, False),
        (2, False, False, False),
        (1, False, False, True),
    ],
    ids=[
        "one-worker-b-held-early-only",
        "two-workers-b-held",
        "two-workers",
        "one-worker-a-hangs-up-at-once",
    ],
)
async def test_semi_attended_transfer_rings_c_for_b_and_connects_them_when_c_answers(
    tmp_path: Path, workers: int, hold_b: bool, early_only: bool, a_leaves: bool
) -> None:
    with running_switch(tmp_path, (A, B, C), CALLBOX_MEDIA_WORKERS=str(workers)) as switch:
        phone_b = registered_baresip(switch, B, TONES[B], tmp_path)
        phone_c = registered_baresip(switch, C, TONES[C], tmp_path, answers=False)
        try:
            async with phone_a_of(switch) as a:
                await semi_attended_transfer_answered(
                    a,
                    switch,
                    phone_b,
                    phone_c,
                    hold_b=hold_b,
                    early_only=early_only,
                    a_leaves=a_leaves,
                )
        finally:
            for phone in (phone_b, phone_c):
                if phone.process is not None and phone.process.poll() is None:
                    phone.stop()


async def semi_attended_transfer_answered(
    a: PhoneA,
    switch: RunningSwitch,
    phone_b: Baresip,
    phone_c: Baresip,
    *,
    hold_b: bool,
    early_only: bool,
    a_leaves: bool,
) -> None:
    """A transfers B to the ringing C (and hangs up at once if ``a_leaves``, as some
    phones do after the 202); C answers after ``RINGING_S``; B and C hear each other."""
    to_b, _ = await transfer_while_c_rings(a, switch, hold_b=hold_b, early_only=early_only)
    # C was ringing when A transferred: A hears that it still rings.
    notify = await next_notify(a, to_b)
    assert notify == "SIP/2.0 180 Ringing"
    if a_leaves:
        to_b.hangup()
    # B's call rings on at C, with A's dialog to B up until C answers (unless A left).
    await asyncio.sleep(RINGING_S)
    assert to_b.ended == a_leaves
    phone_c.command("accept")
    if not a_leaves:
        assert await a.final_notify(to_b) == "SIP/2.0 200 OK"
        ended = await end_of(to_b)
        assert ended.by_peer, ended
    # One call, between B and C, both legs sending: C's only since it answered.
    call = await one_call_sending(switch, 0, "RTP both ways between B and C")
    assert {call["from"], call["to"]} == {B, C}
    assert not call["held"]
    assert len({leg["worker"] for leg in call["legs"].values()}) == 1
    samples_c = await asyncio.to_thread(heard, phone_c)
    assert has_tone(samples_c, TONES[B]), "C did not hear B's tone"
    # A held baresip records nothing after it is resumed (see test_attended_transfer):
    # B's ears are checked when A had not held it.
    if not hold_b:
        samples_b = await asyncio.to_thread(heard, phone_b)
        assert has_tone(samples_b, RINGBACK_HZ), "B heard no ringback while C rang"
        assert has_tone(samples_b, TONES[C]), "B did not hear C's tone"
    await wait_for_calls(switch, lambda calls: not calls, "the call over once C hung up")


async def next_notify(a: PhoneA, on: OutgoingCall) -> str:
    """The sipfrag status line of the next NOTIFY in ``on``'s dialog other than 100 Trying."""
    assert on.dialog is not None
    while True:
        request = await asyncio.wait_for(a.sessions.received.get(), 30)
        if request.method != "NOTIFY" or request.call_id != on.dialog.call_id:
            continue
        line = request.body.decode().splitlines()[0]
        if line != "SIP/2.0 100 Trying":
            return line


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[RunningSwitch]:
    """The switch with one media worker: an unheld B keeps its leg (SIPp's answer.xml
    expects no re-INVITE), and a short no-answer time."""
    with running_switch(
        tmp_path,
        (A, B, C),
        CALLBOX_SIP_NO_ANSWER_S=str(NO_ANSWER_S),
        CALLBOX_MEDIA_WORKERS="1",
    ) as running:
        yield running


@contextlib.contextmanager
def sipp_phone(switch: RunningSwitch, folder: Path, number: str) -> Iterator[Phones]:
    """A SIPp phone registered as ``number``, its logs in ``folder``."""
    phones = Phones(switch, folder, number)
    try:
        phones.register_callee()
        yield phones
    finally:
        phones.close()


@pytest.fixture
def sipp_b(switch: RunningSwitch, tmp_path: Path) -> Iterator[Phones]:
    with sipp_phone(switch, tmp_path / "b", B) as phones:
        yield phones


@pytest.fixture
def sipp_c(switch: RunningSwitch, tmp_path: Path) -> Iterator[Phones]:
    with sipp_phone(switch, tmp_path / "c", C) as phones:
        yield phones


def received(phones: Phones) -> str:
    """Every message the registered SIPp phone logged."""
    return "".join(p.read_text() for p in phones.callee_dir.glob("*_messages.log"))


async def test_c_never_answering_fails_the_transfer_and_b_is_hung_up_with_no_answer(
    switch: RunningSwitch, sipp_b: Phones, sipp_c: Phones, phone_a: PhoneA
) -> None:
    answering = sipp_b.callee("answer.xml")
    ringing_c = sipp_c.callee("ring.xml")
    to_b, _ = await transfer_while_c_rings(phone_a, switch, hold_b=False)
    # The switch's no-answer time ends C's ringing: CANCEL (cause 19), NOTIFY 480 to A,
    # BYE to B with the cause and to A.
    assert await phone_a.final_notify(to_b) == "SIP/2.0 480 Temporarily Unavailable"
    ended = await end_of(to_b)
    assert ended.by_peer, ended
    await asyncio.to_thread(finish, ringing_c, "C ring.xml", sipp_c.callee_dir)
    await asyncio.to_thread(finish, answering, "B answer.xml", sipp_b.callee_dir)
    assert "Reason: Q.850;cause=19" in received(sipp_c).split("CANCEL sip:", 1)[1]
    assert "Reason: Q.850;cause=19" in received(sipp_b).split("BYE sip:", 1)[1]
    assert await calls_of(switch) == []


async def test_b_hanging_up_while_c_rings_cancels_c(
    switch: RunningSwitch, sipp_c: Phones, phone_a: PhoneA, tmp_path: Path
) -> None:
    phone_b = registered_baresip(switch, B, TONES[B], tmp_path, controlled=True)
    try:
        ringing_c = sipp_c.callee("ring.xml")
        to_b, _ = await transfer_while_c_rings(phone_a, switch, hold_b=True)
        phone_b.command("hangup")
        # B's BYE ends A's call with B and C's ringing (CANCEL); nothing is left.
        ended = await end_of(to_b)
        assert ended.by_peer, ended
        await asyncio.to_thread(finish, ringing_c, "C ring.xml", sipp_c.callee_dir)
        await wait_for_calls(switch, lambda calls: not calls, "every call over")
    finally:
        phone_b.stop()
