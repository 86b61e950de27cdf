"""Client of the switch's control API over its unix socket (for the web process and the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)


class SwitchUnavailable(RuntimeError):
    """The switch's control socket does not answer."""


class SwitchRefused(RuntimeError):
    """The switch answered a request with an error: its HTTP status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def request_switch(
    socket_path: Path, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send ``method path`` (with a JSON ``body``) to the switch at ``socket_path``; its JSON."""
    connector = aiohttp.UnixConnector(path=str(socket_path))
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session,
            session.request(method, f"http://switch{path}", json=body) as response,
        ):
            result: dict[str, Any] = await response.json()
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, FileNotFoundError | ConnectionRefusedError):
            raise SwitchUnavailable(
                f"nothing listens on the control socket {socket_path}"
            ) from None
        raise SwitchUnavailable(f"cannot reach the switch at {socket_path}: {exc}") from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise SwitchUnavailable(f"the switch at {socket_path} does not answer: {exc}") from None
    if response.status >= 400:
        raise SwitchRefused(response.status, str(result.get("error", response.reason)))
    return result


async def fetch_status(socket_path: Path) -> dict[str, Any]:
    """GET /v1/status from the switch at ``socket_path``."""
    try:
        return await request_switch(socket_path, "GET", "/v1/status")
    except SwitchRefused as exc:
        raise SwitchUnavailable(f"the switch at {socket_path} refused its status: {exc}") from None
