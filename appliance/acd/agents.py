"""Agents as the ACD sees them: state, reason, idle time and the calls they took."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from appliance.config.records import Agent


class AgentState(StrEnum):
    """Where an agent is in the cycle of taking calls."""

    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"
    """Logged in but not taking calls; ``AgentStatus.reason`` says why."""
    RINGING = "ringing"
    TALKING = "talking"
    AFTER_CALL_WORK = "after_call_work"
    """Wrapping up the last call for its queue's wrap-up time, then ready."""


NO_ANSWER_REASON = "no answer"
"""The not-ready reason an agent gets for letting an offer ring out (RONA)."""


@dataclass(frozen=True)
class AgentStateChanged:
    """An agent changed state (the event stream's agent event)."""

    time: float
    agent: str
    state: AgentState
    reason: str = ""
    call_id: str | None = None


@dataclass
class AgentStatus:
    """One agent's live state. The ACD owns it; read it, change it only through the ``Acd``."""

    agent: Agent
    state: AgentState = AgentState.LOGGED_OUT
    reason: str = ""
    since: float = 0.0
    """When the agent entered ``state``."""
    ready_since: float = 0.0
    """When the agent last became ready: the longest-idle strategy's measure."""
    call_id: str | None = None
    answered: dict[str, int] = field(default_factory=dict)
    """Calls answered per queue since the switch started."""
    pending_not_ready: str | None = None
    """A not-ready reason asked for during a call, applied when the call's work ends."""
    wrapup: asyncio.Task[None] | None = None

    @property
    def number(self) -> str:
        """The agent's number (工号)."""
        return self.agent.number

    def skill_level(self, skill: str) -> int | None:
        """The agent's level in ``skill`` (their group counts as level 1), None if not a member."""
        if skill in self.agent.skills:
            return self.agent.skills[skill]
        return 1 if self.agent.group == skill else None
