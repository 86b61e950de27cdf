"""Sessions between user agents on a link the test drives (clock and losses): no sleeping.

Each user agent is the real stack above the transport (transaction layer,
UA core, ``SessionManager``); messages cross as bytes and are parsed again.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.calls.legs import CallLegs
from appliance.sip.auth import DigestChallenger, Verdict
from appliance.sip.causes import Cause
from appliance.sip.message import (
    Request,
    SipParseError,
    parse_address,
    parse_message,
    parse_uri,
)
from appliance.sip.refer import parse_refer_to, parse_replaces
from appliance.sip.sdp import create_answer, create_offer, parse_sdp
from appliance.sip.session import (
    Answered,
    Credentials,
    DtmfReceived,
    Ended,
    IncomingCall,
    OutgoingCall,
    Reoffered,
    Session,
    SessionEvent,
    SessionManager,
    SessionState,
    Target,
    TransferRequested,
)
from appliance.sip.transaction import TransactionLayer
from appliance.sip.transport import Flow
from appliance.sip.ua import UserAgentCore
from tests.sip.test_transaction import ManualClock

Address_ = tuple[str, int]


@dataclass
class Agent:
    """One user agent on the link, recording its sessions' events."""

    name: str
    address: Address_
    manager: SessionManager
    layer: TransactionLayer
    incoming: list[IncomingCall] = field(default_factory=list)
    events: list[tuple[Session, SessionEvent]] = field(default_factory=list)
    on_call: Callable[[IncomingCall], None] = lambda call: None

    def record(self, session: Session, event: SessionEvent) -> None:
        self.events.append((session, event))

    def kinds(self) -> list[str]:
        return [type(event).__name__ for _, event in self.events]

    def last(self) -> SessionEvent:
        return self.events[-1][1]


class Net:
    """User agents joined by a link that loses what ``lose`` picks; ``wire`` logs start lines."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.agents: dict[Address_, Agent] = {}
        self.wire: list[tuple[float, str, str]] = []
        self.lose: Callable[[str, bytes, int], bool] = lambda sender, data, count: False

    def agent(self, name: str, host: str) -> Agent:
        address = (host, 5060)
        manager = SessionManager(user=name)
        core = UserAgentCore(sessions=manager)
        layer = TransactionLayer(core, lambda r, f: f.send(r.to_bytes()), self.clock)
        core.layer = layer
        manager.attach(layer, None)
        agent = Agent(name, address, manager, layer)

        def incoming(call: IncomingCall) -> None:
            call.listener = agent.record
            agent.incoming.append(call)
            agent.on_call(call)

        manager.on_incoming = incoming
        self.agents[address] = agent
        return agent

    def flow(self, sender: Agent, receiver: Agent) -> Flow:
        def send(data: bytes) -> None:
            line = data.split(b"\r\n", 1)[0].decode()
            count = sum(1 for _, s, first in self.wire if s == sender.name and first == line)
            self.wire.append((self.clock.now, sender.name, line))
            if self.lose(sender.name, data, count):
                return
            receiver.layer.receive(parse_message(data), self.flow(receiver, sender))

        return Flow("UDP", receiver.address, sender.address, send)

    def sent(self, sender: str, start: str) -> list[float]:
        return [t for t, s, line in self.wire if s == sender and line.startswith(start)]

    def messages(self, sender: str) -> list[str]:
        return [line for _, s, line in self.wire if s == sender]


def state(session: Session) -> SessionState:
    """The state now (a function, so the type checker does not pin it after an assert)."""
    return session.state


def offer(port: int = 4000) -> bytes:
    return create_offer("192.0.2.10", port).to_bytes()


async def place(
    net: Net, caller: Agent, *callees: Agent, credentials: Credentials | None = None
) -> OutgoingCall:
    targets = [
        Target(parse_uri(f"sip:{c.name}@{c.address[0]}"), flow=net.flow(caller, c)) for c in callees
    ]
    return await caller.manager.call(
        targets,
        caller=parse_address(f"<sip:{caller.name}@{caller.address[0]}>"),
        callee=parse_address(f"<sip:{callees[0].name}@{callees[0].address[0]}>"),
        offer=parse_sdp(offer()),
        listener=caller.record,
        credentials=credentials,
        no_answer_s=60,
    )


def answer(call: IncomingCall) -> None:
    assert call.offer is not None
    call.answer(create_answer(call.offer, "192.0.2.20", 5000))


@pytest.fixture
def net() -> Net:
    return Net()


async def test_answered_call_confirms_on_ack_and_the_2xx_is_retransmitted_until_then(
    net: Net,
) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = lambda call: call.ringing()
    # The first two 200s are lost: bob's UA core (not the transaction) sends them again.
    net.lose = lambda sender, data, count: data.startswith(b"SIP/2.0 200") and count < 2
    call = await place(net, alice, bob)
    (incoming,) = bob.incoming
    assert alice.kinds() == ["Progress"]
    answer(incoming)
    assert state(incoming) is SessionState.ANSWERING
    net.clock.advance(2)
    assert net.sent("bob", "SIP/2.0 200") == [0, 0.5, 1.5]
    assert call.state is SessionState.CONFIRMED
    assert state(incoming) is SessionState.CONFIRMED
    assert bob.kinds() == ["Confirmed"]
    assert alice.kinds() == ["Progress", "Answered"]
    answered = alice.last()
    assert isinstance(answered, Answered)
    assert answered.media is not None
    assert (answered.media.remote_address, answered.media.remote_port) == ("192.0.2.20", 5000)
    net.clock.advance(60)
    assert net.sent("bob", "SIP/2.0 200") == [0, 0.5, 1.5]


async def test_unacknowledged_answer_ends_with_bye_after_64_t1(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = answer
    net.lose = lambda sender, data, count: data.startswith(b"ACK")
    await place(net, alice, bob)
    net.clock.advance(33)
    assert net.sent("bob", "SIP/2.0 200") == [
        0,
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert net.sent("bob", "BYE") == [32]
    ended = bob.last()
    assert isinstance(ended, Ended)
    assert ended.cause is Cause.RECOVERY_ON_TIMER_EXPIRY
    assert alice.kinds() == ["Answered", "Ended"]


async def test_caller_cancel_ends_the_ringing_call_with_487(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = lambda call: call.ringing()
    call = await place(net, alice, bob)
    call.cancel()
    assert alice.kinds() == ["Progress", "Ended"]
    assert net.messages("alice")[-2:] == [
        "CANCEL sip:bob@192.0.2.2 SIP/2.0",
        "ACK sip:bob@192.0.2.2 SIP/2.0",
    ]
    assert "SIP/2.0 487 Request Terminated" in net.messages("bob")
    ended = bob.last()
    assert isinstance(ended, Ended)
    assert (ended.cause, ended.status, ended.by_peer) == (Cause.NORMAL_CLEARING, 487, True)
    assert bob.manager.calls == {}
    assert alice.manager.calls == {}


async def test_cancel_waits_for_a_provisional_response(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    call = await place(net, alice, bob)
    call.cancel()
    assert net.sent("alice", "CANCEL") == []  # RFC 3261 9.1: nothing to cancel yet
    net.clock.advance(0.3)  # bob's transaction sends 100 Trying
    assert net.sent("alice", "CANCEL") == [0.2]
    assert "SIP/2.0 487 Request Terminated" in net.messages("bob")


async def test_forked_call_first_answer_wins_and_the_other_branch_is_cancelled(
    net: Net,
) -> None:
    alice = net.agent("alice", "192.0.2.1")
    desk, mobile = net.agent("desk", "192.0.2.2"), net.agent("mobile", "192.0.2.3")
    desk.on_call = mobile.on_call = lambda call: call.ringing()
    call = await place(net, alice, desk, mobile)
    assert alice.kinds() == ["Progress", "Progress"]
    answer(mobile.incoming[0])
    assert call.state is SessionState.CONFIRMED
    assert call.winner is not None
    assert call.winner.flow.remote == mobile.address
    assert net.sent("alice", "CANCEL") == [0]
    (ended,) = [e for _, e in desk.events if isinstance(e, Ended)]
    assert ended.status == 487
    cancel_reason = [line for line in net.messages("alice") if line.startswith("CANCEL")]
    assert cancel_reason == ["CANCEL sip:desk@192.0.2.2 SIP/2.0"]


async def test_late_2xx_from_another_branch_is_acked_then_hung_up(net: Net) -> None:
    alice = net.agent("alice", "192.0.2.1")
    desk, mobile = net.agent("desk", "192.0.2.2"), net.agent("mobile", "192.0.2.3")
    desk.on_call = mobile.on_call = lambda call: call.ringing()
    # The CANCEL to the desk phone is lost, and the desk answers too.
    net.lose = lambda sender, data, count: data.startswith(b"CANCEL")
    await place(net, alice, desk, mobile)
    answer(mobile.incoming[0])
    answer(desk.incoming[0])
    assert desk.kinds() == ["Confirmed", "Ended"]
    ended = desk.last()
    assert isinstance(ended, Ended)
    assert ended.by_peer
    assert alice.kinds() == ["Progress", "Progress", "Answered"]
    assert len(alice.manager.sessions) == 1


async def test_busy_everywhere_fails_the_call_with_user_busy(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = lambda call: call.reject(Cause.USER_BUSY)
    await place(net, alice, bob)
    ended = alice.last()
    assert isinstance(ended, Ended)
    assert (ended.cause, ended.status) == (Cause.USER_BUSY, 486)
    assert net.sent("alice", "ACK") == [0]


async def test_best_failure_of_the_branches_is_reported(net: Net) -> None:
    alice = net.agent("alice", "192.0.2.1")
    one, two = net.agent("one", "192.0.2.2"), net.agent("two", "192.0.2.3")
    one.on_call = lambda call: call.reject(Cause.USER_BUSY)
    two.on_call = lambda call: call.reject(404)
    await place(net, alice, one, two)
    ended = alice.last()
    assert isinstance(ended, Ended)
    assert ended.status == 486


async def test_unanswered_call_is_cancelled_by_the_no_answer_timer(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = lambda call: call.ringing()
    await place(net, alice, bob)
    net.clock.advance(61)
    ended = alice.last()
    assert isinstance(ended, Ended)
    assert (ended.cause, ended.status, ended.by_peer) == (Cause.NO_ANSWER, 480, False)
    assert net.sent("alice", "CANCEL") == [60]


async def test_407_is_answered_with_credentials_once(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    challenger = DigestChallenger("callbox", {"1001": "secret"}.get, algorithms=("MD5",))

    def check(call: IncomingCall) -> None:
        verdict = challenger.verify(call.invite, "Proxy-Authorization").verdict
        if verdict is Verdict.OK:
            answer(call)
        else:
            call.challenge(challenger.challenges())

    bob.on_call = check
    await place(net, alice, bob, credentials=Credentials("1001", "secret"))
    assert alice.kinds() == ["Answered"]
    invites = [line for line in net.messages("alice") if line.startswith("INVITE")]
    assert len(invites) == 2

    wrong = Net()
    carol, dave = wrong.agent("carol", "192.0.2.1"), wrong.agent("dave", "192.0.2.2")
    dave.on_call = check
    await place(wrong, carol, dave, credentials=Credentials("1001", "wrong"))
    ended = carol.last()
    assert isinstance(ended, Ended)
    assert (ended.status, ended.cause) == (407, Cause.CALL_REJECTED)


async def connected(net: Net) -> tuple[Agent, Agent, OutgoingCall, IncomingCall]:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = answer
    call = await place(net, alice, bob)
    assert call.state is SessionState.CONFIRMED
    return alice, bob, call, bob.incoming[0]


async def test_hold_and_resume_reinvites_are_answered_and_reported(net: Net) -> None:
    _alice, bob, call, incoming = await connected(net)
    call.hold()
    event = bob.last()
    assert isinstance(event, Reoffered)
    assert event.held
    assert event.media is not None
    assert event.media.direction == "recvonly"
    assert incoming.remote_sdp is not None
    call.resume()
    event = bob.last()
    assert isinstance(event, Reoffered)
    assert not event.held
    assert net.sent("alice", "ACK") == [0, 0, 0]
    # Each SDP we send keeps its o= session id and raises its version (RFC 3264 8).
    assert incoming.local_sdp is not None
    origin = incoming.local_sdp.origin.split()
    assert origin[2] == "3"


async def test_peer_hold_with_zero_address_and_update(net: Net) -> None:
    _alice, bob, call, _incoming = await connected(net)
    held = create_offer("0.0.0.0", 4000).to_bytes()
    call.send_request("UPDATE", held, "application/sdp")
    event = bob.last()
    assert isinstance(event, Reoffered)
    assert event.held
    assert "SIP/2.0 200 OK" in net.messages("bob")


async def test_glare_gets_491(net: Net) -> None:
    _alice, _bob, call, incoming = await connected(net)
    net.lose = lambda sender, data, count: sender == "alice" and data.startswith(b"SIP/2.0 200")
    incoming.hold()
    # Bob's re-INVITE is pending (its 200 is lost); alice's own gets 491.
    call.hold()
    assert "SIP/2.0 491 Request Pending" in net.messages("bob")


async def test_info_dtmf_reaches_the_owner(net: Net) -> None:
    _alice, bob, call, _incoming = await connected(net)
    call.send_request("INFO", b"Signal=7\r\nDuration=160\r\n", "application/dtmf-relay")
    event = bob.last()
    assert isinstance(event, DtmfReceived)
    assert event.relay.signal == "7"
    call.send_request("INFO", b"<xml/>", "application/xml")
    assert net.messages("bob")[-1] == "SIP/2.0 415 Unsupported Media Type"


async def test_bye_carries_the_cause_to_the_peer(net: Net) -> None:
    alice, bob, call, incoming = await connected(net)
    incoming.hangup(Cause.RECOVERY_ON_TIMER_EXPIRY)
    ended = alice.last()
    assert isinstance(ended, Ended)
    assert (ended.cause, ended.by_peer) == (Cause.RECOVERY_ON_TIMER_EXPIRY, True)
    assert alice.manager.sessions == {}
    assert bob.manager.sessions == {}
    assert call.state is SessionState.ENDED


async def test_blind_transfer_is_surfaced_and_notified(net: Net) -> None:
    _alice, bob, call, _incoming = await connected(net)
    call.send_request("REFER", headers=[("Refer-To", "<sip:2000@192.0.2.2>")])
    event = bob.last()
    assert isinstance(event, TransferRequested)
    transfer = event.transfer
    assert str(transfer.target.uri) == "sip:2000@192.0.2.2"
    assert transfer.replaces is None
    transfer.notify(200, "OK")
    notifies = [line for line in net.messages("bob") if line.startswith("NOTIFY")]
    assert len(notifies) == 2
    assert net.messages("alice").count("SIP/2.0 200 OK") >= 2
    assert "SIP/2.0 202 Accepted" in net.messages("bob")


async def test_attended_transfer_names_the_dialog_to_replace(net: Net) -> None:
    _alice, bob, call, _incoming = await connected(net)
    replaces = "abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2"
    call.send_request("REFER", headers=[("Refer-To", f"<sip:2000@192.0.2.2?Replaces={replaces}>")])
    event = bob.last()
    assert isinstance(event, TransferRequested)
    assert event.transfer.replaces == parse_replaces("abc@host;to-tag=1;from-tag=2")
    assert event.transfer.target.uri.headers == ()


def raw_invite(branch: str, extra: str = "", body: bytes = b"") -> Request:
    request = parse_message(
        (
            f"INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.3;branch={branch}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:carol@x>;tag=c\r\nTo: <sip:bob@x>\r\n"
            f"Call-ID: {branch}@x\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@192.0.2.3>\r\n"
            f"{extra}Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    assert isinstance(request, Request)
    return request


async def test_invite_with_replaces_is_matched_to_its_dialog(net: Net) -> None:
    _alice, bob, _call, incoming = await connected(net)
    carol = net.agent("carol", "192.0.2.3")
    assert incoming.id is not None
    call_id, local, remote = incoming.id
    replaces = f"Replaces: {call_id};to-tag={local};from-tag={remote}\r\n"
    bob.layer.receive(raw_invite("z9hG4bKr1", replaces, offer()), net.flow(bob, carol))
    assert bob.incoming[-1].replaces is incoming
    unknown = "Replaces: nosuch@x;to-tag=1;from-tag=2\r\n"
    bob.layer.receive(raw_invite("z9hG4bKr2", unknown, offer()), net.flow(bob, carol))
    assert net.messages("bob")[-1] == "SIP/2.0 481 Call/Transaction Does Not Exist"
    bob.layer.receive(raw_invite("z9hG4bKr3", replaces + unknown, offer()), net.flow(bob, carol))
    assert net.messages("bob")[-1] == "SIP/2.0 400 Bad Replaces: more than one"


def test_replaces_needs_call_id_and_both_tags() -> None:
    assert str(parse_replaces("a@b;from-tag=2;to-tag=1;early-only")) == (
        "a@b;to-tag=1;from-tag=2;early-only"
    )
    with pytest.raises(ValueError, match="Bad Replaces"):
        parse_replaces("a@b;to-tag=1")


async def test_an_invite_without_sdp_is_offered_to_the_owner_with_none(net: Net) -> None:
    bob, carol = net.agent("bob", "192.0.2.2"), net.agent("carol", "192.0.2.3")
    bob.layer.receive(raw_invite("z9hG4bKlate"), net.flow(bob, carol))
    assert bob.incoming[0].offer is None
    bob.incoming[0].reject(488)
    assert net.messages("bob")[-1] == "SIP/2.0 488 Not Acceptable Here"


async def test_a_reinvite_stands_for_the_lost_ack_of_the_last_2xx(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = answer
    net.lose = lambda sender, data, count: data.startswith(b"ACK") and count == 0
    call = await place(net, alice, bob)
    (incoming,) = bob.incoming
    assert state(incoming) is SessionState.ANSWERING
    call.hold()
    assert state(incoming) is SessionState.CONFIRMED
    assert bob.kinds() == ["Confirmed", "Reoffered"]
    net.clock.advance(40)
    assert net.sent("bob", "BYE") == []  # no "missing ACK" hang-up


@given(st.text(max_size=120))
def test_any_replaces_or_refer_to_text_is_parsed_or_refused_with_a_typed_error(value: str) -> None:
    for parse in (parse_replaces, parse_refer_to):
        try:
            parse(value)
        except SipParseError:
            continue


async def test_redirect_answers_302_with_the_contacts_and_the_caller_ends(net: Net) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = lambda call: call.redirect(
        [parse_uri("sip:bob@192.0.2.9"), parse_address("<sip:b@x>;q=0.5")]
    )
    await place(net, alice, bob)
    assert "SIP/2.0 302 Moved Temporarily" in net.messages("bob")
    ended = alice.last()
    assert isinstance(ended, Ended)
    assert (ended.status, ended.cause) == (302, Cause.REDIRECTED)


async def test_ended_call_is_freed_at_once_while_its_transactions_still_answer_retransmissions(
    net: Net,
) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = answer
    sent: list[bytes] = []

    def keep(sender: str, data: bytes, count: int) -> bool:
        sent.append(data)
        return False

    net.lose = keep
    call = await place(net, alice, bob)
    incoming = bob.incoming[0]
    call.hangup()
    assert state(incoming) is SessionState.ENDED
    calls = (weakref.ref(call), weakref.ref(incoming))
    invite = next(data for data in sent if data.startswith(b"INVITE"))
    ok = next(data for data in sent if data.startswith(b"SIP/2.0 200"))
    alice.events.clear()
    bob.events.clear()
    bob.incoming.clear()
    gc.disable()
    try:
        del call, incoming
        # Neither side's call is alive, though both INVITE transactions wait 64*T1 (L
        # and M): freed by reference counting, without waiting for the collector.
        assert [held() for held in calls] == [None, None]
    finally:
        gc.enable()
    # A retransmitted 2xx is ACKed again (our ACK was lost), the same bytes.
    acks = [d for d in sent if d.startswith(b"ACK")]
    alice.layer.receive(parse_message(ok), net.flow(alice, bob))
    assert [d for d in sent if d.startswith(b"ACK")] == [*acks, acks[0]]
    # A retransmitted INVITE is absorbed: no new call, nothing sent.
    before = len(sent)
    bob.layer.receive(parse_message(invite), net.flow(bob, alice))
    assert bob.incoming == []
    assert len(sent) == before
    net.clock.advance(32.2)
    assert alice.layer.client == {}


async def test_a_call_that_stops_listening_is_freed_without_the_garbage_collector(
    net: Net,
) -> None:
    alice, bob = net.agent("alice", "192.0.2.1"), net.agent("bob", "192.0.2.2")
    bob.on_call = answer
    session = await place(net, alice, bob)
    legs = CallLegs(id="call-1")
    session.listener = legs.listen
    legs.parties.append(session)
    session.hangup()
    legs.stop_listening([])
    held = weakref.ref(legs)
    gc.disable()
    try:
        del legs
        assert held() is None
    finally:
        gc.enable()
