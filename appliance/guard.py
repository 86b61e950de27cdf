"""Failed-authentication counting per source address: slow the guesser down, then ban it.

Shared by the SIP stack (digest authentication) and the web process
(logins). A source's failures count inside a sliding window: after
``slow_after`` of them each refusal waits ``slow_s`` (every guess costs the
guesser time), after ``ban_after`` the source is banned for ``ban_s``, with
one log line per ban.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

MAX_TRACKED_SOURCES = 65536


class FailureLimits(Protocol):
    """The thresholds a ``FailureGuard`` applies (``[security]`` for SIP, ``[login]`` for web)."""

    @property
    def slow_after(self) -> int:
        """Failures (within ``window_s``) before refusals to that source wait."""
        ...

    @property
    def slow_s(self) -> float:
        """How long each refusal to a slowed source waits."""
        ...

    @property
    def ban_after(self) -> int:
        """Failures (within ``window_s``) that ban the source."""
        ...

    @property
    def window_s(self) -> float:
        """How far back failures count."""
        ...

    @property
    def ban_s(self) -> float:
        """How long a ban lasts."""
        ...


class FailureGuard:
    """Failure counts, slow-downs and bans by source address.

    ``attempts`` names what fails in the ban's log line ("authentications",
    "logins"), written to ``log`` (the user's logger, so a SIP ban shows under
    the SIP stack's name); ``now`` returns seconds (monotonic), tests pass their own.
    """

    def __init__(
        self,
        limits: FailureLimits,
        attempts: str,
        log: logging.Logger,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.attempts = attempts
        self.log = log
        self.now = now
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def failed(self, source: str, reason: str) -> None:
        """Note one failure from ``source``; ban it when it has failed too often."""
        now = self.now()
        failures = self._recent(source, now)
        failures.append(now)
        if len(failures) >= self.limits.ban_after and not self.banned(source):
            self._banned_until[source] = now + self.limits.ban_s
            self.log.warning(
                "banned %s for %d s after %d failed %s (last: %s)",
                source,
                self.limits.ban_s,
                len(failures),
                self.attempts,
                reason,
            )
        if len(self._failures) > MAX_TRACKED_SOURCES:
            # Forget sources with nothing recent so spoofed addresses cannot grow the table.
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}

    def _recent(self, source: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(source, deque())
        while failures and failures[0] <= now - self.limits.window_s:
            failures.popleft()
        return failures

    def banned(self, source: str) -> bool:
        """True while ``source`` is banned."""
        return self.ban_left(source) > 0

    def ban_left(self, source: str) -> float:
        """Seconds left of ``source``'s ban (0: not banned)."""
        until = self._banned_until.get(source)
        if until is None:
            return 0.0
        left = until - self.now()
        if left <= 0:
            del self._banned_until[source]
            self._failures.pop(source, None)
            return 0.0
        return left

    def refusal_delay(self, source: str) -> float:
        """Seconds a refusal to ``source`` waits: ``slow_s`` once it has failed often, else 0."""
        if len(self._recent(source, self.now())) < self.limits.slow_after:
            return 0.0
        return self.limits.slow_s

    def bans(self) -> dict[str, float]:
        """Banned sources and the seconds their bans have left, for status."""
        now = self.now()
        return {s: round(u - now) for s, u in self._banned_until.items() if u > now}
