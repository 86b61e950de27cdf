"""Loopback helpers for tests that run real SIP peers."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A 127.0.0.1 port that is free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def free_media_ports(count: int = 4) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1, for SIPp's ``-mp``.

    SIPp binds the port given and the ones after it (RTCP, video), so one free port is not
    enough. Ports come from 30000-32767: above the switch's RTP range (20000-29999) and
    below the kernel's ephemeral range, where other sockets would come and go.
    """
    for _ in range(200):
        first = random.randrange(30000, 32768 - count, 2)
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(udp)
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for udp in sockets:
                udp.close()
        return first
    raise RuntimeError(f"no {count} consecutive UDP ports free in 30000-32767")


@dataclass
class Certificate:
    """A self-signed certificate for callbox.test and 127.0.0.1, and its key (PEM files)."""

    cert: Path
    key: Path
