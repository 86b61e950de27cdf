"""Collecting digits: one definition over ``Call.play`` and ``Call.next_digit`` for every call."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.calls.interface import Call


@dataclass(frozen=True)
class Collected:
    """Digits collected, and why collection stopped."""

    digits: str
    terminated: bool
    """The caller pressed the terminator (it is not part of ``digits``)."""
    timed_out: bool
    """The caller stopped pressing before ``max_digits`` or the terminator."""


async def collect_digits(
    call: Call,
    prompt: str | None,
    *,
    max_digits: int,
    first_digit_s: float,
    terminator: str = "#",
    inter_digit_s: float | None = None,
) -> Collected:
    """Play ``prompt`` (barge-in), then gather digits until one of the stopping rules.

    Collection stops at ``max_digits`` digits, at the ``terminator`` (empty:
    none), or when the caller waits ``first_digit_s`` seconds for the first digit or
    ``inter_digit_s`` (default ``first_digit_s``) between digits. Raises
    ``CallEnded`` if the caller hangs up.
    """
    if prompt is not None:
        await call.play([prompt], barge_in=True)
    digits = ""
    while len(digits) < max_digits:
        wait = first_digit_s if not digits else (inter_digit_s or first_digit_s)
        digit = await call.next_digit(wait)
        if digit is None:
            return Collected(digits, terminated=False, timed_out=True)
        if terminator and digit == terminator:
            return Collected(digits, terminated=True, timed_out=False)
        digits += digit
    return Collected(digits, terminated=False, timed_out=False)
