"""The IVR engine: runs a number's flow for a call, node by node, until the call ends.

Nodes: ``answer``; ``play`` (no barge-in; digits pressed meanwhile are kept
for the next menu); ``menu`` (prompt with barge-in, one key; on a timeout or
a key with no option it plays ``invalid_prompt`` for bad keys and tries again,
``retries`` times, then takes ``failed`` or hangs up); ``collect`` (digits
into a call variable, up to ``max_digits`` or the terminator; fewer than
``min_digits`` leaves the variable empty); ``time_condition`` (the schedule's
weekly periods and holidays in its time zone, at the clock's now);
``queue`` (the ACD; on its maximum wait the ``timeout`` branch, else hang up);
``transfer`` (unanswered, the caller hears the destination ring); ``hangup``.
A node that plays audio or queues answers the call first if no ``answer``
node did. The path of nodes and every digit used go to the
call's journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from appliance.acd.service import QueueOutcome, QueueResult
from appliance.calllog.journal import CallJournal
from appliance.calllog.records import CallOutcome
from appliance.calls.clock import Clock
from appliance.calls.collect import collect_digits
from appliance.calls.interface import Call, CallEnded, Hangup, HangupCause
from appliance.config.records import (
    AnswerNode,
    CollectNode,
    HangupNode,
    IvrFlow,
    IvrNode,
    MenuNode,
    PlayNode,
    QueueNode,
    Schedule,
    TimeConditionNode,
    TransferNode,
)
from appliance.ivr.schedule import is_open

MAX_STEPS = 1000
"""Nodes one call may visit: a flow looping through nodes that take no time must not hang."""


class Queues(Protocol):
    """Where queue nodes send calls (the ACD)."""

    async def enqueue(self, call: Call, queue_name: str, journal: CallJournal) -> QueueResult:
        """Queue ``call`` until it is served, abandoned or times out."""
        ...


class IvrEngine:
    """Runs flows for calls; schedules by name, queues through ``queues``, time from ``clock``."""

    def __init__(self, clock: Clock, schedules: Mapping[str, Schedule], queues: Queues) -> None:
        self._clock = clock
        self.schedules = dict(schedules)
        self._queues = queues

    async def run(self, call: Call, flow: IvrFlow, journal: CallJournal) -> Hangup:
        """Run ``flow`` for ``call`` from its start node; returns how the call ended."""
        journal.flow = flow.name
        node_id: str | None = flow.start
        try:
            for _ in range(MAX_STEPS):
                if node_id is None:
                    break
                journal.ivr_path.append(node_id)
                node_id = await self._step(call, flow.nodes[node_id], journal)
            else:
                journal.ivr_path.append("(loop limit)")
            await call.hang_up(HangupCause.NORMAL_CLEARING)
            return await call.wait_ended()
        except CallEnded as ended:
            return ended.hangup

    async def _step(self, call: Call, node: IvrNode, journal: CallJournal) -> str | None:
        """Carry out ``node``; the id of the node to go to next (None: hang up)."""
        if isinstance(node, AnswerNode):
            await self._answer(call, journal)
            return node.next
        if isinstance(node, TimeConditionNode):
            schedule = self.schedules[node.schedule]
            return node.open if is_open(schedule, self._clock.time()) else node.closed
        if isinstance(node, HangupNode):
            return None
        if isinstance(node, TransferNode):
            # Not answered first: the caller hears the destination ring, as with a redirect.
            journal.transferred_to = node.destination
            journal.outcome = CallOutcome.TRANSFERRED
            raise CallEnded(await call.transfer(node.destination))
        await self._answer(call, journal)
        if isinstance(node, PlayNode):
            await call.play([node.prompt], barge_in=False)
            return node.next
        if isinstance(node, MenuNode):
            return await self._menu(call, node, journal)
        if isinstance(node, CollectNode):
            collected = await collect_digits(
                call,
                node.prompt,
                max_digits=node.max_digits,
                first_digit_s=node.timeout,
                terminator=node.terminator,
            )
            journal.digits += collected.digits + (node.terminator if collected.terminated else "")
            enough = len(collected.digits) >= node.min_digits
            journal.variables[node.variable] = collected.digits if enough else ""
            return node.next
        if isinstance(node, QueueNode):
            result = await self._queues.enqueue(call, node.queue, journal)
            if result.outcome is QueueOutcome.TIMED_OUT:
                return node.timeout
            assert result.hangup is not None
            raise CallEnded(result.hangup)
        raise TypeError(f"no IVR node type {type(node).__name__}")

    async def _answer(self, call: Call, journal: CallJournal) -> None:
        if not call.answered:
            await call.answer()
            journal.answered_at = self._clock.time()

    async def _menu(self, call: Call, node: MenuNode, journal: CallJournal) -> str | None:
        for _ in range(node.retries + 1):
            await call.play([node.prompt], barge_in=True)
            digit = await call.next_digit(node.timeout)
            if digit is None:
                continue
            journal.digits += digit
            if digit in node.options:
                return node.options[digit]
            if node.invalid_prompt is not None:
                await call.play([node.invalid_prompt], barge_in=True)
        return node.failed
