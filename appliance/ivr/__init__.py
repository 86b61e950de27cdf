"""The IVR: flows of nodes run per call, business-hour schedules, and a flow simulator."""

from appliance.ivr.engine import MAX_STEPS, IvrEngine, Queues
from appliance.ivr.schedule import is_open
from appliance.ivr.service import IvrService, UnknownNumber
from appliance.ivr.simulator import Simulation, simulate_call

__all__ = [
    "MAX_STEPS",
    "IvrEngine",
    "IvrService",
    "Queues",
    "Simulation",
    "UnknownNumber",
    "is_open",
    "simulate_call",
]
