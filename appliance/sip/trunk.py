"""SIP trunks: registration to providers, IP trust, OPTIONS monitoring, call data.

A trunk (``config.records.Trunk``) is a provider or an E1/FXO gateway. The
switch keeps one ``TrunkState`` per configured trunk inside ``Trunks``:

- **Outbound registration** (RFC 3261 10.2) for ``mode: register``: a
  REGISTER answering 401/407 with the trunk's credentials (``ClientCredentials``:
  MD5 or SHA-256, ``qop=auth``), refreshed at half the granted expiry, 423
  answered with the ``Min-Expires`` asked for, failures and timeouts retried
  with exponential back-off (RFC 5626 4.5's 30 s base, 1800 s cap), and
  ``Expires: 0`` when the trunk is removed or the switch stops.
- **IP trust**: requests from the trunk's ``allow`` networks or its host's
  address belong to the trunk (``Trunks.match``); the UA core refuses
  out-of-dialog requests from addresses that are neither a trunk nor a
  registered phone.
- **OPTIONS monitoring** every ``options_interval`` seconds: any response
  means up (a 404 or 405 still proves the far end is alive);
  ``options_down_after`` unanswered pings in a row mean down.
- **Inbound call data** (``InboundCall``): the trunk, the caller ID (RFC
  3325 P-Asserted-Identity, else Remote-Party-ID, else From; RFC 3323
  privacy honoured) and the dialled number (Request-URI or To), normalised.
- **Outbound INVITEs** (``Trunks.outbound_invite``) toward a trunk, and
  credentials for the trunk's challenges to them (``Trunks.authorize``).
  No route exists unless a trunk is configured.

Each change of registration or OPTIONS state is a ``TrunkEvent`` for
listeners and one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import random
import re
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from appliance import __version__
from appliance.config.records import DialledFrom, Transport, Trunk, TrunkMode
from appliance.events import Listeners
from appliance.sip.auth import ClientCredentials
from appliance.sip.identity import CallerId, caller_id, dialled_number
from appliance.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    Uri,
    parse_address,
)
from appliance.sip.sdp import DEFAULT_PREFERENCE, Codec, SessionDescription, create_offer
from appliance.sip.session import Credentials, Target
from appliance.sip.transaction import ClientTransaction
from appliance.sip.transport import Flow, SipTransport

log = logging.getLogger(__name__)

USER_AGENT = f"Callbox/{__version__}"

SendRequest = Callable[[Request, Flow], ClientTransaction]

_DIALLABLE = re.compile(r"\+?[0-9*]{1,32}")
"""What may go into a Request-URI's user part as a number (no escaping needed)."""
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrunkError(Exception):
    """A trunk cannot be used as asked; the message says why."""


class NoRoute(TrunkError):
    """No configured trunk can carry an outbound call."""


class TrunkUnreachable(TrunkError):
    """The trunk's host cannot be resolved or connected to."""


@dataclass(frozen=True)
class TrunkTimers:
    """Back-off and shutdown waits (seconds); tests shorten them."""

    retry_min: float = 30.0
    """First wait after a failed registration (RFC 5626 4.5 base time)."""
    retry_max: float = 1800.0
    """Longest wait between attempts."""
    stop_wait: float = 5.0
    """How long stopping waits for the answer to the de-registration."""

    def backoff(self, failures: int) -> float:
        """Wait after ``failures`` failures in a row: doubling, capped, 50-100 % jitter."""
        ceiling = min(self.retry_max, self.retry_min * 2.0 ** max(0, failures - 1))
        # Jitter spreads the retries of many trunks after a provider outage.
        return ceiling * random.uniform(0.5, 1.0)


class RegistrationState(StrEnum):
    """Where an outbound registration stands."""

    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    """The last attempt failed; the next waits for the back-off."""
    UNREGISTERED = "unregistered"
    """Removed with ``Expires: 0`` (trunk removed or switch stopping)."""


class Reachability(StrEnum):
    """What OPTIONS pings say about a trunk."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class TrunkEvent:
    """A trunk's registration or OPTIONS state changed."""

    trunk: str
    aspect: Literal["registration", "options"]
    state: str
    reason: str


@dataclass(frozen=True)
class InboundCall:
    """An INVITE recognised as coming from a trunk, with its call data."""

    trunk: str
    caller: CallerId
    dialled: str
    call_id: str


@dataclass(frozen=True)
class TrunkCall:
    """What an outgoing call through a trunk needs (``SessionManager.call``'s arguments):
    where the INVITE goes and on which flow, who calls whom, the headers and credentials
    the trunk wants, and the codecs to offer in its order."""

    trunk: Trunk
    target: Target
    """The dialled number at the trunk, the flow to it and our address toward it."""
    caller: Address
    headers: tuple[tuple[str, str], ...]
    credentials: Credentials | None
    """The trunk's account for its 401/407, if it has a password."""
    codecs: tuple[Codec, ...]


@dataclass(frozen=True)
class OutboundInvite:
    """An INVITE toward a trunk, ready for a client transaction over ``flow``."""

    trunk: Trunk
    request: Request
    flow: Flow
    offer: SessionDescription


# Request building


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie first)."""
    return f"z9hG4bK{secrets.token_hex(8)}"


def next_request(request: Request, cseq: int) -> Request:
    """``request`` again as a new transaction: fresh branch, CSeq ``cseq`` (RFC 3261 8.1.3.5)."""
    copy = Request(Headers(list(request.headers)), request.body, request.method, request.uri)
    via = request.top_via.with_params(branch=new_branch())
    copy.headers.replace_first_value("Via", str(via))
    copy.headers.set("CSeq", f"{cseq} {request.method}")
    return copy


@functools.lru_cache(maxsize=1024)
def _source_address(source: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``source`` as an address, None when it is none (each request's source is read)."""
    try:
        return ipaddress.ip_address(source)
    except ValueError:
        return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Reaching trunks


def _source_toward(destination: tuple[str, int]) -> str:
    """The local address the kernel routes ``destination`` from (no packet is sent)."""
    family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(destination)
        return str(probe.getsockname()[0])


class TrunkLink:
    """Opens flows to trunks over the stack's transport and names our address on them."""

    def __init__(self, transport: SipTransport, tls: ssl.SSLContext | None = None) -> None:
        self.transport = transport
        self.tls = tls

    async def resolve(self, trunk: Trunk) -> tuple[str, int]:
        """The trunk's host as an IP address and port (a name is looked up off the loop)."""
        try:
            ipaddress.ip_address(trunk.host.strip("[]"))
            return trunk.host.strip("[]"), trunk.port
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            # IPv4 only, as the transport is (docs/decisions.md).
            infos = await loop.getaddrinfo(
                trunk.host, trunk.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except OSError as error:
            raise TrunkUnreachable(f"cannot resolve {trunk.host}: {error}") from None
        return str(infos[0][4][0]), trunk.port

    async def flow(self, trunk: Trunk) -> Flow:
        """A flow to the trunk over its transport (TCP and TLS connections are reused)."""
        destination = await self.resolve(trunk)
        try:
            if trunk.transport is Transport.UDP:
                return self.transport.udp_flow(destination)
            if trunk.transport is Transport.TCP:
                return await self.transport.connect_tcp(destination)
            context = self.tls or ssl.create_default_context()
            return await self.transport.connect_tls(destination, context, trunk.host)
        except OSError as error:
            where = _host_port(*destination)
            raise TrunkUnreachable(
                f"cannot connect to {where} over {trunk.transport.value}: {error.strerror or error}"
            ) from None

    def sent_by(self, flow: Flow) -> tuple[str, int]:
        """Our address and listening port for Via and Contact on ``flow``."""
        host = flow.local[0]
        if host in ("0.0.0.0", "::"):
            host = _source_toward(flow.remote)
        if flow.transport == "UDP":
            return host, self.transport.udp_address[1]
        if flow.transport == "TCP":
            return host, self.transport.tcp_address[1]
        tls = self.transport.tls_address
        return host, tls[1] if tls else flow.local[1]


# One trunk


@dataclass
class TrunkState:
    """A configured trunk's live state: registration, OPTIONS, counters."""

    trunk: Trunk
    networks: list[Network]
    registration: RegistrationState | None = None
    registration_reason: str = ""
    expires_at: float | None = None
    failures: int = 0
    successes: int = 0
    retry_at: float | None = None
    reachability: Reachability | None = None
    reachability_reason: str = ""
    misses: int = 0
    last_change: float | None = None
    last_change_reason: str = ""
    calls_in: int = 0
    calls_out: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    credentials: ClientCredentials = field(init=False)
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(12)}@callbox")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    cseq: int = 0
    public_address: tuple[str, int] | None = None
    """Where a provider saw our REGISTERs come from, when that is not our address (NAT)."""
    contact: str = ""
    """The Contact last registered."""
    flow: Flow | None = None
    """The flow the last registration went over."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to renew the registration at once (its connection closed)."""
    expires_wanted: int = field(init=False)
    """The expiry REGISTERs ask for: ``register_expires``, or a provider's Min-Expires."""

    def __post_init__(self) -> None:
        self.credentials = ClientCredentials(self.trunk.username, self.trunk.password)
        self.expires_wanted = self.trunk.register_expires
        if self.trunk.mode is TrunkMode.REGISTER:
            self.registration = RegistrationState.IDLE
        if self.trunk.options_interval:
            self.reachability = Reachability.UNKNOWN

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """True when ``address`` is one the trunk calls from."""
        return any(address in network for network in self.networks)

    def trust(self, address: str) -> None:
        """Trust ``address`` (where the trunk's host name resolved to) too."""
        ip = ipaddress.ip_address(address)
        if not self.trusts(ip):
            self.networks.append(ipaddress.ip_network(ip))

    def next_cseq(self) -> int:
        """The next CSeq of the registration's Call-ID."""
        self.cseq += 1
        return self.cseq

    @property
    def usable(self) -> bool:
        """True when outbound calls may go this way: registered (if it registers), not down."""
        if self.registration is not None and self.registration is not RegistrationState.REGISTERED:
            return False
        return self.reachability is not Reachability.DOWN


class RegistrationFailed(TrunkError):
    """One registration attempt failed; ``retry_after`` is a wait the provider asked for."""

    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _networks(trunk: Trunk) -> list[Network]:
    networks = [ipaddress.ip_network(a, strict=False) for a in trunk.allow]
    with contextlib.suppress(ValueError):
        networks.append(ipaddress.ip_network(trunk.host.strip("[]")))
    return networks


class Trunks:
    """Every configured trunk's registration, monitoring, trust and call data.

    ``configure`` applies the configured trunks (start what is new, stop what
    went or changed); ``attach`` gives the network (the stack does it at
    start). ``now`` is the wall clock for status.
    """

    def __init__(
        self, timers: TrunkTimers | None = None, now: Callable[[], float] = time.time
    ) -> None:
        self.timers = timers or TrunkTimers()
        self.now = now
        self.states: dict[str, TrunkState] = {}
        self.link: TrunkLink | None = None
        self._send: SendRequest | None = None
        self._pending: dict[ClientTransaction, asyncio.Future[Response | None]] = {}
        self._listeners: Listeners[TrunkEvent] = Listeners()
        self._stopping: set[asyncio.Task[None]] = set()

    # Wiring

    def attach(self, link: TrunkLink, send: SendRequest) -> None:
        """Use ``link`` to reach trunks and ``send`` for client transactions; start the trunks."""
        self.link = link
        self._send = send
        for state in self.states.values():
            self._start(state)

    def configure(self, trunks: list[Trunk]) -> None:
        """Make the live trunks what the configuration says (idempotent)."""
        wanted = {t.name: t for t in trunks}
        for name, old in list(self.states.items()):
            if wanted.get(name) != old.trunk:
                del self.states[name]
                if old.tasks:
                    self._retire(old)
        states = {}
        for trunk in trunks:
            state = self.states.get(trunk.name) or TrunkState(trunk, _networks(trunk))
            if self.link is not None:
                self._start(state)
            states[trunk.name] = state
        self.states = states

    def _start(self, state: TrunkState) -> None:
        if state.tasks:
            return
        if state.trunk.mode is TrunkMode.REGISTER:
            state.tasks.append(self._task(self._keep_registered(state), state, "registration"))
        if state.trunk.options_interval:
            state.tasks.append(self._task(self._monitor(state), state, "OPTIONS"))

    def _task(
        self, work: Coroutine[Any, Any, None], state: TrunkState, what: str
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=f"trunk {state.trunk.name} {what}")
        task.add_done_callback(_log_crash)
        return task

    def _retire(self, state: TrunkState) -> None:
        """Stop a removed or changed trunk in the background (it de-registers)."""
        task = asyncio.get_running_loop().create_task(self._stop(state))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        """Stop every trunk; registered ones send ``Expires: 0`` (bounded wait)."""
        states, self.states = list(self.states.values()), {}
        await asyncio.gather(*(self._stop(s) for s in states), *self._stopping)

    async def _stop(self, state: TrunkState) -> None:
        for task in state.tasks:
            task.cancel()
        # A task that failed has been logged (``_log_crash``); stopping goes on regardless.
        await asyncio.gather(*state.tasks, return_exceptions=True)
        state.tasks.clear()
        if state.registration in (RegistrationState.REGISTERED, RegistrationState.FAILED) and (
            state.expires_at is not None
        ):
            try:
                await asyncio.wait_for(self._register_once(state, 0), self.timers.stop_wait)
                reason = "removed (Expires: 0)"
            except (RegistrationFailed, TrunkUnreachable, TimeoutError) as error:
                reason = f"removal not confirmed: {error or 'no answer'}"
            state.expires_at = None
            self._set_registration(state, RegistrationState.UNREGISTERED, reason)

    # Events

    def add_listener(self, listener: Callable[[TrunkEvent], None]) -> Callable[[], None]:
        """Call ``listener`` on every event; returns the function that stops it."""
        return self._listeners.add(listener)

    def events(self) -> AsyncIterator[TrunkEvent]:
        """Every event from now on, as an async iterator."""
        return self._listeners.stream()

    def _changed(self, state: TrunkState, event: TrunkEvent) -> None:
        state.last_change = self.now()
        state.last_change_reason = f"{event.aspect} {event.state}: {event.reason}"
        level = logging.WARNING if event.state in ("failed", "down") else logging.INFO
        log.log(level, "trunk %s %s %s: %s", event.trunk, event.aspect, event.state, event.reason)
        self._listeners.emit(event)

    def _set_registration(self, state: TrunkState, new: RegistrationState, reason: str) -> None:
        old, state.registration, state.registration_reason = state.registration, new, reason
        if old is not new:
            self._changed(state, TrunkEvent(state.trunk.name, "registration", new.value, reason))

    def _set_reachability(self, state: TrunkState, new: Reachability, reason: str) -> None:
        old, state.reachability, state.reachability_reason = state.reachability, new, reason
        if old is not new:
            self._changed(state, TrunkEvent(state.trunk.name, "options", new.value, reason))

    # Client transactions

    def response_received(self, response: Response, transaction: ClientTransaction) -> bool:
        """A response to one of our requests (final ones end the wait); False if not ours."""
        future = self._pending.get(transaction)
        if future is None:
            return False
        if response.status >= 200 and not future.done():
            future.set_result(response)
        return True

    def transaction_timed_out(self, transaction: ClientTransaction) -> bool:
        """Timer B or F for one of our requests; False if not ours."""
        future = self._pending.get(transaction)
        if future is None:
            return False
        if not future.done():
            future.set_result(None)
        return True

    async def ask(self, request: Request, flow: Flow) -> Response | None:
        """Send ``request`` in a client transaction: its final response, None on timeout.

        For an INVITE the caller ACKs a 2xx (RFC 3261 13.2.2.4: the dialog's job);
        the transaction ACKs anything else.
        """
        assert self._send is not None
        future: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        transaction = self._send(request, flow)
        self._pending[transaction] = future
        try:
            return await future
        finally:
            del self._pending[transaction]

    async def _flow(self, state: TrunkState) -> Flow:
        """A flow to the trunk; the address its host resolved to is trusted from then on."""
        assert self.link is not None
        flow = await self.link.flow(state.trunk)
        state.trust(flow.remote[0])
        return flow

    def flow_closed(self, flow: Flow) -> None:
        """A connection closed: a trunk registered over it registers again at once.

        The provider can reach us only over the connection (RFC 5626 4.4), so
        waiting for the refresh would leave the trunk without calls until then.
        """
        for state in self.states.values():
            if state.flow is flow and state.registration is RegistrationState.REGISTERED:
                log.info("trunk %s: its connection closed; registering again", state.trunk.name)
                state.wake.set()

    # Registration

    async def _keep_registered(self, state: TrunkState) -> None:
        while True:
            if state.registration is RegistrationState.IDLE:
                # Later attempts keep the state they left (registered or failed) until answered.
                self._set_registration(state, RegistrationState.REGISTERING, "sending REGISTER")
            try:
                granted = await self._register_once(state, state.expires_wanted)
            except (RegistrationFailed, TrunkUnreachable) as error:
                state.failures += 1
                asked = error.retry_after if isinstance(error, RegistrationFailed) else 0.0
                wait = max(self.timers.backoff(state.failures), asked)
                state.retry_at = self.now() + wait
                self._set_registration(state, RegistrationState.FAILED, str(error))
            else:
                state.failures = 0
                state.successes += 1
                state.retry_at = None
                state.expires_at = self.now() + granted
                self._set_registration(state, RegistrationState.REGISTERED, f"granted {granted} s")
                # Refresh at half the expiry (RFC 3261 10.2.4 leaves it to us; most UAs do this).
                wait = max(1.0, granted / 2)
            state.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), wait)

    async def _register_once(self, state: TrunkState, expires: int) -> int:
        """One REGISTER exchange, challenges and 423 included; returns the granted expiry."""
        trunk = state.trunk
        flow = await self._flow(state)
        contact = self._registration_contact(state, flow)
        request = self._register_request(state, flow, contact, expires)
        if state.credentials.challenged:
            state.credentials.apply(request)
        for _ in range(5):
            response = await self.ask(request, flow)
            if response is None:
                raise RegistrationFailed(f"no answer from {_host_port(*flow.remote)}")
            status = response.status
            if 200 <= status < 300:
                public = _seen_at(response, flow)
                if expires and public is not None and public != (contact.host, contact.port):
                    # Behind NAT (RFC 3581): calls must come to where the provider saw us.
                    log.info("trunk %s sees us at %s: registering that", trunk.name, public)
                    state.public_address = public
                    old, contact = contact, self._registration_contact(state, flow)
                    request = state.credentials.apply(next_request(request, state.next_cseq()))
                    request.headers.set("Contact", f"<{old}>;expires=0, <{contact}>")
                    continue
                state.contact, state.flow = str(contact), flow
                # RFC 3261 10.3 step 7: a registrar may shorten the expiry, never lengthen it.
                granted = min(_granted(response, contact, expires), expires)
                if expires and granted <= 0:
                    raise RegistrationFailed(f"{status} {response.reason} but no binding kept")
                return granted
            if status in (401, 407):
                if not state.credentials.take(request, response):
                    raise RegistrationFailed(f"{status} {response.reason}: credentials refused")
                request = state.credentials.apply(next_request(request, state.next_cseq()))
                continue
            if status == 423 and expires:
                minimum = _int_header(response, "Min-Expires")
                if minimum is None or minimum <= expires:
                    raise RegistrationFailed(f"423 {response.reason} without a usable Min-Expires")
                log.info("trunk %s asks for at least %d s (423)", trunk.name, minimum)
                expires = state.expires_wanted = minimum  # refreshes ask for it too
                request = next_request(request, state.next_cseq())
                request.headers.set("Expires", str(expires))
                continue
            retry_after = _int_header(response, "Retry-After") or 0
            raise RegistrationFailed(f"{status} {response.reason}", float(retry_after))
        raise RegistrationFailed("too many challenges")

    def _registration_contact(self, state: TrunkState, flow: Flow) -> Uri:
        assert self.link is not None
        host, port = self.link.sent_by(flow)
        if flow.transport == "UDP" and state.public_address is not None:
            host, port = state.public_address
        return Uri("sip", host, state.trunk.username, port=port, params=_uri_params(state.trunk))

    def _register_request(
        self, state: TrunkState, flow: Flow, contact: Uri, expires: int
    ) -> Request:
        trunk = state.trunk
        aor = f"<sip:{trunk.username}@{trunk.sip_domain}>"
        uri = trunk_uri(trunk)
        request = self._request(
            "REGISTER",
            uri,
            flow,
            from_=f"{aor};tag={state.from_tag}",
            to=aor,
            call_id=state.call_id,
            cseq=state.next_cseq(),
        )
        request.headers.add("Contact", f"<{contact}>")
        request.headers.add("Expires", str(expires))
        request.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
        return request

    def _request(
        self, method: str, uri: Uri, flow: Flow, *, from_: str, to: str, call_id: str, cseq: int
    ) -> Request:
        assert self.link is not None
        sent_by = _host_port(*self.link.sent_by(flow))
        headers = Headers(
            [
                ("Via", f"SIP/2.0/{flow.transport} {sent_by};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", from_),
                ("To", to),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} {method}"),
                ("User-Agent", USER_AGENT),
            ]
        )
        return Request(headers, b"", method, uri)

    # OPTIONS monitoring

    async def _monitor(self, state: TrunkState) -> None:
        trunk = state.trunk
        while True:
            try:
                response = await self._ping(state)
                reason = f"no answer to OPTIONS ({state.misses + 1} in a row)"
            except TrunkUnreachable as error:
                response, reason = None, str(error)
            if response is not None:
                state.misses = 0
                self._set_reachability(
                    state, Reachability.UP, f"answered {response.status} {response.reason}"
                )
            else:
                state.misses += 1
                if state.misses >= trunk.options_down_after:
                    self._set_reachability(state, Reachability.DOWN, reason)
            await asyncio.sleep(trunk.options_interval)

    async def _ping(self, state: TrunkState) -> Response | None:
        assert self.link is not None
        trunk = state.trunk
        flow = await self._flow(state)
        uri = trunk_uri(trunk)
        host, port = self.link.sent_by(flow)
        request = self._request(
            "OPTIONS",
            uri,
            flow,
            from_=f"<sip:callbox@{_host_port(host, port)}>;tag={secrets.token_hex(6)}",
            to=f"<{uri}>",
            call_id=f"{secrets.token_hex(12)}@callbox",
            cseq=1,
        )
        request.headers.add("Accept", "application/sdp")
        return await self.ask(request, flow)

    # Inbound

    def match(self, source: str, request: Request) -> Trunk | None:
        """The trunk a request from ``source`` (an IP address) belongs to, or None.

        When several trunks trust the address (two accounts at one provider),
        the one whose username is the Request-URI's user (its Contact) wins.
        """
        if not self.states:
            return None
        address = _source_address(source)
        if address is None:
            return None
        candidates = [s.trunk for s in self.states.values() if s.trusts(address)]
        if not candidates:
            return None
        user = request.uri.user
        return next((t for t in candidates if t.username and t.username == user), candidates[0])

    def inbound_call(self, request: Request, source: str) -> InboundCall | None:
        """The call data of an INVITE from ``source`` if a trunk sent it (counted), else None."""
        trunk = self.match(source, request)
        if trunk is None:
            return None
        call = InboundCall(
            trunk.name,
            caller_id(request, trunk.region),
            dialled_number(_dialled_uri(request, trunk), trunk.region),
            request.call_id,
        )
        self.states[trunk.name].calls_in += 1
        log.info(
            "inbound call on trunk %s from %s to %s (caller ID from %s%s)",
            trunk.name,
            call.caller.presentation,
            call.dialled,
            call.caller.source,
            ", restricted" if call.caller.restricted else "",
        )
        return call

    # Outbound

    def route(self, trunk: str | None = None) -> Trunk:
        """The trunk for an outbound call: ``trunk`` by name, else the first usable one.

        Raises ``NoRoute`` when none is configured, the name is unknown, or
        (without a name) every trunk is unregistered or down.
        """
        if not self.states:
            raise NoRoute("no trunk is configured: outbound calls have no route")
        if trunk is not None:
            state = self.states.get(trunk)
            if state is None:
                raise NoRoute(f"no trunk named {trunk!r} (configured: {', '.join(self.states)})")
            return state.trunk
        for state in self.states.values():
            if state.usable:
                return state.trunk
        raise NoRoute("every trunk is unregistered or down")

    async def outbound_call(
        self, dialled: str, trunk: str, *, caller: str | None = None
    ) -> TrunkCall:
        """An outgoing call for ``dialled`` through trunk ``trunk`` (counted as its call out).

        The Request-URI is the dialled number at the trunk's domain; From
        and P-Asserted-Identity carry ``caller``, else the trunk's
        ``caller_id``, else its username. Raises ``NoRoute`` for an unknown
        trunk, ``TrunkError`` for a number that is not digits,
        ``TrunkUnreachable`` when the trunk cannot be reached.
        """
        for what, value in (("dialled number", dialled), ("caller", caller)):
            if value is not None and not _DIALLABLE.fullmatch(value):
                raise TrunkError(f"the {what} must be digits with an optional '+', got {value!r}")
        chosen = self.route(trunk)
        state = self.states[chosen.name]
        assert self.link is not None
        flow = await self._flow(state)
        number = caller or chosen.caller_id or chosen.username or "callbox"
        identity = Address(Uri("sip", chosen.sip_domain, number))
        headers = (("P-Asserted-Identity", str(identity)),) if caller or chosen.caller_id else ()
        state.calls_out += 1
        local_host = self.link.sent_by(flow)[0]
        return TrunkCall(
            chosen,
            Target(trunk_uri(chosen, dialled), flow, (), local_host),
            identity,
            headers,
            Credentials(chosen.username, chosen.password) if chosen.password else None,
            trunk_codecs(chosen),
        )

    async def outbound_invite(
        self,
        dialled: str,
        media: tuple[str, int],
        *,
        trunk: str | None = None,
        caller: str | None = None,
    ) -> OutboundInvite:
        """An INVITE for ``dialled`` through a trunk (``trunk``, else the first usable one),
        offering its codecs at ``media`` (``outbound_call`` names the parties). Send it
        with a client transaction over the returned flow; answer a 401/407 with
        ``authorize``.
        """
        call = await self.outbound_call(dialled, self.route(trunk).name, caller=caller)
        chosen, uri = call.trunk, call.target.uri
        assert call.target.flow is not None
        flow = call.target.flow
        request = self._request(
            "INVITE",
            uri,
            flow,
            from_=f"{call.caller};tag={secrets.token_hex(6)}",
            to=f"<{uri}>",
            call_id=f"{secrets.token_hex(12)}@callbox",
            cseq=1,
        )
        for name, value in call.headers:
            request.headers.add(name, value)
        assert self.link is not None
        host, our_port = self.link.sent_by(flow)
        contact = Uri("sip", host, call.caller.uri.user, port=our_port, params=_uri_params(chosen))
        request.headers.add("Contact", f"<{contact}>")
        request.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
        offer = create_offer(media[0], media[1], call.codecs)
        request.headers.add("Content-Type", "application/sdp")
        request.body = offer.to_bytes()
        return OutboundInvite(chosen, request, flow, offer)

    def authorize(self, trunk: str, request: Request, response: Response) -> Request | None:
        """``request`` again with the trunk's credentials for a 401/407 ``response``, or None."""
        state = self.states.get(trunk)
        if state is None or response.status not in (401, 407):
            return None
        if not state.credentials.take(request, response):
            return None
        return state.credentials.apply(next_request(request, request.cseq.number + 1))

    # Status

    def status(self) -> list[dict[str, Any]]:
        """Each trunk's mode, registration, OPTIONS state, last change (``callbox status``)."""
        now = self.now()
        result = []
        for state in self.states.values():
            trunk = state.trunk
            registration = None
            if state.registration is not None:
                registration = {
                    "state": state.registration.value,
                    "reason": state.registration_reason,
                    "expires_in": None
                    if state.expires_at is None
                    else max(0, round(state.expires_at - now)),
                    "failures": state.failures,
                    "successes": state.successes,
                    "contact": state.contact,
                    "retry_in": None
                    if state.retry_at is None
                    else max(0, round(state.retry_at - now)),
                }
            options = None
            if state.reachability is not None:
                options = {
                    "state": state.reachability.value,
                    "reason": state.reachability_reason,
                    "misses": state.misses,
                    "interval_s": trunk.options_interval,
                }
            result.append(
                {
                    "name": trunk.name,
                    "mode": trunk.mode.value,
                    "peer": f"{trunk.transport.value} {_host_port(trunk.host, trunk.port)}",
                    "registration": registration,
                    "options": options,
                    "last_change": state.last_change,
                    "last_change_reason": state.last_change_reason,
                    "calls_in": state.calls_in,
                    "calls_out": state.calls_out,
                }
            )
        return result


def trunk_codecs(trunk: Trunk) -> tuple[Codec, ...]:
    """The SDP codecs for the trunk's configured list, in its order."""
    by_name = {c.name.lower(): c for c in DEFAULT_PREFERENCE}
    return tuple(by_name[c.value.lower()] for c in trunk.codecs)


def trunk_uri(trunk: Trunk, user: str | None = None) -> Uri:
    """A URI at the trunk: its domain, else its host and port (a non-default one)."""
    port = None if trunk.domain else _port(trunk)
    return Uri("sip", trunk.sip_domain, user, port=port, params=_uri_params(trunk))


def _port(trunk: Trunk) -> int | None:
    default = 5061 if trunk.transport is Transport.TLS else 5060
    return None if trunk.port == default else trunk.port


def _uri_params(trunk: Trunk) -> tuple[tuple[str, str | None], ...]:
    return () if trunk.transport is Transport.UDP else (("transport", trunk.transport.value),)


def _int_header(response: Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    text = value.split(";")[0].split("(")[0].strip(" \t")
    return int(text) if text.isdigit() else None


def _granted(response: Response, contact: Uri, requested: int) -> int:
    """The expiry the registrar granted our contact (RFC 3261 10.2.4)."""
    for value in response.headers.values("Contact"):
        try:
            address = parse_address(value, "Contact")
        except SipParseError:
            continue
        uri = address.uri
        if (uri.user, uri.host, uri.port) == (contact.user, contact.host, contact.port):
            expires = address.param("expires")
            if expires is not None and expires.strip().isdigit():
                return int(expires)
    header = _int_header(response, "Expires")
    return header if header is not None else requested


def _dialled_uri(request: Request, trunk: Trunk) -> Uri:
    """Where the trunk names the dialled number: the Request-URI or the To."""
    return request.uri if trunk.dialled_from is DialledFrom.REQUEST_URI else request.to.uri


def _seen_at(response: Response, flow: Flow) -> tuple[str, int] | None:
    """Where the registrar saw our UDP request come from (RFC 3581 received, rport)."""
    if flow.transport != "UDP":
        return None  # a connection is reused for calls; the Contact's address does not matter
    via = response.top_via
    rport = via.rport
    if via.received is None or not isinstance(rport, int) or rport is True:
        return None
    return via.received, rport


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())
