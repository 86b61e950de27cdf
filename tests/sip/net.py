"""Loopback helpers for tests that run real SIP peers."""

from __future__ import annotations

import random
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A 127.0.0.1 port that is free for both UDP and TCP right now, from 10000-19999.

    Not from the kernel's ephemeral range (32768-60999): a port found free there
    can be handed to any other socket's connect or bind before our peer binds it
    (seen as "Address already in use" while benchmarks ran beside the tests).
    Below the switch's RTP range (20000-29999) and the tests' engines' ranges.
    """
    return _free(range(10000, 20000), count=1, tcp=True)


def free_media_ports(count: int = 4) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1, for SIPp's ``-mp``.

    SIPp binds the port given and the ones after it (RTCP, video), so one free port is not
    enough. Ports come from 30000-32767: above the switch's RTP range (20000-29999) and
    below the kernel's ephemeral range, where other sockets would come and go.
    """
    return _free(range(30000, 32768 - count, 2), count=count, tcp=False)


# Ports handed out lately, not handed out again: a test that asks twice
# before binding either (a switch's SIP port and its TLS port) must get two
# ports. Once in 10,000 pairs the random picks were the same.
_recent: deque[int] = deque(maxlen=64)


def _free(firsts: range, *, count: int, tcp: bool) -> int:
    """A random start of ``firsts`` whose ``count`` ports (UDP, and TCP too with ``tcp``)
    could all be bound just now, none of them handed out lately."""
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp else (socket.SOCK_DGRAM,)
    for _ in range(200):
        first = random.choice(firsts)
        block = range(first, first + count)
        if any(port in _recent for port in block):
            continue
        sockets: list[socket.socket] = []
        try:
            for port in block:
                for kind in kinds:
                    sockets.append(socket.socket(socket.AF_INET, kind))
                    sockets[-1].bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        _recent.extend(block)
        return first
    raise RuntimeError(f"no {count} free port(s) in {firsts.start}-{firsts.stop - 1}")


@dataclass
class Certificate:
    """A self-signed certificate for callbox.test and 127.0.0.1, and its key (PEM files)."""

    cert: Path
    key: Path
