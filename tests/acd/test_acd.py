"""The ACD against simulated calls on a manual clock: strategies, RONA, abandon, wait limits."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from appliance.acd import (
    NO_ANSWER_REASON,
    Acd,
    AcdError,
    AcdEvent,
    AgentState,
    AgentStateChanged,
    QueueOutcome,
    QueueResult,
)
from appliance.calllog import CallJournal, CallOutcome, QueueEvent, QueueEventKind
from appliance.calls import ManualClock, Side
from appliance.calls.simulated import PhoneBehaviour, SimulatedCall, Switchboard
from appliance.config.records import Agent, Queue, Strategy

START = 1_780_000_000.0


def agent(number: str, level: int = 5, skill: str = "sales") -> Agent:
    return Agent(
        number=number, name=f"Agent {number}", group=skill, extension=number, skills={skill: level}
    )


class Center:
    """An ACD with agents 1001-1003 in the sales queue, and helpers to place calls."""

    def __init__(self, queue: Queue, agents: list[Agent], tmp_path: Path | None = None) -> None:
        self.clock = ManualClock(START)
        self.switchboard = Switchboard()
        self.acd = Acd(self.clock, [queue], agents, recordings=tmp_path, rng=random.Random(7))
        self.events: list[AcdEvent] = []
        self.acd.events.add(self.events.append)
        self.calls = 0

    def call(self) -> tuple[SimulatedCall, CallJournal, asyncio.Task[QueueResult]]:
        self.calls += 1
        call = SimulatedCall(self.clock, self.switchboard, call_id=f"call-{self.calls}")
        journal = CallJournal(call.id)
        task = asyncio.get_running_loop().create_task(self.acd.enqueue(call, "sales", journal))
        return call, journal, task

    def queue_log(self, call_id: str) -> list[tuple[QueueEventKind, str | None]]:
        return [
            (e.kind, e.agent)
            for e in self.events
            if isinstance(e, QueueEvent) and e.call_id == call_id
        ]

    def states(self, number: str) -> list[AgentState]:
        return [
            e.state for e in self.events if isinstance(e, AgentStateChanged) and e.agent == number
        ]


def sales(**settings: object) -> Queue:
    return Queue(name="sales", skill="sales", **settings)  # type: ignore[arg-type]


AGENTS = [agent("1001"), agent("1002"), agent("1003")]


async def test_longest_idle_agent_gets_the_call() -> None:
    center = Center(sales(), AGENTS)
    for number in ("1002", "1003"):
        center.acd.login(number)
        await center.clock.advance(10)
    center.acd.login("1001")
    center.switchboard.phone("1002", answer_after=1.0, talk_for=30.0)

    call, journal, task = center.call()
    await center.clock.advance(5)

    assert center.queue_log(call.id) == [
        (QueueEventKind.ENTER, None),
        (QueueEventKind.OFFERED, "1002"),
        (QueueEventKind.ANSWERED, "1002"),
    ]
    assert center.acd.agent("1002").state is AgentState.TALKING
    await center.clock.advance(30)
    result = await task
    assert result.outcome is QueueOutcome.ANSWERED
    assert result.hangup is not None
    assert result.hangup.side is Side.AGENT
    assert journal.agent == "1002"
    assert journal.wait_s == pytest.approx(1.0)
    assert journal.talk_s == pytest.approx(30.0)
    assert journal.outcome is CallOutcome.ANSWERED


async def test_agent_does_after_call_work_for_the_queue_wrapup_then_is_ready() -> None:
    center = Center(sales(wrapup=15), [agent("1001")])
    center.acd.login("1001")
    center.switchboard.phone("1001", answer_after=1.0, talk_for=20.0)
    _, journal, task = center.call()
    await center.clock.advance(21)
    await task
    assert center.acd.agent("1001").state is AgentState.AFTER_CALL_WORK
    assert journal.wrapup_s == 15
    await center.clock.advance(14.9)
    assert center.acd.agent("1001").state is AgentState.AFTER_CALL_WORK
    await center.clock.advance(0.1)
    assert center.acd.agent("1001").state is AgentState.READY
    assert center.states("1001") == [
        AgentState.READY,
        AgentState.RINGING,
        AgentState.TALKING,
        AgentState.AFTER_CALL_WORK,
        AgentState.READY,
    ]


async def test_ring_no_answer_moves_call_to_next_agent_and_sets_first_not_ready() -> None:
    center = Center(sales(ring_timeout=15), AGENTS[:2])
    center.acd.login("1001")
    await center.clock.advance(1)
    center.acd.login("1002")
    center.switchboard.phone("1001", behaviour=PhoneBehaviour.NO_ANSWER)
    center.switchboard.phone("1002", answer_after=3.0, talk_for=10.0)

    call, journal, task = center.call()
    await center.clock.advance(14.9)
    assert center.acd.agent("1001").state is AgentState.RINGING
    await center.clock.advance(0.1)
    first = center.acd.agent("1001")
    assert first.state is AgentState.NOT_READY
    assert first.reason == NO_ANSWER_REASON
    assert center.acd.agent("1002").state is AgentState.RINGING
    await center.clock.advance(3)
    assert center.queue_log(call.id) == [
        (QueueEventKind.ENTER, None),
        (QueueEventKind.OFFERED, "1001"),
        (QueueEventKind.RONA, "1001"),
        (QueueEventKind.OFFERED, "1002"),
        (QueueEventKind.ANSWERED, "1002"),
    ]
    await center.clock.advance(10)
    assert (await task).outcome is QueueOutcome.ANSWERED
    assert journal.ring_attempts == 2
    assert journal.wait_s == pytest.approx(18.0)
    # The RONA'd agent stays not ready until they say otherwise.
    await center.clock.advance(600)
    assert center.acd.agent("1001").state is AgentState.NOT_READY


async def test_caller_hanging_up_in_queue_is_abandoned_and_no_agent_rings_after() -> None:
    center = Center(sales(ring_timeout=20), AGENTS[:2])
    center.acd.login("1001")
    center.switchboard.phone("1001", behaviour=PhoneBehaviour.NO_ANSWER)
    call, journal, task = center.call()
    await center.clock.advance(5)
    call.hang_up_caller()
    center.acd.login("1002")
    await center.clock.advance(300)

    result = await task
    assert result.outcome is QueueOutcome.ABANDONED
    assert journal.outcome is CallOutcome.ABANDONED
    assert journal.wait_s == pytest.approx(5.0)
    assert center.switchboard.ringing_after(START + 5) == []
    assert center.queue_log(call.id) == [
        (QueueEventKind.ENTER, None),
        (QueueEventKind.OFFERED, "1001"),
        (QueueEventKind.ABANDONED, None),
    ]
    # The agent whose phone was ringing is ready again, not punished with RONA.
    assert center.acd.agent("1001").state is AgentState.READY
    assert center.acd.waiting("sales") == []


async def test_maximum_wait_returns_the_call_to_the_flow_with_music_stopped() -> None:
    center = Center(sales(max_wait=60, hold_music="jazz"), AGENTS)
    call, journal, task = center.call()
    await center.clock.advance(59)
    assert not task.done()
    await center.clock.advance(1)
    result = await task
    assert result.outcome is QueueOutcome.TIMED_OUT
    assert result.hangup is None
    assert journal.outcome is CallOutcome.TIMED_OUT
    kinds = [a.kind for a in call.actions]
    assert kinds == ["music_on_hold_start", "music_on_hold_stop"]
    assert call.actions[0].detail == "jazz"
    assert center.queue_log(call.id)[-1] == (QueueEventKind.TIMED_OUT, None)
    # An agent logging in later gets no offer for the departed call.
    center.acd.login("1001")
    await center.clock.advance(5)
    assert center.switchboard.ringing_after(START) == []


async def test_calls_wait_with_music_until_an_agent_logs_in_and_go_oldest_first() -> None:
    center = Center(sales(), [agent("1001")])
    center.switchboard.phone("1001", answer_after=1.0, talk_for=10.0)
    first, _, first_task = center.call()
    await center.clock.advance(2)
    second, _, second_task = center.call()
    await center.clock.advance(30)
    assert center.acd.waiting("sales") == [first.id, second.id]
    center.acd.login("1001")
    await center.clock.advance(11)
    assert (await first_task).outcome is QueueOutcome.ANSWERED
    assert not second_task.done()
    await center.clock.advance(10 + 11)  # default wrap-up, then the second call
    assert (await second_task).outcome is QueueOutcome.ANSWERED


async def test_busy_and_unreachable_phones_are_skipped_and_set_not_ready() -> None:
    center = Center(sales(), AGENTS)
    for number in ("1001", "1002", "1003"):
        center.acd.login(number)
        await center.clock.advance(1)
    center.switchboard.phone("1001", behaviour=PhoneBehaviour.BUSY)
    center.switchboard.phone("1002", behaviour=PhoneBehaviour.UNREACHABLE)
    center.switchboard.phone("1003", answer_after=1.0)
    call, _, task = center.call()
    await center.clock.advance(2)
    assert [a for _, a in center.queue_log(call.id)] == [
        None,
        "1001",
        "1001",
        "1002",
        "1002",
        "1003",
        "1003",
    ]
    assert center.acd.agent("1001").reason == "busy"
    assert center.acd.agent("1002").reason == "unreachable"
    call.hang_up_caller()
    await task


async def test_ring_all_rings_every_ready_member_and_the_first_to_answer_wins() -> None:
    center = Center(sales(strategy=Strategy.RING_ALL), AGENTS)
    for number in ("1001", "1002", "1003"):
        center.acd.login(number)
    center.switchboard.phone("1001", answer_after=4.0)
    center.switchboard.phone("1002", answer_after=2.0, talk_for=5.0)
    center.switchboard.phone("1003", behaviour=PhoneBehaviour.NO_ANSWER)
    call, journal, task = center.call()
    await center.clock.advance(3)
    assert journal.agent == "1002"
    assert center.acd.agent("1001").state is AgentState.READY
    assert center.acd.agent("1003").state is AgentState.READY
    assert ("offer_cancelled", "1001") in [(a.kind, a.detail) for a in call.actions]
    await center.clock.advance(5)
    assert (await task).outcome is QueueOutcome.ANSWERED


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.ROUND_ROBIN, ["1001", "1002", "1003", "1001"]),
        (Strategy.SKILL_LEVEL, ["1003", "1003", "1003", "1003"]),
        (Strategy.FEWEST_CALLS, ["1003", "1002", "1001", "1003"]),
    ],
)
async def test_strategies_pick_agents_in_their_order(
    strategy: Strategy, expected: list[str]
) -> None:
    agents = [agent("1001", 2), agent("1002", 5), agent("1003", 9)]
    center = Center(sales(strategy=strategy, wrapup=0), agents)
    for number in ("1003", "1002", "1001"):
        center.acd.login(number)
        await center.clock.advance(1)
    for number in ("1001", "1002", "1003"):
        center.switchboard.phone(number, answer_after=1.0, talk_for=5.0)
    served = []
    for _ in expected:
        _, journal, task = center.call()
        await center.clock.advance(10)
        await task
        served.append(journal.agent)
    assert served == expected


async def test_random_strategy_offers_a_ready_member() -> None:
    center = Center(sales(strategy=Strategy.RANDOM), AGENTS)
    for number in ("1001", "1002"):
        center.acd.login(number)
    _, journal, task = center.call()
    await center.clock.advance(100)
    await task
    assert journal.agent in {"1001", "1002"}


async def test_not_ready_asked_during_a_call_applies_after_wrapup() -> None:
    center = Center(sales(wrapup=5), [agent("1001")])
    center.acd.login("1001")
    center.switchboard.phone("1001", answer_after=1.0, talk_for=10.0)
    _, _, task = center.call()
    await center.clock.advance(2)
    center.acd.set_not_ready("1001", "lunch")
    assert center.acd.agent("1001").state is AgentState.TALKING
    await center.clock.advance(20)
    await task
    status = center.acd.agent("1001")
    assert status.state is AgentState.NOT_READY
    assert status.reason == "lunch"


async def test_agents_outside_the_queue_skill_are_not_offered() -> None:
    center = Center(sales(max_wait=30), [agent("2001", skill="support")])
    center.acd.login("2001")
    _, _, task = center.call()
    await center.clock.advance(30)
    assert (await task).outcome is QueueOutcome.TIMED_OUT
    assert center.switchboard.ringing_after(START) == []


async def test_answered_queue_call_is_recorded_under_its_id(tmp_path: Path) -> None:
    center = Center(sales(), [agent("1001")], tmp_path)
    center.acd.login("1001")
    call, journal, task = center.call()
    await center.clock.advance(100)
    await task
    expected = str(tmp_path / "2026" / "05" / "28" / f"{call.id}.wav")
    assert journal.recording == expected
    assert ("record", expected) in [(a.kind, a.detail) for a in call.actions]


async def test_agent_requests_name_the_problem() -> None:
    center = Center(sales(), [agent("1001"), Agent(number="1009", name="No phone", group="sales")])
    with pytest.raises(AcdError, match="no agent numbered '1234'"):
        center.acd.login("1234")
    with pytest.raises(AcdError, match="agent 1009 has no extension"):
        center.acd.login("1009")
    with pytest.raises(AcdError, match="agent 1001 is logged out; log in first"):
        center.acd.set_ready("1001")
    center.acd.login("1001")
    with pytest.raises(AcdError, match="already logged in"):
        center.acd.login("1001")
    center.switchboard.phone("1001", answer_after=1.0)
    _, _, task = center.call()
    await center.clock.advance(2)
    with pytest.raises(AcdError, match="agent 1001 is talking; log out after the call"):
        center.acd.logout("1001")
    with pytest.raises(AcdError, match="no queue named 'nope'"):
        center.acd.queue("nope")
    task.cancel()


async def test_set_ready_ends_after_call_work_early_and_logout_stops_it() -> None:
    center = Center(sales(wrapup=60), [agent("1001"), agent("1002")])
    center.acd.login("1001")
    center.acd.login("1002")
    center.switchboard.phone("1001", answer_after=1.0, talk_for=5.0)
    center.switchboard.phone("1002", answer_after=1.0, talk_for=5.0)
    for _ in range(2):
        _, _, task = center.call()
        await center.clock.advance(7)
        await task
    assert center.acd.agent("1001").state is AgentState.AFTER_CALL_WORK
    assert center.acd.agent("1002").state is AgentState.AFTER_CALL_WORK
    center.acd.set_ready("1001")
    center.acd.logout("1002")
    await center.clock.advance(120)
    assert center.acd.agent("1001").state is AgentState.READY
    assert center.acd.agent("1002").state is AgentState.LOGGED_OUT
    assert center.states("1002")[-2:] == [AgentState.AFTER_CALL_WORK, AgentState.LOGGED_OUT]


async def test_fewest_calls_prefers_the_agent_with_fewer_calls_over_the_idlest() -> None:
    center = Center(sales(strategy=Strategy.FEWEST_CALLS, wrapup=0), AGENTS[:2])
    center.acd.login("1001")
    center.switchboard.phone("1001", answer_after=1.0, talk_for=5.0)
    _, first, task = center.call()
    await center.clock.advance(10)
    await task
    center.acd.login("1002")  # 1001 has been ready longer, but took a call
    _, second, task = center.call()
    await center.clock.advance(100)
    await task
    assert (first.agent, second.agent) == ("1001", "1002")


async def test_events_stream_reports_agent_and_queue_changes_in_order() -> None:
    center = Center(sales(wrapup=0), [agent("1001")])
    seen: list[str] = []

    async def watch() -> None:
        async for event in center.acd.events.stream():
            if isinstance(event, AgentStateChanged):
                seen.append(event.state.value)
            else:
                seen.append(event.kind.value)

    watcher = asyncio.ensure_future(watch())
    await center.clock.advance(0)
    center.acd.login("1001")
    center.switchboard.phone("1001", answer_after=1.0, talk_for=2.0)
    _, _, task = center.call()
    await center.clock.advance(5)
    await task
    watcher.cancel()
    assert seen == ["ready", "enter", "ringing", "offered", "answered", "talking", "ready"]


async def test_reconfigured_agents_keep_their_state_and_removed_ones_go() -> None:
    center = Center(sales(), AGENTS)
    center.acd.login("1001")
    center.acd.configure([sales(ring_timeout=30)], [agent("1001", level=9)])
    assert center.acd.agent("1001").state is AgentState.READY
    assert center.acd.agent("1001").skill_level("sales") == 9
    assert center.acd.queue("sales").ring_timeout == 30
    with pytest.raises(AcdError, match="no agent numbered '1002'"):
        center.acd.agent("1002")


async def test_a_queue_wait_cancelled_at_shutdown_leaves_the_queue() -> None:
    center = Center(sales(), [agent("1001")])
    _, _, task = center.call()
    await center.clock.advance(5)
    task.cancel()
    await center.clock.advance(0)
    assert center.acd.waiting("sales") == []
    center.acd.login("1001")
    await center.clock.advance(30)
    assert center.switchboard.ringing_after(START) == []
