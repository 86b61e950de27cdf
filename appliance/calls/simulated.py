"""An in-memory call on a manual clock: the flow simulator's call and the tests' peer.

``SimulatedCall`` behaves like call control's calls as the IVR and ACD see
them: prompts take time, digits arrive when pressed (``press``), agents'
phones ring for their configured delay and answer, refuse or stay silent,
and either side may hang up. Every action on the call is logged in
``actions`` with its time, which is what the flow simulator reports.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from appliance.calls.clock import ManualClock
from appliance.calls.interface import (
    AgentLeg,
    CallEnded,
    CallIdentity,
    Hangup,
    HangupCause,
    LegQuality,
    OfferOutcome,
    OfferResult,
    PlayEnd,
    Side,
)

DEFAULT_PROMPT_SECONDS = 3.0


@dataclass(frozen=True)
class Action:
    """One thing done on a simulated call: when, what, and its details."""

    time: float
    kind: str
    detail: str = ""


class PhoneBehaviour(Enum):
    """How a simulated agent phone reacts to being rung."""

    ANSWER = "answer"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    UNREACHABLE = "unreachable"


@dataclass
class SimulatedPhone:
    """An agent's phone: answers after ``answer_after`` s, then talks for ``talk_for`` s."""

    extension: str
    behaviour: PhoneBehaviour = PhoneBehaviour.ANSWER
    answer_after: float = 2.0
    talk_for: float | None = 60.0
    """Seconds until the agent hangs up; None: the agent waits for the caller to hang up."""
    rings: list[tuple[float, str]] = field(default_factory=list)
    """(time, call id) of every ring, answered or not."""


@dataclass
class SimulatedAgentLeg:
    """The answered leg to a simulated phone."""

    phone: SimulatedPhone
    call: SimulatedCall

    @property
    def extension(self) -> str:
        """The phone's extension."""
        return self.phone.extension

    async def hang_up(self, cause: HangupCause) -> None:
        """Drop this leg (logged on the call)."""
        self.call.log("agent_leg_hung_up", f"{self.extension} {cause.name}")


class Switchboard:
    """The simulated agents' phones, shared by every simulated call of a test."""

    def __init__(self) -> None:
        self.phones: dict[str, SimulatedPhone] = {}

    def phone(self, extension: str, **settings: object) -> SimulatedPhone:
        """The phone of ``extension``, created on first use; ``settings`` update its fields."""
        phone = self.phones.setdefault(extension, SimulatedPhone(extension))
        for name, value in settings.items():
            setattr(phone, name, value)
        return phone

    def ringing_after(self, time: float) -> list[tuple[float, str, str]]:
        """(time, extension, call id) of every ring that started at or after ``time``."""
        return sorted(
            (at, phone.extension, call_id)
            for phone in self.phones.values()
            for at, call_id in phone.rings
            if at >= time
        )


class SimulatedCall(CallIdentity):
    """A ``Call`` in memory: time on a ``ManualClock``, digits pressed by the test or the user."""

    def __init__(
        self,
        clock: ManualClock,
        switchboard: Switchboard | None = None,
        *,
        call_id: str = "sim-1",
        caller: str = "13800000000",
        dialled: str = "4008001234",
        trunk: str | None = "gateway",
        prompt_seconds: dict[str, float] | None = None,
        quality: Sequence[LegQuality] = (),
    ) -> None:
        super().__init__(call_id, caller, dialled, trunk, clock.time())
        self._clock = clock
        self.switchboard = switchboard or Switchboard()
        self.prompt_seconds = prompt_seconds or {}
        self.quality = list(quality)
        self.actions: list[Action] = []
        self._digits: deque[str] = deque()
        self._digit_arrived = asyncio.Event()
        self._ended: asyncio.Future[Hangup] = asyncio.get_running_loop().create_future()

    @property
    def ended(self) -> Hangup | None:
        """How the call ended, or None while it is up."""
        return self._ended.result() if self._ended.done() else None

    # What the caller (a test, or the simulator's user) does.
    def press(self, digits: str) -> None:
        """The caller presses ``digits`` now."""
        if self._ended.done():
            return
        self._digits.extend(digits)
        self.log("dtmf", digits)
        self._digit_arrived.set()

    def hang_up_caller(self, cause: HangupCause = HangupCause.NORMAL_CLEARING) -> None:
        """The caller hangs up now."""
        self._end(Hangup(Side.CALLER, cause))

    def log(self, kind: str, detail: str = "") -> None:
        """Note an action at the current time."""
        self.actions.append(Action(self._clock.time(), kind, detail))

    # The Call protocol's operations.
    async def answer(self) -> None:
        """Answer (once)."""
        self._check_up()
        if not self._answered:
            self._answered = True
            self.log("answer")

    async def play(self, prompts: Sequence[str], *, barge_in: bool) -> PlayEnd:
        """Play each prompt for its length (``prompt_seconds``, default 3 s)."""
        self._check_up()
        self.log("play", ",".join(prompts) + (" (barge-in)" if barge_in else ""))
        if barge_in and self._digits:
            return PlayEnd.DIGIT
        length = sum(self.prompt_seconds.get(p, DEFAULT_PROMPT_SECONDS) for p in prompts)
        self._digit_arrived.clear()
        waits: list[Awaitable[object]] = [self._clock.sleep(length)]
        if barge_in:
            waits.append(self._digit_arrived.wait())
        first = await self._first(*waits)
        return PlayEnd.FINISHED if first == 0 else PlayEnd.DIGIT

    async def next_digit(self, wait_s: float) -> str | None:
        """The next digit pressed, or None after ``wait_s``."""
        self._check_up()
        if not self._digits:
            self._digit_arrived.clear()
            if await self._first(self._clock.sleep(wait_s), self._digit_arrived.wait()) == 0:
                return None
        return self._digits.popleft()

    async def offer(self, extension: str, ring_s: float) -> OfferResult:
        """Ring the simulated phone of ``extension``."""
        self._check_up()
        phone = self.switchboard.phone(extension)
        self.log("offer", extension)
        if phone.behaviour is PhoneBehaviour.UNREACHABLE:
            return OfferResult(OfferOutcome.FAILED)
        if phone.behaviour is PhoneBehaviour.BUSY:
            return OfferResult(OfferOutcome.BUSY)
        phone.rings.append((self._clock.time(), self._id))
        answers = phone.behaviour is PhoneBehaviour.ANSWER and phone.answer_after < ring_s
        try:
            await self._first(self._clock.sleep(phone.answer_after if answers else ring_s))
        except asyncio.CancelledError:
            self.log("offer_cancelled", extension)
            raise
        if not answers:
            self.log("offer_no_answer", extension)
            return OfferResult(OfferOutcome.NO_ANSWER)
        self.log("offer_answered", extension)
        return OfferResult(OfferOutcome.ANSWERED, SimulatedAgentLeg(phone, self))

    async def bridge(self, leg: AgentLeg) -> Hangup:
        """Talk until the caller hangs up or the agent's ``talk_for`` runs out."""
        self._check_up()
        assert isinstance(leg, SimulatedAgentLeg)
        self.log("bridge", leg.extension)
        talk_for = leg.phone.talk_for
        if talk_for is None:
            return await self.wait_ended()
        try:
            await self._first(self._clock.sleep(talk_for))
        except CallEnded as ended:
            return ended.hangup
        self._end(Hangup(Side.AGENT, HangupCause.NORMAL_CLEARING))
        return await self.wait_ended()

    async def start_music_on_hold(self, music: str | None) -> None:
        """Start music on hold (logged)."""
        self._check_up()
        self.log("music_on_hold_start", music or "default")

    async def stop_music_on_hold(self) -> None:
        """Stop music on hold (logged)."""
        if not self._ended.done():
            self.log("music_on_hold_stop")

    async def start_recording(self, path: str) -> None:
        """Start recording (logged)."""
        self._check_up()
        self.log("record", path)

    async def transfer(self, destination: str) -> Hangup:
        """Transfer: the destination talks until the caller hangs up."""
        self._check_up()
        self.log("transfer", destination)
        return await self.wait_ended()

    async def hang_up(self, cause: HangupCause) -> None:
        """Hang up from the switch's side."""
        self._end(Hangup(Side.SYSTEM, cause))

    async def wait_ended(self) -> Hangup:
        """How the call ended, once it has."""
        return await asyncio.shield(self._ended)

    def media_quality(self) -> Sequence[LegQuality]:
        """The configured quality figures."""
        return list(self.quality)

    def _end(self, hangup: Hangup) -> None:
        if not self._ended.done():
            self._ended.set_result(hangup)
            self.log("hangup", f"{hangup.side.value} {hangup.cause.name}")

    def _check_up(self) -> None:
        if self._ended.done():
            raise CallEnded(self._ended.result())

    async def _first(self, *waits: Awaitable[object]) -> int:
        """Run ``waits`` until one finishes; its index. Raises ``CallEnded`` on a hang-up first."""
        tasks: list[asyncio.Future[object]] = [asyncio.ensure_future(w) for w in waits]
        ended: asyncio.Future[object] = asyncio.ensure_future(asyncio.shield(self._ended))
        try:
            done, _ = await asyncio.wait([*tasks, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, ended]:
                task.cancel()
        if ended in done and not any(t in done for t in tasks):
            raise CallEnded(self._ended.result())
        return next(i for i, t in enumerate(tasks) if t in done)
