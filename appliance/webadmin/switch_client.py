"""Client of the switch's control API over its unix socket (for the web process and the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)


class SwitchUnavailable(RuntimeError):
    """The switch's control socket does not answer."""


async def fetch_status(socket_path: Path) -> dict[str, Any]:
    """GET /v1/status from the switch at ``socket_path``."""
    connector = aiohttp.UnixConnector(path=str(socket_path))
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session,
            session.get("http://switch/v1/status") as response,
        ):
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, FileNotFoundError | ConnectionRefusedError):
            raise SwitchUnavailable(
                f"nothing listens on the control socket {socket_path}"
            ) from None
        raise SwitchUnavailable(f"cannot reach the switch at {socket_path}: {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SwitchUnavailable(f"the switch at {socket_path} does not answer: {exc}") from None
