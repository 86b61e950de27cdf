"""callbox-web: admin UI, agent desktop and public API (so far: the status page and health)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from appliance import __version__
from appliance.settings import Settings
from appliance.webadmin.switch_client import SwitchUnavailable, fetch_status

SETTINGS_KEY = web.AppKey("settings", Settings)
TEMPLATES = Path(__file__).parent / "templates"


async def _switch_status(request: web.Request) -> dict[str, Any] | None:
    try:
        return await fetch_status(request.app[SETTINGS_KEY].control_socket)
    except SwitchUnavailable:
        return None


@aiohttp_jinja2.template("status.html")
async def status_page(request: web.Request) -> dict[str, Any]:
    """GET /: what is running, what is configured."""
    return {"version": __version__, "switch": await _switch_status(request)}


async def health(request: web.Request) -> web.Response:
    """GET /api/v1/health: 200 when the web process and the switch both answer, else 503."""
    switch = await _switch_status(request)
    body = {"web": "ok", "switch": "ok" if switch else "unreachable", "version": __version__}
    return web.json_response(body, status=200 if switch else 503)


def web_app(settings: Settings) -> web.Application:
    """The aiohttp application of the web process."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape()
    )
    app.router.add_get("/", status_page)
    app.router.add_get("/api/v1/health", health)
    return app
