"""The media engine on the asyncio loop: events as callbacks and awaitables.

``core.Engine`` reports events (RTP timeout, latching, BYE) through an
eventfd; :class:`MediaEvents` watches it with ``loop.add_reader`` and
dispatches them. Engine commands wait up to one 20 ms tick for their worker
(with the GIL released), so call them from coroutines through
``asyncio.to_thread`` when the loop must not pause.
"""

from __future__ import annotations

from appliance.media.events import MediaEvents

__all__ = ["MediaEvents"]
