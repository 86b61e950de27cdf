"""RFC 4733 telephone-event: payload format, sender sequence and a receiver
that reports each digit once."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import core
from tests.core.tools import run_tool

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="telephone-event is in the compiled core only"
)

DIGITS = "0123456789*#ABCD"


def test_payload_layout_matches_rfc_4733() -> None:
    # Event 5, end bit, volume 10, duration 800 (RFC 4733 figure 1 layout).
    payload = core.TelephoneEvent(5, end=True, volume=10, duration=800).encode()
    assert payload == bytes([5, 0x80 | 10, 800 >> 8, 800 & 0xFF])
    assert core.TelephoneEvent.decode(payload) == core.TelephoneEvent(5, True, 10, 800)


def test_reserved_bit_is_ignored_when_decoding() -> None:
    assert core.TelephoneEvent.decode(bytes([11, 0x40 | 7, 0, 160])) == core.TelephoneEvent(
        11, False, 7, 160
    )


def test_short_payload_is_refused() -> None:
    with pytest.raises(core.CodecError, match="at least 4 octets: got 3"):
        core.TelephoneEvent.decode(b"\x01\x02\x03")


def test_out_of_range_field_is_refused() -> None:
    with pytest.raises(core.CodecError, match="volume 0-63"):
        core.TelephoneEvent(1, volume=64).encode()


def test_digits_map_to_rfc_4733_event_codes() -> None:
    assert [core.dtmf_event(d) for d in DIGITS] == list(range(16))
    assert "".join(core.dtmf_digit(e) for e in range(16)) == DIGITS
    assert core.dtmf_event("a") == 12
    with pytest.raises(core.CodecError, match="not a DTMF digit: 'x'"):
        core.dtmf_event("x")


def packets(sender: core.TelephoneEventSender) -> list[core.TelephoneEventPacket]:
    out = []
    while (packet := sender.next()) is not None:
        out.append(packet)
    return out


def test_sender_marks_the_first_packet_grows_the_duration_and_repeats_the_end() -> None:
    sender = core.TelephoneEventSender(clock_rate=8000, packet_ms=20)
    sender.start("7", timestamp=1000, duration_ms=100, volume=10)
    sent = packets(sender)
    events = [core.TelephoneEvent.decode(p.payload) for p in sent]
    assert [p.marker for p in sent] == [True] + [False] * 6
    assert {p.timestamp for p in sent} == {1000}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {7}
    assert not sender.busy


def test_sender_caps_the_last_update_at_the_duration() -> None:
    sender = core.TelephoneEventSender(8000, 20)
    sender.start("1", timestamp=0, duration_ms=50)
    durations = [core.TelephoneEvent.decode(p.payload).duration for p in packets(sender)]
    assert durations == [160, 320, 400, 400, 400]


def test_sender_counts_duration_in_the_48khz_clock_of_opus_streams() -> None:
    sender = core.TelephoneEventSender(48000, 20)
    sender.start("#", timestamp=5, duration_ms=40)
    durations = [core.TelephoneEvent.decode(p.payload).duration for p in packets(sender)]
    assert durations == [960, 1920, 1920, 1920]


def test_sender_sends_non_dtmf_events_by_code() -> None:
    sender = core.TelephoneEventSender(8000, 20)
    sender.start(16, timestamp=0, duration_ms=20)  # flash
    assert {core.TelephoneEvent.decode(p.payload).event for p in packets(sender)} == {16}
    with pytest.raises(core.CodecError, match="code must be 0-255: got 256"):
        sender.start(256, timestamp=160)


def test_sender_refuses_a_second_event_while_busy_and_a_too_long_event() -> None:
    sender = core.TelephoneEventSender(8000, 20)
    sender.start("1", timestamp=0)
    with pytest.raises(core.CodecError, match="still sending"):
        sender.start("2", timestamp=800)
    with pytest.raises(core.CodecError, match="duration must be from 1 ms to 8191 ms"):
        core.TelephoneEventSender(8000, 20).start("1", timestamp=0, duration_ms=9000)


def test_all_sixteen_digits_go_from_sender_to_receiver_once_each() -> None:
    sender = core.TelephoneEventSender(8000, 20)
    receiver = core.TelephoneEventReceiver()
    received = []
    timestamp = 0xFFFF_F000  # the RTP timestamp wraps during the sequence
    for digit in DIGITS:
        sender.start(digit, timestamp=timestamp % 2**32, duration_ms=80)
        for packet in packets(sender):
            # Every packet arrives twice, as after a retransmitting middlebox.
            for _ in range(2):
                event = receiver.receive(packet.timestamp, packet.payload)
                if event is not None:
                    received.append(event)
        timestamp += 8000 // 5  # the next digit starts 200 ms later
    assert "".join(e.digit or "?" for e in received) == DIGITS
    assert all(e.volume == 10 for e in received)


def test_receiver_reports_an_event_whose_start_packet_was_lost() -> None:
    receiver = core.TelephoneEventReceiver()
    update = core.TelephoneEvent(3, duration=320).encode()
    assert receiver.receive(4000, update) == core.ReceivedEvent(3, "3", 4000, 10)


def test_receiver_drops_late_packets_of_an_older_event() -> None:
    receiver = core.TelephoneEventReceiver()
    assert receiver.receive(8000, core.TelephoneEvent(1).encode()) is not None
    assert receiver.receive(9600, core.TelephoneEvent(2).encode()) is not None
    late_end = core.TelephoneEvent(1, end=True, duration=800).encode()
    assert receiver.receive(8000, late_end) is None


def test_receiver_tells_the_same_digit_twice_apart_by_timestamp() -> None:
    receiver = core.TelephoneEventReceiver()
    first = receiver.receive(100, core.TelephoneEvent(9, end=True, duration=800).encode())
    second = receiver.receive(2000, core.TelephoneEvent(9).encode())
    assert first is not None
    assert second is not None
    assert (first.digit, second.digit) == ("9", "9")


def test_receiver_reports_non_dtmf_events_without_a_digit() -> None:
    # Event 32 is a V.21 answer tone in the RFC 4734 registry.
    assert core.TelephoneEventReceiver().receive(0, core.TelephoneEvent(32).encode()) == (
        core.ReceivedEvent(32, None, 0, 10)
    )


def pcap_of_rtp(packets: list[bytes]) -> bytes:
    """A libpcap file (raw IPv4 link type) of UDP datagrams to port 40000."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for i, payload in enumerate(packets):
        udp_length = 8 + len(payload)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_length, i, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1"
        )
        datagram = ip + struct.pack("!HHHH", 40000, 40000, udp_length, 0) + payload
        out += struct.pack("<IIII", i, 0, len(datagram), len(datagram)) + datagram
    return out


def test_wireshark_reads_the_sent_packets_as_rfc_4733_events(tmp_path: Path) -> None:
    sender = core.TelephoneEventSender(8000, 20)
    sender.start("#", timestamp=1234, duration_ms=60, volume=13)
    rtp = [
        struct.pack("!BBHII", 0x80, (0x80 if p.marker else 0) | 101, seq, p.timestamp, 0x1234)
        + p.payload
        for seq, p in enumerate(packets(sender))
    ]
    capture = tmp_path / "events.pcap"
    capture.write_bytes(pcap_of_rtp(rtp))
    fields = ["rtp.marker", "rtp.timestamp", "rtpevent.event_id", "rtpevent.end_of_event"]
    fields += ["rtpevent.volume", "rtpevent.duration"]
    # Wireshark's RTP event dissector takes payload type 101 by default.
    output = run_tool(
        ["tshark", "-r", str(capture), "-d", "udp.port==40000,rtp", "-T", "fields"]
        + [arg for field in fields for arg in ("-e", field)]
    )
    rows = [line.split("\t") for line in output.splitlines()]
    assert rows == [
        ["1", "1234", "11", "0", "13", "160"],
        ["0", "1234", "11", "0", "13", "320"],
        ["0", "1234", "11", "1", "13", "480"],
        ["0", "1234", "11", "1", "13", "480"],
        ["0", "1234", "11", "1", "13", "480"],
    ]
