"""The peer media relay beside our engine: rtpengine relaying the capacity benchmark's calls.

``python -m benchmarks.rtpengine_peer [--quick]`` ramps the number of G.711
calls as ``benchmarks.capacity`` does, through Debian's rtpengine (the
``rtpengine-daemon`` package) in userspace mode (``table = -1``: no kernel
module), started fresh for each step as a child process pinned to CPU 0
with a private configuration (ng control port and RTP ports on 127.0.0.1,
one worker thread, logs to a file, recordings in a temporary folder). Each
call is set up over the ng protocol as a SIP proxy would: ``offer`` with the
caller phone's SDP, ``answer`` with the agent phone's; ``build/loadgen``
then sends each phone's packets to the port rtpengine named for it. The
same calls run with rtpengine recording them (``record call``: one pcap file
per call) and through the bare UDP echo (the floor).

Writes ``benchmarks/results/peer-rtpengine.json`` (see docs/benchmark.md).
For ``callbox bench capacity``: :func:`run_peer_step` measures one step with
``benchmarks.capacity.Settings`` and returns a row in capacity's format.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import capacity
from benchmarks.processes import lift_priority, raise_file_limit
from benchmarks.rtpengine_ng import NgClient, NgError, audio_sdp
from benchmarks.run import RESULTS, commit

RTPENGINE = "rtpengine"
HOST = capacity.HOST
# The same ports as the engine box's: the two never run at the same time in a ramp.
PORT_MIN, PORT_MAX = capacity.PORT_MIN, capacity.PORT_MAX
START_TIMEOUT_S = 10.0
NG_TIMEOUT_S = 10.0
KINDS = ("rtpengine", "rtpengine-recording", "echo", "engine", "engine-recording")
DEFAULT_KINDS = ("rtpengine", "rtpengine-recording", "echo")


class RtpengineError(RuntimeError):
    """rtpengine is missing, did not start, or stopped answering."""


@dataclass(frozen=True)
class RtpengineConfig:
    """How the child rtpengine runs: where it listens and writes, and on which CPU."""

    workdir: Path
    port_min: int = PORT_MIN
    port_max: int = PORT_MAX
    cpu: int | None = capacity.BOX_CPU
    threads: int = 1
    ng_port: int = 0  # 0: a port free when rtpengine starts

    @property
    def config_file(self) -> Path:
        """The private configuration file (never /etc/rtpengine's)."""
        return self.workdir / "rtpengine.conf"

    @property
    def log_file(self) -> Path:
        """rtpengine's log (stderr in the foreground)."""
        return self.workdir / "rtpengine.log"

    @property
    def recording_dir(self) -> Path:
        """Where rtpengine writes pcap recordings (``pcaps/``) and their metadata."""
        return self.workdir / "recordings"

    def text(self, ng_port: int) -> str:
        """The configuration file's text, with the ng control port on loopback."""
        options = {
            # No kernel forwarding: every packet is relayed by the daemon itself.
            "table": "-1",
            "interface": HOST,
            "listen-ng": f"{HOST}:{ng_port}",
            "port-min": str(self.port_min),
            "port-max": str(self.port_max),
            "foreground": "true",
            "log-stderr": "true",
            # Notices and worse: a line per packet or call would cost CPU of its own.
            "log-level": "5",
            "num-threads": str(self.threads),
            "media-num-threads": "0",  # no media playback
            "recording-dir": str(self.recording_dir),
            "recording-method": "pcap",
            "delete-delay": "0",
        }
        return "[rtpengine]\n" + "".join(f"{key} = {value}\n" for key, value in options.items())


def free_udp_port(host: str = HOST) -> int:
    """A UDP port free on ``host`` now (the kernel's choice), for rtpengine's ng socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class Rtpengine:
    """A running rtpengine child and an ng client connected to it."""

    def __init__(self, process: subprocess.Popen[bytes], ng: NgClient, config: RtpengineConfig):
        self.process = process
        self.ng = ng
        self.config = config

    @property
    def pid(self) -> int:
        """The daemon's process id (its threads' CPU is read from /proc)."""
        return self.process.pid

    def relay_calls(self, phones: list[int], *, record: bool, tag: str = "c") -> list[int]:
        """Set up a call per (caller, agent) phone pair; the port each phone must send to.

        For call ``i`` the caller phone is ``phones[2i]``, the agent phone
        ``phones[2i+1]``. The caller sends to the port in the answer's SDP,
        the agent to the port in the offer's SDP, as each would after a SIP
        INVITE and its 200 OK through a proxy using rtpengine.
        """
        legs: list[int] = []
        for index in range(len(phones) // 2):
            call_id, caller, agent = f"{tag}-{index}", phones[2 * index], phones[2 * index + 1]
            offered = self.ng.offer(
                call_id, "caller", audio_sdp(HOST, caller, 2 * index), record=record
            )
            answered = self.ng.answer(
                call_id, "caller", "agent", audio_sdp(HOST, agent, 2 * index + 1)
            )
            legs += [answered.media_port, offered.media_port]
        return legs

    def hang_up(self, calls: int, tag: str = "c") -> None:
        """Delete the calls :meth:`relay_calls` set up (``tag-0`` .. ``tag-<calls - 1>``)."""
        for index in range(calls):
            self.ng.delete(f"{tag}-{index}", "caller")

    def recorded_bytes(self) -> int:
        """Bytes rtpengine has written into pcap recordings so far."""
        pcaps = self.config.recording_dir / "pcaps"
        return sum(f.stat().st_size for f in pcaps.glob("*.pcap")) if pcaps.is_dir() else 0

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of rtpengine's log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(
                self.config.log_file.read_text("utf-8", "replace").splitlines()[-lines:]
            )
        return ""


@contextmanager
def rtpengine(
    config: RtpengineConfig, nice: int = 0, realtime: bool = False
) -> Iterator[Rtpengine]:
    """Start rtpengine with ``config`` and wait until it answers ``ping``; stop it on exit."""
    binary = shutil.which(RTPENGINE)
    if binary is None:
        raise RtpengineError("rtpengine is not installed: apt-get install rtpengine-daemon")
    config.recording_dir.mkdir(parents=True, exist_ok=True)
    ng_port = config.ng_port or free_udp_port()
    config.config_file.write_text(config.text(ng_port), encoding="utf-8")
    args = [binary, f"--config-file={config.config_file}"]
    if config.cpu is not None:
        args = ["taskset", "-c", str(config.cpu), *args]
    with config.log_file.open("ab") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=lambda: lift_priority(nice, realtime),
        )
    # Generous: set-up waits out another real-time process busy on the same CPU.
    ng = NgClient(HOST, ng_port, timeout_s=NG_TIMEOUT_S)
    peer = Rtpengine(process, ng, config)
    try:
        wait_until_answering(peer, ng_port)
        yield peer
    finally:
        ng.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_answering(peer: Rtpengine, ng_port: int) -> None:
    """Ping until rtpengine answers; raise with its log if it exits or stays silent."""
    deadline = time.monotonic() + START_TIMEOUT_S
    # Short pings: a daemon that exits at start is seen at once, not after a long timeout.
    with NgClient(HOST, ng_port, timeout_s=0.2) as pinger:
        while time.monotonic() < deadline:
            if peer.process.poll() is not None:
                raise RtpengineError(
                    f"rtpengine exited with {peer.process.returncode}:\n{peer.log_tail()}"
                )
            with contextlib.suppress(NgError):
                pinger.ping()
                return
    raise RtpengineError(
        f"rtpengine did not answer ping in {START_TIMEOUT_S} s:\n{peer.log_tail()}"
    )


def run_peer_step(settings: capacity.Settings, calls: int, *, record: bool) -> dict[str, Any]:
    """One step: ``calls`` calls relayed by a fresh rtpengine, measured as capacity measures a box.

    The row has capacity's fields (``cpu_us_per_call_second``,
    ``lost_or_late_pct``, ``box_cpu_pct``, the generator's report) plus
    ``recording`` and, when recording, the pcap bytes written.
    """
    workdir = Path(tempfile.mkdtemp(prefix="callbox-rtpengine-"))
    try:
        # rtpengine first: its ng port is free now, before the generator binds thousands
        # of ephemeral ports (its RTP ports are taken at offer time, skipping busy ones).
        with (
            rtpengine(RtpengineConfig(workdir), settings.nice, settings.realtime) as peer,
            capacity.child(
                capacity.generator_args(settings, calls), settings.nice, settings.realtime
            ) as generator,
        ):
            phones = capacity.ports_of(capacity.read_line(generator.stdout, "phones", "loadgen"))
            legs = peer.relay_calls(phones, record=record)
            row = capacity.measure(generator, peer.pid, "legs " + " ".join(map(str, legs)), calls)
            row["recording"] = "on" if record else "off"
            peer.hang_up(calls)  # closes each call's pcap file
            if record:
                row["recorded_bytes"] = peer.recorded_bytes()
        return row
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_kind(settings: capacity.Settings, kind: str, calls: int) -> dict[str, Any]:
    """One step of one kind of box: rtpengine (with or without recording), the echo, our engine."""
    if kind.startswith("rtpengine"):
        return run_peer_step(settings, calls, record=kind.endswith("recording"))
    if kind.startswith("engine"):
        recorded = replace(settings, record=kind.endswith("recording"))
        return capacity.run_step(recorded, "engine", calls)
    return capacity.run_step(settings, "echo", calls)


def other_benchmarks() -> list[int]:
    """Process ids of other engineers' benchmarks: a load generator or a real-time process not ours.

    Two benchmarks at once on a 2-core machine measure each other, and a
    SCHED_FIFO process busy on CPU 0 starves the box outright: a step
    waits until they have gone. Kernel threads (no command line) are not
    counted, though some are real-time.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text("ascii").rsplit(")", 1)[1].split()[1])
            realtime = os.sched_getscheduler(int(entry.name)) == os.SCHED_FIFO
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
        if parent == os.getpid() or not argv[0]:
            continue
        if argv[0].endswith(b"/loadgen") or realtime:
            found.append(int(entry.name))
    return found


def wait_for_quiet(limit_s: float) -> float:
    """Wait (at most ``limit_s``) until no other benchmark runs; the seconds waited."""
    start = time.monotonic()
    while other_benchmarks() and time.monotonic() - start < limit_s:
        time.sleep(1.0)
    return round(time.monotonic() - start, 1)


def attempt(
    settings: capacity.Settings, kind: str, calls: int, tries: int, quiet_s: float
) -> dict[str, Any]:
    """A kind's row at one step: up to ``tries`` attempts, stopping at the first that passes.

    On a shared machine one stall of another process fails a step by
    itself; the row keeps every attempt's lost-or-late share, so a reader
    sees how often the step passed.
    """
    bad: list[float] = []
    waited = 0.0
    for tried in range(1, tries + 1):
        waited += wait_for_quiet(quiet_s)
        try:
            row = run_kind(settings, kind, calls)
        except (NgError, RtpengineError, capacity.BenchmarkError) as error:
            if tried == tries:
                raise
            print(f"{calls:5d} calls: {kind} attempt {tried} failed ({error}); again", flush=True)
            continue
        bad.append(row["lost_or_late_pct"])
        if not capacity.failed(row):
            break
    return {**row, "attempts_lost_or_late_pct": bad, "waited_for_others_s": waited}


def ramp(
    settings: capacity.Settings,
    steps: tuple[int, ...],
    kinds: tuple[str, ...],
    tries: int = 1,
    quiet_s: float = 0.0,
    on_step: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Each step's row per kind; a kind that failed a step (0.1 % lost or late) runs no further.

    ``on_step`` is called with the rows so far after every step.
    """
    rows: list[dict[str, Any]] = []
    running = list(kinds)
    for calls in steps:
        row: dict[str, Any] = {"calls": calls}
        for kind in running:
            row[kind] = attempt(settings, kind, calls, tries, quiet_s)
        rows.append(row)
        print(
            f"{calls:5d} calls: "
            + "; ".join(
                f"{kind} {row[kind]['cpu_us_per_call_second']:7.1f} us/call-s "
                f"({row[kind]['box_cpu_pct']:5.1f}% CPU, {row[kind]['lost_or_late_pct']:.3f}% bad)"
                for kind in running
            ),
            flush=True,
        )
        if on_step is not None:
            on_step(rows)
        # The echo is the yardstick: it runs while any other kind still does.
        running = [k for k in running if not capacity.failed(row[k]) or k == "echo"]
        if all(k == "echo" for k in running):
            break
    return rows


def summary(rows: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Per kind: the most calls under the bar (before its first failed step) and its cost there."""
    result: dict[str, Any] = {}
    for kind in kinds:
        passed: list[dict[str, Any]] = []
        for row in rows:
            if kind not in row or capacity.failed(row[kind]):
                break
            passed.append(row)
        best = passed[-1] if passed else None
        result[kind] = {
            "max_calls_under_bar": best["calls"] if best else 0,
            "cpu_us_per_call_second": best[kind]["cpu_us_per_call_second"] if best else None,
            "at_calls": best["calls"] if best else None,
        }
    return result


def compact(row: dict[str, Any]) -> dict[str, Any]:
    """A kind's step row without the generator's full report: what a reader compares."""
    generator = row["generator"]
    directions = ("caller_to_agent", "agent_to_caller")
    kept = {key: value for key, value in row.items() if key != "generator"}
    kept["sent"] = sum(generator[d]["sent"] for d in directions)
    kept["lost"] = sum(generator[d]["lost"] for d in directions)
    kept["late"] = sum(generator[d]["late"] for d in directions)
    kept["transit_us_p99"] = max(generator[d]["transit_us"]["p99"] for d in directions)
    kept["generator_cpu_s"] = generator["generator_cpu_s"]
    return kept


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' results as one: per kind, the range over runs of calls held and of cost.

    ``summary.<kind>.max_calls_under_bar`` becomes ``[lowest, highest]`` over
    the runs that measured the kind; ``..._by_calls`` gives the range
    of CPU per call-second at each step every run measured; ``runs`` keeps
    each run's compact steps, note and load average.
    """
    kinds = list(dict.fromkeys(k for d in documents for k in d["settings"]["kinds"]))
    ranged: dict[str, Any] = {}
    for kind in kinds:
        held = [
            d["summary"][kind]["max_calls_under_bar"] for d in documents if kind in d["summary"]
        ]
        costs: dict[int, list[float]] = {}
        for document in documents:
            for row in document["steps"]:
                if kind in row:
                    costs.setdefault(row["calls"], []).append(row[kind]["cpu_us_per_call_second"])
        ranged[kind] = {
            "max_calls_under_bar": [min(held), max(held)],
            "cpu_us_per_call_second_by_calls": {
                str(calls): [min(c), max(c)] for calls, c in sorted(costs.items())
            },
        }
    first = documents[0]
    return {
        "summary": ranged,
        "rtpengine": first["rtpengine"],
        "settings": first["settings"],
        "machine": first["machine"],
        "commit": first["commit"],
        "date": first["date"],
        "runs": [
            {
                "date": d["date"],
                "note": d["note"],
                "load_average": d["load_average"],
                "summary": d["summary"],
                "steps": [
                    {key: compact(value) if isinstance(value, dict) else value
                     for key, value in row.items()}
                    for row in d["steps"]
                ],
            }
            for d in documents
        ],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the ramp, write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    capacity.add_step_arguments(parser)
    parser.add_argument(
        "--kinds",
        type=lambda s: tuple(s.split(",")),
        default=DEFAULT_KINDS,
        help=f"boxes measured at each step, of {','.join(KINDS)} "
        f"(default {','.join(DEFAULT_KINDS)})",
    )
    parser.add_argument("--nice", type=int, default=-10, help="nice value of box and generator")
    parser.add_argument("--realtime", action="store_true", help="SCHED_FIFO for box and generator")
    parser.add_argument(
        "--tries", type=int, default=2, help="attempts at a step before a kind fails (default 2)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=300.0,
        help="seconds a step waits for another engineer's load generator to finish (default 300)",
    )
    parser.add_argument("--note", default="", help="a remark stored with the results")
    parser.add_argument("--output", type=Path, default=RESULTS / "peer-rtpengine.json")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="instead of measuring, fold these results files (repeated runs) into --output",
    )
    args = parser.parse_args(argv)
    if args.merge:
        documents = [json.loads(path.read_text(encoding="utf-8")) for path in args.merge]
        args.output.write_text(json.dumps(merge(documents), indent=1) + "\n", encoding="utf-8")
        return 0
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}: choose from {','.join(KINDS)}")
    if not capacity.LOADGEN.exists():
        parser.error(f"{capacity.LOADGEN} is missing: run 'make build/loadgen'")
    if shutil.which(RTPENGINE) is None:
        parser.error("rtpengine is not installed: apt-get install rtpengine-daemon")
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two CPUs: one for the box, one for the load generator")
    raise_file_limit()
    steps = args.steps or (capacity.QUICK_STEPS if args.quick else capacity.STEPS)
    hold = args.hold or (1.0 if args.quick else 10.0)
    load_before = os.getloadavg()
    measured = commit()
    settings = capacity.Settings(
        warmup_s=min(args.warmup, hold),
        hold_s=hold,
        late_ms=args.late_ms,
        record=False,
        phone_sockets="per-call",  # rtpengine sends each call to the phone its SDP names
        nice=args.nice,
        realtime=args.realtime,
    )
    version = rtpengine_version()

    def save(rows: list[dict[str, Any]]) -> None:
        """Write the results so far: a run stopped part-way keeps the steps it measured."""
        capacity.write_results(
            args.output,
            {"summary": summary(rows, args.kinds), "rtpengine": version},
            run_settings,
            rows,
            note=args.note,
            load_before=load_before,
            measured=measured,
        )

    run_settings = {
        "steps": list(steps),
        "kinds": list(args.kinds),
        "hold_s": hold,
        "warmup_s": settings.warmup_s,
        "tries": max(1, args.tries),
        "late_ms": args.late_ms,
        "nice": args.nice,
        "realtime": args.realtime,
        "max_lost_or_late_pct": capacity.MAX_BAD_PCT,
        "box_cpu": capacity.BOX_CPU,
        "generator_cpu": capacity.GENERATOR_CPU,
        "rtpengine_config": RtpengineConfig(Path("<temporary folder>")).text(0).splitlines(),
    }
    rows = ramp(settings, steps, args.kinds, max(1, args.tries), args.wait_quiet, on_step=save)
    print(json.dumps(summary(rows, args.kinds)))
    return 0


def rtpengine_version() -> str:
    """``rtpengine --version``'s version (Debian's package version)."""
    done = subprocess.run([RTPENGINE, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().removeprefix("Version: ")


if __name__ == "__main__":
    sys.exit(main())
