"""The call-center logic's own cost: a busy hour through IVR and ACD on a manual clock.

No real time passes, so the wall time measured is the CPU the IVR, the ACD
and the simulated calls cost per call (the simulated call's share is small).
``make bench`` times it; ``make test`` runs it once with timing off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from appliance.acd import Acd
from appliance.calls import ManualClock
from appliance.calls.simulated import SimulatedCall, Switchboard
from appliance.config.records import (
    Agent,
    AnswerNode,
    InboundNumber,
    IvrFlow,
    MenuNode,
    Queue,
    QueueNode,
)
from appliance.ivr import IvrService

MONDAY_11 = dt.datetime(2026, 12, 7, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
FLOW = IvrFlow(
    name="main",
    start="answer",
    nodes={
        "answer": AnswerNode(next="menu"),
        "menu": MenuNode(prompt="menu", options={"1": "sales"}),
        "sales": QueueNode(queue="sales"),
    },
)


async def busy_hour(agents: int, calls: int, talk_s: float) -> int:
    """``calls`` callers over one hour press 1 and queue for ``agents`` agents; how many got one."""
    clock = ManualClock(MONDAY_11)
    switchboard = Switchboard()
    acd = Acd(
        clock,
        [Queue(name="sales", skill="sales", max_wait=600, wrapup=10)],
        [
            Agent(number=str(1000 + i), name=f"A{i}", group="sales", extension=str(1000 + i))
            for i in range(agents)
        ],
    )
    for i in range(agents):
        acd.login(str(1000 + i))
        switchboard.phone(str(1000 + i), answer_after=3.0, talk_for=talk_s)
    ivr = IvrService(clock, acd)
    ivr.configure([InboundNumber(number="4008001234", flow="main")], [FLOW], [])
    handled = []
    for i in range(calls):
        call = SimulatedCall(clock, switchboard, call_id=f"c{i}")
        call.press("1")
        handled.append(asyncio.ensure_future(ivr.handle(call)))
        await clock.advance(3600 / calls)
    await clock.run_until_idle()
    records = await asyncio.gather(*handled)
    return sum(r.agent is not None for r in records)


@pytest.mark.parametrize(("agents", "calls"), [(100, 1000)])
def test_busy_hour_through_ivr_and_acd(
    benchmark: BenchmarkFixture, agents: int, calls: int
) -> None:
    served = benchmark(lambda: asyncio.run(busy_hour(agents, calls, talk_s=300.0)))
    assert served == calls
