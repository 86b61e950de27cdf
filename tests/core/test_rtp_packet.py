"""RTP packets (RFC 3550 5.1): parse and build with bounds checks, native and reference."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from core import _reference

from .parity import outcome


def test_build_writes_the_rfc_3550_header_field_by_field(twin: ModuleType) -> None:
    packet = twin.build_rtp(
        8, 0xBEEF, 0x01020304, 0xCAFEBABE, b"\xd5" * 160, marker=True, csrc=[7, 9],
        extension=(0xBEDE, b"\x10\xaa\x00\x00"),
    )  # fmt: skip
    expected = (
        struct.pack("!BBHII", 0x80 | 0x10 | 2, 0x80 | 8, 0xBEEF, 0x01020304, 0xCAFEBABE)
        + struct.pack("!II", 7, 9)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"
        + b"\xd5" * 160
    )
    assert packet == expected


def test_parse_reads_back_every_field_built(twin: ModuleType) -> None:
    packet = twin.build_rtp(
        96, 65535, 0xFFFFFFFF, 1, b"abc", marker=True, csrc=[1, 2, 3], extension=(0x1000, b"")
    )
    assert twin.parse_rtp(packet) == core.RtpPacket(
        marker=True, payload_type=96, sequence=65535, timestamp=0xFFFFFFFF, ssrc=1,
        csrc=(1, 2, 3), extension=(0x1000, b""), payload=b"abc", padding=0,
    )  # fmt: skip


def test_padding_is_stripped_from_the_payload(twin: ModuleType) -> None:
    packet = bytearray(twin.build_rtp(0, 1, 2, 3, b"\x01\x02\x03"))
    packet[0] |= 0x20
    packet += b"\x00\x00\x03"
    parsed = twin.parse_rtp(bytes(packet))
    assert parsed.payload == b"\x01\x02\x03"
    assert parsed.padding == 3


MALFORMED = {
    "too_short": (b"\x80\x00\x00\x01", "shorter than the 12-byte RTP header"),
    "version_1": (b"\x40" + b"\x00" * 11, "RTP version is not 2"),
    "csrc_past_end": (b"\x83" + b"\x00" * 11 + b"\x00" * 8, "CSRC list runs past the end"),
    "extension_header_cut": (b"\x90" + b"\x00" * 11 + b"\x00\x00", "header extension runs past"),
    "extension_body_cut": (
        b"\x90" + b"\x00" * 11 + b"\xbe\xde\x00\x02" + b"\x00" * 4,
        "header extension runs past",
    ),
    "padding_zero": (b"\xa0" + b"\x00" * 11 + b"\x01\x00", "padding count is zero or larger"),
    "padding_too_large": (b"\xa0" + b"\x00" * 11 + b"\x01\x09", "padding count is zero or larger"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_packet_is_refused_naming_the_problem(twin: ModuleType, name: str) -> None:
    data, message = MALFORMED[name]
    with pytest.raises(ValueError, match=f"malformed RTP packet: {message}"):
        twin.parse_rtp(data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, r"payload_type must be in 0..127: got 128"),
        ({"sequence": 65536}, r"sequence must be in 0..65535: got 65536"),
        ({"ssrc": -1}, r"ssrc must be in 0..4294967295: got -1"),
        ({"csrc": list(range(16))}, r"at most 15 CSRCs fit an RTP header: got 16"),
        ({"extension": (1, b"abc")}, r"whole 32-bit words: got 3 bytes"),
    ],
)
def test_build_refuses_fields_that_do_not_fit(
    twin: ModuleType, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0, "payload": b"",
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        twin.build_rtp(**args)


@given(data=st.binary(max_size=80))
def test_any_bytes_parse_like_the_reference_or_fail_with_the_same_reason(data: bytes) -> None:
    # Bias towards version 2 so the deeper checks are reached too.
    if data:
        data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
    native = outcome(core._loader.impl.parse_rtp, data)
    reference = outcome(_reference.parse_rtp, data)
    assert native == reference
