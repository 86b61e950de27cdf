"""The registrar (RFC 3261 10.3): where each extension's phones can be reached.

A phone sends REGISTER with its extension number in To and its Contact
addresses; the registrar challenges it with digest (``auth.py``: SHA-256
and MD5, ``qop=auth``, stale nonces), then keeps one ``Binding`` per
contact until it expires, is removed (``Expires: 0``, ``Contact: *``) or
stops answering keep-alives. Bindings are soft state in memory: after a
restart the switch waits for phones to register again (every phone
re-registers within its interval).

For phones behind NAT the binding also keeps the flow the REGISTER came
on (source address and port, or the TCP/TLS connection), because the
address in Contact is often a private one that cannot be reached; a binding
made over a connection goes when the connection closes. Those
bindings get an OPTIONS every ``keepalive_interval`` seconds, which keeps
the NAT mapping open and notices a phone that is gone.

Listeners (``add_listener``, or ``async for event in registrar.events()``)
hear each ``RegistrationEvent``: registered, expired, unregistered,
unreachable.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.config.records import Extension
from appliance.events import Listeners
from appliance.sip.auth import DigestChallenger, Verdict
from appliance.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    Uri,
    parse_address,
)
from appliance.sip.transaction import ClientTransaction, Clock, LoopClock, TimerHandle
from appliance.sip.transport import Flow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrarLimits:
    """How long bindings may live and how often NATed phones are probed."""

    min_expires: int = 60
    """Shorter requests get 423 Interval Too Brief (RFC 3261 10.3 step 7)."""
    max_expires: int = 3600
    """Longer requests are granted this much."""
    default_expires: int = 3600
    """Granted when the phone names no expiry."""
    keepalive_interval: float = 30.0
    """Seconds between OPTIONS to a contact behind NAT (UDP NAT mappings last 30-60 s)."""


class RegistrationChange(enum.StrEnum):
    """What happened to a binding."""

    REGISTERED = "registered"
    EXPIRED = "expired"
    UNREGISTERED = "unregistered"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class RegistrationEvent:
    """A phone came or went: the extension, its contact and where it registered from."""

    change: RegistrationChange
    extension: str
    contact: str
    source: str


@dataclass(eq=False)
class Binding:
    """One registered contact of an extension (RFC 3261 10.3)."""

    extension: str
    contact: Address
    call_id: str
    cseq: int
    expires_at: float
    flow: Flow
    path: tuple[str, ...] = ()
    user_agent: str = ""
    registrar_host: str = ""
    """The host the phone registered to (its Request-URI): where it expects us to be."""
    timer: TimerHandle | None = field(default=None, repr=False)

    @property
    def behind_nat(self) -> bool:
        """True when the contact is not where the REGISTER came from (RFC 3581)."""
        uri = self.contact.uri
        host, port = self.flow.remote
        default = 5061 if self.flow.transport == "TLS" else 5060
        return uri.host.strip("[]") != host or (uri.port or default) != port

    @property
    def source(self) -> str:
        """Transport, address and port the phone registered from."""
        host, port = self.flow.remote
        return f"{self.flow.transport.lower()} {host}:{port}"

    def expires_in(self, now: float) -> int:
        """Whole seconds left, never negative."""
        return max(0, round(self.expires_at - now))


class Registrar:
    """Serves REGISTER for the configured extensions and keeps their bindings.

    ``lookup(number)`` returns the extension, or None if there is none.
    ``send_request(request, flow)`` starts a client transaction (for the
    keep-alive OPTIONS); without it, no keep-alives are sent. ``now``
    and ``clock`` are the time and timers (tests drive both).
    """

    def __init__(
        self,
        realm: str,
        lookup: Callable[[str], Extension | None],
        *,
        limits: RegistrarLimits | None = None,
        clock: Clock | None = None,
        now: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        send_request: Callable[[Request, Flow], ClientTransaction] | None = None,
        algorithms: tuple[str, ...] = ("MD5",),
    ) -> None:
        self.realm = realm
        self.lookup = lookup
        self.limits = limits or RegistrarLimits()
        self.clock: Clock = clock or LoopClock()
        self.now = now
        self.send_request = send_request
        self.challenger = DigestChallenger(
            realm, self._password, clock=wall_clock, algorithms=algorithms
        )
        self.bindings: dict[str, list[Binding]] = {}
        self._sources: Counter[str] = Counter()
        """Live bindings per source IP address, kept with ``bindings`` (``registered_from``)."""
        self.auth_failed: Callable[[str, str], None] = lambda source, reason: None
        """Told the source IP and reason of each failed authentication (for bans)."""
        self._listeners: Listeners[RegistrationEvent] = Listeners()
        self._keepalives: dict[ClientTransaction, Binding] = {}
        self._keepalive_timer: TimerHandle | None = None

    def _password(self, username: str) -> str | None:
        extension = self.lookup(username)
        return extension.password if extension is not None else None

    # Events

    def add_listener(self, listener: Callable[[RegistrationEvent], None]) -> Callable[[], None]:
        """Call ``listener`` on every event; returns the function that stops it."""
        return self._listeners.add(listener)

    def events(self) -> AsyncIterator[RegistrationEvent]:
        """Every event from now on, as an async iterator."""
        return self._listeners.stream()

    def _emit(self, change: RegistrationChange, binding: Binding) -> None:
        event = RegistrationEvent(
            change, binding.extension, str(binding.contact.uri), binding.source
        )
        log.info(
            "extension %s %s: %s from %s", event.extension, change, event.contact, binding.source
        )
        self._listeners.emit(event)

    # REGISTER

    def register(self, request: Request, flow: Flow) -> Response:
        """The response to a REGISTER that came over ``flow`` (RFC 3261 10.3)."""
        try:
            number = request.to.uri.user or ""
            contacts = request.headers.values("Contact")
            expires_header = request.headers.get("Expires")
        except SipParseError as error:
            return self._reply(request, 400, error.reason)
        # One read of the extension serves the digest check and the rules below.
        extension = self.lookup(number)
        denied = self._authenticate(request, flow, number, extension)
        if denied is not None:
            return denied
        assert extension is not None  # authentication found its password
        if contacts == ["*"]:
            if expires_header is None or expires_header.strip() != "0":
                return self._reply(request, 400, "Contact * needs Expires: 0")
            for binding in list(self.bindings.get(number, [])):
                self._remove(binding, RegistrationChange.UNREGISTERED)
            return self._ok(request, number)
        try:
            wanted = [self._wanted(parse_address(c, "Contact"), expires_header) for c in contacts]
        except (SipParseError, ValueError):
            return self._reply(request, 400, "Bad Contact or Expires")
        brief = [e for _, e in wanted if 0 < e < self.limits.min_expires]
        if brief:
            response = self._reply(request, 423, "Interval Too Brief")
            response.headers.add("Min-Expires", str(self.limits.min_expires))
            return response
        if sum(1 for _, e in wanted if e) > extension.max_contacts:
            return self._reply(request, 403, "Too many contacts for this extension")
        cseq = request.cseq.number
        current = self.bindings.get(number, [])
        for contact, _ in wanted:
            old = _find(current, contact.uri)
            if old is not None and old.call_id == request.call_id and cseq <= old.cseq:
                # RFC 3261 10.3 step 7: an older REGISTER arriving late.
                return self._reply(request, 500, "Out of order REGISTER")
        for contact, expires in wanted:
            self._update(number, contact, expires, request, flow)
        self._trim(number, extension.max_contacts)
        return self._ok(request, number)

    def _authenticate(
        self, request: Request, flow: Flow, number: str, extension: Extension | None
    ) -> Response | None:
        """None when the request carries valid credentials for its To user."""

        def password(username: str) -> str | None:
            if username == number:
                return extension.password if extension is not None else None
            return self._password(username)

        verification = self.challenger.verify(request, lookup=password)
        if verification.verdict in (Verdict.MISSING, Verdict.STALE):
            response = self._reply(request, 401, "Unauthorized")
            stale = verification.verdict is Verdict.STALE
            for challenge in self.challenger.challenges(stale=stale):
                response.headers.add("WWW-Authenticate", challenge)
            return response
        source = flow.remote[0]
        if verification.verdict is Verdict.INVALID:
            self.auth_failed(source, verification.reason)
            return self._reply(request, 403, "Forbidden")
        if verification.username != number:
            self.auth_failed(source, "username does not match To")
            return self._reply(request, 403, "Username does not match the To user")
        if extension is None or not extension.allows(source):
            self.auth_failed(source, "outside the extension's networks")
            return self._reply(request, 403, "Not allowed from this network")
        return None

    def _wanted(self, contact: Address, expires_header: str | None) -> tuple[Address, int]:
        """A contact and the expiry it asks for, capped at ``max_expires``."""
        text = contact.param("expires")
        if text is None:
            text = expires_header
        requested = self.limits.default_expires if text is None else int(text.strip())
        if requested < 0:
            raise ValueError("negative expiry")
        return contact, min(requested, self.limits.max_expires)

    def _update(
        self, number: str, contact: Address, expires: int, request: Request, flow: Flow
    ) -> None:
        current = self.bindings.setdefault(number, [])
        old = _find(current, contact.uri)
        if expires == 0:
            if old is not None:
                self._remove(old, RegistrationChange.UNREGISTERED)
            return
        binding = Binding(
            number,
            Address(contact.uri),
            request.call_id,
            request.cseq.number,
            self.now() + expires,
            flow,
            tuple(request.headers.values("Path")),
            request.headers.get("User-Agent") or "",
            request.uri.host,
        )
        if old is not None:
            if old.timer is not None:
                old.timer.cancel()
            current[current.index(old)] = binding
            self._forget_source(old)
        else:
            current.append(binding)
        self._sources[flow.remote[0]] += 1
        binding.timer = self.clock.call_later(
            expires, lambda: self._remove(binding, RegistrationChange.EXPIRED)
        )
        if old is None:
            self._emit(RegistrationChange.REGISTERED, binding)
        if binding.behind_nat:
            self._schedule_keepalives()

    def _trim(self, number: str, limit: int) -> None:
        """Over the limit (a phone rebooted onto a new port), the oldest bindings go."""
        current = self.bindings.get(number, [])
        while len(current) > limit:
            self._remove(current[0], RegistrationChange.UNREGISTERED)

    def _remove(self, binding: Binding, change: RegistrationChange) -> None:
        current = self.bindings.get(binding.extension, [])
        if binding not in current:
            return
        current.remove(binding)
        if not current:
            del self.bindings[binding.extension]
        self._forget_source(binding)
        if binding.timer is not None:
            binding.timer.cancel()
        self._emit(change, binding)

    def _forget_source(self, binding: Binding) -> None:
        address = binding.flow.remote[0]
        self._sources[address] -= 1
        if self._sources[address] == 0:
            del self._sources[address]

    def _ok(self, request: Request, number: str) -> Response:
        response = self._reply(request, 200, "OK")
        now = self.now()
        for binding in self.bindings.get(number, []):
            expires = binding.expires_in(now)
            response.headers.add("Contact", f"<{binding.contact.uri}>;expires={expires}")
        # RFC 3327 5.3: the Path the phone registered through goes back in the 200.
        for path in request.headers.values("Path"):
            response.headers.add("Path", path)
        return response

    def _reply(self, request: Request, status: int, reason: str) -> Response:
        return request.response(status, reason, to_tag=secrets.token_hex(8))

    # Reaching phones

    def contacts(self, number: str) -> list[Binding]:
        """The live bindings of an extension, newest last."""
        return list(self.bindings.get(number, []))

    def registered_from(self, address: str) -> bool:
        """True when a live binding was registered from ``address`` (an IP address)."""
        return address in self._sources

    def status(self) -> list[dict[str, Any]]:
        """Every binding, for ``callbox status``."""
        now = self.now()
        return [
            {
                "extension": b.extension,
                "contact": str(b.contact.uri),
                "source": b.source,
                "expires_in": b.expires_in(now),
                "nat": b.behind_nat,
                "user_agent": b.user_agent,
            }
            for number in sorted(self.bindings)
            for b in self.bindings[number]
        ]

    # Keep-alives

    def _schedule_keepalives(self) -> None:
        if self._keepalive_timer is None and self.send_request is not None:
            self._keepalive_timer = self.clock.call_later(
                self.limits.keepalive_interval, self._send_keepalives
            )

    def _send_keepalives(self) -> None:
        self._keepalive_timer = None
        assert self.send_request is not None
        natted = [b for bs in self.bindings.values() for b in bs if b.behind_nat]
        for binding in natted:
            if binding not in self._keepalives.values():
                request = keepalive_request(binding)
                self._keepalives[self.send_request(request, binding.flow)] = binding
        if natted:
            self._schedule_keepalives()

    def flow_closed(self, flow: Flow) -> None:
        """A TCP or TLS connection closed: bindings that came over it cannot be reached."""
        for bindings in list(self.bindings.values()):
            for binding in [b for b in bindings if b.flow is flow]:
                self._remove(binding, RegistrationChange.UNREACHABLE)

    def keepalive_answered(self, transaction: ClientTransaction) -> bool:
        """A response to one of our keep-alives (any response: the phone is there)."""
        return self._keepalives.pop(transaction, None) is not None

    def keepalive_timed_out(self, transaction: ClientTransaction) -> bool:
        """A keep-alive went unanswered: the phone is gone, its binding too."""
        binding = self._keepalives.pop(transaction, None)
        if binding is None:
            return False
        self._remove(binding, RegistrationChange.UNREACHABLE)
        return True

    def close(self) -> None:
        """Cancel every timer (the stack is stopping)."""
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        for bindings in self.bindings.values():
            for binding in bindings:
                if binding.timer is not None:
                    binding.timer.cancel()


def _find(bindings: list[Binding], uri: Uri) -> Binding | None:
    return next((b for b in bindings if b.contact.uri == uri), None)


def keepalive_request(binding: Binding) -> Request:
    """An OPTIONS to a binding's contact, sent along the flow it registered on.

    The Via names the address the phone registered to when the listener is
    bound to a wildcard (0.0.0.0 is no address to answer to, and a phone
    without RFC 3581 answers to the Via).
    """
    host, port = binding.flow.local
    if _is_wildcard(host) and _is_ip(binding.registrar_host):
        host = binding.registrar_host
    branch = f"z9hG4bK{secrets.token_hex(8)}"
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{binding.flow.transport} {host}:{port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:callbox@{host}:{port}>;tag={secrets.token_hex(6)}"),
            ("To", f"<{binding.contact.uri}>"),
            ("Call-ID", secrets.token_hex(12)),
            ("CSeq", "1 OPTIONS"),
        ]
    )
    for path in binding.path:
        headers.add("Route", path)
    return Request(headers, b"", "OPTIONS", binding.contact.uri)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::")
