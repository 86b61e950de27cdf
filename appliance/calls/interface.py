"""The call interface: what the IVR and ACD ask of a live call, and what it answers.

Call control (a B2BUA over the SIP stack and the media core) implements
``Call`` for every inbound call and ``AgentLeg`` for each leg it originates
to an agent's extension. Everything here is awaited on the switch's loop.
A caller hanging up ends any pending operation on the call with
``CallEnded``, so a flow or a queue unwinds from wherever it waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from appliance.sip.causes import Cause

HangupCause = Cause
"""Why a call or leg ended: the ITU-T Q.850 cause values (SIP maps them per RFC 3398), the
same enumeration the SIP stack puts in Reason headers, so a far end's cause is kept as is."""


class Side(Enum):
    """Which party ended a call."""

    CALLER = "caller"
    AGENT = "agent"
    CALLEE = "callee"
    """The called party of an outside call (through a trunk)."""
    SYSTEM = "system"
    """The switch: a hang-up node, a failed menu, a queue without a fallback."""


@dataclass(frozen=True)
class Hangup:
    """How a call ended: the side that hung up and the Q.850 cause."""

    side: Side
    cause: HangupCause


class CallEnded(Exception):
    """The call is over (the caller hung up, or it was hung up); carries how it ended."""

    def __init__(self, hangup: Hangup) -> None:
        super().__init__(f"the call ended: {hangup.side.value} hung up ({hangup.cause.name})")
        self.hangup = hangup


class PlayEnd(Enum):
    """Why a ``play`` finished (a hang-up raises ``CallEnded`` instead)."""

    FINISHED = "finished"
    """Every prompt played to the end."""
    DIGIT = "digit"
    """A DTMF digit arrived while barge-in was allowed; ``next_digit`` returns it."""


class OfferOutcome(Enum):
    """What became of ringing an agent's extension."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    """The ring timeout passed (or the phone declined with a no-answer cause)."""
    BUSY = "busy"
    """The phone said busy (486/600)."""
    FAILED = "failed"
    """The extension is not registered or the request failed."""


@dataclass(frozen=True)
class LegQuality:
    """Media quality of one leg over its life, from RTCP and the jitter buffer."""

    leg: str
    """Which leg: ``caller``, ``agent`` (inbound) or ``callee`` (outbound)."""
    loss_percent: float
    jitter_ms: float
    mos: float
    """E-model (ITU-T G.107) MOS estimate."""


class AgentLeg(Protocol):
    """A leg call control originated to an agent's extension and the agent answered."""

    @property
    def extension(self) -> str:
        """The extension that answered."""
        ...

    async def hang_up(self, cause: HangupCause) -> None:
        """End this leg alone (BYE); the caller's leg stays up."""
        ...


@dataclass(frozen=True)
class OfferResult:
    """The end of an offer: ``leg`` is set only when the agent answered."""

    outcome: OfferOutcome
    leg: AgentLeg | None = None


class CallIdentity:
    """Who a call is, for ``Call``'s implementations: set when the call is made, read as
    properties; ``answered`` turns true once the implementation has answered."""

    def __init__(
        self, call_id: str, caller: str, dialled: str, trunk: str | None, started_at: float
    ) -> None:
        self._id = call_id
        self._caller = caller
        self._dialled = dialled
        self._trunk = trunk
        self._started_at = started_at
        self._answered = False

    @property
    def id(self) -> str:
        """The call id: names its recording and its call record."""
        return self._id

    @property
    def caller(self) -> str:
        """The caller's number."""
        return self._caller

    @property
    def dialled(self) -> str:
        """The number dialled."""
        return self._dialled

    @property
    def trunk(self) -> str | None:
        """The trunk it came in on (None: from an extension)."""
        return self._trunk

    @property
    def started_at(self) -> float:
        """When the call arrived, seconds since the epoch."""
        return self._started_at

    @property
    def answered(self) -> bool:
        """Whether the call was answered (200 OK sent and ACKed)."""
        return self._answered


class Call(Protocol):
    """A live inbound call as the IVR and ACD see it (one per caller, from INVITE to BYE)."""

    @property
    def id(self) -> str:
        """The call's id: follows it through IVR, queue, agent, recording and call record."""
        ...

    @property
    def caller(self) -> str:
        """The caller's number, normalised (kept even when presentation is restricted)."""
        ...

    @property
    def dialled(self) -> str:
        """The number the caller dialled, normalised."""
        ...

    @property
    def trunk(self) -> str | None:
        """The trunk the call came in on, or None for a call from an extension."""
        ...

    @property
    def started_at(self) -> float:
        """When the INVITE arrived, seconds since the epoch."""
        ...

    @property
    def answered(self) -> bool:
        """Whether ``answer`` has been done (200 OK sent and ACKed)."""
        ...

    async def answer(self) -> None:
        """Answer the call (200 OK with our SDP; returns once ACKed). Idempotent."""
        ...

    async def play(self, prompts: Sequence[str], *, barge_in: bool) -> PlayEnd:
        """Play prompts (by name) in order to the caller.

        With ``barge_in`` a DTMF digit stops the playback at once and the
        result is ``DIGIT`` (also when a typed-ahead digit is already waiting);
        the digit stays queued for ``next_digit``. Without it, digits pressed
        meanwhile are queued and playback continues. Raises ``CallEnded``.
        """
        ...

    async def next_digit(self, wait_s: float) -> str | None:
        """The next DTMF digit (RFC 4733 or in-band), queued or awaited; None after ``wait_s``.

        Digits are queued from the moment the call exists, so a caller may
        type ahead of a prompt. Raises ``CallEnded``.
        """
        ...

    async def offer(self, extension: str, ring_s: float) -> OfferResult:
        """Ring ``extension`` (an agent's phone) for at most ``ring_s`` seconds.

        The caller keeps hearing whatever plays (music on hold). Cancelling
        the awaitable withdraws the offer (CANCEL) and stops the ringing.
        Raises ``CallEnded`` if the caller hangs up meanwhile (the ring stops).
        """
        ...

    async def bridge(self, leg: AgentLeg) -> Hangup:
        """Connect the caller to ``leg`` and return when either side hangs up.

        Call control hangs up the other side with the same cause, so the
        call is over when this returns.
        """
        ...

    async def start_music_on_hold(self, music: str | None) -> None:
        """Play ``music`` (a prompt name; None: the default music) in a loop until stopped."""
        ...

    async def stop_music_on_hold(self) -> None:
        """Stop music on hold (nothing if none plays)."""
        ...

    async def start_recording(self, path: str) -> None:
        """Record the call from now on to ``path`` (stereo WAV: caller left, agent right)."""
        ...

    async def transfer(self, destination: str) -> Hangup:
        """Connect the caller to ``destination`` (extension or outside number) until it ends."""
        ...

    async def hang_up(self, cause: HangupCause) -> None:
        """End the call from our side with ``cause`` (idempotent)."""
        ...

    async def wait_ended(self) -> Hangup:
        """Return when the call ends, however it ends."""
        ...

    def media_quality(self) -> Sequence[LegQuality]:
        """Quality of each of the call's legs so far (caller, then agent if any)."""
        ...
