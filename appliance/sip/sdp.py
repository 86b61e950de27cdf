"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio calls.

``parse_sdp`` reads a session description and raises only ``SdpError``;
``SessionDescription.to_bytes`` writes one. ``create_offer`` and
``create_answer`` apply RFC 3264 with the switch's codec preference order,
RFC 4733 telephone-event, ``ptime``, the direction attributes (section 6.1's
mirror rule, and hold) and RFC 5761 ``rtcp-mux``. ``negotiate`` reads the
outcome both sides agreed on.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Literal

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3264 6.1: what the answerer says for each offered direction.
_MIRROR: dict[Direction, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}

# RFC 3551 table 4: static audio payload types the switch can meet.
STATIC_PAYLOAD_TYPES = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    18: ("G729", 8000, 1),
}

_LINE_RE = re.compile(r"([a-z])=(.*)")
_ORDER = "vosiuepcbtrzkam"  # RFC 4566 5: session-level line order


class SdpError(ValueError):
    """A session description that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Codec:
    """An RTP payload format as SDP names it (``a=rtpmap``, ``a=fmtp``)."""

    name: str
    clock_rate: int
    channels: int = 1
    payload_type: int = -1
    fmtp: str | None = None

    def same_format(self, other: Codec) -> bool:
        """True when both name the same encoding (RFC 3264 6.1 compares these)."""
        return (self.name.lower(), self.clock_rate, self.channels) == (
            other.name.lower(),
            other.clock_rate,
            other.channels,
        )

    @property
    def rtpmap(self) -> str:
        """The ``a=rtpmap`` value."""
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.name}/{self.clock_rate}{channels}"


TELEPHONE_EVENT = Codec("telephone-event", 8000, fmtp="0-16")

DEFAULT_PREFERENCE: tuple[Codec, ...] = (
    Codec("PCMA", 8000, payload_type=8),
    Codec("PCMU", 8000, payload_type=0),
    Codec("G722", 8000, payload_type=9),
    Codec("G729", 8000, payload_type=18, fmtp="annexb=no"),
    Codec("opus", 48000, 2, payload_type=111, fmtp="useinbandfec=1"),
)
"""The switch's codecs, best first (China's PSTN is A-law, so PCMA leads)."""


@dataclass
class Media:
    """One ``m=`` section with its own lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    bandwidth: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The first ``a=name`` value ("" for a flag), or None."""
        return next((v or "" for k, v in self.attributes if k == name), None)

    def attribute_values(self, name: str) -> list[str]:
        """Every ``a=name`` value."""
        return [v or "" for k, v in self.attributes if k == name]

    @property
    def codecs(self) -> list[Codec]:
        """The formats as codecs, in the m= line's (preference) order."""
        rtpmaps: dict[int, Codec] = {}
        for value in self.attribute_values("rtpmap"):
            m = re.fullmatch(r"(\d+) ([^/\s]+)/(\d+)(?:/(\d+))?", value.strip())
            if m is None:
                raise SdpError(f"bad a=rtpmap:{value}")
            pt = int(m.group(1))
            rtpmaps[pt] = Codec(m.group(2), int(m.group(3)), int(m.group(4) or 1), pt)
        fmtps: dict[int, str] = {}
        for value in self.attribute_values("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text.isdigit():
                fmtps[int(pt_text)] = params
        codecs = []
        for fmt in self.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            codec = rtpmaps.get(pt)
            if codec is None and pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
                codec = Codec(name, rate, channels, pt)
            if codec is not None:
                codecs.append(replace(codec, fmtp=fmtps.get(pt)))
        return codecs

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any."""
        return next((d for d in DIRECTIONS if self.attribute(d) is not None), None)

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds."""
        value = self.attribute("ptime")
        return int(float(value)) if value else None

    @property
    def rtcp_mux(self) -> bool:
        """RFC 5761: RTP and RTCP on one port."""
        return self.attribute("rtcp-mux") is not None


@dataclass
class SessionDescription:
    """A whole SDP body (RFC 4566 5)."""

    origin: str
    session_name: str = "-"
    connection: str | None = None
    times: list[str] = field(default_factory=lambda: ["0 0"])
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    """Session-level lines this module does not interpret (i, u, e, p, b, z, k, r)."""

    def attribute(self, name: str) -> str | None:
        """The first session-level ``a=name`` value ("" for a flag), or None."""
        return next((v or "" for k, v in self.attributes if k == name), None)

    def direction_of(self, media: Media) -> Direction:
        """A stream's direction: media level, else session level, else sendrecv."""
        session = next((d for d in DIRECTIONS if self.attribute(d) is not None), None)
        return media.direction or session or "sendrecv"

    def address_of(self, media: Media) -> str:
        """The stream's connection address (media ``c=`` else session ``c=``)."""
        connection = media.connection or self.connection
        if connection is None:
            raise SdpError(f"no c= line for m={media.media}")
        return connection.split()[2].split("/")[0]

    def to_bytes(self) -> bytes:
        """The description as SDP text with CRLF line ends."""
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        before_c = [(k, v) for k, v in self.other if _ORDER.index(k) < _ORDER.index("c")]
        after_c = [(k, v) for k, v in self.other if _ORDER.index(k) > _ORDER.index("c")]
        lines += [f"{k}={v}" for k, v in before_c]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"{k}={v}" for k, v in after_c if k == "b"]
        lines += [f"t={t}" for t in self.times]
        lines += [f"{k}={v}" for k, v in after_c if k != "b"]
        lines += [_attribute_line(k, v) for k, v in self.attributes]
        for media in self.media:
            lines.append(f"m={media.media} {media.port} {media.proto} {' '.join(media.formats)}")
            if media.connection is not None:
                lines.append(f"c={media.connection}")
            lines += [f"b={b}" for b in media.bandwidth]
            lines += [_attribute_line(k, v) for k, v in media.attributes]
        return ("\r\n".join(lines) + "\r\n").encode()


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _check_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c={value}")
    address = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+", address):
            raise SdpError(f"bad c={value}") from None
    return value


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises SdpError naming the first bad line."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = [line for line in re.split(r"\r?\n", text) if line]
    if not lines or lines[0] != "v=0":
        raise SdpError("first line must be v=0")
    session: SessionDescription | None = None
    current: Media | None = None
    times: list[str] = []
    for line in lines[1:]:
        m = _LINE_RE.fullmatch(line)
        if m is None:
            raise SdpError(f"bad line {line!r}")
        kind, value = m.group(1), m.group(2)
        if kind == "o":
            if session is not None or len(value.split()) != 6:
                raise SdpError(f"bad o={value}")
            session = SessionDescription(origin=value)
            continue
        if session is None:
            raise SdpError("o= must follow v=")
        if kind == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"bad m={value}")
            current = Media(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:])
            session.media.append(current)
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            attribute = (name, attr_value if colon else None)
            (current.attributes if current else session.attributes).append(attribute)
        elif kind == "c":
            if current is not None:
                current.connection = _check_connection(value)
            else:
                session.connection = _check_connection(value)
        elif kind == "b" and current is not None:
            current.bandwidth.append(value)
        elif kind == "s" and current is None:
            session.session_name = value
        elif kind == "t" and current is None:
            times.append(value)
        elif kind in _ORDER and current is None:
            session.other.append((kind, value))
        elif current is None:
            raise SdpError(f"unknown line {line!r}")
    if session is None:
        raise SdpError("missing o= line")
    session.times = times or ["0 0"]
    for media in session.media:
        if media.port and media.media == "audio":
            session.address_of(media)
            _ = media.codecs  # reading them checks the a=rtpmap lines now, not mid-call
    return session


def _origin(address: str, version: int = 1) -> str:
    family = "IP6" if ":" in address else "IP4"
    return f"callbox {secrets.randbelow(2**62)} {version} IN {family} {address}"


def _connection(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def _audio_attributes(
    codecs: list[Codec], ptime: int, direction: Direction, rtcp_mux: bool
) -> list[tuple[str, str | None]]:
    attributes: list[tuple[str, str | None]] = []
    for codec in codecs:
        attributes.append(("rtpmap", codec.rtpmap))
        if codec.fmtp:
            attributes.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    attributes.append(("ptime", str(ptime)))
    if rtcp_mux:
        attributes.append(("rtcp-mux", None))
    attributes.append((direction, None))
    return attributes


def create_offer(
    address: str,
    port: int,
    codecs: tuple[Codec, ...] = DEFAULT_PREFERENCE,
    *,
    telephone_event_pt: int = 101,
    ptime: int = 20,
    direction: Direction = "sendrecv",
    rtcp_mux: bool = True,
) -> SessionDescription:
    """An offer for one audio stream, codecs in preference order (RFC 3264 5)."""
    offered = [*codecs, replace(TELEPHONE_EVENT, payload_type=telephone_event_pt)]
    media = Media(
        "audio",
        port,
        "RTP/AVP",
        [str(c.payload_type) for c in offered],
        attributes=_audio_attributes(offered, ptime, direction, rtcp_mux),
    )
    return SessionDescription(_origin(address), connection=_connection(address), media=[media])


def create_answer(
    offer: SessionDescription,
    address: str,
    port: int,
    codecs: tuple[Codec, ...] = DEFAULT_PREFERENCE,
    *,
    ptime: int = 20,
    hold: bool = False,
    rtcp_mux: bool = True,
) -> SessionDescription:
    """RFC 3264 6: answer each m= line; the first usable audio stream is accepted.

    Codecs are those both sides have, in *our* preference order, with the
    offer's payload type numbers (6.1); telephone-event is kept if offered.
    Other streams are rejected with port 0 (6). ``hold`` answers the way
    RFC 3264 8.4 puts a stream on hold (sendonly, or inactive).
    """
    answered: list[Media] = []
    accepted = False
    for offered in offer.media:
        common = _common_codecs(offered, codecs) if offered.port and not accepted else []
        if offered.media != "audio" or not common:
            answered.append(Media(offered.media, 0, offered.proto, offered.formats))
            continue
        accepted = True
        event = next((c for c in offered.codecs if c.name.lower() == TELEPHONE_EVENT.name), None)
        chosen = [*common, *([event] if event else [])]
        direction = _MIRROR[offer.direction_of(offered)]
        if hold:
            direction = "sendonly" if direction in ("sendrecv", "sendonly") else "inactive"
        answered.append(
            Media(
                "audio",
                port,
                offered.proto,
                [str(c.payload_type) for c in chosen],
                attributes=_audio_attributes(
                    chosen, offered.ptime or ptime, direction, rtcp_mux and offered.rtcp_mux
                ),
            )
        )
    return SessionDescription(_origin(address), connection=_connection(address), media=answered)


def _common_codecs(offered: Media, ours: tuple[Codec, ...]) -> list[Codec]:
    theirs = offered.codecs
    common = []
    for mine in ours:
        match = next((c for c in theirs if c.same_format(mine)), None)
        if match is not None:
            common.append(replace(match, fmtp=match.fmtp or mine.fmtp))
    return common


@dataclass(frozen=True)
class Negotiated:
    """What one audio stream will carry after offer and answer."""

    codec: Codec
    telephone_event: Codec | None
    ptime: int
    direction: Direction
    """From the answerer's point of view."""
    rtcp_mux: bool
    remote_address: str
    remote_port: int
    """The answerer's RTP address and port (where the offerer sends)."""


def negotiate(offer: SessionDescription, answer: SessionDescription) -> Negotiated | None:
    """The first accepted audio stream, or None if every stream was rejected."""
    if len(answer.media) != len(offer.media):
        raise SdpError("answer must have one m= line per offered m= line (RFC 3264 6)")
    for offered, answered in zip(offer.media, answer.media, strict=True):
        if offered.media != "audio" or answered.port == 0:
            continue
        codecs = answered.codecs
        voice = [c for c in codecs if c.name.lower() != TELEPHONE_EVENT.name]
        if not voice:
            raise SdpError("accepted audio stream without a voice codec")
        event = next((c for c in codecs if c.name.lower() == TELEPHONE_EVENT.name), None)
        return Negotiated(
            codec=voice[0],
            telephone_event=event,
            ptime=answered.ptime or offered.ptime or 20,
            direction=answer.direction_of(answered),
            rtcp_mux=offered.rtcp_mux and answered.rtcp_mux,
            remote_address=answer.address_of(answered),
            remote_port=answered.port,
        )
    return None
