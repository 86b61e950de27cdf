"""The switch's UA core for requests outside a dialog (RFC 3261 8.2), and the stack.

The core answers what it can: OPTIONS with 200 and its capabilities
(RFC 3261 11.2), INVITE (when no session manager takes calls) with 480 and
a Warning saying why, CANCEL per RFC 3261 9.2, BYE and other in-dialog requests with 481
(there are no dialogs yet), REGISTER through the registrar when the switch
has one (``registrar.py``), methods it knows but does not serve with 405,
unknown methods with 501. The RFC 3261 8.2.2 and 8.2.3 checks come first:
unsupported URI scheme 416, unknown Require 420, unknown body type 415.
ACK is never answered. With trunks (``trunk.py``), an out-of-dialog request
other than REGISTER and OPTIONS must come from a trunk's address or a
registered phone's; anything else is refused with 403 and counts against
its source in ``SourceGuard``.

With a ``SessionManager`` (``session.py``) the core offers it every
request first, after the 8.2.2 checks: INVITEs (trunks' too: call control
tells them apart by address), their CANCELs and everything inside a
call's dialog are the manager's, and the core serves sessions' methods,
body types and the ``replaces`` option tag too.

``SipStack`` puts transport, transaction layer and core together on one
address; the switch process owns one.
"""

from __future__ import annotations

import logging
import secrets
import ssl

from appliance import __version__
from appliance.sip.message import Request, Response
from appliance.sip.registrar import Registrar
from appliance.sip.security import SourceGuard
from appliance.sip.session import (
    SESSION_BODIES,
    SESSION_METHODS,
    SUPPORTED_OPTIONS,
    SessionManager,
)
from appliance.sip.transaction import (
    ClientTransaction,
    Clock,
    ServerTransaction,
    Timers,
    TransactionLayer,
)
from appliance.sip.transport import Flow, SipTransport, TransportLimits
from appliance.sip.trunk import TrunkLink, Trunks

log = logging.getLogger(__name__)

ALLOW = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS")
"""Methods the core understands (RFC 3261 20.5)."""

KNOWN_NOT_SERVED = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "INFO", "UPDATE", "PRACK", "PUBLISH"}
)
"""Methods of the SIP family this core recognises but does not serve yet (405)."""

ACCEPT = "application/sdp"
SUPPORTED: tuple[str, ...] = ()
"""Option tags (RFC 3261 19.2) the core supports: none yet."""

SERVER = f"Callbox/{__version__}"

WARNING_NO_CALLS = '399 callbox "Calls are not routed in this build yet"'
"""RFC 3261 20.43: why an INVITE gets 480 (399 = miscellaneous warning)."""


class UserAgentCore:
    """Answers out-of-dialog requests on behalf of the switch."""

    def __init__(
        self,
        registrar: Registrar | None = None,
        guard: SourceGuard | None = None,
        trunks: Trunks | None = None,
        sessions: SessionManager | None = None,
    ) -> None:
        self.layer: TransactionLayer | None = None
        self.registrar = registrar
        self.guard = guard
        self.trunks = trunks
        self.sessions = sessions
        methods = SESSION_METHODS if sessions is not None else ALLOW
        self.allow = (*methods, "REGISTER") if registrar is not None else methods
        self.supported = SUPPORTED_OPTIONS if sessions is not None else SUPPORTED
        self.accept = SESSION_BODIES if sessions is not None else (ACCEPT,)

    def request_received(self, request: Request, transaction: ServerTransaction | None) -> None:
        """A new request, or (transaction None) an ACK outside any transaction."""
        sessions = self.sessions
        if transaction is None:
            if sessions is not None:
                sessions.offer(request, None)
            return
        checked = sessions is not None and self._check(request) is None
        if checked and sessions is not None and sessions.offer(request, transaction):
            return
        response = self.answer(request, transaction.flow)
        if response is None:
            return
        layer, guard = self.layer, self.guard
        delay = guard.delay(transaction.flow.remote[0], response) if guard is not None else 0.0
        if layer is not None and delay:
            # A slowed source waits for each refusal: guessing costs it time, not us.
            layer.clock.call_later(delay, lambda: transaction.respond(response))
        else:
            transaction.respond(response)

    def response_received(self, response: Response, transaction: ClientTransaction | None) -> None:
        """Answers to the registrar's keep-alives and the trunks' requests; others are logged."""
        registrar, trunks = self.registrar, self.trunks
        if transaction and registrar and registrar.keepalive_answered(transaction):
            return
        if transaction and trunks and trunks.response_received(response, transaction):
            return
        log.debug("ignored response %d %s", response.status, response.reason)

    def transaction_timed_out(self, transaction: ClientTransaction) -> None:
        """An unanswered keep-alive removes the registrar's binding; trunks hear theirs."""
        if self.registrar is not None and self.registrar.keepalive_timed_out(transaction):
            return
        if self.trunks is not None and self.trunks.transaction_timed_out(transaction):
            return
        log.debug("client transaction %s timed out", transaction.branch)

    def answer(self, request: Request, flow: Flow | None = None) -> Response | None:
        """The response for ``request`` that came over ``flow`` (None for ACK)."""
        method = request.method
        if method == "ACK":
            return None
        rejection = self._check(request)
        if rejection is not None:
            return rejection
        if method == "CANCEL":
            return self._cancel(request)
        if method == "REGISTER" and self.registrar is not None and flow is not None:
            response = self.registrar.register(request, flow)
            response.headers.add("Server", SERVER)
            return response
        if request.to.tag is not None:
            # RFC 3261 12.2.2: a request inside a dialog we do not have.
            return self._reply(request, 481, "Call/Transaction Does Not Exist")
        if method == "OPTIONS":
            response = self._reply(request, 200, "OK")
            response.headers.add("Accept", ACCEPT)
            response.headers.add("Accept-Encoding", "identity")
            response.headers.add("Accept-Language", "en")
            response.headers.add("Supported", ", ".join(self.supported))
            return response
        if flow is not None and not self._trusted(request, flow.remote[0]):
            return self._reply(request, 403, "Forbidden")
        if method == "INVITE":
            response = self._reply(request, 480, "Temporarily Unavailable")
            response.headers.add("Warning", WARNING_NO_CALLS)
            return response
        if method == "BYE":
            return self._reply(request, 481, "Call/Transaction Does Not Exist")
        if method in KNOWN_NOT_SERVED:
            return self._reply(request, 405, "Method Not Allowed")
        return self._reply(request, 501, "Not Implemented")

    def _check(self, request: Request) -> Response | None:
        """RFC 3261 8.2.2 and 8.2.3, in the RFC's order."""
        if request.uri.scheme not in ("sip", "sips", "tel"):
            return self._reply(request, 416, "Unsupported URI Scheme")
        if request.method != "CANCEL":
            unsupported = [
                tag for tag in request.headers.values("Require") if tag not in self.supported
            ]
            if unsupported:
                response = self._reply(request, 420, "Bad Extension")
                response.headers.add("Unsupported", ", ".join(unsupported))
                return response
        content_type = request.headers.get("Content-Type")
        if request.body and content_type is not None:
            media_type = content_type.split(";")[0].strip(" \t").lower()
            if media_type not in self.accept:
                response = self._reply(request, 415, "Unsupported Media Type")
                response.headers.add("Accept", ", ".join(self.accept))
                return response
        return None

    def _trusted(self, request: Request, source: str) -> bool:
        """Whether an out-of-dialog request from ``source`` may be served (with trunks only).

        A trunk's address (an INVITE's call data is read and counted) or a
        registered phone's may; any other source is refused and counts as a
        failed attempt, so scanners probing for open routes get banned.
        """
        trunks = self.trunks
        if trunks is None:
            return True
        if request.method == "INVITE":
            trusted = trunks.inbound_call(request, source) is not None
        else:
            trusted = trunks.match(source, request) is not None
        if trusted or (self.registrar is not None and self.registrar.registered_from(source)):
            return True
        if self.guard is not None:
            self.guard.failed(source, f"{request.method} from an address that is no trunk or phone")
        return False

    def _cancel(self, cancel: Request) -> Response:
        """RFC 3261 9.2: 200 if the INVITE is known (and 487 to it if unanswered)."""
        invite = self.layer.invite_for_cancel(cancel) if self.layer is not None else None
        if invite is None:
            return self._reply(cancel, 481, "Call/Transaction Does Not Exist")
        if invite.last_response is None or invite.last_response.status < 200:
            invite.respond(self._reply(invite.request, 487, "Request Terminated"))
        return self._reply(cancel, 200, "OK")

    def _reply(self, request: Request, status: int, reason: str) -> Response:
        response = request.response(status, reason, to_tag=secrets.token_hex(8))
        response.headers.add("Allow", ", ".join(self.allow))
        response.headers.add("Server", SERVER)
        return response


class SipStack:
    """Transport, transaction layer and UA core listening on one address."""

    def __init__(
        self,
        limits: TransportLimits | None = None,
        clock: Clock | None = None,
        timers: Timers | None = None,
        registrar: Registrar | None = None,
        guard: SourceGuard | None = None,
        trunks: Trunks | None = None,
        sessions: SessionManager | None = None,
    ) -> None:
        self.core = UserAgentCore(registrar, guard, trunks, sessions)
        self.sessions = sessions
        self.registrar = registrar
        self.guard = guard
        self.trunks = trunks
        if registrar is not None and guard is not None:
            registrar.auth_failed = guard.failed
        self._limits = limits
        self._clock = clock
        self._timers = timers
        self.transport: SipTransport | None = None

    async def start(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 5061,
    ) -> None:
        """Listen on UDP and TCP at ``host``:``port``, and TLS on ``tls_port`` given a context."""
        transport = SipTransport(lambda m, f: layer.receive(m, f), self._limits, guard=self.guard)
        layer = TransactionLayer(
            self.core, transport.send_response, self._clock, self._timers, wire=transport
        )
        self.core.layer = layer
        if self.sessions is not None:
            self.sessions.attach(layer, transport)
        if self.registrar is not None:
            self.registrar.send_request = layer.send_request
        transport.flow_closed = self._flow_closed
        await transport.start(host, port)
        self.transport = transport
        if tls is not None:
            await transport.start_tls(host, tls_port, tls)
        if self.trunks is not None:
            self.trunks.attach(TrunkLink(transport), layer.send_request)

    def _flow_closed(self, flow: Flow) -> None:
        """A connection closed: bindings made over it go, trunks registered over it renew."""
        if self.registrar is not None:
            self.registrar.flow_closed(flow)
        if self.trunks is not None:
            self.trunks.flow_closed(flow)

    async def close(self) -> None:
        """De-register trunks, stop listening and cancel every transaction timer."""
        if self.trunks is not None:
            await self.trunks.stop()
        if self.registrar is not None:
            self.registrar.close()
        if self.core.layer is not None:
            self.core.layer.close()
        if self.transport is not None:
            await self.transport.close()

    def where(self) -> str:
        """Where the stack listens, for status and the banner."""
        if self.transport is None:
            return "not started"
        host, port = self.transport.udp_address
        tls = self.transport.tls_address
        secure = f"tls {tls[0]}:{tls[1]}" if tls else "tls off (no certificate configured)"
        return f"udp/tcp {host}:{port}, {secure}"
