"""Codecs, resampling, telephone-event, DTMF and tones (core/codec/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader

#
# Codecs work on frames (20 ms by default) of 16-bit native-endian PCM at the
# codec's own sample rate; DTMF and tones work at 8 kHz. Calls release the GIL
# while they work, so an object must not be used from two threads at once.
# These need the compiled core: the Python twin has only G.711 and refuses
# them with NotImplementedError.


def _native(name: str) -> Any:
    try:
        return getattr(_loader.impl, name)
    except AttributeError:
        raise NotImplementedError(
            f"core.{name} needs the compiled core; "
            f"CALLBOX_CORE={_loader.IMPLEMENTATION} has only G.711"
        ) from None


CodecError: type[ValueError] = getattr(_loader.impl, "CodecError", ValueError)
"""Bad input to a codec, resampler, event or tone object; the message names the problem."""


def codec_names() -> list[str]:
    """SDP encoding names the codec factory knows (``PCMU``, ``PCMA``, ``G722``, ...)."""
    result: list[str] = _native("codec_names")()
    return result


class CodecInfo(NamedTuple):
    """What SDP and the engine need to know of a codec (frames of the default 20 ms)."""

    name: str
    rtp_clock_rate: int
    sample_rate: int
    frame_ms: int


def codec_info(name: str) -> CodecInfo:
    """The codec's SDP name, RTP clock and sample rate; ``CodecError`` if unknown.

    For SDP: ``a=rtpmap:9 G722/8000`` although G.722 samples at 16 kHz.
    """
    info = _native("codec_info")(name)
    return CodecInfo(info.name, info.rtp_clock_rate, info.sample_rate, info.frame_ms)


def parse_fmtp(fmtp: str) -> dict[str, str]:
    """Parse an SDP fmtp parameter string (``"useinbandfec=1; stereo=0"``).

    Names are folded to lower case. Raises ``CodecError`` on an item without ``=``.
    """
    result: dict[str, str] = _native("parse_fmtp")(fmtp)
    return result


class _CodecSide:
    """What encoders and decoders share: the codec's timing and rates."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self._info = native.info

    @property
    def name(self) -> str:
        """SDP encoding name (``PCMA``, ``PCMU``, ``G722``, ``G729``, ``opus``)."""
        result: str = self._info.name
        return result

    @property
    def rtp_clock_rate(self) -> int:
        """RTP timestamp units per second (8000 for G.722 per RFC 3551, 48000 for Opus)."""
        result: int = self._info.rtp_clock_rate
        return result

    @property
    def sample_rate(self) -> int:
        """PCM sample rate of encoder input and decoder output."""
        result: int = self._info.sample_rate
        return result

    @property
    def frame_ms(self) -> int:
        """Duration of one frame (the encoder's input, one concealment's output), in ms."""
        result: int = self._info.frame_ms
        return result

    @property
    def frame_samples(self) -> int:
        """Samples in one frame at ``sample_rate``."""
        result: int = self._info.frame_samples
        return result


class Encoder(_CodecSide):
    """Encodes PCM frames to RTP payloads for one codec, one frame per payload.

    ``frame_ms`` is the packet duration (SDP ptime): 10 to 60 ms in steps of
    10, for Opus 10, 20, 40 or 60.

    ``fmtp`` is the peer's SDP fmtp for the payload type, which says how it
    wants to receive. Opus understands RFC 7587's ``maxplaybackrate``,
    ``stereo`` (we always send mono), ``useinbandfec``, ``usedtx``,
    ``maxaveragebitrate`` and ``cbr``; G.729 ``annexb`` (off unless ``yes``).
    Raises ``CodecError`` for an unknown codec, a bad fmtp value or a
    ``frame_ms`` the codec cannot packetise.
    """

    def __init__(self, name: str, fmtp: str = "", frame_ms: int = 20) -> None:
        super().__init__(_native("Encoder")(name, fmtp, frame_ms))

    def encode(self, frame: Buffer) -> bytes:
        """Encode exactly one frame; ``CodecError`` names the expected size otherwise.

        An empty payload means there is nothing to send (G.729 Annex B silence).
        """
        result: bytes = self._native.encode(frame)
        return result


class Decoder(_CodecSide):
    """Decodes RTP payloads of one codec to PCM and conceals lost packets.

    Payloads of any whole number of codec frames decode; ``frame_ms`` is how
    much audio one concealment produces (the duration of a lost packet).
    """

    def __init__(self, name: str, fmtp: str = "", frame_ms: int = 20) -> None:
        super().__init__(_native("Decoder")(name, fmtp, frame_ms))

    def decode(self, payload: Buffer) -> bytes:
        """Decode one payload (any whole number of codec frames) to PCM."""
        result: bytes = self._native.decode(payload)
        return result

    def conceal(self) -> bytes:
        """One frame in place of a lost packet.

        The codec's own concealment for G.729 and Opus; G.711 Appendix I pitch
        repetition (spandsp) for G.711 and G.722.
        """
        result: bytes = self._native.conceal()
        return result

    def conceal_with_next(self, next_payload: Buffer) -> bytes:
        """One frame in place of a lost packet, given the packet after it.

        Opus rebuilds the lost frame from the in-band FEC the next packet
        carries (when the sender used ``useinbandfec``); other codecs conceal
        as ``conceal()``. The next packet must still be passed to ``decode()``.
        """
        result: bytes = self._native.conceal_with_next(next_payload)
        return result


class Resampler:
    """Streaming polyphase FIR sample-rate converter between 8, 16 and 48 kHz.

    Pieces of a stream join seamlessly; output lags input by ``delay`` samples.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._native = _native("Resampler")(in_rate, out_rate)

    @property
    def delay(self) -> int:
        """The filter's delay, in output samples."""
        result: int = self._native.delay
        return result

    def process(self, pcm: Buffer) -> bytes:
        """Convert the next piece of the stream."""
        result: bytes = self._native.process(pcm)
        return result


class Transcoder:
    """Decode one codec, resample, re-frame to the target's ``target_frame_ms`` and encode."""

    def __init__(
        self,
        source: str,
        target: str,
        source_fmtp: str = "",
        target_fmtp: str = "",
        target_frame_ms: int = 20,
    ) -> None:
        self._native = _native("Transcoder")(
            source, source_fmtp, target, target_fmtp, target_frame_ms
        )

    def transcode(self, payload: Buffer) -> list[bytes]:
        """The target payloads that this source payload completes (possibly none)."""
        result: list[bytes] = self._native.transcode(payload)
        return result

    def transcode_lost(self) -> list[bytes]:
        """Like ``transcode`` for a lost source packet (the decoder conceals)."""
        result: list[bytes] = self._native.transcode_lost()
        return result


def dtmf_event(digit: str) -> int:
    """The RFC 4733 event code of a DTMF digit (``0``-``9``, ``*``, ``#``, ``A``-``D``)."""
    result: int = _native("dtmf_event")(digit)
    return result


def dtmf_digit(event: int) -> str:
    """The DTMF digit of an RFC 4733 event code 0-15."""
    result: str = _native("dtmf_digit")(event)
    return result


@dataclass(frozen=True)
class TelephoneEvent:
    """One RFC 4733 telephone-event payload.

    ``volume`` is the level in dB below 0 dBm0 (0-63); ``duration`` is in RTP
    timestamp units since the event began.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def encode(self) -> bytes:
        """The 4-octet payload; ``CodecError`` if a field is out of range."""
        result: bytes = _native("telephone_event_encode")(
            self.event, self.end, self.volume, self.duration
        )
        return result

    @classmethod
    def decode(cls, payload: Buffer) -> TelephoneEvent:
        """Parse a payload; ``CodecError`` if it is shorter than 4 octets."""
        event, end, volume, duration = _native("telephone_event_decode")(payload)
        return cls(event, end, volume, duration)


class TelephoneEventPacket(NamedTuple):
    """An RTP packet the sender wants sent: marker bit, timestamp, payload."""

    marker: bool
    timestamp: int
    payload: bytes


class TelephoneEventSender:
    """Sends one event at a time as RFC 4733 asks.

    The first packet carries the marker bit; each packet interval sends an
    update with the grown duration; the end packet goes out three times. All
    packets of an event carry its start timestamp. Call ``next()`` once per
    packet interval.
    """

    def __init__(self, clock_rate: int = 8000, packet_ms: int = 20) -> None:
        self._native = _native("TelephoneEventSender")(clock_rate, packet_ms)

    @property
    def busy(self) -> bool:
        """True while an event's packets remain to be sent."""
        result: bool = self._native.busy
        return result

    def start(
        self, event: str | int, timestamp: int, duration_ms: int = 100, volume: int = 10
    ) -> None:
        """Begin sending ``event`` at RTP timestamp ``timestamp``.

        ``event`` is a DTMF digit (``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``)
        or an RFC 4733 event code (e.g. 16 for flash). ``CodecError`` if an
        event is still being sent, the digit is not DTMF, the code is not
        0-255 or the duration does not fit in one event's 16-bit duration field.
        """
        code = dtmf_event(event) if isinstance(event, str) else event
        if not 0 <= code <= 255:
            raise CodecError(f"telephone-event code must be 0-255: got {code}")
        self._native.start(code, timestamp, duration_ms, volume)

    def next(self) -> TelephoneEventPacket | None:
        """The packet for this interval, or ``None`` when idle."""
        packet = self._native.next()
        return None if packet is None else TelephoneEventPacket(*packet)


class ReceivedEvent(NamedTuple):
    """An event reported by ``TelephoneEventReceiver``."""

    event: int
    digit: str | None  # None for events that are not DTMF digits
    timestamp: int
    volume: int


class TelephoneEventReceiver:
    """Reports each RFC 4733 event once, on the first of its packets to arrive.

    A new event is recognised by a newer RTP timestamp; updates, retransmitted
    end packets and late packets of older events are dropped.
    """

    def __init__(self) -> None:
        self._native = _native("TelephoneEventReceiver")()

    def receive(self, timestamp: int, payload: Buffer) -> ReceivedEvent | None:
        """Feed one telephone-event packet; the event if it is a new one."""
        received = self._native.receive(timestamp, payload)
        if received is None:
            return None
        event, stamp, volume = received
        return ReceivedEvent(event, dtmf_digit(event) if event < 16 else None, stamp, volume)


class DtmfDetector:
    """In-band DTMF detection on 8 kHz audio, to ITU-T Q.24 (see docs/media.md).

    ``twist`` (low-group tone louder) and ``reverse_twist`` (high-group tone
    louder) are the largest level differences accepted, in dB;
    ``min_level_dbm0`` is the weakest tone accepted.
    """

    def __init__(self, twist: int = 10, reverse_twist: int = 10, min_level_dbm0: int = -30) -> None:
        self._native = _native("DtmfDetector")(twist, reverse_twist, min_level_dbm0)

    def process(self, pcm: Buffer) -> str:
        """Feed audio; the digits detected in it, in order (about 35 ms into each tone)."""
        result: str = self._native.process(pcm)
        return result

    def skip(self, samples: int) -> None:
        """Tell the detector that ``samples`` of audio were lost."""
        self._native.skip(samples)


class DtmfGenerator:
    """In-band DTMF generation at 8 kHz (spandsp's ``dtmf_tx``).

    ``level_dbm0`` is the low-group tone's level and the high-group tone is
    ``twist`` dB louder; ``on_ms`` and ``off_ms`` time each digit and the
    pause after it.
    """

    def __init__(
        self, level_dbm0: int = -10, twist: int = 0, on_ms: int = 100, off_ms: int = 100
    ) -> None:
        self._native = _native("DtmfGenerator")(level_dbm0, twist, on_ms, off_ms)

    @property
    def busy(self) -> bool:
        """True until ``generate`` has given out every queued digit and its pause."""
        result: bool = self._native.busy
        return result

    def queue(self, digits: str) -> None:
        """Queue digits to send; ``CodecError`` names a non-DTMF character."""
        self._native.queue(digits)

    def generate(self, samples: int) -> bytes:
        """The next ``samples`` of audio: queued digits, then silence."""
        result: bytes = self._native.generate(samples)
        return result


class ToneSpec(NamedTuple):
    """A call-progress tone: frequencies (Hz, 0 for none), level per frequency, cadence."""

    frequency1: int
    frequency2: int
    level_dbm0: int
    on_ms: int
    off_ms: int  # 0: continuous


def tone_plans() -> list[str]:
    """Known national tone plans: ``cn`` (the default), ``itu``, ``us``."""
    result: list[str] = _native("tone_plans")()
    return result


def tone_names() -> list[str]:
    """Tones every plan has: ``dial``, ``ringback``, ``busy``, ``congestion``."""
    result: list[str] = _native("tone_names")()
    return result


def tone_spec(tone: str, plan: str = "cn") -> ToneSpec:
    """The definition of ``tone`` in ``plan``; ``CodecError`` names the choices."""
    return ToneSpec(*_native("tone_spec")(plan, tone))


class ToneGenerator:
    """Generates one call-progress tone of a plan at 8 kHz, continuing its cadence."""

    def __init__(self, tone: str, plan: str = "cn") -> None:
        self._native = _native("ToneGenerator")(plan, tone)

    def generate(self, samples: int) -> bytes:
        """The next ``samples`` of the tone."""
        result: bytes = self._native.generate(samples)
        return result
