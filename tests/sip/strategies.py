"""Hypothesis strategies for well-formed SIP messages (RFC 3261 grammar, a useful subset).

Also the small helpers the SIP tests share.
"""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from appliance.sip.message import Address, Headers, Request, Response, Uri, Via

UNTIMED = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
"""Settings for every property test here: the box is shared, so no test may fail on time."""

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
USER_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = (
    st.lists(labels, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda h: not h.split(".")[-1][0].isdigit())
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{ipaddress.IPv6Address(a).compressed}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(0, 65535)
escaped = st.integers(0, 255).map(lambda b: f"%{b:02X}")
users = st.lists(st.one_of(st.text(USER_CHARS, min_size=1, max_size=6), escaped), min_size=1).map(
    "".join
)
params = st.lists(st.tuples(tokens, st.none() | tokens), max_size=3).map(tuple)
PARAM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/:&+$"
paramchars = st.lists(
    st.one_of(st.text(PARAM_CHARS, min_size=1, max_size=6), escaped), min_size=1, max_size=3
).map("".join)
uri_params = st.lists(st.tuples(paramchars, st.none() | paramchars), max_size=3).map(tuple)

sip_uris = st.builds(
    Uri,
    scheme=st.sampled_from(["sip", "sips"]),
    host=hosts,
    user=st.none() | users,
    port=ports,
    params=uri_params,
)
tel_uris = st.builds(
    Uri, scheme=st.just("tel"), user=st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True)
)
uris = st.one_of(sip_uris, tel_uris)

# Display names: any text a quoted-string can carry (no CR, LF; NUL and DEL escaped).
display_names = st.none() | st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=20
)
addresses = st.builds(Address, uri=uris, display_name=display_names, params=params)
vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP"]),
    host=hosts,
    port=ports,
    params=st.tuples(tokens.map(lambda t: "z9hG4bK" + t)).map(lambda b: (("branch", b[0]),)),
)
# Extension header values: printable text without leading or trailing whitespace.
ext_values = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs", "Cc"]), max_size=40
).map(lambda v: v.strip(" \t"))
ext_headers = st.lists(st.tuples(tokens.map(lambda t: "X-" + t), ext_values), max_size=4)
bodies = st.binary(max_size=200)


@st.composite
def headers(draw: st.DrawFn, method: str) -> Headers:
    """The mandatory fields plus extension headers, as a UA would send them."""
    fields = Headers()
    for via in draw(st.lists(vias, min_size=1, max_size=3)):
        fields.add("Via", str(via))
    fields.add("From", str(draw(addresses)))
    fields.add("To", str(draw(addresses)))
    fields.add("Call-ID", draw(tokens) + "@" + draw(hostnames))
    fields.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    fields.add("Max-Forwards", str(draw(st.integers(0, 255))))
    if draw(st.booleans()):
        fields.add("Contact", str(draw(addresses)))
    if draw(st.booleans()):
        # Content-Length before other fields: framing must not assume it comes last.
        fields.add("Content-Length", "0")
    for name, value in draw(ext_headers):
        fields.add(name, value)
    return fields


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A well-formed request."""
    method = draw(st.sampled_from(["INVITE", "ACK", "OPTIONS", "BYE", "CANCEL"]) | tokens)
    return Request(draw(headers(method)), draw(bodies), method, draw(sip_uris))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    """A well-formed response."""
    reason = draw(ext_values)
    return Response(draw(headers(draw(tokens))), draw(bodies), draw(st.integers(100, 699)), reason)


def without_length(headers: Headers) -> list[tuple[str, str]]:
    """Header fields but Content-Length, which serialising adds or rewrites."""
    return [(name, value) for name, value in headers if name != "Content-Length"]
