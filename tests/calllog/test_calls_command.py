"""``callbox calls``: the latest call records from the store, as a table or JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from appliance.calllog import CallOutcome, CallRecord
from appliance.calllog.records import microseconds
from appliance.calls import LegQuality
from appliance.config import open_store
from appliance.settings import Settings
from appliance.store import Txn


def callbox_calls(data_dir: Path, *args: str) -> str:
    env = dict(os.environ, CALLBOX_DATA_DIR=str(data_dir))
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "calls", *args],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def record(call_id: str, started: float, outcome: CallOutcome) -> CallRecord:
    return CallRecord(
        id=call_id,
        started_us=microseconds(started),
        ended_us=microseconds(started + 60),
        dialled="4008001234",
        caller="13800138000",
        outcome=outcome,
        hangup_side="caller",
        hangup_cause=16,
        trunk="gateway",
        queue="sales",
        wait_s=12.0,
        agent="1001" if outcome is CallOutcome.ANSWERED else None,
        talk_s=40.0 if outcome is CallOutcome.ANSWERED else None,
        legs=[LegQuality("caller", 0.5, 3.0, 4.31), LegQuality("agent", 0.0, 2.0, 4.4)],
    )


def test_calls_lists_the_latest_records_oldest_first_and_as_json(tmp_path: Path) -> None:
    data = tmp_path / "var"
    store = open_store(Settings(data_dir=str(data)))
    now = time.time()
    records = [
        record("old", now - 2 * 86400, CallOutcome.ANSWERED),
        record("a", now - 600, CallOutcome.ANSWERED),
        record("b", now - 300, CallOutcome.ABANDONED),
        record("c", now - 60, CallOutcome.ANSWERED),
    ]

    def put_all(txn: Txn) -> None:
        for r in records:
            txn.put(r)

    store.write_sync(put_all)
    store.close()

    table = callbox_calls(data).splitlines()
    assert "outcome" in table[0]
    assert "recording" in table[0]
    rows = [line.split() for line in table[1:]]
    # A day back by default: the two-day-old call is not listed.
    assert [row[2] for row in rows] == ["a", "b", "c"]
    assert rows[0][3:10] == ["13800138000", "4008001234", "gateway", "answered", "sales", "12", "s"]
    assert rows[0][-1] == "inbound"
    assert "4.3/4.4" in table[1]
    assert "0.5/0.0" in table[1]

    plain = json.loads(callbox_calls(data, "--json", "--last", "2", "--hours", "72"))
    assert [r["id"] for r in plain] == ["b", "c"]
    assert plain[0]["outcome"] == "abandoned"
    assert "agent" not in plain[0]
    assert plain[1]["legs"][0] == {
        "leg": "caller",
        "loss_percent": 0.5,
        "jitter_ms": 3.0,
        "mos": 4.31,
    }


def test_calls_says_so_when_there_are_none(tmp_path: Path) -> None:
    data = tmp_path / "var"
    open_store(Settings(data_dir=str(data))).close()
    assert callbox_calls(data).strip() == "no calls in that time"
