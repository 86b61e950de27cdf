"""``callbox bench capacity``'s codec mix, impairment and attach mode, and the switch's media
stats it reads: against a switch the test starts, with real SIPp agents and callers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.calls.legs import media_stats
from benchmarks import callcenter_load
from benchmarks.sip_load import Settings, running_switch
from tests.benchmarks.test_benchmark_tools import ROOT, needs_engine, needs_two_cpus

pytestmark = pytest.mark.slow


def test_a_codec_mix_is_parsed_into_answer_codecs_and_shares() -> None:
    assert callcenter_load.parse_mix("g711=70,g722=20,opus=10") == {
        "PCMA": 70,
        "G722": 20,
        "opus": 10,
    }
    assert callcenter_load.parse_mix("PCMU=100") == {"PCMU": 100}


@pytest.mark.parametrize(
    ("mix", "problem"),
    [
        ("g729=100", "not a codec of the mix"),
        ("g711=70,g722=20", "add up to 90"),
        ("g711=x", "share must be a percentage"),
    ],
)
def test_a_bad_codec_mix_is_refused_naming_the_problem(mix: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        callcenter_load.parse_mix(mix)


def test_every_run_of_consecutive_agents_gets_the_mix() -> None:
    agents = [str(60000 + i) for i in range(100)]
    codecs = callcenter_load.agent_codecs(agents, {"PCMA": 70, "G722": 20, "opus": 10})
    for start, length in ((0, 10), (37, 10), (0, 100)):
        window = [codecs[a] for a in agents[start : start + length]]
        assert abs(window.count("PCMA") - 0.7 * length) <= 1
        assert abs(window.count("G722") - 0.2 * length) <= 1
        assert abs(window.count("opus") - 0.1 * length) <= 1


def _leg(codec: str, received: int, late: int, buffer: bool = True) -> dict[str, object]:
    return {
        "codec": codec, "port": 40000, "received": received, "sent": received, "lost": 1,
        "mos": 4.3 if late else 4.4,
        "jitter_buffer": {
            "received": received, "late": late, "lost": 1, "discarded": 0, "concealed": 2,
            "played": received - late,
        } if buffer else None,
    }  # fmt: skip


def test_media_stats_sum_the_legs_and_their_jitter_buffers_per_codec() -> None:
    calls = [
        {"id": "a", "legs": {"caller": _leg("PCMA", 100, 1), "agent": _leg("G722", 99, 0)}},
        {"id": "b", "legs": {"caller": _leg("PCMA", 50, 0), "agent": _leg("PCMA", 50, 0, False)}},
    ]
    stats = media_stats(calls)
    assert (stats["calls"], stats["legs"], stats["legs_with_jitter_buffer"]) == (2, 4, 3)
    assert (stats["received"], stats["lost"], stats["mos_min"]) == (299, 4, 4.3)
    assert stats["jitter_buffer"] == {
        "received": 249, "late": 1, "lost": 3, "discarded": 0, "concealed": 6, "played": 248,
    }  # fmt: skip
    assert stats["late_or_lost_pct"] == round(100 * 4 / 252, 4)
    assert set(stats["by_codec"]) == {"G722", "PCMA"}
    assert stats["by_codec"]["PCMA"]["legs"] == 3
    assert stats["by_codec"]["G722"]["jitter_buffer"]["received"] == 99
    assert media_stats([])["late_or_lost_pct"] is None


@needs_engine
@needs_two_cpus
def test_attached_to_a_running_switch_agents_answer_in_the_mix_through_an_impairing_relay(
    tmp_path: Path,
) -> None:
    mix = "g711=50,g722=25,opus=25"
    config = subprocess.run(
        [sys.executable, "-m", "benchmarks.callcenter_load", "--print-config", "--steps", "4",
         "--codecs", mix],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert config.count("codecs: [G722]") == 1
    assert config.count("codecs: [opus]") == 1
    output = tmp_path / "capacity.json"
    with (
        callcenter_load.prompts_cached(tmp_path),
        running_switch(
            tmp_path, config, Settings(2, 0, 0, 0), None, extra_env=callcenter_load.SWITCH_ENV
        ) as switch,
    ):
        # The switch's media stats answer before any call: nothing summed yet.
        api = callcenter_load.ControlApi(tmp_path / "var" / "run" / "switch.sock")
        idle = api.request("GET", "/media/stats")
        assert (idle["calls"], idle["legs"], idle["late_or_lost_pct"]) == (0, 0, None)
        done = callcenter_load.main(
            ["--attach", str(tmp_path / "var" / "run" / "switch.sock"), "--steps", "4",
             "--hold", "3", "--codecs", mix, "--loss-pct", "10", "--jitter-ms", "30",
             "--no-floor", "--no-peer", "--nice", "0", "--output", str(output)]
        )  # fmt: skip
        assert done == 0
        assert switch.pid > 0
    report = json.loads(output.read_text(encoding="utf-8"))
    (step,) = report["steps"]
    assert step["failed"] == 0, step
    # Each agent answered in its codec: the agent legs' codecs, as the switch reports them.
    assert step["codec_mix"] == {"PCMA": 2, "G722": 1, "opus": 1}
    assert set(step["by_codec"]) == {"PCMA", "G722", "opus"}
    assert all(q["frames_received"] > 0 for q in step["by_codec"].values())
    # The relay dropped a tenth of the agents' RTP into the box; the box's jitter buffers
    # (every call is recorded) saw those frames missing.
    assert step["network"]["dropped"] > 0
    assert step["network"]["to_box"] > 0
    assert step["inside"]["legs_with_jitter_buffer"] == 8
    assert step["inside"]["lost"] > 0
    assert report["summary"]["impairment"] == {"jitter_ms": 30.0, "loss_pct": 10.0,
                                               "reorder_pct": 0.0}  # fmt: skip
    assert report["settings"]["attached"]


@needs_engine
@needs_two_cpus
def test_calls_that_come_and_go_after_a_wait_in_the_queue_keep_the_step_talking(
    tmp_path: Path,
) -> None:
    output = tmp_path / "capacity.json"
    args = ["--steps", "4", "--hold", "2", "--call-seconds", "5", "--queue-seconds", "1"]
    args += ["--no-floor", "--no-peer", "--nice", "0", "--output", str(output)]
    assert callcenter_load.main(args) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    assert (report["settings"]["call_seconds"], report["settings"]["queue_seconds"]) == (5, 1)
    (step,) = report["steps"]
    assert step["coming_and_going"] is True
    # Four every five seconds, for the queue's wait, the talk and the window: calls came
    # and went, every one answered, recorded and written down.
    assert step["placed"] > 4
    assert step["successful"] == step["placed"]
    assert step["failed"] == 0
    assert step["answered_records"] == step["recorded"] == step["placed"]
    assert 0.95 * 4 <= step["calls_talking_mean"] <= 4 + 1
    # The switch's own records: from the call's start to its agent's answer, the second
    # the agents' phones rang while the callers heard the queue's music.
    assert 1000 <= step["to_agent_ms_p50"] < 5000
    assert step["lost_pct"] == 0
    assert report["summary"]["max_concurrent_calls"] == 4


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--call-seconds", "10", "--hold", "10"], "--call-seconds must be more than --hold (10)"),
        (["--queue-seconds", "-1"], "--queue-seconds must be 0 to 600: got -1"),
    ],
)
def test_call_and_queue_seconds_out_of_range_are_refused_naming_them(
    args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        callcenter_load.main(args)
    assert problem in capsys.readouterr().err


def test_agents_cover_the_calls_ringing_while_others_talk() -> None:
    parse = callcenter_load.parser().parse_args
    assert callcenter_load.agents_needed(parse(["--steps", "10,100"])) == 100
    churn = parse(["--steps", "100", "--call-seconds", "60", "--queue-seconds", "30"])
    # Each agent is busy 90 s of every 60: 150 agents, and a tenth more, and two.
    assert callcenter_load.agents_needed(churn) == 167
