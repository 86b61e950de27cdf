"""The flow simulator: a configured number's flow run on a simulated call, digits in, actions out.

For the web UI's flow editor: the caller presses given digits at given
seconds into the call, agents (all logged in, or none) answer after a few
seconds, and the result is every action the switch would take, with its
time, plus the call record the call would leave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.acd.service import Acd
from appliance.calllog.records import CallRecord
from appliance.calls.clock import ManualClock, settle
from appliance.calls.simulated import Action, SimulatedCall, Switchboard
from appliance.config.records import Configuration
from appliance.ivr.service import IvrService


@dataclass(frozen=True)
class Simulation:
    """What a simulated call did: actions (time in seconds from the call's start) and its record."""

    actions: list[Action]
    record: CallRecord


async def simulate_call(
    configuration: Configuration,
    dialled: str,
    presses: Sequence[tuple[float, str]] = (),
    *,
    at: float,
    agents_logged_in: bool = True,
    hang_up_after: float = 3600.0,
) -> Simulation:
    """Simulate a call to ``dialled`` starting at ``at`` (epoch seconds, for time conditions).

    ``presses`` are (seconds into the call, digits) the caller presses. The
    caller hangs up after ``hang_up_after`` seconds if the call lasts that long.
    No real time passes.
    """
    clock = ManualClock(at)
    acd = Acd(clock, configuration.queues, configuration.agents)
    if agents_logged_in:
        for agent in configuration.agents:
            if agent.extension is not None:
                acd.login(agent.number)
    ivr = IvrService(clock, acd)
    ivr.configure(configuration.numbers, configuration.flows, configuration.schedules)
    call = SimulatedCall(clock, Switchboard(), call_id="simulated", dialled=dialled)

    async def press(after: float, digits: str) -> None:
        await clock.sleep(after)
        call.press(digits)

    async def hang_up() -> None:
        await clock.sleep(hang_up_after)
        call.hang_up_caller()

    helpers = [asyncio.ensure_future(press(t, d)) for t, d in presses]
    helpers.append(asyncio.ensure_future(hang_up()))
    handled = asyncio.ensure_future(ivr.handle(call))
    try:
        await settle()
        while not handled.done() and (deadline := clock.next_deadline()) is not None:
            await clock.advance(deadline - clock.time())
        record = await handled
    finally:
        for helper in helpers:
            helper.cancel()
    actions = [Action(a.time - at, a.kind, a.detail) for a in call.actions]
    return Simulation(actions, record)
