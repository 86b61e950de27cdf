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
import contextvars
import enum
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from appliance.sip.message import Headers, Request, Response, SipParseError, Via
from appliance.sip.transport import Flow

log = logging.getLogger(__name__)

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
    """The running asyncio loop as a ``Clock``.

    Every timer runs in one shared context: the stack uses no context
    variables, and asyncio would otherwise copy the context for each timer,
    an object the garbage collector tracks until the timer is due, even
    when it was cancelled (a session's 64*T1 ACK wait, cancelled by the ACK).
    """

    def __init__(self) -> None:
        self._context = contextvars.Context()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds on the loop."""
        return asyncio.get_running_loop().call_later(delay, callback, context=self._context)


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

    lingering: Callable[[Transaction, float], None] | None = None
    """Set by the transaction layer, which then runs the wait after the final response
    (timers D, I, J, K, L, M) on a batched timer and calls ``linger_over`` at its end."""

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

    def _linger(self, name: str, delay: float) -> None:
        """Wait ``delay`` after the final response (timer ``name``), then terminate.

        A transaction in a layer hands the wait to the layer (one batched timer for
        many); a zero wait (a reliable transport's D, I, J, K) terminates on the loop.
        """
        if self.lingering is not None and delay > 0:
            self.lingering(self, delay)
        else:
            self._start_timer(name, delay, self.linger_over)

    def linger_over(self) -> None:
        """Timer D, I, J, K, L or M fired: the wait for retransmissions is over."""
        self._terminate()

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

    def _terminate(self) -> None:
        super()._terminate()
        self._release_user()

    def _release_user(self, keep_responses: bool = False) -> None:
        """The TU will hear no timeout (and, unless kept, no response) any more.

        Its callbacks usually hold the whole call; the transaction lingers for
        retransmissions up to 32 s after, and must not keep the call alive.
        """
        self.on_timeout = _ignore
        if not keep_responses:
            self.on_response = _ignore_response

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

    def receive_response(self, response: Response) -> None:
        """Move through Proceeding, Completed (ACK sent here) or Accepted."""
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            self._stop_timer("A")
            self._stop_timer("B")
            if status < 200:
                self.state = State.PROCEEDING
            elif status < 300:
                # RFC 6026 7.2: timer M, the wait for 2xx retransmissions (to the TU).
                self.state = State.ACCEPTED
                self._linger("M", self.timers.timeout)
            else:
                # Timer D: the wait for retransmissions of the final response.
                self.state = State.COMPLETED
                self.flow.send(self.ack_for(response).to_bytes())
                self._linger("D", self._after(32.0))
            self.on_response(response, self)
            if status >= 200:
                self._release_user(keep_responses=self.state is State.ACCEPTED)
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
            # Timer K: the wait for retransmissions of the final response.
            self._linger("K", self._after(self.timers.t4))
        self.on_response(response, self)
        if response.status >= 200:
            self._release_user()


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
                # RFC 6026 7.1: timer L, the wait for INVITE retransmissions.
                self.state = State.ACCEPTED
                self._linger("L", self.timers.timeout)
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
            # Timer I: the wait for ACK retransmissions.
            self._linger("I", self._after(self.timers.t4))
            return None
        if self.state is State.ACCEPTED:
            # RFC 6026: an ACK for the 2xx passes up to the TU.
            return request
        return None


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.2: the non-INVITE server transaction."""

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
            # Timer J: the wait for request retransmissions.
            self.state = State.COMPLETED
            self._linger("J", self._after(self.timers.timeout))

    def receive_request(self, request: Request) -> Request | None:
        """A retransmission gets the last response again (none in Trying)."""
        if self.state in (State.PROCEEDING, State.COMPLETED):
            self._retransmit()
        return None


def _ignore(_: Transaction) -> None:
    """The callback of a transaction nobody listens to."""


def _ignore_response(_: Response, __: ClientTransaction) -> None:
    """The response callback of a client transaction whose TU has heard all it needs."""


class FinishedInvite:
    """An INVITE server transaction past its final response, as the layer keeps it.

    After a 2xx (RFC 6026 Accepted, timer L, 64*T1) INVITE retransmissions are
    absorbed (the TU retransmits its 2xx itself) and an ACK matching the
    INVITE goes up to the TU; after the ACK for a non-2xx (Confirmed, timer I)
    everything is absorbed. Neither needs the INVITE, its response or the
    call: the transaction object stays with the TU that holds it (a weak
    reference here, for CANCEL matching while the call lives), and the
    collector walks two small objects per ended call instead of the call.
    """

    __slots__ = ("accepted", "transaction")

    def __init__(self, transaction: ServerInviteTransaction) -> None:
        self.transaction = weakref.ref(transaction)
        self.accepted = transaction.state is State.ACCEPTED

    def receive_request(self, request: Request) -> Request | None:
        """The ACK to pass up to the TU (Accepted only), else None: absorbed."""
        if self.accepted and request.method == "ACK":
            return request
        return None

    def linger_over(self) -> None:
        """Timer L or I fired: the transaction, if its TU still holds it, is Terminated."""
        transaction = self.transaction()
        if transaction is not None:
            transaction.linger_over()


ServerEntry = ServerTransaction | FinishedInvite | AnsweredRequest
"""How the transaction layer keeps a server transaction: whole, or compact once answered."""


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

    A transaction past its final response lingers to absorb retransmissions
    (timers D, I, J, K, L, M: up to 64*T1), and under load most live
    transactions are in that state; each full collection of the garbage
    collector walks every object they hold. So the layer runs those waits on
    batched timers (``TimerBatch``, one per 100 ms, never shorter than the
    RFC's), and keeps only what the wait needs:

    - with a ``wire`` (the transport), an answered non-INVITE server
      transaction over UDP as its response's bytes and destination
      (``AnsweredRequest``): retransmissions get the same bytes at the same
      address (at 2,000 REGISTERs a second, 64*T1 of them is over 100,000);
    - an INVITE server transaction in Accepted or Confirmed as a
      ``FinishedInvite`` (no request, response or call);
    - a client transaction past its final response without its TU's
      callbacks (which hold the call), except the 2xx callback in Accepted,
      which the TU replaces when its call ends.

    The TU no longer hears of a compacted server transaction; its object
    stays in Completed or Accepted while the TU holds it, until the wait ends.
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
        self.server: dict[tuple[str, ...], ServerEntry] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self._server_waits: dict[float, TimerBatch[tuple[str, ...]]] = {}
        self._client_waits: dict[float, TimerBatch[ClientTransaction]] = {}
        # One callback object each for every transaction (not a closure each:
        # each answered one stays alive up to 32 s and the collector walks it).
        self._server_ended: Callable[[Transaction], None] = self._forget_server
        self._client_ended: Callable[[Transaction], None] = self._forget_client
        self._lingering: Callable[[Transaction, float], None] = self._linger

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
        self.server[key] = transaction
        transaction.key = key
        transaction.on_terminated = self._server_ended
        transaction.lingering = self._lingering
        transaction.start()
        self.user.request_received(request, transaction)

    def _linger(self, transaction: Transaction, delay: float) -> None:
        """``transaction`` has its final response: keep what its wait needs, until ``delay``."""
        if isinstance(transaction, ClientTransaction):
            self._wait(self._client_waits, delay, self._client_wait_over).add(transaction)
            return
        assert isinstance(transaction, ServerTransaction)
        key = transaction.key
        if isinstance(transaction, ServerInviteTransaction):
            self.server[key] = FinishedInvite(transaction)
        elif self.wire is not None and transaction.last_response is not None:
            # Only over UDP: a reliable transport's timer J does not wait.
            response = transaction.last_response
            self.server[key] = self.wire.response_datagram(response, transaction.flow)
        self._wait(self._server_waits, delay, self._server_wait_over).add(key)

    def _wait(
        self, waits: dict[float, TimerBatch[_T]], delay: float, over: Callable[[_T], None]
    ) -> TimerBatch[_T]:
        batch = waits.get(delay)
        if batch is None:
            batch = waits[delay] = TimerBatch(self.clock, delay, over)
        return batch

    def _server_wait_over(self, key: tuple[str, ...]) -> None:
        entry = self.server.get(key)
        if isinstance(entry, ServerTransaction):
            entry.linger_over()
            return
        if entry is not None:
            del self.server[key]
        if isinstance(entry, FinishedInvite):
            entry.linger_over()

    @staticmethod
    def _client_wait_over(transaction: ClientTransaction) -> None:
        transaction.linger_over()

    def _receive_response(self, response: Response) -> None:
        via = response.top_via
        transaction = self.client.get(client_key(via.branch or "", response.cseq.method))
        if transaction is None:
            self.user.response_received(response, None)
            return
        transaction.receive_response(response)

    def close(self) -> None:
        """Terminate every transaction and cancel its timers (the stack is stopping)."""
        server = [entry for entry in self.server.values() if isinstance(entry, ServerTransaction)]
        for transaction in [*server, *self.client.values()]:
            transaction._terminate()
        self.server.clear()
        for waits in (self._server_waits, self._client_waits):
            for batch in waits.values():
                batch.cancel()

    def _forget_server(self, transaction: Transaction) -> None:
        if isinstance(transaction, ServerTransaction):
            self.server.pop(transaction.key, None)

    def _forget_client(self, transaction: Transaction) -> None:
        if isinstance(transaction, ClientTransaction):
            self.client.pop(client_key(transaction.branch, transaction.request.method), None)

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
        self.client[client_key(transaction.branch, request.method)] = transaction
        transaction.on_terminated = self._client_ended
        transaction.lingering = self._lingering
        transaction.start()
        return transaction
