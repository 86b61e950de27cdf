"""The media engine with real packets on loopback: legs, latching, bridges, timeouts, RTCP.

Waits have generous upper bounds and assert only that something happens,
never how fast: the machine is shared and the tests must not fail on timing.
"""

from __future__ import annotations

import functools
import itertools
import os
import platform
import random
import re
import resource
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import core
from core import Engine, MediaEvent
from tests.core.engine_peers import (
    LOOPBACK,
    PATIENCE,
    Peer,
    bridged_call,
    connected_leg,
    eventually,
    next_event,
)

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the Python twin has no media engine"
)


@pytest.fixture(params=["io_uring", "system_calls"])
def any_io_engine(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """An engine batching its sockets' I/O through io_uring (the default), or not.

    CALLBOX_IO_URING=off turns the rings off.
    """
    if request.param == "io_uring":
        monkeypatch.delenv("CALLBOX_IO_URING", raising=False)
    else:
        monkeypatch.setenv("CALLBOX_IO_URING", "off")
    with Engine(workers=2, port_min=31000, port_max=31999, host=LOOPBACK) as e:
        yield e


def open_descriptors() -> dict[int, str]:
    """This process's descriptors and what each is, as /proc/self/fd shows them."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


def io_urings_open() -> int:
    """How many io_uring instances this process holds."""
    return sum("io_uring" in what for what in open_descriptors().values())


def kernel_version() -> tuple[int, int]:
    """The running kernel's major and minor version."""
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(found[1]), int(found[2])) if found else (0, 0)


@pytest.mark.skipif(
    kernel_version() < (6, 1),
    reason="rings need Linux 6.1 (multishot recvmsg, sends with an address)",
)
def test_a_worker_uses_io_uring_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    before = io_urings_open()
    monkeypatch.delenv("CALLBOX_IO_URING", raising=False)
    with Engine(workers=1, port_min=31000, port_max=31999, host=LOOPBACK):
        assert io_urings_open() - before == 2  # one to receive, one to send
    monkeypatch.setenv("CALLBOX_IO_URING", "off")
    with Engine(workers=1, port_min=31000, port_max=31999, host=LOOPBACK):
        assert io_urings_open() == before


def test_a_leg_binds_an_even_rtp_port_and_the_next_one_for_rtcp(engine: Engine) -> None:
    leg = engine.create_rtp_leg()
    assert leg.local_port % 2 == 0
    assert 31000 <= leg.local_port < 31999
    assert leg.local_rtcp_port == leg.local_port + 1
    muxed = engine.create_rtp_leg(rtcp_mux=True)
    assert muxed.local_rtcp_port == muxed.local_port


def test_relay_delivers_the_same_payloads_in_order_with_continuous_seq_and_ts(
    any_io_engine: Engine, peers: Callable[[], Peer]
) -> None:
    caller, agent, a, _b = bridged_call(any_io_engine, peers)
    for seq in range(65530, 65560):  # across the 16-bit wrap of the source
        caller.send(a, seq)
    received = [agent.receive_rtp() for _ in range(30)]
    assert [p.payload for p in received] == [bytes([s & 0xFF]) * 160 for s in range(65530, 65560)]
    assert len({p.ssrc for p in received}) == 1
    assert received[0].ssrc != 0x5EED  # the leg's own SSRC, not the source's
    for before, after in itertools.pairwise(received):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        assert after.timestamp == (before.timestamp + 160) & 0xFFFFFFFF
    assert received[0].marker  # a new stream starts with the marker bit


def test_relays_stay_whole_and_in_order_while_a_worker_walks_hundreds_of_recorded_legs(
    any_io_engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    """A tick over a hundred recorded calls takes in the packets that arrive meanwhile.

    With a ring, the worker looks for received packets every 128 legs or
    recordings it walks and relays them at once; the packets still reach the
    far end once each, in order, and the recordings keep every frame.
    """
    calls = [bridged_call(any_io_engine, peers) for _ in range(100)]
    recordings = [
        any_io_engine.record(tmp_path / f"{n}.wav", left=a, right=b)
        for n, (_caller, _agent, a, b) in enumerate(calls)
    ]
    sent = range(1, 51)
    for seq in sent:  # back to back: packets keep arriving through several ticks
        for caller, _agent, a, _b in calls:
            caller.send(a, seq)
    for _caller, agent, _a, _b in calls:
        received = [agent.receive_rtp() for _ in sent]
        assert [p.payload for p in received] == [bytes([seq]) * 160 for seq in sent]
        for before, after in itertools.pairwise(received):
            assert after.sequence == (before.sequence + 1) & 0xFFFF
    for recording in recordings:
        info = recording.stop()
        assert info.frames_written > 0
        assert info.frames_dropped == 0


def test_a_rebridged_far_end_sees_one_continuous_stream(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    first, second, agent = peers(), peers(), peers()
    a = connected_leg(engine, first)
    b = connected_leg(engine, agent, beside=a)
    c = connected_leg(engine, second, beside=a)
    engine.bridge(a, b)
    for seq in range(100, 105):
        first.send(a, seq)
    before = [agent.receive_rtp() for _ in range(5)]
    engine.bridge(c, b)  # the agent now hears another party, whose numbering differs
    for seq in range(9000, 9005):
        second.send(c, seq, ts=777_000 + seq * 160)
    after = [agent.receive_rtp() for _ in range(5)]
    assert {p.ssrc for p in before + after} == {before[0].ssrc}
    assert after[0].sequence == (before[-1].sequence + 1) & 0xFFFF
    assert ((after[0].timestamp - before[-1].timestamp) & 0xFFFFFFFF) < 0x80000000  # forward
    assert after[0].marker
    assert [p.payload[0] for p in after] == [s & 0xFF for s in range(9000, 9005)]
    # The far end's own statistics see no loss and no restart across the re-bridge.
    stats = core.ReceiveStats()
    for n, p in enumerate(before + after):
        stats.update(p.sequence, p.timestamp, n * 160)
    assert stats.snapshot().lost == 0


def test_unbridged_legs_stop_relaying(engine: Engine, peers: Callable[[], Peer]) -> None:
    caller, _agent, a, b = bridged_call(engine, peers)
    engine.unbridge(b)
    for seq in range(1, 6):
        caller.send(a, seq)
    eventually(lambda: a.stats().packets_received == 5, "the caller's packets at leg a")
    assert b.stats().packets_sent == 0


def test_a_leg_latches_to_the_port_rtp_really_comes_from(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    announced, behind_nat = peers(), peers()
    leg = connected_leg(engine, announced)
    behind_nat.send(leg, 1)
    behind_nat.send(leg, 2)
    event = next_event(engine, "latched")
    assert event == MediaEvent("latched", leg.id, f"{LOOPBACK}:{behind_nat.port}")
    leg.send(b"\x55" * 160, 1234)
    assert behind_nat.receive_rtp().payload == b"\x55" * 160
    stats = leg.stats()
    assert stats.remote == f"{LOOPBACK}:{behind_nat.port}"
    assert stats.foreign == 1  # the first packet from the new port waited for the second


def test_one_stray_packet_does_not_move_the_media(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end, stranger = peers(), peers()
    leg = connected_leg(engine, far_end)
    far_end.send(leg, 1)
    stranger.send(leg, 500)
    far_end.send(leg, 2)
    stranger.send(leg, 501)
    eventually(lambda: leg.stats().foreign == 2, "both stray packets counted")
    stats = leg.stats()
    assert stats.remote == f"{LOOPBACK}:{far_end.port}"
    assert stats.packets_received == 2


def test_rtp_timeout_fires_when_packets_stop_and_resumed_when_they_return(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    leg = connected_leg(engine, far_end, rtp_timeout=0.1)
    far_end.send(leg, 1)
    assert next_event(engine, "rtp_timeout").leg == leg.id
    far_end.send(leg, 2)
    assert next_event(engine, "rtp_resumed").leg == leg.id


def test_a_leg_on_hold_does_not_time_out(engine: Engine, peers: Callable[[], Peer]) -> None:
    held = connected_leg(engine, peers(), rtp_timeout=0.1)
    held.hold()
    # Created after the held leg on the same worker with the same timeout: when
    # its timeout has fired, the held leg's would have fired at that tick or before.
    witness = connected_leg(engine, peers(), rtp_timeout=0.1, beside=held)
    events: list[MediaEvent] = []

    def witness_timed_out() -> bool:
        events.extend(engine.poll_events())
        return any(e.leg == witness.id for e in events)

    eventually(witness_timed_out, "the witness leg's timeout")
    assert [e for e in events if e.leg == held.id] == []
    held.hold(False)
    assert next_event(engine, "rtp_timeout").leg == held.id


def test_sequence_wrap_duplicates_and_reordering_are_counted_on_a_live_leg(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    leg = connected_leg(engine, far_end)
    order = [65533, 65534, 65535, 0, 2, 1, 3, 3, 5, 6]  # 1 late, 3 twice, 4 missing
    for seq in order:
        far_end.send(leg, seq, ts=(seq + 3) * 160)
    eventually(lambda: leg.stats().packets_received == len(order), "every packet received")
    stats = leg.stats()
    assert stats.expected == 9  # 65534 .. 6 after the first packet's probation
    assert (stats.duplicates, stats.reordered) == (1, 1)
    # RFC 3550 counts the duplicate as received, so it offsets the missing 4.
    assert stats.lost == 0


def test_malformed_datagrams_are_counted_and_dropped(
    any_io_engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    leg = connected_leg(any_io_engine, far_end)
    junk_datagrams = [b"", b"\x80", b"\x40" + bytes(20), b"\x8f" + bytes(12), b"\xa0" + bytes(11)]
    for junk in junk_datagrams:
        far_end.sock.sendto(junk, (LOOPBACK, leg.local_port))
    far_end.sock.sendto(b"\x00" * 3, (LOOPBACK, leg.local_rtcp_port))
    far_end.send(leg, 1)
    far_end.send(leg, 2)
    eventually(lambda: leg.stats().packets_received == 2, "the valid packets")
    eventually(lambda: leg.stats().malformed == 6, "every malformed datagram counted")


def test_a_datagram_larger_than_the_receive_buffer_is_malformed_not_read_in_part(
    any_io_engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    leg = connected_leg(any_io_engine, far_end)
    far_end.send(leg, 1, payload=bytes(4000))  # a valid RTP header, cut short by a 2 KB buffer
    far_end.send(leg, 2)
    eventually(lambda: leg.stats().packets_received == 1, "the packet that fits")
    assert leg.stats().malformed == 1


@pytest.mark.parametrize("rtcp_mux", [False, True])
def test_random_datagrams_never_upset_a_live_leg(
    engine: Engine, peers: Callable[[], Peer], rtcp_mux: bool
) -> None:
    far_end = peers()
    leg = connected_leg(engine, far_end, rtcp_mux=rtcp_mux)
    rng = random.Random(3550)

    def accounted() -> int:
        # Each datagram is exactly one of: malformed, RTCP, or RTP from the far end.
        s = leg.stats()
        return s.malformed + s.rtcp_received + s.packets_received

    def caught_up(target: int) -> bool:
        return accounted() == target

    sent = 0
    for n in range(300):
        # Mostly version 2 with RTP or RTCP-looking second octets, so the
        # parsers' deeper checks are reached, with random lengths and bodies.
        body = bytearray(rng.randbytes(rng.randrange(0, 120)))
        if body and n % 4:
            body[0] = 0x80 | (body[0] & 0x3F)
        if len(body) > 1 and n % 2:
            body[1] = rng.choice([0, 8, 0x80, 200, 201, 202, 203, 204])
        port = leg.local_rtcp_port if n % 3 == 0 else leg.local_port
        far_end.sock.sendto(bytes(body), (LOOPBACK, port))
        sent += 1
        if sent % 25 == 0:
            # In small batches: a burst could overrun the socket buffer on a busy box.
            eventually(functools.partial(caught_up, sent), f"{sent} datagrams accounted for")
    far_end.send(leg, 40000)
    far_end.send(leg, 40001)
    eventually(functools.partial(caught_up, sent + 2), "the valid packets after the junk")
    assert leg.stats().remote == f"{LOOPBACK}:{far_end.port}"


def test_two_engines_exchange_rtp_and_rtcp_and_learn_the_round_trip(
    engine: Engine,
) -> None:
    with Engine(workers=1, port_min=32000, port_max=32999, host=LOOPBACK) as other:
        sender = engine.create_rtp_leg(rtcp_interval=0.1)
        receiver = other.create_rtp_leg(rtcp_interval=0.1)
        sender.set_remote(LOOPBACK, receiver.local_port)
        receiver.set_remote(LOOPBACK, sender.local_port)
        for n in range(50):
            sender.send(bytes([n]) * 160, n * 160)
        eventually(lambda: receiver.stats().packets_received == 50, "50 packets at the receiver")
        eventually(lambda: sender.stats().rtt_ms is not None, "an RTT from the receiver's RR")
        got = receiver.stats()
        assert (got.expected, got.lost) == (49, 0)
        assert got.rtcp_received > 0
        sent = sender.stats()
        assert sent.packets_sent == 50
        assert sent.remote_fraction_lost == 0
        assert sent.rtt_ms is not None
        assert sent.rtt_ms >= 0
        assert 1.0 <= got.mos <= 4.5


def test_rtcp_mux_carries_reports_on_the_rtp_port(engine: Engine) -> None:
    a = engine.create_rtp_leg(rtcp_mux=True, rtcp_interval=0.1)
    b = engine.create_rtp_leg(rtcp_mux=True, rtcp_interval=0.1)
    a.set_remote(LOOPBACK, b.local_port)
    b.set_remote(LOOPBACK, a.local_port)
    for n in range(5):
        a.send(b"\x00" * 160, n * 160)
    eventually(lambda: b.stats().rtcp_received > 0 and a.stats().rtcp_received > 0, "muxed RTCP")
    assert b.stats().malformed == 0
    assert b.stats().packets_received == 5


def test_closing_a_leg_returns_its_final_stats_and_frees_its_ports(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    leg = connected_leg(engine, far_end)
    for seq in range(1, 4):
        far_end.send(leg, seq)
    eventually(lambda: leg.stats().packets_received == 3, "three packets")
    final = leg.close()
    assert final.packets_received == 3
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, leg.local_port))
    with pytest.raises(ValueError, match=f"no leg {leg.id} in this engine"):
        leg.stats()


def test_many_legs_stats_read_together_match_each_legs_own_in_order(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_ends = [peers() for _ in range(4)]
    legs = [connected_leg(engine, far_end) for far_end in far_ends]
    assert {leg.worker for leg in legs} == {0, 1}  # the read spans both workers
    for count, (leg, far_end) in enumerate(zip(legs, far_ends, strict=True), start=1):
        for seq in range(1, count + 1):
            far_end.send(leg, seq)
    eventually(
        lambda: [s.packets_received for s in engine.stats_of(legs) if s] == [1, 2, 3, 4],
        "each leg's packets, in the order the legs were asked for",
    )
    legs[1].close()
    read = engine.stats_of([legs[3], legs[1], legs[0]])
    assert read[1] is None  # closed: left out, not an error
    assert [s.packets_received if s else None for s in read] == [4, None, 1]
    own = legs[3].stats()
    assert read[0] is not None
    assert read[0].remote_ssrc == own.remote_ssrc != 0
    assert engine.stats_of([]) == []
    with Engine(workers=1, port_min=32000, port_max=32099, host=LOOPBACK) as other:
        stranger = other.create_rtp_leg()
        with pytest.raises(ValueError, match="belongs to another engine"):
            engine.stats_of([legs[0], stranger])


def test_closed_legs_free_their_ports_at_once_while_their_far_ends_keep_sending(
    any_io_engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()

    def received_any(leg: core.RtpLeg) -> bool:
        return leg.stats().packets_received > 0

    for round_ in range(20):
        leg = connected_leg(any_io_engine, far_end)
        for seq in range(3):
            far_end.send(leg, round_ * 3 + seq)
        eventually(functools.partial(received_any, leg), "the far end's packets")
        far_end.send(leg, 99)  # still in flight as the leg closes
        leg.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, leg.local_port))  # raises if the closed leg still held it
    survivor = connected_leg(any_io_engine, far_end)
    far_end.send(survivor, 1)
    eventually(lambda: survivor.stats().packets_received == 1, "a new leg still receives")


def socket_fds() -> set[int]:
    """This process's descriptors that are sockets."""
    return {fd for fd, what in open_descriptors().items() if what.startswith("socket:")}


@contextmanager
def descriptor_limit_while(spare: int) -> Iterator[int]:
    """RLIMIT_NOFILE lowered to ``spare`` above the highest open descriptor, then restored.

    Yields the lowered limit: rings made meanwhile get a file table that small.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = max(open_descriptors()) + 1 + spare
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("io", ["io_uring", "system_calls"])
def test_legs_opened_and_closed_more_often_than_the_rings_file_table_holds_keep_relaying(
    io: str, monkeypatch: pytest.MonkeyPatch, peers: Callable[[], Peer]
) -> None:
    # Each round opens more sockets than the rings' tables of registered files
    # have slots (the rest go on plain descriptors), relays both ways on every
    # call, and closes them all: slots and descriptor numbers come back for
    # the next round, which must reach its own sockets, not the closed ones.
    if io == "io_uring":
        monkeypatch.delenv("CALLBOX_IO_URING", raising=False)
    else:
        monkeypatch.setenv("CALLBOX_IO_URING", "off")
    with descriptor_limit_while(spare=16) as table_slots:
        engine = Engine(workers=1, port_min=31000, port_max=31999, host=LOOPBACK)
    phones = [(peers(), peers()) for _ in range(table_slots // 4 + 4)]  # 4 sockets a call
    engine_fds_before = socket_fds()
    rounds: list[set[int]] = []
    with engine:
        for round_ in range(3):
            calls = []
            for caller, agent in phones:
                a = connected_leg(engine, caller)
                b = connected_leg(engine, agent, beside=a)
                engine.bridge(a, b)
                calls.append((a, b))
            rounds.append(socket_fds() - engine_fds_before)
            assert len(rounds[-1]) > table_slots
            for (caller, agent), (a, b) in zip(phones, calls, strict=True):
                caller.send(a, round_, payload=b"\x11" * 160)
                agent.send(b, round_, payload=b"\x22" * 160)
                assert agent.receive_rtp().payload == b"\x11" * 160
                assert caller.receive_rtp().payload == b"\x22" * 160
            for a, b in calls:
                a.close()
                b.close()
                for port in (a.local_port, a.local_rtcp_port, b.local_port, b.local_rtcp_port):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.bind((LOOPBACK, port))  # raises if a slot still held the socket
    assert rounds[0] & rounds[1]  # descriptor numbers came back
    assert rounds[1] & rounds[2]


def udp_inode(port: int) -> int:
    """The inode of the loopback UDP socket bound to ``port``, as /proc/net/udp lists it."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[9])
    raise LookupError(f"no UDP socket on {LOOPBACK}:{port}")


def registered_sockets() -> dict[int, set[int]]:
    """For each io_uring of this process (by descriptor), the inodes of its registered sockets."""
    rings = {}
    for fd, what in open_descriptors().items():
        if "io_uring" in what:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                listed = re.findall(r"^\s*\d+: socket:\[(\d+)\]$", info.read(), re.MULTILINE)
            rings[fd] = {int(inode) for inode in listed}
    return rings


@pytest.mark.skipif(
    kernel_version() < (6, 13),
    reason="rings register sockets from Linux 6.13 (before, closed ones were let go late)",
)
def test_a_legs_sockets_are_registered_with_both_rings_until_it_closes(
    monkeypatch: pytest.MonkeyPatch, peers: Callable[[], Peer]
) -> None:
    monkeypatch.delenv("CALLBOX_IO_URING", raising=False)
    before = registered_sockets()
    with Engine(workers=1, port_min=31000, port_max=31999, host=LOOPBACK) as engine:
        far_end = peers()
        leg = connected_leg(engine, far_end)
        far_end.send(leg, 1)
        eventually(lambda: leg.stats().packets_received == 1, "a packet through the ring")
        sockets = {udp_inode(leg.local_port), udp_inode(leg.local_rtcp_port)}
        rings = {fd: files for fd, files in registered_sockets().items() if fd not in before}
        assert len(rings) == 2  # one to receive, one to send
        assert all(sockets <= files for files in rings.values())
        leg.close()
        assert all(not sockets & registered_sockets()[fd] for fd in rings)


def test_a_new_ssrc_starts_a_new_source_and_a_new_outgoing_stream(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    caller, agent, a, _b = bridged_call(engine, peers)
    for seq in range(10, 15):
        caller.send(a, seq)
    before = [agent.receive_rtp() for _ in range(5)]
    # The caller's side restarts (say, a gateway failover): new SSRC, new numbering.
    for seq in range(3000, 3005):
        packet = core.build_rtp(0, seq, seq * 999, 0xFA11, b"\x01" * 160)
        caller.sock.sendto(packet, (LOOPBACK, a.local_port))
    after = [agent.receive_rtp() for _ in range(5)]
    assert after[0].ssrc == before[0].ssrc
    assert after[0].sequence == (before[-1].sequence + 1) & 0xFFFF
    assert after[0].marker
    stats = a.stats()
    assert stats.remote_ssrc == 0xFA11
    assert (stats.packets_received, stats.expected, stats.lost) == (10, 8, 0)


def test_the_far_ends_receiver_report_reaches_the_legs_stats(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    leg = connected_leg(engine, far_end)
    ssrc = leg.stats().local_ssrc
    block = core.ReportBlock(ssrc, 64, 12, 1000, 80, 0, 0)
    report = core.build_rtcp(0x5EED, None, [block], b"far@end")
    far_end.sock.sendto(report, (LOOPBACK, leg.local_rtcp_port))
    eventually(lambda: leg.stats().rtcp_received == 1, "the receiver report")
    stats = leg.stats()
    assert (stats.remote_fraction_lost, stats.remote_cumulative_lost) == (64, 12)
    assert stats.remote_jitter_ms == 10.0  # 80 units at 8 kHz
    assert stats.rtt_ms is None  # no LSR: the far end has had no SR from us


def test_an_rtcp_bye_is_reported_as_an_event(engine: Engine, peers: Callable[[], Peer]) -> None:
    far_end = peers()
    leg = connected_leg(engine, far_end)
    bye = core.build_rtcp(0x5EED, None, [], b"far@end") + struct.pack("!BBHI", 0x81, 203, 1, 0x5EED)
    far_end.sock.sendto(bye, (LOOPBACK, leg.local_rtcp_port))
    assert next_event(engine, "bye") == MediaEvent("bye", leg.id, "")


def test_the_leg_sends_sender_reports_the_far_end_can_parse(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    far_end = peers()
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.bind((LOOPBACK, 0))
    rtcp.settimeout(PATIENCE)
    with rtcp:
        leg = engine.create_rtp_leg(rtcp_interval=0.05, cname="agent7@callbox")
        leg.set_remote(LOOPBACK, far_end.port, rtcp.getsockname()[1])
        for n in range(3):
            leg.send(b"\x00" * 160, n * 160)
        report = core.parse_rtcp(rtcp.recv(2048))
        while report.sender is None:  # an RR may go out before the frames do
            report = core.parse_rtcp(rtcp.recv(2048))
    assert report.ssrc == leg.stats().local_ssrc
    assert report.cname == b"agent7@callbox"
    assert (report.sender.packet_count, report.sender.octet_count) == (3, 480)


def test_the_event_fd_is_readable_while_events_wait(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    connected_leg(engine, peers(), rtp_timeout=0.05)
    readable, _, _ = select.select([engine.fileno()], [], [], PATIENCE)
    assert readable == [engine.fileno()]
    assert engine.poll_events()
    readable, _, _ = select.select([engine.fileno()], [], [], 0)
    assert readable == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": -1}, "workers must be 1..256: got -1"),
        ({"port_min": 0}, "port_min must be in 1..65535: got 0"),
        ({"port_min": 5000, "port_max": 5000}, "5000-5000 holds no even/odd port pair"),
        ({"host": "localhost"}, "not an IPv4 address: 'localhost'"),
    ],
)
def test_bad_engine_arguments_are_refused_by_name(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Engine(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"codec": "speex", "payload_type": 97}, "unknown codec 'speex'"),
        ({"codec": "opus"}, "codec 'opus' has no static payload type: give payload_type"),
        ({"payload_type": 200}, "payload_type must be in 0..127: got 200"),
        ({"rtp_timeout": 0}, "rtp_timeout must be positive seconds or None: got 0"),
        ({"cname": "x" * 256}, "cname must be at most 255 bytes in UTF-8: got 256"),
    ],
)
def test_bad_leg_arguments_are_refused_by_name(
    engine: Engine, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        engine.create_rtp_leg(**kwargs)  # type: ignore[arg-type]


def test_a_frame_larger_than_a_datagram_is_refused(engine: Engine) -> None:
    leg = engine.create_rtp_leg()
    with pytest.raises(ValueError, match=r"must fit one datagram \(at most 2036 bytes\): got 3000"):
        leg.send(bytes(3000), 0)
    with pytest.raises(ValueError, match=r"timestamp must be in 0\.\.4294967295: got -1"):
        leg.send(b"", -1)


def test_a_bridge_needs_one_worker(engine: Engine) -> None:
    a = engine.create_rtp_leg(codec="PCMU")
    elsewhere = engine.create_rtp_leg()
    if engine._core.worker_of(elsewhere.id) == engine._core.worker_of(a.id):
        elsewhere = engine.create_rtp_leg()
    with pytest.raises(ValueError, match="are on different workers: create the second with beside"):
        engine.bridge(a, elsewhere)
    with pytest.raises(ValueError, match="to itself"):
        engine.bridge(a, a)


def test_commands_from_many_threads_while_media_flows(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    caller, _agent, a, _b = bridged_call(engine, peers)
    failures: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(10):
                leg = engine.create_rtp_leg(beside=a)
                leg.set_remote(LOOPBACK, caller.port)
                leg.send(b"\x00" * 160, 0)
                leg.stats()
                leg.close()
        except BaseException as error:  # handed to the test thread
            failures.append(error)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for seq in range(1, 41):
        caller.send(a, seq)
    for thread in threads:
        thread.join(PATIENCE * 3)
    assert failures == []
    eventually(lambda: a.stats().packets_received == 40, "the caller's packets during the churn")


def test_an_exhausted_port_range_is_an_error_naming_the_range() -> None:
    with Engine(workers=1, port_min=33000, port_max=33003, host=LOOPBACK) as small:
        small.create_rtp_leg()
        small.create_rtp_leg()
        with pytest.raises(RuntimeError, match="no free RTP port pair in 33000-33003"):
            small.create_rtp_leg()


def test_a_closed_engine_refuses_commands() -> None:
    engine = Engine(workers=1, port_min=33100, port_max=33199, host=LOOPBACK)
    leg = engine.create_rtp_leg()
    engine.close()
    with pytest.raises(RuntimeError, match="the media engine is closed"):
        leg.stats()
    with pytest.raises(RuntimeError, match="the media engine is closed"):
        engine.create_rtp_leg()
