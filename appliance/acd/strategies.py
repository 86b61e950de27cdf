"""Routing strategies: which of the ready member agents a queue offers its next call to."""

from __future__ import annotations

import random
from collections.abc import Sequence

from appliance.acd.agents import AgentStatus
from appliance.config.records import Queue, Strategy


def _idle_order(agent: AgentStatus) -> tuple[float, str]:
    return agent.ready_since, agent.number


def longest_idle_agent(candidates: Sequence[AgentStatus]) -> AgentStatus:
    """The agent ready the longest (ties: the lower agent number)."""
    return min(candidates, key=_idle_order)


def pick_agents(
    queue: Queue,
    candidates: Sequence[AgentStatus],
    last_offered: str | None,
    rng: random.Random,
) -> list[AgentStatus]:
    """The agents ``queue``'s strategy rings at once for its next call (all of them for ring-all).

    ``candidates`` are the queue's ready members (not empty); ``last_offered``
    the agent number the queue offered a call to last (for round robin).
    """
    strategy = queue.strategy
    if strategy is Strategy.RING_ALL:
        return sorted(candidates, key=_idle_order)
    if strategy is Strategy.ROUND_ROBIN:
        ordered = sorted(candidates, key=lambda a: a.number)
        after = [a for a in ordered if last_offered is None or a.number > last_offered]
        return [(after or ordered)[0]]
    if strategy is Strategy.FEWEST_CALLS:
        return [min(candidates, key=lambda a: (a.answered.get(queue.name, 0), *_idle_order(a)))]
    if strategy is Strategy.SKILL_LEVEL:
        return [
            min(candidates, key=lambda a: (-(a.skill_level(queue.skill) or 0), *_idle_order(a)))
        ]
    if strategy is Strategy.RANDOM:
        return [rng.choice(sorted(candidates, key=lambda a: a.number))]
    return [longest_idle_agent(candidates)]
