"""The media engine: workers, RTP legs, bridges, recordings, events (core/engine/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader
from core._codecs import codec_info
from core._jitter import JitterStats
from core._mixer import SupervisorMode, gain_q12, route_supervisor
from core._player import Prompt, Silence, _playlist_items
from core._record import RecordingInfo, _ClosedOnExit

# Static payload types (RFC 3551); dynamic ones (opus) must be given.
_STATIC_PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "G729": 18}


@dataclass(frozen=True)
class LegStats:
    """Counters and quality of one leg: RFC 3550 receive statistics, RTCP, E-model.

    ``lost`` and ``expected`` cover every source the leg has heard (a new SSRC
    starts a new RFC 3550 source); ``malformed`` counts datagrams that were not
    valid RTP/RTCP and ``foreign`` RTP from an address the leg has not latched
    to. ``rtt_ms`` and ``remote_fraction_lost`` are ``None`` until the far end's
    RTCP says. ``jitter_buffer`` holds the leg's jitter buffer counters while
    its audio is decoded on the worker (a transcoding bridge, a recording,
    in-band DTMF detection), else ``None``: a relay adds no buffer. ``mos`` is
    the E-model estimate for the audio this leg receives; its delay is the
    jitter buffer's mean waiting time when the leg has one, else twice the
    interarrival jitter.
    """

    local_ssrc: int
    remote_ssrc: int
    remote: str
    packets_received: int
    octets_received: int
    packets_sent: int
    octets_sent: int
    malformed: int
    foreign: int
    expected: int
    lost: int
    duplicates: int
    reordered: int
    jitter_ms: float
    rtcp_sent: int
    rtcp_received: int
    rtt_ms: float | None
    remote_fraction_lost: int | None
    remote_cumulative_lost: int
    remote_jitter_ms: float
    jitter_buffer: JitterStats | None
    r_factor: float
    mos: float

    @classmethod
    def _from_core(cls, values: dict[str, Any]) -> LegStats:
        converted = dict(values)
        if values["jitter_buffer"] is not None:
            converted["jitter_buffer"] = JitterStats(*values["jitter_buffer"])
        return cls(**{f.name: converted[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class MediaEvent:
    """Something a leg reports.

    ``kind`` is one of:

    - ``rtp_timeout``, ``rtp_resumed``, ``bye``;
    - ``latched``: ``detail`` is the new remote address;
    - ``dtmf``: ``detail`` is the digit, ``reason`` how it came (``rfc4733``
      or ``inband``), ``duration_ms`` how long it lasted (RFC 4733 only);
    - ``playback_finished``: ``reason`` is ``finished``, ``digit`` (barge-in,
      ``detail`` the digit), ``stopped`` (``detail`` is ``replaced`` when a
      new playback took its place) or ``error`` (``detail`` says what);
    - ``stats``: ``stats`` holds the leg's statistics (every
      ``stats_interval`` seconds when the leg was created with one);
    - ``talk_start``, ``talk_stop``: the leg started or stopped talking in a
      conference (``detail`` the conference's id);
    - ``error``: the leg's audio failed on the worker (``detail`` says how);
      the leg and the worker carry on.
    """

    kind: str
    leg: int
    detail: str
    reason: str = ""
    duration_ms: int | None = None
    stats: LegStats | None = None

    @classmethod
    def _from_core(
        cls, event: tuple[str, int, str, str, int | None, dict[str, Any] | None]
    ) -> MediaEvent:
        kind, leg, detail, reason, duration_ms, stats = event
        return cls(
            kind, leg, detail, reason, duration_ms,
            LegStats._from_core(stats) if stats is not None else None,
        )  # fmt: skip


DTMF_DIGITS = frozenset("0123456789*#ABCD")
"""The digits :meth:`RtpLeg.send_dtmf` sends."""


class RtpLeg:
    """A handle on one RTP leg of an :class:`Engine` (created by :meth:`Engine.create_rtp_leg`)."""

    def __init__(
        self, engine: Engine, leg_id: int, local_port: int, local_rtcp_port: int, sample_rate: int
    ) -> None:
        self.engine = engine
        self.id = leg_id
        self.sample_rate = sample_rate
        """The PCM rate of the leg's codec (8000 for G.711 and G.729, 16000 for
        G.722, 48000 for Opus): what its prompts are played at."""
        self.local_port = local_port
        """The even local RTP port."""
        self.local_rtcp_port = local_rtcp_port
        """``local_port + 1``, or ``local_port`` itself with rtcp-mux."""

    def __repr__(self) -> str:
        return f"<RtpLeg {self.id} port {self.local_port}>"

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """Where to send RTP (and RTCP: ``port + 1`` by default, ``port`` with rtcp-mux).

        The leg latches to the address RTP actually comes from (symmetric RTP).
        Raises ``ValueError`` for an address that is not IPv4 or a bad port.
        """
        _check_port(port, "port")
        if rtcp_port is None:
            rtcp_port = port if self.local_rtcp_port == self.local_port else port + 1
        _check_port(rtcp_port, "rtcp_port")
        self.engine._core.set_remote(self.id, host, port, rtcp_port)

    def hold(self, on_hold: bool = True) -> None:
        """Put the leg on hold (no RTP timeout while held) or take it off hold."""
        self.engine._core.set_hold(self.id, on_hold)

    def detect_inband_dtmf(self, on: bool = True) -> None:
        """Start or stop detecting DTMF in the leg's audio (``dtmf`` events, reason
        ``inband``), as ``inband_dtmf`` at creation does. A leg with telephone-event
        detects none either way. Stopped, a relayed leg's audio is no longer decoded
        for it (its tones still reach a bridged peer in the audio itself)."""
        self.engine._core.set_inband_dtmf(self.id, on)

    def send(self, payload: Buffer, timestamp: int, *, marker: bool = False) -> None:
        """Queue one frame of codec payload for the far end, sent at the next tick.

        ``timestamp`` is in the codec's clock units; the leg numbers packets itself.
        Raises ``ValueError`` for a payload that does not fit one datagram.
        """
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp must be in 0..4294967295: got {timestamp}")
        self.engine._core.send(self.id, payload, timestamp, marker)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Send DTMF ``digits`` (0-9 * # A-D) to the far end, one after another.

        With a ``telephone_event`` payload type the leg sends RFC 4733 events
        (updates every 20 ms, the end packet three times); without one it sends
        in-band tones in its codec. Either replaces the leg's other audio while
        it lasts. Raises ``ValueError`` for an empty string, a character that is
        not a DTMF digit, or a duration outside 40..1000 ms.
        """
        if not digits or not set(digits) <= DTMF_DIGITS:
            raise ValueError(f"digits must be a non-empty string of 0-9 * # A-D: got {digits!r}")
        if not 40 <= duration_ms <= 1000:
            raise ValueError(f"duration_ms must be 40..1000: got {duration_ms}")
        self.engine._core.send_dtmf(self.id, digits, duration_ms)

    def play_tone(
        self,
        tone: str,
        *,
        plan: str = "cn",
        duration: float | None = None,
        barge_in: bool = True,
    ) -> None:
        """Play a call-progress tone (``core.tone_names()``) of ``plan`` to the far end.

        While it plays, the leg sends the tone instead of its bridged audio. It
        ends after ``duration`` seconds (``None``: when stopped), on a DTMF
        digit from the far end if ``barge_in``, or when replaced; then a
        ``playback_finished`` event says why. Raises ``ValueError`` (a
        ``CodecError``) for an unknown tone or plan, ``ValueError`` for a
        duration that is not positive.
        """
        if duration is not None and not 0 < duration <= 86400:
            raise ValueError(
                f"duration must be positive seconds (at most a day) or None: got {duration}"
            )
        duration_ms = round(duration * 1000) if duration is not None else 0
        self.engine._core.play_tone(self.id, plan, tone, duration_ms, barge_in)

    def play(
        self, playlist: Sequence[Prompt | Silence], *, loop: bool = False, barge_in: str = ""
    ) -> None:
        """Play prompts and silences in order to the far end (music on hold with ``loop``).

        The engine's worker runs a prompt player at the leg's
        :attr:`sample_rate` (prompts at another rate are resampled now, once,
        sharing the decoded prompts): while it plays, the leg sends it instead
        of its bridged audio, which resumes after. A playlist that does not
        loop ends after its last item (``playback_finished``, reason
        ``finished``); ``loop`` starts over until :meth:`stop_playback`
        (reason ``stopped``). A DTMF digit from the far end that is in
        ``barge_in`` ends it (reason ``digit``, ``detail`` the digit). A new
        :meth:`play` or :meth:`play_tone` replaces it (reason ``stopped``,
        ``detail`` ``replaced``). Raises ``TypeError`` for an item that is not
        a :class:`~core.Prompt` or :class:`~core.Silence`, ``ValueError`` for
        a bad barge-in digit or a looping playlist of no length.
        """
        self.engine._core.play(self.id, _playlist_items(playlist), self.sample_rate, loop, barge_in)

    def stop_playback(self) -> None:
        """End what plays into the leg (``playback_finished``, reason ``stopped``); else a no-op."""
        self.engine._core.stop_playback(self.id)

    def stats(self) -> LegStats:
        """The leg's statistics and quality now."""
        return LegStats._from_core(self.engine._core.stats(self.id))

    @property
    def worker(self) -> int:
        """The index of the engine worker the leg lives on (legs bridged must share one)."""
        index: int = self.engine._core.worker_of(self.id)
        return index

    def close(self) -> LegStats:
        """Close the leg (its ports are freed) and return its final statistics."""
        return LegStats._from_core(self.engine._core.close_leg(self.id))


class CallRecording(_ClosedOnExit):
    """A recording of two legs' received audio (created by :meth:`Engine.record`).

    The worker pushes each leg's decoded frame of every tick into the
    recording's lock-free ring; a writer thread writes the WAV. ``with``
    stops it.
    """

    def __init__(self, engine: Engine, recording_id: int, path: str) -> None:
        self.engine = engine
        self.id = recording_id
        self.path = path
        self._info: RecordingInfo | None = None

    def __repr__(self) -> str:
        return f"<CallRecording {self.id} {self.path!r}>"

    def close(self) -> RecordingInfo:
        """The same as :meth:`stop` (what ``with`` calls)."""
        return self.stop()

    def pause(self) -> None:
        """Record silence from now on (say, while a card number is read); the timing is kept.

        Raises ``ValueError`` once stopped.
        """
        self._check_open()
        self.engine._core.pause_recording(self.id, True)

    def resume(self) -> None:
        """Record the audio again. Raises ``ValueError`` once stopped."""
        self._check_open()
        self.engine._core.pause_recording(self.id, False)

    def stop(self) -> RecordingInfo:
        """Stop feeding the recording, finish the file and return what it holds (idempotent).

        Waits for the next tick and for the writer (a few tens of ms); from a
        coroutine, use ``asyncio.to_thread``. Raises ``RecordError`` if the
        file could not be written, or once the engine was closed (its
        recordings were finished then).
        """
        if self._info is None:
            self._info = RecordingInfo(*self.engine._core.stop_recording(self.id))
        return self._info

    def _check_open(self) -> None:
        if self._info is not None:
            raise ValueError(f"the recording {self.path!r} is stopped")


class Conference(_ClosedOnExit):
    """A conference on one worker (created by :meth:`Engine.create_conference`).

    Every member hears the others (N-1 mixes from one sum, with a limiter);
    each member's audio comes through its own jitter buffer and decoder and
    what it hears is encoded in its own codec. Members who hear the whole
    conference and use G.711 share one encode per codec. Talkers are reported
    as ``talk_start`` and ``talk_stop`` events (``detail`` the conference id).
    ``with`` closes it.
    """

    def __init__(self, engine: Engine, conference_id: int) -> None:
        self.engine = engine
        self.id = conference_id

    def __repr__(self) -> str:
        return f"<Conference {self.id}>"

    def add(self, leg: RtpLeg, *, gain_db: float = 0.0, muted: bool = False) -> None:
        """Join ``leg`` (unbridging it, or taking it from another conference, first).

        The leg must live on the conference's worker (``beside=`` a member).
        """
        self.engine._check_own(leg)
        q12 = gain_q12(gain_db)
        self.engine._core.conference_add(self.id, leg.id)
        self.engine._core.conference_set_gain(self.id, leg.id, q12)
        self.engine._core.conference_set_muted(self.id, leg.id, muted)

    def remove(self, leg: RtpLeg) -> None:
        """Take ``leg`` out (it then sends nothing until bridged or played to)."""
        self.engine._check_own(leg)
        self.engine._core.conference_remove(self.id, leg.id)

    def set_gain(self, leg: RtpLeg, gain_db: float) -> None:
        """Scale what ``leg`` says by ``gain_db`` (-60..+20 dB) for every listener."""
        self.engine._check_own(leg)
        self.engine._core.conference_set_gain(self.id, leg.id, gain_q12(gain_db))

    def set_muted(self, leg: RtpLeg, muted: bool = True) -> None:
        """Mute: nobody hears ``leg``; it still hears, and is still reported talking."""
        self.engine._check_own(leg)
        self.engine._core.conference_set_muted(self.id, leg.id, muted)

    def set_hears(self, listener: RtpLeg, talker: RtpLeg, hears: bool) -> None:
        """Whether ``listener`` hears ``talker`` (everyone hears everyone by default)."""
        self.engine._check_own(listener)
        self.engine._check_own(talker)
        self.engine._core.conference_set_hears(self.id, listener.id, talker.id, hears)

    def supervise(
        self, supervisor: RtpLeg, agent: RtpLeg, caller: RtpLeg, mode: SupervisorMode
    ) -> None:
        """Route a supervisor on an agent's call (all three members); call again to change mode.

        The supervisor always hears both. LISTEN: nobody hears it; WHISPER:
        only the agent does; BARGE: both do.
        """
        route_supervisor(self.set_hears, supervisor, agent, caller, mode)

    def close(self) -> None:
        """End the conference; its members stay open and send nothing until bridged again."""
        self.engine._core.close_conference(self.id)


def _check_port(port: int, name: str) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"{name} must be in 1..65535: got {port}")


class Engine:
    """The real-time media engine: worker threads that carry every call's RTP.

    Each worker is one thread with its own epoll set and a 20 ms tick; a leg
    lives on one worker, and legs to be bridged must share one (create the
    second with ``beside=`` the first). Commands are applied at the worker's
    next tick; calls that wait for that release the GIL. Events arrive through
    :meth:`fileno` (readable when :meth:`poll_events` has something), which is
    what ``appliance.media`` hands to the asyncio loop.

    ``workers`` of ``None`` or 0 starts one per CPU core. Raises ``ValueError``
    for a bad worker count, port range or address, and ``RuntimeError`` under
    ``CALLBOX_CORE=python`` (the twin has no engine).
    """

    def __init__(
        self,
        workers: int | None = None,
        port_min: int = 20000,
        port_max: int = 29999,
        host: str = "0.0.0.0",
    ) -> None:
        if not hasattr(_loader.impl, "Engine"):
            raise RuntimeError(
                "the media engine needs the compiled core; "
                f"CALLBOX_CORE={_loader.IMPLEMENTATION} has none"
            )
        # 0 means one per core, as the [media] workers setting says.
        count = workers if workers else os.cpu_count() or 1
        if not 1 <= count <= 256:
            raise ValueError(f"workers must be 1..256: got {count}")
        _check_port(port_min, "port_min")
        _check_port(port_max, "port_max")
        self._core = _loader.impl.Engine(count, port_min, port_max, host)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def workers(self) -> int:
        """How many worker threads the engine runs."""
        result: int = self._core.worker_count()
        return result

    def create_rtp_leg(
        self,
        *,
        codec: str = "PCMU",
        payload_type: int | None = None,
        clock_rate: int | None = None,
        rtcp_mux: bool = False,
        rtp_timeout: float | None = None,
        rtcp_interval: float = 5.0,
        cname: str = "",
        beside: RtpLeg | None = None,
        fmtp: str = "",
        telephone_event: int | None = None,
        inband_dtmf: bool = False,
        stats_interval: float | None = None,
    ) -> RtpLeg:
        """Bind a local port pair from the range and start an RTP leg on a worker.

        ``codec`` is the SDP encoding name (PCMU, PCMA, G722, G729, opus);
        ``payload_type`` defaults to its static number (required for dynamic
        codecs such as opus) and ``clock_rate`` to its RTP clock (48000 for
        opus, 8000 for the others); ``fmtp`` is the far end's ``a=fmtp`` for it.
        ``telephone_event`` is the RFC 4733 payload type from SDP (``None``:
        the far end has none, so DTMF goes in-band); received events become
        ``dtmf`` events. ``inband_dtmf`` runs a DTMF detector on the decoded
        audio of a leg without telephone-event. ``rtp_timeout`` (seconds)
        raises an ``rtp_timeout`` event when no RTP arrives for that long,
        except on hold. ``stats_interval`` (seconds) sends a ``stats`` event
        that often. ``beside`` puts the leg on the same worker as another, so
        the two can be bridged or recorded together.

        Raises ``ValueError`` naming a bad argument, ``RuntimeError`` when the
        port range is exhausted or the engine is closed.
        """
        if payload_type is None:
            if codec.upper() not in _STATIC_PAYLOAD_TYPES:
                raise ValueError(f"codec {codec!r} has no static payload type: give payload_type")
            payload_type = _STATIC_PAYLOAD_TYPES[codec.upper()]
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload_type must be in 0..127: got {payload_type}")
        if clock_rate is None:
            clock_rate = codec_info(codec).rtp_clock_rate
        if not 1 <= clock_rate <= 192000:
            raise ValueError(f"clock_rate must be in 1..192000: got {clock_rate}")
        if rtp_timeout is not None and rtp_timeout <= 0:
            raise ValueError(f"rtp_timeout must be positive seconds or None: got {rtp_timeout}")
        if rtcp_interval <= 0:
            raise ValueError(f"rtcp_interval must be positive seconds: got {rtcp_interval}")
        if len(cname.encode()) > 255:
            raise ValueError(f"cname must be at most 255 bytes in UTF-8: got {len(cname.encode())}")
        if beside is not None:
            self._check_own(beside)
        if telephone_event is not None and not (
            0 <= telephone_event <= 127 and telephone_event != payload_type
        ):
            raise ValueError(
                "telephone_event must be a payload type in 0..127 other than the codec's "
                f"({payload_type}): got {telephone_event}"
            )
        if stats_interval is not None and stats_interval <= 0:
            raise ValueError(
                f"stats_interval must be positive seconds or None: got {stats_interval}"
            )
        leg_id, port, rtcp_port = self._core.create_rtp_leg(
            codec, payload_type, clock_rate, rtcp_mux, rtp_timeout or 0.0, rtcp_interval, cname,
            beside.id if beside is not None else None, fmtp,
            -1 if telephone_event is None else telephone_event, inband_dtmf,
            stats_interval or 0.0,
        )  # fmt: skip
        return RtpLeg(self, leg_id, port, rtcp_port, codec_info(codec).sample_rate)

    def bridge(self, a: RtpLeg, b: RtpLeg) -> None:
        """Join two legs so each far end hears the other.

        Legs of the same codec relay each received packet to the other at once,
        without buffering. Legs of different codecs transcode: each side's audio
        goes through a jitter buffer and decoder and is encoded for the other on
        the 20 ms tick. DTMF crosses too: RFC 4733 events are forwarded under the
        other leg's payload type, or played as in-band tones to a leg without
        one. Each leg keeps its own SSRC and continues its own sequence and
        timestamp across re-bridges, so each far end sees one continuous stream.
        A leg already bridged elsewhere is unbridged first. Raises
        ``ValueError`` if the legs live on different workers.
        """
        self._core.bridge(a.id, b.id)

    def record(
        self,
        path: str | os.PathLike[str],
        *,
        left: RtpLeg,
        right: RtpLeg,
        layout: Literal["stereo", "mono"] = "stereo",
        sample_rate: int = 8000,
    ) -> CallRecording:
        """Record what ``left`` (the caller) and ``right`` (the agent) receive into a WAV.

        ``stereo`` puts ``left`` on the left channel and ``right`` on the right;
        ``mono`` their sum. Each leg's audio comes through its own jitter
        buffer and decoder, resampled to ``sample_rate`` (8000 or 16000); a leg
        with no audio yet (or closed) records silence. A killed process leaves
        a WAV that plays to within a second of the kill. Raises ``ValueError``
        for bad arguments or legs on different workers, ``RecordError`` if the
        file cannot be created.
        """
        if sample_rate not in (8000, 16000):
            raise ValueError(f"sample_rate must be 8000 or 16000: got {sample_rate}")
        if layout not in ("stereo", "mono"):
            raise ValueError(f"layout must be 'stereo' or 'mono': got {layout!r}")
        self._check_own(left)
        self._check_own(right)
        name = os.fspath(path)
        recording_id = self._core.record(name, left.id, right.id, layout == "stereo", sample_rate)
        return CallRecording(self, recording_id, name)

    def unbridge(self, leg: RtpLeg) -> None:
        """Stop relaying between ``leg`` and the leg it is bridged to."""
        self._core.unbridge(leg.id)

    def create_conference(self, *, beside: RtpLeg, sample_rate: int = 8000) -> Conference:
        """A conference on ``beside``'s worker, mixing at ``sample_rate`` (8000 or 16000).

        Its members must live on that worker (create them ``beside=`` one
        another). Raises ``ValueError`` for a bad rate.
        """
        if sample_rate not in (8000, 16000):
            raise ValueError(f"sample_rate must be 8000 or 16000: got {sample_rate}")
        self._check_own(beside)
        return Conference(self, self._core.create_conference(sample_rate, beside.id))

    def stats_of(self, legs: Sequence[RtpLeg]) -> list[LegStats | None]:
        """Each leg's :meth:`RtpLeg.stats`, in order, with one trip to each worker.

        What a status page of every call wants: one leg at a time wakes a
        worker per leg. ``None`` for a leg already closed. Raises
        ``ValueError`` for a leg of another engine.
        """
        for leg in legs:
            self._check_own(leg)
        return [
            None if raw is None else LegStats._from_core(raw)
            for raw in self._core.stats_many([leg.id for leg in legs])
        ]

    def poll_events(self) -> list[MediaEvent]:
        """Every event reported since the last call (possibly none); never blocks."""
        return [MediaEvent._from_core(event) for event in self._core.poll_events()]

    def fileno(self) -> int:
        """An eventfd that is readable while :meth:`poll_events` has events."""
        result: int = self._core.fileno()
        return result

    def close(self) -> None:
        """Stop the workers and close every leg; later calls raise ``RuntimeError``."""
        self._core.close()

    def _check_own(self, leg: RtpLeg) -> None:
        if leg.engine is not self:
            raise ValueError(f"{leg!r} belongs to another engine")
