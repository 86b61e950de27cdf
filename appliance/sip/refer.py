"""Transfers: REFER (RFC 3515) and Replaces (RFC 3891).

A phone transfers a call by sending REFER in its dialog: ``Refer-To``
names where the other party should go (blind transfer) and, for an
attended transfer, carries a Replaces header (escaped in the URI) naming
the dialog that the new call takes over. ``Transfer`` is one accepted
REFER: its target, its ``Replaces``, and ``notify`` for the progress
NOTIFYs (``message/sipfrag``) the transferor waits for. ``Replaces``
also matches an INVITE with a Replaces header to the dialog it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from appliance.sip.dialog import DialogId
from appliance.sip.message import Address, SipParseError, parse_address, unescape

if TYPE_CHECKING:
    from appliance.sip.session import Session


@dataclass(frozen=True)
class Replaces:
    """The dialog an INVITE or a REFER's target means to replace (RFC 3891 6.1).

    Tags are named from the point of view of the INVITE's recipient: for the
    dialog it holds, ``to_tag`` is its local tag and ``from_tag`` the remote one.
    """

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @property
    def dialog_id(self) -> DialogId:
        """The recipient's id of the dialog: Call-ID, local tag, remote tag."""
        return self.call_id, self.to_tag, self.from_tag

    def __str__(self) -> str:
        early = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{early}"


def parse_replaces(value: str) -> Replaces:
    """Parse a Replaces value; ``SipParseError`` if the Call-ID or a tag is missing."""
    call_id, *params = (part.strip(" \t") for part in value.split(";"))
    fields: dict[str, str] = {}
    for param in params:
        name, _, raw = param.partition("=")
        fields[name.strip(" \t").lower()] = raw.strip(" \t")
    if not call_id or not fields.get("to-tag") or not fields.get("from-tag"):
        raise SipParseError("Bad Replaces: needs a Call-ID, to-tag and from-tag")
    return Replaces(call_id, fields["to-tag"], fields["from-tag"], "early-only" in fields)


@dataclass(eq=False)
class Transfer:
    """A REFER the peer sent, accepted with 202: where to, and how it goes.

    ``notify`` reports progress to the transferor as NOTIFY with a
    ``message/sipfrag`` body (RFC 3515 2.4.5); a final status ends the
    implicit subscription.
    """

    session: Session
    target: Address
    """The Refer-To address, without its URI headers."""
    replaces: Replaces | None
    """For an attended transfer: the dialog the new call replaces."""
    referred_by: str | None
    done: bool = False

    def notify(self, status: int, reason: str) -> None:
        """Tell the transferor how the transfer goes (``100 Trying``, ``200 OK``, failures)."""
        if self.done or self.session.ended:
            return
        final = status >= 200
        self.done = final
        state = "terminated;reason=noresource" if final else "active;expires=60"
        self.session.send_request(
            "NOTIFY",
            f"SIP/2.0 {status} {reason}\r\n".encode(),
            "message/sipfrag;version=2.0",
            [("Event", "refer"), ("Subscription-State", state)],
        )


def parse_refer_to(value: str) -> tuple[Address, Replaces | None]:
    """The Refer-To address without its URI headers, and the Replaces they carried."""
    address = parse_address(value, "Refer-To")
    replaces = None
    for name, raw in address.uri.headers:
        if name.lower() == "replaces":
            replaces = parse_replaces(unescape(raw))
    target = replace(address, uri=replace(address.uri, headers=()))
    return target, replaces
