"""callbox-switch: SIP, call control, IVR, ACD and the media core in one asyncio process."""

from __future__ import annotations

import logging
import os

from aiohttp import web

from appliance.config import open_store
from appliance.service import claim_unix_socket, run_until_signalled
from appliance.settings import Settings
from appliance.switch.control import control_app
from appliance.switch.service import Switch

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Run the switch until SIGINT or SIGTERM."""
    socket_path = settings.control_socket
    claim_unix_socket(socket_path, "Callbox switch")
    store = open_store(settings)
    switch = Switch(settings, store)
    runner = web.AppRunner(control_app(switch), access_log=None)

    async def start() -> str:
        switch.start_media()
        # SIP before the control socket: once that exists, SIP is listening too.
        await switch.sip.start(
            settings.sip.host,
            settings.sip.port,
            tls=switch.tls_context(),
            tls_port=settings.sip.tls_port,
        )
        await runner.setup()
        site = web.UnixSite(runner, str(socket_path))
        await site.start()
        os.chmod(socket_path, 0o660)
        return f"control API on unix:{socket_path}, SIP on {switch.sip.where()}"

    async def stop() -> None:
        await switch.sip.close()
        switch.stop_media()
        await runner.cleanup()
        socket_path.unlink(missing_ok=True)
        store.close()

    await run_until_signalled("switch", start, stop)
