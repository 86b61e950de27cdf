"""A small client of rtpengine's ng control protocol over UDP.

Each message is a cookie, one space and a bencoded dictionary; the reply
carries the same cookie, and rtpengine answers a retransmitted cookie from
its cache, so a lost datagram is simply sent again. Commands used here:
``ping``, ``offer``, ``answer``, ``delete`` and ``start recording``, as
Sipwise's ng protocol documentation describes them.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass

from benchmarks import bencode

# rtpengine answers in well under a millisecond on loopback; a retry covers a lost datagram.
RETRY_S = 0.5
TRIES = 4
_MEDIA_PORT = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)


class NgError(RuntimeError):
    """rtpengine answered a command with an error, or not at all, or not in the protocol."""


@dataclass(frozen=True)
class Offered:
    """What rtpengine answered to an offer or answer: the rewritten SDP and any recording files."""

    sdp: bytes
    recordings: tuple[str, ...]

    @property
    def media_port(self) -> int:
        """The port rtpengine opened for the other side to send this call's audio to."""
        return media_port(self.sdp)


def media_port(sdp: bytes) -> int:
    """The port of the first ``m=audio`` line of an SDP body."""
    found = _MEDIA_PORT.search(sdp)
    if found is None:
        raise NgError(f"SDP without an m=audio line: {sdp[:200]!r}")
    return int(found.group(1))


def audio_sdp(host: str, port: int, session_id: int) -> bytes:
    """A phone's SDP offering PCMA (payload type 8) in 20 ms packets at ``host:port``."""
    lines = (
        "v=0",
        f"o=- {session_id} 1 IN IP4 {host}",
        "s=callbox-bench",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 8",
        "a=rtpmap:8 PCMA/8000",
        "a=ptime:20",
        "a=sendrecv",
    )
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class NgClient:
    """Commands to one rtpengine's ng port (UDP), one at a time."""

    def __init__(self, host: str, port: int, timeout_s: float = RETRY_S * TRIES) -> None:
        self._address = (host, port)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.connect(self._address)
        self._cookies = itertools.count(1)
        # rtpengine answers a cookie it has seen from its cache: cookies must be unique
        # across clients and restarts, not just within this one.
        self._prefix = f"{os.getpid()}_{secrets.token_hex(4)}_"
        self._retry_s = min(RETRY_S, timeout_s)
        self._tries = max(1, round(timeout_s / self._retry_s))

    def close(self) -> None:
        """Close the control socket."""
        self._socket.close()

    def __enter__(self) -> NgClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, command: str, **fields: bencode.Encodable) -> dict[bytes, bencode.Value]:
        """Send ``command`` with ``fields`` (``call_id`` becomes ``call-id``) and return the reply.

        Raises :class:`NgError` on an ``error`` result, a reply that is not a
        bencoded dictionary, or no reply after every retry.
        """
        message: dict[str, bencode.Encodable] = {"command": command}
        message.update({name.replace("_", "-"): value for name, value in fields.items()})
        cookie = f"{self._prefix}{next(self._cookies)}".encode("ascii")
        datagram = cookie + b" " + bencode.encode(message)
        for _ in range(self._tries):
            self._socket.send(datagram)
            reply = self._receive(cookie, time.monotonic() + self._retry_s)
            if reply is not None:
                return self._checked(command, reply)
        raise NgError(f"no reply from rtpengine at {self._address} to '{command}'")

    def _receive(self, cookie: bytes, deadline: float) -> bytes | None:
        """The body of the reply carrying ``cookie``, or None at the deadline."""
        while (left := deadline - time.monotonic()) > 0:
            self._socket.settimeout(left)
            try:
                datagram = self._socket.recv(65535)
            except TimeoutError:
                return None
            except ConnectionRefusedError:  # nothing listening (yet): try again after a pause
                time.sleep(min(left, 0.05))
                continue
            reply_cookie, _, body = datagram.partition(b" ")
            if reply_cookie == cookie:
                return body
        return None  # replies to earlier, abandoned cookies are skipped above

    @staticmethod
    def _checked(command: str, body: bytes) -> dict[bytes, bencode.Value]:
        try:
            reply = bencode.decode(body)
        except bencode.BencodeError as error:
            raise NgError(f"rtpengine's reply to '{command}' is not bencode: {error}") from error
        if not isinstance(reply, dict):
            raise NgError(f"rtpengine's reply to '{command}' is not a dictionary")
        result = reply.get(b"result")
        if result == b"error":
            reason = reply.get(b"error-reason", b"no reason given")
            text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            raise NgError(f"rtpengine refused '{command}': {text}")
        if result not in (b"ok", b"pong"):
            raise NgError(f"rtpengine's reply to '{command}' has result {result!r}")
        return reply

    def ping(self) -> None:
        """Check that rtpengine answers (``pong``)."""
        if self.request("ping").get(b"result") != b"pong":
            raise NgError("rtpengine answered 'ping' without 'pong'")

    def offer(self, call_id: str, from_tag: str, sdp: bytes, *, record: bool = False) -> Offered:
        """The caller's SDP in, the SDP for the callee out (naming rtpengine's port for the callee).

        With ``record`` the call is recorded from the start (``record call``).
        """
        extra: dict[str, bencode.Encodable] = {"record call": "yes"} if record else {}
        reply = self.request("offer", call_id=call_id, from_tag=from_tag, sdp=sdp, **extra)
        return self._offered("offer", reply)

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> Offered:
        """The callee's SDP in, the SDP for the caller out (naming rtpengine's port for it)."""
        reply = self.request("answer", call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp)
        return self._offered("answer", reply)

    def start_recording(self, call_id: str, from_tag: str) -> None:
        """Record a call from now on (rtpengine's recording method: pcap files)."""
        self.request("start recording", call_id=call_id, from_tag=from_tag)

    def delete(self, call_id: str, from_tag: str) -> None:
        """End a call: rtpengine closes its ports and finishes its recording."""
        self.request("delete", call_id=call_id, from_tag=from_tag)

    @staticmethod
    def _offered(command: str, reply: dict[bytes, bencode.Value]) -> Offered:
        sdp = reply.get(b"sdp")
        if not isinstance(sdp, bytes):
            raise NgError(f"rtpengine's reply to '{command}' has no SDP")
        files = reply.get(b"recordings", [])
        recordings = tuple(
            f.decode("utf-8", "replace") for f in files if isinstance(f, bytes)
        ) if isinstance(files, list) else ()  # fmt: skip
        return Offered(sdp=sdp, recordings=recordings)
