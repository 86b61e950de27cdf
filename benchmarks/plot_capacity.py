"""A PNG of calls against CPU and against quality: our engine, the echo floor and rtpengine.

``python -m benchmarks.plot_capacity`` reads ``peer-rtpengine.json`` (every
kind of box it measured, each run of ``runs``) and, for a kind it lacks,
``core-capacity.json`` (our engine and its floor, measured by
``benchmarks.capacity``), and writes ``capacity.png`` beside them: the box's
share of its core, its CPU microseconds per call-second, and the packets it
lost or delayed, each against the number of concurrent calls.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.run import RESULTS

# (kind in peer-rtpengine.json, label, colour); the engine's kinds fall back to core-capacity.json.
SERIES = (
    ("switch", "Callbox switch (whole box: SIP, IVR, queue, bridged)", "tab:green"),
    ("engine", "Callbox engine (relay)", "tab:blue"),
    ("engine-recording", "Callbox engine (bridged, recorded)", "tab:cyan"),
    ("rtpengine", "rtpengine userspace (relay)", "tab:red"),
    ("rtpengine-recording", "rtpengine userspace (pcap recording)", "tab:orange"),
    ("echo", "bare UDP echo (floor)", "tab:gray"),
)
PANELS = (
    ("box_cpu_pct", "box CPU, % of one core"),
    ("cpu_us_per_call_second", "CPU µs per call-second"),
    ("lost_or_late_pct", "packets lost or late, %"),
)
BAR_PCT = 0.1


def series_points(rows: list[dict[str, Any]], kind: str, field: str) -> list[tuple[int, float]]:
    """(calls, value) of ``field`` for ``kind`` at each step that measured it."""
    return [(row["calls"], row[kind][field]) for row in rows if kind in row]


def core_capacity_rows(document: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """core-capacity.json's steps as (kind, rows): its engine under the name its recording says."""
    kind = "engine-recording" if document.get("recording") == "on" else "engine"
    rows = [{"calls": row["calls"], kind: row["engine"]} for row in document["steps"]]
    yield kind, rows


def runs_of(peer: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every run's steps in a peer-rtpengine.json (one run, or several under ``runs``)."""
    if "runs" in peer:
        return [run["steps"] for run in peer["runs"]]
    return [peer["steps"]]


def plot(
    peer: dict[str, Any],
    core: dict[str, Any] | None,
    output: Path,
    heading: str | None = None,
    calls_label: str = "concurrent G.711 calls (2 legs each)",
) -> list[str]:
    """Write the three panels to ``output`` (PNG); the labels of the series drawn.

    ``heading`` replaces the title naming rtpengine's runs; ``calls_label`` labels the x axes.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    runs = runs_of(peer)
    fallback = dict(core_capacity_rows(core)) if core is not None else {}
    drawn: list[str] = []
    figure, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.6), constrained_layout=True)
    for axis, (field, title) in zip(axes, PANELS, strict=True):
        for kind, label, colour in SERIES:
            sources = [rows for rows in runs if any(kind in row for row in rows)]
            if not sources and kind in fallback:
                sources, label = [fallback[kind]], f"{label} [core-capacity.json]"
            for number, rows in enumerate(sources):
                points = series_points(rows, kind, field)
                if not points:
                    continue
                calls, values = zip(*points, strict=True)
                if field == "lost_or_late_pct":  # a log axis: show a clean step just under the bar
                    values = tuple(max(v, 1e-4) for v in values)
                axis.plot(
                    calls, values, marker="o", markersize=3, color=colour, alpha=0.85,
                    label=label if number == 0 else None,
                )  # fmt: skip
                if number == 0 and field == PANELS[0][0]:
                    drawn.append(label)
        axis.set_xlabel(calls_label)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        if field == "lost_or_late_pct":
            axis.set_yscale("log")
            axis.axhline(BAR_PCT, color="black", linestyle="--", linewidth=1)
            axis.text(axis.get_xlim()[0], BAR_PCT * 1.15, " 0.1 % bar", fontsize=8)
        elif field == "box_cpu_pct":
            axis.axhline(100, color="black", linestyle="--", linewidth=1)
    axes[-1].legend(fontsize=8, loc="upper left")  # the quality panel is empty up there
    machine = peer.get("machine", {})
    figure.suptitle(
        heading
        or f"Relay cost per call on {machine.get('cpu_model', 'this machine')}, box on one core "
        f"({len(runs)} run{'s' if len(runs) != 1 else ''} of rtpengine "
        f"{peer.get('rtpengine', '')}, {peer.get('date', '')[:10]})",
        fontsize=10,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)
    plt.close(figure)
    return drawn


def main(argv: list[str] | None = None) -> int:
    """Read the results, write the PNG, print its path."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer", type=Path, default=RESULTS / "peer-rtpengine.json")
    parser.add_argument("--core", type=Path, default=RESULTS / "core-capacity.json")
    parser.add_argument("--output", type=Path, default=RESULTS / "capacity.png")
    args = parser.parse_args(argv)
    if not args.peer.exists():
        parser.error(f"{args.peer} is missing: run 'python -m benchmarks.rtpengine_peer' first")
    peer = json.loads(args.peer.read_text(encoding="utf-8"))
    core = json.loads(args.core.read_text(encoding="utf-8")) if args.core.exists() else None
    plot(peer, core, args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
