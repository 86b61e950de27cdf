"""Run a module as ``__main__`` and time the garbage collector's pauses in it.

``python -m benchmarks.gc_probe OUT.json MODULE [ARGS...]`` runs MODULE as
``python -m MODULE ARGS...`` would, with a ``gc.callbacks`` hook that
counts each generation's collections, the objects they freed and the
wall time they took, and after the first full collections counts by type
the objects in the collector's generations (what its pauses walk). All
goes to OUT.json when the module returns or exits.
``benchmarks/sip_load.py --gc-stats`` runs the switch this way: the
collector's pauses run on the loop's thread and show in no profile.
"""

from __future__ import annotations

import gc
import json
import runpy
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

CENSUSES = 3
"""Full collections after which the tracked objects are counted by type (what a pause walks)."""


def _census() -> dict[str, int]:
    counts = Counter(type(item).__qualname__ for item in gc.get_objects())
    return dict(counts.most_common(15))


class CollectorTimes:
    """Per generation: collections, objects collected, seconds spent, the longest pause.

    A ``gc.callbacks`` hook; full collections are also listed with the time they began.
    """

    def __init__(self) -> None:
        self.generations = [
            {"collections": 0, "collected": 0, "seconds": 0.0, "longest_s": 0.0} for _ in range(3)
        ]
        self.full: list[tuple[float, float]] = []
        """Each full collection: when it began (s after the probe started), how long it took."""
        self.census: list[dict[str, int]] = []
        """After each of the first full collections: the most common types the collector tracks."""
        self._origin = time.perf_counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """Called by the collector before (``start``) and after (``stop``) each collection."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = self.generations[info["generation"]]
        generation["collections"] += 1
        generation["collected"] += info["collected"]
        generation["seconds"] += took
        generation["longest_s"] = max(generation["longest_s"], took)
        if info["generation"] == 2:
            self.full.append((round(self._started - self._origin, 3), round(took, 4)))
            if len(self.census) < CENSUSES:
                self.census.append(_census())

    def summary(self) -> dict[str, Any]:
        """The totals, with the process's CPU time for scale."""
        return {
            "generations": self.generations,
            "full_collections": self.full,
            "census": self.census,
            "seconds": sum(g["seconds"] for g in self.generations),
            "process_cpu_s": time.process_time(),
        }


def main() -> None:
    """Run the module named on the command line with the hook installed."""
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m benchmarks.gc_probe OUT.json MODULE [ARGS...]")
    output, module = Path(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    times = CollectorTimes()
    gc.callbacks.append(times)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        gc.callbacks.remove(times)
        output.write_text(json.dumps(times.summary(), indent=1))


if __name__ == "__main__":
    main()
