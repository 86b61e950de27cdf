"""SDP parsing and RFC 3264 offer/answer for audio."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sip.sdp import (
    DEFAULT_PREFERENCE,
    DIRECTIONS,
    Codec,
    Direction,
    SdpError,
    create_answer,
    create_offer,
    negotiate,
    parse_sdp,
)
from tests.sip.strategies import UNTIMED

# RFC 3264 10.1: Alice offers audio (PCMU, PCMA, iLBC) and video.
ALICE_OFFER = b"""v=0\r
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r
s=\r
c=IN IP4 host.atlanta.example.com\r
t=0 0\r
m=audio 49170 RTP/AVP 0 8 97\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:97 iLBC/8000\r
m=video 51372 RTP/AVP 31 32\r
a=rtpmap:31 H261/90000\r
a=rtpmap:32 MPV/90000\r
"""

PHONE_OFFER = b"""v=0\r
o=- 1 1 IN IP4 192.0.2.50\r
s=call\r
c=IN IP4 192.0.2.50\r
t=0 0\r
m=audio 40000 RTP/AVP 96 0 101\r
a=rtpmap:96 opus/48000/2\r
a=fmtp:96 useinbandfec=1\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-15\r
a=ptime:30\r
a=rtcp-mux\r
a=sendonly\r
"""


def test_answer_lists_common_codecs_in_our_order_and_rejects_video() -> None:
    answer = create_answer(parse_sdp(ALICE_OFFER), "192.0.2.10", 20000)
    audio, video = answer.media
    assert (audio.port, audio.formats) == (20000, ["8", "0"])
    assert [c.name for c in audio.codecs] == ["PCMA", "PCMU"]
    assert (video.port, video.formats) == (0, ["31", "32"])
    agreed = negotiate(parse_sdp(ALICE_OFFER), parse_sdp(answer.to_bytes()))
    assert agreed is not None
    assert (agreed.codec.name, agreed.remote_address, agreed.remote_port) == (
        "PCMA",
        "192.0.2.10",
        20000,
    )


def test_dynamic_payload_types_and_telephone_event_keep_the_offers_numbers() -> None:
    answer = create_answer(parse_sdp(PHONE_OFFER), "192.0.2.10", 20000)
    codecs = answer.media[0].codecs
    assert [(c.payload_type, c.name, c.clock_rate, c.channels) for c in codecs] == [
        (0, "PCMU", 8000, 1),
        (96, "opus", 48000, 2),
        (101, "telephone-event", 8000, 1),
    ]
    assert codecs[-1].fmtp == "0-15"
    assert codecs[1].fmtp == "useinbandfec=1"


def test_ptime_rtcp_mux_and_direction_follow_the_offer() -> None:
    answer = create_answer(parse_sdp(PHONE_OFFER), "192.0.2.10", 20000)
    media = answer.media[0]
    assert media.ptime == 30
    assert media.rtcp_mux
    assert answer.direction_of(media) == "recvonly"


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_direction_is_mirrored_as_rfc3264_6_1_says(offered: Direction, answered: Direction) -> None:
    offer = parse_sdp(create_offer("192.0.2.1", 30000, direction=offered).to_bytes())
    answer = create_answer(offer, "192.0.2.10", 20000)
    assert answer.direction_of(answer.media[0]) == answered


def test_session_level_direction_applies_to_streams_without_their_own() -> None:
    offer = parse_sdp(ALICE_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=recvonly\r\n"))
    assert offer.direction_of(offer.media[0]) == "recvonly"
    answer = create_answer(offer, "192.0.2.10", 20000)
    assert answer.direction_of(answer.media[0]) == "sendonly"


def test_hold_answers_sendonly_and_inactive_stays_inactive() -> None:
    offer = parse_sdp(create_offer("192.0.2.1", 30000).to_bytes())
    held = create_answer(offer, "192.0.2.10", 20000, hold=True)
    assert held.direction_of(held.media[0]) == "sendonly"
    recv_only = parse_sdp(create_offer("192.0.2.1", 30000, direction="sendonly").to_bytes())
    held = create_answer(recv_only, "192.0.2.10", 20000, hold=True)
    assert held.direction_of(held.media[0]) == "inactive"


def test_no_common_codec_rejects_the_stream() -> None:
    offer = parse_sdp(
        ALICE_OFFER.replace(b"0 8 97", b"97").replace(b"a=rtpmap:0 PCMU/8000\r\n", b"")
    )
    answer = create_answer(offer, "192.0.2.10", 20000)
    assert [m.port for m in answer.media] == [0, 0]
    assert negotiate(offer, answer) is None


def test_rtcp_mux_only_when_both_sides_offer_it() -> None:
    offer = parse_sdp(create_offer("192.0.2.1", 30000, rtcp_mux=False).to_bytes())
    answer = create_answer(offer, "192.0.2.10", 20000)
    assert not answer.media[0].rtcp_mux
    agreed = negotiate(offer, answer)
    assert agreed is not None
    assert not agreed.rtcp_mux


def test_our_offer_lists_every_codec_and_telephone_event_and_negotiates() -> None:
    offer = create_offer("192.0.2.1", 30000)
    parsed = parse_sdp(offer.to_bytes())
    names = [c.name for c in parsed.media[0].codecs]
    assert names == [c.name for c in DEFAULT_PREFERENCE] + ["telephone-event"]
    pcmu_only = (Codec("PCMU", 8000, payload_type=0),)
    answer = create_answer(parsed, "192.0.2.10", 20000, pcmu_only)
    agreed = negotiate(parsed, parse_sdp(answer.to_bytes()))
    assert agreed is not None
    assert agreed.codec.name == "PCMU"
    assert agreed.telephone_event is not None
    assert agreed.telephone_event.payload_type == 101
    assert (agreed.ptime, agreed.direction, agreed.rtcp_mux) == (20, "sendrecv", True)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"o=- 1 1 IN IP4 192.0.2.1\r\n", "first line must be v=0"),
        (b"v=0\r\ns=-\r\n", "o= must follow v="),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio x RTP/AVP 0\r\n", "bad m="),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 300.1.1.1 x\r\n", "bad c="),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nx=unknown\r\n", "unknown line"),
        (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n"
            b"m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus\r\n",
            "bad a=rtpmap",
        ),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n", "no c= line"),
    ],
)
def test_bad_sdp_raises_sdp_error_naming_the_line(text: bytes, problem: str) -> None:
    with pytest.raises(SdpError, match=problem):
        parse_sdp(text)


@UNTIMED
@given(
    st.lists(st.sampled_from(DEFAULT_PREFERENCE), min_size=1, max_size=5, unique=True),
    st.integers(1024, 65534),
    st.sampled_from([10, 20, 30, 40]),
    st.sampled_from(DIRECTIONS),
    st.booleans(),
)
def test_offers_round_trip_through_text(
    codecs: list[Codec], port: int, ptime: int, direction: Direction, rtcp_mux: bool
) -> None:
    offer = create_offer(
        "2001:db8::5", port, tuple(codecs), ptime=ptime, direction=direction, rtcp_mux=rtcp_mux
    )
    parsed = parse_sdp(offer.to_bytes())
    assert parsed.to_bytes() == offer.to_bytes()
    media = parsed.media[0]
    assert [c.name for c in media.codecs][:-1] == [c.name for c in codecs]
    assert (media.port, media.ptime, media.direction, media.rtcp_mux) == (
        port,
        ptime,
        direction,
        rtcp_mux,
    )
    assert parsed.address_of(media) == "2001:db8::5"
