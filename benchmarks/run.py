"""``make bench``: run the kernel benchmarks and record them with the machine they ran on.

Writes ``benchmarks/results/<date>-<host>.json`` (pytest-benchmark's JSON,
which carries CPU and Python details), ``machine.json`` beside it (CPU
model, cores, kernel, compiler) and a Markdown summary ``latest.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """A description of this machine: what a reader needs to compare two results."""
    cpu_model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    compiler = subprocess.run(["g++", "--version"], capture_output=True, text=True, check=False)
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "compiler": compiler.stdout.splitlines()[0] if compiler.stdout else "",
        "date": now(),
    }


def commit() -> str:
    """The commit measured (``git rev-parse HEAD``), marked ``-dirty`` when the code has changes.

    Results being rewritten (``benchmarks/results/``) do not count as changes.
    """

    def git(*args: str) -> str:
        root = RESULTS.parent.parent
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    head = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ":!benchmarks/results")
    return f"{head}-dirty" if changed else head


def provenance(measured: str) -> dict[str, Any]:
    """What every results file carries: this machine, the commit ``measured`` and the date."""
    return {"machine": machine(), "commit": measured, "date": now()}


def now() -> str:
    """The time now, UTC, to the second (ISO 8601)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def summary(results: dict[str, Any], about: dict[str, Any]) -> str:
    """A Markdown table of the benchmark means, with the machine."""
    lines = [
        "# Latest kernel benchmark results",
        "",
        f"Machine: {about['cpu_model']}, {about['cores']} cores, Linux {about['kernel']}, "
        f"{about['compiler']}, Python {about['python']}; run {about['date']}.",
        "",
        "| benchmark | mean | median | ops/s |",
        "|---|---:|---:|---:|",
    ]
    for bench in results["benchmarks"]:
        stats = bench["stats"]
        lines.append(
            f"| {bench['name']} | {stats['mean'] * 1e6:.2f} us | {stats['median'] * 1e6:.2f} us "
            f"| {stats['ops']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def without_raw_timings(results: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's JSON less each round's raw timing (``stats.data``).

    The raw rounds made one run's file 164 MB; the summary statistics are what
    a reader compares, and they stay.
    """
    for bench in results["benchmarks"]:
        bench["stats"].pop("data", None)
    return results


def main() -> int:
    """Run the benchmarks, write the results, print the summary."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    about = machine()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    out = RESULTS / f"{stamp}-kernels.json"
    status = subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "benchmarks",
            "--benchmark-enable",
            "--benchmark-only",
            f"--benchmark-json={out}",
        ]
    )
    if status != 0:
        return status
    results = without_raw_timings(json.loads(out.read_text(encoding="utf-8")))
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (RESULTS / "machine.json").write_text(json.dumps(about, indent=2) + "\n", encoding="utf-8")
    text = summary(results, about)
    (RESULTS / "latest.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
