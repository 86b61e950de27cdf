"""Call records and the queue event log in LMDB: batched writes, time ranges, restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.acd import Acd
from appliance.calllog import (
    CALL_LOG_RECORDS,
    CallLog,
    CallOutcome,
    CallRecord,
    QueueEvent,
    QueueEventKind,
)
from appliance.calllog.records import OpenCall
from appliance.calls import LegQuality, ManualClock
from appliance.calls.simulated import PhoneBehaviour, SimulatedCall, Switchboard
from appliance.config import CONFIG_RECORDS, load_document
from appliance.ivr import IvrService
from appliance.store import Store

DEMO = load_document((Path(__file__).parents[2] / "examples" / "demo.yaml").read_text(), "demo")
MONDAY_11 = dt.datetime(2026, 12, 7, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()

READ_BACK = """
import json, sys
from pathlib import Path
from appliance.calllog import CALL_LOG_RECORDS, CallRecord, QueueEvent
from appliance.config import CONFIG_RECORDS
from appliance.schema import dump
from appliance.store import Store
store = Store.open(Path(sys.argv[1]), (*CONFIG_RECORDS, *CALL_LOG_RECORDS))
calls = store.read_sync(lambda txn: [dump(r) for r in txn.scan(CallRecord)])
events = store.read_sync(lambda txn: [dump(r) for r in txn.scan(QueueEvent)])
store.close()
print(json.dumps({"calls": calls, "events": events}))
"""


async def _two_calls(store: Store, recordings: Path) -> None:
    """Sales calls: one answered after a RONA, one abandoned while agents are busy."""
    clock = ManualClock(MONDAY_11)
    switchboard = Switchboard()
    call_log = CallLog(store)
    acd = Acd(clock, DEMO.queues, DEMO.agents, recordings=recordings)
    acd.events.add(call_log.note)
    ivr = IvrService(clock, acd, call_log)
    ivr.configure(DEMO.numbers, DEMO.flows, DEMO.schedules)
    acd.login("1001")
    await clock.advance(1)
    acd.login("1002")
    switchboard.phone("1001", behaviour=PhoneBehaviour.NO_ANSWER)
    switchboard.phone("1002", answer_after=5.0, talk_for=45.0)

    quality = [LegQuality("caller", 0.2, 8.5, 4.35), LegQuality("agent", 0.0, 2.0, 4.4)]
    answered = SimulatedCall(
        clock, switchboard, call_id="a-1", caller="13911112222", quality=quality
    )
    handled = [asyncio.ensure_future(ivr.handle(answered))]
    answered.press("1")
    await clock.advance(21)  # 1001 rang out; 1002 rings
    abandoned = SimulatedCall(clock, switchboard, call_id="b-2")
    handled.append(asyncio.ensure_future(ivr.handle(abandoned)))
    abandoned.press("1")
    await clock.advance(7)
    abandoned.hang_up_caller()
    await clock.advance(600)
    await asyncio.gather(*handled)
    await call_log.flush()


async def test_call_records_and_queue_events_survive_a_process_restart(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", (*CONFIG_RECORDS, *CALL_LOG_RECORDS))
    await _two_calls(store, tmp_path / "recordings")
    store.close()

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READ_BACK, str(tmp_path / "db"), stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0
    data = json.loads(stdout)
    calls = {c["id"]: c for c in data["calls"]}
    assert [c["id"] for c in data["calls"]] == ["a-1", "b-2"]  # in start-time order

    first = calls["a-1"]
    start = round(MONDAY_11 * 1_000_000) + 1_000_000
    assert first["started_us"] == start
    assert first["caller"] == "13911112222"
    assert first["dialled"] == "4008001234"
    assert first["trunk"] == "gateway"
    assert first["ivr_path"] == ["hours", "answer", "menu", "sales"]
    assert first["digits"] == "1"
    assert first["queue"] == "sales"
    assert first["outcome"] == "answered"
    assert first["agent"] == "1002"
    assert first["ring_attempts"] == 2
    assert first["wait_s"] == 25.0  # 20 s ring timeout on 1001, then 5 s on 1002
    assert first["talk_s"] == 45.0
    assert first["wrapup_s"] == 10
    assert first["hangup_side"] == "agent"
    assert first["hangup_cause"] == 16
    assert first["recording"].endswith("/2026/12/07/a-1.wav")
    assert first["ended_us"] - first["started_us"] == 70_000_000
    assert first["legs"] == [
        {"leg": "caller", "loss_percent": 0.2, "jitter_ms": 8.5, "mos": 4.35},
        {"leg": "agent", "loss_percent": 0.0, "jitter_ms": 2.0, "mos": 4.4},
    ]

    second = calls["b-2"]
    assert second["outcome"] == "abandoned"
    assert second["hangup_side"] == "caller"
    assert second["wait_s"] == 7.0
    assert "agent" not in second

    log = [(e["call_id"], e["kind"], e.get("agent")) for e in data["events"]]
    assert log == [
        ("a-1", "enter", None),
        ("a-1", "offered", "1001"),
        ("a-1", "rona", "1001"),
        ("a-1", "offered", "1002"),
        ("b-2", "enter", None),
        ("a-1", "answered", "1002"),
        ("b-2", "abandoned", None),
    ]
    times = [e["time_us"] for e in data["events"]]
    assert times == sorted(times)


async def test_call_log_reads_a_time_range(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", CALL_LOG_RECORDS)
    call_log = CallLog(store)
    for i, start in enumerate((100.0, 200.0, 300.0)):
        call_log.add(
            CallRecord(
                id=f"c{i}",
                started_us=int(start * 1e6),
                ended_us=int(start * 1e6) + 1,
                dialled="1",
                caller="2",
                outcome=CallOutcome.IVR,
                hangup_side="caller",
                hangup_cause=16,
            )
        )
        call_log.add(
            QueueEvent(
                time_us=int(start * 1e6),
                call_id=f"c{i}",
                seq=0,
                queue="q",
                kind=QueueEventKind.ENTER,
            )
        )
    await call_log.flush()
    assert [c.id for c in await call_log.calls(150, 300)] == ["c1"]
    assert [e.call_id for e in await call_log.queue_events(100, 301)] == ["c0", "c1", "c2"]
    store.close()


async def test_a_call_cut_off_by_a_dead_switch_is_recorded_as_interrupted(tmp_path: Path) -> None:
    # The store as a crash would leave it: a consistent copy taken while the call talks.
    store = Store.open(tmp_path / "db", (*CONFIG_RECORDS, *CALL_LOG_RECORDS))
    clock = ManualClock(MONDAY_11)
    switchboard = Switchboard()
    call_log = CallLog(store, clock.time, snapshot_s=0.01)
    acd = Acd(clock, DEMO.queues, DEMO.agents, recordings=tmp_path / "recordings")
    ivr = IvrService(clock, acd, call_log)
    ivr.configure(DEMO.numbers, DEMO.flows, DEMO.schedules)
    acd.login("1002")
    switchboard.phone("1002", answer_after=5.0, talk_for=None)
    call = SimulatedCall(clock, switchboard, call_id="c-1", caller="13911112222")
    handled = asyncio.ensure_future(ivr.handle(call))
    call.press("1")
    await clock.advance(30)  # answered by 1002 at +5 s in the queue, talking since
    await asyncio.sleep(0.1)  # a snapshot or two, in real time
    await clock.advance(30)
    await asyncio.sleep(0.1)  # the switch says it lives, 30 s later
    store.backup(tmp_path / "crashed.mdb")

    call.hang_up_caller()
    await clock.advance(60)
    await handled
    await call_log.flush()
    assert store.read_sync(lambda txn: txn.count(OpenCall)) == 0  # the final record replaced it
    assert await call_log.recover() == []
    store.close()

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (tmp_path / "crashed.mdb").rename(crashed / "data.mdb")
    restarted = Store.open(crashed, (*CONFIG_RECORDS, *CALL_LOG_RECORDS))
    (record,) = await CallLog(restarted).recover()
    assert restarted.read_sync(lambda txn: txn.count(OpenCall)) == 0
    assert await CallLog(restarted).calls(0, MONDAY_11 + 3600) == [record]
    restarted.close()
    assert (record.id, record.caller, record.outcome) == ("c-1", "13911112222", "interrupted")
    assert (record.hangup_side, record.hangup_cause) == ("system", 41)
    assert (record.queue, record.agent, record.ivr_path[-1]) == ("sales", "1002", "sales")
    assert record.recording is not None
    assert record.recording.endswith("/2026/12/07/c-1.wav")
    # It was last written down at +30 s, talking; the switch last said it lived at +60 s.
    assert record.ended_us == round((MONDAY_11 + 60) * 1e6)
    assert (record.wait_s, record.talk_s) == (5.0, 55.0)  # answered at +5 s, talked to the end
