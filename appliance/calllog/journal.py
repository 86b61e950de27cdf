"""What the IVR and ACD note about a call while it runs; its ``CallRecord`` at the end."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from appliance.calllog.records import CallOutcome, CallRecord, OpenCall, microseconds
from appliance.calls.interface import Call, Hangup, HangupCause, Side

INTERRUPTED = Hangup(Side.SYSTEM, HangupCause.TEMPORARY_FAILURE)
"""How a call the switch's death cut off is recorded to have ended (Q.850 41)."""


@dataclass
class CallJournal:
    """The running notes of one call; ``record`` makes the call record when it has ended."""

    call_id: str
    flow: str | None = None
    ivr_path: list[str] = field(default_factory=list)
    digits: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    answered_at: float | None = None
    queue: str | None = None
    queue_events: int = 0
    wait_s: float | None = None
    agent: str | None = None
    agent_extension: str | None = None
    ring_attempts: int = 0
    talk_s: float | None = None
    wrapup_s: int | None = None
    transferred_to: str | None = None
    recording: str | None = None
    outcome: CallOutcome = CallOutcome.IVR
    connected_at: float | None = None
    """When the conversation with the agent began (``talk_s`` is set when it ends)."""

    def next_queue_event(self) -> int:
        """The sequence number of this call's next queue event."""
        self.queue_events += 1
        return self.queue_events - 1

    def progress(self) -> tuple[object, ...]:
        """What has happened to the call so far, to compare with what was last written down."""
        return (
            self.outcome, self.flow, len(self.ivr_path), self.digits, len(self.variables),
            self.answered_at, self.queue, self.agent, self.ring_attempts, self.connected_at,
            self.talk_s, self.transferred_to, self.recording,
        )  # fmt: skip

    def snapshot(self, call: Call, now: float) -> OpenCall:
        """The call written down as it stands at ``now``, as if the switch died then."""
        record = replace(self.record(call, INTERRUPTED, now), outcome=CallOutcome.INTERRUPTED)
        talking_since = self.connected_at if self.talk_s is None else None
        return OpenCall(record, None if talking_since is None else microseconds(talking_since))

    def record(self, call: Call, hangup: Hangup, ended_at: float) -> CallRecord:
        """The call record of ``call``, which ended with ``hangup`` at ``ended_at``."""
        return CallRecord(
            id=call.id,
            started_us=microseconds(call.started_at),
            ended_us=microseconds(ended_at),
            dialled=call.dialled,
            caller=call.caller,
            trunk=call.trunk,
            outcome=self.outcome,
            hangup_side=hangup.side.value,
            hangup_cause=int(hangup.cause),
            answered_us=None if self.answered_at is None else microseconds(self.answered_at),
            flow=self.flow,
            ivr_path=list(self.ivr_path),
            digits=self.digits,
            variables=dict(self.variables),
            queue=self.queue,
            wait_s=self.wait_s,
            agent=self.agent,
            agent_extension=self.agent_extension,
            ring_attempts=self.ring_attempts,
            talk_s=self.talk_s,
            wrapup_s=self.wrapup_s,
            transferred_to=self.transferred_to,
            recording=self.recording,
            legs=list(call.media_quality()),
        )
