"""What the capacity and SIP load benchmarks do to and read from the processes they measure.

Open-file limit, priority, and per-thread scheduler statistics from
``/proc/<pid>/task/*/schedstat``: nanoseconds on a CPU (field 1) and waiting,
runnable, for one (field 2). Schedstat rather than the utime + stime of
``/proc/<pid>/stat``, which counts in 10 ms clock ticks: too coarse for a
one-second step.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

REALTIME_PRIORITY = 10


def raise_file_limit() -> None:
    """Lift the soft open-file limit to the hard one: a leg holds two sockets, a phone one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _schedstat_s(pid: int, field: int) -> float:
    """One schedstat field summed over every live thread of ``pid``, in seconds."""
    total_ns = 0
    for schedstat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(schedstat.read_text(encoding="ascii").split()[field])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended between the listing and the read
    return total_ns / 1e9


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of every live thread of a process, in seconds."""
    return _schedstat_s(pid, 0)


def run_queue_wait_s(pid: int) -> float:
    """Seconds the threads of ``pid`` have waited, runnable, for a CPU.

    On a shared machine this says whether a process was slow or merely not
    given its CPU: other processes on the same CPU (in other cgroups, which
    nice does not outweigh) delay it while its socket fills.
    """
    return _schedstat_s(pid, 1)


def niceness(pid: int) -> int:
    """The nice value a process runs at (field 19 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def scheduling_policy(pid: int) -> str:
    """``SCHED_FIFO`` when :func:`lift_priority` made the process real-time, else ``normal``."""
    return "SCHED_FIFO" if os.sched_getscheduler(pid) == os.SCHED_FIFO else "normal"


def lift_priority(nice: int, realtime: bool) -> None:
    """Run this process at ``nice``, or under SCHED_FIFO with ``realtime``, if permitted."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        if realtime:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
