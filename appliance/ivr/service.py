"""The IVR service: picks the flow of the number a call dialled, runs it, writes the call record."""

from __future__ import annotations

from collections.abc import Iterable

from appliance.calllog.journal import CallJournal
from appliance.calllog.records import CallRecord
from appliance.calllog.service import CallLog
from appliance.calls.clock import Clock
from appliance.calls.interface import Call, HangupCause
from appliance.config.records import InboundNumber, IvrFlow, Schedule
from appliance.ivr.engine import IvrEngine, Queues


class UnknownNumber(LookupError):
    """A call dialled a number with no flow (call control answers it with 404 before this)."""


class IvrService:
    """Inbound calls by dialled number: flow, engine, call record."""

    def __init__(
        self,
        clock: Clock,
        queues: Queues,
        call_log: CallLog | None = None,
    ) -> None:
        self._clock = clock
        self._call_log = call_log
        self._engine = IvrEngine(clock, {}, queues)
        self._numbers: dict[str, InboundNumber] = {}
        self._flows: dict[str, IvrFlow] = {}

    def configure(
        self,
        numbers: Iterable[InboundNumber],
        flows: Iterable[IvrFlow],
        schedules: Iterable[Schedule],
    ) -> None:
        """Take the configured numbers, flows and schedules (calls in progress keep their flow)."""
        self._numbers = {n.number: n for n in numbers}
        self._flows = {f.name: f for f in flows}
        self._engine.schedules = {s.name: s for s in schedules}

    def number(self, dialled: str) -> InboundNumber | None:
        """The configured inbound number ``dialled``, or None."""
        return self._numbers.get(dialled)

    def flow_for(self, dialled: str) -> IvrFlow:
        """The flow that answers ``dialled``; ``UnknownNumber`` if none does."""
        number = self.number(dialled)
        if number is None:
            raise UnknownNumber(f"no inbound number {dialled!r} is configured")
        return self._flows[number.flow]

    async def handle(self, call: Call) -> CallRecord:
        """Run the dialled number's flow for ``call`` to its end; returns (and logs) its record."""
        journal = CallJournal(call.id)
        if self._call_log is not None:
            self._call_log.opened(
                call.id, journal.progress, lambda now: journal.snapshot(call, now)
            )
        try:
            flow = self.flow_for(call.dialled)
        except UnknownNumber:
            await call.hang_up(HangupCause.NORMAL_UNSPECIFIED)
            hangup = await call.wait_ended()
        else:
            hangup = await self._engine.run(call, flow, journal)
        record = journal.record(call, hangup, self._clock.time())
        if self._call_log is not None:
            self._call_log.add(record)
        return record
