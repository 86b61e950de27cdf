"""The call log: call records and queue events written to the store in batches, read by time range.

Records arrive on the loop (``add``); a flush task writes everything
pending in one transaction on the store's writer thread, so a busy minute
costs a few commits rather than one per event. ``flush`` waits for the
writes (at shutdown, and in tests).

Calls in progress are written down too (``opened``): every ``SNAPSHOT_S``
the calls whose story moved on (answered, queued, connected, recorded...)
are written as ``OpenCall`` records, with the time as ``SwitchAlive``. A
call's final record deletes its ``OpenCall`` in the same transaction, so
one still in the store when the switch starts was cut off by a switch that
died: ``recover`` turns it into the call's record, outcome ``interrupted``,
ended at the switch's last sign of life. Its recording is on disk already
(the media core keeps a WAV playable however the process ends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from appliance.calllog.records import (
    CallRecord,
    OpenCall,
    QueueEvent,
    SwitchAlive,
    microseconds,
)
from appliance.store import Store, Txn, time_key

CallLogRecord = CallRecord | QueueEvent
Progress = Callable[[], tuple[object, ...]]
"""What has happened to a call so far: it is written down again when this changes."""
Snapshot = Callable[[float], OpenCall]
"""A call written down as it stands at a time, as if the switch died then."""

SNAPSHOT_S = 2.0
"""How often calls in progress are written down: what a crash can lose of a call's story."""


class CallLog:
    """Writes call records and queue events through the store's single writer."""

    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, snapshot_s: float = SNAPSHOT_S
    ) -> None:
        self._store = store
        self._clock = clock
        self._snapshot_s = snapshot_s
        self._pending: list[CallLogRecord] = []
        self._flushing: asyncio.Task[None] | None = None
        # Calls in progress by id: how to tell its progress and write it down, and its
        # progress when last written.
        self._open: dict[str, tuple[Progress, Snapshot, tuple[object, ...] | None]] = {}
        self._snapshots: asyncio.Task[None] | None = None

    def opened(self, call_id: str, progress: Progress, snapshot: Snapshot) -> None:
        """Keep writing call ``call_id`` down while it runs, until its final record is
        ``add``ed: ``snapshot(now)`` whenever ``progress()`` changed since the last one."""
        self._open[call_id] = (progress, snapshot, None)
        if self._snapshots is None or self._snapshots.done():
            self._snapshots = asyncio.get_running_loop().create_task(self._write_open_calls())

    def add(self, record: CallLogRecord) -> None:
        """Queue ``record`` for writing (soon, in a batch with others)."""
        if isinstance(record, CallRecord):
            self._open.pop(record.id, None)
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
                    if isinstance(record, CallRecord):
                        txn.delete(OpenCall, record.id.encode())

            await self._store.write(put_all)

    async def _write_open_calls(self) -> None:
        """While calls are open: write down those that moved on, and that the switch lives."""
        while self._open:
            now = self._clock()
            moved = []
            for call_id, (progress, snapshot, written) in self._open.items():
                now_progress = progress()
                if now_progress != written:
                    moved.append(snapshot(now))
                    self._open[call_id] = (progress, snapshot, now_progress)

            def put_all(txn: Txn, moved: list[OpenCall] = moved, now: float = now) -> None:
                for open_call in moved:
                    txn.put(open_call)
                txn.put(SwitchAlive(microseconds(now)))

            # The store's single writer runs writes in order: a call's final record, added
            # after this snapshot was taken, is written after it and deletes it.
            await self._store.write(put_all)
            await asyncio.sleep(self._snapshot_s)

    async def recover(self) -> list[CallRecord]:
        """The calls a dead switch left open, made into their records (outcome
        ``interrupted``); call it at start, before taking calls. Returns those records."""
        return await self._store.write(_recover_open_calls)

    async def calls(self, start: float, end: float) -> list[CallRecord]:
        """Call records of calls that started in [start, end) (epoch seconds), in time order."""
        return await self._store.read(lambda txn: list(txn.scan(CallRecord, _at(start), _at(end))))

    async def queue_events(self, start: float, end: float) -> list[QueueEvent]:
        """Queue events in [start, end) (epoch seconds), in time order."""
        return await self._store.read(lambda txn: list(txn.scan(QueueEvent, _at(start), _at(end))))


def _recover_open_calls(txn: Txn) -> list[CallRecord]:
    alive = txn.get(SwitchAlive, SwitchAlive.KEY)
    recovered = []
    for open_call in list(txn.scan(OpenCall)):
        txn.delete(OpenCall, open_call.key())
        snapshot = open_call.record
        if txn.get(CallRecord, snapshot.key()) is not None:
            continue  # its final record made it after all
        ended_us = max(snapshot.ended_us, alive.at_us if alive is not None else 0)
        talk_s = snapshot.talk_s
        if open_call.connected_us is not None:
            talk_s = (ended_us - open_call.connected_us) / 1e6
        record = replace(snapshot, ended_us=ended_us, talk_s=talk_s)
        txn.put(record)
        recovered.append(record)
    txn.delete(SwitchAlive, SwitchAlive.KEY)
    return recovered


def _at(seconds: float) -> bytes:
    return time_key(max(0, microseconds(seconds)))
