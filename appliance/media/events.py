"""Dispatching ``core.Engine`` events on the asyncio loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Self

from core import Engine, MediaEvent, RtpLeg

log = logging.getLogger(__name__)

EventCallback = Callable[[MediaEvent], None]


class MediaEvents:
    """Watches an engine's event fd on the running loop and hands events out.

    Callbacks subscribed for a leg (or for every event) run on the loop, in the
    order the engine reported the events; an exception in one is logged and
    does not stop the others. :meth:`wait_for` awaits the next matching event.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._by_leg: dict[int, list[EventCallback]] = {}
        self._every: list[EventCallback] = []
        self._waiters: list[tuple[str, int | None, asyncio.Future[MediaEvent]]] = []
        self._closed = False
        self._loop.add_reader(engine.fileno(), self._drain)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def subscribe(self, callback: EventCallback, leg: RtpLeg | None = None) -> Callable[[], None]:
        """Call ``callback`` with each event (of ``leg`` only, if given); returns an unsubscribe."""
        callbacks = self._every if leg is None else self._by_leg.setdefault(leg.id, [])
        callbacks.append(callback)
        return lambda: callbacks.remove(callback)

    async def wait_for(self, kind: str, leg: RtpLeg | None = None) -> MediaEvent:
        """The next event of ``kind`` (for ``leg``, if given). Cancel it to stop waiting."""
        if self._closed:
            raise RuntimeError("the media event watcher is closed")
        future: asyncio.Future[MediaEvent] = self._loop.create_future()
        entry = (kind, None if leg is None else leg.id, future)
        self._waiters.append(entry)
        try:
            return await future
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def close(self) -> None:
        """Stop watching the engine; pending waits raise ``RuntimeError``."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._engine.fileno())
        for _, _, future in self._waiters:
            if not future.done():
                future.set_exception(RuntimeError("the media event watcher is closed"))
        self._waiters.clear()

    def _drain(self) -> None:
        for event in self._engine.poll_events():
            for kind, leg_id, future in list(self._waiters):
                if event.kind == kind and leg_id in (None, event.leg) and not future.done():
                    future.set_result(event)
                    self._waiters.remove((kind, leg_id, future))
            for callback in [*self._by_leg.get(event.leg, ()), *self._every]:
                try:
                    callback(event)
                except Exception:
                    log.exception("media event callback failed for %s", event)
