"""The control API's request bodies, fuzzed: any input is taken or refused (400), never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sip.causes import Cause
from appliance.switch.control import REASON_MAX, ApiError, cause_of, parse_body, reason_of
from tests.sip.strategies import UNTIMED

FIELDS = frozenset({"reason", "cause"})
MESSAGE_MAX = 400
"""The longest error message: one that echoes the caller's input cuts it short."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def refused(call: Any, *args: object) -> ApiError | None:
    """The 400 that ``call(*args)`` raises, or None if it took its input."""
    try:
        call(*args)
    except ApiError as error:
        caught = error
    else:
        return None
    assert caught.status == 400
    assert 0 < len(caught.message) <= MESSAGE_MAX
    return caught


@settings(UNTIMED, max_examples=500)
@given(st.binary(max_size=300))
def test_any_bytes_are_an_object_of_known_fields_or_a_400(raw: bytes) -> None:
    if refused(parse_body, raw, FIELDS) is None:
        body = parse_body(raw, FIELDS)
        assert isinstance(body, dict)
        assert set(body) <= FIELDS


@settings(UNTIMED, max_examples=500)
@given(st.dictionaries(st.text(max_size=200), json_values, max_size=4))
def test_any_json_object_keeps_only_known_fields(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    error = refused(parse_body, raw, FIELDS)
    assert (error is None) == (set(body) <= FIELDS)


@settings(UNTIMED, max_examples=500)
@given(json_values)
def test_any_reason_is_a_trimmed_short_string_or_a_400(value: object) -> None:
    if refused(reason_of, {"reason": value}) is None:
        reason = reason_of({"reason": value})
        assert isinstance(value, str)
        assert reason == value.strip()
        assert 1 <= len(reason) <= REASON_MAX


@settings(UNTIMED, max_examples=500)
@given(json_values | st.integers(min_value=0, max_value=200))
def test_any_cause_is_a_known_q850_cause_or_a_400(value: object) -> None:
    if refused(cause_of, {"cause": value}) is None:
        assert cause_of({"cause": value}) == value
        assert type(value) is int
        assert value in {cause.value for cause in Cause}


def test_no_cause_is_normal_clearing() -> None:
    assert cause_of({}) is Cause.NORMAL_CLEARING


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_a_deeply_nested_body_is_a_400_not_a_crash(depth: int) -> None:
    error = refused(parse_body, b"[" * depth + b"]" * depth, FIELDS)
    assert error is not None


def test_an_error_echoes_only_the_start_of_a_long_value() -> None:
    error = refused(parse_body, json.dumps({"x" * 10_000: 1}).encode(), FIELDS)
    assert error is not None
    assert error.message.startswith("x" * 37 + "...: unknown field")
