"""The web process's app on a real socket with a real LMDB store, and a browser-like client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance.config import Configuration, import_configuration, open_store
from appliance.config.records import Role, User
from appliance.settings import LoginSettings, Settings, WebSettings
from appliance.webadmin.accounts import ONE_TIME_PASSWORD_FILE
from appliance.webadmin.app import web_app
from appliance.webadmin.auth import WebAuth
from appliance.webadmin.login import AUTH_KEY

ADMIN_ONE_TIME = "Xy3kP9mQ7tRw"
SUPERVISOR = "wangfang"
SUPERVISOR_PASSWORD = "wangfang-secret-1"
LIMITS = LoginSettings(slow_after=2, slow_s=0.2, ban_after=4, window_s=600, ban_s=600)


def web_users() -> list[User]:
    """An admin with a one-time password (as after the first boot) and a supervisor."""
    return [
        User(username="admin", role=Role.ADMIN, password=ADMIN_ONE_TIME, must_change_password=True),
        User(username=SUPERVISOR, role=Role.SUPERVISOR, password=SUPERVISOR_PASSWORD),
    ]


def prepare_data(data: Path) -> Settings:
    """Settings on ``data`` whose store holds ``web_users`` and the admin's one-time file."""
    settings = Settings(data_dir=str(data), web=WebSettings(host="127.0.0.1", port=0), login=LIMITS)
    store = open_store(settings)
    try:
        import_configuration(store, Configuration(users=web_users()))
    finally:
        store.close()
    (data / ONE_TIME_PASSWORD_FILE).write_text(ADMIN_ONE_TIME + "\n")
    return settings


@dataclass
class Browser:
    """An HTTP client that keeps cookies like a browser and does not follow redirects."""

    base: str
    language: str = "en"
    session: aiohttp.ClientSession = field(init=False)

    def __post_init__(self) -> None:
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Accept-Language": self.language, "Accept": "text/html"},
        )

    async def get(self, path: str, **kwargs: object) -> tuple[aiohttp.ClientResponse, str]:
        """GET ``path``: the response and its body."""
        async with self.session.get(self.base + path, allow_redirects=False, **kwargs) as r:  # type: ignore[arg-type]
            return r, await r.text()

    async def post(self, path: str, **kwargs: object) -> tuple[aiohttp.ClientResponse, str]:
        """POST to ``path``: the response and its body."""
        async with self.session.post(self.base + path, allow_redirects=False, **kwargs) as r:  # type: ignore[arg-type]
            return r, await r.text()

    async def sign_in(
        self, username: str, password: str, next_path: str | None = None
    ) -> tuple[aiohttp.ClientResponse, str]:
        """Fill in and send the sign-in form, as a person at the browser would."""
        query = f"?next={next_path}" if next_path else ""
        _, page = await self.get("/login" + query)
        form = {
            "form_token": hidden(page, "form_token"),
            "next": hidden(page, "next"),
            "username": username,
            "password": password,
        }
        return await self.post("/login", data=form)

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` in the jar, if any."""
        for morsel in self.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    async def close(self) -> None:
        """Close the client."""
        await self.session.close()


def hidden(page: str, name: str) -> str:
    """The value of hidden form field ``name`` in ``page``."""
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name} in:\n{page}"
    return found.group(1)


@dataclass
class RunningWeb:
    """The web app serving on a loopback port, its data folder and its sign-in service."""

    settings: Settings
    runner: web.AppRunner
    base: str
    browsers: list[Browser] = field(default_factory=list)

    @property
    def auth(self) -> WebAuth:
        """The app's sign-in service (its store, sessions and guard)."""
        return self.runner.app[AUTH_KEY]

    def browser(self, language: str = "en") -> Browser:
        """A new browser (its own cookie jar) pointed at the app."""
        made = Browser(self.base, language)
        self.browsers.append(made)
        return made


@pytest.fixture
async def running_web(tmp_path: Path) -> AsyncIterator[RunningWeb]:
    settings = prepare_data(tmp_path / "var")
    app = web_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    running = RunningWeb(settings, runner, f"http://{host}:{port}")
    yield running
    for browser in running.browsers:
        await browser.close()
    await runner.cleanup()
