"""Who is calling and what they dialled, from a trusted peer's INVITE.

The caller is the first of RFC 3325 ``P-Asserted-Identity``, the older
``Remote-Party-ID`` (draft-ietf-sip-privacy-04, still sent by many gateways
and carriers; ``party=calling`` only) and ``From``. Privacy is honoured:
RFC 3323 ``Privacy: id`` (or ``user``, ``header``), Remote-Party-ID's
``privacy=full`` or ``uri``, and an anonymous From (RFC 3323 4.1.1.3) mark
the caller ``restricted``; Remote-Party-ID's ``privacy=name`` drops only the
name. Numbers come out normalised (``appliance.numbers``).

These headers are believed only from peers inside the trust domain (RFC
3325 2.3), that is from trunks; the caller decides that before asking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.numbers import normalise_number
from appliance.sip.message import Address, Request, SipParseError, Uri, parse_address, split_list

IdentitySource = Literal["P-Asserted-Identity", "Remote-Party-ID", "From"]

_PRIVACY_HIDING_ID = frozenset({"id", "user", "header"})
"""RFC 3323/3325 privacy values that hide the caller's identity."""


@dataclass(frozen=True)
class CallerId:
    """Who is calling, as the peer asserts it.

    ``number`` is kept even when the caller asked for privacy (call records
    need it); ``restricted`` says it must not be shown, and ``presentation``
    is what an agent may see.
    """

    number: str
    name: str = ""
    restricted: bool = False
    source: IdentitySource = "From"

    @property
    def presentation(self) -> str:
        """The number to display: ``anonymous`` when restricted or unknown."""
        return "anonymous" if self.restricted or not self.number else self.number


def caller_id(request: Request, region: str = "CN") -> CallerId:
    """The caller of ``request``, numbers as dialled in ``region`` (see the module's docs)."""
    privacy = {
        value.strip(" \t").lower()
        for line in request.headers.lines("Privacy")
        for value in line.split(";")
    }
    restricted = bool(privacy & _PRIVACY_HIDING_ID)
    asserted = _identities(request, "P-Asserted-Identity")
    if asserted:
        return _caller(asserted[0], region, restricted, "P-Asserted-Identity")
    for address in _identities(request, "Remote-Party-ID"):
        if (address.param("party") or "calling").lower() != "calling":
            continue
        hidden = (address.param("privacy") or "off").lower()
        caller = _caller(
            address, region, restricted or hidden in ("full", "uri"), "Remote-Party-ID"
        )
        if hidden == "name":
            return CallerId(caller.number, "", caller.restricted, caller.source)
        return caller
    address = request.from_
    if (address.uri.user or "").lower() == "anonymous" or address.uri.host == "anonymous.invalid":
        return CallerId("", "", True, "From")
    return _caller(address, region, restricted, "From")


def dialled_number(uri: Uri, region: str = "CN") -> str:
    """The number in ``uri``'s user part (Request-URI or To), normalised for ``region``."""
    return normalise_number(_user(uri), region)


def _identities(request: Request, header: str) -> list[Address]:
    """The readable addresses with a user part in every ``header`` line (bad ones skipped)."""
    found = []
    for line in request.headers.lines(header):
        for value in split_list(line):
            try:
                address = parse_address(value, header)
            except SipParseError:
                continue
            if address.uri.user:
                found.append(address)
    return found


def _user(uri: Uri) -> str:
    # A user part may carry its own parameters (RFC 3261 19.1.6: ";isub=...", ";npdi").
    return (uri.user or "").split(";")[0]


def _caller(address: Address, region: str, restricted: bool, source: IdentitySource) -> CallerId:
    return CallerId(
        normalise_number(_user(address.uri), region),
        address.display_name or "",
        restricted,
        source,
    )
