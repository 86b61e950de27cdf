"""Dialogs (RFC 3261 12): what two user agents share for one call leg.

A ``Dialog`` is made from an INVITE and the response that carries the
To tag, on either side (``Dialog.as_uas`` 12.1.1, ``Dialog.as_uac``
12.1.2). It holds the route set (Record-Route, reversed for the UAC), the
remote target (the peer's Contact, refreshed by re-INVITE), both CSeq
counters and the tags. ``create_request`` builds in-dialog requests (BYE,
re-INVITE, INFO) with loose or strict routing (12.2.1.1);
``receive_request`` applies 12.2.2's checks to one the peer sent.
``Dialogs`` finds the dialog of an incoming request.

The B2BUA will hold two dialogs per call; its media side reads hold from
offers (``hold_requested``: sendonly, inactive or the old 0.0.0.0 address,
RFC 3264 8.4) and DTMF from INFO (``parse_dtmf_relay``).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from appliance.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    Uri,
    parse_address,
)
from appliance.sip.sdp import SessionDescription

TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})
"""Methods whose Contact replaces the remote target (RFC 3261 12.2.2)."""

DialogId = tuple[str, str, str]
"""Call-ID, local tag, remote tag."""


class DialogState(enum.StrEnum):
    """RFC 3261 12: early (provisional with a tag), confirmed (2xx), terminated."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogError(ValueError):
    """An in-dialog request to refuse: ``status`` and ``reason`` are the response's."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _contact_uri(message: Request | Response) -> Uri:
    values = message.headers.values("Contact")
    if len(values) != 1 or values[0] == "*":
        raise SipParseError("a dialog needs exactly one Contact address")
    return parse_address(values[0], "Contact").uri


@dataclass
class Dialog:
    """One dialog's state (RFC 3261 12.1)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: Address
    remote_uri: Address
    remote_target: Uri
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    held: bool = False
    """Whether the peer's last offer put the call on hold."""

    @property
    def id(self) -> DialogId:
        """Call-ID, local tag and remote tag."""
        return self.call_id, self.local_tag, self.remote_tag

    @classmethod
    def as_uas(cls, request: Request, response: Response) -> Dialog:
        """The UAS's dialog from an INVITE and our response with a To tag (12.1.1)."""
        return cls._create(request, response, uac=False)

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The UAC's dialog from our INVITE and a response with a To tag (12.1.2)."""
        return cls._create(request, response, uac=True)

    @classmethod
    def _create(cls, request: Request, response: Response, *, uac: bool) -> Dialog:
        # The two sides mirror each other: local and remote swap, the UAC reads
        # Record-Route from the response and in reverse, the UAS from the request.
        ours, theirs = (request.from_, response.to) if uac else (response.to, request.from_)
        if ours.tag is None or theirs.tag is None:
            raise SipParseError("a dialog needs both From and To tags")
        if uac:
            route_set = list(reversed(response.headers.values("Record-Route")))
        else:
            route_set = request.headers.values("Record-Route")
        return cls(
            call_id=request.call_id,
            local_tag=ours.tag,
            remote_tag=theirs.tag,
            local_uri=Address(request.from_.uri if uac else request.to.uri),
            remote_uri=Address(request.to.uri if uac else request.from_.uri),
            remote_target=_contact_uri(response if uac else request),
            route_set=route_set,
            local_seq=request.cseq.number if uac else secrets.randbelow(2**31),
            remote_seq=None if uac else request.cseq.number,
            secure=request.uri.scheme == "sips",
            state=_state_for(response.status),
        )

    def confirm(self) -> None:
        """A 2xx arrived or was sent: the early dialog is confirmed."""
        self.state = DialogState.CONFIRMED

    def create_request(
        self, method: str, via: str, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """A request inside this dialog (12.2.1.1); ``via`` is our Via value with its branch.

        ACK for a 2xx takes the INVITE's CSeq number: pass it as
        ``create_request("ACK", ...)`` right after the INVITE, which does
        not advance the counter.
        """
        if method != "ACK":
            self.local_seq += 1
        uri, routes = self.remote_target, list(self.route_set)
        if routes and parse_address(routes[0], "Route").uri.param("lr") is None:
            # A strict router (RFC 2543) wants its own URI as Request-URI, the target last.
            uri = parse_address(routes.pop(0), "Route").uri
            routes.append(f"<{self.remote_target}>")
        headers = Headers(
            [
                ("Via", via),
                ("Max-Forwards", "70"),
                ("From", f"{self.local_uri};tag={self.local_tag}"),
                ("To", f"{self.remote_uri};tag={self.remote_tag}"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.local_seq} {method}"),
            ]
        )
        for route in routes:
            headers.add("Route", route)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return Request(headers, body, method, uri)

    def receive_request(self, request: Request) -> None:
        """Apply RFC 3261 12.2.2 to a request the peer sent in this dialog.

        Raises ``DialogError`` (500) for a CSeq lower than the last one;
        a target refresh replaces the remote target; BYE ends the dialog.
        """
        seq = request.cseq.number
        if request.method != "ACK":
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise DialogError(500, "CSeq lower than the last request's")
            self.remote_seq = seq
        if request.method in TARGET_REFRESH and "Contact" in request.headers:
            self.remote_target = _contact_uri(request)
        if request.method == "BYE":
            self.state = DialogState.TERMINATED


def _state_for(status: int) -> DialogState:
    return DialogState.CONFIRMED if 200 <= status < 300 else DialogState.EARLY


def incoming_id(request: Request) -> DialogId:
    """The id of the dialog a request from the peer belongs to (To tag is ours)."""
    return request.call_id, request.to.tag or "", request.from_.tag or ""


@dataclass
class Dialogs:
    """The dialogs a user agent holds, found by incoming requests."""

    table: dict[DialogId, Dialog] = field(default_factory=dict)

    def add(self, dialog: Dialog) -> None:
        """Hold ``dialog`` until it is removed."""
        self.table[dialog.id] = dialog

    def find(self, request: Request) -> Dialog | None:
        """The dialog of an in-dialog request, or None (then 481, RFC 3261 12.2.2)."""
        return self.table.get(incoming_id(request))

    def remove(self, dialog: Dialog) -> None:
        """Forget ``dialog``."""
        self.table.pop(dialog.id, None)


def hold_requested(offer: SessionDescription) -> bool:
    """Whether an offer puts its audio on hold (RFC 3264 8.4, and RFC 2543's c=0.0.0.0)."""
    audio = [m for m in offer.media if m.media == "audio" and m.port]
    if not audio:
        return False
    return all(
        offer.direction_of(m) in ("sendonly", "inactive") or offer.address_of(m) == "0.0.0.0"
        for m in audio
    )


@dataclass(frozen=True)
class DtmfRelay:
    """One key from an INFO with ``application/dtmf-relay`` (the de facto Cisco format)."""

    signal: str
    duration_ms: int


def parse_dtmf_relay(body: bytes) -> DtmfRelay:
    """Read ``Signal=5`` and ``Duration=160`` lines; ``ValueError`` if there is no valid key."""
    fields: dict[str, str] = {}
    for line in body.decode("ascii", "replace").splitlines():
        name, eq, value = line.partition("=")
        if eq:
            fields[name.strip().lower()] = value.strip()
    signal = fields.get("signal", "").upper()
    if len(signal) != 1 or signal not in "0123456789*#ABCD":
        raise ValueError(f"not a DTMF key: {signal!r}")
    duration = fields.get("duration", "250")
    if not duration.isdigit():
        raise ValueError(f"bad Duration: {duration!r}")
    return DtmfRelay(signal, int(duration))
