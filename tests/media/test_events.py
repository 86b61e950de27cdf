"""``appliance.media``: engine events on the asyncio loop, with a real engine and real packets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

import core
from appliance.media import MediaEvents
from core import Engine, MediaEvent, RtpLeg

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the Python twin has no media engine"
)

LOOPBACK = "127.0.0.1"
PATIENCE = 10.0  # upper bound for "the event arrives", not a measurement


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine(workers=1, port_min=34000, port_max=34999, host=LOOPBACK) as e:
        yield e


@pytest.fixture
async def events(engine: Engine) -> AsyncIterator[MediaEvents]:
    async with MediaEvents(engine) as watcher:
        yield watcher


async def poke(events: MediaEvents, leg: RtpLeg) -> MediaEvent:
    """One RTP packet from a fresh port: the leg latches to it; returns that event."""
    # Waiting starts before the packet leaves, so the event cannot slip past.
    waiting = asyncio.ensure_future(events.wait_for("latched", leg))
    await asyncio.sleep(0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind((LOOPBACK, 0))
        peer.sendto(core.build_rtp(0, 1, 0, 7, b"\xff" * 160), (LOOPBACK, leg.local_port))
        event = await asyncio.wait_for(waiting, PATIENCE)
        assert event.detail == f"{LOOPBACK}:{peer.getsockname()[1]}"
    return event


async def test_wait_for_returns_the_legs_rtp_timeout(engine: Engine, events: MediaEvents) -> None:
    # Waiting starts before the leg exists, so the event cannot slip past.
    waiting = asyncio.ensure_future(events.wait_for("rtp_timeout"))
    leg = await asyncio.to_thread(engine.create_rtp_leg, rtp_timeout=0.05)
    event = await asyncio.wait_for(waiting, PATIENCE)
    assert event == MediaEvent("rtp_timeout", leg.id, "")


async def test_subscribers_of_a_leg_hear_only_that_leg(engine: Engine, events: MediaEvents) -> None:
    watched = await asyncio.to_thread(engine.create_rtp_leg)
    other = await asyncio.to_thread(engine.create_rtp_leg)
    heard: list[MediaEvent] = []
    everything: list[MediaEvent] = []
    events.subscribe(heard.append, watched)
    events.subscribe(everything.append)
    await poke(events, other)
    await poke(events, watched)
    assert [e.leg for e in heard] == [watched.id]
    assert [e.leg for e in everything] == [other.id, watched.id]


async def test_a_failing_callback_does_not_stop_the_others(
    engine: Engine, events: MediaEvents, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: MediaEvent) -> None:
        raise RuntimeError("callback bug")

    heard: list[MediaEvent] = []
    events.subscribe(broken)
    events.subscribe(heard.append)
    leg = await asyncio.to_thread(engine.create_rtp_leg)
    await poke(events, leg)
    assert [e.kind for e in heard] == ["latched"]
    assert "media event callback failed" in caplog.text


async def test_latching_arrives_as_an_event_with_the_new_address(
    engine: Engine, events: MediaEvents
) -> None:
    leg = await asyncio.to_thread(engine.create_rtp_leg)
    event = await poke(events, leg)
    assert (event.kind, event.leg) == ("latched", leg.id)


async def test_closing_the_watcher_ends_pending_waits(engine: Engine) -> None:
    watcher = MediaEvents(engine)
    waiting = asyncio.ensure_future(watcher.wait_for("bye"))
    await asyncio.sleep(0)
    watcher.close()
    with pytest.raises(RuntimeError, match="the media event watcher is closed"):
        await waiting
