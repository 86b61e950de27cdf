"""callbox-web: admin UI, agent desktop and public API (so far: sign-in, status page, health)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from appliance import __version__
from appliance.config import open_store
from appliance.settings import Settings
from appliance.webadmin import login
from appliance.webadmin.auth import WebAuth
from appliance.webadmin.sessions import WebSession
from appliance.webadmin.switch_client import SwitchUnavailable, fetch_status

SETTINGS_KEY = web.AppKey("settings", Settings)
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


async def _switch_status(request: web.Request) -> dict[str, Any] | None:
    try:
        return await fetch_status(request.app[SETTINGS_KEY].control_socket)
    except SwitchUnavailable:
        return None


async def status_page(request: web.Request) -> web.Response:
    """GET /: what is running, what is configured."""
    context = {"version": __version__, "switch": await _switch_status(request)}
    return login.render(request, "status.html", context)


async def health(request: web.Request) -> web.Response:
    """GET /api/v1/health: 200 when the web process and the switch both answer, else 503."""
    switch = await _switch_status(request)
    body = {"web": "ok", "switch": "ok" if switch else "unreachable", "version": __version__}
    return web.json_response(body, status=200 if switch else 503)


async def _store(app: web.Application) -> AsyncIterator[None]:
    """The store (users, sessions) for as long as the app runs."""
    settings = app[SETTINGS_KEY]
    store = open_store(settings, (WebSession,))
    app[login.AUTH_KEY] = WebAuth(store, settings)
    yield
    store.close()


def web_app(settings: Settings) -> web.Application:
    """The aiohttp application of the web process."""
    app = web.Application(middlewares=[login.gate])
    app[SETTINGS_KEY] = settings
    app[login.DEFAULT_LANGUAGE_KEY] = settings.ivr.prompt_language.value
    app.cleanup_ctx.append(_store)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
    )
    app.router.add_get("/", status_page)
    app.router.add_get("/api/v1/health", health)
    app.router.add_static("/static/", STATIC)
    login.add_routes(app)
    return app
