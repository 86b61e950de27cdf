"""An impairing RTP relay for ``callbox bench capacity``: delay jitter, loss and reordering.

The agents' phone (SIPp ``-rtp_echo``) answers with the relay's address in its
SDP, so the box sends each agent leg's RTP here; the relay passes it on to the
echo unchanged and impairs what the echo sends back, on its way into the box:
each datagram is dropped with ``loss_pct`` per cent, delayed by a random time
uniform in ``[0, jitter_ms]`` (datagrams 20 ms apart overtake each other when
the jitter exceeds 20 ms), and ``reorder_pct`` per cent are held a further
``REORDER_HOLD_MS`` so that the next one overtakes them. Traffic stays on
loopback; the relay owns one socket per route it listens on and one per box
leg it has heard (so the echo's answer finds its leg), and costs the generator,
not the box.

``python -m benchmarks.impair --echo-port P [--echo-port P2 ...] [--jitter-ms J]
[--loss-pct L] [--reorder-pct R] [--seed S]`` prints ``{"ports": [...]}``
(the port it listens on for each echo, in order) and then, for each line
``stats`` read on stdin, one line of JSON counters; it ends at end of input.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import resource
import select
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import IO

HOST = "127.0.0.1"
REORDER_HOLD_MS = 25.0
"""How long a reordered datagram is held beyond its jitter: just over one 20 ms packet time."""
MAX_DATAGRAM = 2048


@dataclass(frozen=True)
class Impairment:
    """What the relay does to RTP on its way into the box."""

    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    reorder_pct: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_ms <= 1000:
            raise ValueError(f"jitter_ms must be in 0..1000: got {self.jitter_ms}")
        for name in ("loss_pct", "reorder_pct"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ValueError(f"{name} must be a percentage in 0..100: got {value}")

    @property
    def none(self) -> bool:
        """True when the relay would pass every datagram on at once."""
        return self.jitter_ms == 0 and self.loss_pct == 0 and self.reorder_pct == 0


@dataclass
class Counters:
    """What the relay did to the datagrams on their way into the box (and passed out)."""

    to_box: int = 0
    dropped: int = 0
    reordered: int = 0
    delayed: int = 0
    delay_ms_total: float = 0.0
    delay_ms_max: float = 0.0
    dropped_per_port: dict[int, int] = field(default_factory=dict)
    """Datagrams dropped per port the relay listens on (one per echo: per agent codec)."""
    to_echo: int = 0
    box_legs: int = 0
    cpu_s: float = 0.0


class Relay:
    """Relays between box legs and echoes, impairing the echoes' datagrams (see the module)."""

    def __init__(self, echo_ports: list[int], impairment: Impairment, seed: int = 2026) -> None:
        self.impairment = impairment
        self.counters = Counters()
        self._random = random.Random(seed)
        self._poll = select.epoll()
        self._listeners: dict[int, tuple[socket.socket, tuple[str, int]]] = {}
        # Per box leg address: the socket that talks to its echo for it.
        self._upstream: dict[tuple[tuple[str, int], int], socket.socket] = {}
        # Upstream socket fd: (listener socket, box leg address).
        self._downstream: dict[int, tuple[socket.socket, tuple[str, int]]] = {}
        self._due: list[tuple[float, int, socket.socket, bytes, tuple[str, int]]] = []
        self._sequence = 0
        self.ports = [self._listen(port) for port in echo_ports]

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        self._poll.register(sock.fileno(), select.EPOLLIN)
        return sock

    def _listen(self, echo_port: int) -> int:
        sock = self._socket()
        self._listeners[sock.fileno()] = (sock, (HOST, echo_port))
        port: int = sock.getsockname()[1]
        return port

    def serve(self, control: IO[str], out: IO[str]) -> None:
        """Relay until ``control`` ends (then close every socket); answer each ``stats`` line
        on ``out``."""
        try:
            self._serve(control, out)
        finally:
            for sock in [*(s for s, _ in self._listeners.values()), *self._upstream.values()]:
                sock.close()
            self._poll.close()

    def _serve(self, control: IO[str], out: IO[str]) -> None:
        self._poll.register(control.fileno(), select.EPOLLIN)
        while True:
            timeout = max(0.0, self._due[0][0] - time.monotonic()) if self._due else -1
            for fd, _ in self._poll.poll(timeout):
                if fd == control.fileno():
                    line = control.readline()
                    if not line:
                        return
                    if line.strip() == "stats":
                        out.write(json.dumps(self.stats()) + "\n")
                        out.flush()
                elif fd in self._listeners:
                    self._from_box(*self._listeners[fd])
                else:
                    self._from_echo(fd)
            self._send_due()

    def stats(self) -> dict[str, object]:
        """The counters so far, with the relay's own CPU time."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.counters.cpu_s = round(usage.ru_utime + usage.ru_stime, 3)
        self.counters.box_legs = len(self._upstream)
        return asdict(self.counters)

    def _from_box(self, listener: socket.socket, echo: tuple[str, int]) -> None:
        for data, leg in _drain(listener):
            key = (leg, listener.fileno())
            upstream = self._upstream.get(key)
            if upstream is None:
                upstream = self._upstream[key] = self._socket()
                self._downstream[upstream.fileno()] = (listener, leg)
            upstream.sendto(data, echo)
            self.counters.to_echo += 1

    def _from_echo(self, fd: int) -> None:
        listener, leg = self._downstream[fd]
        upstream = self._upstream[(leg, listener.fileno())]
        impairment, counters = self.impairment, self.counters
        for data, _ in _drain(upstream):
            if impairment.none:
                listener.sendto(data, leg)
                counters.to_box += 1
                continue
            if self._random.random() * 100 < impairment.loss_pct:
                counters.dropped += 1
                port = listener.getsockname()[1]
                counters.dropped_per_port[port] = counters.dropped_per_port.get(port, 0) + 1
                continue
            delay = self._random.uniform(0, impairment.jitter_ms)
            if self._random.random() * 100 < impairment.reorder_pct:
                delay += REORDER_HOLD_MS
                counters.reordered += 1
            counters.delayed += 1
            counters.delay_ms_total += delay
            counters.delay_ms_max = max(counters.delay_ms_max, delay)
            self._sequence += 1
            heapq.heappush(
                self._due, (time.monotonic() + delay / 1000, self._sequence, listener, data, leg)
            )

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, listener, data, leg = heapq.heappop(self._due)
            listener.sendto(data, leg)
            self.counters.to_box += 1


def _drain(sock: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    """Every datagram waiting on ``sock``."""
    received = []
    while True:
        try:
            received.append(sock.recvfrom(MAX_DATAGRAM))
        except BlockingIOError:
            return received


def main(argv: list[str] | None = None) -> int:
    """Run the relay on stdin/stdout (see the module)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.impair", description=__doc__)
    p.add_argument("--echo-port", type=int, action="append", required=True)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--loss-pct", type=float, default=0.0)
    p.add_argument("--reorder-pct", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    try:
        impairment = Impairment(args.jitter_ms, args.loss_pct, args.reorder_pct)
    except ValueError as error:
        p.error(str(error))
    relay = Relay(args.echo_port, impairment, args.seed)
    print(json.dumps({"ports": relay.ports}), flush=True)
    relay.serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
