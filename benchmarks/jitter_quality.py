"""Jitter buffer quality: ours (``core.JitterBuffer``) against speexdsp's on the same seeded traces.

``python -m benchmarks.jitter_quality`` plays each trace of 20 ms G.711
frames (a few minutes of network behaviour: jitter, bursts, reordering,
loss, sender clock drift) through both buffers with the same 20 ms playout
tick: on each tick, every frame that has arrived by then is put, then one
frame is asked for. For each buffer and trace:

- ``late_loss_pct``: frames that arrived but after their playout slot had
  passed (so were never played), per 100 frames that arrived;
- ``mean_delay_ms``: mean time from a played frame's arrival to its playout;
- ``concealed_pct``: playout ticks with no frame (loss, late loss, underrun);
- ``discarded_pct``: frames that arrived in time but were dropped to shrink
  the buffer (ours: accelerate; speex: a delay step down);
- ``lost_pct``: late and discarded together, every frame that arrived and
  was not played;
- ``r_factor``: the E-model's rating (ITU-T G.107, ``core.e_model``, G.711)
  of a call through this buffer: one-way delay the network's (base and mean
  jitter), a frame of packetisation and ``mean_delay_ms``; loss every frame
  sent and never played (lost on the way, late or discarded). One figure
  for the trade-off that late loss and delay make apart.

Beside them, ``frontier``: the fewest frames a fixed playout schedule locked
to the sender's clock loses (``lost_pct``) at each buffer's mean delay, to
show how far each buffer is from that trade-off curve, and where on it.

Writes ``benchmarks/results/jitter-quality.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import core
from benchmarks.run import RESULTS, commit, provenance
from benchmarks.speex_jitter import SpeexGet, SpeexJitterBuffer

FRAME_MS = 20
SAMPLES = 160  # per 20 ms frame at 8 kHz
BASE_DELAY_MS = 30


@dataclass(frozen=True)
class Network:
    """How a trace's network treats a 20 ms stream."""

    jitter_ms: float  # mean of an exponential delay on top of the base delay
    loss: float = 0.0
    burst_every_s: float = 0.0  # a queue of burst_ms builds up this often, then drains
    burst_ms: int = 0
    reorder: float = 0.0  # share of frames held back by one frame and a bit
    drift: float = 0.0  # sender clock error: +0.001 is a clock 0.1 % fast


NETWORKS = {
    "low-jitter": Network(2),
    "medium-jitter": Network(10),
    "high-jitter": Network(40),
    "bursts": Network(5, burst_every_s=5, burst_ms=200),
    "reordering": Network(5, reorder=0.05),
    "loss-1pct": Network(5, loss=0.01),
    "loss-5pct": Network(5, loss=0.05),
    "drift-plus-0.1pct": Network(5, drift=0.001),
    "drift-minus-0.1pct": Network(5, drift=-0.001),
}


def trace(network: Network, frames: int, seed: int) -> list[tuple[int, int]]:
    """``(arrival_ms, frame)`` pairs in arrival order for a seeded run of ``network``."""
    rng = random.Random(seed)
    burst_frames = int(network.burst_every_s * 1000) // FRAME_MS
    arrivals = []
    for frame in range(frames):
        if rng.random() < network.loss:
            continue
        # A fast sender clock sends its frames (timestamps 20 ms apart) early in real time.
        sent_ms = frame * FRAME_MS * (1 - network.drift)
        delay_ms = BASE_DELAY_MS + rng.expovariate(1 / network.jitter_ms)
        if burst_frames:
            # A queue that holds burst_ms of traffic, then drains by 20 ms a frame.
            into_burst_ms = (frame % burst_frames) * FRAME_MS
            delay_ms += max(0, network.burst_ms - into_burst_ms)
        if rng.random() < network.reorder:
            delay_ms += FRAME_MS + 1
        arrivals.append((int(sent_ms + delay_ms), frame))
    arrivals.sort()
    return arrivals


@dataclass
class Outcome:
    """What one buffer made of one trace."""

    arrived: int = 0
    late: int = 0
    played: int = 0
    discarded: int = 0
    concealed_ticks: int = 0
    ticks: int = 0
    delay_ms_total: int = 0

    def play(self, arrival_ms: int, now_ms: int) -> None:
        """A frame that arrived at ``arrival_ms`` is played at ``now_ms``."""
        self.played += 1
        self.delay_ms_total += now_ms - arrival_ms

    def report(self) -> dict[str, float]:
        """The published figures."""

        def pct(count: int, of: int) -> float:
            return round(100 * count / of, 3) if of else 0.0

        return {
            "late_loss_pct": pct(self.late, self.arrived),
            "mean_delay_ms": round(self.delay_ms_total / self.played, 2) if self.played else 0.0,
            "concealed_pct": pct(self.concealed_ticks, self.ticks),
            "discarded_pct": pct(self.discarded, self.arrived),
            "lost_pct": pct(self.late + self.discarded, self.arrived),
        }


def fixed_schedules(network: Network, arrivals: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """``(mean_delay_ms, lost_pct)`` of every fixed playout schedule, best first.

    Schedule ``m`` plays each frame at the first tick at least ``m`` ms after
    the sender's clock and the base delay say it could arrive; a frame that
    arrives after that tick is lost. The schedules run from no margin to one
    that loses nothing, one millisecond apart; mixing two of them (some
    seconds on each) gives any point on the line between, so the result is
    their lower convex hull: the trade-off curve of a buffer that knew the
    sender's clock and the base delay and held one margin. A reference, not a
    bound: an adaptive buffer can pass below it a little by choosing, once it
    sees which frames came, which one to drop.
    """
    points = []
    for margin_ms in range(0, 100_000):
        late = 0
        waited_ms = 0
        for arrival_ms, frame in arrivals:
            earliest_ms = frame * FRAME_MS * (1 - network.drift) + BASE_DELAY_MS
            tick_ms = math.ceil((earliest_ms + margin_ms) / FRAME_MS) * FRAME_MS
            if arrival_ms > tick_ms:
                late += 1
            else:
                waited_ms += tick_ms - arrival_ms
        played = len(arrivals) - late
        if played:
            points.append((waited_ms / played, 100 * late / len(arrivals)))
        if late == 0:
            break
    hull: list[tuple[float, float]] = []
    for point in sorted(points):
        if hull and point[1] >= hull[-1][1]:
            continue  # slower, and loses no fewer
        while len(hull) >= 2 and _above_chord(hull[-2], hull[-1], point):
            hull.pop()
        hull.append(point)
    return hull


def _above_chord(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    """Whether ``b`` lies on or above the line from ``a`` to ``c``."""
    return (b[1] - a[1]) * (c[0] - a[0]) >= (c[1] - a[1]) * (b[0] - a[0])


def frontier_lost_pct(hull: list[tuple[float, float]], mean_delay_ms: float) -> float | None:
    """The hull's loss at ``mean_delay_ms`` (to the report's 0.01 ms); None below its reach."""
    if not hull or mean_delay_ms < round(hull[0][0], 2):
        return None
    if mean_delay_ms <= hull[0][0]:
        return round(hull[0][1], 3)
    for (d0, l0), (d1, l1) in itertools.pairwise(hull):
        if mean_delay_ms <= d1:
            return round(l0 + (l1 - l0) * (mean_delay_ms - d0) / (d1 - d0), 3)
    return round(hull[-1][1], 3)


def ticks(arrivals: list[tuple[int, int]]) -> range:
    """Playout tick times: until the buffer is empty, or two seconds after the last arrival."""
    return range(0, arrivals[-1][0] + 2000, FRAME_MS)


def play_ours(arrivals: list[tuple[int, int]]) -> Outcome:
    """Play a trace through ``core.JitterBuffer`` with its defaults."""
    jb = core.JitterBuffer(clock_rate=8000)
    arrival_of = dict((frame, at) for at, frame in arrivals)
    outcome = Outcome(arrived=len(arrivals))
    k = 0
    for now in ticks(arrivals):
        while k < len(arrivals) and arrivals[k][0] <= now:
            at, frame = arrivals[k]
            put = jb.put(frame.to_bytes(4, "big"), frame * SAMPLES, frame & 0xFFFF, SAMPLES, at)
            outcome.late += put == core.JitterPut.LATE
            k += 1
        if k == len(arrivals) and jb.stats().buffered_frames == 0:
            break  # the stream is over: no concealment after its end
        playout = jb.get(now)
        if playout.decision == core.JitterDecision.BUFFERING:
            continue
        outcome.ticks += 1
        if playout.payload is None:
            outcome.concealed_ticks += 1
        else:
            frame = int.from_bytes(playout.payload, "big")
            outcome.play(arrival_of[frame], now)
    stats = jb.stats()
    outcome.discarded = stats.discarded
    assert stats.late == outcome.late
    return outcome


def play_speex(arrivals: list[tuple[int, int]]) -> Outcome:
    """Play a trace through speexdsp's jitter buffer with its defaults and a 20 ms step."""
    arrival_of = dict((frame, at) for at, frame in arrivals)
    outcome = Outcome(arrived=len(arrivals))
    started = False
    k = 0
    with SpeexJitterBuffer(SAMPLES) as jb:
        for now in ticks(arrivals):
            while k < len(arrivals) and arrivals[k][0] <= now:
                frame = arrivals[k][1]
                # Too late to play: its whole span is behind the playout pointer.
                behind = (jb.pointer_timestamp - (frame * SAMPLES + SAMPLES)) & 0xFFFFFFFF
                outcome.late += started and behind < 1 << 31
                jb.put(frame.to_bytes(4, "big"), frame * SAMPLES, SAMPLES, frame)
                k += 1
            if k == len(arrivals) and jb.held_frames == 0:
                break
            result, played = jb.get(SAMPLES)
            jb.tick()
            started = started or played is not None
            if not started:
                continue  # like BUFFERING: nothing has been played yet
            outcome.ticks += 1
            if played is None:
                outcome.concealed_ticks += result in (SpeexGet.MISSING, SpeexGet.INSERTION)
            else:
                outcome.play(arrival_of[played], now)
    outcome.discarded = outcome.arrived - outcome.late - outcome.played
    return outcome


def rated(outcome: Outcome, network: Network, sent: int) -> dict[str, float]:
    """``outcome``'s figures with the E-model's R of a G.711 call through that buffer."""
    figures = outcome.report()
    delay_ms = BASE_DELAY_MS + network.jitter_ms + FRAME_MS + figures["mean_delay_ms"]
    loss_pct = 100 * (sent - outcome.played) / sent
    figures["r_factor"] = round(core.e_model(delay_ms, loss_pct, "PCMA").r_factor, 2)
    return figures


def verdict(ours: dict[str, float], speex: dict[str, float]) -> str:
    """The issue's bar: better on both, or equal on one and better on the other."""
    keys = ("late_loss_pct", "mean_delay_ms")
    if all(ours[key] == speex[key] for key in keys):
        return "equal"
    if all(ours[key] <= speex[key] for key in keys):
        return "better"
    if all(ours[key] >= speex[key] for key in keys):
        return "worse"
    return "mixed"


def run(seconds: int, seed: int) -> list[dict[str, Any]]:
    """Every trace through both buffers."""
    rows = []
    for number, (name, network) in enumerate(NETWORKS.items()):
        sent = seconds * 1000 // FRAME_MS
        arrivals = trace(network, sent, seed + number)
        ours = rated(play_ours(arrivals), network, sent)
        speex = rated(play_speex(arrivals), network, sent)
        hull = fixed_schedules(network, arrivals)
        rows.append(
            {
                "trace": name,
                "network": asdict(network),
                "ours": ours,
                "speexdsp": speex,
                "frontier": {
                    "ours_lost_pct": frontier_lost_pct(hull, ours["mean_delay_ms"]),
                    "speexdsp_lost_pct": frontier_lost_pct(hull, speex["mean_delay_ms"]),
                },
                "verdict": verdict(ours, speex),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| trace | late loss % ours | speexdsp | mean delay ms ours | speexdsp "
        "| concealed % ours | speexdsp | lost % ours | frontier | speexdsp | frontier "
        "| R ours | speexdsp | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def lost(figure: float | None) -> str:
        return "-" if figure is None else f"{figure:.2f}"

    for row in rows:
        ours, speex, best = row["ours"], row["speexdsp"], row["frontier"]
        lines.append(
            f"| {row['trace']} | {ours['late_loss_pct']:.2f} | {speex['late_loss_pct']:.2f} "
            f"| {ours['mean_delay_ms']:.2f} | {speex['mean_delay_ms']:.2f} "
            f"| {ours['concealed_pct']:.2f} | {speex['concealed_pct']:.2f} "
            f"| {ours['lost_pct']:.2f} | {lost(best['ours_lost_pct'])} "
            f"| {speex['lost_pct']:.2f} | {lost(best['speexdsp_lost_pct'])} "
            f"| {ours['r_factor']:.1f} | {speex['r_factor']:.1f} | {row['verdict']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every trace, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180, help="length of each trace")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", type=Path, default=RESULTS / "jitter-quality.json")
    args = parser.parse_args(argv)
    rows = run(args.seconds, args.seed)
    result = {
        "traces": rows,
        "settings": {"seconds": args.seconds, "seed": args.seed, "frame_ms": FRAME_MS,
                     "base_delay_ms": BASE_DELAY_MS, "ours": "core.JitterBuffer() defaults",
                     "speexdsp": f"jitter_buffer_init({SAMPLES}), library defaults"},
        **provenance(commit()),
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
