"""RTCP SR/RR with SDES CNAME (RFC 3550 6.4, 6.5): build and parse, native and reference."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from core import ReportBlock, SenderInfo, _reference

from .parity import outcome

BLOCK = ReportBlock(
    ssrc=0x11223344, fraction_lost=64, cumulative_lost=-5, extended_highest=70000,
    jitter=12, last_sr=0xAABBCCDD, delay_since_last_sr=65536,
)  # fmt: skip
SENDER = SenderInfo(ntp_timestamp=(3_900_000_000 << 32) | 0x80000000, rtp_timestamp=1234,
                    packet_count=50, octet_count=8000)  # fmt: skip


def test_sender_report_is_laid_out_as_rfc_3550_says(twin: ModuleType) -> None:
    packet = twin.build_rtcp(0xDEADBEEF, SENDER, [BLOCK], b"leg@callbox")
    sr = struct.pack("!BBHI", 0x81, 200, 12, 0xDEADBEEF) + struct.pack(
        "!IIIII", 3_900_000_000, 0x80000000, 1234, 50, 8000
    )
    block = struct.pack(
        "!IIIIII", 0x11223344, (64 << 24) | (-5 & 0xFFFFFF), 70000, 12, 0xAABBCCDD, 65536
    )
    # SDES: SSRC, CNAME item (type 1, length 11), then null padding to a word boundary.
    sdes = struct.pack("!BBHIBB", 0x81, 202, 5, 0xDEADBEEF, 1, 11) + b"leg@callbox" + b"\x00" * 3
    assert packet == sr + block + sdes


def test_receiver_report_round_trips_with_negative_cumulative_loss(twin: ModuleType) -> None:
    report = twin.parse_rtcp(twin.build_rtcp(7, None, [BLOCK, BLOCK], b"x"))
    assert report == core.RtcpReport(7, None, (BLOCK, BLOCK), b"x", False)


def test_sender_info_round_trips(twin: ModuleType) -> None:
    report = twin.parse_rtcp(twin.build_rtcp(7, SENDER, [], b""))
    assert report.sender == SENDER
    assert report.blocks == ()


def test_unknown_packets_in_a_compound_are_skipped_and_bye_is_seen(twin: ModuleType) -> None:
    app = struct.pack("!BBHI", 0x80, 204, 2, 7) + b"name"
    bye = struct.pack("!BBHI", 0x81, 203, 1, 7)
    report = twin.parse_rtcp(twin.build_rtcp(7, None, [], b"c") + app + bye)
    assert report.bye
    assert report.cname == b"c"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x81\xc9", "shorter than an RTCP header"),
        (struct.pack("!BBHI", 0x41, 201, 1, 7), "RTCP version is not 2"),
        (struct.pack("!BBHI", 0x81, 201, 9, 7), "length field runs past the end"),
        (struct.pack("!BBHI", 0x81, 201, 1, 7), "report blocks run past the RTCP packet length"),
        (struct.pack("!BBHI", 0x80, 201, 1, 7) + b"\x80", "trailing bytes"),
        (struct.pack("!BBHI", 0x80, 204, 1, 7), "no sender or receiver report"),
        (
            struct.pack("!BBHI", 0x80, 201, 1, 7)
            + struct.pack("!BBHIBB", 0x81, 202, 2, 7, 1, 9)
            + b"ab",
            "SDES item runs past",
        ),
    ],
)
def test_malformed_rtcp_is_refused_naming_the_problem(
    twin: ModuleType, data: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=f"malformed RTCP packet: .*{message}"):
        twin.parse_rtcp(data)


def test_build_refuses_what_the_format_cannot_carry(twin: ModuleType) -> None:
    with pytest.raises(ValueError, match="at most 31 report blocks"):
        twin.build_rtcp(1, None, [BLOCK] * 32, b"")
    with pytest.raises(ValueError, match="CNAME must be at most 255 bytes: got 256"):
        twin.build_rtcp(1, None, [], b"x" * 256)
    too_lost = ReportBlock(1, 0, 0x800000, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="cumulative_lost must fit 24 bits signed"):
        twin.build_rtcp(1, None, [too_lost], b"")


@given(data=st.binary(max_size=120))
def test_any_bytes_parse_like_the_reference_or_fail_with_the_same_reason(data: bytes) -> None:
    if len(data) >= 2:
        data = bytes([0x80 | (data[0] & 0x3F), 200 + data[1] % 5]) + data[2:]
    assert outcome(core._loader.impl.parse_rtcp, data) == outcome(_reference.parse_rtcp, data)
