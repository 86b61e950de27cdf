"""The parser's fast paths give the answers of the plain code they replace.

``Headers`` answers lookups from an index (rebuilt after each change) where
it used to scan its fields; Via, Address and URI parameters are read from a
table; the transport's rewritten Via is remembered instead of parsed again.
Each is checked here against a plain reference, on generated values and on
every RFC 4475 torture message the parser accepts. The parser's caches
(a line checked once is not checked again) must not change what any
message parses to, or the error it gets.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import sip
from appliance.sip.message import (
    LIST_HEADERS,
    Address,
    Headers,
    Params,
    SipParseError,
    Transport,
    Uri,
    Via,
    _parse_via,
    canonical_name,
    parse_address,
    parse_cseq,
    parse_message,
    parse_uri,
    parse_via,
    split_list,
    via_text,
)
from appliance.sip.transport import received_via
from tests.sip.strategies import (
    UNTIMED,
    addresses,
    ext_values,
    ipv4,
    params,
    requests,
    responses,
    tokens,
    uris,
    vias,
)
from tests.sip.test_properties import mutated

TORTURE = sorted((Path(__file__).parent / "torture").glob("*.dat"))
NAMES = ["Via", "v", "VIA", "From", "f", "To", "Call-ID", "i", "CSeq", "Contact", "m"]
NAMES += ["Content-Length", "l", "Route", "Record-Route", "Authorization", "Expires"]
NAMES += ["Require", "Supported", "k", "X-Absent", "Max-Forwards"]


def reference_lines(fields: list[tuple[str, str]], name: str) -> list[str]:
    """What the scanning ``Headers.lines`` returned: every value of ``name`` in order."""
    wanted = canonical_name(name)
    return [value for have, value in fields if have == wanted]


def reference_param(params: Params, name: str) -> str | None:
    """What the scanning parameter lookup returned: the first match, any case."""
    lower = name.lower()
    return next((v if v is not None else "" for k, v in params if k.lower() == lower), None)


def assert_answers_like_a_scan(headers: Headers) -> None:
    fields = list(headers)
    for name in [*NAMES, *(n for n, _ in fields)]:
        lines = reference_lines(fields, name)
        assert headers.lines(name) == lines
        assert headers.get(name) == (lines[0] if lines else None)
        assert (name in headers) == bool(lines)
        if canonical_name(name) in LIST_HEADERS:
            assert headers.values(name) == [i for line in lines for i in split_list(line)]
        else:
            assert headers.values(name) == lines


def test_every_torture_message_answers_header_lookups_like_a_scan() -> None:
    parsed = 0
    for path in TORTURE:
        with contextlib.suppress(SipParseError):
            message = parse_message(path.read_bytes())
            assert_answers_like_a_scan(message.headers)
            parsed += 1
    assert parsed > 20


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "set", "remove", "replace_first_value", "lines"]),
        st.sampled_from(NAMES),
        ext_values,
    ),
    max_size=12,
)


@UNTIMED
@given(st.one_of(requests(), responses()), OPERATIONS)
def test_header_lookups_stay_right_through_any_changes(
    message: object, operations: list[tuple[str, str, str]]
) -> None:
    assert hasattr(message, "headers")
    headers: Headers = message.headers
    for operation, name, value in operations:
        if operation == "add":
            headers.add(name, value)
        elif operation == "set":
            headers.set(name, value)
        elif operation == "remove":
            headers.remove(name)
        elif operation == "replace_first_value":
            with contextlib.suppress(KeyError):
                headers.replace_first_value(name, value)
        assert_answers_like_a_scan(headers)


@UNTIMED
@given(st.one_of(vias, uris, addresses), st.sampled_from(["branch", "BRANCH", "tag", "lr"]))
def test_parameter_lookup_finds_the_first_match_in_any_case(
    value: Via | Uri | Address, name: str
) -> None:
    assert value.param(name) == reference_param(value.params, name)
    if isinstance(value, Via):
        assert value.branch == reference_param(value.params, "branch")
    if isinstance(value, Address):
        assert value.tag == reference_param(value.params, "tag")


@UNTIMED
@given(
    st.builds(Address, uri=uris, params=params.map(lambda p: (*p, ("tag", "t1"), ("Tag", "t2")))),
)
def test_a_repeated_parameter_reads_as_its_first(address: Address) -> None:
    assert address.tag == reference_param(address.params, "tag")


def torture_vias() -> list[str]:
    found: list[str] = []
    for path in TORTURE:
        with contextlib.suppress(SipParseError):
            found.extend(parse_message(path.read_bytes()).headers.values("Via"))
    return found


@UNTIMED
@given(
    st.one_of(
        vias.map(str),
        st.tuples(vias.map(str), st.lists(st.tuples(tokens, st.none() | tokens))).map(
            lambda v: v[0] + "".join(f";{k}" if x is None else f";{k}={x}" for k, x in v[1])
        ),
        vias.map(lambda v: f"{v};rport"),
        st.sampled_from(torture_vias()),
    ),
    ipv4,
    st.integers(1, 65535),
)
def test_the_rewritten_via_is_what_parsing_its_text_gives(text: str, host: str, port: int) -> None:
    try:
        via = parse_via(text)
    except SipParseError:
        return
    rewritten = received_via(via, (host, port))
    remembered = via_text(rewritten)
    assert _parse_via(remembered) == rewritten
    assert parse_via(remembered) is rewritten


def clear_parser_caches() -> None:
    for cached in (parse_uri, parse_address, parse_cseq, sip.message._checked_line):
        cached.cache_clear()
    sip.message._vias.clear()


def outcome(data: bytes, transport: Transport) -> tuple[object, ...]:
    """What parsing gives: the message's bytes, or the error's status, reason and method."""
    try:
        message = parse_message(data, transport)
    except SipParseError as error:
        return ("error", error.status, error.reason, error.method)
    return ("message", message.to_bytes(), str(message.top_via), message.cseq, message.to)


@settings(UNTIMED, max_examples=500)
@given(mutated(), st.sampled_from(["datagram", "stream"]))
def test_a_message_parses_the_same_with_warm_and_cold_caches(
    data: bytes, transport: Transport
) -> None:
    for path in TORTURE:  # warm: every torture message's lines are remembered
        with contextlib.suppress(SipParseError):
            parse_message(path.read_bytes(), transport)
    warm = outcome(data, transport)
    clear_parser_caches()
    assert outcome(data, transport) == warm
