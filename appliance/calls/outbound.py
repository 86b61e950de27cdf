"""Outbound calls: the route a dialled number takes, and its trunks tried one after another.

"No outbound route exists unless configured": a number goes out only
through an ``OutboundRoute`` whose pattern it matches and whose
``callers`` name the one dialling (an extension, or ``ivr`` for an IVR
transfer node). The first matching route that lets the caller use it
wins; a number no route matches is refused with 404, one whose routes
all shut the caller out with 403.

``TrunkDialer.dial`` places the call's leg toward the route's trunks in
order: a trunk that is down or unregistered, or cannot be reached, is
skipped at once; a trunk's failure moves on to the next (``fails_over``)
only when the next trunk may do better: a server failure (5xx) or no
final answer in time (408, ours or theirs). Busy, not found, declined
and every other final answer are the called party's and go back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.calls.legs import OFFERED_EVENT_PT, CallLegs, LegControl, LegFormat
from appliance.config.records import OutboundRoute
from appliance.sip.session import Ended, OutgoingCall, SessionError
from appliance.sip.trunk import TrunkError, Trunks
from core import RtpLeg

log = logging.getLogger(__name__)


class OutboundRefused(Exception):
    """No route lets this caller dial this number: the SIP ``status`` (404, 403) and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class OutboundPlan:
    """The route a dialled number takes and the number its trunks are asked for."""

    route: OutboundRoute
    dialled: str

    @property
    def number(self) -> str:
        """The number sent to the trunk (the route's strip and prepend applied)."""
        return self.route.number_sent(self.dialled)


def plan_outbound(routes: Sequence[OutboundRoute], dialled: str, caller: str) -> OutboundPlan:
    """The first route in ``routes`` that ``dialled`` matches and ``caller`` may use.

    Raises ``OutboundRefused``: 404 when no route matches, 403 when the
    matching routes do not name ``caller``.
    """
    matching = [route for route in routes if route.matches(dialled)]
    if not matching:
        raise OutboundRefused(404, f"no outbound route for {dialled}")
    for route in matching:
        if route.allows(caller):
            return OutboundPlan(route, dialled)
    names = ", ".join(route.name for route in matching)
    raise OutboundRefused(403, f"outbound route {names} is not open to {caller}")


def fails_over(ended: Ended) -> bool:
    """Whether a trunk's failure sends the call on to the route's next trunk."""
    status = ended.status
    if not ended.by_peer or status is None:
        return False  # we ended it (the caller left, or no answer in time): not the trunk's fault
    return status == 408 or 500 <= status < 600


@dataclass(frozen=True)
class TrunkAttempt:
    """The call's leg placed through one trunk of a plan: its session and engine leg."""

    session: OutgoingCall
    leg: RtpLeg
    trunk: str
    index: int
    """The trunk's place in the route's list (the next attempt starts after it)."""


class TrunkDialer:
    """Places calls' legs through the trunks of the configured outbound routes.

    ``routes()`` gives the configured routes in their order (read at each
    call, so an import applies to the next call).
    """

    def __init__(
        self, trunks: Trunks, media: LegControl, routes: Callable[[], Sequence[OutboundRoute]]
    ) -> None:
        self.trunks = trunks
        self.media = media
        self.routes = routes

    def plan(self, dialled: str, caller: str) -> OutboundPlan:
        """The route ``caller`` dials ``dialled`` through (``OutboundRefused`` if none)."""
        return plan_outbound(self.routes(), dialled, caller)

    async def dial(
        self,
        call: CallLegs,
        plan: OutboundPlan,
        *,
        beside: RtpLeg,
        after: int = -1,
        no_answer_s: float | None = None,
    ) -> TrunkAttempt | None:
        """Place ``call``'s leg through the first usable trunk of ``plan`` after position
        ``after``, with a new engine leg beside ``beside`` in the trunk's first codec.

        None when no trunk is left that could be tried.
        """
        trunks = plan.route.trunks
        for index in range(after + 1, len(trunks)):
            name = trunks[index]
            state = self.trunks.states.get(name)
            if state is None or not state.usable:
                log.info("call %s: trunk %s is down or unregistered: skipped", call.id, name)
                continue
            try:
                trunk_call = await self.trunks.outbound_call(
                    plan.number, name, caller=plan.route.caller_id
                )
            except TrunkError as error:
                log.info("call %s: trunk %s cannot take it: %s", call.id, name, error)
                continue
            carried = LegFormat(trunk_call.codecs[0], OFFERED_EVENT_PT)
            leg = await self.media.leg(call, carried, beside=beside)
            try:
                session = await self.media.place_through_trunk(call, trunk_call, leg, no_answer_s)
            except SessionError as error:
                log.info("call %s: cannot reach trunk %s: %s", call.id, name, error)
                await self.media.drop(call, leg)
                continue
            log.info(
                "call %s: %s out through trunk %s (route %s) as %s",
                call.id, plan.dialled, name, plan.route.name, plan.number,
            )  # fmt: skip
            call.legs[session] = leg
            return TrunkAttempt(session, leg, name, index)
        return None

    async def give_up(self, call: CallLegs, attempt: TrunkAttempt) -> None:
        """A trunk failed the call: its session and leg leave ``call`` (a next trunk may follow)."""
        call.legs.pop(attempt.session, None)
        if attempt.session in call.parties:
            call.parties.remove(attempt.session)
        if attempt.leg in call.all_legs:
            await self.media.drop(call, attempt.leg)
