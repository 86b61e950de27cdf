"""Listeners for a service's events: callbacks, or ``async for`` over a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

E = TypeVar("E")


class Listeners(Generic[E]):
    """Who hears events of type ``E``: each ``emit`` reaches every listener in order."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[E], None]] = []

    def add(self, listener: Callable[[E], None]) -> Callable[[], None]:
        """Call ``listener`` on every event; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def stream(self) -> AsyncIterator[E]:
        """Every event from now on, as an async iterator."""
        queue: asyncio.Queue[E] = asyncio.Queue()
        remove = self.add(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            remove()

    def emit(self, event: E) -> None:
        """Tell every listener (one may remove itself while being told)."""
        for listener in list(self._listeners):
            listener(event)
