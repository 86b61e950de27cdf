"""The media engine: workers, RTP legs, bridges, events (core/engine/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader

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
        if not hasattr(_loader.impl, "Engine"):
            raise RuntimeError(
                "the media engine needs the compiled core; "
                f"CALLBOX_CORE={_loader.IMPLEMENTATION} has none"
            )
        # 0 means one per core, as the [media] workers setting says.
        count = workers if workers else os.cpu_count() or 1
        if not 1 <= count <= 256:
            raise ValueError(f"workers must be 1..256: got {count}")
        _check_port(port_min, "port_min")
        _check_port(port_max, "port_max")
        self._core = _loader.impl.Engine(count, port_min, port_max, host)

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
