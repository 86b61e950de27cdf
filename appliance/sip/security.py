"""Defence against password guessing and SIP scanners, per source address.

Every switch on the Internet is probed within hours: scanners
(friendly-scanner, sipvicious, sipcli ...) send OPTIONS and REGISTER
floods to find extensions and guess their passwords. ``SourceGuard`` is the
shared ``FailureGuard`` (``appliance.guard``) with the ``[security]``
settings: after ``slow_after`` failed authentications its refusals to that
source are delayed ``slow_s``, after ``ban_after`` the source is banned for
``ban_s`` and everything it sends is dropped unanswered, with one log line
per ban. Requests whose User-Agent names a known scanner are dropped
silently, because an answer only confirms a SIP server is here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from appliance.guard import FailureGuard
from appliance.settings import SecuritySettings
from appliance.sip.message import Request, Response

SCANNER_USER_AGENTS = re.compile(
    r"friendly-scanner|sipvicious|sipcli|vaxsipuseragent|sundayddr|sip-scan|iwar",
    re.IGNORECASE,
)
"""User-Agent values of SIP scanners and war-dialers seen in the wild."""


class SourceGuard(FailureGuard):
    """Failed SIP authentications, slow-downs and bans by source IP; scanners by User-Agent.

    ``now`` returns seconds (monotonic); tests pass their own.
    """

    limits: SecuritySettings

    def __init__(
        self, limits: SecuritySettings | None = None, now: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(
            limits or SecuritySettings(), "authentications", logging.getLogger(__name__), now
        )

    def delay(self, source: str, response: Response) -> float:
        """Seconds to hold ``response`` to ``source`` (only refusals to a slowed source wait)."""
        if response.status not in (401, 403, 407):
            return 0.0
        return self.refusal_delay(source)

    def is_scanner(self, request: Request) -> bool:
        """True for a request from a scanner's User-Agent, when those are dropped."""
        if not self.limits.drop_scanners:
            return False
        user_agent = request.headers.get("User-Agent")
        return user_agent is not None and SCANNER_USER_AGENTS.search(user_agent) is not None
