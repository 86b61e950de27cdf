"""callbox-switch: SIP, call control, IVR, ACD and the media core in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import socket

from aiohttp import web

from appliance.config import open_store
from appliance.ivr.prompts import PromptGenerationError, ensure_prompts
from appliance.service import StartupError, claim_unix_socket, run_until_signalled
from appliance.settings import Settings
from appliance.store import StoreError
from appliance.switch.control import control_app
from appliance.switch.service import Switch

log = logging.getLogger(__name__)

CONFIG_POLL_S = 1.0
"""How often the switch checks whether its configuration changed in the store, so a
``config import`` takes effect while it runs (the check is one small read; the
configuration is re-read only when it changed)."""


async def _follow_config(switch: Switch, loaded: tuple[int, ...]) -> None:
    """Apply the stored configuration again whenever a write changes it."""
    while True:
        await asyncio.sleep(CONFIG_POLL_S)
        try:
            current = await switch.config_generation()
            if current != loaded:
                await switch.load_config()
                loaded = current
                log.info("configuration changed in the store: applied")
        except StoreError as error:
            # The live configuration stays as it is; the next check tries again.
            log.error("cannot re-read the configuration: %s", error)


async def _generate_prompts(settings: Settings) -> None:
    """Make the built-in prompts that are missing; the switch runs on without them if it cannot."""
    try:
        made = await asyncio.to_thread(ensure_prompts, settings.prompts_path)
    except PromptGenerationError as error:
        log.error("built-in prompts not generated: %s", error)
        return
    if made:
        log.info("generated built-in prompts in %s: %s", settings.prompts_path, ", ".join(made))


GC_YOUNGEST_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (CPython's default: 700)."""


def tune_garbage_collector() -> None:
    """Fit the cyclic garbage collector to a signalling server (call once started).

    Each SIP transaction stays alive for up to 32 s after its answer (timers
    J and K absorb retransmissions), so under load the young generations
    are full of objects that are still alive and are walked again at every
    collection; nearly all garbage the stack makes is freed by reference
    counting, not by the collector. Measured with ``benchmarks/sip_load``:
    CPython's default of 700 cost a third of the switch's CPU per REGISTER.
    Start-up objects (modules, settings, the engine) live as long as the
    process: frozen out of the collector, a full collection walks only
    what calls and transactions made, which keeps its pauses short.
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, middle, oldest)
    gc.freeze()


async def check_loopback(host: str) -> None:
    """Refuse a control API host that is not loopback: the API has no authentication."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise StartupError(f"cannot resolve control tcp_host {host!r}: {exc}") from None
    outside = sorted({str(a[4][0]) for a in found if not ipaddress.ip_address(a[4][0]).is_loopback})
    if outside:
        raise StartupError(
            f"control tcp_host {host!r} is not a loopback address ({', '.join(outside)}): "
            "the control API has no authentication, so it listens on TCP only on "
            "127.0.0.1 or ::1; set [control] tcp_host or CALLBOX_CONTROL_TCP_HOST"
        )


async def _serve_tcp(runner: web.AppRunner, settings: Settings) -> None:
    """Also serve the control API on loopback TCP (development), if a port is set."""
    control = settings.control
    if not control.tcp_port:
        return
    await check_loopback(control.tcp_host)
    try:
        await web.TCPSite(runner, control.tcp_host, control.tcp_port).start()
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {control.tcp_host}:{control.tcp_port} for the control API: "
            f"{exc.strerror}; set [control] tcp_port or CALLBOX_CONTROL_TCP_PORT"
        ) from None


async def serve(settings: Settings) -> None:
    """Run the switch until SIGINT or SIGTERM."""
    socket_path = settings.control_socket
    claim_unix_socket(socket_path, "Callbox switch")
    store = open_store(settings)
    switch = Switch(settings, store)
    runner = web.AppRunner(control_app(switch), access_log=None)
    reloading: list[asyncio.Task[None]] = []

    async def start() -> str:
        await _generate_prompts(settings)
        switch.start_media()
        # SIP before the control socket: once that exists, SIP is listening too.
        await switch.sip.start(
            settings.sip.host,
            settings.sip.port,
            tls=switch.tls_context(),
            tls_port=settings.sip.tls_port,
        )
        for record in await switch.callcenter.call_log.recover():
            log.warning(
                "call %s from %s to %s was cut off when the switch stopped; recorded as"
                " interrupted", record.id, record.caller, record.dialled,
            )  # fmt: skip
        # The generation before the load: a write in between is applied once more, not missed.
        generation = await switch.config_generation()
        await switch.load_config()
        reloading.append(asyncio.create_task(_follow_config(switch, generation)))
        await runner.setup()
        # TCP before the socket, which clients take as the sign that all is up.
        await _serve_tcp(runner, settings)
        site = web.UnixSite(runner, str(socket_path))
        await site.start()
        os.chmod(socket_path, 0o660)
        tune_garbage_collector()
        listeners = switch.listeners().items()
        control = " and ".join(v for k, v in listeners if k.startswith("control") and v)
        return f"control API on {control}, SIP on {switch.sip.where()}"

    async def stop() -> None:
        for task in reloading:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await switch.calls.close()
        await switch.callcenter.close()
        await switch.sip.close()
        switch.stop_media()
        await runner.cleanup()
        socket_path.unlink(missing_ok=True)
        store.close()

    await run_until_signalled("switch", start, stop)
