"""What every Callbox process shares: start-up, signals, readiness, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from hw.systemd import Notifier

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A service could not start; the message says why and what to change."""


async def run_until_signalled(
    name: str,
    start: Callable[[], Awaitable[str]],
    stop: Callable[[], Awaitable[None]],
    notifier: Notifier | None = None,
) -> None:
    """Start a service, report ready, run until SIGINT/SIGTERM, then stop it cleanly.

    ``start`` returns a one-line status for ``READY=1``/``STATUS=``.
    """
    notifier = notifier or Notifier()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        status = await start()
        notifier.ready(status)
        notifier.start_watchdog()
        log.info("%s ready: %s", name, status)
        await stopped.wait()
        log.info("%s stopping", name)
        notifier.stopping()
    finally:
        await notifier.stop_watchdog()
        await stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def claim_unix_socket(path: Path, owner: str) -> None:
    """Make ``path`` free for a listening unix socket, or fail if a live process holds it.

    A socket file left by a process that died is removed; one that accepts
    connections belongs to a running Callbox, which must not be disturbed.
    """
    if len(str(path).encode()) > 107:
        raise StartupError(
            f"the socket path {path} is longer than the 107 bytes unix sockets allow; "
            "choose a shorter data_dir"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    finally:
        probe.close()
    raise StartupError(f"another {owner} is already running: {path} accepts connections")
