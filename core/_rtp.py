"""RTP/RTCP packets, RFC 3550 receive statistics and the E-model (core/rtp/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet (RFC 3550 5.1); ``extension`` is ``(profile, body)`` when present."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...]
    extension: tuple[int, bytes] | None
    payload: bytes
    padding: int


def parse_rtp(packet: Buffer) -> RtpPacket:
    """Parse an RTP packet, checking every length against the bytes given.

    Raises ``ValueError`` naming what is malformed (version, CSRC list,
    extension or padding running past the end).
    """
    return RtpPacket(*_loader.impl.parse_rtp(packet))


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: Buffer,
    *,
    marker: bool = False,
    csrc: Sequence[int] = (),
    extension: tuple[int, Buffer] | None = None,
) -> bytes:
    """Build an RTP version 2 packet (no padding).

    Raises ``ValueError`` if a field is out of range, there are more than 15
    CSRCs, or the extension body is not a whole number of 32-bit words.
    """
    result: bytes = _loader.impl.build_rtp(
        payload_type, sequence, timestamp, ssrc, payload, marker, list(csrc), extension
    )
    return result


class Disposition(IntEnum):
    """What :meth:`ReceiveStats.update` made of a packet."""

    PROBATION = 0
    IN_ORDER = 1
    DUPLICATE = 2
    REORDERED = 3
    BAD_JUMP = 4
    RESTARTED = 5


@dataclass(frozen=True)
class ReceiveSnapshot:
    """Receive statistics of one source (RFC 3550 A.1/A.3/A.8).

    ``received`` counts duplicates, as the RFC does, so ``lost`` can go
    negative; ``jitter`` is in timestamp units.
    """

    extended_highest: int
    expected: int
    received: int
    lost: int
    jitter: int
    duplicates: int
    reordered: int
    validated: bool


class ReceiveStats:
    """Per-source RTP receive statistics, as every leg keeps them.

    Sequence validation with probation and wrap (RFC 3550 A.1), loss (A.3),
    interarrival jitter (A.8), and counts of duplicates and reordered packets.
    """

    def __init__(self) -> None:
        self._stats = _loader.impl.ReceiveStats()

    def update(self, sequence: int, timestamp: int, arrival: int) -> Disposition:
        """Account one packet; ``arrival`` is its arrival time in timestamp units."""
        return Disposition(self._stats.update(sequence, timestamp, arrival))

    def snapshot(self) -> ReceiveSnapshot:
        """The statistics so far (does not start a new reporting interval)."""
        return ReceiveSnapshot(*self._stats.snapshot())

    def report(self) -> tuple[int, int, int, int]:
        """An RTCP report block's ``(fraction_lost, cumulative_lost, extended_highest, jitter)``.

        Starts a new interval: ``fraction_lost`` (/256) covers the packets since
        the previous call.
        """
        result: tuple[int, int, int, int] = self._stats.report()
        return result


@dataclass(frozen=True)
class SenderInfo:
    """The sender information of an RTCP SR (RFC 3550 6.4.1)."""

    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True)
class ReportBlock:
    """One reception report block of an SR or RR (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    extended_highest: int
    jitter: int
    last_sr: int
    delay_since_last_sr: int


@dataclass(frozen=True)
class RtcpReport:
    """The report of a compound RTCP packet: SR or RR, its CNAME, and whether it says BYE."""

    ssrc: int
    sender: SenderInfo | None
    blocks: tuple[ReportBlock, ...]
    cname: bytes
    bye: bool


def parse_rtcp(packet: Buffer) -> RtcpReport:
    """Parse a compound RTCP packet (SR/RR, SDES CNAME, BYE; other types skipped).

    Raises ``ValueError`` naming the part that is malformed.
    """
    ssrc, sender, blocks, cname, bye = _loader.impl.parse_rtcp(packet)
    return RtcpReport(
        ssrc,
        SenderInfo(*sender) if sender is not None else None,
        tuple(ReportBlock(*b) for b in blocks),
        cname,
        bye,
    )


def build_rtcp(
    ssrc: int, sender: SenderInfo | None, blocks: Sequence[ReportBlock], cname: Buffer
) -> bytes:
    """Build a compound RTCP packet: SR (with ``sender``) or RR, then SDES CNAME.

    Raises ``ValueError`` for more than 31 blocks, a CNAME over 255 bytes or a
    cumulative loss that does not fit 24 bits.
    """
    info = None
    if sender is not None:
        info = (sender.ntp_timestamp, sender.rtp_timestamp, sender.packet_count, sender.octet_count)
    rows = [
        (b.ssrc, b.fraction_lost, b.cumulative_lost, b.extended_highest, b.jitter, b.last_sr,
         b.delay_since_last_sr)
        for b in blocks
    ]  # fmt: skip
    result: bytes = _loader.impl.build_rtcp(ssrc, info, rows, cname)
    return result


@dataclass(frozen=True)
class Quality:
    """An E-model (ITU-T G.107) estimate: transmission rating R and MOS (1..4.5)."""

    r_factor: float
    mos: float


def e_model(delay_ms: float, loss_percent: float, codec: str) -> Quality:
    """Estimate call quality from one-way delay, random packet loss and the codec.

    ``codec`` is an SDP encoding name (PCMU, PCMA, G722, G729, opus); raises
    ``ValueError`` for one without E-model values.
    """
    return Quality(*_loader.impl.e_model(delay_ms, loss_percent, codec))
