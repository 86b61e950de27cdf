"""Call control, first cut: a B2BUA that connects registered extensions through the media engine.

An INVITE from an extension is challenged (407, the extension's password,
the same digest realm and rules as the registrar's 401). The dialled number
(the Request-URI's user, else the To user) must be a configured extension (404 otherwise) with
at least one registered phone (480 otherwise); every phone of that
extension rings at once (``SessionManager.call`` forks along each
registration's flow).

Media is anchored in the engine: one RTP leg faces the caller and one the
callee, on one worker, and they are bridged when the callee answers (a
relay when both use one codec, a transcoder otherwise). Each side uses its
own codec: the caller's leg takes the first codec of the calling
extension's ``codecs`` list that the caller offered (none: 488); the callee
is offered every codec of its extension's list, in order, with
telephone-event, and its answer sets its leg's codec. A leg's codec is
fixed when it is made, so an answer in another format than the leg's (a
later codec of the offer, other payload numbers, no telephone-event) gets
a new leg in that format and a re-INVITE that moves the phone to it. The
caller's 200 waits for the callee's.

After that the call is two sessions and their legs: BYE from either side
ends both (the cause travels in the Reason header), hold and resume are
passed on as re-INVITEs (and stop the RTP timeout on both legs), INFO
DTMF is passed on, and an RTP timeout hangs both up with cause 102.

A blind transfer (REFER from either phone to another extension) calls the
target with a new leg beside the transferee's; the transferor hears its
progress by NOTIFY (100, 180, then 200 or the failure), and once the target
answers the transferee's leg is bridged to it and the transferor is hung
up. An attended transfer (Refer-To with Replaces) is declined (603) for now.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from appliance.config.records import Extension
from appliance.media import MediaEvents
from appliance.sip.auth import DigestChallenger, Verdict
from appliance.sip.causes import Cause, reason_phrase
from appliance.sip.message import Address
from appliance.sip.refer import Transfer
from appliance.sip.registrar import Binding, Registrar
from appliance.sip.sdp import (
    DEFAULT_PREFERENCE,
    TELEPHONE_EVENT,
    Codec,
    Media,
    Negotiated,
    SessionDescription,
    create_answer,
    create_offer,
)
from appliance.sip.session import (
    Answered,
    DtmfReceived,
    Ended,
    IncomingCall,
    OutgoingCall,
    Progress,
    Reoffered,
    Session,
    SessionError,
    SessionEvent,
    SessionManager,
    SessionState,
    Target,
    TransferRequested,
    advertised_host,
)
from core import Engine, MediaEvent, RtpLeg

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

ENGINE_THREADS = 4
"""Threads that run engine commands. A command wakes its worker and comes back in
tens of microseconds (benchmarks/test_engine_commands.py), so a few threads
keep the loop free of the odd slow one (a worker busy with a tick's audio)."""

OFFERED_EVENT_PT = 101
"""The telephone-event payload type in our offers to phones."""


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


Events = asyncio.Queue[tuple["Session | RtpLeg", "SessionEvent | MediaEvent"]]


@dataclass(eq=False)
class Call:
    """One call between two extensions: its two sessions and their two legs."""

    id: str
    caller: IncomingCall
    number: str
    started: float
    callee: OutgoingCall | None = None
    caller_leg: RtpLeg | None = None
    callee_leg: RtpLeg | None = None
    formats: dict[RtpLeg, LegFormat] = field(default_factory=dict)
    """What each leg carries."""
    answered_at: float | None = None
    state: str = "routing"
    rang: bool = False
    parties: list[Session] = field(default_factory=list)
    """The two sessions connected now: the caller's side first (a transfer swaps one)."""
    legs: dict[Session, RtpLeg] = field(default_factory=dict)
    transfers: dict[Session, tuple[Transfer, Session]] = field(default_factory=dict)
    """Calls placed for a transfer, each with its REFER and its transferee."""
    all_legs: list[RtpLeg] = field(default_factory=list)
    """Every leg made for the call, closed when it ends."""
    events: Events = field(default_factory=asyncio.Queue)
    """What its sessions and legs report, in order."""
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    def peer(self, session: Session) -> Session | None:
        """The party ``session`` is connected to, if it is one of the two."""
        if session not in self.parties or len(self.parties) != 2:
            return None
        return self.parties[1] if session is self.parties[0] else self.parties[0]

    def sessions(self) -> list[Session]:
        """Every session of the call still to follow: parties and transfer targets."""
        return [*self.parties, *self.transfers]

    def status(self) -> dict[str, Any]:
        """A line of ``callbox status``."""
        legs = {}
        sides = [self.legs.get(party) for party in self.parties]
        codecs = [self.formats[leg].codec.name for leg in sides if leg in self.formats]
        for name, leg in zip(("caller", "callee"), sides, strict=False):
            if leg is not None:
                try:
                    stats = leg.stats()
                except (RuntimeError, ValueError):
                    continue  # the call is ending: its legs are being closed
                legs[name] = {
                    "codec": self.formats[leg].codec.name,
                    "port": leg.local_port,
                    "received": stats.packets_received,
                    "sent": stats.packets_sent,
                    "lost": stats.lost,
                }
        return {
            "id": self.id,
            "from": self.caller.caller.uri.user or str(self.caller.caller.uri),
            "to": self.number,
            "state": self.state,
            # One name when both legs share it (a relay), else caller's/callee's.
            "codec": "/".join(dict.fromkeys(codecs)) or None,
            "seconds": round(time.monotonic() - self.started, 1),
            "held": any(party.held_by_peer for party in self.parties),
            "legs": legs,
        }


class CallControl:
    """The switch's B2BUA: takes each ``IncomingCall`` and connects it to an extension.

    ``extension(number)`` reads an extension's configuration; ``engine()``
    and ``media_events()`` give the media engine once it runs.
    """

    def __init__(
        self,
        sessions: SessionManager,
        registrar: Registrar,
        extension: Callable[[str], Extension | None],
        engine: Callable[[], Engine | None],
        media_events: Callable[[], MediaEvents | None],
        auth_failed: Callable[[str, str], None],
        limits: CallLimits | None = None,
    ) -> None:
        self.sessions = sessions
        self.registrar = registrar
        self.extension = extension
        self.engine = engine
        self.media_events = media_events
        self.auth_failed = auth_failed
        self.limits = limits or CallLimits()
        self.challenger: DigestChallenger = registrar.challenger
        self.calls: dict[str, Call] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        # Engine commands wait for their worker with the GIL released: off the
        # loop, so a worker in the middle of a tick never stalls it.
        self._executor = ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="engine-cmd")
        sessions.on_incoming = self.incoming

    def incoming(self, session: IncomingCall) -> None:
        """A new INVITE: authenticate, route and connect it in a task of its own."""
        task = asyncio.get_running_loop().create_task(self._run(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def status(self) -> list[dict[str, Any]]:
        """Every live call, for ``callbox status`` (leg statistics are read off the loop)."""
        return [await self._media(call.status) for call in list(self.calls.values())]

    async def _media(self, command: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run an engine command off the loop (it waits for its worker to apply it)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(command, *args, **kwargs)
        )

    async def close(self) -> None:
        """Hang up every call and wait for their tasks (the switch is stopping)."""
        for call in list(self.calls.values()):
            self._hangup_all(call, Cause.NORMAL_CLEARING)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=True)

    # One call, from INVITE to hang-up

    async def _run(self, session: IncomingCall) -> None:
        if session.ended:
            return  # cancelled before this task ran
        extension = self._authenticate(session)
        if extension is None:
            return
        # The dialled number: the Request-URI's user, or To's when the URI names only us.
        number = session.callee.user or session.invite.to.uri.user or ""
        call = Call(f"{next(self._ids)}", session, number, time.monotonic())
        self.calls[call.id] = call
        session.listener = lambda s, e: call.events.put_nowait((s, e))
        try:
            if await self._connect(call, extension):
                await self._follow(call)
        except Exception:
            log.exception("call %s failed", call.id)
            self._hangup_all(call, Cause.TEMPORARY_FAILURE)
        finally:
            for stop in call.unsubscribe:
                stop()
            del self.calls[call.id]
            await self._close_legs(call)
            log.info("call %s from %s to %s over", call.id, extension.number, call.number)

    def _authenticate(self, session: IncomingCall) -> Extension | None:
        """The calling extension, or None when the INVITE was challenged or refused."""
        number = session.caller.uri.user or ""
        extension = self.extension(number)
        source = session.flow.remote[0]

        def password(username: str) -> str | None:
            if username != number or extension is None:
                return None
            return extension.password

        verification = self.challenger.verify(session.invite, "Proxy-Authorization", password)
        if verification.verdict in (Verdict.MISSING, Verdict.STALE):
            stale = verification.verdict is Verdict.STALE
            session.challenge(self.challenger.challenges(stale=stale))
            return None
        if verification.verdict is Verdict.INVALID or extension is None:
            self.auth_failed(source, verification.reason or "unknown extension")
            session.reject(403)
            return None
        if not extension.allows(source):
            self.auth_failed(source, "outside the extension's networks")
            session.reject(403)
            return None
        return extension

    async def _connect(self, call: Call, calling: Extension) -> bool:
        """Route, set up media and ring the callee; False if the call ended here."""
        caller = call.caller
        called = self.extension(call.number)
        if called is None:
            caller.reject(Cause.UNALLOCATED_NUMBER)
            return False
        bindings = self.registrar.contacts(call.number)
        if not bindings:
            caller.reject(Cause.SUBSCRIBER_ABSENT)
            return False
        offer = caller.offer
        chosen = common_codec(offer, allowed_codecs(calling)) if offer is not None else None
        engine, media_events = self.engine(), self.media_events()
        if offer is None or chosen is None or engine is None or media_events is None:
            caller.reject(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            return False
        offered, codec = chosen
        event = next((c for c in offered.codecs if c.name.lower() == TELEPHONE_EVENT.name), None)
        caller_format = LegFormat(codec, event.payload_type if event else None)
        call.caller_leg = await self._leg(engine, call, caller_format, rtcp_mux=offered.rtcp_mux)
        callee_codecs = allowed_codecs(called)
        call.callee_leg = await self._leg(
            engine, call, LegFormat(callee_codecs[0], OFFERED_EVENT_PT), beside=call.caller_leg
        )
        call.parties.append(caller)
        call.legs[caller] = call.caller_leg
        if caller.ended:
            return False  # cancelled while the legs were made
        assert offer is not None
        await self._media(call.caller_leg.set_remote, offer.address_of(offered), offered.port)
        try:
            call.callee = await self._place(
                call,
                bindings,
                call.callee_leg,
                callee_codecs,
                Address(caller.caller.uri, caller.caller.display_name),
                Address(caller.invite.to.uri),
            )
        except SessionError as error:
            log.info("call %s: cannot reach %s: %s", call.id, call.number, error)
            caller.reject(Cause.DESTINATION_OUT_OF_ORDER)
            return False
        call.parties.append(call.callee)
        call.legs[call.callee] = call.callee_leg
        call.state = "ringing"
        if caller.ended:
            call.callee.cancel()
            return False
        return True

    async def _place(
        self,
        call: Call,
        bindings: list[Binding],
        leg: RtpLeg,
        codecs: tuple[Codec, ...],
        caller: Address,
        callee: Address,
    ) -> OutgoingCall:
        """Ring every phone of an extension with an offer of ``leg`` in ``codecs``."""
        first = bindings[0]
        offer = create_offer(
            advertised_host(first.flow, first.registrar_host),
            leg.local_port,
            codecs,
            telephone_event_pt=OFFERED_EVENT_PT,
            rtcp_mux=False,
        )
        targets = [
            Target(b.contact.uri, b.flow, b.path, b.registrar_host or None) for b in bindings
        ]
        return await self.sessions.call(
            targets,
            caller=caller,
            callee=callee,
            offer=offer,
            listener=lambda s, e: call.events.put_nowait((s, e)),
            no_answer_s=self.limits.no_answer_s,
        )

    async def _leg(
        self,
        engine: Engine,
        call: Call,
        carried: LegFormat,
        *,
        rtcp_mux: bool = False,
        beside: RtpLeg | None = None,
    ) -> RtpLeg:
        """A leg that carries ``carried``, held (no RTP timeout) until it is answered.

        Its media events join the call's queue; it is closed when the call ends.
        """
        codec = carried.codec
        leg = await self._media(
            engine.create_rtp_leg,
            codec=codec.name,
            payload_type=codec.payload_type,
            clock_rate=codec.clock_rate,
            rtcp_mux=rtcp_mux,
            rtp_timeout=self.limits.rtp_timeout_s,
            cname=f"callbox-{call.id}",
            beside=beside,
            fmtp=codec.fmtp or "",
            telephone_event=carried.event_pt,
        )
        call.all_legs.append(leg)
        call.formats[leg] = carried
        media_events = self.media_events()
        if media_events is not None:
            call.unsubscribe.append(media_events.subscribe(_forward(call.events, leg), leg))
        await self._media(leg.hold, True)
        return leg

    async def _follow(self, call: Call) -> None:
        """Pass each party's events to the other until every session has ended."""
        while any(not session.ended for session in call.sessions()):
            source, event = await call.events.get()
            if isinstance(event, MediaEvent):
                if event.kind == "rtp_timeout" and source in call.legs.values():
                    log.info("call %s: no RTP on leg %d: hanging up", call.id, event.leg)
                    self._hangup_all(call, Cause.RECOVERY_ON_TIMER_EXPIRY)
                continue
            assert isinstance(source, Session)
            if source in call.transfers:
                await self._transfer_event(call, source, event)
            elif source in call.parties:
                other = call.peer(source)
                if other is None:
                    self._alone(call, source, event)
                else:
                    await self._on_event(call, source, other, event)

    async def _on_event(
        self, call: Call, source: Session, other: Session, event: SessionEvent
    ) -> None:
        caller = call.caller
        if isinstance(event, Ended) and self._waiting_transferee(call, other):
            # A blind transferor may hang up at once: the transferee waits for the target.
            call.parties.remove(source)
            call.legs.pop(source, None)
        elif isinstance(event, Ended):
            if other is caller and caller.state is SessionState.RINGING:
                # The callee side failed before any answer: its status goes back,
                # except a challenge, which was for us and not for the caller.
                status = event.status
                passed = status is not None and status not in (401, 407)
                caller.reject(status if passed and status is not None else event.cause)
            else:
                other.hangup(event.cause)
            self._alone(call, source, event)
            call.state = "ended"
        elif isinstance(event, Progress) and caller.state is SessionState.RINGING:
            if event.status in (180, 183) and not call.rang:
                call.rang = True
                caller.ringing()
        elif isinstance(event, Answered):
            await self._answered(call, event)
        elif isinstance(event, Reoffered):
            await self._reoffered(call, source, other, event)
        elif isinstance(event, DtmfReceived):
            relay = event.relay
            body = f"Signal={relay.signal}\r\nDuration={relay.duration_ms}\r\n".encode()
            if other.state is SessionState.CONFIRMED:
                other.send_request("INFO", body, "application/dtmf-relay")
        elif isinstance(event, TransferRequested):
            await self._transfer(call, source, other, event.transfer)

    async def _answered(self, call: Call, event: Answered) -> None:
        caller, callee = call.caller, call.callee
        assert callee is not None
        assert call.caller_leg is not None
        assert call.callee_leg is not None
        media = event.media
        leg = await self._fit(call, callee, media) if media is not None else None
        if media is None or leg is None:
            # The callee named a codec we cannot decode: nothing can carry it.
            callee.hangup(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            caller.reject(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            return
        call.callee_leg = leg
        assert caller.offer is not None
        await self._connect_legs(call, call.caller_leg, leg, media)
        if caller.state is not SessionState.RINGING:
            callee.hangup(Cause.NORMAL_CLEARING)  # the caller gave up meanwhile
            return
        answer = create_answer(
            caller.offer,
            caller.local_host,
            call.caller_leg.local_port,
            (call.formats[call.caller_leg].codec,),
            rtcp_mux=call.caller_leg.local_rtcp_port == call.caller_leg.local_port,
        )
        caller.answer(answer)
        call.state = "answered"
        call.answered_at = time.monotonic()

    async def _fit(self, call: Call, session: Session, media: Negotiated) -> RtpLeg | None:
        """The leg that carries what ``session`` answered; None if the engine cannot.

        A phone may answer with any codec of the offer, number it otherwise or
        drop telephone-event, but a leg's format is fixed when it is made: one
        that does not fit is replaced by a new leg in the answered format, and
        a re-INVITE offering just that format moves the phone to its port.
        """
        leg = call.legs[session]
        if not any(media.codec.same_format(ours) for ours in DEFAULT_PREFERENCE):
            return None
        event = media.telephone_event
        answered = LegFormat(media.codec, event.payload_type if event else None)
        if call.formats[leg].fits(answered):
            return leg
        engine, sdp = self.engine(), session.local_sdp
        assert engine is not None
        assert sdp is not None
        fitted = await self._leg(engine, call, answered, beside=leg)
        offer = create_offer(
            sdp.address_of(sdp.media[0]),
            fitted.local_port,
            (media.codec,),
            telephone_event_pt=(
                OFFERED_EVENT_PT if answered.event_pt is None else answered.event_pt
            ),
            rtcp_mux=False,
        )
        if answered.event_pt is None:
            offer = _without_telephone_event(offer)
        log.info(
            "call %s: answered in %s, not %s: moving the phone to a new leg",
            call.id,
            media.codec.name,
            call.formats[leg].codec.name,
        )
        try:
            session.reoffer(offer)
        except SessionError:
            return None  # it hung up meanwhile
        call.legs[session] = fitted
        call.all_legs.remove(leg)
        with contextlib.suppress(RuntimeError):
            await self._media(leg.close)
        return fitted

    async def _connect_legs(
        self, call: Call, kept: RtpLeg, answered: RtpLeg, media: Negotiated
    ) -> None:
        """Send ``answered`` to the answer's address, bridge it to ``kept``, start timeouts."""
        engine = self.engine()
        assert engine is not None
        await self._media(answered.set_remote, media.remote_address, media.remote_port)
        await self._media(engine.bridge, kept, answered)
        # Off hold: the RTP timeout counts from now, not from while it rang.
        for leg in (kept, answered):
            await self._media(leg.hold, False)

    async def _reoffered(
        self, call: Call, source: Session, other: Session, event: Reoffered
    ) -> None:
        leg = call.legs.get(source)
        if leg is not None and event.media is not None:
            await self._media(leg.set_remote, event.media.remote_address, event.media.remote_port)
        held = any(party.held_by_peer for party in call.parties)
        for party in call.parties:
            await self._media(call.legs[party].hold, held)
        if other.state is SessionState.CONFIRMED and event.held != other.held_locally:
            (other.hold if event.held else other.resume)()
        call.state = "held" if held else "answered"

    # Blind transfer (REFER)

    @staticmethod
    def _waiting_transferee(call: Call, session: Session) -> bool:
        return any(transferee is session for _, transferee in call.transfers.values())

    @staticmethod
    def _alone(call: Call, source: Session, event: SessionEvent) -> None:
        """A party without a peer (its transferor left) ended: so do its transfers."""
        if isinstance(event, Ended):
            for target, (_, transferee) in list(call.transfers.items()):
                if transferee is source:
                    target.hangup(event.cause)

    async def _transfer(
        self, call: Call, transferor: Session, transferee: Session, transfer: Transfer
    ) -> None:
        """Call the REFER's target for the transferee; its answer completes the transfer."""
        number = transfer.target.uri.user or ""
        engine = self.engine()
        if transfer.replaces is not None or call.transfers or engine is None:
            transfer.notify(603, "Declined")  # attended transfer, or one at a time
            return
        extension = self.extension(number)
        if extension is None:
            transfer.notify(404, "Not Found")
            return
        bindings = self.registrar.contacts(number)
        if not bindings:
            transfer.notify(480, "Temporarily Unavailable")
            return
        codecs = allowed_codecs(extension)
        carried = LegFormat(codecs[0], OFFERED_EVENT_PT)
        leg = await self._leg(engine, call, carried, beside=call.legs[transferee])
        try:
            target = await self._place(
                call, bindings, leg, codecs, _identity(transferee), Address(transfer.target.uri)
            )
        except SessionError as error:
            log.info("call %s: cannot reach %s for a transfer: %s", call.id, number, error)
            transfer.notify(503, "Service Unavailable")
            return
        call.transfers[target] = (transfer, transferee)
        call.legs[target] = leg
        log.info("call %s: transferring to %s", call.id, number)

    async def _transfer_event(self, call: Call, target: Session, event: SessionEvent) -> None:
        transfer, transferee = call.transfers[target]
        if isinstance(event, Progress) and event.status in (180, 183):
            transfer.notify(180, "Ringing")
        elif isinstance(event, Ended):
            del call.transfers[target]
            call.legs.pop(target, None)
            status = event.status or 500
            transfer.notify(status, reason_phrase(status))
            if call.peer(transferee) is None:
                transferee.hangup(event.cause)  # its transferor has gone already
        elif isinstance(event, Answered):
            del call.transfers[target]
            if event.media is None or transferee.ended:
                target.hangup(Cause.NORMAL_CLEARING)
                return
            leg = await self._fit(call, target, event.media)
            if leg is None:
                target.hangup(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
                transfer.notify(488, reason_phrase(488))
                return
            transferor = call.peer(transferee)
            await self._connect_legs(call, call.legs[transferee], leg, event.media)
            transfer.notify(200, "OK")
            if transferor is None:
                call.parties.append(target)
                return
            call.parties[call.parties.index(transferor)] = target
            call.legs.pop(transferor, None)
            transferor.hangup(Cause.NORMAL_CLEARING)

    def _hangup_all(self, call: Call, cause: Cause) -> None:
        for session in [call.caller, *call.sessions()]:
            session.hangup(cause)

    async def _close_legs(self, call: Call) -> None:
        for leg in call.all_legs:
            with contextlib.suppress(RuntimeError):
                await self._media(leg.close)

    def hang_up(self, call_id: str, cause: Cause = Cause.NORMAL_CLEARING) -> bool:
        """Hang up every party of live call ``call_id`` with ``cause``; False if there is none.

        A ringing caller is refused with the cause's status (RFC 3398), a
        ringing phone is cancelled and an answered party gets a BYE; the
        Reason header carries the cause either way.
        """
        call = self.calls.get(call_id)
        if call is None:
            return False
        self._hangup_all(call, cause)
        return True


def _identity(session: Session) -> Address:
    """Who the party of ``session`` is, for the From of a call placed for it."""
    if isinstance(session, IncomingCall):
        return Address(session.caller.uri, session.caller.display_name)
    assert isinstance(session, OutgoingCall)
    return Address(session.callee.uri, session.callee.display_name)


def _forward(
    events: asyncio.Queue[tuple[Session | RtpLeg, SessionEvent | MediaEvent]], leg: RtpLeg
) -> Callable[[MediaEvent], None]:
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
