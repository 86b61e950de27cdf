"""What the IVR and the ACD need from a live call, and a simulated call that provides it.

``interface.Call`` is the contract call control implements over SIP and the
media core; ``simulated.SimulatedCall`` implements it in memory on a manual
clock, for the flow simulator and the tests of the IVR and ACD.
"""

from appliance.calls.clock import Clock, LoopClock, ManualClock
from appliance.calls.interface import (
    AgentLeg,
    Call,
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

__all__ = [
    "AgentLeg",
    "Call",
    "CallEnded",
    "CallIdentity",
    "Clock",
    "Hangup",
    "HangupCause",
    "LegQuality",
    "LoopClock",
    "ManualClock",
    "OfferOutcome",
    "OfferResult",
    "PlayEnd",
    "Side",
]
