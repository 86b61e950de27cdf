"""Capacity of the media core alone: CPU per call-second and calls per core, beside a UDP echo.

``python -m benchmarks.capacity [--quick] [--record]`` ramps the number of
bridged G.711 calls. At each step the "box" is ``core.Engine(workers=1)`` in
a process of its own pinned to CPU 0, with N bridged call pairs made through
the Python API; ``build/loadgen`` (benchmarks/loadgen/) pinned to CPU 1 plays
both phones of every call. The box's CPU time comes from
``/proc/<pid>/stat``; lost and late packets from the generator, which stamps
every packet. The same packets at the same N then go through a bare UDP echo
(``loadgen echo``, one socket per leg, recvmmsg/sendmmsg): the floor.

Writes ``benchmarks/results/core-capacity.json`` (see docs/benchmark.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.processes import (
    cpu_seconds,
    lift_priority,
    niceness,
    raise_file_limit,
    scheduling_policy,
)
from benchmarks.run import RESULTS, commit, provenance

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "build" / "loadgen"
HOST = "127.0.0.1"
BOX_CPU = 0
GENERATOR_CPU = 1
# Above the ephemeral range's busiest part and clear of the tests' fixed ranges
# (below 32768); the engine skips a port pair that is taken.
PORT_MIN, PORT_MAX = 40000, 59999
STEPS = (50, 100, 250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000)
QUICK_STEPS = (10, 50)
# The bar: under 0.1% of frames lost or late inside the box.
MAX_BAD_PCT = 0.1
# A generator busier than this may itself delay packets: the step says so.
GENERATOR_BUSY = 0.9


class BenchmarkError(RuntimeError):
    """A step could not run: a process died or spoke out of turn."""


def read_line(stream: IO[str] | None, expected: str, who: str) -> str:
    """The next line of a child's output; it must start with ``expected``."""
    line = stream.readline() if stream is not None else ""
    if not line.startswith(expected):
        raise BenchmarkError(f"{who}: expected '{expected}', got {line.strip()!r}")
    return line.strip()


def ports_of(line: str) -> list[int]:
    """The port numbers of a 'phones ...' or 'legs ...' line."""
    return [int(word) for word in line.split()[1:]]


# ---------------------------------------------------------------- the box


def serve_box(cpu: int, record: bool) -> int:
    """The engine box, in its own process: bridge a call per phone pair, relay until stdin closes.

    Reads ``phones P1 P2 ...`` (caller and agent phone of each call) and
    answers ``legs L1 L2 ...`` (the leg each phone must send to). With
    ``record`` each call is recorded to a stereo WAV file.
    """
    import core  # the engine is imported in the box only, after the process is pinned

    os.sched_setaffinity(0, {cpu})  # the worker thread inherits it
    raise_file_limit()
    phones = ports_of(read_line(sys.stdin, "phones", "box"))
    records = Path(tempfile.mkdtemp(prefix="callbox-capacity-")) if record else None
    with core.Engine(workers=1, port_min=PORT_MIN, port_max=PORT_MAX, host=HOST) as engine:

        def bridged_call(index: int) -> tuple[int, int]:
            caller = engine.create_rtp_leg(codec="PCMA")
            agent = engine.create_rtp_leg(codec="PCMA", beside=caller)
            # The phones ignore RTCP: it goes to the RTP port, not to a stranger's port + 1.
            for leg, phone in ((caller, phones[2 * index]), (agent, phones[2 * index + 1])):
                leg.set_remote(HOST, phone, rtcp_port=phone)
            engine.bridge(caller, agent)
            if records is not None:
                engine.record(str(records / f"call-{index}.wav"), left=caller, right=agent)
            return caller.local_port, agent.local_port

        # Each command waits for a worker tick (20 ms): set calls up side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            legs = list(pool.map(bridged_call, range(len(phones) // 2)))
        print("legs " + " ".join(f"{a} {b}" for a, b in legs), flush=True)
        sys.stdin.read()
    if records is not None:
        shutil.rmtree(records, ignore_errors=True)
    return 0


@contextmanager
def child(args: list[str], nice: int, realtime: bool) -> Iterator[subprocess.Popen[str]]:
    """A child process speaking lines on stdin/stdout; killed if the step fails.

    It runs at ``nice``, or under SCHED_FIFO with ``realtime``: on a shared
    machine, other work on the same CPU would otherwise delay its packets.
    Without the privilege it runs at the normal priority, which the JSON shows.
    """

    process = subprocess.Popen(
        args,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: lift_priority(nice, realtime),
    )
    try:
        yield process
    finally:
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def generator_args(settings: Settings, calls: int) -> list[str]:
    """The load generator's command line for one step."""
    warmup_s, hold_s, late_ms = settings.warmup_s, settings.hold_s, settings.late_ms
    return [
        str(LOADGEN), "generate", "--calls", str(calls), "--host", HOST,
        "--cpu", str(GENERATOR_CPU), "--warmup-ms", str(int(warmup_s * 1000)),
        "--duration-ms", str(int(hold_s * 1000)), "--late-ms", str(late_ms),
        "--phone-sockets", settings.phone_sockets,
    ]  # fmt: skip


def box_args(kind: str, calls: int, record: bool) -> list[str]:
    """The command line of the engine box or of the echo floor."""
    if kind == "echo":
        legs = str(2 * calls)
        return [str(LOADGEN), "echo", "--legs", legs, "--host", HOST, "--cpu", str(BOX_CPU)]
    args = [sys.executable, "-m", "benchmarks.capacity", "--serve-box"]
    return [*args, "--record"] if record else args


@dataclass(frozen=True)
class Settings:
    """How each step runs."""

    warmup_s: float
    hold_s: float
    late_ms: int
    record: bool
    phone_sockets: str
    nice: int
    realtime: bool
    perf_dir: Path | None = None


@contextmanager
def profiled(settings: Settings, kind: str, calls: int, pid: int) -> Iterator[None]:
    """With ``--perf DIR``, ``perf record -g`` of the engine box over the step's window."""
    if settings.perf_dir is None or kind != "engine":
        yield
        return
    settings.perf_dir.mkdir(parents=True, exist_ok=True)
    output = settings.perf_dir / f"engine-{calls}.data"
    # DWARF unwinding: the core is built without frame pointers. cpu-clock:
    # a VM without hardware counters recorded no samples of the default event.
    perf = subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "-F", "997", "--call-graph", "dwarf,16384",
         "-p", str(pid), "-o", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        perf.send_signal(signal.SIGINT)  # perf writes its file when interrupted
        perf.wait()


def run_step(settings: Settings, kind: str, calls: int) -> dict[str, Any]:
    """One step: ``calls`` calls through the engine box (``kind="engine"``) or the echo floor."""
    with (
        child(generator_args(settings, calls), settings.nice, settings.realtime) as generator,
        child(box_args(kind, calls, settings.record), settings.nice, settings.realtime) as box,
    ):
        phones = read_line(generator.stdout, "phones", "loadgen")
        if kind == "engine":
            assert box.stdin is not None
            box.stdin.write(phones + "\n")
            box.stdin.flush()
        legs = read_line(box.stdout, "legs", kind)
        row = measure(generator, box.pid, legs, calls, profiled(settings, kind, calls, box.pid))
    if kind == "engine":
        row["recording"] = "on" if settings.record else "off"
    return row


def measure(
    generator: subprocess.Popen[str],
    box_pid: int,
    legs: str,
    calls: int,
    profiler: contextlib.AbstractContextManager[object] | None = None,
) -> dict[str, Any]:
    """Hand the generator the box's ``legs`` line, then measure the box over the generator's window.

    Returns the step's row: the box's CPU (per call-second and percent of a
    core), packets lost or late, and the generator's own report. Any box
    that relays the generator's calls (the engine, the echo, a peer) is
    measured by this one function. ``profiler`` is entered for the
    measuring window only.
    """
    assert generator.stdin is not None
    generator.stdin.write(legs + "\n")
    generator.stdin.flush()
    read_line(generator.stdout, "measuring", "loadgen")
    nice = niceness(box_pid)
    policy = scheduling_policy(box_pid)
    with profiler or contextlib.nullcontext():
        cpu_start = cpu_seconds(box_pid)
        read_line(generator.stdout, "done", "loadgen")
        box_cpu = cpu_seconds(box_pid) - cpu_start
    result: dict[str, Any] = json.loads(read_line(generator.stdout, "{", "loadgen"))
    sent = sum(result[d]["sent"] for d in ("caller_to_agent", "agent_to_caller"))
    bad = sum(result[d]["lost"] + result[d]["late"] for d in ("caller_to_agent", "agent_to_caller"))
    window = result["window_s"]
    return {
        "box_cpu_s": round(box_cpu, 3),
        "box_cpu_pct": round(100 * box_cpu / window, 1),
        "cpu_us_per_call_second": round(box_cpu * 1e6 / (calls * window), 1),
        "lost_or_late_pct": round(100 * bad / sent, 4) if sent else 100.0,
        "generator_busy": result["generator_cpu_s"] / window > GENERATOR_BUSY,
        "nice": nice,
        "scheduling": policy,
        "generator": result,
    }


def ramp(settings: Settings, steps: tuple[int, ...]) -> list[dict[str, Any]]:
    """Every step's engine and echo rows, stopping after the first step the engine fails."""
    rows = []
    for calls in steps:
        engine, echo = (run_step(settings, kind, calls) for kind in ("engine", "echo"))
        rows.append({"calls": calls, "engine": engine, "echo": echo})
        print(
            f"{calls:5d} calls: engine {engine['cpu_us_per_call_second']:7.1f} us/call-s "
            f"({engine['box_cpu_pct']:5.1f}% CPU, {engine['lost_or_late_pct']:.3f}% lost or late); "
            f"echo floor {echo['cpu_us_per_call_second']:7.1f} us/call-s "
            f"({echo['lost_or_late_pct']:.3f}% lost or late)",
            flush=True,
        )
        if failed(engine):
            break
    return rows


def failed(row: dict[str, Any]) -> bool:
    """Whether a step's engine or echo row lost or delayed too many packets."""
    return bool(row["lost_or_late_pct"] >= MAX_BAD_PCT)


def limit(rows: list[dict[str, Any]]) -> str:
    """What stopped the ramp: the engine, or the machine (generator or echo failing too)."""
    last = rows[-1]
    if not failed(last["engine"]):
        return "none: every step passed"
    if last["engine"]["generator_busy"] or last["echo"]["generator_busy"]:
        return f"the generator (over 90% of its CPU at {last['calls']} calls)"
    if failed(last["echo"]):
        return f"the machine (the echo floor failed too at {last['calls']} calls)"
    return f"the engine (at {last['calls']} calls)"


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Calls per core (the largest step under the bar) and the costs measured at that step."""
    passed = [row for row in rows if not failed(row["engine"])]
    best = passed[-1] if passed else None
    cost = best["engine"]["cpu_us_per_call_second"] if best else None
    floor = best["echo"]["cpu_us_per_call_second"] if best else None
    return {
        "calls_per_core": best["calls"] if best else 0,
        "cpu_us_per_call_second": cost,
        "floor_cpu_us_per_call_second": floor,
        "ratio_to_floor": round(cost / floor, 2) if cost and floor else None,
        "limited_by": limit(rows),
    }


def write_results(
    output: Path,
    head: dict[str, Any],
    settings: dict[str, Any],
    rows: list[dict[str, Any]],
    *,
    note: str,
    load_before: tuple[float, float, float],
    measured: str,
) -> None:
    """Write a ramp's JSON: ``head`` (its summary first), settings, how busy the machine was,
    provenance and the steps."""
    result = {
        **head,
        "settings": settings,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "note": note,
        **provenance(measured),
        "steps": rows,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of how steps run, shared by every benchmark that ramps calls with loadgen."""
    parser.add_argument("--quick", action="store_true", help="smoke run: 10, 50 calls, 1 s each")
    parser.add_argument(
        "--steps",
        type=lambda s: tuple(int(n) for n in s.split(",")),
        help="comma-separated call counts (default: 50,100,250,...,4000)",
    )
    parser.add_argument("--hold", type=float, help="seconds measured per step (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent before measuring")
    parser.add_argument("--late-ms", type=int, default=20, help="transit above this is late")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the ramp (or serve as the box), write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser)
    parser.add_argument(
        "--phone-sockets",
        choices=("per-call", "shared"),
        default="per-call",
        help="the generator's sockets: one per phone (default), or one for all callers and "
        "one for all agents (cheaper for the generator; on loopback also for the box)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="nice value of the box and the generator (default -10, if permitted)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run the box and the generator under SCHED_FIFO (a busy machine; they may "
        "take up to 95%% of their CPUs from everything else while a step runs)",
    )
    parser.add_argument("--record", action="store_true", help="record every call (engine.record)")
    parser.add_argument(
        "--perf",
        type=Path,
        metavar="DIR",
        help="record each engine step with 'perf record -g' into DIR/engine-<calls>.data "
        "(perf's own cost then counts in the box's CPU: profile, do not publish those numbers)",
    )
    parser.add_argument("--note", default="", help="a remark stored with the results")
    parser.add_argument("--output", type=Path, default=RESULTS / "core-capacity.json")
    parser.add_argument("--serve-box", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_box:
        return serve_box(BOX_CPU, args.record)
    if not LOADGEN.exists():
        parser.error(f"{LOADGEN} is missing: run 'make build/loadgen'")
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two CPUs: one for the box, one for the load generator")
    raise_file_limit()
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    hold = args.hold or (1.0 if args.quick else 10.0)
    load_before = os.getloadavg()
    measured = commit()  # before the ramp: the tree may change while it runs
    settings = Settings(
        warmup_s=min(args.warmup, hold),
        hold_s=hold,
        late_ms=args.late_ms,
        record=args.record,
        phone_sockets=args.phone_sockets,
        nice=args.nice,
        realtime=args.realtime,
        perf_dir=args.perf,
    )
    rows = ramp(settings, steps)
    write_results(
        args.output,
        {"summary": summary(rows), "recording": "on" if args.record else "off"},
        {
            "steps": list(steps),
            "hold_s": hold,
            "warmup_s": args.warmup,
            "late_ms": args.late_ms,
            "phone_sockets": args.phone_sockets,
            "nice": args.nice,
            "realtime": args.realtime,
            "max_lost_or_late_pct": MAX_BAD_PCT,
            "box_cpu": BOX_CPU,
            "generator_cpu": GENERATOR_CPU,
        },
        rows,
        note=args.note,
        load_before=load_before,
        measured=measured,
    )
    print(json.dumps(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
