"""The engine carrying decoded audio, with real RTP on loopback: transcoding
bridges, DTMF on legs, playback, conferences, recording taps and jitter
buffer statistics.

Far ends encode real tones with ``core.Encoder`` and send them paced at 20 ms;
what arrives is decoded with ``core.Decoder`` and measured (Goertzel at the
expected frequency, against the signal's whole energy). Waits have generous
upper bounds; nothing asserts how fast anything happens.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import core
from core import Engine, RtpLeg
from tests.core.engine_peers import LOOPBACK, PATIENCE, Peer, connected_leg, eventually, next_event
from tests.core.signals import amplitude, dbm0, goertzel_peak, rms, tone_pcm
from tests.core.tools import run_tool

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the Python twin has no media engine"
)

PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "G729": 18, "opus": 111}
TONE_LEVEL = -10.0  # dBm0
TALK_FRAMES = 60  # 1.2 s of audio per side
SETTLE_S = 0.4  # what arrives first (buffering, filter delays) is not measured
MEASURE_S = 0.5
# A far end listens this long after its last packet: the engine's jitter buffer
# may still hold audio, more of it on a busy machine.
LISTEN_AFTER_S = 1.0


@pytest.fixture
def engine() -> Iterator[Engine]:
    """One worker, so every leg can be bridged and recorded with every other."""
    with Engine(workers=1, port_min=30000, port_max=30999, host=LOOPBACK) as e:
        yield e


class Talker:
    """A far end that sends a tone in ``codec`` as paced RTP and keeps what it receives."""

    def __init__(
        self, peer: Peer, port: int, codec: str, frequency: float, frame_ms: int = 20
    ) -> None:
        self.peer = peer
        self.port = port
        self.codec = codec
        self.frequency = frequency
        self.encoder = core.Encoder(codec, frame_ms=frame_ms)
        self.frame_ms = frame_ms
        self.received: list[core.RtpPacket] = []
        self.lost: set[int] = set()
        """Frames never sent."""
        self.late: set[int] = set()
        """Frames sent one packet interval late, after the next one."""
        self.silent = False
        """Only listens."""
        self.other_frequency: dict[int, float] = {}
        """Frames that carry another tone."""

    def encoded(self, frames: int = TALK_FRAMES) -> list[bytes | None]:
        """Frame n's payload at [n] (None: not sent), encoded ahead of the paced sending.

        A real phone's encoder keeps pace; a test's, sharing a starved CPU
        (sanitizers, a loaded machine) and the GIL with the other far ends,
        need not, and a far end that sends late is heard as concealment.
        """
        info = self.encoder
        payloads: list[bytes | None] = []
        for n in range(frames):
            if self.silent:
                payloads.append(None)
                continue
            pcm = tone_pcm(
                self.other_frequency.get(n, self.frequency), TONE_LEVEL,
                info.sample_rate, info.frame_samples, start=n * info.frame_samples,
            )  # fmt: skip
            # A lost frame is encoded all the same: the next one's FEC (Opus) carries it.
            payload = self.encoder.encode(pcm)
            payloads.append(None if n in self.lost else payload)
        return payloads

    def run(self, payloads: list[bytes | None], start: float | None = None) -> None:
        """Send ``payloads`` (from ``encoded()``) paced at the packet interval, receiving between.

        The grid starts at ``start`` (``time.monotonic()``; now by default):
        far ends given the same start send their frame n side by side. It
        listens for LISTEN_AFTER_S more, for what the engine still buffers.
        """
        interval = self.frame_ms / 1000
        step = self.encoder.rtp_clock_rate * self.frame_ms // 1000
        held: list[tuple[int, bytes]] = []
        start = time.monotonic() if start is None else start
        self.receive_until(start)
        for n in range(len(payloads) + 1):
            ready, held = held, []
            payload = payloads[n] if n < len(payloads) else None
            if payload is not None:
                if n in self.late:
                    held.append((n, payload))
                else:
                    ready.insert(0, (n, payload))
            for seq, data in ready:
                self.peer.send_rtp(
                    self.port, PAYLOAD_TYPES[self.codec], seq, seq * step, data, marker=seq == 0
                )
            self.receive_until(start + (n + 1) * interval)
        self.receive_until(time.monotonic() + LISTEN_AFTER_S)
        self.peer.sock.settimeout(PATIENCE)

    def skip_arrived(self) -> None:
        """Drop what has arrived and not been read yet."""
        self.peer.sock.setblocking(False)
        try:
            while True:
                self.peer.sock.recvfrom(4096)
        except BlockingIOError:
            pass
        finally:
            self.peer.sock.settimeout(PATIENCE)

    def receive_until(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            self.peer.sock.settimeout(max(left, 0.001))
            try:
                data, _ = self.peer.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.received.append(core.parse_rtp(data))


def decoded(packets: list[core.RtpPacket], codec: str, payload_type: int) -> tuple[bytes, int]:
    """The audio of the ``payload_type`` packets, decoded, and its sample rate."""
    decoder = core.Decoder(codec)
    audio = b"".join(decoder.decode(p.payload) for p in packets if p.payload_type == payload_type)
    return audio, decoder.sample_rate


def assert_tone(audio: bytes, rate: int, frequency: float, level_tolerance_db: float) -> None:
    """``audio`` holds ``frequency`` at TONE_LEVEL and almost nothing else."""
    window = audio[int(SETTLE_S * rate) * 2 : int((SETTLE_S + MEASURE_S) * rate) * 2]
    assert len(window) == int(MEASURE_S * rate) * 2, "too little audio arrived"
    peak = goertzel_peak(window, rate, frequency)
    # A pure sine's peak is sqrt(2) times its RMS: most energy must sit at the frequency.
    purity = peak / (math.sqrt(2) * max(rms(window), 1e-9))
    assert purity > 0.8, f"only {purity:.2f} of the signal is at {frequency} Hz"
    assert abs(dbm0(peak) - TONE_LEVEL) < level_tolerance_db, f"level {dbm0(peak):.1f} dBm0"


def level_at(audio: bytes, rate: int, frequency: float) -> float:
    """The level (dBm0) of ``frequency`` in the measured window of ``audio``."""
    window = audio[int(SETTLE_S * rate) * 2 : int((SETTLE_S + MEASURE_S) * rate) * 2]
    assert len(window) == int(MEASURE_S * rate) * 2, "too little audio arrived"
    return dbm0(goertzel_peak(window, rate, frequency))


class Call:
    """Two far ends, each with its leg, the legs bridged; a sends 1000 Hz, b 600 Hz."""

    def __init__(
        self, engine: Engine, peers: Callable[[], Peer], codec_a: str, codec_b: str
    ) -> None:
        peer_a, peer_b = peers(), peers()
        self.leg_a = connected_leg(
            engine, peer_a, codec=codec_a, payload_type=PAYLOAD_TYPES[codec_a]
        )
        self.leg_b = connected_leg(
            engine, peer_b, codec=codec_b, payload_type=PAYLOAD_TYPES[codec_b]
        )
        engine.bridge(self.leg_a, self.leg_b)
        self.a = Talker(peer_a, self.leg_a.local_port, codec_a, 1000)
        self.b = Talker(peer_b, self.leg_b.local_port, codec_b, 600)

    def talk(self) -> None:
        """Both far ends send their tone at the same time."""
        talk_together([self.a, self.b])


def talk_together(talkers: list[Talker]) -> None:
    """Every far end sends its tone (if any) and listens, on one shared 20 ms grid."""
    payloads = [t.encoded() for t in talkers]
    for talker in talkers:
        talker.skip_arrived()  # while encoding: the talk starts now, as if encoding took no time
    start = time.monotonic() + 0.1  # once every thread is running
    threads = [
        threading.Thread(target=t.run, args=(p,), kwargs={"start": start})
        for t, p in zip(talkers, payloads, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE * 3)


# G.729 is a speech coder: a pure tone comes out within a few dB.
LEVEL_TOLERANCE = {"PCMU": 1.0, "PCMA": 1.0, "G722": 1.5, "G729": 4.0, "opus": 2.0}


@pytest.mark.parametrize(
    ("codec_a", "codec_b"),
    [("PCMU", "PCMA"), ("PCMA", "G722"), ("PCMA", "G729"), ("PCMA", "opus"), ("G722", "opus")],
)
def test_a_transcoding_bridge_carries_each_sides_tone_at_its_frequency_and_level(
    engine: Engine, peers: Callable[[], Peer], codec_a: str, codec_b: str
) -> None:
    c = Call(engine, peers, codec_a, codec_b)
    c.talk()
    a, b = c.a, c.b
    tolerance = max(LEVEL_TOLERANCE[codec_a], LEVEL_TOLERANCE[codec_b])
    heard_by_b, rate_b = decoded(b.received, codec_b, PAYLOAD_TYPES[codec_b])
    assert_tone(heard_by_b, rate_b, a.frequency, tolerance)
    heard_by_a, rate_a = decoded(a.received, codec_a, PAYLOAD_TYPES[codec_a])
    assert_tone(heard_by_a, rate_a, b.frequency, tolerance)


def test_a_transcoder_conceals_lost_packets_and_reorders_late_ones(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    c = Call(engine, peers, "PCMA", "opus")
    c.a.lost = {12, 27, 41}
    c.a.late = {18, 33}
    c.talk()
    heard_by_b, rate = decoded(c.b.received, "opus", PAYLOAD_TYPES["opus"])
    assert_tone(heard_by_b, rate, c.a.frequency, LEVEL_TOLERANCE["PCMA"])
    stats = c.leg_a.stats()
    assert stats.reordered == 2
    assert stats.jitter_buffer is not None
    assert stats.jitter_buffer.lost == 3
    assert stats.jitter_buffer.expanded >= 3  # each lost frame concealed


def loudest_20ms(audio: bytes, rate: int, frequency: float) -> float:
    """The highest level (dBm0) of ``frequency`` in any 20 ms of ``audio`` (5 ms steps)."""
    window, step = rate // 50 * 2, rate // 200 * 2
    return max(
        dbm0(goertzel_peak(audio[start : start + window], rate, frequency))
        for start in range(0, len(audio) - window, step)
    )


@pytest.mark.parametrize(("fmtp", "rebuilt"), [("useinbandfec=1", True), ("", False)])
def test_a_lost_opus_packet_is_rebuilt_from_the_next_ones_fec(
    engine: Engine, peers: Callable[[], Peer], fmtp: str, rebuilt: bool
) -> None:
    c = Call(engine, peers, "opus", "PCMA")
    c.a.encoder = core.Encoder("opus", fmtp)
    # Late packets make the buffer hold two frames or more, so the next one is
    # at hand when a frame is missing; the lost frames alone carry 900 Hz.
    c.a.lost = {31, 41, 50}
    c.a.late = set(range(3, 60, 3)) - {42, 51}  # each lost frame's successor comes in time
    c.a.other_frequency = dict.fromkeys(c.a.lost, 900.0)
    c.talk()
    heard_by_b, rate = decoded(c.b.received, "PCMA", PAYLOAD_TYPES["PCMA"])
    # Concealment alone continues the 1 kHz around the gap; only FEC knows of 900 Hz.
    assert (loudest_20ms(heard_by_b, rate, 900.0) > TONE_LEVEL - 6) is rebuilt


def test_a_far_end_with_30_ms_packets_is_reframed_to_20_ms(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    c = Call(engine, peers, "PCMU", "G722")
    c.a = Talker(c.a.peer, c.a.port, "PCMU", 1000, frame_ms=30)
    c.talk()
    heard_by_b, rate = decoded(c.b.received, "G722", PAYLOAD_TYPES["G722"])
    assert_tone(heard_by_b, rate, c.a.frequency, LEVEL_TOLERANCE["G722"])
    assert {len(p.payload) for p in c.b.received} == {160}  # 20 ms of G.722


@pytest.mark.parametrize("codec", ["PCMA", "G722", "G729", "opus"])
def test_random_payloads_never_upset_a_decoding_leg(
    engine: Engine, peers: Callable[[], Peer], codec: str
) -> None:
    c = Call(engine, peers, codec, "PCMU")
    rng = random.Random(4733)
    for n in range(200):
        # Numbered far from the tone that follows, which the buffer then takes as a new start.
        junk = rng.randbytes(rng.randrange(0, 400))
        c.a.peer.send_rtp(c.a.port, PAYLOAD_TYPES[codec], 40000 + n, 50_000_000 + n * 160, junk)
        if n % 20 == 19:
            time.sleep(0.02)  # in small batches, so the socket buffer never overflows
    eventually(lambda: c.leg_a.stats().packets_received == 200, "the junk received")
    collect(c.b.peer, at_most=0.3)  # whatever the junk decoded to
    c.talk()
    heard_by_b, rate = decoded(c.b.received, "PCMU", PAYLOAD_TYPES["PCMU"])
    assert_tone(heard_by_b, rate, c.a.frequency, LEVEL_TOLERANCE[codec])


def test_a_transcoded_stream_is_one_continuous_stream_of_the_legs_own(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    c = Call(engine, peers, "PCMA", "opus")
    c.talk()
    packets = [p for p in c.b.received if p.payload_type == PAYLOAD_TYPES["opus"]]
    assert len({p.ssrc for p in packets}) == 1
    assert packets[0].marker
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        assert after.timestamp == (before.timestamp + 960) & 0xFFFFFFFF  # 20 ms at 48 kHz


# RFC 6716 3.1: the TOC byte's configuration number (its top five bits) gives the
# audio bandwidth of an Opus packet.
OPUS_BANDWIDTHS = (
    ["narrowband"] * 4 + ["mediumband"] * 4 + ["wideband"] * 4 + ["superwideband"] * 2
    + ["fullband"] * 2 + ["narrowband"] * 4 + ["wideband"] * 4 + ["superwideband"] * 4
    + ["fullband"] * 4
)  # fmt: skip


@pytest.mark.parametrize(
    ("codec_a", "fmtp_b", "bandwidth"),
    [
        ("PCMA", "", "narrowband"),
        ("PCMA", "useinbandfec=1", "narrowband"),
        ("G722", "", "wideband"),
        ("G722", "maxplaybackrate=8000", "narrowband"),
    ],
)
def test_an_opus_leg_codes_no_wider_band_than_the_audio_it_carries(
    engine: Engine, peers: Callable[[], Peer], codec_a: str, fmtp_b: str, bandwidth: str
) -> None:
    # A G.711 caller's voice holds nothing above 4 kHz, G.722's above 8 kHz: coding more
    # costs the box CPU and the network bits for nothing. The peer's maxplaybackrate
    # (RFC 7587) still caps it.
    peer_a, peer_b = peers(), peers()
    leg_a = connected_leg(engine, peer_a, codec=codec_a, payload_type=PAYLOAD_TYPES[codec_a])
    leg_b = connected_leg(
        engine, peer_b, codec="opus", payload_type=PAYLOAD_TYPES["opus"], fmtp=fmtp_b
    )
    engine.bridge(leg_a, leg_b)
    a = Talker(peer_a, leg_a.local_port, codec_a, 1000)
    b = Talker(peer_b, leg_b.local_port, "opus", 600)
    b.silent = True
    talk_together([a, b])
    packets = [p for p in b.received if p.payload_type == PAYLOAD_TYPES["opus"]]
    assert packets
    assert {OPUS_BANDWIDTHS[p.payload[0] >> 3] for p in packets} == {bandwidth}
    heard_by_b, rate = decoded(b.received, "opus", PAYLOAD_TYPES["opus"])
    assert_tone(heard_by_b, rate, a.frequency, LEVEL_TOLERANCE["opus"])


def test_a_same_codec_bridge_relays_without_a_jitter_buffer(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    c = Call(engine, peers, "PCMA", "PCMA")
    c.talk()
    heard_by_b, rate = decoded(c.b.received, "PCMA", 8)
    assert_tone(heard_by_b, rate, c.a.frequency, LEVEL_TOLERANCE["PCMA"])
    assert c.leg_a.stats().jitter_buffer is None  # relayed as it came: nothing buffered or decoded


def test_a_transcoding_legs_stats_carry_its_jitter_buffer(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    c = Call(engine, peers, "PCMU", "G722")
    c.talk()
    stats = c.leg_a.stats()
    assert stats.jitter_buffer is not None
    assert stats.jitter_buffer.received == TALK_FRAMES
    assert stats.jitter_buffer.played > 0
    assert stats.jitter_buffer.target_delay_ms >= 20
    assert stats.mos > 4.0  # loopback: no loss, little delay


def test_stats_events_arrive_at_the_interval_asked_for(engine: Engine) -> None:
    leg = engine.create_rtp_leg(stats_interval=0.1)
    first = next_event(engine, "stats")
    assert first.leg == leg.id
    assert first.stats is not None
    assert first.stats.local_ssrc == leg.stats().local_ssrc
    next_event(engine, "stats")


# --- DTMF ---


def telephone_event(digit: str, end: bool, duration: int) -> bytes:
    return core.TelephoneEvent(core.dtmf_event(digit), end, 10, duration).encode()


def send_digit(peer: Peer, leg: RtpLeg, digit: str, ts: int, seq: int) -> int:
    """One RFC 4733 digit of 100 ms as payload type 101: start, updates, the end three times."""
    for n, duration in enumerate((160, 320, 480, 640, 800)):
        event = telephone_event(digit, False, duration)
        peer.send_rtp(leg.local_port, 101, seq, ts, event, marker=n == 0)
        seq += 1
    for _ in range(3):
        peer.send_rtp(leg.local_port, 101, seq, ts, telephone_event(digit, True, 800))
        seq += 1
    return seq


def dtmf_events(engine: Engine, count: int) -> list[core.MediaEvent]:
    found: list[core.MediaEvent] = []

    def arrived() -> bool:
        found.extend(e for e in engine.poll_events() if e.kind == "dtmf")
        return len(found) >= count

    eventually(arrived, f"{count} dtmf events")
    time.sleep(0.1)  # a duplicate would come now
    found.extend(e for e in engine.poll_events() if e.kind == "dtmf")
    return found


def test_rfc4733_digits_are_reported_once_each_with_their_duration(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, telephone_event=101)
    seq = send_digit(peer, leg, "5", 1000, 1)
    seq = send_digit(peer, leg, "#", 3000, seq)
    send_digit(peer, leg, "#", 3000, seq)  # the whole digit retransmitted: not a new one
    events = dtmf_events(engine, 2)
    assert [(e.detail, e.reason, e.duration_ms) for e in events] == [
        ("5", "rfc4733", 100),
        ("#", "rfc4733", 100),
    ]


def rfc4733_packets(packets: list[core.RtpPacket], payload_type: int) -> list[core.TelephoneEvent]:
    return [
        core.TelephoneEvent.decode(p.payload) for p in packets if p.payload_type == payload_type
    ]


def test_send_dtmf_sends_rfc4733_with_three_end_packets(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, telephone_event=101)
    leg.send_dtmf("19", duration_ms=100)
    packets = [peer.receive_rtp() for _ in range(2 * (4 + 3))]
    assert {p.payload_type for p in packets} == {101}
    events = rfc4733_packets(packets, 101)
    assert [e.event for e in events] == [1] * 7 + [9] * 7
    # Updates every 20 ms, then the end (with the full 100 ms) three times.
    assert [(e.end, e.duration) for e in events[:7]] == [
        (False, 160), (False, 320), (False, 480), (False, 640),
        (True, 800), (True, 800), (True, 800),
    ]  # fmt: skip
    first, second = packets[:7], packets[7:]
    assert first[0].marker
    assert second[0].marker
    assert len({p.timestamp for p in first}) == 1
    assert len({p.timestamp for p in second}) == 1
    assert second[0].timestamp > first[0].timestamp


def inband_digits(audio: bytes) -> str:
    detector = core.DtmfDetector()
    return "".join(detector.process(audio[i : i + 320]) for i in range(0, len(audio), 320))


def collect(peer: Peer, quiet: float = 0.5, at_most: float = PATIENCE) -> list[core.RtpPacket]:
    """The RTP packets ``peer`` receives until none has come for ``quiet`` seconds.

    The first may take up to PATIENCE; a busy machine only makes this wait
    longer. It stops after ``at_most`` seconds in any case.
    """
    packets = []
    deadline = time.monotonic() + at_most
    peer.sock.settimeout(PATIENCE)
    while (left := deadline - time.monotonic()) > 0:
        try:
            data, _ = peer.sock.recvfrom(4096)
        except TimeoutError:
            break
        packets.append(core.parse_rtp(data))
        peer.sock.settimeout(min(quiet, max(left, 0.001)))
    peer.sock.settimeout(PATIENCE)
    return packets


def test_send_dtmf_without_telephone_event_sends_inband_tones(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, codec="PCMA")
    leg.send_dtmf("7*", duration_ms=80)
    audio, _ = decoded(collect(peer), "PCMA", 8)
    assert inband_digits(audio) == "7*"


def test_a_bridge_forwards_rfc4733_under_the_other_legs_payload_type(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    caller, agent = peers(), peers()
    a = connected_leg(engine, caller, telephone_event=101)
    b = connected_leg(engine, agent, telephone_event=96)
    engine.bridge(a, b)
    send_digit(caller, a, "3", 5000, 1)
    packets = [agent.receive_rtp() for _ in range(8)]
    assert {p.payload_type for p in packets} == {96}
    assert [e.event for e in rfc4733_packets(packets, 96)] == [3] * 8


@pytest.mark.parametrize("codec_b", ["PCMU", "G722"])
def test_a_bridge_plays_rfc4733_as_tones_to_a_leg_without_telephone_event(
    engine: Engine, peers: Callable[[], Peer], codec_b: str
) -> None:
    caller, agent = peers(), peers()
    a = connected_leg(engine, caller, telephone_event=101)
    b = connected_leg(engine, agent, codec=codec_b, payload_type=PAYLOAD_TYPES[codec_b])
    engine.bridge(a, b)
    send_digit(caller, a, "8", 5000, 1)
    audio, rate = decoded(collect(agent), codec_b, PAYLOAD_TYPES[codec_b])
    if rate != 8000:
        audio = core.Resampler(rate, 8000).process(audio)
    assert inband_digits(audio) == "8"


def send_inband(peer: Peer, leg: RtpLeg, digits: str, first: int) -> int:
    """Send ``digits`` as PCMU tones (100 ms on, 100 ms off), paced at 20 ms a frame
    from sequence number ``first``; the next sequence number."""
    generator = core.DtmfGenerator(level_dbm0=-10, on_ms=100, off_ms=100)
    generator.queue(digits)
    encoder = core.Encoder("PCMU")
    start = time.monotonic()
    frames = 10 * len(digits) + 20
    for k in range(frames):
        n = first + k
        peer.send_rtp(leg.local_port, 0, n, n * 160, encoder.encode(generator.generate(160)))
        time.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))
    return first + frames


def test_inband_detection_reports_digits_heard_in_the_audio(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, inband_dtmf=True)
    send_inband(peer, leg, "42", 0)
    events = dtmf_events(engine, 2)
    assert [(e.detail, e.reason, e.duration_ms) for e in events] == [
        ("4", "inband", None),
        ("2", "inband", None),
    ]


def test_inband_detection_stopped_reports_no_digit_until_started_again(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, inband_dtmf=True)
    seq = send_inband(peer, leg, "4", 0)
    assert [e.detail for e in dtmf_events(engine, 1)] == ["4"]
    leg.detect_inband_dtmf(False)
    seq = send_inband(peer, leg, "2", seq)  # heard by nobody: no event
    leg.detect_inband_dtmf(True)
    send_inband(peer, leg, "7", seq)
    assert [(e.detail, e.reason) for e in dtmf_events(engine, 1)] == [("7", "inband")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digits": ""}, "digits must be a non-empty string"),
        ({"digits": "12x"}, "digits must be a non-empty string of 0-9"),
        ({"digits": "1", "duration_ms": 5}, "duration_ms must be 40..1000: got 5"),
    ],
)
def test_bad_dtmf_arguments_are_refused_by_name(
    engine: Engine, kwargs: dict[str, object], message: str
) -> None:
    leg = engine.create_rtp_leg()
    with pytest.raises(ValueError, match=message):
        leg.send_dtmf(**kwargs)  # type: ignore[arg-type]


# --- Playback ---


def test_a_tone_plays_into_a_leg_and_its_end_is_reported(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, codec="G722", payload_type=9)
    leg.play_tone("dial", duration=1.0)  # China: 450 Hz at -10 dBm0, continuous
    audio, rate = decoded(collect(peer), "G722", 9)
    finished = next_event(engine, "playback_finished")
    assert (finished.leg, finished.reason, finished.detail) == (leg.id, "finished", "")
    peak = goertzel_peak(audio[: rate * 2 // 2], rate, 450)
    assert abs(dbm0(peak) - TONE_LEVEL) < 1.5
    assert 0.9 * rate * 2 <= len(audio) <= 1.1 * rate * 2  # one second of it


def test_a_digit_barges_in_on_a_tone(engine: Engine, peers: Callable[[], Peer]) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, telephone_event=101)
    leg.play_tone("ringback")
    peer.receive_rtp()  # it plays
    send_digit(peer, leg, "6", 1000, 1)
    finished = next_event(engine, "playback_finished")
    assert (finished.reason, finished.detail) == ("digit", "6")


def test_a_tone_replaces_the_bridged_audio_while_it_plays(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    c = Call(engine, peers, "PCMU", "PCMU")
    c.leg_b.play_tone("dial", duration=5.0)
    c.talk()
    heard_by_b, rate = decoded(c.b.received, "PCMU", 0)
    assert_tone(heard_by_b, rate, 450, 1.0)  # the tone, not a's 1000 Hz
    c.leg_b.stop_playback()
    assert next_event(engine, "playback_finished").reason == "stopped"


def test_an_unknown_tone_is_refused_by_name(engine: Engine) -> None:
    leg = engine.create_rtp_leg()
    with pytest.raises(ValueError, match="hum"):
        leg.play_tone("hum")


def prompt_wav(path: Path, frequency: float, seconds: float, rate: int = 16000) -> core.Prompt:
    """A prompt file of ``frequency`` at TONE_LEVEL, written now as 16-bit mono PCM."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone_pcm(frequency, TONE_LEVEL, rate, round(seconds * rate)))
    return core.Prompt.load(path)


def frame_labels(audio: bytes, rate: int, frequencies: list[float]) -> list[str]:
    """Per 20 ms frame: the strongest of ``frequencies`` (as text), or ``quiet``."""
    size = rate // 50 * 2
    labels = []
    for start in range(0, len(audio) - size + 1, size):
        frame = audio[start : start + size]
        if dbm0(math.sqrt(2) * rms(frame)) < TONE_LEVEL - 30:
            labels.append("quiet")
        else:
            labels.append(str(max(frequencies, key=lambda f: goertzel_peak(frame, rate, f))))
    return labels


def runs(labels: list[str], at_least: int = 3) -> list[tuple[str, int]]:
    """Consecutive equal labels as (label, count), leaving out runs shorter than
    ``at_least`` (a frame that straddles two sounds)."""
    grouped = [(label, len(list(group))) for label, group in itertools.groupby(labels)]
    return [(label, count) for label, count in grouped if count >= at_least]


@pytest.mark.parametrize(("codec", "rate"), [("PCMA", 8000), ("G722", 16000), ("opus", 48000)])
def test_a_wav_prompt_arrives_at_its_frequency_level_and_length(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path, codec: str, rate: int
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, codec=codec, payload_type=PAYLOAD_TYPES[codec])
    assert leg.sample_rate == rate  # what the player plays at
    leg.play([prompt_wav(tmp_path / "welcome.wav", 1000, 1.0)])
    audio, decoded_rate = decoded(collect(peer), codec, PAYLOAD_TYPES[codec])
    finished = next_event(engine, "playback_finished")
    assert (finished.leg, finished.reason, finished.detail) == (leg.id, "finished", "")
    assert_tone(audio, decoded_rate, 1000, LEVEL_TOLERANCE[codec])
    assert 0.96 <= len(audio) / 2 / decoded_rate <= 1.04  # one second of it


def test_a_playlist_plays_its_prompts_and_silences_in_order(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, codec="PCMA", payload_type=8)
    first = prompt_wav(tmp_path / "first.wav", 600, 0.4, rate=8000)
    second = prompt_wav(tmp_path / "second.wav", 1400, 0.4)
    leg.play([first, core.Silence(400), second])
    audio, rate = decoded(collect(peer), "PCMA", 8)
    assert next_event(engine, "playback_finished").reason == "finished"
    labels = frame_labels(audio, rate, [600, 1400])
    assert runs(labels) == [("600", 20), ("quiet", 20), ("1400", 20)]


def test_a_digit_in_the_barge_in_set_ends_a_prompt_and_others_do_not(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    peer = peers()
    leg = connected_leg(engine, peer, codec="PCMA", payload_type=8, telephone_event=101)
    leg.play([prompt_wav(tmp_path / "menu.wav", 1000, 0.5)], loop=True, barge_in="5#")
    peer.receive_rtp()  # it plays
    seq = send_digit(peer, leg, "3", 1000, 1)
    assert dtmf_events(engine, 1)[0].detail == "3"
    send_digit(peer, leg, "5", 3000, seq)
    finished = next_event(engine, "playback_finished")
    assert (finished.leg, finished.reason, finished.detail) == (leg.id, "digit", "5")


def music_on_hold(engine: Engine, peer: Peer, folder: Path) -> RtpLeg:
    """A PCMA leg to ``peer`` looping a 0.2 s prompt of 1000 Hz."""
    leg = connected_leg(engine, peer, codec="PCMA", payload_type=8)
    leg.play([prompt_wav(folder / "hold.wav", 1000, 0.2)], loop=True)
    return leg


def test_music_on_hold_loops_until_stopped(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    peer = peers()
    leg = music_on_hold(engine, peer, tmp_path)
    packets = [peer.receive_rtp() for _ in range(50)]  # five times the prompt's length
    assert not [e for e in engine.poll_events() if e.kind == "playback_finished"]
    audio, rate = decoded(packets, "PCMA", 8)
    assert_tone(audio, rate, 1000, LEVEL_TOLERANCE["PCMA"])  # no seam where it starts over
    leg.stop_playback()
    finished = next_event(engine, "playback_finished")
    assert (finished.reason, finished.detail) == ("stopped", "")
    collect(peer)  # what was on its way, until 0.5 s pass without a packet
    peer.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        peer.receive_rtp()  # nothing plays any more


def test_a_new_playback_replaces_the_one_playing(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    peer = peers()
    leg = music_on_hold(engine, peer, tmp_path)
    peer.receive_rtp()  # it plays
    leg.play_tone("dial", duration=0.2)
    replaced = next_event(engine, "playback_finished")
    assert (replaced.reason, replaced.detail) == ("stopped", "replaced")
    assert next_event(engine, "playback_finished").reason == "finished"


@pytest.mark.parametrize(("codec_a", "codec_b"), [("PCMU", "PCMU"), ("PCMA", "G722")])
def test_a_prompt_replaces_the_bridged_audio_and_the_bridge_resumes_after(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path, codec_a: str, codec_b: str
) -> None:
    c = Call(engine, peers, codec_a, codec_b)
    c.leg_b.play([prompt_wav(tmp_path / "announce.wav", 1400, 0.4)])
    c.b.silent = True
    c.talk()  # a talks for 1.2 s, on after the prompt
    heard_by_b, rate = decoded(c.b.received, codec_b, PAYLOAD_TYPES[codec_b])
    assert next_event(engine, "playback_finished").reason == "finished"
    # A transcoder goes on sending its own stream (quiet) once a stops talking.
    sounds = [label for label, _ in runs(frame_labels(heard_by_b, rate, [1000, 1400]))]
    assert [label for label in sounds if label != "quiet"] == ["1400", "1000"]


def test_a_playlist_of_other_things_is_refused_by_name(engine: Engine) -> None:
    leg = engine.create_rtp_leg()
    with pytest.raises(TypeError, match="Prompt and Silence"):
        leg.play(["welcome.wav"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="longer than 0 ms"):
        leg.play([core.Silence(0)], loop=True)


# --- Conferences ---

PARTY_TONES = {"PCMU": 500.0, "PCMA": 1100.0, "G722": 1700.0}


def conference_of(
    engine: Engine, peers: Callable[[], Peer], tones: dict[str, float | None]
) -> tuple[core.Conference, list[RtpLeg], list[Talker]]:
    """A conference of one leg per codec in ``tones``, each far end sending its tone."""
    legs: list[RtpLeg] = []
    talkers = []
    for codec, frequency in tones.items():
        peer = peers()
        beside = legs[0] if legs else None
        leg = connected_leg(
            engine, peer, codec=codec, payload_type=PAYLOAD_TYPES[codec], beside=beside
        )
        legs.append(leg)
        talkers.append(Talker(peer, leg.local_port, codec, frequency or 0.0))
        talkers[-1].silent = frequency is None
    conference = engine.create_conference(beside=legs[0])
    for leg in legs:
        conference.add(leg)
    return conference, legs, talkers


def heard(talker: Talker) -> tuple[bytes, int]:
    audio, rate = decoded(talker.received, talker.codec, PAYLOAD_TYPES[talker.codec])
    if rate != 8000:
        audio = core.Resampler(rate, 8000).process(audio)
    return audio, 8000


def test_each_member_of_a_conference_hears_everyone_but_itself(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    _conference, _legs, talkers = conference_of(engine, peers, dict(PARTY_TONES))
    talk_together(talkers)
    for listener in talkers:
        audio, rate = heard(listener)
        for talker in talkers:
            level = level_at(audio, rate, talker.frequency)
            if talker is listener:
                assert level < TONE_LEVEL - 30, f"{listener.codec} hears itself at {level:.1f} dBm0"
            else:
                assert abs(level - TONE_LEVEL) < 1.5, (
                    f"{listener.codec} hears {talker.codec} at {level:.1f}"
                )


@pytest.mark.parametrize(
    ("mode", "heard_by_caller"), [("LISTEN", False), ("WHISPER", False), ("BARGE", True)]
)
def test_a_supervisor_is_heard_as_its_mode_says(
    engine: Engine, peers: Callable[[], Peer], mode: str, heard_by_caller: bool
) -> None:
    tones: dict[str, float | None] = {"PCMU": 500.0, "PCMA": 1100.0, "G722": 1700.0}
    conference, (caller, agent, supervisor), (caller_end, agent_end, supervisor_end) = (
        conference_of(engine, peers, tones)
    )
    conference.supervise(supervisor, agent, caller, core.SupervisorMode[mode])
    talk_together([caller_end, agent_end, supervisor_end])
    supervisor_tone = 1700.0
    caller_hears = level_at(*heard(caller_end), supervisor_tone)
    agent_hears = level_at(*heard(agent_end), supervisor_tone)
    assert (caller_hears > TONE_LEVEL - 1.5) is heard_by_caller
    assert (agent_hears > TONE_LEVEL - 1.5) is (mode != "LISTEN")
    supervisor_hears, rate = heard(supervisor_end)
    assert level_at(supervisor_hears, rate, 500.0) > TONE_LEVEL - 1.5
    assert level_at(supervisor_hears, rate, 1100.0) > TONE_LEVEL - 1.5


def test_a_muted_member_is_not_heard_but_still_reported_talking(
    engine: Engine, peers: Callable[[], Peer]
) -> None:
    conference, legs, talkers = conference_of(engine, peers, {"PCMU": 500.0, "PCMA": None})
    conference.set_muted(legs[0])
    talk_together(talkers)
    assert level_at(*heard(talkers[1]), 500.0) < TONE_LEVEL - 30
    talk: list[core.MediaEvent] = []

    def stopped() -> bool:
        talk.extend(e for e in engine.poll_events() if e.kind.startswith("talk_"))
        return any(e.kind == "talk_stop" for e in talk)

    eventually(stopped, "the muted member to stop talking")
    assert [(e.kind, e.leg, e.detail) for e in talk] == [
        ("talk_start", legs[0].id, str(conference.id)),
        ("talk_stop", legs[0].id, str(conference.id)),
    ]


def test_bad_conference_arguments_are_refused_by_name(engine: Engine) -> None:
    leg = engine.create_rtp_leg()
    with pytest.raises(ValueError, match="sample_rate must be 8000 or 16000: got 48000"):
        engine.create_conference(beside=leg, sample_rate=48000)
    conference = engine.create_conference(beside=leg)
    with pytest.raises(ValueError, match="gain_db must be in"):
        conference.add(leg, gain_db=30)
    with pytest.raises(ValueError, match=f"leg {leg.id} is not in conference"):
        conference.set_muted(leg)
    conference.close()
    with pytest.raises(ValueError, match="closed already"):
        conference.add(leg)


# --- Recording ---


def channels(path: Path) -> tuple[bytes, bytes, int]:
    """The left and right channel of a stereo WAV, and its rate."""
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2
        frames = wav.readframes(wav.getnframes())
        rate = wav.getframerate()
    left = b"".join(frames[i : i + 2] for i in range(0, len(frames), 4))
    right = b"".join(frames[i + 2 : i + 4] for i in range(0, len(frames), 4))
    return left, right, rate


@pytest.mark.parametrize(
    ("codec_a", "codec_b", "rate"), [("PCMA", "PCMA", 8000), ("PCMU", "G722", 16000)]
)
def test_a_stereo_recording_holds_each_side_on_its_channel(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path, codec_a: str, codec_b: str, rate: int
) -> None:
    c = Call(engine, peers, codec_a, codec_b)
    recording = engine.record(tmp_path / "call.wav", left=c.leg_a, right=c.leg_b, sample_rate=rate)
    c.talk()
    info = recording.stop()
    assert (info.channels, info.sample_rate, info.frames_dropped) == (2, rate, 0)
    left, right, file_rate = channels(tmp_path / "call.wav")
    assert file_rate == rate
    assert_tone(left, rate, c.a.frequency, 1.5)
    assert_tone(right, rate, c.b.frequency, 1.5)


QUIET_FRAMES = 10  # each far end is silent this long, then sends its tone


def onset_s(audio: bytes, rate: int) -> float:
    """When ``audio`` first holds a 10 ms block at more than half a -10 dBm0 tone's RMS."""
    block = rate // 100
    threshold = 0.5 * amplitude(TONE_LEVEL) / math.sqrt(2)
    for start in range(0, len(audio) // 2 - block + 1, block):
        if rms(audio[2 * start : 2 * (start + block)]) > threshold:
            return start / rate
    pytest.fail("no tone in the recording")


def quiet_then_tone(call: Call) -> None:
    """Both far ends send silence, then their tone from the same frame on."""
    for talker in (call.a, call.b):
        talker.other_frequency = dict.fromkeys(range(QUIET_FRAMES), 0.0)


def test_a_recording_keeps_both_sides_time_aligned_at_their_level(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    c = Call(engine, peers, "PCMA", "PCMA")
    quiet_then_tone(c)
    recording = engine.record(tmp_path / "call.wav", left=c.leg_a, right=c.leg_b)
    c.talk()
    recording.stop()
    left, right, rate = channels(tmp_path / "call.wav")
    # Both tones start on the same frame, which the far ends send side by side
    # on one grid: each side's jitter buffer holds them alike, so they start
    # together in the file (two frames of slack: the far ends are two threads,
    # so a frame's twin may reach the engine after the next tick).
    assert abs(onset_s(left, rate) - onset_s(right, rate)) <= 0.04
    start = int(onset_s(left, rate) * rate) * 2
    assert_tone(left[start:], rate, c.a.frequency, LEVEL_TOLERANCE["PCMA"])
    assert_tone(right[start:], rate, c.b.frequency, LEVEL_TOLERANCE["PCMA"])
    # Before it, silence on both (A-law's quietest code decodes to +-8).
    for side in (left, right):
        assert rms(side[: start - 2 * rate // 50]) < 0.01 * amplitude(TONE_LEVEL)


def silent_frames(audio: bytes, rate: int, frames: int) -> int:
    """How many of the first ``frames`` 20 ms frames from ``audio``'s tone onset are silent."""
    frame = rate // 50
    start = int(onset_s(audio, rate) * rate)
    blocks = [audio[2 * (start + i * frame) : 2 * (start + (i + 1) * frame)] for i in range(frames)]
    return sum(rms(block) < 0.02 * amplitude(TONE_LEVEL) for block in blocks)


def test_a_lost_packet_is_concealed_in_the_recording_not_left_as_a_gap(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    c = Call(engine, peers, "PCMU", "PCMU")
    quiet_then_tone(c)
    c.a.lost = {QUIET_FRAMES + 20}
    recording = engine.record(tmp_path / "call.wav", left=c.leg_a, right=c.leg_b)
    c.talk()
    # While recorded, the leg decodes and has a jitter buffer to report.
    stats = c.leg_a.stats().jitter_buffer
    recording.stop()
    left, right, rate = channels(tmp_path / "call.wav")
    assert stats is not None
    assert (stats.lost, stats.expanded >= 1) == (1, True)
    # The caller's lost frame is filled from the tone before it (pitch
    # repetition): its side has no more silence inside the tone than the
    # agent's, which lost nothing (a stalled machine would show on both).
    # The last frames are left out: a buffer may shorten a tone by a frame.
    tone_frames = TALK_FRAMES - QUIET_FRAMES - 4
    assert silent_frames(left, rate, tone_frames) <= silent_frames(right, rate, tone_frames)


def test_a_recorded_frame_that_comes_after_its_successor_is_recorded_in_its_place(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    c = Call(engine, peers, "PCMA", "PCMA")
    quiet_then_tone(c)
    c.a.late = {QUIET_FRAMES + 15, QUIET_FRAMES + 30}
    recording = engine.record(tmp_path / "call.wav", left=c.leg_a, right=c.leg_b)
    c.talk()
    leg = c.leg_a.stats()
    stats = leg.jitter_buffer
    recording.stop()
    left, right, rate = channels(tmp_path / "call.wav")
    assert stats is not None
    # Nothing concealed for them, nothing thrown away as late.
    assert (stats.lost, stats.late) == (0, 0)
    # The far end hears the relay, not the recording's buffer: the quality
    # estimate guesses the phone's buffer from the jitter (no RTCP here, so
    # no round trip; 20 ms of packetization and 20 ms the least buffer).
    assert leg.rtt_ms is None
    assert leg.r_factor == pytest.approx(core.e_model(2 * leg.jitter_ms + 40, 0.0, "PCMA").r_factor)
    tone_frames = TALK_FRAMES - QUIET_FRAMES - 4
    assert silent_frames(left, rate, tone_frames) <= silent_frames(right, rate, tone_frames)
    start = int(onset_s(left, rate) * rate) * 2
    assert_tone(left[start:], rate, c.a.frequency, LEVEL_TOLERANCE["PCMA"])


def test_a_recording_stopped_right_after_the_last_packet_still_holds_it(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    c = Call(engine, peers, "PCMA", "PCMA")
    frames = 50
    encoder = core.Encoder("PCMA")
    tone = [
        encoder.encode(tone_pcm(c.a.frequency, TONE_LEVEL, 8000, 160, start=n * 160))
        for n in range(frames)
    ]
    recording = engine.record(tmp_path / "call.wav", left=c.leg_a, right=c.leg_b)
    start = time.monotonic()
    for n in range(frames):
        c.a.peer.send_rtp(c.a.port, PAYLOAD_TYPES["PCMA"], n, n * 160, tone[n])
        time.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))
    # The hang-up comes as the last packet does: the recording, which plays
    # a relay's audio some 100 ms behind the network, still writes what it held.
    recording.stop()
    left, _, rate = channels(tmp_path / "call.wav")
    frame = rate // 50
    threshold = 0.5 * amplitude(TONE_LEVEL) / math.sqrt(2)
    heard = [
        rms(left[2 * i * frame : 2 * (i + 1) * frame]) > threshold
        for i in range(len(left) // (2 * frame))
    ]
    assert sum(heard) >= frames - 1


def test_a_recorded_side_that_pauses_sending_stays_time_aligned_with_the_other(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    c = Call(engine, peers, "PCMU", "PCMU")
    # Both quiet for half a second, the caller sending nothing for 300 ms of
    # it (silence suppression), then both tones from the same frame.
    quiet = 25
    for talker in (c.a, c.b):
        talker.other_frequency = dict.fromkeys(range(quiet), 0.0)
    c.a.lost = set(range(3, 18))
    recording = engine.record(tmp_path / "call.wav", left=c.leg_a, right=c.leg_b)
    c.talk()
    recording.stop()
    left, right, rate = channels(tmp_path / "call.wav")
    # The pause does not push the caller's side later in the file.
    assert abs(onset_s(left, rate) - onset_s(right, rate)) <= 0.04
    # The tones last 0.7 s: measured from 0.1 s after the onset.
    start = (int(onset_s(left, rate) * rate) - int((SETTLE_S - 0.1) * rate)) * 2
    assert_tone(left[start:], rate, c.a.frequency, LEVEL_TOLERANCE["PCMU"])
    assert_tone(right[start:], rate, c.b.frequency, LEVEL_TOLERANCE["PCMU"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sample_rate": 44100}, ValueError, "sample_rate must be 8000 or 16000: got 44100"),
        ({"layout": "surround"}, ValueError, "layout must be 'stereo' or 'mono'"),
        ({"path": "/nonexistent/dir/call.wav"}, core.RecordError, "/nonexistent/dir/call.wav"),
    ],
)
def test_bad_recording_arguments_are_refused_by_name(
    engine: Engine, tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    a = engine.create_rtp_leg()
    b = engine.create_rtp_leg()
    arguments: dict[str, object] = {"path": tmp_path / "x.wav", "left": a, "right": b, **kwargs}
    with pytest.raises(error, match=message):
        engine.record(**arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a recording needs two different legs"):
        engine.record(tmp_path / "y.wav", left=a, right=a)


def test_a_paused_recording_holds_silence(
    engine: Engine, peers: Callable[[], Peer], tmp_path: Path
) -> None:
    c = Call(engine, peers, "PCMU", "PCMU")
    with engine.record(
        tmp_path / "card.wav", left=c.leg_a, right=c.leg_b, layout="mono"
    ) as recording:
        recording.pause()
        c.talk()
    info = recording.stop()
    assert info.channels == 1
    assert info.pauses == 1
    assert info.frames_paused > TALK_FRAMES
    with wave.open(str(tmp_path / "card.wav")) as wav:
        assert rms(wav.readframes(wav.getnframes())) == 0
    with pytest.raises(ValueError, match="is stopped"):
        recording.resume()


def test_closing_the_engine_finishes_a_recording_still_open(
    peers: Callable[[], Peer], tmp_path: Path
) -> None:
    with Engine(workers=1, port_min=30000, port_max=30999, host=LOOPBACK) as engine:
        c = Call(engine, peers, "PCMU", "PCMA")
        recording = engine.record(tmp_path / "open.wav", left=c.leg_a, right=c.leg_b)
        c.talk()
    left, right, rate = channels(tmp_path / "open.wav")
    assert_tone(left, rate, c.a.frequency, 1.5)
    assert_tone(right, rate, c.b.frequency, 1.5)
    with pytest.raises(core.RecordError, match="finished"):
        recording.stop()


KILLED_CALL = """
import sys, time
import core
engine = core.Engine(workers=1, port_min=30000, port_max=30999, host="127.0.0.1")
a = engine.create_rtp_leg(codec="PCMU")
b = engine.create_rtp_leg(codec="PCMA", beside=a)
engine.bridge(a, b)
engine.record(sys.argv[1], left=a, right=b)
print(a.local_port, flush=True)
time.sleep(60)
"""


def test_a_killed_process_leaves_a_recording_that_wave_and_sox_open(
    peers: Callable[[], Peer], tmp_path: Path
) -> None:
    path = tmp_path / "killed.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CALL, str(path)], stdout=subprocess.PIPE, text=True,
        env={**os.environ},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        talker = Talker(peers(), port, "PCMU", 1000)
        talker.run(talker.encoded(frames=100))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    left, _right, rate = channels(path)
    assert rate == 8000
    assert len(left) >= 8000 * 2  # at least one of the two seconds
    assert_tone(left, 8000, 1000, 1.5)
    assert "Channels       : 2" in run_tool(["sox", "--i", str(path)])
