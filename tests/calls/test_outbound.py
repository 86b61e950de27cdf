"""Outbound routing rules: which route a number takes, and which failures try the next trunk."""

from __future__ import annotations

import pytest

from appliance.calls.outbound import OutboundRefused, fails_over, plan_outbound
from appliance.config.records import OutboundRoute
from appliance.sip.causes import Cause, cause_for_status
from appliance.sip.session import Ended

MOBILE = OutboundRoute("mobile", "1[3-9]XXXXXXXXX", ["carrier"], prepend="0", callers=["1001"])
OUTSIDE = OutboundRoute("outside", "0.", ["gateway", "carrier"], strip=1, callers=["all", "ivr"])


def test_the_first_route_that_matches_and_names_the_caller_wins() -> None:
    routes = [MOBILE, OUTSIDE]
    assert plan_outbound(routes, "13812345678", "1001").route is MOBILE
    assert plan_outbound(routes, "13812345678", "1001").number == "013812345678"
    assert plan_outbound(routes, "02150001234", "1002").number == "2150001234"
    assert plan_outbound(routes, "02150001234", "ivr").route is OUTSIDE


def test_no_matching_route_is_404_and_a_route_not_open_to_the_caller_403() -> None:
    with pytest.raises(OutboundRefused, match="no outbound route for 4999") as none:
        plan_outbound([MOBILE, OUTSIDE], "4999", "1001")
    assert none.value.status == 404
    with pytest.raises(OutboundRefused, match="route mobile is not open to 1002") as shut:
        plan_outbound([MOBILE], "13812345678", "1002")
    assert shut.value.status == 403
    with pytest.raises(OutboundRefused) as no_routes:
        plan_outbound([], "013812345678", "1001")
    assert no_routes.value.status == 404


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_failures_and_timeouts_try_the_next_trunk(status: int) -> None:
    assert fails_over(Ended(cause_for_status(status), status))


@pytest.mark.parametrize("status", [404, 403, 480, 484, 486, 487, 488, 600, 603])
def test_the_called_partys_answers_go_back_to_the_caller(status: int) -> None:
    assert not fails_over(Ended(cause_for_status(status), status))


def test_a_call_we_ended_ourselves_tries_no_other_trunk() -> None:
    # The caller's CANCEL or the no-answer time: our own ending, not the trunk's failure.
    assert not fails_over(Ended(Cause.NO_ANSWER, 480, by_peer=False))
    assert not fails_over(Ended(Cause.NORMAL_CLEARING, 503, by_peer=False))
