"""The ACD: queues of waiting callers, agents in states, offers with ring timeouts.

A call enters a queue from the IVR (``Acd.enqueue``) and hears music on
hold. Whenever a call waits and a member agent is ready, the queue's
strategy picks the agent (all of them for ring-all) and the ACD offers the
call to their extension for the queue's ring timeout. An agent who answers
is bridged to the caller (the call is recorded), then does after-call work
for the queue's wrap-up time and becomes ready again. An agent who lets the
ring time out is set not-ready ("no answer", RONA) and the call is offered
to the next agent; a busy or unreachable phone likewise ("busy",
"unreachable"). The caller hanging up abandons the call and withdraws any
offer; the queue's maximum wait withdraws it too and hands the call back to
the flow's timeout branch. Every change is an event on ``Acd.events``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from appliance.acd.agents import (
    NO_ANSWER_REASON,
    AgentState,
    AgentStateChanged,
    AgentStatus,
)
from appliance.acd.strategies import pick_agents
from appliance.calllog.journal import CallJournal
from appliance.calllog.records import CallOutcome, QueueEvent, QueueEventKind, microseconds
from appliance.calls.clock import Clock
from appliance.calls.interface import (
    AgentLeg,
    Call,
    CallEnded,
    Hangup,
    HangupCause,
    OfferOutcome,
)
from appliance.config.records import Agent, Queue, Strategy
from appliance.events import Listeners

AcdEvent = AgentStateChanged | QueueEvent

# Offers that fail other than by ringing out: the queue log's kind and the agent's reason.
_DECLINED = {OfferOutcome.BUSY: "busy", OfferOutcome.FAILED: "unreachable"}


class AcdError(ValueError):
    """A request the ACD cannot carry out: names the agent or queue and why."""


class QueueOutcome(Enum):
    """How a call's time in a queue ended."""

    ANSWERED = "answered"
    """An agent took it; the call is over (``QueueResult.hangup`` says how it ended)."""
    ABANDONED = "abandoned"
    """The caller hung up while waiting."""
    TIMED_OUT = "timed_out"
    """The maximum wait passed; the call is still up, for the flow's timeout branch."""


@dataclass(frozen=True)
class QueueResult:
    """The end of ``Acd.enqueue``."""

    outcome: QueueOutcome
    hangup: Hangup | None = None


@dataclass(eq=False)
class _Waiting:
    """A call waiting in a queue."""

    call: Call
    queue: Queue
    journal: CallJournal
    entered: float
    offers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    connected: asyncio.Future[tuple[AgentLeg, AgentStatus]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Acd:
    """Queues and agents of the switch, on an injectable clock."""

    def __init__(
        self,
        clock: Clock,
        queues: Iterable[Queue],
        agents: Iterable[Agent],
        *,
        recordings: Path | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._recordings = recordings
        self._rng = rng or random.Random()
        self._queues: dict[str, Queue] = {}
        self._agents: dict[str, AgentStatus] = {}
        self._waiting: list[_Waiting] = []
        self._last_offered: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._order = itertools.count()
        self.events: Listeners[AcdEvent] = Listeners()
        self.configure(queues, agents)

    def configure(self, queues: Iterable[Queue], agents: Iterable[Agent]) -> None:
        """Take new queue and agent records; agents keep their live state, removed ones go.

        Calls already waiting keep the queue settings they entered with.
        """
        self._queues = {q.name: q for q in queues}
        previous = self._agents
        self._agents = {}
        for agent in agents:
            status = previous.pop(agent.number, None) or AgentStatus(agent)
            status.agent = agent
            self._agents[agent.number] = status
        for gone in previous.values():
            self._stop_wrapup(gone)

    # Agents.
    def agent(self, number: str) -> AgentStatus:
        """The live status of agent ``number`` (read only)."""
        try:
            return self._agents[number]
        except KeyError:
            raise AcdError(f"no agent numbered {number!r}") from None

    def agents(self) -> list[AgentStatus]:
        """Every agent's live status, by number."""
        return [self._agents[n] for n in sorted(self._agents)]

    def login(self, number: str) -> None:
        """Log agent ``number`` in on their extension, ready for calls."""
        status = self.agent(number)
        if status.agent.extension is None:
            raise AcdError(f"agent {number} has no extension to take calls on")
        if status.state is not AgentState.LOGGED_OUT:
            raise AcdError(f"agent {number} is already logged in ({status.state.value})")
        self._set_state(status, AgentState.READY)

    def logout(self, number: str) -> None:
        """Log agent ``number`` out (refused while ringing or talking)."""
        status = self.agent(number)
        if status.state in (AgentState.RINGING, AgentState.TALKING):
            raise AcdError(f"agent {number} is {status.state.value}; log out after the call")
        self._stop_wrapup(status)
        status.pending_not_ready = None
        self._set_state(status, AgentState.LOGGED_OUT)

    def set_ready(self, number: str) -> None:
        """Make agent ``number`` ready (ends after-call work early; during a call: after it)."""
        status = self._logged_in(number)
        status.pending_not_ready = None
        if status.state in (AgentState.NOT_READY, AgentState.AFTER_CALL_WORK):
            self._stop_wrapup(status)
            self._set_state(status, AgentState.READY)

    def set_not_ready(self, number: str, reason: str) -> None:
        """Make agent ``number`` not ready for ``reason`` (during a call or wrap-up: after it)."""
        status = self._logged_in(number)
        if status.state in (AgentState.READY, AgentState.NOT_READY):
            self._set_state(status, AgentState.NOT_READY, reason)
        else:
            status.pending_not_ready = reason

    def _logged_in(self, number: str) -> AgentStatus:
        status = self.agent(number)
        if status.state is AgentState.LOGGED_OUT:
            raise AcdError(f"agent {number} is logged out; log in first")
        return status

    def _set_state(
        self,
        status: AgentStatus,
        state: AgentState,
        reason: str = "",
        call_id: str | None = None,
        *,
        keep_idle: bool = False,
    ) -> None:
        now = self._clock.time()
        status.state, status.reason, status.since, status.call_id = state, reason, now, call_id
        if state is AgentState.READY and not keep_idle:
            status.ready_since = now
        self.events.emit(AgentStateChanged(now, status.number, state, reason, call_id))
        if state is AgentState.READY:
            self._dispatch()

    def _work_done(self, status: AgentStatus, *, keep_idle: bool = False) -> None:
        """The agent is free again: ready, or not ready if they asked for it meanwhile."""
        status.wrapup = None
        if status.pending_not_ready is not None:
            reason, status.pending_not_ready = status.pending_not_ready, None
            self._set_state(status, AgentState.NOT_READY, reason)
        else:
            self._set_state(status, AgentState.READY, keep_idle=keep_idle)

    def _stop_wrapup(self, status: AgentStatus) -> None:
        if status.wrapup is not None:
            status.wrapup.cancel()
            status.wrapup = None

    # Queues.
    def queue(self, name: str) -> Queue:
        """The queue named ``name``."""
        try:
            return self._queues[name]
        except KeyError:
            raise AcdError(f"no queue named {name!r}") from None

    def waiting(self, queue: str) -> list[str]:
        """Ids of the calls waiting in ``queue``, longest waiting first."""
        return [call_id for call_id, _ in self.waiting_since(queue)]

    def waiting_since(self, queue: str) -> list[tuple[str, float]]:
        """The calls waiting in ``queue`` with when each entered it, longest waiting first."""
        return [(w.call.id, w.entered) for w in self._waiting if w.queue.name == queue]

    async def enqueue(self, call: Call, queue_name: str, journal: CallJournal) -> QueueResult:
        """Queue ``call`` until an agent took it, the caller hung up, or it waited too long."""
        queue = self.queue(queue_name)
        entry = _Waiting(call, queue, journal, self._clock.time())
        journal.queue = queue.name
        self._log(entry, QueueEventKind.ENTER)
        ended = asyncio.ensure_future(call.wait_ended())
        timer = asyncio.ensure_future(self._clock.sleep(queue.max_wait))
        # Leave the queue the moment the call ends or times out, before any other
        # task runs, so no agent is offered a call that is already gone.
        ended.add_done_callback(lambda _: self._leave(entry))
        timer.add_done_callback(lambda t: None if t.cancelled() else self._leave(entry))
        waits: list[asyncio.Future[Any]] = [entry.connected, ended, timer]
        try:
            await call.start_music_on_hold(queue.hold_music)
            self._waiting.append(entry)
            self._dispatch()
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except CallEnded:
            await asyncio.wait([ended])
        except asyncio.CancelledError:
            # The switch is stopping: nothing may offer this call any more.
            ended.cancel()
            self._leave(entry)
            raise
        finally:
            timer.cancel()
        if entry.connected.done() and not ended.done():
            ended.cancel()
            return await self._serve(entry)
        if ended.done():
            journal.outcome = CallOutcome.ABANDONED
            self._finish_waiting(entry, QueueEventKind.ABANDONED)
            return QueueResult(QueueOutcome.ABANDONED, ended.result())
        ended.cancel()
        journal.outcome = CallOutcome.TIMED_OUT
        self._finish_waiting(entry, QueueEventKind.TIMED_OUT)
        await call.stop_music_on_hold()
        return QueueResult(QueueOutcome.TIMED_OUT)

    def _leave(self, entry: _Waiting) -> None:
        """Take ``entry`` out of the queue and withdraw its offers."""
        if entry in self._waiting:
            self._waiting.remove(entry)
        for task in entry.offers.values():
            task.cancel()

    def _finish_waiting(self, entry: _Waiting, kind: QueueEventKind) -> None:
        self._leave(entry)
        entry.journal.wait_s = self._clock.time() - entry.entered
        self._log(entry, kind)
        if entry.connected.done():
            # Answered at the very moment the caller left: release that agent.
            leg, status = entry.connected.result()
            self._spawn(leg.hang_up(HangupCause.NORMAL_CLEARING))
            self._work_done(status, keep_idle=True)

    async def _serve(self, entry: _Waiting) -> QueueResult:
        """The agent answered: bridge, record, then after-call work."""
        leg, status = entry.connected.result()
        call, queue, journal = entry.call, entry.queue, entry.journal
        answered = self._clock.time()
        journal.wait_s = answered - entry.entered
        journal.connected_at = answered
        journal.agent, journal.agent_extension = status.number, leg.extension
        journal.outcome = CallOutcome.ANSWERED
        status.answered[queue.name] = status.answered.get(queue.name, 0) + 1
        self._log(entry, QueueEventKind.ANSWERED, status.number)
        self._set_state(status, AgentState.TALKING, call_id=call.id)
        try:
            await call.stop_music_on_hold()
            if self._recordings is not None:
                path = self._recording_path(call)
                await call.start_recording(str(path))
                journal.recording = str(path)
            hangup = await call.bridge(leg)
        except CallEnded as ended:
            hangup = ended.hangup
            await leg.hang_up(hangup.cause)
        finally:
            # However the conversation ended, the agent must not stay "talking".
            journal.talk_s = self._clock.time() - answered
            journal.wrapup_s = queue.wrapup
            self._after_call(status, queue)
        return QueueResult(QueueOutcome.ANSWERED, hangup)

    def _recording_path(self, call: Call) -> Path:
        assert self._recordings is not None
        day = dt.datetime.fromtimestamp(call.started_at, dt.UTC).strftime("%Y/%m/%d")
        return self._recordings / day / f"{call.id}.wav"

    def _after_call(self, status: AgentStatus, queue: Queue) -> None:
        if queue.wrapup == 0:
            self._work_done(status)
            return
        self._set_state(status, AgentState.AFTER_CALL_WORK, call_id=status.call_id)

        async def wrap_up() -> None:
            await self._clock.sleep(queue.wrapup)
            if status.wrapup is asyncio.current_task():
                self._work_done(status)

        status.wrapup = asyncio.get_running_loop().create_task(wrap_up())

    # Offers.
    def _dispatch(self) -> None:
        """Offer waiting calls, oldest first, to ready member agents."""
        if not self._waiting:
            return  # an agent became ready with no call waiting: no pass over the agents
        # Under load calls wait because nobody is ready: that case costs one pass over agents.
        ready = [s for s in self._agents.values() if s.state is AgentState.READY]
        for entry in list(self._waiting):
            if not ready:
                return
            queue = entry.queue
            if entry.offers and queue.strategy is not Strategy.RING_ALL:
                continue
            candidates = [s for s in ready if s.skill_level(queue.skill) is not None]
            if not candidates:
                continue
            chosen = pick_agents(queue, candidates, self._last_offered.get(queue.name), self._rng)
            for status in chosen:
                ready.remove(status)
                self._start_offer(entry, status)

    def _start_offer(self, entry: _Waiting, status: AgentStatus) -> None:
        self._last_offered[entry.queue.name] = status.number
        entry.journal.ring_attempts += 1
        self._set_state(status, AgentState.RINGING, call_id=entry.call.id)
        self._log(entry, QueueEventKind.OFFERED, status.number)
        entry.offers[status.number] = asyncio.get_running_loop().create_task(
            self._offer(entry, status)
        )

    async def _offer(self, entry: _Waiting, status: AgentStatus) -> None:
        extension = status.agent.extension
        assert extension is not None
        try:
            result = await entry.call.offer(extension, entry.queue.ring_timeout)
        except (asyncio.CancelledError, CallEnded):
            # Withdrawn (caller gone, timed out, or another agent answered first).
            entry.offers.pop(status.number, None)
            self._work_done(status, keep_idle=True)
            return
        entry.offers.pop(status.number, None)
        if result.outcome is OfferOutcome.ANSWERED:
            assert result.leg is not None
            if entry in self._waiting and not entry.connected.done():
                self._waiting.remove(entry)
                entry.connected.set_result((result.leg, status))
                for other in entry.offers.values():
                    other.cancel()
            else:
                await result.leg.hang_up(HangupCause.NORMAL_CLEARING)
                self._work_done(status, keep_idle=True)
            return
        if result.outcome is OfferOutcome.NO_ANSWER:
            self._log(entry, QueueEventKind.RONA, status.number)
            reason = NO_ANSWER_REASON
        else:
            self._log(entry, QueueEventKind.DECLINED, status.number)
            reason = _DECLINED[result.outcome]
        status.pending_not_ready = None
        self._set_state(status, AgentState.NOT_READY, reason)
        self._dispatch()

    # Events.
    def _log(self, entry: _Waiting, kind: QueueEventKind, agent: str | None = None) -> None:
        now = self._clock.time()
        self.events.emit(
            QueueEvent(
                time_us=microseconds(now),
                call_id=entry.call.id,
                seq=entry.journal.next_queue_event(),
                queue=entry.queue.name,
                kind=kind,
                agent=agent,
                wait_s=now - entry.entered,
            )
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
