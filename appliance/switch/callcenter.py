"""The switch's call center: one ACD, IVR service and call log, configured from the store.

They run on the switch's loop on the real clock (``LoopClock``). Every ACD
event (agent state changes, queue events) goes to the call log, which
keeps the queue events, and to ``events``, which the control API streams.
``load`` re-reads numbers, flows, schedules, queues and agents; agents keep
their live state and calls in progress keep the flow and queue settings
they started with. ``agents_status`` and ``queues_status`` are what the
control API and ``callbox status`` show of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from appliance.acd.agents import AgentState, AgentStatus
from appliance.acd.service import Acd, AcdEvent
from appliance.calllog.records import QueueEvent, QueueEventKind
from appliance.calllog.service import CallLog
from appliance.calls.clock import Clock, LoopClock
from appliance.calls.live import PromptLibrary
from appliance.config.records import Agent, InboundNumber, IvrFlow, Prompt, Queue, Schedule
from appliance.events import Listeners
from appliance.ivr.service import IvrService
from appliance.settings import Settings
from appliance.store import Store, Txn


class CallEventKind(StrEnum):
    """What happened to a live call."""

    STARTED = "started"
    """An inbound call arrived for a configured number."""
    ANSWERED = "answered"
    """The switch answered it (IVR)."""
    QUEUED = "queued"
    """It entered a queue (``detail["queue"]``)."""
    CONNECTED = "connected"
    """An agent answered it (``detail["agent"]``, ``detail["extension"]``)."""
    ENDED = "ended"
    """It ended (``detail["side"]``, ``detail["cause"]``)."""


@dataclass(frozen=True)
class CallEvent:
    """A change of a live call, for the control API's event stream."""

    call_id: str
    kind: CallEventKind
    at: float
    """When, in seconds since the epoch."""
    detail: dict[str, str] = field(default_factory=dict)


CallCenterEvent = AcdEvent | CallEvent


@dataclass(frozen=True)
class CallCenterConfig:
    """The records the call center runs on, read in one transaction."""

    numbers: list[InboundNumber] = field(default_factory=list)
    flows: list[IvrFlow] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)


def read_config(txn: Txn) -> CallCenterConfig:
    """Every record the call center needs, from one read transaction."""
    return CallCenterConfig(
        numbers=list(txn.scan(InboundNumber)),
        flows=list(txn.scan(IvrFlow)),
        schedules=list(txn.scan(Schedule)),
        queues=list(txn.scan(Queue)),
        agents=list(txn.scan(Agent)),
        prompts=list(txn.scan(Prompt)),
    )


class QueueCounts:
    """How many of each queue event every queue has had since the switch started."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[QueueEventKind]] = {}

    def note(self, event: AcdEvent) -> None:
        """Count ``event`` if it is a queue event (an ``Acd.events`` listener)."""
        if isinstance(event, QueueEvent):
            self._counts.setdefault(event.queue, Counter())[event.kind] += 1

    def of(self, queue: str) -> dict[str, int]:
        """Every kind of queue event with its count for ``queue`` (zero included)."""
        counts = self._counts.get(queue, Counter())
        return {kind.value: counts[kind] for kind in QueueEventKind}


def agent_status(status: AgentStatus) -> dict[str, Any]:
    """One agent as the control API shows it."""
    agent = status.agent
    return {
        "number": agent.number,
        "name": agent.name,
        "group": agent.group,
        "extension": agent.extension,
        "state": status.state.value,
        "reason": status.reason,
        "since": status.since or None,
        "call_id": status.call_id,
    }


class CallCenter:
    """ACD, IVR and call log of a running switch (create it on the running loop)."""

    def __init__(self, settings: Settings, store: Store, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or LoopClock()
        self.call_log = CallLog(store, self.clock.time)
        recordings = settings.data_path / "recordings" if settings.ivr.record_queue_calls else None
        self.acd = Acd(self.clock, (), (), recordings=recordings)
        self.ivr = IvrService(self.clock, self.acd, self.call_log)
        self.events: Listeners[CallCenterEvent] = Listeners()
        self.acd.events.add(self.call_log.note)
        self.acd.events.add(self.events.emit)
        self.queue_counts = QueueCounts()
        self.acd.events.add(self.queue_counts.note)
        self.acd.events.add(self._call_progress)
        self.config = CallCenterConfig()
        self._site_prompts: dict[str, str] = {}

    async def load(self) -> None:
        """Apply the configuration in the store now."""
        self.apply(await self.store.read(read_config))

    def apply(self, config: CallCenterConfig) -> None:
        """Configure the IVR and the ACD from ``config``."""
        self.config = config
        self._site_prompts = {p.name: p.file for p in config.prompts}
        self.ivr.configure(config.numbers, config.flows, config.schedules)
        self.acd.configure(config.queues, config.agents)

    def number_known(self, dialled: str) -> bool:
        """Whether ``dialled`` is a configured inbound number (call control answers 404 if not)."""
        return self.ivr.number(dialled) is not None

    def agents_status(self) -> list[dict[str, Any]]:
        """Every agent's live state, by number."""
        return [agent_status(status) for status in self.acd.agents()]

    def queues_status(self) -> list[dict[str, Any]]:
        """Every configured queue's live state, in configuration order."""
        return [self.queue_status(queue.name) for queue in self.config.queues]

    def queue_status(self, name: str) -> dict[str, Any]:
        """Queue ``name``: its calls waiting, its member agents by state, its counts since start.

        Raises ``AcdError`` for a queue that is not configured.
        """
        queue = self.acd.queue(name)
        now = self.clock.time()
        waits = [
            {"call_id": call_id, "wait_s": round(now - entered, 1)}
            for call_id, entered in self.acd.waiting_since(name)
        ]
        members: dict[str, list[str]] = {state.value: [] for state in AgentState}
        for status in self.acd.agents():
            if status.skill_level(queue.skill) is not None:
                members[status.state.value].append(status.number)
        return {
            "name": queue.name,
            "skill": queue.skill,
            "strategy": queue.strategy.value,
            "waiting": len(waits),
            "longest_wait_s": waits[0]["wait_s"] if waits else None,
            "calls": waits,
            "agents": members,
            "counts": self.queue_counts.of(queue.name),
        }

    def prompts(self, dialled: str) -> PromptLibrary:
        """The prompts a call to ``dialled`` hears: the site's, else the built-in ones in the
        number's language (else the site's prompt language)."""
        number = self.ivr.number(dialled)
        language = (number.language if number else None) or self.settings.ivr.prompt_language
        return PromptLibrary(self.settings.prompts_path, str(language), self._site_prompts)

    def _call_progress(self, event: AcdEvent) -> None:
        """A call entering a queue or reaching an agent is a call event too."""
        if not isinstance(event, QueueEvent):
            return
        if event.kind is QueueEventKind.ENTER:
            detail = {"queue": event.queue}
            self.events.emit(
                CallEvent(event.call_id, CallEventKind.QUEUED, event.time_us / 1e6, detail)
            )
        elif event.kind is QueueEventKind.ANSWERED and event.agent is not None:
            extension = self.acd.agent(event.agent).agent.extension or ""
            detail = {"queue": event.queue, "agent": event.agent, "extension": extension}
            self.events.emit(
                CallEvent(event.call_id, CallEventKind.CONNECTED, event.time_us / 1e6, detail)
            )

    async def close(self) -> None:
        """Write out what the call log still holds (the switch is stopping)."""
        await self.call_log.flush()
