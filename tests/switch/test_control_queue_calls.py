"""The control API while calls wait, ring and talk: simulated queue calls on a manual clock.

The switch takes no trunk calls into queues yet, so these tests serve the
control app of an unstarted ``Switch`` on a real socket (aiohttp's test
server) with its call center on a ``ManualClock``, and put simulated calls
(``appliance.calls.simulated``) into its queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from appliance.calllog import CallJournal
from appliance.calls import ManualClock
from appliance.calls.clock import settle
from appliance.calls.simulated import SimulatedCall, Switchboard
from appliance.config import open_store
from appliance.config.records import Agent, Queue
from appliance.settings import Settings
from appliance.switch.callcenter import CallCenter, CallCenterConfig
from appliance.switch.control import STREAMS_KEY, control_app
from appliance.switch.service import Switch

START = 1_780_000_000.0


class Center:
    """A switch's control API over a call center whose calls and clock the test drives."""

    def __init__(self, client: TestClient[Any, Any], center: CallCenter, clock: ManualClock):
        self.client = client
        self.center = center
        self.clock = clock
        self.switchboard = Switchboard()
        self.tasks: list[asyncio.Task[Any]] = []

    def enqueue(self, call_id: str) -> SimulatedCall:
        call = SimulatedCall(self.clock, self.switchboard, call_id=call_id)
        journal = CallJournal(call_id)
        self.tasks.append(
            asyncio.get_running_loop().create_task(self.center.acd.enqueue(call, "sales", journal))
        )
        return call

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        async with self.client.request(method, path, json=body) as response:
            return response.status, await response.json()


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[Center]:
    settings = Settings(data_dir=str(tmp_path))
    store = open_store(settings)
    switch = Switch(settings, store)
    clock = ManualClock(START)
    switch.callcenter = CallCenter(settings, store, clock)
    agents = [
        Agent(number=n, name=f"Agent {n}", group="sales", extension=n) for n in ("1001", "1002")
    ]
    queue = Queue(name="sales", skill="sales", wrapup=30)
    switch.callcenter.apply(CallCenterConfig(queues=[queue], agents=agents))
    async with TestClient(TestServer(control_app(switch))) as client:
        yield Center(client, switch.callcenter, clock)
    await switch.calls.close()
    store.close()


async def test_a_queue_call_streams_queue_and_agent_events_and_blocks_logout_while_talking(
    center: Center,
) -> None:
    ws = await center.client.ws_connect("/v1/events")
    await settle()
    assert center.client.app[STREAMS_KEY]  # subscribed: it will miss no event
    status, _ = await center.request("POST", "/v1/agents/1001/login")
    assert status == 200
    center.switchboard.phone("1001", answer_after=2.0, talk_for=None)
    caller = center.enqueue("c1")
    await center.clock.advance(1)

    _, queue = await center.request("GET", "/v1/queues/sales")
    assert (queue["waiting"], queue["longest_wait_s"]) == (1, 1.0)
    assert queue["agents"]["ringing"] == ["1001"]
    _, agent = await center.request("GET", "/v1/agents/1001")
    assert (agent["state"], agent["call_id"]) == ("ringing", "c1")

    await center.clock.advance(1)
    assert await center.request("POST", "/v1/agents/1001/logout") == (
        409,
        {"error": "agent 1001 is talking; log out after the call"},
    )
    # Not ready during a call applies once its work is done.
    status, agent = await center.request("POST", "/v1/agents/1001/not_ready", {"reason": "break"})
    assert (status, agent["state"]) == (200, "talking")
    caller.hang_up_caller()
    await center.clock.advance(30)
    await asyncio.gather(*center.tasks)

    seen = [await ws.receive_json(timeout=10) for _ in range(10)]

    def agent_of(event: dict[str, Any]) -> str | None:
        agent: str | None = (
            event["detail"].get("agent") if event["type"] == "call" else event["agent"]
        )
        return agent

    assert [(e["type"], e.get("state") or e["kind"], agent_of(e), e["call_id"]) for e in seen] == [
        ("agent_state", "ready", "1001", None),
        ("queue_event", "enter", None, "c1"),
        ("call", "queued", None, "c1"),
        ("agent_state", "ringing", "1001", "c1"),
        ("queue_event", "offered", "1001", "c1"),
        ("queue_event", "answered", "1001", "c1"),
        ("call", "connected", "1001", "c1"),
        ("agent_state", "talking", "1001", "c1"),
        ("agent_state", "after_call_work", "1001", "c1"),
        ("agent_state", "not_ready", "1001", None),
    ]
    assert (seen[5]["queue"], seen[5]["wait_s"]) == ("sales", 2.0)
    assert seen[6]["detail"]["queue"] == "sales"
    assert seen[9]["reason"] == "break"
    _, queue = await center.request("GET", "/v1/queues/sales")
    assert queue["counts"]["answered"] == 1
    assert queue["waiting"] == 0
    await ws.close()
