"""The call log: call records and queue events written to the store in batches, read by time range.

Records arrive on the loop (``add``); a flush task writes everything
pending in one transaction on the store's writer thread, so a busy minute
costs a few commits rather than one per event. ``flush`` waits for the
writes (at shutdown, and in tests).
"""

from __future__ import annotations

import asyncio

from appliance.calllog.records import CallRecord, QueueEvent, microseconds
from appliance.store import Store, Txn, time_key

CallLogRecord = CallRecord | QueueEvent


class CallLog:
    """Writes call records and queue events through the store's single writer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[CallLogRecord] = []
        self._flushing: asyncio.Task[None] | None = None

    def add(self, record: CallLogRecord) -> None:
        """Queue ``record`` for writing (soon, in a batch with others)."""
        self._pending.append(record)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._write_pending())

    def note(self, event: object) -> None:
        """An event listener: queue events are logged, other events ignored."""
        if isinstance(event, QueueEvent):
            self.add(event)

    async def flush(self) -> None:
        """Return once every record added so far is committed."""
        while self._flushing is not None and not self._flushing.done():
            await self._flushing
        if self._pending:
            await self._write_pending()

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []

            def put_all(txn: Txn, batch: list[CallLogRecord] = batch) -> None:
                for record in batch:
                    txn.put(record)

            await self._store.write(put_all)

    async def calls(self, start: float, end: float) -> list[CallRecord]:
        """Call records of calls that started in [start, end) (epoch seconds), in time order."""
        return await self._store.read(lambda txn: list(txn.scan(CallRecord, _at(start), _at(end))))

    async def queue_events(self, start: float, end: float) -> list[QueueEvent]:
        """Queue events in [start, end) (epoch seconds), in time order."""
        return await self._store.read(lambda txn: list(txn.scan(QueueEvent, _at(start), _at(end))))


def _at(seconds: float) -> bytes:
    return time_key(max(0, microseconds(seconds)))
