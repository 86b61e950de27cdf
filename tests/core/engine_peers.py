"""A far end for the engine's tests: a UDP socket speaking RTP on loopback, and waits.

Waits have generous upper bounds and assert only that something happens,
never how fast: the machine is shared and the tests must not fail on timing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

import core
from core import Engine, MediaEvent, RtpLeg

LOOPBACK = "127.0.0.1"
PATIENCE = 10.0  # seconds: an upper bound for "it happens", never a measurement


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def next_event(engine: Engine, kind: str) -> MediaEvent:
    """The next event of ``kind``, skipping others."""
    found: list[MediaEvent] = []

    def arrived() -> bool:
        found.extend(e for e in engine.poll_events() if e.kind == kind)
        return bool(found)

    eventually(arrived, f"a {kind} event")
    return found[0]


class Peer:
    """A far end made of a plain UDP socket that speaks RTP through core's packet functions."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(PATIENCE)
        self.port: int = self.sock.getsockname()[1]

    def send(self, leg: RtpLeg, seq: int, ts: int | None = None, payload: bytes = b"") -> None:
        """A PCMU packet numbered ``seq`` (its payload made from ``seq`` unless given)."""
        ts = seq * 160 if ts is None else ts
        self.send_rtp(leg.local_port, 0, seq, ts, payload or bytes([seq & 0xFF]) * 160)

    def send_rtp(
        self, port: int, payload_type: int, seq: int, ts: int, payload: bytes, marker: bool = False
    ) -> None:
        """One RTP packet to the local ``port`` of a leg, from SSRC 0x5EED."""
        packet = core.build_rtp(
            payload_type, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x5EED, payload, marker=marker
        )
        self.sock.sendto(packet, (LOOPBACK, port))

    def receive_rtp(self) -> core.RtpPacket:
        """The next RTP packet (RTCP arrives on the port above, not here)."""
        data, _ = self.sock.recvfrom(4096)
        return core.parse_rtp(data)

    def close(self) -> None:
        self.sock.close()


def connected_leg(engine: Engine, peer: Peer, **options: object) -> RtpLeg:
    """A leg of ``engine`` whose remote is ``peer``."""
    leg = engine.create_rtp_leg(**options)  # type: ignore[arg-type]
    leg.set_remote(LOOPBACK, peer.port)
    return leg


def bridged_call(engine: Engine, peers: Callable[[], Peer]) -> tuple[Peer, Peer, RtpLeg, RtpLeg]:
    """A caller's and an agent's phone, each with its leg, the two legs bridged."""
    caller, agent = peers(), peers()
    a = connected_leg(engine, caller)
    b = connected_leg(engine, agent, beside=a)
    engine.bridge(a, b)
    return caller, agent, a, b
