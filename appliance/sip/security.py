"""Defence against password guessing and SIP scanners, per source address.

Every switch on the Internet is probed within hours: scanners
(friendly-scanner, sipvicious, sipcli ...) send OPTIONS and REGISTER
floods to find extensions and guess their passwords. ``SourceGuard``
counts failed authentications per source IP inside a sliding window
(``[security]`` settings): after ``slow_after`` failures its refusals to
that source are delayed ``slow_s`` (each guess costs the guesser time),
after ``ban_after`` the source is banned for ``ban_s`` and everything it
sends is dropped unanswered,
with one log line per ban. Requests whose User-Agent names a known scanner
are dropped silently, because an answer only confirms a SIP server is here.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable

from appliance.settings import SecuritySettings
from appliance.sip.message import Request, Response

log = logging.getLogger(__name__)

SCANNER_USER_AGENTS = re.compile(
    r"friendly-scanner|sipvicious|sipcli|vaxsipuseragent|sundayddr|sip-scan|iwar",
    re.IGNORECASE,
)
"""User-Agent values of SIP scanners and war-dialers seen in the wild."""


class SourceGuard:
    """Failed-authentication counts, slow-downs and bans by source IP address.

    ``now`` returns seconds (monotonic); tests pass their own.
    """

    def __init__(
        self, limits: SecuritySettings | None = None, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or SecuritySettings()
        self.now = now
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def failed(self, source: str, reason: str) -> None:
        """Note one failed authentication from ``source``; ban it when it has failed too often."""
        now = self.now()
        failures = self._recent(source, now)
        failures.append(now)
        if len(failures) >= self.limits.ban_after and not self.banned(source):
            self._banned_until[source] = now + self.limits.ban_s
            log.warning(
                "banned %s for %d s after %d failed authentications (last: %s)",
                source,
                self.limits.ban_s,
                len(failures),
                reason,
            )
        if len(self._failures) > 65536:
            # Forget sources with nothing recent so spoofed addresses cannot grow the table.
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}

    def _recent(self, source: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(source, deque())
        while failures and failures[0] <= now - self.limits.window_s:
            failures.popleft()
        return failures

    def banned(self, source: str) -> bool:
        """True while ``source`` is banned."""
        until = self._banned_until.get(source)
        if until is None:
            return False
        if self.now() >= until:
            del self._banned_until[source]
            self._failures.pop(source, None)
            return False
        return True

    def delay(self, source: str, response: Response) -> float:
        """Seconds to hold ``response`` to ``source`` (only refusals to a slowed source wait)."""
        if response.status not in (401, 403, 407):
            return 0.0
        if len(self._recent(source, self.now())) < self.limits.slow_after:
            return 0.0
        return self.limits.slow_s

    def is_scanner(self, request: Request) -> bool:
        """True for a request from a scanner's User-Agent, when those are dropped."""
        if not self.limits.drop_scanners:
            return False
        user_agent = request.headers.get("User-Agent")
        return user_agent is not None and SCANNER_USER_AGENTS.search(user_agent) is not None

    def bans(self) -> dict[str, float]:
        """Banned sources and the seconds their bans have left, for status."""
        now = self.now()
        return {s: round(u - now) for s, u in self._banned_until.items() if u > now}
