"""A switch killed mid-call: the call still has its record and its recording plays.

The switch runs as its own process. A trunk caller reaches an agent (a
baresip phone) through a queue, both send a tone, and the switch gets
SIGKILL in the middle of the conversation. The next switch to start on
the same data folder turns what the dead one had written down about the
call into its record (outcome ``interrupted``), and the stereo WAV the
media core was writing holds the caller on the left and the agent on the
right up to the kill.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.callcenter.peers import (
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    RtpCaller,
    at_8k,
    eventually,
    has_tone,
    read_wav,
    start_sipp,
    trunk_call_scenario,
)
from tests.sip.test_calls import Baresip
from tests.sip.test_switch import RunningSwitch, configured_switch, start_switch

NUMBER = "4008001234"
QUEUE = f"""numbers:
  - {{number: "{NUMBER}", flow: main, trunk: gateway}}
flows:
  - name: main
    start: answer
    nodes:
      answer: {{type: answer, next: sales}}
      sales: {{type: queue, queue: sales}}
queues:
  - {{name: sales, skill: sales, ring_timeout: 20, wrapup: 0, max_wait: 300}}
skills:
  - {{name: sales}}
agents:
  - {{number: "1001", name: agent 1001, group: sales, extension: "1001"}}
"""


def callbox(switch: RunningSwitch, *args: str) -> str:
    """``callbox ARGS`` against ``switch``'s data folder; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        env=switch.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def status(switch: RunningSwitch) -> dict[str, object]:
    result: dict[str, object] = json.loads(callbox(switch, "status", "--json"))
    return result


async def test_a_call_survives_a_killed_switch_as_an_interrupted_record_and_a_playable_recording(
    tmp_path: Path,
) -> None:
    switch = start_switch(configured_switch(tmp_path, records=QUEUE))
    agent = Baresip(switch, "1001", tmp_path / "phone1001", AGENT_TONE_HZ, "udp")
    caller = RtpCaller()
    sipp = None
    try:
        agent.start()
        await eventually(
            lambda: "1001" in json.dumps(status(switch).get("registrations")), "1001 to register"
        )
        await asyncio.to_thread(callbox, switch, "agent", "login", "1001")
        caller.start_tone()
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller, hang_up_after_ms=None)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await eventually(
            lambda: has_tone(caller.heard_since(0), AGENT_TONE_HZ, 3.0),
            "three seconds of the agent's tone at the caller",
        )
        killed_at = time.time()
        switch.process.send_signal(signal.SIGKILL)
        switch.process.communicate(timeout=30)
    finally:
        caller.close()
        if sipp is not None and sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        if agent.process is not None:
            # Its de-registration would wait for the dead switch.
            agent.process.kill()
            agent.process.communicate(timeout=30)

    restarted = start_switch(switch)
    try:
        (record,) = json.loads(callbox(restarted, "calls", "--json"))
    finally:
        restarted.process.send_signal(signal.SIGINT)
        out, _ = restarted.process.communicate(timeout=30)
    assert restarted.process.returncode == 0, out
    assert "recorded as interrupted" in out
    assert (record["outcome"], record["hangup_side"], record["hangup_cause"]) == (
        "interrupted", "system", 41,
    )  # fmt: skip
    assert (record["dialled"], record["trunk"], record["queue"]) == (NUMBER, "gateway", "sales")
    assert record["agent"] == "1001"
    # It ended at the switch's last sign of life (every SNAPSHOT_S, 2 s, unless the machine
    # starved it), talking to the end.
    started, ended = record["started_us"] / 1e6, record["ended_us"] / 1e6
    assert killed_at - 10 < ended <= killed_at
    assert 0 < record["talk_s"] < ended - started
    rate, (left, right) = read_wav(Path(record["recording"]))
    assert has_tone(at_8k(rate, left), CALLER_TONE_HZ), "the caller's tone on the left"
    assert has_tone(at_8k(rate, right), AGENT_TONE_HZ), "the agent's tone on the right"
