"""Sessions: INVITE calls as the B2BUA sees them (RFC 3261 13-15, 3264, 3515, 3891, 3326).

``SessionManager`` is the transaction user for everything about calls.
The UA core (``ua.py``) offers it each request first; it takes INVITEs,
CANCELs of its INVITEs, ACKs for its 2xx and every request inside one of
its dialogs, and leaves the rest (OPTIONS, REGISTER, strays) to the core.

Its owner (call control) sees two kinds of ``Session``:

- ``IncomingCall``: an INVITE with its SDP offer, caller and callee, the
  flow it came on. The owner rings it (180, or 183 with SDP), answers it
  (the 200 is retransmitted until its ACK, RFC 3261 13.3.1.4; no ACK in
  64*T1 ends the call with a BYE), rejects it with a Q.850 cause or a
  status, or redirects it. A CANCEL from the caller ends it (487).
- ``OutgoingCall``: an INVITE with our offer to one URI or to every
  contact of an extension at once (forking, along each registration's
  flow for phones behind NAT). 401/407 are answered with the call's
  credentials; provisional responses are reported; the first 2xx wins and
  the other branches are CANCELled; a late 2xx from another branch is
  ACKed and then BYEd. ``cancel()`` and the no-answer timer end it.

Once answered, both kinds are the same dialog: ``hangup(cause)`` sends BYE
with a Reason header (RFC 3326), ``hold()``/``resume()`` send a re-INVITE,
and the peer's BYE, re-INVITE or UPDATE (answered here from our last SDP,
hold read from sendonly/inactive/0.0.0.0), INFO dtmf-relay and REFER
(RFC 3515, blind or attended with Replaces, RFC 3891) reach the owner as
``SessionEvent``s through ``Session.listener``. An INVITE with Replaces
comes in as an ``IncomingCall`` whose ``replaces`` names the session it
takes over: a confirmed dialog, or the early dialog of one of our outgoing
calls still ringing (call pickup).

In-dialog requests go back along the flow the dialog was set up on
(symmetric signalling, which reaches phones behind NAT), not by resolving
the remote target.
"""

from __future__ import annotations

import enum
import logging
import random
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from appliance import __version__
from appliance.sip.auth import AuthError, authorization
from appliance.sip.causes import (
    Cause,
    Reason,
    add_reasons,
    cause_for_status,
    cause_of,
    reason_phrase,
    status_for_cause,
)
from appliance.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    DtmfRelay,
    hold_requested,
    incoming_id,
    parse_dtmf_relay,
)
from appliance.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    Uri,
)
from appliance.sip.refer import Replaces, Transfer, parse_refer_to, parse_replaces
from appliance.sip.sdp import (
    TELEPHONE_EVENT,
    Codec,
    Direction,
    Negotiated,
    SdpError,
    SessionDescription,
    create_answer,
    negotiate,
    parse_sdp,
)
from appliance.sip.transaction import (
    ClientTransaction,
    ServerInviteTransaction,
    ServerTransaction,
    TimerHandle,
    TransactionLayer,
)
from appliance.sip.transaction import State as TransactionState
from appliance.sip.transport import Flow, SipTransport

log = logging.getLogger(__name__)

USER_AGENT = f"Callbox/{__version__}"
SDP = "application/sdp"
SESSION_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY")
"""Methods a user agent with sessions serves (its Allow header)."""
SUPPORTED_OPTIONS = ("replaces",)
"""Option tags (RFC 3261 19.2) sessions support: INVITE with Replaces (RFC 3891)."""
SESSION_BODIES = (SDP, "application/dtmf-relay", "message/sipfrag")
"""Body types requests in a session may carry (INVITE/UPDATE, INFO, NOTIFY)."""


class SessionError(Exception):
    """An operation the session's state does not allow (answering a call that ended)."""


# Events the owner hears


@dataclass(frozen=True)
class Progress:
    """An outgoing call's provisional response (180 Ringing, 183 with early media)."""

    status: int
    reason: str
    sdp: SessionDescription | None = None


@dataclass(frozen=True)
class Answered:
    """An outgoing call was answered (its 2xx has been ACKed); ``sdp`` is the answer."""

    sdp: SessionDescription | None
    media: Negotiated | None


@dataclass(frozen=True)
class Confirmed:
    """The ACK for our 2xx to an incoming call arrived: media may flow both ways."""


@dataclass(frozen=True)
class Ended:
    """The session is over: why (Q.850), the SIP status when it failed, and who ended it."""

    cause: Cause
    status: int | None = None
    by_peer: bool = True


@dataclass(frozen=True)
class Reoffered:
    """The peer changed the media with re-INVITE or UPDATE; it has been answered already."""

    held: bool
    """Whether the peer put the call on hold (sendonly, inactive or 0.0.0.0)."""
    media: Negotiated | None


@dataclass(frozen=True)
class DtmfReceived:
    """A key the peer sent in an INFO (``application/dtmf-relay``)."""

    relay: DtmfRelay


@dataclass(frozen=True)
class TransferRequested:
    """The peer asked us to transfer the call (REFER); report progress through it."""

    transfer: Transfer


SessionEvent = (
    Progress | Answered | Confirmed | Ended | Reoffered | DtmfReceived | TransferRequested
)
Listener = Callable[["Session", SessionEvent], None]


class SessionState(enum.StrEnum):
    """Where a session is in its life."""

    CALLING = "calling"
    """Outgoing: INVITE sent, no answer yet."""
    RINGING = "ringing"
    """Incoming: not answered yet (ringing or not)."""
    ANSWERING = "answering"
    """Incoming: 2xx sent, its ACK not yet received."""
    CONFIRMED = "confirmed"
    ENDED = "ended"


# Where we are


@dataclass(frozen=True)
class Target:
    """Where an outgoing INVITE goes: a URI, and the flow to send it on if known.

    A registered phone's ``flow`` and ``route`` (its Path) come from its
    binding; ``local_host`` is the address it registered to, which names
    us in Via and Contact when the listener is bound to a wildcard.
    """

    uri: Uri
    flow: Flow | None = None
    route: tuple[str, ...] = ()
    local_host: str | None = None


@dataclass(frozen=True)
class Credentials:
    """What to answer a 401 or 407 with (a trunk's account)."""

    username: str
    password: str


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _ip_or_none(host: str | None) -> str | None:
    if host is None:
        return None
    stripped = host.strip("[]")
    return stripped if stripped.replace(".", "").isdigit() or ":" in stripped else None


def advertised_host(flow: Flow, hint: str | None) -> str:
    """Our address on ``flow``; on a wildcard listener, ``hint`` (where the peer sent to)."""
    host = flow.local[0]
    if _is_wildcard(host):
        return _ip_or_none(hint) or "127.0.0.1"
    return host


def _hostport(flow: Flow, host: str) -> str:
    return f"[{host}]:{flow.local[1]}" if ":" in host else f"{host}:{flow.local[1]}"


def _via(flow: Flow, host: str) -> str:
    """A Via value with a fresh branch for a request sent on ``flow``."""
    branch = f"z9hG4bK{secrets.token_hex(8)}"
    return f"SIP/2.0/{flow.transport} {_hostport(flow, host)};branch={branch};rport"


def _contact(user: str, flow: Flow, host: str) -> str:
    transport = "" if flow.transport == "UDP" else f";transport={flow.transport.lower()}"
    return f"<sip:{user}@{_hostport(flow, host)}{transport}>"


class Session:
    """One call leg: a dialog with a peer, its media offer/answer and its flow.

    ``listener(session, event)`` hears every ``SessionEvent``; ``local_sdp``
    is what we last sent (re-offers are answered from it), ``remote_sdp``
    what the peer last sent.
    """

    def __init__(self, manager: SessionManager, flow: Flow, local_host: str | None) -> None:
        self.manager = manager
        self.flow = flow
        self.local_host = advertised_host(flow, local_host)
        """The address that names us to this peer (Via, Contact, SDP)."""
        self.dialog: Dialog | None = None
        self.state = SessionState.CALLING
        self.listener: Listener = lambda session, event: None
        self.local_sdp: SessionDescription | None = None
        self.remote_sdp: SessionDescription | None = None
        self.held_by_peer = False
        self.held_locally = False
        self.end: Ended | None = None
        """Why the session ended, once it has."""
        self._sdp_version = 0
        self._timers: dict[str, TimerHandle] = {}
        self._unacked: tuple[int, Response] | None = None
        self._reinvite: Request | None = None
        self._acks: dict[int, Request] = {}
        self._bye_after_ack: Cause | None = None

    @property
    def id(self) -> DialogId | None:
        """The dialog's id once there is one."""
        return self.dialog.id if self.dialog is not None else None

    @property
    def ended(self) -> bool:
        """Whether the session is over."""
        return self.state is SessionState.ENDED

    @property
    def contact(self) -> str:
        """Our Contact header value for this session's flow."""
        return _contact(self.manager.user, self.flow, self.local_host)

    def via(self) -> str:
        """A fresh Via value (new branch) for a request on this session's flow."""
        return _via(self.flow, self.local_host)

    # Events and timers

    def _emit(self, event: SessionEvent) -> None:
        try:
            self.listener(self, event)
        except Exception:
            log.exception("session listener failed on %s", event)

    def _start_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._stop_timer(name)

        def fire() -> None:
            self._timers.pop(name, None)
            callback()

        self._timers[name] = self.manager.layer.clock.call_later(delay, fire)

    def _stop_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _finish(self, ended: Ended) -> None:
        """The session is over: stop its timers, forget its dialog, tell the owner once."""
        if self.state is SessionState.ENDED:
            return
        self.state = SessionState.ENDED
        self.end = ended
        for name in list(self._timers):
            self._stop_timer(name)
        if self.dialog is not None:
            self.dialog.state = DialogState.TERMINATED
        self.manager._forget(self)
        log.info("session %s ended: %s (%s)", self.id, ended.cause.text, ended.status)
        self._emit(ended)

    # SDP

    def _stamp(self, sdp: SessionDescription) -> SessionDescription:
        """RFC 3264 8: one o= session id per session and a version that grows."""
        parts = sdp.origin.split()
        if self.local_sdp is not None:
            parts[1] = self.local_sdp.origin.split()[1]
        self._sdp_version += 1
        parts[2] = str(self._sdp_version)
        return replace(sdp, origin=" ".join(parts))

    def _our_codecs(self) -> tuple[Codec, ...]:
        if self.local_sdp is None:
            return ()
        audio = next((m for m in self.local_sdp.media if m.media == "audio" and m.port), None)
        if audio is None:
            return ()
        return tuple(c for c in audio.codecs if c.name.lower() != TELEPHONE_EVENT.name)

    def _answer_offer(self, offer: SessionDescription) -> SessionDescription | None:
        """Our answer to a re-offer, from what we sent last; None if nothing fits."""
        ours = self.local_sdp
        codecs = self._our_codecs()
        if ours is None or not codecs:
            return None
        audio = next(m for m in ours.media if m.media == "audio" and m.port)
        answer = create_answer(
            offer,
            ours.address_of(audio),
            audio.port,
            codecs,
            hold=self.held_locally,
            rtcp_mux=audio.rtcp_mux,
        )
        if not any(m.port for m in answer.media):
            return None
        return self._stamp(answer)

    def _with_direction(self, direction: Direction) -> SessionDescription:
        if self.local_sdp is None:
            raise SessionError("no SDP sent yet to hold or resume from")
        media = []
        for m in self.local_sdp.media:
            attributes = [(k, v) for k, v in m.attributes if k not in _DIRECTIONS]
            if m.media == "audio" and m.port:
                attributes.append((direction, None))
            media.append(replace(m, attributes=attributes))
        return self._stamp(replace(self.local_sdp, media=media))

    # Sending

    def send_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        on_response: Callable[[Response, ClientTransaction], None] | None = None,
    ) -> Request:
        """Send a request inside this session's dialog along its flow; returns it."""
        if self.dialog is None:
            raise SessionError(f"no dialog to send {method} in")
        request = self.dialog.create_request(method, self.via(), body, content_type)
        if method in ("INVITE", "UPDATE"):
            request.headers.add("Contact", self.contact)
        request.headers.add("User-Agent", USER_AGENT)
        for name, value in headers:
            request.headers.add(name, value)
        if method == "INVITE":
            self._reinvite = request  # set first: the answer may come back at once
        self.manager.layer.send_request(
            request, self.flow, on_response or _ignore, self._request_timed_out
        )
        return request

    def _request_timed_out(self, transaction: ClientTransaction) -> None:
        # RFC 3261 12.2.1.2: an unanswered re-INVITE means the peer is gone.
        if transaction.request is self._reinvite and self.state is not SessionState.ENDED:
            self._reinvite = None
            self._send_bye(Cause.RECOVERY_ON_TIMER_EXPIRY)
            self._finish(Ended(Cause.RECOVERY_ON_TIMER_EXPIRY, 408, by_peer=True))

    def _send_bye(self, cause: Cause) -> None:
        self.send_request("BYE", headers=[("Reason", str(Reason.q850(cause)))])

    def _respond(
        self, transaction: ServerTransaction, status: int, reason: str, to_tag: str | None = None
    ) -> Response:
        response = transaction.request.response(status, reason, to_tag=to_tag)
        response.headers.add("Server", USER_AGENT)
        return response

    def _respond_2xx(self, transaction: ServerTransaction, sdp: SessionDescription | None) -> None:
        """A 2xx to an INVITE, retransmitted until its ACK (RFC 3261 13.3.1.4)."""
        response = self._dialog_response(transaction, 200, "OK", sdp)
        # Everything is ready before the 2xx leaves: its ACK may come back at once.
        self._unacked = (transaction.request.cseq.number, response)
        timers = self.manager.layer.timers
        if not self.flow.reliable:
            self._retransmit_2xx(response, timers.t1)
        self._start_timer("ack", timers.timeout, self._ack_timed_out)
        transaction.respond(response)

    def _retransmit_2xx(self, response: Response, interval: float) -> None:
        def again() -> None:
            if self._unacked is not None and self._unacked[1] is response:
                self.manager.layer.send_response(response, self.flow)
                self._retransmit_2xx(response, min(interval * 2, self.manager.layer.timers.t2))

        self._start_timer("2xx", interval, again)

    def _ack_timed_out(self) -> None:
        # RFC 3261 13.3.1.4: no ACK in 64*T1: the dialog is confirmed, the session ends.
        self._unacked = None
        self._stop_timer("2xx")
        self._send_bye(Cause.RECOVERY_ON_TIMER_EXPIRY)
        self._finish(Ended(Cause.RECOVERY_ON_TIMER_EXPIRY, None, by_peer=True))

    def _dialog_response(
        self,
        transaction: ServerTransaction,
        status: int,
        reason: str,
        sdp: SessionDescription | None,
    ) -> Response:
        """A dialog-creating or in-dialog response: To tag, Record-Route, Contact, SDP."""
        to_tag = self.dialog.local_tag if self.dialog is not None else None
        response = self._respond(transaction, status, reason, to_tag=to_tag)
        # RFC 3261 12.1.1: the route set the caller will use is the Record-Route we echo.
        for value in transaction.request.headers.lines("Record-Route"):
            response.headers.add("Record-Route", value)
        response.headers.add("Contact", self.contact)
        response.headers.add("Allow", ", ".join(SESSION_METHODS))
        response.headers.add("Supported", ", ".join(SUPPORTED_OPTIONS))
        if sdp is not None:
            self.local_sdp = sdp
            response.headers.add("Content-Type", SDP)
            response.body = sdp.to_bytes()
        return response

    # The owner's commands

    def hangup(self, cause: Cause = Cause.NORMAL_CLEARING) -> None:
        """End the call: BYE with a Reason header once confirmed (cancel or reject before)."""
        if self.state is SessionState.ENDED:
            return
        if self.state is SessionState.ANSWERING:
            # RFC 3261 15: no BYE before the ACK for our 2xx (or its timeout).
            self._bye_after_ack = cause
            return
        self._send_bye(cause)
        self._finish(Ended(cause, None, by_peer=False))

    def hold(self) -> None:
        """Put the peer on hold: re-INVITE with our SDP made sendonly (RFC 3264 8.4)."""
        self.held_locally = True
        self._reoffer(self._with_direction("sendonly"))

    def resume(self) -> None:
        """Take the peer off hold: re-INVITE with our SDP sendrecv again."""
        self.held_locally = False
        self._reoffer(self._with_direction("sendrecv"))

    def reoffer(self, sdp: SessionDescription) -> None:
        """Offer ``sdp`` in a re-INVITE (RFC 3264 8: a new port or codec for the stream)."""
        self._reoffer(sdp)

    def _reoffer(self, sdp: SessionDescription, attempt: int = 0) -> None:
        if self.state is not SessionState.CONFIRMED:
            raise SessionError(f"cannot re-INVITE a session that is {self.state}")
        if self._reinvite is not None:
            # One offer at a time (RFC 3264 4); the latest wish goes out after this one.
            self._start_timer("reoffer", 0.5, lambda: self._reoffer(sdp, attempt))
            return
        self.local_sdp = sdp

        def answered(response: Response, transaction: ClientTransaction) -> None:
            self._reinvite_answered(response, transaction, sdp, attempt)

        self.send_request("INVITE", sdp.to_bytes(), SDP, on_response=answered)

    def _reinvite_answered(
        self,
        response: Response,
        transaction: ClientTransaction,
        sdp: SessionDescription,
        attempt: int,
    ) -> None:
        if response.status < 200:
            return
        if 200 <= response.status < 300:
            self._ack_2xx(response, transaction.request)
        if self._reinvite is transaction.request:
            self._reinvite = None
        if response.status == 491 and attempt < 3 and self.state is SessionState.CONFIRMED:
            # RFC 3261 14.1 glare: the Call-ID's owner waits 2.1-4 s, the other 0-2 s.
            wait = random.uniform(2.1, 4.0) if self._owns_call_id else random.uniform(0, 2.0)
            self._start_timer("reoffer", wait, lambda: self._reoffer(sdp, attempt + 1))
        elif 200 <= response.status < 300 and response.body:
            self._take_answer(response.body)
        elif response.status in (408, 481):
            # RFC 3261 12.2.1.2 and 14.1: the dialog is gone.
            self._finish(Ended(cause_for_status(response.status), response.status))

    @property
    def _owns_call_id(self) -> bool:
        return False

    def _take_answer(self, body: bytes) -> Negotiated | None:
        try:
            answer = parse_sdp(body)
            media = negotiate(self.local_sdp, answer) if self.local_sdp else None
        except SdpError as error:
            log.info("session %s: unreadable SDP answer: %s", self.id, error)
            return None
        self.remote_sdp = answer
        return media

    def _ack_2xx(self, response: Response, invite: Request) -> None:
        """ACK a 2xx to our INVITE (again for each retransmission), in the dialog."""
        number = invite.cseq.number
        ack = self._acks.get(number)
        if ack is None and self.dialog is not None:
            ack = self.dialog.create_request("ACK", self.via())
            ack.headers.set("CSeq", f"{number} ACK")
            self._acks = {number: ack}
        if ack is not None:
            self.flow.send(ack.to_bytes())

    # What the peer sends inside the dialog

    def request_received(self, request: Request, transaction: ServerTransaction | None) -> None:
        """A request the manager matched to this session's dialog (ACK has no transaction)."""
        if transaction is None:
            if request.method == "ACK":
                self._ack_received(request)
            return
        assert self.dialog is not None
        try:
            self.dialog.receive_request(request)
        except DialogError as error:
            transaction.respond(self._respond(transaction, error.status, error.reason))
            return
        handler = _IN_DIALOG.get(request.method)
        if handler is None:
            response = self._respond(transaction, 405, "Method Not Allowed")
            response.headers.add("Allow", ", ".join(SESSION_METHODS))
            transaction.respond(response)
            return
        handler(self, request, transaction)

    def _ack_received(self, ack: Request) -> None:
        unacked = self._unacked
        if unacked is None or ack.cseq.number < unacked[0]:
            return
        self._unacked = None
        self._stop_timer("2xx")
        self._stop_timer("ack")
        if ack.body and self.local_sdp is not None:
            self.remote_sdp = self._parse_or_none(ack.body)
        if self.state is SessionState.ANSWERING:
            self.state = SessionState.CONFIRMED
            self._emit(Confirmed())
            if self._bye_after_ack is not None:
                self.hangup(self._bye_after_ack)

    def _parse_or_none(self, body: bytes) -> SessionDescription | None:
        try:
            return parse_sdp(body)
        except SdpError:
            return None

    def _on_reoffer(self, request: Request, transaction: ServerTransaction) -> None:
        """re-INVITE or UPDATE: answer from our last SDP, report hold and new addresses."""
        if request.method == "INVITE" and self._reinvite is not None:
            # RFC 3261 14.2: our own re-INVITE is pending: glare.
            transaction.respond(self._respond(transaction, 491, "Request Pending"))
            return
        if request.method == "INVITE" and self._unacked is not None:
            # The peer sends a new INVITE only once it has our 2xx (RFC 3261 14.1):
            # its ACK was lost, and this INVITE stands for it.
            self._ack_received(replace(request, method="ACK", body=b""))
        if not request.body:
            if request.method == "INVITE":
                # An offerless re-INVITE (RFC 3261 14.2): our SDP is the offer, the ACK answers.
                sdp = self.local_sdp and self._stamp(self.local_sdp)
                self._respond_2xx(transaction, sdp)
            else:
                transaction.respond(self._dialog_response(transaction, 200, "OK", None))
            return
        try:
            offer = parse_sdp(request.body)
        except SdpError as error:
            transaction.respond(self._respond(transaction, 400, f"Bad SDP: {error}"))
            return
        answer = self._answer_offer(offer)
        if answer is None:
            response = self._respond(transaction, 488, "Not Acceptable Here")
            response.headers.add("Warning", '304 callbox "Media type not available"')
            transaction.respond(response)
            return
        self.remote_sdp = offer
        self.held_by_peer = hold_requested(offer)
        if request.method == "INVITE":
            self._respond_2xx(transaction, answer)
        else:
            transaction.respond(self._dialog_response(transaction, 200, "OK", answer))
        self._emit(Reoffered(self.held_by_peer, negotiate(offer, answer)))

    def _on_bye(self, request: Request, transaction: ServerTransaction) -> None:
        transaction.respond(self._respond(transaction, 200, "OK"))
        self._unacked = None
        self._finish(Ended(cause_of(request), None, by_peer=True))

    def _on_info(self, request: Request, transaction: ServerTransaction) -> None:
        media_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not request.body:
            transaction.respond(self._respond(transaction, 200, "OK"))
            return
        if media_type != "application/dtmf-relay":
            response = self._respond(transaction, 415, "Unsupported Media Type")
            response.headers.add("Accept", "application/dtmf-relay")
            transaction.respond(response)
            return
        try:
            relay = parse_dtmf_relay(request.body)
        except ValueError as error:
            transaction.respond(self._respond(transaction, 400, f"Bad dtmf-relay: {error}"))
            return
        transaction.respond(self._respond(transaction, 200, "OK"))
        self._emit(DtmfReceived(relay))

    def _on_refer(self, request: Request, transaction: ServerTransaction) -> None:
        values = request.headers.values("Refer-To") or request.headers.values("r")
        if len(values) != 1:
            transaction.respond(self._respond(transaction, 400, "Exactly one Refer-To needed"))
            return
        try:
            target, replaces = parse_refer_to(values[0])
        except SipParseError as error:
            transaction.respond(self._respond(transaction, 400, error.reason))
            return
        transaction.respond(self._respond(transaction, 202, "Accepted"))
        transfer = Transfer(self, target, replaces, request.headers.get("Referred-By"))
        # RFC 3515 2.4.4: the first NOTIFY goes out at once.
        transfer.notify(100, "Trying")
        self._emit(TransferRequested(transfer))

    def _on_other(self, request: Request, transaction: ServerTransaction) -> None:
        transaction.respond(self._respond(transaction, 200, "OK"))


def _ignore(response: Response, transaction: ClientTransaction) -> None:
    """Responses to BYE, NOTIFY, CANCEL: the session has nothing left to do with them."""


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

_IN_DIALOG: dict[str, Callable[[Session, Request, ServerTransaction], None]] = {
    "INVITE": Session._on_reoffer,
    "UPDATE": Session._on_reoffer,
    "BYE": Session._on_bye,
    "INFO": Session._on_info,
    "REFER": Session._on_refer,
    "NOTIFY": Session._on_other,
    "OPTIONS": Session._on_other,
}


class IncomingCall(Session):
    """An INVITE that reached us: ring it, answer it, reject or redirect it.

    ``offer`` is the parsed SDP offer (None for an INVITE without one);
    ``replaces`` is the session an INVITE with Replaces takes over.
    """

    def __init__(
        self, manager: SessionManager, invite: Request, transaction: ServerInviteTransaction
    ) -> None:
        hint = invite.uri.host if invite.uri.scheme in ("sip", "sips") else None
        super().__init__(manager, transaction.flow, hint)
        self.invite = invite
        self.transaction = transaction
        self.state = SessionState.RINGING
        self.caller = invite.from_
        self.callee = invite.uri
        self.offer = parse_sdp(invite.body) if invite.body else None
        self.remote_sdp = self.offer
        self.replaces: Session | None = None
        # The dialog exists from the start (RFC 3261 12.1.1: our To tag is fixed now);
        # it is found by the peer's requests once a response has carried the tag.
        self.dialog = Dialog.as_uas(invite, invite.response(180, "", to_tag=secrets.token_hex(8)))

    def _final(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        if self.state is not SessionState.RINGING:
            raise SessionError(f"cannot answer {status}: the call is {self.state}")
        response = self._respond(self.transaction, status, reason, to_tag=self._tag())
        for name, value in headers:
            response.headers.add(name, value)
        self.transaction.respond(response)

    def _tag(self) -> str:
        assert self.dialog is not None
        return self.dialog.local_tag

    def ringing(self, sdp: SessionDescription | None = None) -> None:
        """Send 180 Ringing, or 183 Session Progress with ``sdp`` (early media)."""
        if self.state is not SessionState.RINGING:
            raise SessionError(f"cannot ring a call that is {self.state}")
        status, reason = (183, "Session Progress") if sdp is not None else (180, "Ringing")
        response = self._respond(self.transaction, status, reason, to_tag=self._tag())
        response.headers.add("Contact", self.contact)
        for value in self.invite.headers.lines("Record-Route"):
            response.headers.add("Record-Route", value)
        if sdp is not None:
            sdp = self._stamp(sdp)
            self.local_sdp = sdp
            response.headers.add("Content-Type", SDP)
            response.body = sdp.to_bytes()
        self.manager._register(self)
        self.transaction.respond(response)

    def answer(self, sdp: SessionDescription) -> None:
        """Send 200 OK with our SDP answer; retransmitted until the ACK (13.3.1.4)."""
        if self.state is not SessionState.RINGING:
            raise SessionError(f"cannot answer a call that is {self.state}")
        sdp = self._stamp(sdp)
        assert self.dialog is not None
        self.manager._register(self)
        self.dialog.confirm()
        self.state = SessionState.ANSWERING
        self._respond_2xx(self.transaction, sdp)

    def reject(self, reason: Cause | int, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Refuse the call with a status, or with the status RFC 3398 gives a Q.850 cause."""
        if isinstance(reason, Cause):
            status, cause = status_for_cause(reason), reason
            headers = [*headers, ("Reason", str(Reason.q850(cause)))]
        else:
            status, cause = reason, cause_for_status(reason)
        self._final(status, reason_phrase(status), headers)
        self._finish(Ended(cause, status, by_peer=False))

    def challenge(self, challenges: Iterable[str]) -> None:
        """Answer 407 with Proxy-Authenticate challenges; the caller will INVITE again."""
        headers = [("Proxy-Authenticate", c) for c in challenges]
        self._final(407, "Proxy Authentication Required", headers)
        self._finish(Ended(Cause.CALL_REJECTED, 407, by_peer=False))

    def redirect(self, contacts: Iterable[Uri | Address]) -> None:
        """Answer 302 Moved Temporarily with the given Contact addresses (RFC 3261 8.3)."""
        headers = [("Contact", str(c) if isinstance(c, Address) else f"<{c}>") for c in contacts]
        self._final(302, "Moved Temporarily", headers)
        self._finish(Ended(Cause.REDIRECTED, 302, by_peer=False))

    def hangup(self, cause: Cause = Cause.NORMAL_CLEARING) -> None:
        """Before the answer, reject with the cause; after it, BYE."""
        if self.state is SessionState.RINGING:
            self.reject(cause)
        else:
            super().hangup(cause)

    def cancelled(self, cancel: Request) -> None:
        """The caller CANCELled: 487 to the INVITE (RFC 3261 9.2), the session ends."""
        if self.state is not SessionState.RINGING:
            return
        self.transaction.respond(
            self._respond(self.transaction, 487, "Request Terminated", to_tag=self._tag())
        )
        self._finish(Ended(cause_of(cancel, Cause.NORMAL_CLEARING), 487, by_peer=True))

    def _on_bye(self, request: Request, transaction: ServerTransaction) -> None:
        if self.state is SessionState.RINGING:
            # RFC 3261 15.1.2: a BYE on the early dialog ends the INVITE with 487.
            self.transaction.respond(
                self._respond(self.transaction, 487, "Request Terminated", to_tag=self._tag())
            )
        super()._on_bye(request, transaction)


@dataclass(eq=False)
class _Branch:
    """One INVITE of a (possibly forked) outgoing call, with its own transaction."""

    target: Target
    flow: Flow
    request: Request
    transaction: ClientTransaction | None = None
    provisional: bool = False
    cancel_reason: Reason | None = None
    authenticated: bool = False
    final: Response | None = None


class OutgoingCall(Session):
    """An INVITE we send, to one target or forked to several in parallel.

    Use ``SessionManager.call``; the owner hears ``Progress``, then
    ``Answered`` or ``Ended`` (with the best failure response of all
    branches, RFC 3261 16.7).
    """

    def __init__(
        self,
        manager: SessionManager,
        flow: Flow,
        local_host: str | None,
        caller: Address,
        callee: Address,
        offer: SessionDescription,
        credentials: Credentials | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(manager, flow, local_host)
        self.caller = caller
        self.callee = callee
        self.credentials = credentials
        self.headers = tuple(headers)
        """More header fields for every INVITE (an INVITE with Replaces, RFC 3891;
        a trunk's P-Asserted-Identity)."""
        self.early_dialogs: set[DialogId] = set()
        """The early dialogs its branches' provisional responses made (RFC 3261 12.1.2)."""
        self.call_id = f"{secrets.token_hex(12)}@{self.local_host}"
        self.local_tag = secrets.token_hex(8)
        self.local_sdp = self._stamp(offer)
        self.branches: list[_Branch] = []
        self.winner: _Branch | None = None
        self._cseq = 1

    @property
    def _owns_call_id(self) -> bool:
        return True

    def _invite(self, target: Target, flow: Flow, cseq: int) -> Request:
        assert self.local_sdp is not None
        host = advertised_host(flow, target.local_host)
        headers = Headers(
            [
                ("Via", _via(flow, host)),
                ("Max-Forwards", "70"),
                (
                    "From",
                    f"{Address(self.caller.uri, self.caller.display_name)};tag={self.local_tag}",
                ),
                ("To", str(Address(self.callee.uri, self.callee.display_name))),
                ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} INVITE"),
                ("Contact", _contact(self.manager.user, flow, host)),
                ("Allow", ", ".join(SESSION_METHODS)),
                ("Supported", ", ".join(SUPPORTED_OPTIONS)),
                ("User-Agent", USER_AGENT),
                ("Content-Type", SDP),
            ]
        )
        for route in target.route:
            headers.add("Route", route)
        for name, value in self.headers:
            headers.add(name, value)
        return Request(headers, self.local_sdp.to_bytes(), "INVITE", target.uri)

    def _send(self, branch: _Branch) -> None:
        def responded(response: Response, transaction: ClientTransaction) -> None:
            self._branch_response(branch, response, transaction)

        def timed_out(transaction: ClientTransaction) -> None:
            if transaction.request is branch.request:
                self._branch_failed(branch, transaction.request.response(408, "Request Timeout"))

        branch.transaction = self.manager.layer.send_request(
            branch.request, branch.flow, responded, timed_out
        )

    def start(self, targets: list[tuple[Target, Flow]], no_answer_s: float | None) -> None:
        """Send one INVITE per target at once; the no-answer timer starts now."""
        for target, flow in targets:
            branch = _Branch(target, flow, self._invite(target, flow, self._cseq))
            self.branches.append(branch)
            self._send(branch)
        if no_answer_s is not None:
            self._start_timer("no-answer", no_answer_s, self._no_answer)

    def _no_answer(self) -> None:
        self.cancel(Cause.NO_ANSWER)

    def _finish(self, ended: Ended) -> None:
        super()._finish(ended)
        # RFC 6026 7.2: an answered branch's transaction hears 2xx retransmissions
        # for 64*T1 more; it keeps what answers them instead of this whole call.
        remote_tag = self.dialog.remote_tag if self.dialog is not None else None
        for branch in self.branches:
            transaction = branch.transaction
            if transaction is None or transaction.state is not TransactionState.ACCEPTED:
                continue
            ack = self._acks.get(branch.request.cseq.number) if branch is self.winner else None
            transaction.on_response = _AnsweredBranch(
                self.manager, branch, remote_tag, ack.to_bytes() if ack is not None else None
            )

    def cancel(self, cause: Cause = Cause.NORMAL_CLEARING, reason: Reason | None = None) -> None:
        """Stop ringing: CANCEL every branch; the owner hears ``Ended`` at once.

        The CANCELs carry ``reason``, else the cause's Q.850 value (RFC 3326).
        """
        if self.state is not SessionState.CALLING:
            return
        status = status_for_cause(cause) if cause is not Cause.NORMAL_CLEARING else 487
        # Ended first: the branches' 487s that follow are no news to the owner.
        self._finish(Ended(cause, status, by_peer=False))
        for branch in self.branches:
            self._cancel_branch(branch, reason or Reason.q850(cause))

    def hangup(self, cause: Cause = Cause.NORMAL_CLEARING) -> None:
        """Before the answer, cancel; after it, BYE."""
        if self.state is SessionState.CALLING:
            self.cancel(cause)
        else:
            super().hangup(cause)

    def _cancel_branch(self, branch: _Branch, reason: Reason) -> None:
        if branch.final is not None or branch.cancel_reason is not None:
            return
        branch.cancel_reason = reason
        if branch.provisional:
            self._send_cancel(branch)

    def _send_cancel(self, branch: _Branch) -> None:
        """RFC 3261 9.1: same Request-URI, Call-ID, From, To, CSeq number and Via."""
        invite = branch.request
        headers = Headers()
        headers.add("Via", str(invite.top_via))
        for name in ("Max-Forwards", "From", "To", "Call-ID"):
            headers.add(name, invite.headers.get(name) or "")
        headers.add("CSeq", f"{invite.cseq.number} CANCEL")
        for value in invite.headers.lines("Route"):
            headers.add("Route", value)
        cancel = Request(headers, b"", "CANCEL", invite.uri)
        if branch.cancel_reason is not None:
            add_reasons(cancel, [branch.cancel_reason])
        self.manager.layer.send_request(cancel, branch.flow, _ignore, lambda t: None)

    def _branch_response(
        self, branch: _Branch, response: Response, transaction: ClientTransaction
    ) -> None:
        # Compared by request: a response can arrive before send_request returns.
        if transaction.request is not branch.request:
            if 200 <= response.status < 300:
                self._answered(branch, response, transaction.request)
            return
        status = response.status
        if status < 200:
            if not branch.provisional:
                branch.provisional = True
                if branch.cancel_reason is not None:
                    self._send_cancel(branch)
            if status > 100 and self.state is SessionState.CALLING:
                if response.to.tag is not None:
                    self.manager._early(self, (self.call_id, self.local_tag, response.to.tag))
                sdp = self._parse_or_none(response.body) if response.body else None
                self._emit(Progress(status, response.reason, sdp))
        elif status < 300:
            self._answered(branch, response, transaction.request)
        elif status in (401, 407) and self._retry_with_credentials(branch, response):
            return
        else:
            self._branch_failed(branch, response)

    def _retry_with_credentials(self, branch: _Branch, response: Response) -> bool:
        if self.credentials is None or branch.authenticated or branch.cancel_reason is not None:
            return False
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        answer_header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        challenge = response.headers.get(name)
        if challenge is None:
            return False
        self._cseq += 1
        request = self._invite(branch.target, branch.flow, self._cseq)
        try:
            credentials = authorization(
                challenge,
                method="INVITE",
                uri=str(request.uri),
                username=self.credentials.username,
                password=self.credentials.password,
            )
        except AuthError as error:
            log.info("call %s: cannot answer the challenge: %s", self.call_id, error)
            return False
        request.headers.add(answer_header, credentials)
        branch.request = request
        branch.authenticated = True
        branch.provisional = False
        self._send(branch)
        return True

    def _answered(self, branch: _Branch, response: Response, invite: Request) -> None:
        dialog = self.dialog
        if self.winner is not None and dialog is not None and response.to.tag == dialog.remote_tag:
            self._ack_2xx(response, invite)  # a retransmission: our ACK was lost
            return
        if self.state is not SessionState.CALLING:
            # A late 2xx (another branch, or after CANCEL): ACK it, then BYE (RFC 3261 15).
            _LateDialog(self.manager, branch, response, invite).release()
            return
        try:
            dialog = Dialog.as_uac(invite, response)
        except SipParseError as error:
            log.info("call %s: unusable 2xx: %s", self.call_id, error.reason)
            self._branch_failed(branch, invite.response(502, "Bad Gateway"))
            return
        branch.final = response
        self.winner = branch
        self.flow = branch.flow
        self.local_host = advertised_host(branch.flow, branch.target.local_host)
        self.dialog = dialog
        self.manager._forget_early(self)
        self.manager._register(self)
        self._ack_2xx(response, invite)
        self.state = SessionState.CONFIRMED
        self._stop_timer("no-answer")
        elsewhere = Reason("SIP", 200, "Call completed elsewhere")
        for other in self.branches:
            if other is not branch:
                self._cancel_branch(other, elsewhere)
        media = self._take_answer(response.body) if response.body else None
        self._emit(Answered(self.remote_sdp, media))

    def _branch_failed(self, branch: _Branch, response: Response) -> None:
        branch.final = response
        if self.state is not SessionState.CALLING:
            return
        if all(b.final is not None for b in self.branches):
            best = _best_failure([b.final for b in self.branches if b.final is not None])
            self._finish(Ended(cause_of(best, cause_for_status(best.status)), best.status))


class _LateDialog(Session):
    """A 2xx nobody wants: ACK it and hang up at once (RFC 3261 13.2.2.4, 15)."""

    def __init__(
        self, manager: SessionManager, branch: _Branch, response: Response, invite: Request
    ) -> None:
        super().__init__(manager, branch.flow, branch.target.local_host)
        self.dialog = Dialog.as_uac(invite, response)
        self.state = SessionState.CONFIRMED
        self._ack_2xx(response, invite)

    def release(self) -> None:
        """BYE at once: the call this 2xx belongs to is answered elsewhere or over."""
        self._send_bye(Cause.NORMAL_CLEARING)
        self.state = SessionState.ENDED


class _AnsweredBranch:
    """An ended call's answered branch, as its INVITE transaction's 2xx callback (RFC 6026 7.2).

    A retransmitted 2xx of the call's dialog means our ACK was lost: the same
    ACK goes again. Any other 2xx (a fork answering late) is ACKed and hung
    up at once, as during the call. It holds the branch, not the call.
    """

    __slots__ = ("ack", "branch", "manager", "remote_tag")

    def __init__(
        self, manager: SessionManager, branch: _Branch, remote_tag: str | None, ack: bytes | None
    ) -> None:
        self.manager = manager
        self.branch = branch
        self.remote_tag = remote_tag
        self.ack = ack

    def __call__(self, response: Response, transaction: ClientTransaction) -> None:
        """A 2xx retransmission of the branch's INVITE."""
        if not 200 <= response.status < 300:
            return
        if self.ack is not None and response.to.tag == self.remote_tag:
            self.branch.flow.send(self.ack)
        else:
            _LateDialog(self.manager, self.branch, response, transaction.request).release()


def _best_failure(responses: list[Response]) -> Response:
    """RFC 3261 16.7: a 6xx wins; otherwise the lowest class, the first such one."""
    for response in responses:
        if response.status >= 600:
            return response
    return min(responses, key=lambda r: r.status // 100)


class SessionManager:
    """The call side of a user agent: creates sessions and routes their messages.

    ``on_incoming(call)`` hears each new ``IncomingCall``; without it the
    manager takes no INVITE and the UA core refuses them. ``layer`` and
    ``transport`` are set when the stack starts.
    """

    def __init__(
        self,
        on_incoming: Callable[[IncomingCall], None] | None = None,
        user: str = "callbox",
    ) -> None:
        self.on_incoming = on_incoming
        self.user = user
        self._layer: TransactionLayer | None = None
        self.transport: SipTransport | None = None
        self.sessions: dict[DialogId, Session] = {}
        self.ringing: dict[ServerInviteTransaction, IncomingCall] = {}
        self.early: dict[DialogId, OutgoingCall] = {}
        """Early dialogs of our ringing outgoing calls, which an INVITE with Replaces
        may take over (call pickup, RFC 3891 3)."""
        self.calls: dict[Session, None] = {}
        """Every live session, oldest first (an ordered set)."""

    @property
    def layer(self) -> TransactionLayer:
        """The transaction layer (the stack has started)."""
        if self._layer is None:
            raise SessionError("the SIP stack has not started")
        return self._layer

    def attach(self, layer: TransactionLayer, transport: SipTransport | None) -> None:
        """Use ``layer`` and ``transport`` (the stack calls this when it starts)."""
        self._layer = layer
        self.transport = transport

    def _register(self, session: Session) -> None:
        if session.dialog is not None:
            self.sessions[session.dialog.id] = session

    def _early(self, call: OutgoingCall, dialog_id: DialogId) -> None:
        call.early_dialogs.add(dialog_id)
        self.early[dialog_id] = call

    def _forget_early(self, call: OutgoingCall) -> None:
        for dialog_id in call.early_dialogs:
            self.early.pop(dialog_id, None)
        call.early_dialogs.clear()

    def _forget(self, session: Session) -> None:
        if session.dialog is not None and self.sessions.get(session.dialog.id) is session:
            del self.sessions[session.dialog.id]
        if isinstance(session, IncomingCall):
            self.ringing.pop(session.transaction, None)
        elif isinstance(session, OutgoingCall):
            self._forget_early(session)
        self.calls.pop(session, None)

    def _replaced(self, replaces: Replaces) -> Session | int:
        """The live session an INVITE's Replaces names, else the status to refuse it with.

        RFC 3891 3: 481 for no such dialog (an ended one is forgotten: the same),
        and for an early dialog we did not initiate (one of our incoming calls
        still ringing); 486 for ``early-only`` naming a confirmed dialog. An
        early dialog of an outgoing call of ours may be replaced (call pickup).
        """
        replaced = self.sessions.get(replaces.dialog_id) or self.early.get(replaces.dialog_id)
        ours = not isinstance(replaced, IncomingCall) or replaced.state is not SessionState.RINGING
        if replaced is None or replaced.ended or not ours:
            return 481
        if replaces.early_only and replaced.state is SessionState.CONFIRMED:
            return 486
        return replaced

    def offer(self, request: Request, transaction: ServerTransaction | None) -> bool:
        """Take ``request`` if it is about a session; False leaves it to the UA core."""
        method = request.method
        if method == "CANCEL":
            return self._cancel(request, transaction)
        if request.to.tag is not None:
            session = self.sessions.get(incoming_id(request))
            if session is None:
                return False
            session.request_received(request, transaction)
            return True
        if method == "INVITE" and isinstance(transaction, ServerInviteTransaction):
            return self._invite(request, transaction)
        return False

    def _invite(self, request: Request, transaction: ServerInviteTransaction) -> bool:
        if self.on_incoming is None:
            return False
        try:
            call = IncomingCall(self, request, transaction)
            replaces = [parse_replaces(v) for v in request.headers.lines("Replaces")]
        except SipParseError as error:
            transaction.respond(request.response(400, error.reason, to_tag=secrets.token_hex(8)))
            return True
        except SdpError as error:
            # RFC 3261 21.4.26: the offer is not acceptable; the Warning says why (399).
            response = request.response(488, "Not Acceptable Here", to_tag=secrets.token_hex(8))
            text = str(error).replace('"', "'")
            response.headers.add("Warning", f'399 callbox "Bad SDP: {text}"')
            transaction.respond(response)
            return True
        if len(replaces) > 1:
            # RFC 3891 3: which dialog would it replace?
            reason = "Bad Replaces: more than one"
            transaction.respond(request.response(400, reason, to_tag=secrets.token_hex(8)))
            return True
        if replaces:
            replaced = self._replaced(replaces[0])
            if isinstance(replaced, int):
                response = request.response(
                    replaced, reason_phrase(replaced), to_tag=secrets.token_hex(8)
                )
                transaction.respond(response)
                return True
            call.replaces = replaced
        self.ringing[transaction] = call
        self.calls[call] = None
        self.on_incoming(call)
        return True

    def _cancel(self, cancel: Request, transaction: ServerTransaction | None) -> bool:
        invite = self.layer.invite_for_cancel(cancel)
        call = self.ringing.get(invite) if invite is not None else None
        if call is None or transaction is None:
            return False
        # RFC 3261 9.2: the CANCEL gets 200 whether or not it still changes anything.
        ok = cancel.response(200, "OK", to_tag=call._tag())
        ok.headers.add("Server", USER_AGENT)
        transaction.respond(ok)
        call.cancelled(cancel)
        return True

    async def call(
        self,
        targets: list[Target],
        *,
        caller: Address,
        callee: Address,
        offer: SessionDescription,
        listener: Listener,
        credentials: Credentials | None = None,
        no_answer_s: float | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> OutgoingCall:
        """Place a call: one INVITE with ``offer`` (and ``headers``) per target, all at once.

        Targets without a flow are reached over UDP, or TCP for
        ``transport=tcp``, at the URI's host (an IP address: there are no
        DNS lookups yet) and port. Raises ``SessionError`` when no target
        can be reached at all.
        """
        if not targets:
            raise SessionError("a call needs at least one target")
        flows = [(target, await self._flow_for(target)) for target in targets]
        first_target, first_flow = flows[0]
        call = OutgoingCall(
            self, first_flow, first_target.local_host, caller, callee, offer, credentials, headers
        )
        call.listener = listener
        self.calls[call] = None
        call.start(flows, no_answer_s)
        return call

    async def _flow_for(self, target: Target) -> Flow:
        if target.flow is not None:
            return target.flow
        transport = self.transport
        if transport is None:
            raise SessionError("the SIP stack has not started")
        uri = target.uri
        host = uri.param("maddr") or uri.host
        if _ip_or_none(host) is None:
            raise SessionError(f"cannot reach {uri}: only IP addresses are supported yet")
        destination = (host.strip("[]"), uri.port or 5060)
        name = (uri.param("transport") or "udp").lower()
        try:
            if name == "tcp":
                return await transport.connect_tcp(destination)
        except OSError as error:
            raise SessionError(f"cannot connect to {uri}: {error.strerror}") from None
        if name != "udp":
            raise SessionError(f"cannot reach {uri}: transport {name} is not supported here")
        return transport.udp_flow(destination)
