"""``callbox run``: both processes in the foreground, for development and first tries.

In the image each process is a systemd unit. Here ``run`` plays the
manager's part with the same protocol: it binds a notification socket per
child, sets ``NOTIFY_SOCKET``, waits for each child's ``READY=1``, prints
where everything listens, and on Ctrl-C (or if either child dies) stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from appliance import __version__
from appliance.settings import Settings

PROCESSES = ("switch", "web")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Child:
    """One supervised process and its notification socket."""

    name: str
    notify_path: Path
    sock: socket.socket
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = ""


def _bind_notify_socket(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


def _on_notify(child: Child) -> None:
    while True:
        try:
            data = child.sock.recv(4096)
        except BlockingIOError:
            return
        for line in data.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                child.ready.set()
            elif key == "STATUS":
                child.status = value


def media_workers(settings: Settings) -> int:
    """How many media worker threads the switch starts (0 in the settings: one per core)."""
    return settings.media.workers or os.cpu_count() or 1


def banner(settings: Settings, one_time_password: str | None = None) -> str:
    """The lines ``callbox run`` prints once both processes are ready (with the admin's
    one-time password while it is still to be replaced)."""
    rtp = settings.rtp
    sip = settings.sip
    tls = (
        f"tls {sip.host}:{sip.tls_port}"
        if sip.tls_enabled
        else "tls off (no [sip] tls_certificate)"
    )
    first_sign_in = (
        [
            f"  first sign-in user admin, one-time password {one_time_password}"
            " (the web UI asks for a new one)"
        ]
        if one_time_password
        else []
    )
    return "\n".join(
        [
            f"Callbox {__version__} is running; data in {settings.data_path}",
            f"  web admin     http://{settings.web.host}:{settings.web.port}/",
            f"  control API   unix:{settings.control_socket}",
            f"  SIP           udp/tcp {settings.sip.host}:{settings.sip.port}, {tls}"
            f" (registrar, realm {settings.sip.realm}; inbound numbers to the IVR,"
            " calls between extensions)",
            f"  RTP ports     {rtp.port_min}-{rtp.port_max}"
            f" (media engine, {media_workers(settings)} workers)",
            *first_sign_in,
            "Status: callbox status    Stop: Ctrl-C",
        ]
    )


async def supervise(
    settings: Settings,
    child_args: list[str],
    out: TextIO = sys.stdout,
    *,
    one_time_password: str | None = None,
) -> int:
    """Start both processes, wait until ready, run until a signal or a child exits.

    ``child_args`` are the CLI's global options, passed on so each child
    loads the same settings. Returns the exit status for ``callbox run``.
    """
    run_path = settings.run_path
    run_path.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    children = [
        Child(
            name,
            run_path / f"notify-{name}.sock",
            _bind_notify_socket(run_path / f"notify-{name}.sock"),
        )
        for name in PROCESSES
    ]
    stop_requested = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    try:
        for child in children:
            loop.add_reader(child.sock.fileno(), _on_notify, child)
            env = dict(os.environ, NOTIFY_SOCKET=str(child.notify_path))
            child.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance", *child_args, child.name, env=env
            )
        return await _run(children, stop_requested, banner(settings, one_time_password), out)
    finally:
        await _stop_all(children)
        for child in children:
            loop.remove_reader(child.sock.fileno())
            child.sock.close()
            child.notify_path.unlink(missing_ok=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _run(
    children: list[Child], stop_requested: asyncio.Event, ready_banner: str, out: TextIO
) -> int:
    exits: dict[asyncio.Task[int], Child] = {
        asyncio.create_task(c.process.wait()): c for c in children if c.process
    }
    stop = asyncio.create_task(stop_requested.wait())
    all_ready = asyncio.create_task(_all_ready(children))
    try:
        done, _ = await asyncio.wait(
            {all_ready, stop, *exits}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if all_ready not in done:
            return _report_start_failure(done, exits, stop, out)
        print(ready_banner, file=out, flush=True)
        done, _ = await asyncio.wait({stop, *exits}, return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            print("Stopping Callbox ...", file=out, flush=True)
            return 0
        names = ", ".join(exits[t].name for t in exits if t in done)
        print(f"callbox: the {names} process exited unexpectedly; stopping", file=out)
        return 1
    finally:
        for task in (stop, all_ready, *exits):
            task.cancel()


async def _all_ready(children: list[Child]) -> None:
    for child in children:
        await child.ready.wait()


def _report_start_failure(
    done: set[asyncio.Task[Any]],
    exits: dict[asyncio.Task[int], Child],
    stop: asyncio.Task[Any],
    out: TextIO,
) -> int:
    if stop in done:
        return 0
    failed = [child for task, child in exits.items() if task in done]
    if failed:
        names = ", ".join(c.name for c in failed)
        print(f"callbox: the {names} process could not start (see its message above)", file=out)
    else:
        print(f"callbox: not ready after {READY_TIMEOUT_S:.0f} s; stopping", file=out)
    return 1


async def _stop_all(children: list[Child]) -> None:
    """SIGTERM every live child, wait, then SIGKILL any that did not stop."""
    live = [c.process for c in children if c.process and c.process.returncode is None]
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    for process in live:
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
