"""Call records and the queue event log as store records, keyed for range scans by time.

Both kinds are keyed by ``time_key``: big-endian microseconds since the
epoch, then the call id (and, for queue events, the event's number within
its call), so a day, an hour or a month is one contiguous LMDB range and
reports read them in time order without an index.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from appliance.calls.interface import LegQuality
from appliance.store.keys import SEPARATOR, time_key


def microseconds(seconds: float) -> int:
    """Seconds since the epoch as whole microseconds (the keys' unit)."""
    return round(seconds * 1_000_000)


class CallOutcome(StrEnum):
    """How a call ended up, for reports."""

    ANSWERED = "answered"
    """An agent answered it."""
    ABANDONED = "abandoned"
    """The caller hung up while queued."""
    TIMED_OUT = "timed_out"
    """The queue's maximum wait passed (the flow went on at its timeout branch)."""
    TRANSFERRED = "transferred"
    IVR = "ivr"
    """It ended in the IVR: hang-up node, failed menu, or the caller hung up there."""
    INTERRUPTED = "interrupted"
    """The switch stopped while the call was up (a crash, a power cut): the record holds
    what was known at the switch's last snapshot of it (``OpenCall``)."""
    BUSY = "busy"
    """Outbound: the far end was busy (486, 600)."""
    NO_ANSWER = "no_answer"
    """Outbound: nobody answered (480, 408, the no-answer time)."""
    CANCELLED = "cancelled"
    """Outbound: the caller hung up before the answer."""
    FAILED = "failed"
    """Outbound: every trunk of the route failed, or none was usable."""


class CallDirection(StrEnum):
    """Which way a call went through the trunks."""

    INBOUND = "inbound"
    """A caller reached a configured number (a trunk's or an extension's call)."""
    OUTBOUND = "outbound"
    """An extension dialled an outside number through an outbound route."""


@dataclass(frozen=True)
class CallRecord:
    """One call from arrival to hang-up: for an inbound call what the caller did and who
    served them; for an outbound one its route, trunk and the number sent to it."""

    KIND: ClassVar[str] = "calls"
    SCHEMA_VERSION: ClassVar[int] = 2

    id: str
    started_us: int
    ended_us: int
    dialled: str
    caller: str
    outcome: CallOutcome
    hangup_side: str
    hangup_cause: int
    """ITU-T Q.850 cause value."""
    trunk: str | None = None
    answered_us: int | None = None
    flow: str | None = None
    ivr_path: list[str] = field(default_factory=list)
    digits: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    queue: str | None = None
    wait_s: float | None = None
    agent: str | None = None
    agent_extension: str | None = None
    ring_attempts: int = 0
    talk_s: float | None = None
    wrapup_s: int | None = None
    transferred_to: str | None = None
    recording: str | None = None
    legs: list[LegQuality] = field(default_factory=list)
    direction: CallDirection = CallDirection.INBOUND
    route: str | None = None
    """Outbound: the route the dialled number matched."""
    number_sent: str | None = None
    """Outbound: the number the trunk was asked for (after the route's strip and prepend)."""

    def key(self) -> bytes:
        """Start time, then call id."""
        return time_key(self.started_us, self.id.encode())


class QueueEventKind(StrEnum):
    """What happened to a call in a queue."""

    ENTER = "enter"
    OFFERED = "offered"
    RONA = "rona"
    """Ring, no answer: the offered agent let the ring timeout pass."""
    DECLINED = "declined"
    """The offered agent's phone was busy or unreachable."""
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed_out"


_SEQ = struct.Struct(">H")


@dataclass(frozen=True)
class QueueEvent:
    """One entry of the queue event log, from which queue reports are computed."""

    KIND: ClassVar[str] = "queue_events"
    SCHEMA_VERSION: ClassVar[int] = 1

    time_us: int
    call_id: str
    seq: int
    """The event's number within its call (0, 1, ...): keeps keys unique at one instant."""
    queue: str
    kind: QueueEventKind
    agent: str | None = None
    wait_s: float | None = None
    """Seconds since the call entered the queue."""

    def key(self) -> bytes:
        """Time, then call id and sequence number."""
        return time_key(self.time_us, self.call_id.encode() + SEPARATOR + _SEQ.pack(self.seq))


@dataclass(frozen=True)
class OpenCall:
    """A call in progress as the switch last wrote it down: its record so far, with outcome
    ``interrupted`` and ``ended_us`` the time of the snapshot. The call's final record
    replaces it (in the same transaction); one still here when the switch starts is left
    from a switch that died, and becomes the call's record."""

    KIND: ClassVar[str] = "open_calls"
    SCHEMA_VERSION: ClassVar[int] = 1

    record: CallRecord
    connected_us: int | None = None
    """When an agent's conversation began (still going at the snapshot): a dead switch's
    call talked from then until the switch's last sign of life."""

    def key(self) -> bytes:
        """The call id."""
        return self.record.id.encode()


@dataclass(frozen=True)
class SwitchAlive:
    """When the switch last said it was alive, while it had calls up: the end time given to
    the calls a dead switch left open."""

    KIND: ClassVar[str] = "switch_alive"
    SCHEMA_VERSION: ClassVar[int] = 1
    KEY: ClassVar[bytes] = b"switch"

    at_us: int

    def key(self) -> bytes:
        """The one key there is."""
        return self.KEY


CALL_LOG_RECORDS = (CallRecord, QueueEvent, OpenCall, SwitchAlive)
