"""The adaptive jitter buffer (core/jitter/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader


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

    The target delay is the 98th percentile of recent relative packet delays
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
        self._jb = _loader.impl.JitterBuffer(clock_rate, min_delay_ms, max_delay_ms, max_frames)

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
