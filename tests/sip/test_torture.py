"""RFC 4475 torture messages: each one parses, is answered with the RFC's status, or is dropped."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from pathlib import Path

import pytest

from appliance.sip.message import (
    Request,
    Response,
    SipParseError,
    error_response,
    parse_message,
    unescape,
)
from appliance.sip.transport import StreamFramer
from tests.sip.strategies import without_length

TORTURE = Path(__file__).parent / "torture"

# (section of RFC 4475, message) that a parser must accept.
ACCEPTED = [
    ("3.1.1.1", "wsinv"),
    ("3.1.1.2", "intmeth"),
    ("3.1.1.3", "esc01"),
    ("3.1.1.4", "escnull"),
    ("3.1.1.5", "esc02"),
    ("3.1.1.6", "lwsdisp"),
    ("3.1.1.7", "longreq"),
    ("3.1.1.8", "dblreq"),
    ("3.1.1.9", "semiuri"),
    ("3.1.1.10", "transports"),
    ("3.1.1.11", "mpart01"),
    ("3.1.1.12", "unreason"),
    ("3.1.1.13", "noreason"),
    ("3.2.1", "badbranch"),
    ("3.3.2", "unkscm"),
    ("3.3.3", "novelsc"),
    ("3.3.4", "unksm2"),
    ("3.3.5", "bext01"),
    ("3.3.6", "invut"),
    ("3.3.7", "regaut01"),
    ("3.3.10", "bcast"),
    ("3.3.11", "zeromf"),
    ("3.3.12", "cparam01"),
    ("3.3.13", "cparam02"),
    ("3.3.14", "regescrt"),
    ("3.3.15", "sdp01"),
    ("3.4.1", "inv2543"),
]

# (section, message, status, start of the reason phrase) for requests the
# parser must answer with an error response.
REJECTED = [
    ("3.1.2.1", "badinv01", 400, "Bad Via: empty value"),
    ("3.1.2.2", "clerr", 400, "Content-Length larger than message body"),
    ("3.1.2.3", "ncl", 400, "Bad Content-Length"),
    ("3.1.2.4", "scalar02", 400, "Bad CSeq: sequence number too large"),
    ("3.1.2.6", "quotbal", 400, "Bad To: unterminated quoted string"),
    ("3.1.2.7", "ltgtruri", 400, "Bad Request-URI"),
    ("3.1.2.8", "lwsruri", 400, "Malformed Request-Line"),
    ("3.1.2.9", "lwsstart", 400, "Malformed Request-Line"),
    ("3.1.2.10", "trws", 400, "Malformed Request-Line"),
    ("3.1.2.11", "escruri", 400, "Bad Request-URI: headers are not allowed"),
    ("3.1.2.12", "baddate", 400, "Bad Date"),
    ("3.1.2.13", "regbadct", 400, "Bad Contact: a URI with headers must be enclosed in <>"),
    ("3.1.2.14", "badaspec", 400, "Bad To: whitespace inside <URI>"),
    ("3.1.2.15", "baddn", 400, "Bad From"),
    ("3.1.2.16", "badvers", 505, "Version Not Supported"),
    ("3.1.2.17", "mismatch01", 400, "CSeq method does not match Request-Line"),
    ("3.1.2.18", "mismatch02", 400, "CSeq method does not match Request-Line"),
    ("3.3.1", "insuf", 400, "Missing To header field"),
    ("3.3.8", "multi01", 400, "More than one"),
    ("3.3.9", "mcl01", 400, "More than one Content-Length header field"),
]

# Broken responses: nothing can answer them, they are dropped.
DROPPED = [
    ("3.1.2.5", "scalarlg", "Bad CSeq: sequence number too large"),
    ("3.1.2.19", "bigcode", "Malformed Status-Line"),
]


def torture(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def test_every_data_file_has_an_expected_outcome() -> None:
    expected = {n for _, n in ACCEPTED} | {n for _, n, *_ in REJECTED} | {n for _, n, _ in DROPPED}
    assert {p.stem for p in TORTURE.glob("*.dat")} == expected


@pytest.mark.parametrize(("section", "name"), ACCEPTED)
def test_valid_torture_message_is_accepted_and_round_trips(section: str, name: str) -> None:
    message = parse_message(torture(name))
    again = parse_message(message.to_bytes())
    assert again.start_line() == message.start_line()
    # Serialising adds Content-Length where the sender left it out (inv2543).
    assert without_length(again.headers) == without_length(message.headers)
    assert again.body == message.body


@pytest.mark.parametrize(("section", "name", "status", "reason"), REJECTED)
def test_invalid_torture_request_is_answered_with_reason(
    section: str, name: str, status: int, reason: str
) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(torture(name))
    assert caught.value.status == status
    assert caught.value.reason.startswith(reason)
    response = error_response(caught.value)
    assert response is not None
    assert (response.status, response.reason) == (status, caught.value.reason)
    assert response.headers.lines("Via")
    assert response.to_bytes().startswith(f"SIP/2.0 {status} {caught.value.reason}\r\n".encode())


@pytest.mark.parametrize(("section", "name", "reason"), DROPPED)
def test_invalid_torture_response_is_dropped(section: str, name: str, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(torture(name))
    assert caught.value.reason.startswith(reason)
    assert error_response(caught.value) is None


def test_wsinv_folding_escapes_and_compact_forms_are_understood() -> None:
    request = parse_message(torture("wsinv"))
    assert isinstance(request, Request)
    assert request.method == "INVITE"
    assert request.uri.param("unknownparam") == ""
    assert request.to.tag == "1918181833n"
    assert request.from_.display_name == 'J Rosenberg \\"'
    assert request.from_.tag == "98asjd8"
    assert request.headers.get("Max-Forwards") == "0068"
    assert (request.cseq.number, request.cseq.method) == (9, "INVITE")
    vias = request.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("Subject") == ""
    assert request.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert request.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = request.headers.values("Contact")
    assert len(contact) == 1
    assert len(request.body) == 150


def test_intmeth_keeps_control_characters_and_utf8_byte_exact() -> None:
    data = torture("intmeth")
    request = parse_message(data)
    assert isinstance(request, Request)
    assert request.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert request.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert request.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert request.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert request.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert request.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert request.from_.tag == "_token~1'+`*%!-."
    assert request.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert request.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_decode_only_where_the_grammar_has_them() -> None:
    esc01 = parse_message(torture("esc01"))
    assert isinstance(esc01, Request)
    assert unescape(esc01.uri.user or "") == "sips:user@example.com"
    assert unescape(esc01.to.uri.user or "") == "user"
    esc02 = parse_message(torture("esc02"))
    assert isinstance(esc02, Request)
    assert esc02.method == "RE%47IST%45R"
    assert esc02.to.display_name == "%Z%45"
    assert len(esc02.headers.values("Contact")) == 2
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_escaped_nulls_keep_two_contacts_distinct() -> None:
    request = parse_message(torture("escnull"))
    users = [unescape(c[1:].split("@")[0][4:]) for c in request.headers.values("Contact")]
    assert users == ["\x00", "\x00\x00"]


def test_datagram_bytes_past_content_length_are_ignored() -> None:
    request = parse_message(torture("dblreq"))
    assert isinstance(request, Request)
    assert request.method == "REGISTER"
    assert request.body == b""


def test_long_request_keeps_every_via_in_order() -> None:
    request = parse_message(torture("longreq"))
    hosts = [via.host for via in request.vias]
    assert len(hosts) == 34
    assert hosts[0] == "sip33.example.com"
    assert hosts[-1] == "host.example.com"
    assert request.vias[-1].received == "192.0.2.5"


def test_reason_phrase_may_be_utf8_or_empty() -> None:
    unreason = parse_message(torture("unreason"))
    assert isinstance(unreason, Response)
    assert unreason.reason.endswith("простое")
    noreason = parse_message(torture("noreason"))
    assert isinstance(noreason, Response)
    assert (noreason.status, noreason.reason) == (100, "")


def test_ack_with_a_parse_error_is_never_answered() -> None:
    data = torture("mismatch01").replace(b"OPTIONS sip:", b"ACK sip:", 1)
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert error_response(caught.value) is None


# mpart01 (3.1.1.11): the RFC prints its binary body part in a form that cannot be
# read back byte for byte, so the .dat holds the RFC's header lines and a body made
# here (torture/README.md): the part is as long as the RFC's (342 octets, so
# Content-Length stays 553), DER framing like its PKCS#7 signedData, then octets
# that trip a careless framer, then SHA-256 output.
MPART01_BOUNDARY = b"--7a9cbec02ceef655"


def mpart01_binary_part() -> bytes:
    """The 342 octets of mpart01's application/octet-stream part."""
    # ContentInfo SEQUENCE, the signedData OID (RFC 5652), [0], SignedData SEQUENCE.
    der = bytes.fromhex("3082015206092a864886f70d010702a08201433082013f")
    awkward = b"\x00\r\n\r\n\x00\r\r\n\n\xff\xfe\x80--\r\n"
    digests = b"".join(hashlib.sha256(b"RFC 4475 mpart01 %d" % n).digest() for n in range(10))
    return (der + awkward + digests)[:342]


def mpart01_body() -> bytes:
    """mpart01's body (553 octets) as torture/README.md says it was made."""
    return b"\r\n".join(
        [
            MPART01_BOUNDARY,
            b"Content-Type: text/plain",
            b"Content-Transfer-Encoding: binary",
            b"",
            b"Hello",
            MPART01_BOUNDARY,
            b"Content-Type: application/octet-stream",
            b"Content-Transfer-Encoding: binary",
            b"",
            mpart01_binary_part(),
            MPART01_BOUNDARY + b"--",
            b"",
        ]
    )


def test_mpart01_is_the_rfcs_message_with_its_binary_part_made_as_documented() -> None:
    head, body = torture("mpart01").split(b"\r\n\r\n", 1)
    assert head.endswith(b"\r\nContent-Length: 553")
    assert body == mpart01_body()
    assert len(body) == 553
    part = mpart01_binary_part()
    assert all(octets in part for octets in (b"\x00", b"\r\n\r\n", b"\xff", b"\r\r\n\n"))
    assert MPART01_BOUNDARY not in part


def test_mpart01_binary_body_arrives_whole_over_datagram_and_stream() -> None:
    data = torture("mpart01")
    request = parse_message(data)
    assert isinstance(request, Request)
    assert request.method == "MESSAGE"
    assert request.body == data[data.index(b"\r\n\r\n") + 4 :]
    # The body is the multipart document it says it is: its binary part intact.
    content_type = request.headers.get("Content-Type") or ""
    mime = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
    )
    parts = [part.get_payload(decode=True) for part in mime.iter_parts()]
    assert parts == [b"Hello", mpart01_binary_part()]
    # Over TCP the framer cuts by Content-Length, not at a CRLF of the body: two
    # messages fed in odd slices come out as two whole messages.
    framer = StreamFramer()
    stream = data + data
    frames = [
        frame
        for start in range(0, len(stream), 7)
        for frame in framer.feed(stream[start : start + 7])
    ]
    assert frames == [data, data]
    assert parse_message(frames[1], "stream").body == request.body
