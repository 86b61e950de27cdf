"""Media legs of the switch's calls: codec choice, leg creation, forking, re-fitting, bridging.

Both kinds of call the switch runs share these pieces: calls between
extensions (``switch/calls.py``) and inbound calls run by the IVR
(``calls/live.py``). A call's legs live on one engine worker (``beside``),
so they can be bridged and recorded together. Engine commands wait for
their worker with the GIL released, so ``LegControl.run`` runs them off
the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from appliance.calls.interface import LegQuality
from appliance.config.records import Extension
from appliance.media import MediaEvents
from appliance.sip.message import Address
from appliance.sip.registrar import Binding
from appliance.sip.sdp import (
    DEFAULT_PREFERENCE,
    TELEPHONE_EVENT,
    Codec,
    Media,
    Negotiated,
    SessionDescription,
    create_offer,
)
from appliance.sip.session import (
    DtmfReceived,
    OutgoingCall,
    Reoffered,
    Session,
    SessionError,
    SessionEvent,
    SessionManager,
    SessionState,
    Target,
    advertised_host,
)
from appliance.sip.trunk import TrunkCall
from core import Engine, LegStats, MediaEvent, RtpLeg

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

ENGINE_THREADS = 4
"""Threads that run engine commands. A command wakes its worker and comes back in
tens of microseconds (benchmarks/test_engine_commands.py), so a few threads
keep the loop free of the odd slow one (a worker busy with a tick's audio)."""

OFFERED_EVENT_PT = 101
"""The telephone-event payload type in our offers to phones."""


def new_call_id() -> str:
    """A call id unique across restarts: the UTC start second and 32 random bits.

    Ids name recordings and key call records, so a counter that starts over
    with the process would not do.
    """
    return f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


class CallState(StrEnum):
    """Where a call is, as the control API and ``callbox status`` show it."""

    ROUTING = "routing"
    """Extension to extension: the dialled number is being looked up."""
    RINGING = "ringing"
    """The caller is not answered yet (the callee rings, or the IVR is about to answer)."""
    IVR = "ivr"
    QUEUED = "queued"
    RINGING_AGENT = "ringing_agent"
    """A queued call offered to an agent whose phone rings (``agent`` says who)."""
    ANSWERED = "answered"
    """Extension to extension: both parties are up."""
    TALKING = "talking"
    """A queue call bridged to its agent."""
    HELD = "held"
    ENDED = "ended"


@dataclass(frozen=True)
class CallLimits:
    """How long a call may ring, and how long its RTP may stop before it is hung up."""

    no_answer_s: float = 60.0
    rtp_timeout_s: float = 60.0


@dataclass(frozen=True)
class LegFormat:
    """What a leg carries: its voice codec (the far end's payload type and fmtp) and
    its telephone-event payload type (None: the far end has none, digits go in-band)."""

    codec: Codec
    event_pt: int | None

    def fits(self, other: LegFormat) -> bool:
        """True when a leg made for ``self`` carries ``other`` (fmtp aside)."""
        return (
            self.codec.same_format(other.codec)
            and self.codec.payload_type == other.codec.payload_type
            and self.event_pt == other.event_pt
        )


def allowed_codecs(extension: Extension) -> tuple[Codec, ...]:
    """Our codecs that an extension may use, in the order of its ``codecs`` list."""
    ours = {codec.name: codec for codec in DEFAULT_PREFERENCE}
    return tuple(ours[str(name)] for name in extension.codecs if str(name) in ours)


def answered_format(media: Negotiated) -> LegFormat:
    """The format a leg needs to carry what an answer (or early answer) negotiated."""
    event = media.telephone_event
    return LegFormat(media.codec, event.payload_type if event else None)


def common_codec(
    offer: SessionDescription, preference: tuple[Codec, ...] = DEFAULT_PREFERENCE
) -> tuple[Media, Codec] | None:
    """The offer's audio stream and the first codec of ``preference`` that it offers."""
    for media in offer.media:
        if media.media != "audio" or not media.port:
            continue
        offered = media.codecs
        for ours in preference:
            match = next((c for c in offered if c.same_format(ours)), None)
            if match is not None:
                return media, match
    return None


def offered_format(media: Media, codec: Codec) -> LegFormat:
    """The format of a leg facing an offer of ``media`` answered in ``codec``."""
    event = next((c for c in media.codecs if c.name.lower() == TELEPHONE_EVENT.name), None)
    return LegFormat(codec, event.payload_type if event else None)


Events = asyncio.Queue[tuple["Session | RtpLeg", "SessionEvent | MediaEvent"]]


@dataclass(eq=False, kw_only=True)
class CallLegs:
    """What one call holds of media and signalling: its sessions' legs and their events."""

    id: str
    formats: dict[RtpLeg, LegFormat] = field(default_factory=dict)
    """What each leg carries."""
    parties: list[Session] = field(default_factory=list)
    """The two sessions connected now: the caller's side first (a transfer swaps one)."""
    legs: dict[Session, RtpLeg] = field(default_factory=dict)
    """The leg that faces each session."""
    all_legs: list[RtpLeg] = field(default_factory=list)
    """Every leg made for the call, closed when it ends."""
    events: Events = field(default_factory=asyncio.Queue)
    """What its sessions and legs report, in order."""
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    def listen(self, session: Session, event: SessionEvent) -> None:
        """A session's listener: its events join the call's queue."""
        self.events.put_nowait((session, event))

    def stop_listening(self, sessions: Iterable[Session]) -> None:
        """The call is over: ``sessions`` (and its parties) report to it no more.

        A session and the call it reports to refer to each other; without this
        an ended call is freed only by the garbage collector, and at hundreds
        of calls a second ended calls pile up in its oldest generation, whose
        collections then pause the loop for half a second.
        """
        for session in [*sessions, *self.parties, *self.legs]:
            if session.listener == self.listen:
                session.listener = _unheard


def pass_dtmf(event: DtmfReceived, other: Session) -> None:
    """Send a party's INFO digit on to the party it talks to."""
    relay = event.relay
    body = f"Signal={relay.signal}\r\nDuration={relay.duration_ms}\r\n".encode()
    if other.state is SessionState.CONFIRMED:
        other.send_request("INFO", body, "application/dtmf-relay")


StatsOf = Mapping[RtpLeg, LegStats | None]
"""Legs' statistics read together (``LegControl.stats_of``); ``None`` for a closed leg."""


def legs_status(
    call: CallLegs, sides: list[tuple[str, RtpLeg | None]], stats: StatsOf | None
) -> dict[str, Any]:
    """The ``codec`` and ``legs`` of a call's line in ``callbox status``, from ``stats``
    (only ``codec`` if None)."""
    codecs = [call.formats[leg].codec.name for _, leg in sides if leg in call.formats]
    # One name when both legs share it (a relay), else each side's.
    codec = "/".join(dict.fromkeys(codecs)) or None
    if stats is None:
        return {"codec": codec}
    legs = {}
    for name, leg in sides:
        if leg is None or (leg_stats := stats.get(leg)) is None:
            continue  # no such side, or its leg closed before it was read
        try:
            worker = leg.worker
        except (RuntimeError, ValueError):
            continue  # the call is ending: its legs are being closed
        legs[name] = {
            "codec": call.formats[leg].codec.name,
            "worker": worker,
            "port": leg.local_port,
            "received": leg_stats.packets_received,
            "sent": leg_stats.packets_sent,
            "lost": leg_stats.lost,
            "mos": round(leg_stats.mos, 2),
            "jitter_buffer": jitter_buffer_status(leg_stats),
        }
    return {"codec": codec, "legs": legs}


JITTER_COUNTERS = ("received", "late", "lost", "discarded", "concealed", "played")
"""A leg's jitter-buffer counters in the control API (``concealed``: NetEQ's expand ticks)."""


def jitter_buffer_status(stats: LegStats) -> dict[str, int] | None:
    """A leg's jitter-buffer counters since it was made; None for a leg without a buffer
    (a relayed leg: its packets are forwarded as they come, so none can be late)."""
    buffer = stats.jitter_buffer
    if buffer is None:
        return None
    return {
        "received": buffer.received,
        "late": buffer.late,
        "lost": buffer.lost,
        "discarded": buffer.discarded,
        "concealed": buffer.expanded,
        "played": buffer.played,
    }


def media_stats(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The media of ``calls`` (``status()`` lines of live calls) summed: RTP counters of every
    leg, jitter-buffer counters of the legs that have one, and both per codec.

    Late frames arrived after their playout slot inside the box; ``late_or_lost_pct`` is
    late plus lost per frame the buffers expected (received plus lost).
    """
    total = _media_totals()
    by_codec: dict[str, dict[str, Any]] = {}
    for call in calls:
        for leg in call.get("legs", {}).values():
            for totals in (total, by_codec.setdefault(leg["codec"], _media_totals())):
                _add_leg(totals, leg)
    per_codec = {codec: _finish(totals) for codec, totals in sorted(by_codec.items())}
    return {"calls": len(calls), **_finish(total), "by_codec": per_codec}


def _media_totals() -> dict[str, Any]:
    return {
        "legs": 0, "legs_with_jitter_buffer": 0, "received": 0, "sent": 0, "lost": 0,
        "mos_min": None, "jitter_buffer": dict.fromkeys(JITTER_COUNTERS, 0),
    }  # fmt: skip


def _add_leg(totals: dict[str, Any], leg: dict[str, Any]) -> None:
    totals["legs"] += 1
    for key in ("received", "sent", "lost"):
        totals[key] += leg[key]
    mos = leg["mos"]
    totals["mos_min"] = mos if totals["mos_min"] is None else min(totals["mos_min"], mos)
    if leg["jitter_buffer"] is not None:
        totals["legs_with_jitter_buffer"] += 1
        for key in JITTER_COUNTERS:
            totals["jitter_buffer"][key] += leg["jitter_buffer"][key]


def _finish(totals: dict[str, Any]) -> dict[str, Any]:
    buffer = totals["jitter_buffer"]
    expected = buffer["received"] + buffer["lost"]
    pct = round(100 * (buffer["late"] + buffer["lost"]) / expected, 4) if expected else None
    return {**totals, "late_or_lost_pct": pct}


class LegControl:
    """Makes, fits, bridges and closes the engine legs of calls.

    ``engine()`` and ``media_events()`` give the media engine once it runs.
    """

    def __init__(
        self,
        sessions: SessionManager,
        engine: Callable[[], Engine | None],
        media_events: Callable[[], MediaEvents | None],
        limits: CallLimits,
    ) -> None:
        self.sessions = sessions
        self.engine = engine
        self.media_events = media_events
        self.limits = limits
        # Engine commands wait for their worker with the GIL released: off the
        # loop, so a worker in the middle of a tick never stalls it.
        self._executor = ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="engine-cmd")

    async def run(self, command: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run an engine command off the loop (it waits for its worker to apply it)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(command, *args, **kwargs)
        )

    async def stats_of(self, legs: list[RtpLeg]) -> dict[RtpLeg, LegStats | None]:
        """Every leg's statistics in one trip to the command threads, and one to each
        worker (a leg at a time, a status page of a thousand calls woke the media
        worker two thousand times); ``None`` for a leg closed meanwhile."""
        engine = self.engine()
        if engine is None or not legs:
            return {}
        try:
            read = await self.run(engine.stats_of, legs)
        except RuntimeError:
            return {}  # the engine is closing
        return dict(zip(legs, read, strict=True))

    def ready(self) -> bool:
        """Whether the media engine runs (calls can have legs)."""
        return self.engine() is not None and self.media_events() is not None

    async def leg(
        self,
        call: CallLegs,
        carried: LegFormat,
        *,
        rtcp_mux: bool = False,
        beside: RtpLeg | None = None,
        inband_dtmf: bool = False,
        remote: tuple[str, int] | None = None,
    ) -> RtpLeg:
        """A leg that carries ``carried``, held (no RTP timeout) until it is answered.

        ``inband_dtmf`` (for a leg without telephone-event) detects digits in
        its audio; ``remote`` is where it sends from the start (an offer's
        address). Its media events join the call's queue; it is closed with
        the call's legs.
        """
        engine = self._running_engine()
        codec = carried.codec

        def create_held() -> RtpLeg:
            # One trip to the command threads for both commands (each trip costs the loop).
            made = engine.create_rtp_leg(
                codec=codec.name,
                payload_type=codec.payload_type,
                clock_rate=codec.clock_rate,
                rtcp_mux=rtcp_mux,
                rtp_timeout=self.limits.rtp_timeout_s,
                cname=f"callbox-{call.id}",
                beside=beside,
                fmtp=codec.fmtp or "",
                telephone_event=carried.event_pt,
                inband_dtmf=inband_dtmf and carried.event_pt is None,
            )
            made.hold(True)
            if remote is not None:
                made.set_remote(*remote)
            return made

        leg = await self.run(create_held)
        call.all_legs.append(leg)
        call.formats[leg] = carried
        media_events = self.media_events()
        if media_events is not None:
            call.unsubscribe.append(media_events.subscribe(_forward(call.events, leg), leg))
        return leg

    async def place(
        self,
        call: CallLegs,
        bindings: list[Binding],
        leg: RtpLeg,
        codecs: tuple[Codec, ...],
        caller: Address,
        callee: Address,
        no_answer_s: float | None = None,
    ) -> OutgoingCall:
        """Ring every phone of an extension with an offer of ``leg`` in ``codecs``."""
        first = bindings[0]
        offer = _offer(advertised_host(first.flow, first.registrar_host), leg, codecs)
        targets = [
            Target(b.contact.uri, b.flow, b.path, b.registrar_host or None) for b in bindings
        ]
        return await self.sessions.call(
            targets,
            caller=caller,
            callee=callee,
            offer=offer,
            listener=call.listen,
            no_answer_s=self.limits.no_answer_s if no_answer_s is None else no_answer_s,
        )

    async def place_through_trunk(
        self, call: CallLegs, trunk_call: TrunkCall, leg: RtpLeg, no_answer_s: float | None = None
    ) -> OutgoingCall:
        """Call out through a trunk with an offer of ``leg`` in the trunk's codecs; the
        trunk's 401/407 are answered with its account."""
        target = trunk_call.target
        assert target.local_host is not None
        return await self.sessions.call(
            [target],
            caller=trunk_call.caller,
            callee=Address(target.uri),
            offer=_offer(target.local_host, leg, trunk_call.codecs),
            listener=call.listen,
            credentials=trunk_call.credentials,
            headers=trunk_call.headers,
            no_answer_s=self.limits.no_answer_s if no_answer_s is None else no_answer_s,
        )

    async def fit(self, call: CallLegs, session: Session, media: Negotiated) -> RtpLeg | None:
        """The leg that carries what ``session`` answered; None if the engine cannot.

        A phone may answer with any codec of the offer, number it otherwise or
        drop telephone-event, but a leg's format is fixed when it is made: one
        that does not fit is replaced by a new leg in the answered format, and
        a re-INVITE offering just that format moves the phone to its port.
        """
        leg = call.legs[session]
        if not any(media.codec.same_format(ours) for ours in DEFAULT_PREFERENCE):
            return None
        answered = answered_format(media)
        if call.formats[leg].fits(answered):
            return leg
        log.info(
            "call %s: answered in %s, not %s: moving the phone to a new leg",
            call.id,
            media.codec.name,
            call.formats[leg].codec.name,
        )
        return await self.move(call, session, answered, beside=leg)

    async def move(
        self, call: CallLegs, session: Session, carried: LegFormat, *, beside: RtpLeg
    ) -> RtpLeg | None:
        """Move ``session`` to a new leg of ``call`` that carries ``carried`` on ``beside``'s
        worker: a re-INVITE offering just that format sends the phone to the new port, and
        its old leg is closed. None if the phone hung up meanwhile."""
        leg = call.legs[session]
        sdp = session.local_sdp
        assert sdp is not None
        moved = await self.leg(call, carried, beside=beside)
        offer = create_offer(
            sdp.address_of(sdp.media[0]),
            moved.local_port,
            (carried.codec,),
            telephone_event_pt=OFFERED_EVENT_PT if carried.event_pt is None else carried.event_pt,
            rtcp_mux=False,
        )
        if carried.event_pt is None:
            offer = _without_telephone_event(offer)
        try:
            session.reoffer(offer)
        except SessionError:
            return None  # it hung up meanwhile
        call.legs[session] = moved
        await self.drop(call, leg)
        return moved

    async def drop(self, call: CallLegs, leg: RtpLeg) -> None:
        """Close one leg of ``call`` that no session uses any more."""
        call.all_legs.remove(leg)
        with contextlib.suppress(RuntimeError):
            await self.run(leg.close)

    def adopt(self, source: CallLegs, call: CallLegs, session: Session) -> RtpLeg:
        """Take ``session`` and its leg from the call ``source`` into ``call`` (a transfer
        merges two calls): its events and its leg's go to ``call`` from now on, and ``call``
        closes the leg. Returns the leg."""
        leg = source.legs.pop(session)
        source.parties.remove(session)
        source.all_legs.remove(leg)
        call.all_legs.append(leg)
        call.formats[leg] = source.formats[leg]
        call.legs[session] = leg
        session.listener = call.listen
        media_events = self.media_events()
        if media_events is not None:
            # The source's subscription stays until it closes; it ignores legs not its own.
            call.unsubscribe.append(media_events.subscribe(_forward(call.events, leg), leg))
        return leg

    async def connect(
        self,
        kept: RtpLeg,
        answered: RtpLeg,
        media: Negotiated,
        *,
        early: bool = False,
        stop_inband_dtmf: bool = False,
    ) -> None:
        """Send ``answered`` to the answer's address, bridge it to ``kept``, start timeouts.

        ``early`` (early media, before the answer) keeps both legs held: a caller's
        phone may send nothing while it rings, which is no reason to hang up.
        ``stop_inband_dtmf`` ends ``kept``'s in-band digit detection first, for a
        caller whom no IVR will hear again: the tones reach the other party in the
        audio itself, and a recorded relay no longer decodes for a detector.
        """
        engine = self._running_engine()

        def commands() -> None:
            if stop_inband_dtmf:
                kept.detect_inband_dtmf(False)
            answered.set_remote(media.remote_address, media.remote_port)
            if early:
                engine.bridge(kept, answered)
            else:
                _bridge_off_hold(engine, kept, answered)

        await self.run(commands)

    async def bridge(self, kept: RtpLeg, answered: RtpLeg) -> None:
        """Bridge two legs of one worker (each leaves any other bridge) and take both off hold."""
        engine = self._running_engine()
        await self.run(_bridge_off_hold, engine, kept, answered)

    async def unbridge(self, leg: RtpLeg) -> None:
        """Take ``leg`` out of its bridge: the two far ends no longer hear each other."""
        engine = self._running_engine()
        await self.run(engine.unbridge, leg)

    def _running_engine(self) -> Engine:
        engine = self.engine()
        if engine is None:
            raise SessionError("the media engine is not running")
        return engine

    async def reoffered(
        self, call: CallLegs, source: Session, other: Session, event: Reoffered
    ) -> bool:
        """Follow a party's re-INVITE: its leg's address, hold on both legs, the
        other party held or resumed likewise. Returns whether the call is held."""
        leg = call.legs.get(source)
        media = event.media
        held = any(party.held_by_peer for party in call.parties)
        legs = [call.legs[party] for party in call.parties]

        def commands() -> None:
            # One trip to the command threads for the address and every leg's hold.
            if leg is not None and media is not None:
                leg.set_remote(media.remote_address, media.remote_port)
            for party_leg in legs:
                party_leg.hold(held)

        await self.run(commands)
        if other.state is SessionState.CONFIRMED and event.held != other.held_locally:
            (other.hold if event.held else other.resume)()
        return held

    async def close_legs(self, call: CallLegs) -> dict[RtpLeg, LegStats]:
        """Close every leg of ``call``; the final statistics of each."""
        for stop in call.unsubscribe:
            stop()
        call.unsubscribe.clear()
        legs = list(call.all_legs)

        def close_all() -> dict[RtpLeg, LegStats]:
            final = {}
            for leg in legs:
                with contextlib.suppress(RuntimeError):
                    final[leg] = leg.close()
            return final

        return await self.run(close_all)

    def close(self) -> None:
        """Wait for the engine commands in flight (the switch is stopping)."""
        self._executor.shutdown(wait=True)


def _offer(host: str, leg: RtpLeg, codecs: tuple[Codec, ...]) -> SessionDescription:
    """Our offer of ``leg`` at ``host`` in ``codecs``, with telephone-event."""
    return create_offer(
        host, leg.local_port, codecs, telephone_event_pt=OFFERED_EVENT_PT, rtcp_mux=False
    )


def leg_quality(name: str, stats: LegStats) -> LegQuality:
    """A leg's loss, jitter and MOS for the call record, from its statistics."""
    loss = 100.0 * stats.lost / stats.expected if stats.expected > 0 else 0.0
    return LegQuality(name, round(loss, 2), round(stats.jitter_ms, 2), round(stats.mos, 2))


def _unheard(session: Session, event: SessionEvent) -> None:
    """The listener of a session whose call is over."""


def _forward(events: Events, leg: RtpLeg) -> Callable[[MediaEvent], None]:
    return lambda event: events.put_nowait((leg, event))


def _without_telephone_event(sdp: SessionDescription) -> SessionDescription:
    """An offer without telephone-event, for a phone that answered without it."""
    pt = str(OFFERED_EVENT_PT)
    media = []
    for m in sdp.media:
        formats = [f for f in m.formats if f != pt]
        attributes = [(k, v) for k, v in m.attributes if not (v or "").startswith(pt + " ")]
        media.append(replace(m, formats=formats, attributes=attributes))
    return replace(sdp, media=media)


def _bridge_off_hold(engine: Engine, kept: RtpLeg, answered: RtpLeg) -> None:
    """Bridge two legs and take both off hold: the RTP timeout counts from now, not from
    while a phone rang (engine commands: run on the command threads)."""
    engine.bridge(kept, answered)
    for leg in (kept, answered):
        leg.hold(False)
