"""sd_notify against a real unix datagram socket, and the choice of log destination."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hw.systemd import Notifier, setup_logging, stderr_is_journal


@pytest.fixture
def manager_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notification socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def _received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_stopping_reach_the_manager(
    manager_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = manager_socket.getsockname()
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("control API up")
    assert _received(manager_socket) == "READY=1\nSTATUS=control API up"
    notifier.status("3 calls")
    assert _received(manager_socket) == "STATUS=3 calls"
    notifier.stopping()
    assert _received(manager_socket) == "STOPPING=1"


async def test_watchdog_pings_at_half_the_interval(
    manager_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = manager_socket.getsockname()
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_interval == pytest.approx(0.2)
    notifier.start_watchdog()
    loop = asyncio.get_running_loop()
    pings = [await loop.run_in_executor(None, _received, manager_socket) for _ in range(3)]
    await notifier.stop_watchdog()
    assert pings == ["WATCHDOG=1"] * 3


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_interval is None


def test_without_a_manager_notifications_are_silent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready("x")  # must not raise


def test_logs_go_to_stderr_as_readable_lines_outside_systemd(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    handler = setup_logging("callbox-test", "info")
    try:
        assert isinstance(handler, logging.StreamHandler)
        logging.getLogger("x").info("agent logged in", extra={"fields": {"agent": "1001"}})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.endswith("INFO callbox-test: agent logged in agent=1001")
    finally:
        logging.getLogger().removeHandler(handler)


def test_journal_is_used_when_stderr_is_the_journal_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    st = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert stderr_is_journal()
    handler = setup_logging("callbox-test")
    try:
        assert type(handler).__name__ == "_StructuredJournalHandler"
    finally:
        logging.getLogger().removeHandler(handler)
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not stderr_is_journal()
