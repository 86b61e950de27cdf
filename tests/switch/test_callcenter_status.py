"""What the control API shows of the call center, and its event feed, without HTTP.

Queue calls come from the simulated calls of ``appliance.calls.simulated``
on a manual clock (the switch does not take trunk calls into queues yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.acd import AgentState, AgentStateChanged
from appliance.calllog import CallJournal, QueueEvent, QueueEventKind
from appliance.calls import ManualClock
from appliance.calls.simulated import SimulatedCall, Switchboard
from appliance.config import open_store
from appliance.config.records import Agent, Queue
from appliance.settings import Settings
from appliance.store import Store
from appliance.switch.callcenter import CallCenter, CallCenterConfig, CallEvent, CallEventKind
from appliance.switch.control import EventFeed, event_json

START = 1_780_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(Settings(data_dir=str(tmp_path)))
    yield store
    store.close()


async def test_queue_status_shows_waits_so_far_members_by_state_and_outcome_counts(
    tmp_path: Path, store: Store
) -> None:
    clock = ManualClock(START)
    center = CallCenter(Settings(data_dir=str(tmp_path)), store, clock)
    agents = [
        Agent(number=n, name=f"Agent {n}", group="sales", extension=n) for n in ("1001", "1002")
    ]
    queue = Queue(name="sales", skill="sales", max_wait=60, wrapup=0)
    center.apply(CallCenterConfig(queues=[queue], agents=agents))
    switchboard = Switchboard()
    switchboard.phone("1001", answer_after=1.0, talk_for=10.0)
    tasks = []

    def enqueue(call_id: str) -> SimulatedCall:
        call = SimulatedCall(clock, switchboard, call_id=call_id)
        tasks.append(
            asyncio.get_running_loop().create_task(
                center.acd.enqueue(call, "sales", CallJournal(call_id))
            )
        )
        return call

    enqueue("c1")
    await clock.advance(10)
    abandoning = enqueue("c2")
    await clock.advance(5)
    status = center.queue_status("sales")
    assert status["waiting"] == 2
    assert status["longest_wait_s"] == 15.0
    assert status["calls"] == [
        {"call_id": "c1", "wait_s": 15.0},
        {"call_id": "c2", "wait_s": 5.0},
    ]
    assert status["agents"]["logged_out"] == ["1001", "1002"]

    abandoning.hang_up_caller()
    await clock.advance(50)  # c1 has waited 65 s: past max_wait
    center.acd.login("1001")
    enqueue("c3")
    await clock.advance(0.5)
    status = center.queue_status("sales")
    assert status["calls"] == [{"call_id": "c3", "wait_s": 0.5}]
    assert {s: a for s, a in status["agents"].items() if a} == {
        "ringing": ["1001"],
        "logged_out": ["1002"],
    }
    await clock.advance(11)
    await asyncio.gather(*tasks)
    status = center.queue_status("sales")
    assert (status["waiting"], status["longest_wait_s"]) == (0, None)
    assert status["counts"] == {
        "enter": 3,
        "offered": 1,
        "rona": 0,
        "declined": 0,
        "answered": 1,
        "abandoned": 1,
        "timed_out": 1,
    }
    assert center.queues_status() == [status]
    (agent,) = [a for a in center.agents_status() if a["number"] == "1001"]
    assert (agent["state"], agent["since"], agent["call_id"]) == ("ready", START + 76.0, None)


def test_feed_over_its_backlog_drops_what_it_holds_and_takes_no_more() -> None:
    feed = EventFeed(backlog=3)
    events = [AgentStateChanged(START + i, "1001", AgentState.READY) for i in range(5)]
    for event in events[:3]:
        feed.put(event)
    assert list(feed.pending) == events[:3]
    assert not feed.overflowed.is_set()
    feed.put(events[3])
    assert feed.overflowed.is_set()
    assert not feed.pending
    feed.put(events[4])
    assert not feed.pending


async def test_feed_gives_events_in_order_and_waits_for_the_next() -> None:
    feed = EventFeed(backlog=10)
    first = AgentStateChanged(START, "1001", AgentState.READY)
    second = AgentStateChanged(START + 1, "1001", AgentState.NOT_READY, "lunch")
    feed.put(first)
    assert await feed.get() is first
    waiting = asyncio.get_running_loop().create_task(feed.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    feed.put(second)
    assert await waiting is second


def test_each_event_kind_has_its_type_and_fields_in_json() -> None:
    assert event_json(AgentStateChanged(START, "1001", AgentState.TALKING, "", "c7")) == {
        "type": "agent_state",
        "time": START,
        "agent": "1001",
        "state": "talking",
        "reason": "",
        "call_id": "c7",
    }
    queued = QueueEvent(
        time_us=int(START * 1e6),
        call_id="c7",
        seq=1,
        queue="sales",
        kind=QueueEventKind.OFFERED,
        agent="1001",
        wait_s=2.5,
    )
    assert event_json(queued) == {
        "type": "queue_event",
        "time": START,
        "call_id": "c7",
        "queue": "sales",
        "kind": "offered",
        "agent": "1001",
        "wait_s": 2.5,
    }
    ended = CallEvent("c7", CallEventKind.ENDED, START, {"side": "caller", "cause": "16"})
    assert event_json(ended) == {
        "type": "call",
        "time": START,
        "call_id": "c7",
        "kind": "ended",
        "detail": {"side": "caller", "cause": "16"},
    }
