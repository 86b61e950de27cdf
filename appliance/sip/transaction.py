"""SIP transactions (RFC 3261 section 17, RFC 6026): the four state machines.

``ClientInviteTransaction`` (17.1.1), ``ClientNonInviteTransaction``
(17.1.2), ``ServerInviteTransaction`` (17.2.1) and
``ServerNonInviteTransaction`` (17.2.2), with timers A to K named as in the
RFC and RFC 6026's Accepted state (timers L and M) for 2xx to INVITE.
``TransactionLayer`` matches incoming messages to transactions (17.1.3,
17.2.3) and CANCEL to the INVITE it cancels (9.2).

Timers run on a ``Clock``: ``LoopClock`` uses the asyncio loop, tests pass
a clock they advance by hand, so retransmission and timeout rules are
tested without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from appliance.sip.message import Headers, Request, Response, SipParseError, Via
from appliance.sip.transport import Flow

log = logging.getLogger(__name__)

_K = TypeVar("_K")
_T = TypeVar("_T")


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Stop the callback from running."""


class Clock(Protocol):
    """Schedules callbacks ``delay`` seconds from now."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds."""


class LoopClock:
    """The running asyncio loop as a ``Clock``."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds on the loop."""
        return asyncio.get_running_loop().call_later(delay, callback)


class DatagramWire(Protocol):
    """What the transaction layer needs to keep an answered request's response as bytes.

    ``SipTransport`` is one: ``response_datagram`` is the datagram and the
    destination its ``send_response`` would use over UDP, ``send_udp`` sends
    one datagram.
    """

    def response_datagram(self, response: Response, flow: Flow) -> AnsweredRequest:
        """The bytes of ``response`` and where they go, for a request that came over ``flow``."""

    def send_udp(self, data: bytes, destination: tuple[str, int]) -> None:
        """Send one datagram."""


AnsweredRequest = tuple[bytes, tuple[str, int]]
"""An answered non-INVITE request over UDP as the layer keeps it: the response's bytes and
destination (a tuple of immutable values, which the garbage collector stops tracking)."""


@dataclass(frozen=True)
class Timers:
    """RFC 3261 17.1.1.1 timer values in seconds (Table 4 of appendix A)."""

    t1: float = 0.5
    """Round-trip time estimate."""
    t2: float = 4.0
    """Longest retransmit interval for non-INVITE requests and INVITE responses."""
    t4: float = 5.0
    """Longest time a message stays in the network."""

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J (unreliable) and RFC 6026's L and M."""
        return 64 * self.t1


class State(enum.Enum):
    """Transaction states across the four machines."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


def transaction_key(request: Request) -> tuple[str, ...]:
    """The server transaction a request belongs to (RFC 3261 17.2.3).

    ACK matches its INVITE. A branch without the magic cookie is an RFC 2543
    client; its key is built from the fields RFC 2543 used.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(Via.MAGIC_COOKIE) and len(branch) > len(Via.MAGIC_COOKIE):
        host, port = via.sent_by
        return (branch, host, str(port or ""), method)
    return (
        "rfc2543",
        str(request.uri),
        request.call_id,
        request.from_.tag or "",
        str(request.cseq.number),
        str(via),
        method,
    )


def client_key(branch: str, method: str) -> tuple[str, str]:
    """The client transaction a response belongs to (RFC 3261 17.1.3)."""
    return branch, "INVITE" if method == "ACK" else method


class Transaction:
    """What the four machines share: state, timers and the flow they use."""

    def __init__(self, request: Request, flow: Flow, clock: Clock, timers: Timers) -> None:
        self.request = request
        self.flow = flow
        self.clock = clock
        self.timers = timers
        self.state = State.TERMINATED
        self._timers: dict[str, TimerHandle] = {}
        self.on_terminated: Callable[[Transaction], None] = _ignore

    def start(self) -> None:
        """Enter the initial state and send what that state sends."""
        raise NotImplementedError

    def _start_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._stop_timer(name)

        def fire() -> None:
            self._timers.pop(name, None)
            callback()

        self._timers[name] = self.clock.call_later(delay, fire)

    def _repeat(self, name: str, interval: float, action: Callable[[float], float | None]) -> None:
        """Run ``action`` every interval it returns (None stops): timers A, E and G."""

        def fire() -> None:
            following = action(interval)
            if following is not None:
                self._repeat(name, following, action)

        self._start_timer(name, interval, fire)

    def _stop_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        for name in list(self._timers):
            self._stop_timer(name)
        self.state = State.TERMINATED
        self.on_terminated(self)

    def _after(self, delay: float) -> float:
        """Zero over a reliable transport, where timers D, I, J, K do not wait."""
        return 0.0 if self.flow.reliable else delay


class ClientTransaction(Transaction):
    """A client transaction; the TU hears responses and timeouts through callbacks."""

    def __init__(
        self,
        request: Request,
        flow: Flow,
        clock: Clock,
        timers: Timers,
        on_response: Callable[[Response, ClientTransaction], None],
        on_timeout: Callable[[ClientTransaction], None],
    ) -> None:
        super().__init__(request, flow, clock, timers)
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.branch = request.top_via.branch or ""

    initial_state: State
    retransmit_timer: str
    timeout_timer: str

    def start(self) -> None:
        """Send the request; over UDP a timer retransmits it; 64*T1 later it times out."""
        self.state = self.initial_state
        self._send_request()
        if not self.flow.reliable:
            self._repeat(self.retransmit_timer, self.timers.t1, self.retransmit)
        self._start_timer(self.timeout_timer, self.timers.timeout, self.timeout)

    def retransmit(self, interval: float) -> float | None:
        """Resend the request; return the next interval, None to stop."""
        raise NotImplementedError

    def timeout(self) -> None:
        """Timer B or F: no final response came in time."""
        raise NotImplementedError

    def _send_request(self) -> None:
        self.flow.send(self.request.to_bytes())

    def _timed_out(self) -> None:
        self.on_timeout(self)
        self._terminate()

    def receive_response(self, response: Response) -> None:
        """A response matched to this transaction arrived."""
        raise NotImplementedError


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.1 with RFC 6026 7.2: the INVITE client transaction."""

    initial_state = State.CALLING
    retransmit_timer = "A"
    timeout_timer = "B"

    def retransmit(self, interval: float) -> float | None:
        """Timer A: resend the INVITE while Calling, doubling the interval."""
        if self.state is not State.CALLING:
            return None
        self._send_request()
        return interval * 2

    def timeout(self) -> None:
        """Timer B: no response in 64*T1; tell the TU the INVITE timed out."""
        if self.state is State.CALLING:
            self._timed_out()

    def timer_d(self) -> None:
        """The wait for response retransmissions is over."""
        self._terminate()

    def timer_m(self) -> None:
        """RFC 6026: the wait for 2xx retransmissions is over."""
        self._terminate()

    def receive_response(self, response: Response) -> None:
        """Move through Proceeding, Completed (ACK sent here) or Accepted."""
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            self._stop_timer("A")
            self._stop_timer("B")
            if status < 200:
                self.state = State.PROCEEDING
            elif status < 300:
                self.state = State.ACCEPTED
                self._start_timer("M", self.timers.timeout, self.timer_m)
            else:
                self.state = State.COMPLETED
                self.flow.send(self.ack_for(response).to_bytes())
                self._start_timer("D", self._after(32.0), self.timer_d)
            self.on_response(response, self)
        elif self.state is State.COMPLETED and status >= 300:
            # A retransmitted final response: our ACK was lost; send it again.
            self.flow.send(self.ack_for(response).to_bytes())
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            # RFC 6026: 2xx retransmissions go to the TU, which ACKs them.
            self.on_response(response, self)

    def ack_for(self, response: Response) -> Request:
        """RFC 3261 17.1.1.3: the ACK for a non-2xx final response."""
        original = self.request
        headers = Headers()
        headers.add("Via", str(original.top_via))
        for name in ("Max-Forwards", "From"):
            for value in original.headers.lines(name):
                headers.add(name, value)
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", original.call_id)
        headers.add("CSeq", f"{original.cseq.number} ACK")
        for value in original.headers.lines("Route"):
            headers.add("Route", value)
        return Request(headers, b"", "ACK", original.uri)


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.2: the non-INVITE client transaction."""

    initial_state = State.TRYING
    retransmit_timer = "E"
    timeout_timer = "F"

    def retransmit(self, interval: float) -> float | None:
        """Timer E: resend, doubling up to T2 (T2 at once in Proceeding)."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return None
        self._send_request()
        if self.state is State.PROCEEDING:
            return self.timers.t2
        return min(interval * 2, self.timers.t2)

    def timeout(self) -> None:
        """Timer F: no final response in 64*T1; tell the TU."""
        if self.state in (State.TRYING, State.PROCEEDING):
            self._timed_out()

    def timer_k(self) -> None:
        """The wait for response retransmissions is over."""
        self._terminate()

    def receive_response(self, response: Response) -> None:
        """Provisional: Proceeding; final: Completed; retransmissions absorbed."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._stop_timer("E")
            self._stop_timer("F")
            self._start_timer("K", self._after(self.timers.t4), self.timer_k)
        self.on_response(response, self)


class ServerTransaction(Transaction):
    """A server transaction; the TU answers through ``respond``."""

    def __init__(
        self,
        request: Request,
        flow: Flow,
        clock: Clock,
        timers: Timers,
        send_response: Callable[[Response, Flow], None],
    ) -> None:
        super().__init__(request, flow, clock, timers)
        self._send = send_response
        self.key: tuple[str, ...] = ()
        """Where the transaction layer files it (``transaction_key``)."""
        self.last_response: Response | None = None
        self.on_failure: Callable[[ServerTransaction], None] = _ignore
        """Called when the ACK for a final non-2xx never came (timer H)."""

    def _transmit(self, response: Response) -> None:
        self.last_response = response
        self._send(response, self.flow)

    def _retransmit(self) -> None:
        if self.last_response is not None:
            self._send(self.last_response, self.flow)

    def respond(self, response: Response) -> None:
        """The TU's response to the request."""
        raise NotImplementedError

    def receive_request(self, request: Request) -> Request | None:
        """A retransmission or ACK matched to this transaction.

        Returns what must go up to the TU (an ACK for a 2xx), else None.
        """
        raise NotImplementedError


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.1 with RFC 6026 7.1: the INVITE server transaction."""

    TRYING_DELAY = 0.2
    """RFC 3261 17.2.1: no 100 Trying if the TU answers within 200 ms."""

    def start(self) -> None:
        """Enter Proceeding; 100 Trying follows in 200 ms unless the TU has answered.

        A TU that answers at once (a re-INVITE answered locally, a rejection)
        so sends no 100 at all: a 100 that crossed the final response would
        reach a peer that has moved on, and SIPp, for one, fails the call on it.
        """
        self.state = State.PROCEEDING
        self._start_timer("Trying", self.TRYING_DELAY, self._trying)

    def _trying(self) -> None:
        if self.state is State.PROCEEDING and self.last_response is None:
            self._transmit(self.request.response(100, "Trying"))

    def respond(self, response: Response) -> None:
        """Send a response; 2xx moves to Accepted, 300-699 to Completed."""
        status = response.status
        if self.state is State.PROCEEDING:
            self._stop_timer("Trying")
            self._transmit(response)
            if 200 <= status < 300:
                self.state = State.ACCEPTED
                self._start_timer("L", self.timers.timeout, self.timer_l)
            elif status >= 300:
                self.state = State.COMPLETED
                if not self.flow.reliable:
                    self._repeat("G", self.timers.t1, self.timer_g)
                self._start_timer("H", self.timers.timeout, self.timer_h)
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            # RFC 6026: the TU retransmits its 2xx through the transaction.
            self._transmit(response)

    def timer_g(self, interval: float) -> float | None:
        """Resend the final response until the ACK comes (up to T2 apart)."""
        if self.state is not State.COMPLETED:
            return None
        self._retransmit()
        return min(interval * 2, self.timers.t2)

    def timer_h(self) -> None:
        """No ACK in 64*T1: give up and tell the TU."""
        if self.state is State.COMPLETED:
            self.on_failure(self)
            self._terminate()

    def timer_i(self) -> None:
        """The wait for ACK retransmissions is over."""
        self._terminate()

    def timer_l(self) -> None:
        """RFC 6026: the wait for INVITE retransmissions after a 2xx is over."""
        self._terminate()

    def receive_request(self, request: Request) -> Request | None:
        """INVITE retransmissions get the last response again (or 100 Trying); ACK confirms."""
        if request.method == "INVITE":
            if self.state is State.PROCEEDING and self.last_response is None:
                self._stop_timer("Trying")
                self._trying()
            elif self.state in (State.PROCEEDING, State.COMPLETED):
                self._retransmit()
            return None
        if request.method != "ACK":
            return None
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._stop_timer("G")
            self._stop_timer("H")
            self._start_timer("I", self._after(self.timers.t4), self.timer_i)
            return None
        if self.state is State.ACCEPTED:
            # RFC 6026: an ACK for the 2xx passes up to the TU.
            return request
        return None


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.2: the non-INVITE server transaction.

    ``on_completed``, when set (the transaction layer sets it), takes over
    the Completed state over UDP: the layer absorbs retransmissions and runs
    timer J for many transactions at once (``TransactionLayer``).
    """

    on_completed: Callable[[ServerNonInviteTransaction], None] | None = None

    def start(self) -> None:
        """Enter Trying; the TU answers when ready."""
        self.state = State.TRYING

    def respond(self, response: Response) -> None:
        """Provisional: Proceeding; final: Completed, timer J."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self._transmit(response)
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            if self.on_completed is not None and not self.flow.reliable:
                self.on_completed(self)
            else:
                self._start_timer("J", self._after(self.timers.timeout), self.timer_j)

    def timer_j(self) -> None:
        """The wait for request retransmissions is over."""
        self._terminate()

    def receive_request(self, request: Request) -> Request | None:
        """A retransmission gets the last response again (none in Trying)."""
        if self.state in (State.PROCEEDING, State.COMPLETED):
            self._retransmit()
        return None


def _ignore(_: Transaction) -> None:
    """The callback of a transaction nobody listens to."""


class TimerBatch(Generic[_T]):
    """One timer for every item added within ``window`` seconds: each expires ``delay`` after.

    Under load the switch answers thousands of REGISTERs a second, and RFC
    3261 keeps each non-INVITE server transaction 64*T1 (timer J) after its
    answer to absorb retransmissions. One asyncio timer per transaction is
    a handle, a context and a closure alive for those 32 s; the garbage
    collector walks them all at every full collection. Batched, ``expire``
    is called for an item between ``delay`` and ``delay + window`` after it
    was added: a transaction absorbs retransmissions a little longer, never
    shorter.
    """

    def __init__(
        self, clock: Clock, delay: float, expire: Callable[[_T], None], window: float = 0.1
    ) -> None:
        self.clock = clock
        self.delay = delay
        self.expire = expire
        self.window = window
        self._open: list[_T] | None = None
        self._pending: dict[int, TimerHandle] = {}

    def add(self, item: _T) -> None:
        """Expire ``item`` ``delay`` (to ``delay + window``) seconds from now."""
        if self._open is None:
            batch: list[_T] = []
            self._open = batch
            self._pending[id(batch)] = self.clock.call_later(
                self.window, lambda: self._close(batch)
            )
        self._open.append(item)

    def _close(self, batch: list[_T]) -> None:
        self._open = None
        self._pending[id(batch)] = self.clock.call_later(self.delay, lambda: self._run(batch))

    def _run(self, batch: list[_T]) -> None:
        del self._pending[id(batch)]
        for item in batch:
            self.expire(item)

    def cancel(self) -> None:
        """Drop every pending item."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        self._open = None


class TransactionUser(Protocol):
    """The layer above transactions (the UA core): what it is told."""

    def request_received(self, request: Request, transaction: ServerTransaction | None) -> None:
        """A new request (with its server transaction), or an ACK for a 2xx (None)."""

    def response_received(self, response: Response, transaction: ClientTransaction | None) -> None:
        """A response of one of our transactions, or a stray one (None)."""

    def transaction_timed_out(self, transaction: ClientTransaction) -> None:
        """Timer B or F fired."""


class TransactionLayer:
    """Matches messages to transactions and creates server transactions.

    With a ``wire`` (the transport), an answered non-INVITE server
    transaction over UDP is kept as its response's bytes and destination
    (``AnsweredRequest``) for timer J instead of as the transaction object
    with its request and response: at 2,000 REGISTERs a second, 64*T1 of
    them is over 100,000 transactions alive, and each full collection of
    the garbage collector walks every object they hold. Retransmissions get
    the same bytes at the same address; the TU no longer hears of the
    transaction, whose object stays in Completed.
    """

    def __init__(
        self,
        user: TransactionUser,
        send_response: Callable[[Response, Flow], None],
        clock: Clock | None = None,
        timers: Timers | None = None,
        wire: DatagramWire | None = None,
    ) -> None:
        self.user = user
        self.send_response = send_response
        self.clock: Clock = clock or LoopClock()
        self.timers = timers or Timers()
        self.wire = wire
        self.server: dict[tuple[str, ...], ServerTransaction | AnsweredRequest] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self._timer_j: TimerBatch[tuple[str, ...]] = TimerBatch(
            self.clock, self.timers.timeout, self._timer_j_expired
        )
        # One callback object for every server transaction (not a closure each:
        # each answered one stays alive 32 s and the collector walks it).
        self._server_ended: Callable[[Transaction], None] = self._forget_server
        self._server_completed: Callable[[ServerNonInviteTransaction], None] = self._completed

    def receive(self, message: Request | Response, flow: Flow) -> None:
        """Entry point for the transport: route one parsed message."""
        try:
            if isinstance(message, Request):
                self._receive_request(message, flow)
            else:
                self._receive_response(message)
        except SipParseError as error:
            # Only the typed views can fail here; the transport has checked the rest.
            log.debug("dropped message from %s: %s", flow.remote, error.reason)

    def _receive_request(self, request: Request, flow: Flow) -> None:
        key = transaction_key(request)
        existing = self.server.get(key)
        if isinstance(existing, tuple):
            # RFC 3261 17.2.2: a retransmission in Completed gets the final response again.
            if self.wire is not None:
                self.wire.send_udp(*existing)
            return
        if existing is not None:
            ack = existing.receive_request(request)
            if ack is not None:
                self.user.request_received(ack, None)
            return
        if request.method == "ACK":
            # An ACK for a 2xx whose transaction is gone belongs to the dialog.
            self.user.request_received(request, None)
            return
        kind: type[ServerTransaction] = (
            ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        )
        transaction = kind(request, flow, self.clock, self.timers, self.send_response)
        if isinstance(transaction, ServerNonInviteTransaction):
            transaction.on_completed = self._server_completed
        self.server[key] = transaction
        transaction.key = key
        transaction.on_terminated = self._server_ended
        transaction.start()
        self.user.request_received(request, transaction)

    def _completed(self, transaction: ServerNonInviteTransaction) -> None:
        """A non-INVITE server transaction over UDP has sent its final response."""
        response = transaction.last_response
        if self.wire is not None and response is not None:
            self.server[transaction.key] = self.wire.response_datagram(response, transaction.flow)
        self._timer_j.add(transaction.key)

    def _timer_j_expired(self, key: tuple[str, ...]) -> None:
        entry = self.server.get(key)
        if isinstance(entry, ServerNonInviteTransaction):
            entry.timer_j()
        elif isinstance(entry, tuple):
            del self.server[key]

    def _receive_response(self, response: Response) -> None:
        via = response.top_via
        transaction = self.client.get(client_key(via.branch or "", response.cseq.method))
        if transaction is None:
            self.user.response_received(response, None)
            return
        transaction.receive_response(response)

    def close(self) -> None:
        """Terminate every transaction and cancel its timers (the stack is stopping)."""
        server = [entry for entry in self.server.values() if not isinstance(entry, tuple)]
        for transaction in [*server, *self.client.values()]:
            transaction._terminate()
        self.server.clear()
        self._timer_j.cancel()

    @staticmethod
    def _forget(table: dict[_K, _T], key: _K) -> None:
        table.pop(key, None)

    def _forget_server(self, transaction: Transaction) -> None:
        if isinstance(transaction, ServerTransaction):
            self._forget(self.server, transaction.key)

    def invite_for_cancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """RFC 3261 9.2: the INVITE server transaction a CANCEL refers to."""
        key = transaction_key(cancel)
        invite = self.server.get((*key[:-1], "INVITE"))
        return invite if isinstance(invite, ServerInviteTransaction) else None

    def send_request(
        self,
        request: Request,
        flow: Flow,
        on_response: Callable[[Response, ClientTransaction], None] | None = None,
        on_timeout: Callable[[ClientTransaction], None] | None = None,
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` over ``flow``.

        Its responses and timeout go to ``on_response`` and ``on_timeout``
        when given (a session that owns the request), else to the TU.
        """
        kind: type[ClientTransaction] = (
            ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        )
        transaction = kind(
            request,
            flow,
            self.clock,
            self.timers,
            on_response or self.user.response_received,
            on_timeout or self.user.transaction_timed_out,
        )
        matching = client_key(transaction.branch, request.method)
        self.client[matching] = transaction
        transaction.on_terminated = lambda _: self._forget(self.client, matching)
        transaction.start()
        return transaction
