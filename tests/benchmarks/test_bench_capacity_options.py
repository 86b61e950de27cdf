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
