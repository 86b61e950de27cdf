"""The ACD: queues, agents and their states, routing strategies, offers with RONA."""

from appliance.acd.agents import NO_ANSWER_REASON, AgentState, AgentStateChanged, AgentStatus
from appliance.acd.service import Acd, AcdError, AcdEvent, QueueOutcome, QueueResult

__all__ = [
    "NO_ANSWER_REASON",
    "Acd",
    "AcdError",
    "AcdEvent",
    "AgentState",
    "AgentStateChanged",
    "AgentStatus",
    "QueueOutcome",
    "QueueResult",
]
