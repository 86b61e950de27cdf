"""The IVR engine on simulated calls: every node type, menus, schedules, queues, the record."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance.acd import Acd
from appliance.calllog import CallOutcome, CallRecord
from appliance.calls import HangupCause, LegQuality, ManualClock, Side
from appliance.calls.simulated import SimulatedCall, Switchboard
from appliance.config import load_document
from appliance.config.records import Configuration
from appliance.ivr import MAX_STEPS, IvrService

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Tuesday 1 December 2026, 10:00 in Shanghai: office hours.
TUESDAY_10 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI).timestamp()

BASE = """
numbers:
  - {number: "4008001234", flow: main, trunk: gateway}
trunks:
  - {name: gateway, mode: ip, host: 192.0.2.10, allow: [192.0.2.10]}
extensions:
  - {number: "1001", password: phone-1001-secret}
skills:
  - {name: sales}
queues:
  - {name: sales, skill: sales, max_wait: 60, ring_timeout: 15, wrapup: 5}
agents:
  - {number: "1001", name: Zhang, group: sales, extension: "1001", skills: {sales: 5}}
schedules:
  - name: office
    periods: [{days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}]
    holidays: ["2026-10-01"]
flows:
  - name: main
    start: {start}
    nodes:
{nodes}
"""


def config(nodes: str, start: str = "hours") -> Configuration:
    indented = "\n".join("      " + line for line in nodes.strip("\n").splitlines())
    return load_document(BASE.replace("{start}", start).replace("{nodes}", indented), "test.yaml")


MENU = """
hours: {type: time_condition, schedule: office, open: answer, closed: closed}
answer: {type: answer, next: menu}
menu:
  type: menu
  prompt: menu
  options: {"1": sales, "2": account}
  timeout: 5
  retries: 2
  invalid_prompt: invalid
  failed: goodbye
account: {type: collect, prompt: welcome, variable: account, next: bye, min_digits: 4,
          max_digits: 8, timeout: 5}
sales: {type: queue, queue: sales, timeout: busy}
busy: {type: play, prompt: all_busy, next: goodbye}
closed: {type: play, prompt: closed, next: goodbye}
bye: {type: play, prompt: goodbye, next: goodbye}
goodbye: {type: hangup}
"""


class Box:
    """The IVR and ACD on a manual clock with one simulated call to 4008001234."""

    def __init__(self, configuration: Configuration, at: float = TUESDAY_10) -> None:
        self.clock = ManualClock(at)
        self.switchboard = Switchboard()
        self.acd = Acd(self.clock, configuration.queues, configuration.agents)
        self.ivr = IvrService(self.clock, self.acd)
        self.ivr.configure(configuration.numbers, configuration.flows, configuration.schedules)
        self.call = SimulatedCall(
            self.clock,
            self.switchboard,
            call_id="c1",
            quality=[LegQuality("caller", 0.5, 12.0, 4.3)],
        )
        self.handled = asyncio.get_running_loop().create_task(self.ivr.handle(self.call))

    async def finish(self, limit: float = 3600) -> CallRecord:
        await self.clock.advance(limit)
        assert self.handled.done(), "the call should have ended"
        return await self.handled

    def plays(self) -> list[str]:
        return [a.detail for a in self.call.actions if a.kind == "play"]


async def test_menu_key_goes_to_its_option_and_path_and_digits_are_recorded() -> None:
    box = Box(config(MENU))
    await box.clock.advance(1)
    box.call.press("2")
    await box.clock.advance(2)
    box.call.press("1234#")
    record = await box.finish()
    assert record.ivr_path == ["hours", "answer", "menu", "account", "bye", "goodbye"]
    assert record.digits == "21234#"
    assert record.variables == {"account": "1234"}
    assert record.hangup_side == "system"
    assert record.hangup_cause == HangupCause.NORMAL_CLEARING
    assert record.outcome is CallOutcome.IVR
    assert record.answered_us == record.started_us
    assert box.plays() == ["menu (barge-in)", "welcome (barge-in)", "goodbye"]


async def test_menu_timeout_retries_then_takes_failed_branch() -> None:
    box = Box(config(MENU))
    record = await box.finish()
    # The prompt (3 s) and the timeout (5 s), three times: once and two retries.
    assert box.plays() == ["menu (barge-in)"] * 3
    hangup = next(a for a in box.call.actions if a.kind == "hangup")
    assert hangup.time - box.call.started_at == pytest.approx(3 * (3 + 5))
    assert record.ivr_path == ["hours", "answer", "menu", "goodbye"]
    assert record.digits == ""


async def test_invalid_key_plays_the_invalid_prompt_and_counts_as_a_retry() -> None:
    box = Box(config(MENU))
    for _ in range(3):
        box.call.press("9")
        await box.clock.advance(4)
    record = await box.finish()
    assert box.plays() == ["menu (barge-in)", "invalid (barge-in)"] * 3
    assert record.digits == "999"
    assert record.ivr_path[-1] == "goodbye"


async def test_typed_ahead_digit_skips_the_menu_prompt() -> None:
    box = Box(config(MENU))
    box.call.press("1")
    await box.clock.advance(0)
    assert box.plays() == ["menu (barge-in)"]
    assert box.acd.waiting("sales") == ["c1"]


async def test_closed_hours_take_the_closed_branch() -> None:
    saturday = dt.datetime(2026, 12, 5, 10, 0, tzinfo=SHANGHAI).timestamp()
    box = Box(config(MENU), at=saturday)
    record = await box.finish()
    assert record.ivr_path == ["hours", "closed", "goodbye"]
    assert box.plays() == ["closed"]


@pytest.mark.parametrize(
    ("local", "path"),
    [
        (dt.datetime(2026, 10, 1, 10, 0), "closed"),  # a holiday, on a Thursday
        (dt.datetime(2026, 12, 1, 8, 59), "closed"),
        (dt.datetime(2026, 12, 1, 9, 0), "answer"),
        (dt.datetime(2026, 12, 1, 17, 59), "answer"),
        (dt.datetime(2026, 12, 1, 18, 0), "closed"),
    ],
)
async def test_time_condition_reads_hours_and_holidays_in_the_schedule_zone(
    local: dt.datetime, path: str
) -> None:
    box = Box(config(MENU), at=local.replace(tzinfo=SHANGHAI).timestamp())
    box.call.hang_up_caller()
    record = await box.finish()
    assert record.ivr_path[:2] == ["hours", path]


async def test_queue_timeout_takes_the_timeout_branch() -> None:
    box = Box(config(MENU))
    box.call.press("1")
    record = await box.finish()
    assert record.ivr_path == ["hours", "answer", "menu", "sales", "busy", "goodbye"]
    assert record.queue == "sales"
    assert record.outcome is CallOutcome.TIMED_OUT
    assert record.wait_s == pytest.approx(60)


async def test_queued_call_answered_by_an_agent_leaves_a_full_record() -> None:
    box = Box(config(MENU))
    box.acd.login("1001")
    box.switchboard.phone("1001", answer_after=4.0, talk_for=None)
    box.call.press("1")
    await box.clock.advance(30)
    box.call.hang_up_caller()
    record = await box.finish()
    assert record.outcome is CallOutcome.ANSWERED
    assert record.agent == "1001"
    assert record.agent_extension == "1001"
    assert record.wait_s == pytest.approx(4)
    assert record.talk_s == pytest.approx(26)
    assert record.ring_attempts == 1
    assert record.wrapup_s == 5
    assert record.hangup_side == Side.CALLER.value
    assert record.trunk == "gateway"
    assert record.legs[0].mos == pytest.approx(4.3)
    assert record.ended_us - record.started_us == 30_000_000


async def test_caller_hanging_up_in_the_menu_ends_the_flow() -> None:
    box = Box(config(MENU))
    await box.clock.advance(4)
    box.call.hang_up_caller()
    record = await box.finish()
    assert record.hangup_side == "caller"
    assert record.ivr_path == ["hours", "answer", "menu"]
    assert record.ended_us - record.started_us == 4_000_000


async def test_collect_with_too_few_digits_leaves_the_variable_empty() -> None:
    box = Box(config(MENU))
    box.call.press("2")
    await box.clock.advance(1)
    box.call.press("12#")
    record = await box.finish()
    assert record.variables == {"account": ""}


async def test_transfer_node_hands_the_call_to_the_destination() -> None:
    nodes = "go: {type: transfer, destination: '1001'}"
    box = Box(config(nodes, start="go"))
    await box.clock.advance(20)
    box.call.hang_up_caller()
    record = await box.finish()
    assert record.transferred_to == "1001"
    assert record.outcome is CallOutcome.TRANSFERRED
    assert [a.kind for a in box.call.actions][:1] == ["transfer"]


async def test_a_flow_looping_without_waiting_is_cut_off() -> None:
    nodes = "a: {type: time_condition, schedule: office, open: a, closed: a}"
    box = Box(config(nodes, start="a"))
    record = await box.finish()
    assert len(record.ivr_path) == MAX_STEPS + 1
    assert record.ivr_path[-1] == "(loop limit)"
    assert record.hangup_side == "system"


async def test_unknown_number_is_hung_up_and_still_recorded() -> None:
    box = Box(config(MENU))
    box.ivr.configure([], [], [])
    record = await box.finish()
    assert record.dialled == "4008001234"
    assert record.flow is None
    assert record.hangup_cause == HangupCause.NORMAL_UNSPECIFIED
