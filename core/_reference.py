"""Pure-Python twin of the compiled core: slow, obvious, and the yardstick.

Every kernel here follows the written standard step by step so the C++ one
can be tested against it. ``CALLBOX_CORE=python`` makes ``import core`` use
this module instead of the extension.
"""

from __future__ import annotations

import struct
from array import array
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

_ALAW_SEGMENT_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_ULAW_SEGMENT_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def _alaw_from_linear(sample: int) -> int:
    pcm = sample >> 3
    mask = 0xD5
    if pcm < 0:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _ALAW_SEGMENT_END)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (pcm >> 1) if seg < 2 else (pcm >> seg)
    return ((seg << 4) | (quant & 0x0F)) ^ mask


def _ulaw_from_linear(sample: int) -> int:
    pcm = sample >> 2
    mask = 0xFF
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    pcm = min(pcm, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(pcm, _ULAW_SEGMENT_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _ulaw_to_linear(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return _ULAW_BIAS - t if u & 0x80 else t - _ULAW_BIAS


def _samples(pcm: Buffer) -> array[int]:
    data = bytes(pcm)
    if len(data) % 2:
        raise ValueError(
            f"PCM input must be whole 16-bit samples: got {len(data)} bytes (an odd length)"
        )
    samples = array("h")
    samples.frombytes(data)
    return samples


def alaw_encode(pcm: Buffer, /) -> bytes:
    return bytes(_alaw_from_linear(s) for s in _samples(pcm))


def ulaw_encode(pcm: Buffer, /) -> bytes:
    return bytes(_ulaw_from_linear(s) for s in _samples(pcm))


def alaw_decode(codes: Buffer, /) -> bytes:
    return array("h", (_alaw_to_linear(c) for c in bytes(codes))).tobytes()


def ulaw_decode(codes: Buffer, /) -> bytes:
    return array("h", (_ulaw_to_linear(c) for c in bytes(codes))).tobytes()


def library_versions() -> dict[str, str]:
    return {}


# --- RTP, RTCP, receive statistics, E-model (core/rtp/) -------------------------------

_RTP_HEADER = struct.Struct("!BBHII")
_RTCP_SR = 200
_RTCP_RR = 201
_RTCP_SDES = 202
_RTCP_BYE = 203


def parse_rtp(
    data: Buffer, /
) -> tuple[bool, int, int, int, int, tuple[int, ...], tuple[int, bytes] | None, bytes, int]:
    packet = bytes(data)
    if len(packet) < 12:
        raise ValueError("malformed RTP packet: shorter than the 12-byte RTP header")
    first, second, seq, ts, ssrc = _RTP_HEADER.unpack_from(packet)
    if first >> 6 != 2:
        raise ValueError("malformed RTP packet: RTP version is not 2")
    count = first & 0x0F
    offset = 12 + 4 * count
    if offset > len(packet):
        raise ValueError("malformed RTP packet: CSRC list runs past the end of the packet")
    csrc = struct.unpack_from(f"!{count}I", packet, 12)
    extension = None
    if first & 0x10:
        if offset + 4 > len(packet):
            raise ValueError(
                "malformed RTP packet: header extension runs past the end of the packet"
            )
        profile, words = struct.unpack_from("!HH", packet, offset)
        offset += 4
        if offset + 4 * words > len(packet):
            raise ValueError(
                "malformed RTP packet: header extension runs past the end of the packet"
            )
        extension = (profile, packet[offset : offset + 4 * words])
        offset += 4 * words
    end = len(packet)
    padding = 0
    if first & 0x20:
        padding = packet[-1]
        if padding == 0 or padding > end - offset:
            raise ValueError(
                "malformed RTP packet: padding count is zero or larger than the payload"
            )
        end -= padding
    return (bool(second & 0x80), second & 0x7F, seq, ts, ssrc, csrc, extension,
            packet[offset:end], padding)  # fmt: skip


def _check_range(value: int, high: int, name: str) -> None:
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be in 0..{high}: got {value}")


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: Buffer,
    marker: bool = False,
    csrc: Sequence[int] = (),
    extension: tuple[int, Buffer] | None = None,
) -> bytes:
    _check_range(payload_type, 127, "payload_type")
    _check_range(sequence, 0xFFFF, "sequence")
    _check_range(timestamp, 0xFFFFFFFF, "timestamp")
    _check_range(ssrc, 0xFFFFFFFF, "ssrc")
    if len(csrc) > 15:
        raise ValueError(f"at most 15 CSRCs fit an RTP header: got {len(csrc)}")
    for c in csrc:
        _check_range(c, 0xFFFFFFFF, "csrc")
    first = 0x80 | len(csrc)
    tail = b""
    if extension is not None:
        profile, body = extension[0], bytes(extension[1])
        _check_range(profile, 0xFFFF, "extension profile")
        if len(body) % 4:
            raise ValueError(
                f"RTP header extension must be whole 32-bit words: got {len(body)} bytes"
            )
        first |= 0x10
        tail = struct.pack("!HH", profile, len(body) // 4) + body
    second = (0x80 if marker else 0) | payload_type
    header = _RTP_HEADER.pack(first, second, sequence, timestamp, ssrc)
    return header + struct.pack(f"!{len(csrc)}I", *csrc) + tail + bytes(payload)


class ReceiveStats:
    """RFC 3550 A.1/A.3/A.8 as written, plus the duplicate/reorder window of core/rtp/stats.cpp."""

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100
    MIN_SEQUENTIAL = 2
    SEQ_MOD = 1 << 16
    WINDOW = 64

    def __init__(self) -> None:
        self.started = False
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = 0
        self.probation = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.transit: int | None = None
        self.jitter_q4 = 0
        self.window = 0
        self.duplicates = 0
        self.reordered = 0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = self.SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0
        self.window = 1

    def update(self, seq: int, timestamp: int, arrival: int, /) -> int:
        if not self.started:
            self.started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = self.MIN_SEQUENTIAL
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    self._update_jitter(timestamp, arrival)
                    return 1
            else:
                self.probation = self.MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return 0
        result = 1
        if udelta == 0:
            result = 2
            self.duplicates += 1
        elif udelta < self.MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += self.SEQ_MOD
            self.max_seq = seq
            mask = (1 << self.WINDOW) - 1
            self.window = 1 if udelta >= self.WINDOW else ((self.window << udelta) | 1) & mask
        elif udelta <= self.SEQ_MOD - self.MAX_MISORDER:
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & 0xFFFF
                return 4
            self._init_seq(seq)
            result = 5
        else:
            back = self.SEQ_MOD - udelta
            if back < self.WINDOW and self.window & (1 << back):
                self.duplicates += 1
                result = 2
            else:
                if back < self.WINDOW:
                    self.window |= 1 << back
                self.reordered += 1
                result = 3
        self.received += 1
        if result != 2:
            self._update_jitter(timestamp, arrival)
        return result

    def _update_jitter(self, timestamp: int, arrival: int) -> None:
        transit = (arrival - timestamp) & 0xFFFFFFFF
        if self.transit is not None:
            d = (transit - self.transit) & 0xFFFFFFFF
            d = abs(d - (1 << 32) if d >= 1 << 31 else d)
            self.jitter_q4 = (self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4)) & 0xFFFFFFFF
        self.transit = transit

    def snapshot(self) -> tuple[int, int, int, int, int, int, int, bool]:
        validated = self.started and self.probation == 0
        if not validated:
            return (0, 0, 0, 0, self.jitter_q4 >> 4, self.duplicates, self.reordered, False)
        highest = (self.cycles + self.max_seq) & 0xFFFFFFFF
        expected = highest - self.base_seq + 1
        return (highest, expected, self.received, expected - self.received,
                self.jitter_q4 >> 4, self.duplicates, self.reordered, True)  # fmt: skip

    def report(self) -> tuple[int, int, int, int]:
        highest, expected, received, lost, jitter, *_ = self.snapshot()
        expected_interval = expected - self.expected_prior
        received_interval = received - self.received_prior
        self.expected_prior = expected
        self.received_prior = received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min((lost_interval << 8) // expected_interval, 255)
        return fraction, max(-0x800000, min(lost, 0x7FFFFF)), highest, jitter


_Block = tuple[int, int, int, int, int, int, int]
_Sender = tuple[int, int, int, int]


def build_rtcp(ssrc: int, sender: _Sender | None, blocks: Sequence[_Block], cname: Buffer) -> bytes:
    name = bytes(cname)
    if len(blocks) > 31:
        raise ValueError(f"at most 31 report blocks fit an RTCP report: got {len(blocks)}")
    if len(name) > 255:
        raise ValueError(f"CNAME must be at most 255 bytes: got {len(name)}")
    body = struct.pack("!I", ssrc)
    if sender is not None:
        ntp, rtp_ts, packets, octets = sender
        body += struct.pack("!IIIII", ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts, packets, octets)
    for block_ssrc, fraction, lost, highest, jitter, lsr, dlsr in blocks:
        if not -0x800000 <= lost <= 0x7FFFFF:
            raise ValueError(f"cumulative_lost must fit 24 bits signed: got {lost}")
        loss_word = (fraction << 24) | (lost & 0xFFFFFF)
        body += struct.pack("!IIIIII", block_ssrc, loss_word, highest, jitter, lsr, dlsr)
    kind = _RTCP_SR if sender is not None else _RTCP_RR
    report = struct.pack("!BBH", 0x80 | len(blocks), kind, len(body) // 4) + body
    item = struct.pack("!IBB", ssrc, 1, len(name)) + name
    item += b"\x00" * (4 - len(item) % 4)
    return report + struct.pack("!BBH", 0x81, _RTCP_SDES, len(item) // 4) + item


def _parse_sdes(packet: bytes, count: int) -> bytes:
    cname = b""
    offset = 4
    for _ in range(count):
        if offset + 4 > len(packet):
            raise ValueError("malformed RTCP packet: SDES chunk runs past the RTCP packet length")
        offset += 4
        while True:
            if offset >= len(packet):
                raise ValueError(
                    "malformed RTCP packet: SDES items run past the RTCP packet length"
                )
            item = packet[offset]
            if item == 0:
                offset = (offset + 4) & ~3
                break
            if offset + 2 > len(packet) or offset + 2 + packet[offset + 1] > len(packet):
                raise ValueError(
                    "malformed RTCP packet: SDES item runs past the RTCP packet length"
                )
            size = packet[offset + 1]
            if item == 1 and not cname:
                cname = packet[offset + 2 : offset + 2 + size]
            offset += 2 + size
    return cname


def parse_rtcp(data: Buffer, /) -> tuple[int, _Sender | None, list[_Block], bytes, bool]:
    packet = bytes(data)
    if len(packet) < 4:
        raise ValueError("malformed RTCP packet: shorter than an RTCP header")
    ssrc, sender, blocks, cname, bye, report = 0, None, [], b"", False, False
    offset = 0
    while offset < len(packet):
        if len(packet) - offset < 4:
            raise ValueError("malformed RTCP packet: trailing bytes after the last RTCP packet")
        first, kind, words = struct.unpack_from("!BBH", packet, offset)
        if first >> 6 != 2:
            raise ValueError("malformed RTCP packet: RTCP version is not 2")
        size = (words + 1) * 4
        if size > len(packet) - offset:
            raise ValueError(
                "malformed RTCP packet: RTCP length field runs past the end of the datagram"
            )
        part = packet[offset : offset + size]
        count = first & 0x1F
        if kind in (_RTCP_SR, _RTCP_RR) and not report:
            report = True
            if size < 8:
                raise ValueError("malformed RTCP packet: RTCP report shorter than its SSRC")
            fixed = 28 if kind == _RTCP_SR else 8
            if size < fixed + 24 * count:
                raise ValueError(
                    "malformed RTCP packet: report blocks run past the RTCP packet length"
                )
            ssrc = struct.unpack_from("!I", part, 4)[0]
            if kind == _RTCP_SR:
                hi, lo, rtp_ts, packets, octets = struct.unpack_from("!IIIII", part, 8)
                sender = ((hi << 32) | lo, rtp_ts, packets, octets)
            for i in range(count):
                b_ssrc, loss_word, *rest = struct.unpack_from("!IIIIII", part, fixed + 24 * i)
                lost = loss_word & 0xFFFFFF
                lost = lost - (1 << 24) if lost & 0x800000 else lost
                hi_seq, jitter, lsr, dlsr = rest
                blocks.append((b_ssrc, loss_word >> 24, lost, hi_seq, jitter, lsr, dlsr))
        elif kind == _RTCP_SDES:
            cname = cname or _parse_sdes(part, count)
        elif kind == _RTCP_BYE:
            bye = True
        offset += size
    if not report and not bye:
        raise ValueError("malformed RTCP packet: no sender or receiver report in the RTCP packet")
    return ssrc, sender, blocks, cname, bye


# G.113 Appendix I (Ie, Bpl); G.722 and Opus scored like G.711 with PLC.
_CODEC_IMPAIRMENT = {
    "pcmu": (0.0, 25.1),
    "pcma": (0.0, 25.1),
    "g722": (0.0, 25.1),
    "opus": (0.0, 25.1),
    "g729": (11.0, 19.0),
    "g729a": (11.0, 19.0),
}


def e_model(delay_ms: float, loss_percent: float, codec: str, /) -> tuple[float, float]:
    try:
        ie, bpl = _CODEC_IMPAIRMENT[codec.lower()]
    except KeyError:
        raise ValueError(f"no E-model values for codec '{codec}'") from None
    d = max(0.0, delay_ms)
    ppl = min(max(loss_percent, 0.0), 100.0)
    delay_impairment = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl)
    r = 93.2 - delay_impairment - ie_eff
    if r >= 100.0:
        return r, 4.5
    if r <= 0.0:
        return r, 1.0
    return r, 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


# --- Adaptive jitter buffer (core/jitter/) --------------------------------------------

_ONE_Q30 = 1 << 30
_FORGET_Q15 = 32735
_PERCENTILE_Q30 = _ONE_Q30 // 100 * 98
_TRANSIT_WINDOW_MS = 2000
_PEAK_THRESHOLD_MS = 100
_PEAK_TARGET_MULTIPLE = 2
_PEAK_WINDOW_MS = 10000
_PEAK_EVENT_MS = 1000
_LEVEL_FILTER_Q8 = 252
_FORCE_ACCELERATE_FRAMES = 4
_SEQUENCE_WINDOW = 64
_MAX_SEQUENCE_JUMP = 3000
_MIN_JUMP_MS = 2000
_BUCKET_MS = 20
_BUCKETS = 100
_PEAK_SLOTS = 8
# Decisions and put results, numbered as in core/jitter/jitter.h.
_BUFFERING, _NORMAL, _MERGE, _EXPAND, _ACCELERATE, _PREEMPTIVE_EXPAND = range(6)
_BUFFERED, _DUPLICATE, _LATE, _FLUSHED = range(4)
_PLAYED_COUNTER = {_NORMAL: "normal", _MERGE: "merged", _ACCELERATE: "accelerated"}

_Frame = tuple[
    int, int, int, int, bytes
]  # timestamp (extended), sequence, samples, arrival_ms, payload


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class JitterBuffer:
    """The jitter buffer of core/jitter/jitter.cpp, step for step, in integers."""

    def __init__(self, clock_rate: int, min_delay_ms: int, max_delay_ms: int, max_frames: int, /):
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        if min_delay_ms < 0 or max_delay_ms < min_delay_ms:
            raise ValueError(
                "delay limits must satisfy 0 <= min_delay_ms <= max_delay_ms: "
                f"got {min_delay_ms} and {max_delay_ms}"
            )
        if max_frames <= 0:
            raise ValueError("max_frames must be positive")
        self.rate = clock_rate
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.max_frames = max_frames
        self.slots: list[_Frame] = []
        self.source: int | None = None
        self.last_timestamp = 0
        self.have_sequence = False
        self.base_sequence = self.highest_sequence = 0
        self.seen = 0
        self.unique = 0
        self.lost_prior = 0
        self.started = False
        self.next_timestamp = 0
        self.frame_samples = 0
        self.after_expand = False
        self.stalled = False
        self.stall_debt = 0
        self.have_tick = False
        self.last_tick_ms = 0
        self.tick_ms = 0
        self.filtered_q8 = 0
        self.transits: deque[tuple[int, int]] = deque()
        self.histogram = [0] * _BUCKETS
        self.histogram_count = 0
        self.peaks = [(0, 0)] * _PEAK_SLOTS
        self.peak_count = 0
        self.last_late_ms = 0
        self.target_ms = min(max(_BUCKET_MS, min_delay_ms), max_delay_ms)
        self.counts = dict.fromkeys(
            ("received", "duplicates", "late", "discarded", "flushes", "buffering", "normal",
             "merged", "expanded", "accelerated", "preemptive_expanded", "waiting_ms_total",
             "max_buffer_delay_ms"),
            0,
        )  # fmt: skip

    def _to_ms(self, samples: int) -> int:
        return _cdiv(samples * 1000, self.rate)

    def _to_samples(self, ms: int) -> int:
        return _cdiv(ms * self.rate, 1000)

    def _level(self) -> int:
        return sum(slot[2] for slot in self.slots)

    def put(
        self, payload: Buffer, timestamp: int, sequence: int, samples: int, arrival_ms: int,
        source: int, /,
    ) -> int:  # fmt: skip
        if samples <= 0:
            raise ValueError("a frame must last at least one sample")
        self.counts["received"] += 1
        result = _BUFFERED
        if self.source is None:
            self.last_timestamp = timestamp
        elif source != self.source:
            self._reset_timeline(new_sequence=True)
            result = _FLUSHED
        self.source = source
        ts = self.last_timestamp + _signed(timestamp - self.last_timestamp, 32)
        self.last_timestamp = ts
        if self.started or self.slots:
            reference = self.next_timestamp if self.started else self.slots[0][0]
            jump = self._to_samples(max(_MIN_JUMP_MS, 2 * self.max_delay_ms))
            if abs(ts - reference) > jump:
                self._reset_timeline(new_sequence=True)
                result = _FLUSHED
        if self._sequence_seen(sequence) or any(slot[0] == ts for slot in self.slots):
            self.counts["duplicates"] += 1
            return _DUPLICATE
        relative_ms = self._update_delay(ts, arrival_ms)
        if self.started and ts < self.next_timestamp:
            self.counts["late"] += 1
            self._note_peak(arrival_ms, relative_ms)
            return _LATE
        if len(self.slots) >= self.max_frames:
            self._reset_timeline(new_sequence=False)
            result = _FLUSHED
        index = len(self.slots)
        while index and self.slots[index - 1][0] > ts:
            index -= 1
        self.slots.insert(index, (ts, sequence, samples, arrival_ms, bytes(payload)))
        return result

    def _reset_timeline(self, *, new_sequence: bool) -> None:
        self.counts["discarded"] += len(self.slots)
        self.counts["flushes"] += 1
        self.slots.clear()
        self.started = self.after_expand = self.stalled = False
        self.stall_debt = 0
        self.transits.clear()
        if new_sequence:
            self._rebase_sequence()

    def _rebase_sequence(self) -> None:
        if self.have_sequence:
            self.lost_prior += self.highest_sequence - self.base_sequence + 1 - self.unique
        self.have_sequence = False
        self.unique = 0

    def _sequence_seen(self, sequence: int) -> bool:
        delta = 0
        if self.have_sequence:
            delta = _signed(sequence - self.highest_sequence, 16)
            if abs(delta) > _MAX_SEQUENCE_JUMP:
                self._rebase_sequence()
        if not self.have_sequence:
            self.have_sequence = True
            self.base_sequence = self.highest_sequence = sequence
            self.seen = 1
            self.unique = 1
            return False
        if delta > 0:
            mask = (1 << _SEQUENCE_WINDOW) - 1
            self.seen = 1 if delta >= _SEQUENCE_WINDOW else ((self.seen << delta) | 1) & mask
            self.highest_sequence += delta
        elif -delta < _SEQUENCE_WINDOW:
            if self.seen >> -delta & 1:
                return True
            self.seen |= 1 << -delta
        self.unique += 1
        return False

    def _update_delay(self, timestamp: int, arrival_ms: int) -> int:
        playable_ms = arrival_ms
        if self.tick_ms:
            ticks = _cdiv(arrival_ms - self.last_tick_ms + self.tick_ms - 1, self.tick_ms)
            playable_ms = self.last_tick_ms + max(1, ticks) * self.tick_ms
        transit = self._to_samples(playable_ms) - timestamp
        while self.transits and self.transits[-1][1] >= transit:
            self.transits.pop()
        self.transits.append((arrival_ms, transit))
        while self.transits[0][0] + _TRANSIT_WINDOW_MS <= arrival_ms:
            self.transits.popleft()
        relative_ms = self._to_ms(transit - self.transits[0][1])
        if self.stalled and self.slots:
            return relative_ms

        self.histogram_count += 1
        forget = min(_FORGET_Q15, 32768 - 32768 // self.histogram_count)
        self.histogram = [(p * forget) >> 15 for p in self.histogram]
        self.histogram[min(relative_ms // _BUCKET_MS, _BUCKETS - 1)] += _ONE_Q30 - sum(
            self.histogram
        )
        self._update_target(arrival_ms)
        return relative_ms

    def _note_peak(self, arrival_ms: int, relative_ms: int) -> None:
        percentile = self._histogram_target_ms()
        if relative_ms <= max(percentile + _PEAK_THRESHOLD_MS, _PEAK_TARGET_MULTIPLE * percentile):
            return
        if self.peak_count and arrival_ms < self.last_late_ms + _PEAK_EVENT_MS:
            slot = (self.peak_count - 1) % _PEAK_SLOTS
            at, delay = self.peaks[slot]
            self.peaks[slot] = (at, max(delay, relative_ms))
        else:
            self.peaks[self.peak_count % _PEAK_SLOTS] = (arrival_ms, relative_ms)
            self.peak_count += 1
        self.last_late_ms = arrival_ms
        self._update_target(arrival_ms)

    def _update_target(self, arrival_ms: int) -> None:
        recent = [
            delay
            for at, delay in self.peaks[: min(self.peak_count, _PEAK_SLOTS)]
            if at + _PEAK_WINDOW_MS > arrival_ms
        ]
        peak_ms = (max(recent) // _BUCKET_MS + 1) * _BUCKET_MS if len(recent) >= 2 else 0
        target_ms = max(self._histogram_target_ms(), peak_ms, self.min_delay_ms)
        self.target_ms = min(target_ms, self.max_delay_ms)

    def _histogram_target_ms(self) -> int:
        cumulative = 0
        for bucket, p in enumerate(self.histogram):
            cumulative += p
            if cumulative >= _PERCENTILE_Q30:
                return (bucket + 1) * _BUCKET_MS
        return _BUCKETS * _BUCKET_MS

    def get(self, now_ms: int, low_energy: bool, /) -> tuple[int, bytes | None, int, int, int]:
        if self.have_tick and now_ms > self.last_tick_ms:
            self.tick_ms = now_ms - self.last_tick_ms
        self.have_tick = True
        self.last_tick_ms = now_ms
        if not self.started:
            waited = bool(self.slots) and now_ms - self.slots[0][3] >= self.target_ms
            if not self.slots or (self._to_ms(self._level()) < self.target_ms and not waited):
                self.counts["buffering"] += 1
                return _BUFFERING, None, 0, 0, 0
            self.started = True
            self.next_timestamp = self.slots[0][0]
            self.frame_samples = self.slots[0][2]
            self.filtered_q8 = self._level() << 8
        current = self._level()
        counts = self.counts
        counts["max_buffer_delay_ms"] = max(counts["max_buffer_delay_ms"], self._to_ms(current))
        self.filtered_q8 = (
            self.filtered_q8 * _LEVEL_FILTER_Q8 + (current << 8) * (256 - _LEVEL_FILTER_Q8)
        ) >> 8
        if self.slots and self.slots[0][0] == self.next_timestamp:
            decision = self._decide(low_energy)
            samples = self.slots[0][2]
            if decision == _PREEMPTIVE_EXPAND:
                counts["preemptive_expanded"] += 1
                self.filtered_q8 += samples << 8
                return decision, None, 0, 0, 0
            if decision == _ACCELERATE:
                counts["discarded"] += 1
                self.slots.pop(0)
            return self._play(decision, now_ms)
        if self.slots and self.stalled:
            skipped = (self.slots[0][0] - self.next_timestamp) // self.frame_samples
            self.stall_debt = max(0, self.stall_debt - skipped)
            self.next_timestamp = self.slots[0][0]
            return self._play(_MERGE, now_ms)
        counts["expanded"] += 1
        self.after_expand = True
        if self.slots:
            self.next_timestamp = min(self.next_timestamp + self.frame_samples, self.slots[0][0])
        else:
            self.stalled = True
            self.stall_debt += 1
        return _EXPAND, None, 0, 0, 0

    def _decide(self, low_energy: bool) -> int:
        samples = self.slots[0][2]
        target = self._to_samples(self.target_ms)
        next_held = len(self.slots) >= 2 and self.slots[1][0] == self.next_timestamp + samples
        if next_held and low_energy and self.stall_debt and self._level() >= target + samples:
            self.stall_debt -= 1
            return _ACCELERATE
        if self.after_expand:
            return _MERGE
        low = min(target * 3 // 4, target - 3 * samples // 4)
        high = max(target + samples // 2, low + 3 * samples // 2)
        forced = self.filtered_q8 >= (high + _FORCE_ACCELERATE_FRAMES * samples) << 8
        if next_held and self.filtered_q8 >= high << 8 and (low_energy or forced):
            self.filtered_q8 -= samples << 8
            return _ACCELERATE
        if low_energy and self.filtered_q8 < low << 8:
            return _PREEMPTIVE_EXPAND
        return _NORMAL

    def _play(self, decision: int, now_ms: int) -> tuple[int, bytes | None, int, int, int]:
        ts, sequence, samples, arrival_ms, payload = self.slots.pop(0)
        self.counts["waiting_ms_total"] += max(0, now_ms - arrival_ms)
        self.next_timestamp = ts + samples
        self.frame_samples = samples
        self.after_expand = self.stalled = False
        self.counts[
            {_NORMAL: "normal", _MERGE: "merged", _ACCELERATE: "accelerated"}[decision]
        ] += 1
        return decision, payload, ts & 0xFFFFFFFF, sequence, samples

    def stats(self) -> tuple[int, ...]:
        c = self.counts
        lost = self.lost_prior
        if self.have_sequence:
            lost += self.highest_sequence - self.base_sequence + 1 - self.unique
        return (
            c["received"], c["duplicates"], c["late"], lost, c["discarded"], c["flushes"],
            c["buffering"], c["normal"], c["merged"], c["expanded"], c["accelerated"],
            c["preemptive_expanded"], c["waiting_ms_total"], self.target_ms,
            self.buffer_delay_ms(), c["max_buffer_delay_ms"], len(self.slots),
        )  # fmt: skip

    def target_delay_ms(self) -> int:
        return self.target_ms

    def buffer_delay_ms(self) -> int:
        return self._to_ms(self._level())


def _cdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero, as C++ does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


# --- Conference mixer (core/mixer/) ---------------------------------------------------

_UNITY_GAIN_Q12 = 4096
_MAX_GAIN_Q12 = 40960
_MAX_PARTICIPANTS = 1024
_UNITY_GAIN_Q15 = 1 << 15
_LIMIT_TARGET = 29491
_LIMIT_KNEE = 32767 - _LIMIT_TARGET


def _soft_knee(sample: int) -> int:
    magnitude = abs(sample)
    if magnitude <= _LIMIT_TARGET:
        return sample
    excess = magnitude - _LIMIT_TARGET
    bent = _LIMIT_TARGET + excess * _LIMIT_KNEE // (excess + _LIMIT_KNEE)
    return -bent if sample < 0 else bent


def _next_limiter_gain(gain: int, peak: int) -> int:
    wanted = (_LIMIT_TARGET << 15) // peak if peak > _LIMIT_TARGET else _UNITY_GAIN_Q15
    if wanted < gain:
        return wanted
    return min(wanted, gain + (gain >> 4) + 1)


class _Participant:
    def __init__(self, participant: int) -> None:
        self.id = participant
        self.gain_q12 = _UNITY_GAIN_Q12
        self.muted = False
        self.talking = False
        self.quiet_frames = 0
        self.frame: array[int] | None = None
        self.contribution: list[int] = []
        self.deaf_to: set[int] = set()


class Mixer:
    """N-1 conference mixer, step by step as core/mixer/mixer.cpp does it."""

    def __init__(self, sample_rate: int, talk_threshold: int, hangover_frames: int) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"sample_rate must be 8000, 16000, 32000 or 48000: got {sample_rate}")
        if talk_threshold < 0:
            raise ValueError("talk_threshold must not be negative")
        if hangover_frames < 1:
            raise ValueError("hangover_frames must be at least 1")
        self._frame_samples = sample_rate // 50
        self._attack_samples = sample_rate // 1000
        self._talk_threshold = talk_threshold
        self._hangover_frames = hangover_frames
        self._participants: dict[int, _Participant] = {}
        self._gain = _UNITY_GAIN_Q15

    def frame_samples(self) -> int:
        return self._frame_samples

    def _find(self, participant: int) -> _Participant:
        found = self._participants.get(participant)
        if found is None:
            raise ValueError(f"no participant {participant} in the mixer")
        return found

    def add(self, participant: int) -> None:
        if participant in self._participants:
            raise ValueError(f"participant {participant} is already in the mixer")
        if len(self._participants) == _MAX_PARTICIPANTS:
            raise ValueError(f"the mixer is full ({_MAX_PARTICIPANTS} participants)")
        self._participants[participant] = _Participant(participant)

    def remove(self, participant: int) -> None:
        self._find(participant)
        del self._participants[participant]
        for p in self._participants.values():
            p.deaf_to.discard(participant)

    def set_gain(self, participant: int, gain_q12: int) -> None:
        if not 0 <= gain_q12 <= _MAX_GAIN_Q12:
            raise ValueError(f"gain_q12 must be in 0..{_MAX_GAIN_Q12}: got {gain_q12}")
        self._find(participant).gain_q12 = gain_q12

    def set_muted(self, participant: int, muted: bool) -> None:
        self._find(participant).muted = muted

    def set_hears(self, listener: int, talker: int, hears: bool) -> None:
        self._find(talker)
        deaf_to = self._find(listener).deaf_to
        deaf_to.discard(talker)
        if not hears:
            deaf_to.add(talker)

    def hears(self, listener: int, talker: int) -> bool:
        self._find(talker)
        return listener != talker and talker not in self._find(listener).deaf_to

    def talking(self, participant: int) -> bool:
        return self._find(participant).talking

    def participants(self) -> list[int]:
        return list(self._participants)

    def limiter_gain_q15(self) -> int:
        return self._gain

    def put(self, participant: int, pcm: Buffer) -> None:
        samples = _samples(pcm)
        if len(samples) != self._frame_samples:
            raise ValueError(f"a frame must be {self._frame_samples} samples: got {len(samples)}")
        self._find(participant).frame = samples

    def _detect_talk(self, p: _Participant, events: list[tuple[int, bool]]) -> None:
        energy = sum(s * s for s in p.frame) if p.frame is not None else 0
        if energy > self._talk_threshold * self._frame_samples:
            p.quiet_frames = 0
            if not p.talking:
                p.talking = True
                events.append((p.id, True))
        elif p.talking:
            p.quiet_frames += 1
            if p.quiet_frames >= self._hangover_frames:
                p.talking = False
                events.append((p.id, False))

    def _limit(self, mixed: list[int], gain_to: int) -> bytes:
        gain_from = self._gain
        out = array("h")
        for n, sample in enumerate(mixed):
            gain = gain_to
            if gain_to < gain_from and n < self._attack_samples:
                gain = gain_from - (gain_from - gain_to) * (n + 1) // self._attack_samples
            elif gain_to > gain_from:
                gain = gain_from + (gain_to - gain_from) * (n + 1) // self._frame_samples
            out.append(_soft_knee((sample * gain) >> 15))
        return out.tobytes()

    def mix(self) -> tuple[bytes, list[int], list[tuple[int, bytes]], list[tuple[int, bool]]]:
        events: list[tuple[int, bool]] = []
        contributors: list[_Participant] = []
        total = [0] * self._frame_samples
        for p in self._participants.values():
            self._detect_talk(p, events)
            if p.frame is None or p.muted:
                continue
            p.contribution = [(s * p.gain_q12) >> 12 for s in p.frame]
            total = [t + c for t, c in zip(total, p.contribution, strict=True)]
            contributors.append(p)

        shared: list[int] = []
        own_sums: list[tuple[int, list[int]]] = []
        for listener in self._participants.values():
            unheard = [t for t in contributors if t is listener or t.id in listener.deaf_to]
            if not unheard:
                shared.append(listener.id)
                continue
            own = total
            for talker in unheard:
                own = [s - c for s, c in zip(own, talker.contribution, strict=True)]
            own_sums.append((listener.id, own))

        peak = max(abs(s) for mixed in [total, *(own for _, own in own_sums)] for s in mixed)
        gain_to = _next_limiter_gain(self._gain, peak)
        common = self._limit(total, gain_to)
        own_out = [(participant, self._limit(own, gain_to)) for participant, own in own_sums]
        self._gain = gain_to
        for p in self._participants.values():
            p.frame = None
        return common, shared, own_out, events
