"""The impairing relay of ``callbox bench capacity`` on the wire: loss, reordering and delay.

A "box" socket sends sequence-numbered datagrams through the relay to an "echo"
socket that sends each back; what the box gets back is what the relay let
through, in the order and at the times it let it through.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from benchmarks.impair import Impairment, Relay

PACKETS = 300


@contextmanager
def relay_between(impairment: Impairment) -> Iterator[tuple[Relay, socket.socket]]:
    """A relay in a thread in front of an echo socket; the box's socket, bound and ready."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(0.2)
    relay = Relay([echo.getsockname()[1]], impairment, seed=7)
    control_read, control_write = os.pipe()
    stats_read, stats_write = os.pipe()
    with (
        os.fdopen(control_read) as control,
        os.fdopen(stats_write, "w") as stats_out,
        os.fdopen(control_write, "w") as commands,
    ):
        relaying = threading.Thread(target=relay.serve, args=(control, stats_out), daemon=True)
        relaying.start()
        stop = threading.Event()

        def echo_back() -> None:
            while not stop.is_set():
                try:
                    data, source = echo.recvfrom(2048)
                except TimeoutError:
                    continue
                echo.sendto(data, source)

        echoing = threading.Thread(target=echo_back, daemon=True)
        echoing.start()
        box = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        box.bind(("127.0.0.1", 0))
        box.settimeout(1.0)
        try:
            yield relay, box
        finally:
            stop.set()
            commands.close()  # end of input: the relay returns
            relaying.join(10)
            echoing.join(10)
            box.close()
            echo.close()
            os.close(stats_read)


def through(relay: Relay, box: socket.socket) -> list[tuple[int, float]]:
    """Send ``PACKETS`` numbered datagrams 2 ms apart; each one back: (number, round trip s)."""
    back: list[tuple[int, float]] = []

    def receive() -> None:
        # Read as they come: a socket buffer holds only a couple of hundred datagrams.
        while True:
            try:
                data = box.recv(2048)
            except TimeoutError:
                return
            number, sent = struct.unpack("!Id", data)
            back.append((number, time.monotonic() - sent))

    receiving = threading.Thread(target=receive, daemon=True)
    receiving.start()
    target = ("127.0.0.1", relay.ports[0])
    for number in range(PACKETS):
        box.sendto(struct.pack("!Id", number, time.monotonic()), target)
        time.sleep(0.002)
    receiving.join(30)
    return back


def test_no_impairment_passes_every_datagram_in_order() -> None:
    with relay_between(Impairment()) as (relay, box):
        back = through(relay, box)
    assert [number for number, _ in back] == list(range(PACKETS))
    assert relay.counters.to_box == relay.counters.to_echo == PACKETS
    assert relay.counters.dropped == 0


def test_loss_drops_that_share_of_datagrams_into_the_box_and_counts_them() -> None:
    with relay_between(Impairment(loss_pct=20)) as (relay, box):
        back = through(relay, box)
    numbers = [number for number, _ in back]
    missing = PACKETS - len(numbers)
    assert relay.counters.to_echo == PACKETS  # the way out is not impaired
    assert missing == relay.counters.dropped
    assert 0.1 * PACKETS < missing < 0.3 * PACKETS
    assert numbers == sorted(numbers)


def test_reordering_lets_later_datagrams_overtake_held_ones() -> None:
    with relay_between(Impairment(reorder_pct=30)) as (relay, box):
        back = through(relay, box)
    numbers = [number for number, _ in back]
    assert sorted(numbers) == list(range(PACKETS))  # nothing lost
    overtaken = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    assert overtaken > 0
    assert relay.counters.reordered > 0
    # A held datagram comes back at least the hold later than it went.
    assert max(trip for _, trip in back) >= 0.025


def test_jitter_delays_datagrams_by_up_to_its_bound() -> None:
    with relay_between(Impairment(jitter_ms=60)) as (relay, box):
        back = through(relay, box)
    assert sorted(number for number, _ in back) == list(range(PACKETS))
    # Delays are uniform in 0..60 ms: some of 300 are held well over 30 ms.
    assert max(trip for _, trip in back) >= 0.03
    assert relay.counters.delay_ms_max <= 60
    assert json.loads(json.dumps(relay.stats()))["delayed"] == PACKETS


@pytest.mark.parametrize(
    ("jitter_ms", "loss_pct", "reorder_pct"), [(-1, 0, 0), (0, 101, 0), (0, 0, -5)]
)
def test_an_impairment_out_of_range_is_refused_naming_it(
    jitter_ms: float, loss_pct: float, reorder_pct: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        Impairment(jitter_ms, loss_pct, reorder_pct)
