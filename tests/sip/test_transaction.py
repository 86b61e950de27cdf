"""RFC 3261 17 transactions over a lossy link on a clock the tests drive (no sleeping)."""

from __future__ import annotations

import gc
import heapq
import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from appliance.sip.message import Request, Response, parse_message
from appliance.sip.transaction import (
    ClientInviteTransaction,
    ClientTransaction,
    FinishedInvite,
    ServerInviteTransaction,
    ServerTransaction,
    State,
    Transaction,
    TransactionLayer,
)
from appliance.sip.transport import Flow, TransportName
from appliance.sip.ua import UserAgentCore

# Send times when the interval doubles from T1 = 0.5 s and stops growing at T2 = 4 s,
# until 64*T1 = 32 s: timers E and G.
CAPPED_AT_T2 = [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
ALICE = ("192.0.2.1", 5060)
BOB = ("192.0.2.2", 5060)


class ManualClock:
    """A clock whose time moves only when the test calls ``advance``.

    A cancelled handle lets go of its callback, as asyncio's does, so what a
    cancelled timer referred to can be collected (tests check that it is).
    """

    @dataclass
    class Handle:
        callback: Callable[[], None] | None

        def cancel(self) -> None:
            self.callback = None

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, int, ManualClock.Handle]] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        handle = self.Handle(callback)
        heapq.heappush(self._due, (self.now + delay, next(self._order), handle))
        return handle

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._due and self._due[0][0] <= until:
            when, _, handle = heapq.heappop(self._due)
            self.now = when
            if handle.callback is not None:
                handle.callback()
        self.now = until


@dataclass
class Party:
    """A transaction user that records what it is told and may answer requests."""

    name: str
    answer: Callable[[Request], Response | None] = lambda _: None
    requests: list[tuple[Request, ServerTransaction | None]] = field(default_factory=list)
    responses: list[tuple[Response, ClientTransaction | None]] = field(default_factory=list)
    timeouts: list[ClientTransaction] = field(default_factory=list)

    def request_received(self, request: Request, transaction: ServerTransaction | None) -> None:
        self.requests.append((request, transaction))
        response = self.answer(request)
        if response is not None and transaction is not None:
            transaction.respond(response)

    def response_received(self, response: Response, transaction: ClientTransaction | None) -> None:
        self.responses.append((response, transaction))

    def transaction_timed_out(self, transaction: ClientTransaction) -> None:
        self.timeouts.append(transaction)


class Link:
    """Two transaction layers joined by a link that loses what ``lose`` picks.

    ``sent`` records (time, sender, start line) of everything put on the wire.
    """

    def __init__(self, reliable: bool = False, compact: bool = False) -> None:
        self.clock = ManualClock()
        self.transport: TransportName = "TCP" if reliable else "UDP"
        self.alice = Party("alice")
        self.bob = Party("bob")
        self.sent: list[tuple[float, str, str]] = []
        self.lose: Callable[[str, bytes, int], bool] = lambda sender, data, count: False
        self.layers = {
            name: TransactionLayer(
                party,
                self._responder(name),
                self.clock,
                wire=LinkWire(self, name) if compact else None,
            )
            for name, party in (("alice", self.alice), ("bob", self.bob))
        }
        self.flows = {"alice": self._flow("alice"), "bob": self._flow("bob")}

    def _flow(self, sender: str) -> Flow:
        remote, local = (BOB, ALICE) if sender == "alice" else (ALICE, BOB)
        return Flow(self.transport, remote, local, lambda data: self._carry(sender, data))

    def _responder(self, sender: str) -> Callable[[Response, Flow], None]:
        return lambda response, _flow: self._carry(sender, response.to_bytes())

    def _carry(self, sender: str, data: bytes) -> None:
        line = data.split(b"\r\n", 1)[0].decode()
        count = sum(1 for _, s, first in self.sent if s == sender and first == line)
        self.sent.append((self.clock.now, sender, line))
        if self.lose(sender, data, count):
            return
        receiver = "bob" if sender == "alice" else "alice"
        self.layers[receiver].receive(parse_message(data), self.flows[receiver])

    def times(self, sender: str, line_start: str) -> list[float]:
        return [t for t, s, line in self.sent if s == sender and line.startswith(line_start)]

    def call(self, method: str, branch: str = "z9hG4bKcall1") -> ClientTransaction:
        return self.layers["alice"].send_request(self.request(method, branch), self.flows["alice"])

    def request(self, method: str, branch: str) -> Request:
        request = parse_message(
            (
                f"{method} sip:bob@192.0.2.2 SIP/2.0\r\n"
                f"Via: SIP/2.0/{self.transport} 192.0.2.1:5060;branch={branch}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
                "To: <sip:bob@example.com>\r\nCall-ID: call1@192.0.2.1\r\n"
                f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        assert isinstance(request, Request)
        return request


class LinkWire:
    """A ``DatagramWire`` over the link: what lets a layer keep answered requests as bytes."""

    def __init__(self, link: Link, sender: str) -> None:
        self.link = link
        self.sender = sender

    def response_datagram(self, response: Response, flow: Flow) -> tuple[bytes, tuple[str, int]]:
        return response.to_bytes(), flow.remote

    def send_udp(self, data: bytes, destination: tuple[str, int]) -> None:
        self.link._carry(self.sender, data)


def state(transaction: Transaction) -> State:
    """The state now (a function, so the type checker does not pin it after an assert)."""
    return transaction.state


def answer_with(status: int, reason: str) -> Callable[[Request], Response | None]:
    def answer(request: Request) -> Response | None:
        if request.method == "ACK":
            return None
        return request.response(status, reason, to_tag="b1")

    return answer


def test_lost_invite_is_retransmitted_on_timer_a_until_timer_b_times_out() -> None:
    link = Link()
    link.lose = lambda sender, data, count: sender == "alice"
    transaction = link.call("INVITE")
    link.clock.advance(40)
    assert link.times("alice", "INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert link.alice.timeouts == [transaction]
    assert state(transaction) is State.TERMINATED
    assert link.layers["alice"].client == {}


def test_invite_over_tcp_is_sent_once_and_still_times_out() -> None:
    link = Link(reliable=True)
    link.lose = lambda sender, data, count: sender == "alice"
    transaction = link.call("INVITE")
    link.clock.advance(40)
    assert link.times("alice", "INVITE") == [0]
    assert link.alice.timeouts == [transaction]


def test_server_sends_100_trying_after_200_ms_and_again_for_a_retransmitted_invite() -> None:
    link = Link()
    # The first 100 Trying is lost, so alice retransmits and bob answers again.
    link.lose = lambda sender, data, count: sender == "bob" and count == 0
    transaction = link.call("INVITE")
    link.clock.advance(10)
    assert link.times("bob", "SIP/2.0 100 Trying") == [0.2, 0.5]
    assert link.times("alice", "INVITE") == [0, 0.5]
    assert state(transaction) is State.PROCEEDING
    assert len(link.bob.requests) == 1


def test_server_answering_within_200_ms_sends_no_100_even_for_a_retransmission() -> None:
    link = Link()
    link.bob.answer = answer_with(200, "OK")
    # The 200 is lost once: the INVITE comes again and the TU's 2xx is all it may see.
    link.lose = lambda sender, data, count: data.startswith(b"SIP/2.0 200") and count == 0
    link.call("INVITE")
    link.clock.advance(1)
    assert link.times("bob", "SIP/2.0 100") == []
    assert link.times("alice", "INVITE") == [0, 0.5]


def test_retransmitted_invite_before_the_tu_answers_gets_the_last_provisional() -> None:
    link = Link()
    link.lose = lambda sender, data, count: sender == "bob" and count == 0
    link.call("INVITE")
    bob_transaction = link.bob.requests[0][1]
    assert bob_transaction is not None
    bob_transaction.respond(bob_transaction.request.response(180, "Ringing", to_tag="b1"))
    link.clock.advance(1)
    assert link.times("bob", "SIP/2.0 180") == [0, 0.5]
    assert link.times("bob", "SIP/2.0 100") == []


def test_rejected_invite_is_acked_and_a_lost_ack_brings_the_final_response_again() -> None:
    link = Link()
    link.bob.answer = answer_with(486, "Busy Here")
    link.lose = lambda sender, data, count: data.startswith(b"ACK") and count == 0
    transaction = link.call("INVITE")
    bob_transaction = link.bob.requests[0][1]
    assert isinstance(bob_transaction, ServerInviteTransaction)
    link.clock.advance(0.5)
    assert link.times("bob", "SIP/2.0 486") == [0, 0.5]
    assert link.times("alice", "ACK") == [0, 0.5]
    assert state(bob_transaction) is State.CONFIRMED
    assert [r.status for r, _ in link.alice.responses] == [486]
    link.clock.advance(4.99)
    assert state(bob_transaction) is State.CONFIRMED
    link.clock.advance(0.11)  # timers run per 100 ms batch: never earlier, at most 0.1 s later
    assert state(bob_transaction) is State.TERMINATED  # timer I, T4 after the ACK
    assert state(transaction) is State.COMPLETED
    link.clock.advance(32)
    assert state(transaction) is State.TERMINATED  # timer D
    assert link.layers["bob"].server == {}


def test_final_response_is_retransmitted_on_timer_g_until_timer_h_gives_up() -> None:
    link = Link()
    link.bob.answer = answer_with(603, "Decline")
    # Every 603 is lost, and so are alice's INVITE retransmissions (no 100 stopped
    # them), so the 603s on the wire are timer G's alone.
    link.lose = lambda sender, data, count: sender == "bob" or count > 0
    link.call("INVITE")
    failures: list[ServerTransaction] = []
    bob_transaction = link.bob.requests[0][1]
    assert bob_transaction is not None
    bob_transaction.on_failure = failures.append
    link.clock.advance(40)
    assert link.times("bob", "SIP/2.0 603") == CAPPED_AT_T2
    assert failures == [bob_transaction]
    assert state(bob_transaction) is State.TERMINATED


def test_2xx_to_invite_uses_the_rfc6026_accepted_state() -> None:
    link = Link()
    link.bob.answer = answer_with(200, "OK")
    transaction = link.call("INVITE")
    assert isinstance(transaction, ClientInviteTransaction)
    assert state(transaction) is State.ACCEPTED
    assert link.times("bob", "SIP/2.0 200") == [0]
    bob_transaction = link.bob.requests[0][1]
    assert bob_transaction is not None
    assert state(bob_transaction) is State.ACCEPTED
    # Bob's TU retransmits its 2xx through the transaction; alice's TU sees each one.
    bob_transaction.respond(bob_transaction.request.response(200, "OK", to_tag="b1"))
    assert [r.status for r, _ in link.alice.responses] == [200, 200]
    # A retransmitted INVITE is absorbed; an ACK for the 2xx goes up to bob's TU.
    link.flows["alice"].send(transaction.request.to_bytes())
    ack = transaction.ack_for(link.alice.responses[-1][0])
    link.flows["alice"].send(ack.to_bytes())
    assert [(r.method, t) for r, t in link.bob.requests] == [
        ("INVITE", bob_transaction),
        ("ACK", None),
    ]
    link.clock.advance(31.99)
    assert state(transaction) is State.ACCEPTED
    assert state(bob_transaction) is State.ACCEPTED
    link.clock.advance(0.11)  # timers run per 100 ms batch: never earlier, at most 0.1 s later
    assert state(transaction) is State.TERMINATED  # timer M
    assert state(bob_transaction) is State.TERMINATED  # timer L
    assert link.layers["alice"].client == {}
    assert link.layers["bob"].server == {}


@pytest.mark.parametrize("compact", [False, True], ids=["transaction", "bytes"])
def test_lost_response_to_options_is_recovered_by_retransmission(compact: bool) -> None:
    link = Link(compact=compact)
    link.bob.answer = answer_with(200, "OK")
    link.lose = lambda sender, data, count: sender == "bob" and count == 0
    transaction = link.call("OPTIONS")
    link.clock.advance(0.5)
    assert link.times("alice", "OPTIONS") == [0, 0.5]
    assert link.times("bob", "SIP/2.0 200") == [0, 0.5]
    assert [r.status for r, _ in link.alice.responses] == [200]
    assert len(link.bob.requests) == 1
    assert state(transaction) is State.COMPLETED
    link.clock.advance(4.99)
    assert state(transaction) is State.COMPLETED
    link.clock.advance(0.11)  # timers run per 100 ms batch: never earlier, at most 0.1 s later
    assert state(transaction) is State.TERMINATED  # timer K
    assert link.layers["bob"].server != {}
    link.clock.advance(32)
    assert link.layers["bob"].server == {}  # timer J


def test_answered_non_invite_transactions_share_timer_j_yet_each_lasts_64_t1() -> None:
    link = Link()
    link.bob.answer = answer_with(200, "OK")
    link.call("OPTIONS", branch="z9hG4bKfirst")
    link.clock.advance(0.05)
    link.call("OPTIONS", branch="z9hG4bKsecond")
    first, second = (tx for _, tx in link.bob.requests)
    assert first is not None
    assert second is not None
    link.clock.advance(31.94)  # 32 s after the first answer, less a hundredth
    assert state(first) is State.COMPLETED
    assert state(second) is State.COMPLETED
    link.clock.advance(0.2)  # past the batch's timer: 32 s after the second answer, plus 0.1 s
    assert state(first) is State.TERMINATED
    assert state(second) is State.TERMINATED
    assert link.layers["bob"].server == {}


def test_non_invite_retransmissions_cap_at_t2_and_timer_f_times_out() -> None:
    link = Link()
    link.lose = lambda sender, data, count: sender == "alice"
    transaction = link.call("OPTIONS")
    link.clock.advance(40)
    assert link.times("alice", "OPTIONS") == CAPPED_AT_T2
    assert link.alice.timeouts == [transaction]


def test_provisional_response_moves_timer_e_to_t2() -> None:
    link = Link()
    link.bob.answer = answer_with(180, "Ringing")
    link.lose = lambda sender, data, count: sender == "alice" and count > 0
    transaction = link.call("OPTIONS")
    assert state(transaction) is State.PROCEEDING
    link.clock.advance(9)
    assert link.times("alice", "OPTIONS") == [0, 0.5, 4.5, 8.5]


def test_cancel_finds_the_invite_it_cancels_and_has_its_own_transaction() -> None:
    link = Link()
    link.call("INVITE", branch="z9hG4bKcancelme")
    link.call("CANCEL", branch="z9hG4bKcancelme")
    invite_tx = link.bob.requests[0][1]
    cancel, cancel_tx = link.bob.requests[1]
    assert cancel.method == "CANCEL"
    assert cancel_tx is not None
    assert cancel_tx is not invite_tx
    assert link.layers["bob"].invite_for_cancel(cancel) is invite_tx
    other = link.call("CANCEL", branch="z9hG4bKsomethingelse")
    assert state(other) is State.TRYING
    assert link.layers["bob"].invite_for_cancel(link.bob.requests[2][0]) is None


def test_closing_the_layer_cancels_every_timer() -> None:
    link = Link()
    link.lose = lambda sender, data, count: sender == "alice"
    transaction = link.call("INVITE")
    link.layers["alice"].close()
    link.clock.advance(40)
    assert link.times("alice", "INVITE") == [0]
    assert state(transaction) is State.TERMINATED
    assert link.alice.timeouts == []
    assert link.layers["alice"].client == {}


def test_core_cancels_a_pending_invite_with_487_and_answers_the_cancel_200() -> None:
    link = Link()  # bob's transaction user leaves the INVITE unanswered
    link.call("INVITE", branch="z9hG4bKpending")
    link.call("CANCEL", branch="z9hG4bKpending")
    core = UserAgentCore()
    core.layer = link.layers["bob"]
    invite_transaction = link.bob.requests[0][1]
    cancel, _ = link.bob.requests[1]
    response = core.answer(cancel)
    assert response is not None
    assert (response.status, response.cseq.method) == (200, "CANCEL")
    assert invite_transaction is not None
    assert invite_transaction.last_response is not None
    assert invite_transaction.last_response.status == 487
    assert [r.status for r, _ in link.alice.responses if r.cseq.method == "INVITE"] == [487]


def test_answered_request_kept_as_bytes_resends_them_and_the_tu_hears_it_once() -> None:
    link = Link(compact=True)
    link.bob.answer = answer_with(200, "OK")
    link.lose = lambda sender, data, count: sender == "bob" and count < 3
    transaction = link.call("OPTIONS")
    link.clock.advance(4)
    assert link.times("bob", "SIP/2.0 200") == [0, 0.5, 1.5, 3.5]
    assert [r.status for r, _ in link.alice.responses] == [200]
    assert len(link.bob.requests) == 1
    assert state(transaction) is State.COMPLETED
    link.layers["bob"].close()
    assert link.layers["bob"].server == {}


def test_retransmission_after_timer_j_is_a_new_request_for_the_tu() -> None:
    link = Link(compact=True)
    link.bob.answer = answer_with(200, "OK")
    link.call("OPTIONS")
    link.clock.advance(32.2)
    assert link.layers["bob"].server == {}
    link.call("OPTIONS")
    assert len(link.bob.requests) == 2


def test_rejected_invite_is_answered_with_the_same_bytes_then_kept_compact_after_the_ack() -> None:
    link = Link(compact=True)
    link.bob.answer = answer_with(407, "Proxy Authentication Required")
    sent: list[bytes] = []

    def lose_first_ack(sender: str, data: bytes, count: int) -> bool:
        sent.append(data)
        return data.startswith(b"ACK") and count == 0

    link.lose = lose_first_ack
    transaction = link.call("INVITE")
    assert isinstance(transaction, ClientInviteTransaction)
    bob_transaction = link.bob.requests[0][1]
    assert isinstance(bob_transaction, ServerInviteTransaction)
    assert state(bob_transaction) is State.COMPLETED  # the ACK was lost
    # A retransmitted INVITE in Completed gets the final response again, byte for byte.
    link.flows["alice"].send(transaction.request.to_bytes())
    finals = [data for data in sent if data.startswith(b"SIP/2.0 407")]
    assert len(finals) == 2
    assert finals[0] == finals[1]
    assert state(bob_transaction) is State.CONFIRMED  # alice ACKed the retransmission
    key = bob_transaction.key
    assert isinstance(link.layers["bob"].server[key], FinishedInvite)
    # Confirmed: an ACK or INVITE retransmission is absorbed, neither answered nor passed up.
    before = len(sent)
    link.flows["alice"].send(transaction.ack_for(link.alice.responses[0][0]).to_bytes())
    link.flows["alice"].send(transaction.request.to_bytes())
    assert [data.split(b"\r\n", 1)[0] for data in sent[before:]] == [
        b"ACK sip:bob@192.0.2.2 SIP/2.0",
        b"INVITE sip:bob@192.0.2.2 SIP/2.0",
    ]
    assert [(r.method, t) for r, t in link.bob.requests] == [("INVITE", bob_transaction)]
    link.clock.advance(5.2)  # timer I
    assert state(bob_transaction) is State.TERMINATED
    assert link.layers["bob"].server == {}


def test_accepted_invite_kept_compact_absorbs_retransmissions_without_the_transaction() -> None:
    link = Link(compact=True)
    link.bob.answer = answer_with(200, "OK")
    transaction = link.call("INVITE")
    assert isinstance(transaction, ClientInviteTransaction)
    bob_transaction = link.bob.requests[0][1]
    assert isinstance(bob_transaction, ServerInviteTransaction)
    key = bob_transaction.key
    held = weakref.ref(bob_transaction)
    link.bob.requests.clear()
    del bob_transaction
    gc.collect()
    # Nobody holds the transaction (its TU let go): the layer kept only the compact record.
    assert held() is None
    assert isinstance(link.layers["bob"].server[key], FinishedInvite)
    link.flows["alice"].send(transaction.request.to_bytes())
    assert link.times("bob", "SIP/2.0 200") == [0]
    assert link.bob.requests == []
    # RFC 6026 7.1: an ACK matching the INVITE still goes up to the TU.
    link.flows["alice"].send(transaction.ack_for(link.alice.responses[0][0]).to_bytes())
    assert [(r.method, t) for r, t in link.bob.requests] == [("ACK", None)]
    link.clock.advance(32.2)  # timer L
    assert link.layers["bob"].server == {}
    link.call("INVITE")  # after timer L the same branch is a new request
    assert [r.method for r, _ in link.bob.requests] == ["ACK", "INVITE"]


def test_finished_client_transactions_let_go_of_their_tu() -> None:
    link = Link()
    link.bob.answer = answer_with(486, "Busy Here")
    user = Party("tu")
    held = weakref.ref(user)
    rejected = link.layers["alice"].send_request(
        link.request("INVITE", "z9hG4bKcall2"),
        link.flows["alice"],
        user.response_received,
        user.transaction_timed_out,
    )
    assert state(rejected) is State.COMPLETED
    assert [r.status for r, _ in user.responses] == [486]
    del user
    gc.collect()
    # Timer D keeps the transaction 32 s to ACK retransmitted 486s; not the TU that heard it.
    assert held() is None
    assert link.layers["alice"].client[("z9hG4bKcall2", "INVITE")] is rejected
    link.clock.advance(32.2)
    assert state(rejected) is State.TERMINATED
    assert link.layers["alice"].client == {}
