"""The manual clock, digit collection and the simulated call's behaviour."""

from __future__ import annotations

import asyncio

import pytest

from appliance.calls import CallEnded, HangupCause, ManualClock, PlayEnd, Side
from appliance.calls.collect import Collected, collect_digits
from appliance.calls.simulated import PhoneBehaviour, SimulatedCall

START = 1_780_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def test_manual_clock_wakes_sleepers_in_deadline_order(clock: ManualClock) -> None:
    woken: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append((name, clock.time() - START))

    tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in (("b", 5), ("a", 2), ("c", 9))]
    await clock.advance(6)
    assert woken == [("a", 2), ("b", 5)]
    assert clock.time() == START + 6
    await clock.advance(3)
    assert woken[-1] == ("c", 9)
    await asyncio.gather(*tasks)


async def test_cancelled_sleeper_does_not_hold_the_next_deadline(clock: ManualClock) -> None:
    task = asyncio.ensure_future(clock.sleep(5))
    await clock.advance(0)
    assert clock.next_deadline() == START + 5
    task.cancel()
    await clock.advance(0)
    assert clock.next_deadline() is None


async def test_collect_stops_at_the_terminator_without_keeping_it(clock: ManualClock) -> None:
    call = SimulatedCall(clock)
    call.press("12#3")
    got = await collect_digits(call, None, max_digits=8, first_digit_s=5)
    assert got == Collected("12", terminated=True, timed_out=False)
    assert await call.next_digit(0) == "3"


async def test_collect_stops_at_max_digits(clock: ManualClock) -> None:
    call = SimulatedCall(clock)
    call.press("98765")
    got = await collect_digits(call, None, max_digits=4, first_digit_s=5, terminator="")
    assert got == Collected("9876", terminated=False, timed_out=False)


async def test_collect_times_out_between_digits(clock: ManualClock) -> None:
    call = SimulatedCall(clock)
    task = asyncio.ensure_future(
        collect_digits(call, "welcome", max_digits=8, first_digit_s=10, inter_digit_s=3)
    )
    await clock.advance(1)
    call.press("4")
    await clock.advance(2.9)
    call.press("2")
    await clock.advance(3)
    assert task.done()
    assert await task == Collected("42", terminated=False, timed_out=True)
    # The digit ended the prompt at once (barge-in).
    assert [a.kind for a in call.actions] == ["play", "dtmf", "dtmf"]


async def test_play_without_barge_in_keeps_digits_for_later(clock: ManualClock) -> None:
    call = SimulatedCall(clock, prompt_seconds={"notice": 10})
    task = asyncio.ensure_future(call.play(["notice"], barge_in=False))
    await clock.advance(2)
    call.press("5")
    await clock.advance(7.9)
    assert not task.done()
    await clock.advance(0.1)
    assert await task is PlayEnd.FINISHED
    assert await call.next_digit(0) == "5"


async def test_caller_hang_up_ends_pending_operations_with_call_ended(clock: ManualClock) -> None:
    call = SimulatedCall(clock)
    waiting = asyncio.ensure_future(call.next_digit(30))
    await clock.advance(1)
    call.hang_up_caller(HangupCause.NORMAL_CLEARING)
    await clock.advance(0)
    with pytest.raises(CallEnded) as ended:
        await waiting
    assert ended.value.hangup.side is Side.CALLER
    with pytest.raises(CallEnded):
        await call.play(["menu"], barge_in=True)


async def test_cancelling_an_offer_stops_the_ring(clock: ManualClock) -> None:
    call = SimulatedCall(clock)
    call.switchboard.phone("1001", behaviour=PhoneBehaviour.NO_ANSWER)
    offer = asyncio.ensure_future(call.offer("1001", 20))
    await clock.advance(3)
    offer.cancel()
    await clock.advance(0)
    assert offer.cancelled()
    assert [a.kind for a in call.actions] == ["offer", "offer_cancelled"]
    assert clock.next_deadline() is None
