"""SIP throughput of the switch on one core: digest REGISTERs and calls per second, driven by SIPp.

``python -m benchmarks.sip_load [--quick]`` imports N extensions into a
fresh data folder, starts the switch (``python -m appliance switch``)
pinned to CPU 0, and drives it from SIPp pinned to CPU 1 over loopback
UDP. Each step runs one SIPp scenario at one rate (``-r``/``-rp``) for
``--hold`` seconds; the ramp stops after the first step that is not clean.
A step is clean when every SIPp call succeeded, SIPp retransmitted nothing
(each request was answered within its 500 ms T1) and nothing came unexpected.

- ``register``: ``benchmarks/sipp/register.xml``, each registration a
  REGISTER, 401 with a challenge, REGISTER with credentials and 200 (two
  transactions), extensions taken round-robin from a ``-inf`` CSV.
- ``calls``: ``benchmarks/sipp/call_uac.xml`` (INVITE, 407, ACK, INVITE with
  credentials, 200, ACK, BYE, 200: three transactions plus two ACKs) from
  the caller extensions to callee extensions that one SIPp UAS
  (``call_uas.xml``) has registered. Measured only when one probe call
  completes: until call control lands, the switch answers INVITE with 480.

The switch's CPU is the run time of all its threads while SIPp runs
(``/proc/<pid>/task/*/schedstat``); per transaction it is that time divided
by the transactions SIPp completed. Writes ``benchmarks/results/sip-load.json``
(see docs/benchmark.md).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import (
    cpu_seconds,
    lift_priority,
    niceness,
    raise_file_limit,
    run_queue_wait_s,
    scheduling_policy,
)
from benchmarks.run import RESULTS, commit, provenance

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "sipp"
HOST = "127.0.0.1"
SWITCH_CPU = 0
SIPP_CPU = 1
REGISTER_RATES = (100, 200, 300, 400, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000)
CALL_RATES = (10, 25, 50, 75, 100, 150, 200, 250, 300, 400)
QUICK_REGISTER_RATES = (50, 100)
QUICK_CALL_RATES = (5, 10)
TRANSACTIONS_PER_REGISTRATION = 2
TRANSACTIONS_PER_CALL = 3  # INVITE (challenged), INVITE, BYE; the ACKs are not transactions
# Per-source message limit and burst for the benchmark: SIPp is one source
# sending more than a phone ever does. The JSON records them.
SOURCE_LIMIT = 1_000_000
PASSWORD = "load-{number}-secret"
STARTUP_S = 60.0
# A switch that waited for its CPU this much of a failed step was held back
# by other processes, not by its own work.
MACHINE_BUSY_WAIT_PCT = 25.0


class BenchmarkError(RuntimeError):
    """The switch or SIPp could not run as the benchmark needs."""


@dataclass(frozen=True)
class Settings:
    """How each step runs."""

    hold_s: float
    callers: int
    callees: int
    call_hold_ms: int
    nice: int = 0
    realtime: bool = False
    switch_cpus: frozenset[int] = frozenset({SWITCH_CPU})
    sipp_cpus: frozenset[int] = frozenset({SIPP_CPU})

    def pin(self, cpus: frozenset[int]) -> Callable[[], None]:
        """A child's start-up: on ``cpus`` only, at this priority."""

        def start() -> None:
            os.sched_setaffinity(0, cpus)
            lift_priority(self.nice, self.realtime)

        return start


@dataclass
class RunningSwitch:
    """The switch under test: its process id, SIP port and data folder (a work folder of
    the benchmark's when it attached to a switch already running)."""

    pid: int
    port: int
    workdir: Path
    log: Path
    settings: Settings


def free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on loopback (the switch binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise BenchmarkError("no free port for the switch")


def extension_numbers(first: int, count: int) -> list[str]:
    """``count`` extension numbers from ``first`` on."""
    return [str(first + i) for i in range(count)]


def extensions_yaml(numbers: list[str]) -> str:
    """A configuration document's ``extensions:``, one per number, with its password."""
    lines = ["extensions:"]
    lines += [f'  - {{number: "{n}", password: {PASSWORD.format(number=n)}}}' for n in numbers]
    return "\n".join(lines) + "\n"


def write_injection(path: Path, callers: list[str], callees: list[str] | None = None) -> None:
    """SIPp's ``-inf`` file: number;credentials[;callee] per line, read in order."""
    with path.open("w", encoding="ascii") as out:
        out.write("SEQUENTIAL\n")
        for i, number in enumerate(callers):
            # SIPp evaluates a keyword in an injected field, not fields inside a keyword.
            password = PASSWORD.format(number=number)
            row = [number, f"[authentication username={number} password={password}]"]
            if callees is not None:
                row.append(callees[i % len(callees)])
            out.write(";".join(row) + "\n")


def switch_env(workdir: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The switch's settings: loopback, its own data folder, the per-source limit lifted,
    then ``extra`` (more ``CALLBOX_*`` settings)."""
    env = dict(
        os.environ,
        **(extra or {}),
        CALLBOX_DATA_DIR=str(workdir / "var"),
        CALLBOX_SIP_HOST=HOST,
        CALLBOX_SIP_PORT=str(port),
        CALLBOX_MEDIA_WORKERS="1",
        CALLBOX_SECURITY_SOURCE_MESSAGES_PER_S=str(SOURCE_LIMIT),
        CALLBOX_SECURITY_SOURCE_BURST=str(SOURCE_LIMIT),
    )
    for name in ("LD_PRELOAD", "NOTIFY_SOCKET", "CALLBOX_CONFIG"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def running_switch(
    workdir: Path,
    config_yaml: str,
    settings: Settings,
    profile: Path | None,
    gc_stats: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningSwitch]:
    """The switch with ``config_yaml`` imported, pinned to its CPUs; stopped with SIGINT.

    With ``profile`` it runs under cProfile and writes its statistics there on
    exit; with ``gc_stats``, under ``benchmarks.gc_probe``, which writes the
    garbage collector's pauses there; ``extra_env`` adds settings (``CALLBOX_*``).
    """
    port = free_udp_and_tcp_port()
    env = switch_env(workdir, port, extra_env)
    config = workdir / "config.yaml"
    config.write_text(config_yaml, encoding="utf-8")
    imported = subprocess.run(
        [sys.executable, "-m", "appliance", "config", "import", str(config)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if imported.returncode != 0:
        raise BenchmarkError(f"config import failed: {imported.stderr}")
    command = [sys.executable, "-m", "appliance", "switch"]
    if gc_stats is not None:
        command[1:2] = ["-m", "benchmarks.gc_probe", str(gc_stats)]
    if profile is not None:
        command[1:1] = ["-m", "cProfile", "-o", str(profile)]
    log = workdir / "switch.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=settings.pin(settings.switch_cpus),
        )
    control = workdir / "var" / "run" / "switch.sock"
    deadline = time.monotonic() + STARTUP_S
    # The switch binds SIP before its control socket, so the socket means SIP is up.
    while not control.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise BenchmarkError(f"switch did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    try:
        yield RunningSwitch(process.pid, port, workdir, log, settings)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sipp_command(switch: RunningSwitch, scenario: str, local_port: int, *args: str) -> list[str]:
    """SIPp against the switch, from ``local_port``, with ``args``."""
    return [
        "sipp", f"{HOST}:{switch.port}",
        "-sf", str(SCENARIOS / scenario), "-i", HOST, "-p", str(local_port),
        "-nostdin", "-trace_err", "-trace_stat", "-fd", "1", *args,
    ]  # fmt: skip


def final_stats(stat_file: Path) -> dict[str, str]:
    """The last row of a SIPp ``-trace_stat`` file (cumulative counters), by column."""
    with stat_file.open(encoding="ascii", errors="replace") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if len(rows) < 2:
        raise BenchmarkError(f"SIPp wrote no statistics to {stat_file}")
    return dict(zip(rows[0], rows[-1], strict=False))


def response_ms(text: str) -> float | None:
    """A SIPp response time ``HH:MM:SS:mmmuuu`` (or ``HH:MM:SS:mmm``) in milliseconds."""
    parts = text.split(":")
    if len(parts) != 4:
        return None
    hours, minutes, seconds, fraction = parts
    milliseconds = float(fraction) / 1000 if len(fraction) > 3 else float(fraction)
    return round((int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1000 + milliseconds, 3)


def first_error(workdir: Path) -> str:
    """The first lines of SIPp's error trace (what went wrong in a failed step)."""
    for path in sorted(workdir.glob("*_errors.log")):
        text = path.read_text(errors="replace").strip()
        if text:
            return "\n".join(text.splitlines()[:12])
    return ""


def children_cpu_s() -> float:
    """CPU seconds of this process's waited-for children (SIPp, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sipp(
    switch: RunningSwitch, scenario: str, inject: Path, rate: int, count: int, *extra: str
) -> dict[str, Any]:
    """One SIPp run of ``count`` calls at ``rate`` per second; its counters and the switch's CPU."""
    rundir = Path(tempfile.mkdtemp(prefix="sipp-", dir=switch.workdir))
    command = sipp_command(
        switch, scenario, free_udp_and_tcp_port(), "-inf", str(inject), "-r", str(rate),
        "-rp", "1000", "-m", str(count), "-timeout", str(max(60, 4 * count // max(rate, 1))),
        *extra,
    )  # fmt: skip
    sipp_cpu_before = children_cpu_s()
    switch_cpu_before = cpu_seconds(switch.pid)
    switch_wait_before = run_queue_wait_s(switch.pid)
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=rundir,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=switch.settings.pin(switch.settings.sipp_cpus),
    )
    elapsed = time.monotonic() - started
    switch_cpu = cpu_seconds(switch.pid) - switch_cpu_before
    switch_wait = run_queue_wait_s(switch.pid) - switch_wait_before
    sipp_cpu = children_cpu_s() - sipp_cpu_before
    stat_files = list(rundir.glob("*_.csv"))
    if not stat_files:
        raise BenchmarkError(f"SIPp wrote no statistics: {done.stdout[-2000:]}{done.stderr}")
    stats = final_stats(stat_files[0])
    successful = int(stats.get("SuccessfulCall(C)", "0"))
    failed = int(stats.get("FailedCall(C)", "0"))
    retransmissions = int(stats.get("Retransmissions(C)", "0"))
    unexpected = int(stats.get("FailedUnexpectedMessage(C)", "0"))
    row: dict[str, Any] = {
        "rate": rate,
        "calls": count,
        "successful": successful,
        "failed": failed,
        "retransmissions": retransmissions,
        "unexpected": unexpected,
        "sipp_exit": done.returncode,
        "elapsed_s": round(elapsed, 3),
        "achieved_rate": round(successful / elapsed, 1) if elapsed else 0.0,
        "switch_cpu_s": round(switch_cpu, 3),
        "switch_cpu_pct": round(100 * switch_cpu / elapsed, 1) if elapsed else 0.0,
        "switch_run_queue_wait_pct": round(100 * switch_wait / elapsed, 1) if elapsed else 0.0,
        "sipp_cpu_pct": round(100 * sipp_cpu / elapsed, 1) if elapsed else 0.0,
        "response_time_1_ms": response_ms(stats.get("ResponseTime1(C)", "")),
        "response_time_2_ms": response_ms(stats.get("ResponseTime2(C)", "")),
    }
    row["clean"] = (
        done.returncode == 0
        and successful == count
        and failed == 0
        and retransmissions == 0
        and unexpected == 0
    )
    if not row["clean"]:
        row["errors"] = (first_error(rundir) or done.stdout[-1500:])[:800]
    shutil.rmtree(rundir, ignore_errors=True)
    return row


def register_step(
    switch: RunningSwitch, inject: Path, settings: Settings, rate: int
) -> dict[str, Any]:
    """One REGISTER step: ``rate`` digest registrations per second for ``hold_s``."""
    row = run_sipp(switch, "register.xml", inject, rate, max(1, round(rate * settings.hold_s)))
    row["switch_cpu_us_per_transaction"] = switch_cpu_us_per(
        row, row["successful"] * TRANSACTIONS_PER_REGISTRATION
    )
    return row


def switch_cpu_us_per(row: dict[str, Any], count: int) -> float | None:
    """The switch's CPU in a step divided by ``count`` (transactions or calls), in microseconds."""
    return round(row["switch_cpu_s"] * 1e6 / count, 1) if count else None


@contextlib.contextmanager
def callee_phone(
    switch: RunningSwitch,
    callees: list[str],
    calls: int,
    *extra: str,
    register_rate: int = 200,
    port: int | None = None,
    scenario: str = "call_uas.xml",
) -> Iterator[subprocess.Popen[str]]:
    """A SIPp UAS that has registered every callee extension from its port (``port``, else a
    free one), answering ``calls`` with ``scenario`` (a name in ``benchmarks/sipp`` or a
    path; ``extra``: more SIPp options, e.g. ``-rtp_echo``).

    A phone that registers again from the same port refreshes its binding; from
    another port it adds one, and the switch then forks each call to both."""
    port = port or free_udp_and_tcp_port()
    inject = switch.workdir / "callees.csv"
    write_injection(inject, callees)
    registered = subprocess.run(
        sipp_command(switch, "register.xml", port, "-inf", str(inject), "-r", str(register_rate),
                     "-m", str(len(callees)), "-timeout", "60"),
        cwd=switch.workdir, capture_output=True, text=True, check=False,
        preexec_fn=switch.settings.pin(switch.settings.sipp_cpus),
    )  # fmt: skip
    if registered.returncode != 0:
        raise BenchmarkError(f"callees did not register: {registered.stdout[-1500:]}")
    rundir = Path(tempfile.mkdtemp(prefix="sipp-uas-", dir=switch.workdir))
    uas = subprocess.Popen(
        sipp_command(switch, scenario, port, "-m", str(calls), "-timeout", "3600", *extra),
        cwd=rundir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=switch.settings.pin(switch.settings.sipp_cpus),
    )  # fmt: skip
    try:
        yield uas
    finally:
        uas.terminate()
        uas.communicate(timeout=30)
        shutil.rmtree(rundir, ignore_errors=True)


def call_step(
    switch: RunningSwitch, inject: Path, callees: list[str], settings: Settings, rate: int
) -> dict[str, Any]:
    """One call step: ``rate`` call set-ups and tear-downs per second for ``hold_s``."""
    count = max(1, round(rate * settings.hold_s))
    with callee_phone(switch, callees, count):
        row = run_sipp(
            switch, "call_uac.xml", inject, rate, count, "-d", str(settings.call_hold_ms)
        )
    row["switch_cpu_us_per_transaction"] = switch_cpu_us_per(
        row, row["successful"] * TRANSACTIONS_PER_CALL
    )
    row["switch_cpu_us_per_call"] = switch_cpu_us_per(row, row["successful"])
    return row


def print_row(kind: str, row: dict[str, Any]) -> None:
    """One line of progress per step."""
    verdict = "clean" if row["clean"] else "NOT clean"
    print(
        f"{kind} {row['rate']:5d}/s: {row['successful']}/{row['calls']} ok, "
        f"{row['failed']} failed, {row['retransmissions']} retransmitted; switch "
        f"{row['switch_cpu_pct']:5.1f}% CPU, "
        f"{row['switch_cpu_us_per_transaction']} us/transaction, "
        f"waited for CPU {row['switch_run_queue_wait_pct']:5.1f}%; "
        f"SIPp {row['sipp_cpu_pct']:5.1f}% CPU; {verdict}",
        flush=True,
    )


def ramp(kind: str, rates: tuple[int, ...], step: Any) -> list[dict[str, Any]]:
    """Each rate's row, stopping after the first step that is not clean."""
    rows = []
    for rate in rates:
        row = step(rate)
        rows.append(row)
        print_row(kind, row)
        if not row["clean"]:
            break
    return rows


def summary(rows: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    """The highest clean rate and what one transaction cost the switch at that rate."""
    clean = [row for row in rows if row["clean"]]
    best = clean[-1] if clean else None
    last = rows[-1] if rows else None
    limited = "none: every step was clean"
    if last is not None and not last["clean"]:
        limited = f"the switch at {last['rate']} {unit}"
        if last["sipp_cpu_pct"] > 90:
            limited = f"SIPp (over 90% of its CPU at {last['rate']} {unit})"
        elif last["switch_run_queue_wait_pct"] > MACHINE_BUSY_WAIT_PCT:
            limited = (
                f"the machine: at {last['rate']} {unit} the switch waited for its CPU "
                f"{last['switch_run_queue_wait_pct']}% of the time (other work on CPU 0)"
            )
    return {
        f"max_clean_{unit}": best["rate"] if best else 0,
        "switch_cpu_us_per_transaction": best["switch_cpu_us_per_transaction"] if best else None,
        "switch_cpu_pct": best["switch_cpu_pct"] if best else None,
        "limited_by": limited,
    }


def probe_call(
    switch: RunningSwitch, callers: list[str], callees: list[str], settings: Settings
) -> str | None:
    """None when one call completes through the switch; else why calls cannot be measured."""
    inject = switch.workdir / "probe.csv"
    write_injection(inject, callers[:1], callees[:1])
    row = call_step(switch, inject, callees[:1], dataclasses.replace(settings, hold_s=1.0), 1)
    if row["clean"]:
        return None
    return "one probe call did not complete: " + str(row.get("errors", ""))[:600]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The REGISTER ramp and, when the switch routes calls, the call ramp; the JSON document."""
    settings = Settings(
        args.hold, args.extensions, args.callees, args.call_hold_ms, args.nice, args.realtime
    )
    register_rates = args.register_rates or (QUICK_REGISTER_RATES if args.quick else REGISTER_RATES)
    call_rates = args.call_rates or (QUICK_CALL_RATES if args.quick else CALL_RATES)
    callers = extension_numbers(20000, settings.callers)
    callees = extension_numbers(30000, settings.callees)
    workdir = Path(tempfile.mkdtemp(prefix="callbox-sip-load-"))
    result: dict[str, Any] = {}
    try:
        gc_stats = workdir / "gc.json" if args.gc_stats else None
        with running_switch(
            workdir, extensions_yaml(callers + callees), settings, args.profile, gc_stats
        ) as switch:
            pid = switch.pid
            scheduling = {"nice": niceness(pid), "policy": scheduling_policy(pid)}
            if "register" in args.kinds:
                inject = workdir / "register.csv"
                write_injection(inject, callers)
                rows = ramp("REGISTER", register_rates,
                            lambda rate: register_step(switch, inject, settings, rate))  # fmt: skip
                result["register"] = {"summary": summary(rows, "per_s"), "steps": rows}
            if "calls" in args.kinds:
                why_not = probe_call(switch, callers, callees, settings)
                if why_not is not None:
                    result["calls"] = {
                        "summary": {"max_clean_per_s": None},
                        "not_measured": why_not,
                    }
                    print(f"calls not measured: {why_not}", flush=True)
                else:
                    inject = workdir / "calls.csv"
                    write_injection(inject, callers, callees)
                    rows = ramp(
                        "calls",
                        call_rates,
                        lambda rate: call_step(switch, inject, callees, settings, rate),
                    )
                    result["calls"] = {"summary": summary(rows, "per_s"), "steps": rows}
        if gc_stats is not None:
            result["garbage_collector"] = json.loads(gc_stats.read_text())
        result["settings"] = {
            "hold_s": settings.hold_s,
            "extensions": settings.callers,
            "callee_extensions": settings.callees,
            "call_hold_ms": settings.call_hold_ms,
            "register_rates": list(register_rates),
            "call_rates": list(call_rates),
            "switch_cpu": SWITCH_CPU,
            "sipp_cpu": SIPP_CPU,
            "transport": "udp",
            "digest": "MD5, qop=auth (the default offer)",
            "source_messages_per_s": SOURCE_LIMIT,
            "profiled": args.profile is not None,
            "switch_scheduling": scheduling,
        }
    finally:
        if args.keep:
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the ramps, write the JSON (merged into earlier results)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    rates = lambda s: tuple(int(n) for n in s.split(","))  # noqa: E731
    parser.add_argument("--quick", action="store_true", help="smoke run: two low rates, 2 s each")
    parser.add_argument("--kinds", default="register,calls", type=lambda s: s.split(","))
    parser.add_argument("--register-rates", type=rates, help="comma-separated registrations/s")
    parser.add_argument("--call-rates", type=rates, help="comma-separated calls/s")
    parser.add_argument("--hold", type=float, help="seconds per step (default 10; quick 2)")
    parser.add_argument(
        "--extensions", type=int, default=2000, help="caller extensions (default 2000)"
    )
    parser.add_argument("--callees", type=int, default=100, help="callee extensions (default 100)")
    parser.add_argument(
        "--call-hold-ms", type=int, default=1000, help="answer to BYE (default 1000)"
    )
    parser.add_argument(
        "--nice", type=int, default=-10, help="nice value of switch and SIPp (default -10)"
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run switch and SIPp under SCHED_FIFO (a busy shared machine)",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the switch under cProfile, stats to this file"
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="time the switch's garbage collections (benchmarks/gc_probe.py) into the JSON",
    )
    parser.add_argument("--label", default="latest", help="key of this run in the JSON's runs")
    parser.add_argument("--note", default="", help="a remark stored with the results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "sip-load.json")
    args = parser.parse_args(argv)
    args.hold = args.hold or (2.0 if args.quick else 10.0)
    if shutil.which("sipp") is None:
        parser.error("SIPp is missing (Debian package sip-tester)")
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two CPUs: one for the switch, one for SIPp")
    raise_file_limit()
    measured = commit()  # before the ramps: the tree may change while they run
    load_before = os.getloadavg()
    result = run(args)
    result.update(
        load_average={"before": load_before, "after": os.getloadavg()},
        note=args.note,
        **provenance(measured),
    )
    document: dict[str, Any] = {"runs": {}}
    if args.output.exists():
        document = json.loads(args.output.read_text(encoding="utf-8"))
    document["runs"][args.label] = result
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {k: v["summary"] for k, v in result.items() if isinstance(v, dict) and "summary" in v}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
