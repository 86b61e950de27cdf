"""Loopback helpers for tests that run real SIP peers."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A 127.0.0.1 port that is free for both UDP and TCP right now, from 10000-19999.

    Not from the kernel's ephemeral range (32768-60999): a port found free there
    can be handed to any other socket's connect or bind before our peer binds it
    (seen as "Address already in use" while benchmarks ran beside the tests).
    Below the switch's RTP range (20000-29999) and the tests' engines' ranges.
    """
    for _ in range(200):
        port = random.randrange(10000, 20000)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port in 10000-19999 free for both UDP and TCP")


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
