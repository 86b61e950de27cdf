"""Q.850 causes and SIP statuses (RFC 3398) both ways; the Reason header (RFC 3326)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sip.causes import (
    Cause,
    Reason,
    add_reasons,
    cause_for_status,
    cause_of,
    parse_reason,
    reason_phrase,
    reasons,
    status_for_cause,
)
from appliance.sip.message import Request, SipParseError, parse_message

BYE = (
    "BYE sip:alice@192.0.2.5 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr1\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:b@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\nCall-ID: r@x\r\n"
    "CSeq: 2 BYE\r\n{reason}Content-Length: 0\r\n\r\n"
)


def bye(reason_lines: str = "") -> Request:
    request = parse_message(BYE.format(reason=reason_lines).encode())
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize(
    ("cause", "status"),
    [
        (Cause.UNALLOCATED_NUMBER, 404),
        (Cause.USER_BUSY, 486),
        (Cause.NO_USER_RESPONSE, 408),
        (Cause.NO_ANSWER, 480),
        (Cause.CALL_REJECTED, 403),
        (Cause.DESTINATION_OUT_OF_ORDER, 502),
        (Cause.INVALID_NUMBER_FORMAT, 484),
        (Cause.NO_CIRCUIT_AVAILABLE, 503),
        (Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED, 488),
        (Cause.RECOVERY_ON_TIMER_EXPIRY, 504),
        (Cause.INTERWORKING, 500),
    ],
)
def test_q850_cause_maps_to_the_rfc3398_response(cause: Cause, status: int) -> None:
    assert status_for_cause(cause) == status


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (404, Cause.UNALLOCATED_NUMBER),
        (486, Cause.USER_BUSY),
        (600, Cause.USER_BUSY),
        (480, Cause.NO_USER_RESPONSE),
        (408, Cause.RECOVERY_ON_TIMER_EXPIRY),
        (403, Cause.CALL_REJECTED),
        (603, Cause.CALL_REJECTED),
        (503, Cause.TEMPORARY_FAILURE),
        (502, Cause.NETWORK_OUT_OF_ORDER),
        (484, Cause.INVALID_NUMBER_FORMAT),
        (200, Cause.NORMAL_CLEARING),
    ],
)
def test_sip_response_maps_to_the_rfc3398_cause(status: int, cause: Cause) -> None:
    assert cause_for_status(status) == cause


def test_unlisted_values_follow_their_class() -> None:
    assert status_for_cause(30) == 480
    assert status_for_cause(44) == 503
    assert status_for_cause(66) == 488
    assert status_for_cause(69) == 501
    assert status_for_cause(99) == 500
    assert cause_for_status(302) is Cause.REDIRECTED
    assert cause_for_status(499) is Cause.CALL_REJECTED
    assert cause_for_status(599) is Cause.TEMPORARY_FAILURE
    assert cause_for_status(699) is Cause.CALL_REJECTED


@given(st.integers(1, 127))
def test_every_cause_has_a_final_failure_response_with_a_phrase(cause: int) -> None:
    status = status_for_cause(cause)
    assert 400 <= status < 700
    assert reason_phrase(status) != "Call Failed"


@given(st.integers(300, 699))
def test_every_failure_response_has_a_cause(status: int) -> None:
    assert isinstance(cause_for_status(status), Cause)


def test_busy_round_trips_through_sip() -> None:
    assert cause_for_status(status_for_cause(Cause.USER_BUSY)) is Cause.USER_BUSY


def test_reason_is_written_and_read_back() -> None:
    reason = Reason.q850(Cause.USER_BUSY)
    assert str(reason) == 'Q.850;cause=17;text="user busy"'
    assert parse_reason(str(reason)) == reason
    assert parse_reason('SIP ; cause=200 ; text="Call completed; elsewhere"') == Reason(
        "SIP", 200, "Call completed; elsewhere"
    )


@pytest.mark.parametrize("value", ["Q.850;cause=abc", "Q.850", ";cause=16", "Q 850;cause=1"])
def test_unreadable_reason_is_a_typed_error(value: str) -> None:
    with pytest.raises(SipParseError, match="Bad Reason"):
        parse_reason(value)


def test_bye_cause_prefers_q850_and_maps_a_sip_reason() -> None:
    request = bye('Reason: SIP;cause=486, Q.850;cause=41;text="temporary failure"\r\n')
    assert [r.protocol for r in reasons(request)] == ["SIP", "Q.850"]
    assert cause_of(request) is Cause.TEMPORARY_FAILURE
    assert cause_of(bye("Reason: SIP;cause=486\r\n")) is Cause.USER_BUSY
    assert cause_of(bye("Reason: garbage\r\n")) is Cause.NORMAL_CLEARING
    assert cause_of(bye(), Cause.NO_ANSWER) is Cause.NO_ANSWER


def test_reasons_added_to_a_message_survive_the_wire() -> None:
    request = bye()
    add_reasons(request, [Reason.q850(Cause.RECOVERY_ON_TIMER_EXPIRY)])
    again = parse_message(request.to_bytes())
    assert isinstance(again, Request)
    assert cause_of(again) is Cause.RECOVERY_ON_TIMER_EXPIRY


@given(st.text(max_size=120))
def test_any_reason_text_is_parsed_or_refused_with_a_typed_error(value: str) -> None:
    try:
        reason = parse_reason(value)
    except SipParseError:
        return
    assert reason.cause >= 0
