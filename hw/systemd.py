"""systemd integration: readiness and watchdog notifications, and logging to journald.

Under systemd (``Type=notify``, ``WatchdogSec=``) a service tells the manager
when it is ready, what it is doing, and that it is alive. ``Notifier`` does
that through libsystemd's ``sd_notify`` (systemd-python) when
``NOTIFY_SOCKET`` is set, and does nothing otherwise, so the same code runs in
a terminal. ``callbox run`` sets ``NOTIFY_SOCKET`` for its children too, to
learn when each is ready.

``setup_logging`` sends structured records to journald when the process's
stderr is the journal (``JOURNAL_STREAM``), and readable lines to stderr
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping

from systemd import daemon, journal

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when the service runs under a manager that listens."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.socket = environ.get("NOTIFY_SOCKET") or None
        if self.socket is not None:
            # sd_notify reads NOTIFY_SOCKET itself; make sure it sees the socket we were given.
            os.environ["NOTIFY_SOCKET"] = self.socket
        self.watchdog_interval = _watchdog_interval(environ)
        self._watchdog_task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether a manager listens for notifications."""
        return self.socket is not None

    def _send(self, message: str) -> None:
        if self.socket is None:
            return
        if not daemon.notify(message):
            log.warning("sd_notify to %s failed: %s", self.socket, message)

    def ready(self, status: str = "") -> None:
        """Tell the manager start-up is complete (``READY=1``), with an optional status line."""
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> None:
        """Set the one-line status that ``systemctl status`` shows."""
        self._send(f"STATUS={status}")

    def stopping(self) -> None:
        """Tell the manager the service is shutting down."""
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        """One watchdog keep-alive."""
        self._send("WATCHDOG=1")

    def start_watchdog(self) -> None:
        """Ping the watchdog from the event loop at half the interval, while the loop is healthy.

        The pings come from a task on the loop, so a loop that stalls stops
        pinging and the manager restarts the service.
        """
        if self.watchdog_interval is None or self._watchdog_task is not None:
            return
        self._watchdog_task = asyncio.get_running_loop().create_task(self._watchdog_loop())

    async def _watchdog_loop(self) -> None:
        assert self.watchdog_interval is not None
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_interval / 2)

    async def stop_watchdog(self) -> None:
        """Stop the keep-alive task."""
        if self._watchdog_task is None:
            return
        self._watchdog_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watchdog_task
        self._watchdog_task = None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between required pings, from ``WATCHDOG_USEC`` (if meant for this process)."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


def stderr_is_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether stderr is connected to journald (``JOURNAL_STREAM`` names its device:inode)."""
    environ = os.environ if environ is None else environ
    stream = environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


class _LineFormatter(logging.Formatter):
    """``2026-11-23 19:00:00.123 INFO switch: message key=value`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def setup_logging(identifier: str, level: str = "info") -> logging.Handler:
    """Route the root logger to journald or stderr and return the handler used.

    Structured fields go in ``extra={"fields": {...}}``; on journald each
    becomes a journal field (upper-cased, as journald requires).
    """
    handler: logging.Handler
    if stderr_is_journal():
        handler = _StructuredJournalHandler(SYSLOG_IDENTIFIER=identifier)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _LineFormatter(
                f"%(asctime)s.%(msecs)03d %(levelname)s {identifier}: %(message)s",
                datefmt="%Y-%m-%d %H:%M:%S",
            )
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class _StructuredJournalHandler(journal.JournalHandler):  # type: ignore[misc]
    """journald handler that sends ``extra={"fields": {...}}`` as journal fields."""

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                setattr(record, str(key).upper(), value)
        super().emit(record)
