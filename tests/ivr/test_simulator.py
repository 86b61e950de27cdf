"""The flow simulator on the demo configuration: digits in, the switch's actions out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.calllog import CallOutcome
from appliance.config import load_document
from appliance.ivr import simulate_call

DEMO = load_document((Path(__file__).parents[2] / "examples" / "demo.yaml").read_text(), "demo")
MONDAY_11 = dt.datetime(2026, 12, 7, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


async def test_pressing_1_in_the_demo_menu_reaches_a_sales_agent() -> None:
    result = await simulate_call(DEMO, "4008001234", [(1.0, "1")], at=MONDAY_11)
    assert [(a.time, a.kind, a.detail) for a in result.actions] == [
        (0.0, "answer", ""),
        (0.0, "play", "menu (barge-in)"),
        (1.0, "dtmf", "1"),
        (1.0, "music_on_hold_start", "default"),
        (1.0, "offer", "1001"),
        (3.0, "offer_answered", "1001"),
        (3.0, "music_on_hold_stop", ""),
        (3.0, "bridge", "1001"),
        (63.0, "hangup", "agent NORMAL_CLEARING"),
    ]
    assert result.record.outcome is CallOutcome.ANSWERED
    assert result.record.ivr_path == ["hours", "answer", "menu", "sales"]


async def test_simulating_without_agents_shows_the_queue_giving_up() -> None:
    result = await simulate_call(
        DEMO, "4008001234", [(0.5, "2")], at=MONDAY_11, agents_logged_in=False
    )
    assert result.record.outcome is CallOutcome.TIMED_OUT
    assert result.record.wait_s == 600
    assert result.actions[-1].kind == "hangup"
    assert result.actions[-1].time == 600.5


async def test_simulating_at_night_takes_the_closed_branch() -> None:
    result = await simulate_call(DEMO, "4008001234", [], at=MONDAY_11 + 12 * 3600)
    assert [a.kind for a in result.actions] == ["answer", "play", "hangup"]
    assert result.record.ivr_path == ["hours", "closed", "goodbye"]
