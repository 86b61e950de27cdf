"""Time for the IVR and ACD: the wall clock in production, a manual one in tests and the simulator.

Every timer in the call-center logic (menu timeouts, ring timeouts, maximum
wait, wrap-up) is a ``Clock.sleep``, so a test or the flow simulator moves
time with ``ManualClock.advance`` and never waits for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

# A bound on loop rounds in one settle: a task that yields forever must not hang a test.
_SETTLE_LIMIT = 100_000


class Clock(Protocol):
    """Wall time and sleeping, injectable."""

    def time(self) -> float:
        """Seconds since the epoch (UTC), as ``time.time()``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds``; cancelling it cancels the timer."""
        ...


class LoopClock:
    """The real clock: ``time.time()`` and ``asyncio.sleep``."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running loop."""
        await asyncio.sleep(seconds)


async def settle() -> None:
    """Let every runnable task on the loop run until it waits again (no real time passes).

    The loop is settled when, after one of our rounds, it has no other ready
    callback. asyncio's loops keep those in ``_ready``; a loop without it is
    given a fixed number of rounds instead.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    for _ in range(_SETTLE_LIMIT if ready is not None else 1000):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


class ManualClock:
    """A clock that moves only when told: sleepers wake in deadline order as time advances."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        """The simulated time, seconds since the epoch."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(seconds, 0.0), next(self._order), future))
        await future

    def next_deadline(self) -> float | None:
        """When the earliest live sleeper wakes, or None if nobody sleeps."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper at its deadline in turn."""
        target = self._now + seconds
        await settle()
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            _, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            future.set_result(None)
            await settle()
        self._now = target
        await settle()

    async def run_until_idle(self, limit: float = 86400.0) -> None:
        """Advance from deadline to deadline until nobody sleeps (or ``limit`` seconds passed)."""
        end = self._now + limit
        await settle()
        while (deadline := self.next_deadline()) is not None and deadline <= end:
            await self.advance(deadline - self._now)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
