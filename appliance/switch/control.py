"""The switch's control API: REST commands and a WebSocket event stream (docs/control-api.md).

``callbox-web`` and ``callbox status`` are its clients. It listens on a unix
socket, which only local processes can reach and whose file mode limits
which users may; for development it can listen on loopback TCP as well.
The handlers are thin: the call center and call control do the work.

Everything is JSON; every error is ``{"error": "..."}`` with its status:
400 for a body the API cannot take (naming the field), 404 for an agent,
call, queue or route that does not exist, 409 for a change the ACD refuses
in the agent's present state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from appliance.acd import AcdError, AgentStateChanged
from appliance.calllog.records import QueueEvent
from appliance.calls.legs import media_stats
from appliance.sip.causes import Cause
from appliance.switch.callcenter import CallCenterEvent, agent_status
from appliance.switch.service import Switch

SWITCH_KEY = web.AppKey("switch", Switch)
STREAMS_KEY = web.AppKey[set[web.WebSocketResponse]]("streams")

REASON_MAX = 64
"""The longest not-ready reason an agent may give, in characters."""

OVERFLOW_CLOSE = WSCloseCode.POLICY_VIOLATION
"""The close code of a WebSocket client dropped for falling behind (RFC 6455 7.4.1: 1008)."""

CLOSE_TIMEOUT_S = 5.0
"""How long a closing WebSocket waits for the client's close frame before dropping it."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request the API refuses: the HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error, aiohttp's own (404 route, 405 method) included, as JSON."""
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response({"error": error.message}, status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = f"no route {request.method} {request.path}" if error.status == 404 else None
        return web.json_response({"error": message or error.reason}, status=error.status)


def parse_body(raw: bytes, fields: frozenset[str]) -> dict[str, Any]:
    """A request body as a JSON object (empty for no body), with no field outside ``fields``.

    Raises ``ApiError`` (400) naming what is wrong.
    """
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is not JSON we take: nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ApiError(400, f"{_shown(unknown[0])}: unknown field (allowed: {allowed})")
    return body


def _shown(value: object) -> str:
    """``value`` for an error message, cut short: the caller sent it and may have sent a lot."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def reason_of(body: dict[str, Any]) -> str:
    """The not-ready reason of ``body``: required, 1-``REASON_MAX`` characters, trimmed."""
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
        raise ApiError(400, f"reason: required, a non-empty string of at most {REASON_MAX} chars")
    return reason.strip()


def cause_of(body: dict[str, Any]) -> Cause:
    """The Q.850 cause of ``body``, normal clearing (16) when it names none."""
    value = body.get("cause", Cause.NORMAL_CLEARING.value)
    # bool is an int to Python, not a cause to anyone.
    if isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return Cause(value)
    known = ", ".join(str(cause.value) for cause in Cause)
    raise ApiError(400, f"cause: must be a Q.850 cause value, one of {known}; got {_shown(value)}")


async def read_body(request: web.Request, fields: frozenset[str]) -> dict[str, Any]:
    """The request's body as ``parse_body`` takes it."""
    return parse_body(await request.read(), fields)


def _switch(request: web.Request) -> Switch:
    return request.app[SWITCH_KEY]


# Status


async def get_status(request: web.Request) -> web.Response:
    """GET /v1/status: version, uptime, listeners, store, calls, agents, queues."""
    status = await _switch(request).status()
    status["event_clients"] = len(request.app[STREAMS_KEY])
    return web.json_response(status)


# Agents


async def list_agents(request: web.Request) -> web.Response:
    """GET /v1/agents: every agent's state, reason, since and call."""
    return web.json_response({"agents": _switch(request).callcenter.agents_status()})


def _agent_number(request: web.Request) -> str:
    """The agent the path names; 404 if there is none (so a later ``AcdError`` is a 409)."""
    number = request.match_info["number"]
    try:
        _switch(request).callcenter.acd.agent(number)
    except AcdError as error:
        raise ApiError(404, str(error)) from None
    return number


async def get_agent(request: web.Request) -> web.Response:
    """GET /v1/agents/{number}: one agent."""
    number = _agent_number(request)
    return web.json_response(agent_status(_switch(request).callcenter.acd.agent(number)))


async def _change_agent(request: web.Request, change: Callable[[str], None]) -> web.Response:
    """Apply ``change`` to the agent the path names; 409 when the ACD refuses it."""
    number = _agent_number(request)
    try:
        change(number)
    except AcdError as error:
        raise ApiError(409, str(error)) from None
    return web.json_response(agent_status(_switch(request).callcenter.acd.agent(number)))


async def login_agent(request: web.Request) -> web.Response:
    """POST /v1/agents/{number}/login: logged in and ready."""
    await read_body(request, frozenset())
    return await _change_agent(request, _switch(request).callcenter.acd.login)


async def logout_agent(request: web.Request) -> web.Response:
    """POST /v1/agents/{number}/logout (409 while ringing or talking)."""
    await read_body(request, frozenset())
    return await _change_agent(request, _switch(request).callcenter.acd.logout)


async def ready_agent(request: web.Request) -> web.Response:
    """POST /v1/agents/{number}/ready (during a call: once its work is done)."""
    await read_body(request, frozenset())
    return await _change_agent(request, _switch(request).callcenter.acd.set_ready)


async def not_ready_agent(request: web.Request) -> web.Response:
    """POST /v1/agents/{number}/not_ready ``{"reason": "lunch"}`` (during a call: after it)."""
    reason = reason_of(await read_body(request, frozenset({"reason"})))
    acd = _switch(request).callcenter.acd
    return await _change_agent(request, lambda number: acd.set_not_ready(number, reason))


# Calls


async def list_calls(request: web.Request) -> web.Response:
    """GET /v1/calls: every live call; ``?legs=false`` leaves out its legs' figures
    (no trip to the media workers: what a poll of calls' states wants)."""
    legs = request.query.get("legs", "true")
    if legs not in ("true", "false"):
        raise ApiError(400, f"legs must be true or false: got {legs!r}")
    return web.json_response({"calls": await _switch(request).calls.status(legs=legs == "true")})


async def hang_up_call(request: web.Request) -> web.Response:
    """POST /v1/calls/{call_id}/hangup ``{"cause": 16}`` (the cause is optional, 16 by default)."""
    cause = cause_of(await read_body(request, frozenset({"cause"})))
    call_id = request.match_info["call_id"]
    if not _switch(request).calls.hang_up(call_id, cause):
        raise ApiError(404, f"no live call {call_id!r}")
    return web.json_response({"call_id": call_id, "cause": cause.value})


async def get_media_stats(request: web.Request) -> web.Response:
    """GET /v1/media/stats: the media of every live call summed (RTP and jitter buffers)."""
    return web.json_response(media_stats(await _switch(request).calls.status()))


# Queues


async def list_queues(request: web.Request) -> web.Response:
    """GET /v1/queues: every queue's waiting calls, member agents and counts since start."""
    return web.json_response({"queues": _switch(request).callcenter.queues_status()})


async def get_queue(request: web.Request) -> web.Response:
    """GET /v1/queues/{name}: one queue."""
    try:
        queue = _switch(request).callcenter.queue_status(request.match_info["name"])
    except AcdError as error:
        raise ApiError(404, str(error)) from None
    return web.json_response(queue)


# Events


def event_json(event: CallCenterEvent) -> dict[str, Any]:
    """An event as the stream sends it: its ``type``, its ``time`` (epoch seconds), its fields."""
    if isinstance(event, AgentStateChanged):
        return {
            "type": "agent_state",
            "time": event.time,
            "agent": event.agent,
            "state": event.state.value,
            "reason": event.reason,
            "call_id": event.call_id,
        }
    if isinstance(event, QueueEvent):
        return {
            "type": "queue_event",
            "time": event.time_us / 1e6,
            "call_id": event.call_id,
            "queue": event.queue,
            "kind": event.kind.value,
            "agent": event.agent,
            "wait_s": event.wait_s,
        }
    return {
        "type": "call",
        "time": event.at,
        "call_id": event.call_id,
        "kind": event.kind.value,
        "detail": dict(event.detail),
    }


class EventFeed:
    """One stream client's events not sent yet: at most ``backlog``, then it overflows.

    A client that stops reading must not make the switch hold every event
    for it: past the backlog the feed drops what it holds, takes no more and
    sets ``overflowed``, and the client is disconnected.
    """

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.pending: deque[CallCenterEvent] = deque()
        self.overflowed = asyncio.Event()
        self._arrived = asyncio.Event()

    def put(self, event: CallCenterEvent) -> None:
        """Hold ``event`` for sending (a ``Listeners`` callback)."""
        if self.overflowed.is_set():
            return
        if len(self.pending) >= self.backlog:
            self.pending.clear()
            self.overflowed.set()
            return
        self.pending.append(event)
        self._arrived.set()

    async def get(self) -> CallCenterEvent:
        """The oldest event not sent yet (waits for one)."""
        while not self.pending:
            self._arrived.clear()
            await self._arrived.wait()
        return self.pending.popleft()


async def _send_events(ws: web.WebSocketResponse, feed: EventFeed) -> None:
    while True:
        await ws.send_json(event_json(await feed.get()))


async def stream_events(request: web.Request) -> web.WebSocketResponse:
    """GET /v1/events (WebSocket): every call, agent and queue event from now on, as JSON text."""
    ws = web.WebSocketResponse(heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "/v1/events is a WebSocket: ask for an upgrade (Upgrade: websocket)")
    await ws.prepare(request)
    switch = _switch(request)
    feed = EventFeed(switch.settings.control.event_backlog)
    streams = request.app[STREAMS_KEY]
    streams.add(ws)
    stop = switch.callcenter.events.add(feed.put)
    tasks = [
        asyncio.create_task(_send_events(ws, feed)),
        asyncio.create_task(feed.overflowed.wait()),
        # Reading is what notices the client's close (messages from it mean nothing).
        asyncio.create_task(_read_until_closed(ws)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop()
        streams.discard(ws)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
    if feed.overflowed.is_set():
        await _close(ws, OVERFLOW_CLOSE, f"more than {feed.backlog} events behind")
    return ws


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close ``ws``; a client that reads nothing is dropped after ``CLOSE_TIMEOUT_S``."""
    # Without the bound, a client that reads nothing would hold the close (and us) for ever.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=reason.encode(), drain=False)


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


async def _close_streams(app: web.Application) -> None:
    """The switch is stopping: tell stream clients, or they would hold its shutdown up."""
    streams = app[STREAMS_KEY]
    await asyncio.gather(
        *[_close(ws, WSCloseCode.GOING_AWAY, "the switch is stopping") for ws in streams]
    )


def control_app(switch: Switch) -> web.Application:
    """The aiohttp application of the control API."""
    app = web.Application(middlewares=[json_errors])
    app[SWITCH_KEY] = switch
    app[STREAMS_KEY] = set()
    app.on_shutdown.append(_close_streams)
    routes = app.router
    routes.add_get("/v1/status", get_status)
    routes.add_get("/v1/agents", list_agents)
    routes.add_get("/v1/agents/{number}", get_agent)
    routes.add_post("/v1/agents/{number}/login", login_agent)
    routes.add_post("/v1/agents/{number}/logout", logout_agent)
    routes.add_post("/v1/agents/{number}/ready", ready_agent)
    routes.add_post("/v1/agents/{number}/not_ready", not_ready_agent)
    routes.add_get("/v1/calls", list_calls)
    routes.add_post("/v1/calls/{call_id}/hangup", hang_up_call)
    routes.add_get("/v1/media/stats", get_media_stats)
    routes.add_get("/v1/queues", list_queues)
    routes.add_get("/v1/queues/{name}", get_queue)
    routes.add_get("/v1/events", stream_events)
    return app
