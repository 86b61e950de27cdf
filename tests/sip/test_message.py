"""SIP message parsing and serialising beyond the torture set: URIs, Via, framing, limits."""

from __future__ import annotations

import pytest

from appliance.sip.message import (
    MAX_MESSAGE_BYTES,
    Address,
    Request,
    Response,
    SipParseError,
    Uri,
    parse_address,
    parse_message,
    parse_uri,
    parse_via,
)

OPTIONS = (
    b"OPTIONS sip:callbox@[2001:db8::1]:5070;transport=tcp SIP/2.0\r\n"
    b"v: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: <sip:callbox@example.com>\r\n"
    b'f: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"i: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"k: replaces, timer\r\n"
    b"Supported: path\r\n"
    b"Accept: application/sdp\r\n"
    b"l: 0\r\n"
    b"\r\n"
)


def test_compact_forms_read_as_their_long_names() -> None:
    request = parse_message(OPTIONS)
    assert isinstance(request, Request)
    assert request.call_id == "a84b4c76e66710@pc33.example.com"
    assert request.to.uri == Uri("sip", "example.com", "callbox")
    assert request.from_ == Address(
        Uri("sip", "example.com", "alice"), "Alice", (("tag", "1928301774"),)
    )


def test_list_headers_split_over_lines_and_commas() -> None:
    request = parse_message(OPTIONS)
    assert request.headers.values("Supported") == ["replaces", "timer", "path"]


def test_ipv6_hosts_in_request_uri_and_via() -> None:
    request = parse_message(OPTIONS)
    assert isinstance(request, Request)
    assert (request.uri.host, request.uri.port) == ("[2001:db8::1]", 5070)
    assert request.uri.param("transport") == "tcp"
    via = request.top_via
    assert (via.host, via.port, via.rport) == ("[2001:db8::9]", 5060, True)
    assert str(request.uri) == "sip:callbox@[2001:db8::1]:5070;transport=tcp"


def test_via_received_and_rport_are_filled_in_place() -> None:
    via = parse_via("SIP/2.0/UDP pc33.example.com;rport;branch=z9hG4bKnashds8")
    filled = via.with_params(received="192.0.2.4", rport="40001")
    assert str(filled) == (
        "SIP/2.0/UDP pc33.example.com;rport=40001;branch=z9hG4bKnashds8;received=192.0.2.4"
    )
    assert filled.rport == 40001


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("SIP/2.0/UDP pc33.example.com;received=999.1.1.1", "invalid IPv4 address"),
        ("SIP/2.0/UDP [2001:db8::zz]", "invalid IPv6 address"),
        ("SIP/2.0/UDP pc33.example.com:70000", "out of range"),
        ("SIP/2.0/UDP pc33.example.com;rport=x", "invalid rport"),
        ("SIP/2.0 pc33.example.com", "expected '/'"),
    ],
)
def test_bad_via_is_rejected_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(SipParseError, match=problem):
        parse_via(text)


def test_tel_and_sips_uris_parse_and_serialise() -> None:
    tel = parse_uri("tel:+86-10-1234-5678;phone-context=example.com")
    assert (tel.scheme, tel.user, tel.param("phone-context")) == (
        "tel",
        "+86-10-1234-5678",
        "example.com",
    )
    assert str(tel) == "tel:+86-10-1234-5678;phone-context=example.com"
    sips = parse_uri("sips:agent:secret@callbox.example.com;lr?Subject=hi&Priority=urgent")
    assert (sips.user, sips.password, sips.param("lr")) == ("agent", "secret", "")
    assert sips.headers == (("Subject", "hi"), ("Priority", "urgent"))
    assert str(sips) == "sips:agent:secret@callbox.example.com;lr?Subject=hi&Priority=urgent"


def test_name_addr_with_uri_parameters_keeps_them_apart_from_header_parameters() -> None:
    address = parse_address('"Queue 1" <sip:q1@example.com;user=phone>;expires=60', "Contact")
    assert address.uri.param("user") == "phone"
    assert address.param("expires") == "60"
    assert parse_address(str(address)) == address


def test_stream_requires_content_length() -> None:
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        parse_message(OPTIONS.replace(b"l: 0\r\n", b""), "stream")


def test_stream_content_length_must_match_the_framed_body() -> None:
    with pytest.raises(SipParseError, match="does not match"):
        parse_message(OPTIONS + b"extra", "stream")


def test_datagram_body_is_trimmed_to_content_length() -> None:
    data = OPTIONS.replace(b"l: 0", b"l: 4") + b"bodyjunk"
    assert parse_message(data).body == b"body"


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    data = OPTIONS.replace(b"l: 0\r\n", b"") + b"body"
    assert parse_message(data).body == b"body"


def test_oversized_message_is_rejected() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(OPTIONS + b"x" * MAX_MESSAGE_BYTES)
    assert caught.value.status == 513


def test_too_many_header_fields_are_rejected() -> None:
    many = b"".join(b"X-Filler: %d\r\n" % i for i in range(300))
    with pytest.raises(SipParseError, match="Too many header fields"):
        parse_message(OPTIONS.replace(b"l: 0\r\n", many + b"l: 0\r\n"))


def test_missing_blank_line_is_rejected() -> None:
    with pytest.raises(SipParseError, match="Missing empty line"):
        parse_message(OPTIONS[:-2])


def test_built_response_serialises_with_content_length() -> None:
    response = Response(status=200, reason="OK", body=b"v=0\r\n")
    response.headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1")
    assert response.to_bytes() == (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"Content-Length: 5\r\n\r\nv=0\r\n"
    )
