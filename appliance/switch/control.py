"""The switch's control API: REST commands and (later) an event stream, on a unix socket.

``callbox-web`` and ``callbox status`` are its clients. Only local processes
can reach a unix socket, and its file mode limits which users may.
"""

from __future__ import annotations

from aiohttp import web

from appliance.switch.service import Switch

SWITCH_KEY = web.AppKey("switch", Switch)


async def get_status(request: web.Request) -> web.Response:
    """GET /v1/status: version, uptime, listeners, store, calls, agents, queues."""
    return web.json_response(await request.app[SWITCH_KEY].status())


def control_app(switch: Switch) -> web.Application:
    """The aiohttp application of the control API."""
    app = web.Application()
    app[SWITCH_KEY] = switch
    app.router.add_get("/v1/status", get_status)
    return app
