"""callbox-web: the web process (admin UI, agent desktop, public REST API, events)."""

from __future__ import annotations

from aiohttp import web

from appliance.service import StartupError, run_until_signalled
from appliance.settings import Settings
from appliance.webadmin.app import web_app


async def serve(settings: Settings) -> None:
    """Run the web process until SIGINT or SIGTERM."""
    runner = web.AppRunner(web_app(settings), access_log=None)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, settings.web.host, settings.web.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.web.host}:{settings.web.port} for the web UI: "
                f"{exc.strerror}; set [web] port in the settings or CALLBOX_WEB_PORT"
            ) from None
        return f"web UI on http://{settings.web.host}:{settings.web.port}/"

    async def stop() -> None:
        await runner.cleanup()

    await run_until_signalled("web", start, stop)
