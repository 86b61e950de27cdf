"""Callbox media core: the compiled engine that every call's audio passes through.

This package is the public, typed surface. The work is done by a private C++
extension (``core._core``, built by setup.py). Two environment switches pick
another implementation at import time:

- ``CALLBOX_CORE=sanitize``: the AddressSanitizer/UBSan build
  (``core._core_sanitize``, built with ``CALLBOX_SANITIZE=1``);
- ``CALLBOX_CORE=python``: the pure-Python reference twin (``core._reference``),
  slow but obvious, used to test the compiled kernels against.

Audio is 16-bit signed linear PCM in native byte order, 8 kHz unless a
function says otherwise. Functions take any bytes-like object.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "IMPLEMENTATION",
    "alaw_decode",
    "alaw_encode",
    "library_versions",
    "ulaw_decode",
    "ulaw_encode",
]
__all__ += [  # media engine: RTP/RTCP, statistics, E-model (core/rtp/)
    "Disposition",
    "Quality",
    "ReceiveSnapshot",
    "ReceiveStats",
    "ReportBlock",
    "RtcpReport",
    "RtpPacket",
    "SenderInfo",
    "build_rtcp",
    "build_rtp",
    "e_model",
    "parse_rtcp",
    "parse_rtp",
]
__all__ += ["Engine", "LegStats", "MediaEvent", "RtpLeg"]  # media engine (core/engine/)
__all__ += ["JitterBuffer", "JitterDecision", "JitterPut", "JitterStats", "Playout"]  # core/jitter/


def _load() -> tuple[str, ModuleType]:
    choice = os.environ.get("CALLBOX_CORE", "native")
    if choice == "native":
        from core import _core

        return choice, _core
    if choice == "sanitize":
        from core import _core_sanitize

        return choice, _core_sanitize
    if choice == "python":
        from core import _reference

        return choice, _reference
    raise ImportError(
        f"CALLBOX_CORE={choice!r} is not an implementation: use native, sanitize or python"
    )


IMPLEMENTATION, _impl = _load()
"""Which implementation is loaded: ``native``, ``sanitize`` or ``python``."""


def alaw_encode(pcm: Buffer) -> bytes:
    """Encode 16-bit linear PCM to G.711 A-law, one byte per sample.

    Raises ``ValueError`` if ``pcm`` is not a whole number of 16-bit samples.
    """
    result: bytes = _impl.alaw_encode(pcm)
    return result


def ulaw_encode(pcm: Buffer) -> bytes:
    """Encode 16-bit linear PCM to G.711 u-law, one byte per sample.

    Raises ``ValueError`` if ``pcm`` is not a whole number of 16-bit samples.
    """
    result: bytes = _impl.ulaw_encode(pcm)
    return result


def alaw_decode(codes: Buffer) -> bytes:
    """Decode G.711 A-law bytes to 16-bit linear PCM (two bytes per code)."""
    result: bytes = _impl.alaw_decode(codes)
    return result


def ulaw_decode(codes: Buffer) -> bytes:
    """Decode G.711 u-law bytes to 16-bit linear PCM (two bytes per code)."""
    result: bytes = _impl.ulaw_decode(codes)
    return result


def library_versions() -> dict[str, str]:
    """Versions of the C libraries the core is linked with (empty for the Python twin)."""
    result: dict[str, str] = _impl.library_versions()
    return result


# --- Media engine: RTP/RTCP packets, receive statistics, E-model (core/rtp/) -----------


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
    return RtpPacket(*_impl.parse_rtp(packet))


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
    result: bytes = _impl.build_rtp(
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
        self._stats = _impl.ReceiveStats()

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
    ssrc, sender, blocks, cname, bye = _impl.parse_rtcp(packet)
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
    result: bytes = _impl.build_rtcp(ssrc, info, rows, cname)
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
    return Quality(*_impl.e_model(delay_ms, loss_percent, codec))


# --- Media engine: workers, RTP legs, bridges, events (core/engine/) ---------------------

# Static payload types (RFC 3551); dynamic ones (opus) must be given.
_STATIC_PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "G729": 18}


@dataclass(frozen=True)
class LegStats:
    """Counters and quality of one leg: RFC 3550 receive statistics, RTCP, E-model.

    ``lost`` and ``expected`` cover every source the leg has heard (a new SSRC
    starts a new RFC 3550 source); ``malformed`` counts datagrams that were not
    valid RTP/RTCP and ``foreign`` RTP from an address the leg has not latched
    to. ``rtt_ms`` and ``remote_fraction_lost`` are ``None`` until the far end's
    RTCP says. ``mos`` is the E-model estimate for the audio this leg receives.
    """

    local_ssrc: int
    remote_ssrc: int
    remote: str
    packets_received: int
    octets_received: int
    packets_sent: int
    octets_sent: int
    malformed: int
    foreign: int
    expected: int
    lost: int
    duplicates: int
    reordered: int
    jitter_ms: float
    rtcp_sent: int
    rtcp_received: int
    rtt_ms: float | None
    remote_fraction_lost: int | None
    remote_cumulative_lost: int
    remote_jitter_ms: float
    r_factor: float
    mos: float

    @classmethod
    def _from_core(cls, values: dict[str, Any]) -> LegStats:
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class MediaEvent:
    """Something a leg reports: ``rtp_timeout``, ``rtp_resumed``, ``latched`` or ``bye``.

    ``detail`` is the new remote address for ``latched``, else empty.
    """

    kind: str
    leg: int
    detail: str


class RtpLeg:
    """A handle on one RTP leg of an :class:`Engine` (created by :meth:`Engine.create_rtp_leg`)."""

    def __init__(self, engine: Engine, leg_id: int, local_port: int, local_rtcp_port: int) -> None:
        self.engine = engine
        self.id = leg_id
        self.local_port = local_port
        """The even local RTP port."""
        self.local_rtcp_port = local_rtcp_port
        """``local_port + 1``, or ``local_port`` itself with rtcp-mux."""

    def __repr__(self) -> str:
        return f"<RtpLeg {self.id} port {self.local_port}>"

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """Where to send RTP (and RTCP: ``port + 1`` by default, ``port`` with rtcp-mux).

        The leg latches to the address RTP actually comes from (symmetric RTP).
        Raises ``ValueError`` for an address that is not IPv4 or a bad port.
        """
        _check_port(port, "port")
        if rtcp_port is None:
            rtcp_port = port if self.local_rtcp_port == self.local_port else port + 1
        _check_port(rtcp_port, "rtcp_port")
        self.engine._core.set_remote(self.id, host, port, rtcp_port)

    def hold(self, on_hold: bool = True) -> None:
        """Put the leg on hold (no RTP timeout while held) or take it off hold."""
        self.engine._core.set_hold(self.id, on_hold)

    def send(self, payload: Buffer, timestamp: int, *, marker: bool = False) -> None:
        """Queue one frame of codec payload for the far end, sent at the next tick.

        ``timestamp`` is in the codec's clock units; the leg numbers packets itself.
        Raises ``ValueError`` for a payload that does not fit one datagram.
        """
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp must be in 0..4294967295: got {timestamp}")
        self.engine._core.send(self.id, payload, timestamp, marker)

    def stats(self) -> LegStats:
        """The leg's statistics and quality now."""
        return LegStats._from_core(self.engine._core.stats(self.id))

    def close(self) -> LegStats:
        """Close the leg (its ports are freed) and return its final statistics."""
        return LegStats._from_core(self.engine._core.close_leg(self.id))


def _check_port(port: int, name: str) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"{name} must be in 1..65535: got {port}")


class Engine:
    """The real-time media engine: worker threads that carry every call's RTP.

    Each worker is one thread with its own epoll set and a 20 ms tick; a leg
    lives on one worker, and legs to be bridged must share one (create the
    second with ``beside=`` the first). Commands are applied at the worker's
    next tick; calls that wait for that release the GIL. Events arrive through
    :meth:`fileno` (readable when :meth:`poll_events` has something), which is
    what ``appliance.media`` hands to the asyncio loop.

    ``workers`` of ``None`` or 0 starts one per CPU core. Raises ``ValueError``
    for a bad worker count, port range or address, and ``RuntimeError`` under
    ``CALLBOX_CORE=python`` (the twin has no engine).
    """

    def __init__(
        self,
        workers: int | None = None,
        port_min: int = 20000,
        port_max: int = 29999,
        host: str = "0.0.0.0",
    ) -> None:
        if not hasattr(_impl, "Engine"):
            raise RuntimeError(
                f"the media engine needs the compiled core; CALLBOX_CORE={IMPLEMENTATION} has none"
            )
        # 0 means one per core, as the [media] workers setting says.
        count = workers if workers else os.cpu_count() or 1
        if not 1 <= count <= 256:
            raise ValueError(f"workers must be 1..256: got {count}")
        _check_port(port_min, "port_min")
        _check_port(port_max, "port_max")
        self._core = _impl.Engine(count, port_min, port_max, host)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def workers(self) -> int:
        """How many worker threads the engine runs."""
        result: int = self._core.worker_count()
        return result

    def create_rtp_leg(
        self,
        *,
        codec: str = "PCMU",
        payload_type: int | None = None,
        clock_rate: int = 8000,
        rtcp_mux: bool = False,
        rtp_timeout: float | None = None,
        rtcp_interval: float = 5.0,
        cname: str = "",
        beside: RtpLeg | None = None,
    ) -> RtpLeg:
        """Bind a local port pair from the range and start an RTP leg on a worker.

        ``codec`` is the SDP encoding name; ``payload_type`` defaults to its
        static number (required for dynamic codecs such as opus).
        ``rtp_timeout`` (seconds) raises an ``rtp_timeout`` event when no RTP
        arrives for that long, except on hold. ``beside`` puts the leg on the
        same worker as another, so the two can be bridged.

        Raises ``ValueError`` naming a bad argument, ``RuntimeError`` when the
        port range is exhausted or the engine is closed.
        """
        if payload_type is None:
            if codec.upper() not in _STATIC_PAYLOAD_TYPES:
                raise ValueError(f"codec {codec!r} has no static payload type: give payload_type")
            payload_type = _STATIC_PAYLOAD_TYPES[codec.upper()]
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload_type must be in 0..127: got {payload_type}")
        if not 1 <= clock_rate <= 192000:
            raise ValueError(f"clock_rate must be in 1..192000: got {clock_rate}")
        if rtp_timeout is not None and rtp_timeout <= 0:
            raise ValueError(f"rtp_timeout must be positive seconds or None: got {rtp_timeout}")
        if rtcp_interval <= 0:
            raise ValueError(f"rtcp_interval must be positive seconds: got {rtcp_interval}")
        if len(cname.encode()) > 255:
            raise ValueError(f"cname must be at most 255 bytes in UTF-8: got {len(cname.encode())}")
        if beside is not None and beside.engine is not self:
            raise ValueError(f"{beside!r} belongs to another engine")
        leg_id, port, rtcp_port = self._core.create_rtp_leg(
            codec, payload_type, clock_rate, rtcp_mux, rtp_timeout or 0.0, rtcp_interval, cname,
            beside.id if beside is not None else None,
        )  # fmt: skip
        return RtpLeg(self, leg_id, port, rtcp_port)

    def bridge(self, a: RtpLeg, b: RtpLeg) -> None:
        """Relay each leg's received packets to the other at once, without buffering.

        Each leg keeps its own SSRC and continues its own sequence and timestamp
        across re-bridges, so each far end sees one continuous stream. A leg
        already bridged elsewhere is unbridged first. Raises ``ValueError`` if
        the legs use different codecs or live on different workers.
        """
        self._core.bridge(a.id, b.id)

    def unbridge(self, leg: RtpLeg) -> None:
        """Stop relaying between ``leg`` and the leg it is bridged to."""
        self._core.unbridge(leg.id)

    def poll_events(self) -> list[MediaEvent]:
        """Every event reported since the last call (possibly none); never blocks."""
        return [MediaEvent(*event) for event in self._core.poll_events()]

    def fileno(self) -> int:
        """An eventfd that is readable while :meth:`poll_events` has events."""
        result: int = self._core.fileno()
        return result

    def close(self) -> None:
        """Stop the workers and close every leg; later calls raise ``RuntimeError``."""
        self._core.close()


# --- Codecs, resampling, telephone-event, DTMF and tones (core/codec/) -------
#
# Codecs work on frames (20 ms by default) of 16-bit native-endian PCM at the
# codec's own sample rate; DTMF and tones work at 8 kHz. Calls release the GIL
# while they work, so an object must not be used from two threads at once.
# These need the compiled core: the Python twin has only G.711 and refuses
# them with NotImplementedError.


__all__ += [
    "CodecError",
    "CodecInfo",
    "Decoder",
    "DtmfDetector",
    "DtmfGenerator",
    "Encoder",
    "ReceivedEvent",
    "Resampler",
    "TelephoneEvent",
    "TelephoneEventPacket",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "ToneGenerator",
    "ToneSpec",
    "Transcoder",
    "codec_info",
    "codec_names",
    "dtmf_digit",
    "dtmf_event",
    "parse_fmtp",
    "tone_names",
    "tone_plans",
    "tone_spec",
]


def _native(name: str) -> Any:
    try:
        return getattr(_impl, name)
    except AttributeError:
        raise NotImplementedError(
            f"core.{name} needs the compiled core; CALLBOX_CORE={IMPLEMENTATION} has only G.711"
        ) from None


CodecError: type[ValueError] = getattr(_impl, "CodecError", ValueError)
"""Bad input to a codec, resampler, event or tone object; the message names the problem."""


def codec_names() -> list[str]:
    """SDP encoding names the codec factory knows (``PCMU``, ``PCMA``, ``G722``, ...)."""
    result: list[str] = _native("codec_names")()
    return result


class CodecInfo(NamedTuple):
    """What SDP and the engine need to know of a codec (frames of the default 20 ms)."""

    name: str
    rtp_clock_rate: int
    sample_rate: int
    frame_ms: int


def codec_info(name: str) -> CodecInfo:
    """The codec's SDP name, RTP clock and sample rate; ``CodecError`` if unknown.

    For SDP: ``a=rtpmap:9 G722/8000`` although G.722 samples at 16 kHz.
    """
    info = _native("codec_info")(name)
    return CodecInfo(info.name, info.rtp_clock_rate, info.sample_rate, info.frame_ms)


def parse_fmtp(fmtp: str) -> dict[str, str]:
    """Parse an SDP fmtp parameter string (``"useinbandfec=1; stereo=0"``).

    Names are folded to lower case. Raises ``CodecError`` on an item without ``=``.
    """
    result: dict[str, str] = _native("parse_fmtp")(fmtp)
    return result


class _CodecSide:
    """What encoders and decoders share: the codec's timing and rates."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self._info = native.info

    @property
    def name(self) -> str:
        """SDP encoding name (``PCMA``, ``PCMU``, ``G722``, ``G729``, ``opus``)."""
        result: str = self._info.name
        return result

    @property
    def rtp_clock_rate(self) -> int:
        """RTP timestamp units per second (8000 for G.722 per RFC 3551, 48000 for Opus)."""
        result: int = self._info.rtp_clock_rate
        return result

    @property
    def sample_rate(self) -> int:
        """PCM sample rate of encoder input and decoder output."""
        result: int = self._info.sample_rate
        return result

    @property
    def frame_ms(self) -> int:
        """Duration of one frame (the encoder's input, one concealment's output), in ms."""
        result: int = self._info.frame_ms
        return result

    @property
    def frame_samples(self) -> int:
        """Samples in one frame at ``sample_rate``."""
        result: int = self._info.frame_samples
        return result


class Encoder(_CodecSide):
    """Encodes PCM frames to RTP payloads for one codec, one frame per payload.

    ``frame_ms`` is the packet duration (SDP ptime): 10 to 60 ms in steps of
    10, for Opus 10, 20, 40 or 60.

    ``fmtp`` is the peer's SDP fmtp for the payload type, which says how it
    wants to receive. Opus understands RFC 7587's ``maxplaybackrate``,
    ``stereo`` (we always send mono), ``useinbandfec``, ``usedtx``,
    ``maxaveragebitrate`` and ``cbr``; G.729 ``annexb`` (off unless ``yes``).
    Raises ``CodecError`` for an unknown codec, a bad fmtp value or a
    ``frame_ms`` the codec cannot packetise.
    """

    def __init__(self, name: str, fmtp: str = "", frame_ms: int = 20) -> None:
        super().__init__(_native("Encoder")(name, fmtp, frame_ms))

    def encode(self, frame: Buffer) -> bytes:
        """Encode exactly one frame; ``CodecError`` names the expected size otherwise.

        An empty payload means there is nothing to send (G.729 Annex B silence).
        """
        result: bytes = self._native.encode(frame)
        return result


class Decoder(_CodecSide):
    """Decodes RTP payloads of one codec to PCM and conceals lost packets.

    Payloads of any whole number of codec frames decode; ``frame_ms`` is how
    much audio one concealment produces (the duration of a lost packet).
    """

    def __init__(self, name: str, fmtp: str = "", frame_ms: int = 20) -> None:
        super().__init__(_native("Decoder")(name, fmtp, frame_ms))

    def decode(self, payload: Buffer) -> bytes:
        """Decode one payload (any whole number of codec frames) to PCM."""
        result: bytes = self._native.decode(payload)
        return result

    def conceal(self) -> bytes:
        """One frame in place of a lost packet.

        The codec's own concealment for G.729 and Opus; G.711 Appendix I pitch
        repetition (spandsp) for G.711 and G.722.
        """
        result: bytes = self._native.conceal()
        return result

    def conceal_with_next(self, next_payload: Buffer) -> bytes:
        """One frame in place of a lost packet, given the packet after it.

        Opus rebuilds the lost frame from the in-band FEC the next packet
        carries (when the sender used ``useinbandfec``); other codecs conceal
        as ``conceal()``. The next packet must still be passed to ``decode()``.
        """
        result: bytes = self._native.conceal_with_next(next_payload)
        return result


class Resampler:
    """Streaming polyphase FIR sample-rate converter between 8, 16 and 48 kHz.

    Pieces of a stream join seamlessly; output lags input by ``delay`` samples.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._native = _native("Resampler")(in_rate, out_rate)

    @property
    def delay(self) -> int:
        """The filter's delay, in output samples."""
        result: int = self._native.delay
        return result

    def process(self, pcm: Buffer) -> bytes:
        """Convert the next piece of the stream."""
        result: bytes = self._native.process(pcm)
        return result


class Transcoder:
    """Decode one codec, resample, re-frame to the target's ``target_frame_ms`` and encode."""

    def __init__(
        self,
        source: str,
        target: str,
        source_fmtp: str = "",
        target_fmtp: str = "",
        target_frame_ms: int = 20,
    ) -> None:
        self._native = _native("Transcoder")(
            source, source_fmtp, target, target_fmtp, target_frame_ms
        )

    def transcode(self, payload: Buffer) -> list[bytes]:
        """The target payloads that this source payload completes (possibly none)."""
        result: list[bytes] = self._native.transcode(payload)
        return result

    def transcode_lost(self) -> list[bytes]:
        """Like ``transcode`` for a lost source packet (the decoder conceals)."""
        result: list[bytes] = self._native.transcode_lost()
        return result


def dtmf_event(digit: str) -> int:
    """The RFC 4733 event code of a DTMF digit (``0``-``9``, ``*``, ``#``, ``A``-``D``)."""
    result: int = _native("dtmf_event")(digit)
    return result


def dtmf_digit(event: int) -> str:
    """The DTMF digit of an RFC 4733 event code 0-15."""
    result: str = _native("dtmf_digit")(event)
    return result


@dataclass(frozen=True)
class TelephoneEvent:
    """One RFC 4733 telephone-event payload.

    ``volume`` is the level in dB below 0 dBm0 (0-63); ``duration`` is in RTP
    timestamp units since the event began.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def encode(self) -> bytes:
        """The 4-octet payload; ``CodecError`` if a field is out of range."""
        result: bytes = _native("telephone_event_encode")(
            self.event, self.end, self.volume, self.duration
        )
        return result

    @classmethod
    def decode(cls, payload: Buffer) -> TelephoneEvent:
        """Parse a payload; ``CodecError`` if it is shorter than 4 octets."""
        event, end, volume, duration = _native("telephone_event_decode")(payload)
        return cls(event, end, volume, duration)


class TelephoneEventPacket(NamedTuple):
    """An RTP packet the sender wants sent: marker bit, timestamp, payload."""

    marker: bool
    timestamp: int
    payload: bytes


class TelephoneEventSender:
    """Sends one event at a time as RFC 4733 asks.

    The first packet carries the marker bit; each packet interval sends an
    update with the grown duration; the end packet goes out three times. All
    packets of an event carry its start timestamp. Call ``next()`` once per
    packet interval.
    """

    def __init__(self, clock_rate: int = 8000, packet_ms: int = 20) -> None:
        self._native = _native("TelephoneEventSender")(clock_rate, packet_ms)

    @property
    def busy(self) -> bool:
        """True while an event's packets remain to be sent."""
        result: bool = self._native.busy
        return result

    def start(
        self, event: str | int, timestamp: int, duration_ms: int = 100, volume: int = 10
    ) -> None:
        """Begin sending ``event`` at RTP timestamp ``timestamp``.

        ``event`` is a DTMF digit (``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``)
        or an RFC 4733 event code (e.g. 16 for flash). ``CodecError`` if an
        event is still being sent, the digit is not DTMF, the code is not
        0-255 or the duration does not fit in one event's 16-bit duration field.
        """
        code = dtmf_event(event) if isinstance(event, str) else event
        if not 0 <= code <= 255:
            raise CodecError(f"telephone-event code must be 0-255: got {code}")
        self._native.start(code, timestamp, duration_ms, volume)

    def next(self) -> TelephoneEventPacket | None:
        """The packet for this interval, or ``None`` when idle."""
        packet = self._native.next()
        return None if packet is None else TelephoneEventPacket(*packet)


class ReceivedEvent(NamedTuple):
    """An event reported by ``TelephoneEventReceiver``."""

    event: int
    digit: str | None  # None for events that are not DTMF digits
    timestamp: int
    volume: int


class TelephoneEventReceiver:
    """Reports each RFC 4733 event once, on the first of its packets to arrive.

    A new event is recognised by a newer RTP timestamp; updates, retransmitted
    end packets and late packets of older events are dropped.
    """

    def __init__(self) -> None:
        self._native = _native("TelephoneEventReceiver")()

    def receive(self, timestamp: int, payload: Buffer) -> ReceivedEvent | None:
        """Feed one telephone-event packet; the event if it is a new one."""
        received = self._native.receive(timestamp, payload)
        if received is None:
            return None
        event, stamp, volume = received
        return ReceivedEvent(event, dtmf_digit(event) if event < 16 else None, stamp, volume)


class DtmfDetector:
    """In-band DTMF detection on 8 kHz audio (spandsp's ``dtmf_rx``).

    ``twist`` (low-group tone louder) and ``reverse_twist`` (high-group tone
    louder) are the largest level differences accepted, in dB;
    ``min_level_dbm0`` is the weakest tone accepted.
    """

    def __init__(self, twist: int = 10, reverse_twist: int = 10, min_level_dbm0: int = -30) -> None:
        self._native = _native("DtmfDetector")(twist, reverse_twist, min_level_dbm0)

    def process(self, pcm: Buffer) -> str:
        """Feed audio; the digits whose tones began in it, in order."""
        result: str = self._native.process(pcm)
        return result

    def skip(self, samples: int) -> None:
        """Tell the detector that ``samples`` of audio were lost."""
        self._native.skip(samples)


class DtmfGenerator:
    """In-band DTMF generation at 8 kHz (spandsp's ``dtmf_tx``).

    ``level_dbm0`` is the low-group tone's level and the high-group tone is
    ``twist`` dB louder; ``on_ms`` and ``off_ms`` time each digit and the
    pause after it.
    """

    def __init__(
        self, level_dbm0: int = -10, twist: int = 0, on_ms: int = 100, off_ms: int = 100
    ) -> None:
        self._native = _native("DtmfGenerator")(level_dbm0, twist, on_ms, off_ms)

    @property
    def busy(self) -> bool:
        """True until ``generate`` has given out every queued digit and its pause."""
        result: bool = self._native.busy
        return result

    def queue(self, digits: str) -> None:
        """Queue digits to send; ``CodecError`` names a non-DTMF character."""
        self._native.queue(digits)

    def generate(self, samples: int) -> bytes:
        """The next ``samples`` of audio: queued digits, then silence."""
        result: bytes = self._native.generate(samples)
        return result


class ToneSpec(NamedTuple):
    """A call-progress tone: frequencies (Hz, 0 for none), level per frequency, cadence."""

    frequency1: int
    frequency2: int
    level_dbm0: int
    on_ms: int
    off_ms: int  # 0: continuous


def tone_plans() -> list[str]:
    """Known national tone plans: ``cn`` (the default), ``itu``, ``us``."""
    result: list[str] = _native("tone_plans")()
    return result


def tone_names() -> list[str]:
    """Tones every plan has: ``dial``, ``ringback``, ``busy``, ``congestion``."""
    result: list[str] = _native("tone_names")()
    return result


def tone_spec(tone: str, plan: str = "cn") -> ToneSpec:
    """The definition of ``tone`` in ``plan``; ``CodecError`` names the choices."""
    return ToneSpec(*_native("tone_spec")(plan, tone))


class ToneGenerator:
    """Generates one call-progress tone of a plan at 8 kHz, continuing its cadence."""

    def __init__(self, tone: str, plan: str = "cn") -> None:
        self._native = _native("ToneGenerator")(plan, tone)

    def generate(self, samples: int) -> bytes:
        """The next ``samples`` of the tone."""
        result: bytes = self._native.generate(samples)
        return result


# --- Adaptive jitter buffer (core/jitter/) -----------------------------------------------


class JitterPut(IntEnum):
    """What :meth:`JitterBuffer.put` did with a frame."""

    BUFFERED = 0
    """Held for playout."""
    DUPLICATE = 1
    """Already received (same sequence number, or a held frame has its timestamp): dropped."""
    LATE = 2
    """Its playout slot has passed (late loss): dropped."""
    FLUSHED = 3
    """Held, after the buffer was flushed: a new source, a timestamp jump or an overflow."""


class JitterDecision(IntEnum):
    """What the caller plays this tick (see :meth:`JitterBuffer.get`)."""

    BUFFERING = 0
    """Not started or restarting: the buffer fills to its target. Play silence."""
    NORMAL = 1
    """Decode and play the frame."""
    MERGE = 2
    """Decode and play the frame; it follows concealment, so smooth the join."""
    EXPAND = 3
    """No frame for this slot: conceal one frame (the codec's PLC)."""
    ACCELERATE = 4
    """The buffer is above target: one frame was dropped; play the frame given."""
    PREEMPTIVE_EXPAND = 5
    """The buffer is below target: play one frame of stretched low-energy audio, no frame used."""


@dataclass(frozen=True)
class Playout:
    """One tick's decision and, for NORMAL, MERGE and ACCELERATE, the frame to play."""

    decision: JitterDecision
    payload: bytes | None
    timestamp: int
    sequence: int
    samples: int


@dataclass(frozen=True)
class JitterStats:
    """NetEQ-style counters of a :class:`JitterBuffer` since it was made.

    Every frame received ends in exactly one of ``duplicates``, ``late``,
    played (``normal + merged + accelerated``), ``discarded`` (flushed, or
    dropped by accelerate) or ``buffered_frames``; every tick is one decision.
    ``lost`` counts sequence numbers never received.
    """

    received: int
    duplicates: int
    late: int
    lost: int
    discarded: int
    flushes: int
    buffering: int
    normal: int
    merged: int
    expanded: int
    accelerated: int
    preemptive_expanded: int
    waiting_ms_total: int
    target_delay_ms: int
    buffer_delay_ms: int
    max_buffer_delay_ms: int
    buffered_frames: int

    @property
    def played(self) -> int:
        """Frames handed to the caller to play."""
        return self.normal + self.merged + self.accelerated

    @property
    def ticks(self) -> int:
        """Ticks since playout started (every decision but BUFFERING)."""
        return self.played + self.expanded + self.preemptive_expanded

    def _rate(self, count: int) -> float:
        return count / self.ticks if self.ticks else 0.0

    @property
    def expand_rate(self) -> float:
        """Share of playout ticks concealed."""
        return self._rate(self.expanded)

    @property
    def accelerate_rate(self) -> float:
        """Share of playout ticks that dropped a frame to shrink the buffer."""
        return self._rate(self.accelerated)

    @property
    def preemptive_expand_rate(self) -> float:
        """Share of playout ticks stretched to grow the buffer."""
        return self._rate(self.preemptive_expanded)

    @property
    def mean_waiting_ms(self) -> float:
        """Mean time a played frame spent in the buffer."""
        return self.waiting_ms_total / self.played if self.played else 0.0


class JitterBuffer:
    """An adaptive jitter buffer for one received stream, in the spirit of WebRTC NetEQ.

    It holds frames (codec payload with RTP timestamp, sequence number, arrival
    time and duration), never RTP headers, and never decodes: the caller's
    codec decodes and conceals. Time is always passed in (``arrival_ms``,
    ``now_ms``, integer milliseconds on one clock), so it is deterministic.

    The target delay is the 95th percentile of recent relative packet delays
    (a forgetting histogram, plus repeated peaks), clamped to
    ``min_delay_ms..max_delay_ms``. ``max_frames`` bounds what is held; a put
    beyond it flushes. Raises ``ValueError`` for settings that cannot work.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        min_delay_ms: int = 20,
        max_delay_ms: int = 1000,
        max_frames: int = 200,
    ) -> None:
        if not 1000 <= clock_rate <= 192000:
            raise ValueError(f"clock_rate must be in 1000..192000: got {clock_rate}")
        if not 0 <= min_delay_ms <= max_delay_ms <= 10000:
            raise ValueError(
                "delays must satisfy 0 <= min_delay_ms <= max_delay_ms <= 10000: "
                f"got {min_delay_ms} and {max_delay_ms}"
            )
        if not 1 <= max_frames <= 10000:
            raise ValueError(f"max_frames must be in 1..10000: got {max_frames}")
        self._jb = _impl.JitterBuffer(clock_rate, min_delay_ms, max_delay_ms, max_frames)

    def put(
        self,
        payload: Buffer,
        timestamp: int,
        sequence: int,
        samples: int,
        arrival_ms: int,
        source: int = 0,
    ) -> JitterPut:
        """Hand in one frame from the network: ``samples`` long, arrived at ``arrival_ms``.

        ``source`` is the SSRC; a new one flushes what is held, as does a
        timestamp more than ``max(2 s, 2 x max_delay_ms)`` from the playout point.
        Raises ``ValueError`` for a field out of range.
        """
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp must be in 0..4294967295: got {timestamp}")
        if not 0 <= sequence <= 0xFFFF:
            raise ValueError(f"sequence must be in 0..65535: got {sequence}")
        if not 1 <= samples <= 0xFFFF:
            raise ValueError(f"samples must be in 1..65535: got {samples}")
        if not 0 <= arrival_ms < 1 << 40:
            raise ValueError(f"arrival_ms must be a non-negative time in ms: got {arrival_ms}")
        if not 0 <= source <= 0xFFFFFFFF:
            raise ValueError(f"source must be an SSRC in 0..4294967295: got {source}")
        return JitterPut(self._jb.put(payload, timestamp, sequence, samples, arrival_ms, source))

    def get(self, now_ms: int, *, low_energy: bool = True) -> Playout:
        """Decide this playout tick (call once per frame interval, e.g. 20 ms).

        ``low_energy`` is the caller's word that its audio around here is
        quiet (say, the last decoded frame was below a VAD threshold), so
        dropping or stretching a frame will not be heard: ACCELERATE and
        PREEMPTIVE_EXPAND are only chosen then, except that a buffer four
        frames above its high limit accelerates anyway, so sender clock drift
        cannot grow it without bound during continuous speech.
        """
        if not 0 <= now_ms < 1 << 40:
            raise ValueError(f"now_ms must be a non-negative time in ms: got {now_ms}")
        decision, payload, timestamp, sequence, samples = self._jb.get(now_ms, low_energy)
        return Playout(JitterDecision(decision), payload, timestamp, sequence, samples)

    @property
    def target_delay_ms(self) -> int:
        """The buffer level the buffer steers toward, in ms."""
        result: int = self._jb.target_delay_ms()
        return result

    @property
    def buffer_delay_ms(self) -> int:
        """The audio held now, in ms."""
        result: int = self._jb.buffer_delay_ms()
        return result

    def stats(self) -> JitterStats:
        """Counters and delays so far."""
        return JitterStats(*self._jb.stats())
