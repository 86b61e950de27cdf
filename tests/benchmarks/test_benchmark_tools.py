"""The benchmark tools run end to end and say what they measured: behaviour, never speed.

The capacity harness and the load generator run on a couple of calls for
about a second; the jitter-quality benchmark on short traces. Timing figures
(CPU, transit, lateness) are only checked to be present and well formed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import core
from benchmarks import callcenter_load, capacity, jitter_quality, sip_load
from benchmarks.speex_jitter import SpeexGet, SpeexJitterBuffer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
needs_engine = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the Python twin has no media engine"
)
needs_two_cpus = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="the box and the generator need a CPU each"
)


@pytest.fixture(scope="module")
def loadgen() -> Path:
    """build/loadgen, built by its Makefile rule if it is missing or stale."""
    subprocess.run(["make", "-s", "build/loadgen"], cwd=ROOT, check=True)
    return capacity.LOADGEN


def run_through_echo(loadgen: Path, calls: int) -> dict[str, Any]:
    """The generator's JSON result for ``calls`` calls through the echo floor."""
    with (
        subprocess.Popen([str(loadgen), "echo", "--legs", str(2 * calls)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as echo,
        subprocess.Popen([str(loadgen), "generate", "--calls", str(calls), "--warmup-ms", "100",
                          "--duration-ms", "600", "--drain-ms", "10000"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as generator,
    ):  # fmt: skip
        assert echo.stdin
        assert echo.stdout
        assert generator.stdin
        assert generator.stdout
        phones = generator.stdout.readline().split()
        legs = echo.stdout.readline().split()
        assert phones[0] == "phones"
        assert len(phones) == 1 + 2 * calls
        assert legs[0] == "legs"
        assert len(legs) == 1 + 2 * calls
        generator.stdin.write(" ".join(legs) + "\n")
        generator.stdin.flush()
        lines = generator.stdout.read().splitlines()
        echo.stdin.close()
        assert echo.wait(timeout=30) == 0
    assert generator.returncode == 0
    assert lines[:2] == ["measuring", "done"]
    result: dict[str, Any] = json.loads(lines[2])
    return result


def test_generator_sends_every_packet_through_the_echo_and_gets_each_back(loadgen: Path) -> None:
    result = run_through_echo(loadgen, calls=3)
    assert result["calls"] == 3
    for direction in ("caller_to_agent", "agent_to_caller"):
        counts = result[direction]
        # 600 ms of 20 ms packets from each of 3 phones in this direction.
        assert counts["sent"] == 3 * 30
        assert counts["received"] == counts["sent"]  # loopback loses nothing; the drain waits
        assert counts["lost"] == 0
        assert 0 <= counts["late"] <= counts["received"]
        transit = counts["transit_us"]
        assert transit["p50"] <= transit["p99"] <= transit["max"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate"], "generate needs --calls"),
        (["generate", "--calls", "0"], "--calls must be an integer in 1..100000: got '0'"),
        (["echo", "--legs", "2", "--bogus", "1"], "unknown option --bogus"),
        (["relay"], "unknown mode 'relay'"),
    ],
)
def test_generator_rejects_bad_arguments_naming_them(
    loadgen: Path, args: list[str], message: str
) -> None:
    done = subprocess.run([str(loadgen), *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert message in done.stderr


@needs_engine
@needs_two_cpus
def test_capacity_harness_writes_summary_steps_machine_and_commit(
    loadgen: Path, tmp_path: Path
) -> None:
    output = tmp_path / "core-capacity.json"
    args = ["--steps", "2,4", "--hold", "0.6", "--warmup", "0.2", "--record", "--nice", "0"]
    assert capacity.main([*args, "--output", str(output)]) == 0
    result = json.loads(output.read_text(encoding="utf-8"))

    summary = result["summary"]
    assert set(summary) >= {"calls_per_core", "cpu_us_per_call_second",
                            "floor_cpu_us_per_call_second", "ratio_to_floor"}  # fmt: skip
    assert summary["calls_per_core"] in (0, 2, 4)
    assert [step["calls"] for step in result["steps"]][:1] == [2]
    for step in result["steps"]:
        for box in ("engine", "echo"):
            row = step[box]
            assert row["box_cpu_s"] > 0  # the box did relay
            assert row["generator"]["calls"] == step["calls"]
            assert row["generator"]["caller_to_agent"]["sent"] > 0
    # Recording is measured only where the engine can record, and the JSON says which.
    expected = "on" if hasattr(core.Engine, "record") else "not measured: no Engine.record()"
    assert result["recording"] == expected
    assert {"cpu_model", "cores", "kernel", "compiler"} <= set(result["machine"])
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", result["commit"])


@needs_two_cpus
def test_sip_load_registers_and_calls_at_low_rates_and_times_the_switch_collections(
    tmp_path: Path,
) -> None:
    output = tmp_path / "sip-load.json"
    args = ["--register-rates", "20,40", "--call-rates", "2", "--hold", "1", "--extensions", "40"]
    args += ["--callees", "2", "--nice", "0", "--gc-stats"]
    assert sip_load.main([*args, "--output", str(output)]) == 0
    run = json.loads(output.read_text(encoding="utf-8"))["runs"]["latest"]

    register = run["register"]
    assert [step["rate"] for step in register["steps"]] == [20, 40]
    for step in register["steps"]:
        # 20 and 40 digest registrations a second are far below what the switch serves.
        assert step["clean"], step
        assert step["successful"] == step["calls"] == step["rate"]
        assert step["switch_cpu_us_per_transaction"] > 0
    assert register["summary"]["max_clean_per_s"] == 40
    calls = run["calls"]
    if "not_measured" in calls:  # a switch without call control answers INVITE with 480
        assert "480" in calls["not_measured"]
    else:
        assert calls["steps"][0]["clean"], calls["steps"][0]
    assert {"cpu_model", "cores", "kernel"} <= set(run["machine"])
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", run["commit"])
    collector = run["garbage_collector"]  # --gc-stats: the switch ran under gc_probe
    assert len(collector["generations"]) == 3
    assert collector["generations"][0]["collections"] > 0
    assert 0 < collector["seconds"] < collector["process_cpu_s"]


@needs_engine
@needs_two_cpus
def test_callbox_bench_capacity_quick_carries_calls_to_agents_and_writes_its_report(
    tmp_path: Path, loadgen: Path
) -> None:
    output = tmp_path / "capacity.json"
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "bench", "capacity", "--quick", "--keep-going",
         "--nice", "0", "--output", str(output), "--plot", str(tmp_path / "capacity.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| calls |" in done.stdout  # the summary table
    report = json.loads(output.read_text(encoding="utf-8"))
    summary = report["summary"]
    assert set(callcenter_load.RANGE_KEYS) | {"peer_cpu_us_per_call_second"} <= set(summary)
    steps = report["steps"]
    assert [step["calls"] for step in steps] == list(callcenter_load.QUICK_STEPS)
    for step in steps:
        # A handful of calls: every one set up, answered by an agent, recorded and logged.
        assert step["failed"] == 0, step
        assert step["calls_up"] == step["calls"]
        assert step["answered_records"] == step["recorded"] == step["calls"]
        assert step["frames_received"] > 0
        # Every agent answered in G.711; every leg is recorded, so it has a jitter buffer,
        # whose late, lost and concealed frames the switch's media stats gave.
        assert step["codec_mix"] == {"PCMA": step["calls"]}
        assert step["inside"]["legs_with_jitter_buffer"] == 2 * step["calls"]
        assert step["inside"]["frames"] > 0
        assert step["late_pct"] is not None
        assert step["setup_latency_ms_p50"] is not None
        assert step["floor"]["cpu_us_per_call_second"] > 0
        # rtpengine relayed (and recorded) the same number of calls beside the box.
        assert step["peer"]["cpu_us_per_call_second"] > 0
    assert summary["max_concurrent_calls"] in (0, *callcenter_load.QUICK_STEPS)
    assert report["runs"]["latest"]["summary"] == summary
    assert (tmp_path / "capacity.png").read_bytes().startswith(b"\x89PNG")
    assert {"cpu_model", "cores", "kernel"} <= set(report["machine"])
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", report["commit"])


@needs_engine
@needs_two_cpus
def test_callbox_bench_capacity_without_recording_answers_calls_and_records_none(
    tmp_path: Path,
) -> None:
    output = tmp_path / "capacity.json"
    args = ["--steps", "3", "--hold", "2", "--no-record", "--no-floor", "--no-peer", "--keep-going"]
    assert callcenter_load.main([*args, "--nice", "0", "--output", str(output)]) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    (step,) = report["steps"]
    assert step["answered_records"] == 3, step
    assert step["recorded"] == 0
    assert report["summary"]["recording"] is False
    assert report["summary"]["floor_cpu_us_per_call_second"] is None
    assert report["summary"]["peer_cpu_us_per_call_second"] is None


def test_sip_response_times_are_read_in_milliseconds() -> None:
    assert sip_load.response_ms("00:00:01:250000") == 1250.0
    assert sip_load.response_ms("00:00:00:012") == 12.0
    assert sip_load.response_ms("") is None


def test_speexdsp_buffer_plays_frames_put_in_order() -> None:
    with SpeexJitterBuffer(160) as jb:
        played = []
        for frame in range(10):
            jb.put(bytes([frame]), frame * 160, 160, frame)
            result, got = jb.get(160)
            jb.tick()
            assert result == SpeexGet.OK
            played.append(got)
    assert played == list(range(10))


def test_jitter_quality_reports_both_buffers_on_every_trace(tmp_path: Path) -> None:
    output = tmp_path / "jitter-quality.json"
    assert jitter_quality.main(["--seconds", "10", "--output", str(output)]) == 0
    result = json.loads(output.read_text(encoding="utf-8"))
    assert [row["trace"] for row in result["traces"]] == list(jitter_quality.NETWORKS)
    for row in result["traces"]:
        for buffer in ("ours", "speexdsp"):
            figures = row[buffer]
            assert 0 <= figures["late_loss_pct"] <= figures["lost_pct"] <= 100
            assert figures["mean_delay_ms"] > 0
            assert 0 < figures["r_factor"] <= 100
            frontier = row["frontier"][f"{buffer}_lost_pct"]
            assert frontier is None or 0 <= frontier <= 100
        assert row["verdict"] in ("better", "equal", "worse", "mixed")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", result["commit"])
