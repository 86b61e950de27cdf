"""Live inbound calls: the ``Call`` interface over a SIP session and the media engine.

Call control makes one ``LiveCall`` per inbound call it gives the IVR: the
caller's ``IncomingCall`` and an engine leg facing it. Prompts play on
that leg (barge-in stops them on a digit); digits from RFC 4733, in-band
tones (a leg without telephone-event) and INFO queue from the start; an
offer forks to every registered phone of an extension on a leg beside the
caller's, and the answered leg is bridged and recorded there (stereo:
caller left, agent right). One task follows every session and media event
of the call in order; the caller hanging up ends the call at once, which
ends any pending operation with ``CallEnded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from appliance.calls.interface import (
    AgentLeg,
    CallEnded,
    CallIdentity,
    Hangup,
    HangupCause,
    LegQuality,
    OfferOutcome,
    OfferResult,
    PlayEnd,
    Side,
)
from appliance.calls.legs import (
    OFFERED_EVENT_PT,
    CallLegs,
    CallState,
    LegControl,
    LegFormat,
    StatsOf,
    allowed_codecs,
    leg_quality,
    legs_status,
    pass_dtmf,
)
from appliance.calls.outbound import OutboundRefused, TrunkDialer, fails_over
from appliance.config.records import IVR_CALLER, Extension
from appliance.sip.causes import Cause
from appliance.sip.message import Address, Uri
from appliance.sip.registrar import Registrar
from appliance.sip.sdp import DEFAULT_PREFERENCE, Media, Negotiated, create_answer
from appliance.sip.session import (
    Answered,
    Confirmed,
    DtmfReceived,
    Ended,
    IncomingCall,
    OutgoingCall,
    Reoffered,
    Session,
    SessionError,
    SessionEvent,
    SessionState,
)
from core import CallRecording, LegStats, MediaEvent, Prompt, PromptError, RtpLeg, Silence

log = logging.getLogger(__name__)

_T = TypeVar("_T")

KEYPAD = "0123456789*#"
"""Digits that barge in on a prompt."""
DEFAULT_MUSIC = "hold_music"
MUSIC_STOP_WAIT_S = 2.0
DIGIT_EVENT_S = 1.0
"""How long a digit's event may trail the end of the playback it interrupted."""
LONGEST_SILENCE_MS = 3_600_000
"""How long stopping music on hold waits for the engine to say it stopped."""

Notify = Callable[[str, str, dict[str, str]], None]
"""``notify(call_id, kind, detail)``: a call event (``started``, ``answered``, ``ended``)."""


class PromptLibrary:
    """Where a call's prompts are: the site's ``Prompt`` records, else the built-in ones.

    A site prompt's file is absolute or relative to the prompts folder; a
    built-in prompt is ``<prompts folder>/<language>/<name>.wav``.
    """

    def __init__(self, root: Path, language: str, site: Mapping[str, str]) -> None:
        self.root = root
        self.language = language
        self.site = dict(site)

    def path(self, name: str) -> Path:
        """The file that plays for prompt ``name``."""
        file = self.site.get(name)
        if file is not None:
            return self.root / file  # an absolute file stays itself
        return self.root / self.language / f"{name}.wav"


class LiveAgentLeg:
    """The leg to an agent's phone that answered an offer (``AgentLeg``)."""

    def __init__(self, extension: str, session: OutgoingCall, leg: RtpLeg, media: Negotiated):
        self._extension = extension
        self.session = session
        self.leg = leg
        self.media = media

    @property
    def extension(self) -> str:
        """The extension that answered."""
        return self._extension

    async def hang_up(self, cause: HangupCause) -> None:
        """BYE to the agent's phone alone."""
        self.session.hangup(cause)


class LiveCall(CallIdentity):
    """One inbound call as the IVR and the ACD drive it (``Call``).

    ``start`` makes the caller's leg; ``close`` (after the flow) hangs up
    what is left and closes the legs. ``state`` says where the call is for
    ``callbox status``, and ``agent`` which agent's phone rings or talks.
    """

    def __init__(
        self,
        call_id: str,
        session: IncomingCall,
        *,
        caller: str,
        dialled: str,
        trunk: str | None,
        media: LegControl,
        registrar: Registrar,
        extension: Callable[[str], Extension | None],
        prompts: PromptLibrary,
        notify: Notify,
        dialer: TrunkDialer | None = None,
    ) -> None:
        super().__init__(call_id, caller, dialled, trunk, time.time())
        self.session = session
        self._started_monotonic = time.monotonic()
        self._media = media
        self._registrar = registrar
        self._extension = extension
        self._prompts = prompts
        self._notify = notify
        self._dialer = dialer
        self.trunk_out: str | None = None
        """The trunk a transfer to an outside number went out through."""
        self.legs = CallLegs(id=call_id)
        self.caller_leg: RtpLeg | None = None
        self.state = CallState.RINGING
        self._ringing_agent: str | None = None
        self._confirmed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[Hangup] = loop.create_future()
        self._ending = False
        self._digits: deque[str] = deque()
        self._digit_arrived = asyncio.Event()
        self._playbacks: deque[asyncio.Future[MediaEvent]] = deque()
        """One per playback started on the caller's leg, oldest first: the engine
        reports each playback's end exactly once, in order."""
        self._music: asyncio.Future[MediaEvent] | None = None
        self._hold_music: str | None = None
        """The music the caller heard while queued: also what they hear while an agent holds."""
        self._offers: dict[Session, asyncio.Future[SessionEvent]] = {}
        self._latest_agent: LiveAgentLeg | None = None
        self._ivr_listens = True
        """Whether the caller's leg still detects in-band digits for the IVR: until an
        agent's recording or bridge starts, after which no IVR hears this caller again."""
        self._bridged: LiveAgentLeg | None = None
        self._recording: CallRecording | None = None
        self._final: dict[str, LegStats] = {}
        self._follower: asyncio.Task[None] | None = None
        session.listener = self.legs.listen

    # Life cycle (call control).
    async def start(self, carried: LegFormat, offered: Media) -> None:
        """Make the caller's leg for ``offered`` in ``carried`` and follow the call's events."""
        self._follower = asyncio.get_running_loop().create_task(self._follow())
        self._notify(self._id, "started", {"caller": self._caller, "dialled": self._dialled})
        leg = await self._media.leg(self.legs, carried, rtcp_mux=offered.rtcp_mux, inband_dtmf=True)
        self.caller_leg = leg
        self.legs.legs[self.session] = leg
        offer = self.session.offer
        assert offer is not None
        await self._media.run(leg.set_remote, offer.address_of(offered), offered.port)
        if self.session.end is not None:
            await self._end(self._hangup_of(self.session.end))  # CANCELled meanwhile

    async def close(self) -> None:
        """Hang up whatever is still up and close the legs (after the flow)."""
        if not self._ended.done():
            await self.hang_up(HangupCause.NORMAL_CLEARING)
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    def status_sides(self) -> list[tuple[str, RtpLeg | None]]:
        """The legs a line of ``callbox status`` shows, by name."""
        agent = self._bridged.leg if self._bridged is not None else None
        return [("caller", self.caller_leg), ("agent", agent)]

    def status(self, stats: StatsOf | None) -> dict[str, Any]:
        """A line of ``callbox status``, its legs' figures from ``stats`` (none if None)."""
        return {
            "id": self._id,
            "from": self._caller,
            "to": self._dialled,
            "trunk": " > ".join(t for t in (self._trunk, self.trunk_out) if t) or None,
            "state": self.state.value,
            "agent": self._bridged.extension if self._bridged is not None else self._ringing_agent,
            "seconds": round(time.monotonic() - self._started_monotonic, 1),
            "held": self.session.held_by_peer,
            **legs_status(self.legs, self.status_sides(), stats),
        }

    # The Call protocol's operations.
    async def answer(self) -> None:
        """200 OK with our SDP; returns once the ACK arrived."""
        if self._answered:
            return
        await self._check_up()
        leg = self._caller_leg()
        offer = self.session.offer
        assert offer is not None
        carried = self.legs.formats[leg]
        answer = create_answer(
            offer,
            self.session.local_host,
            leg.local_port,
            (carried.codec,),
            rtcp_mux=leg.local_rtcp_port == leg.local_port,
        )
        try:
            self.session.answer(answer)
        except SessionError:
            await self._caller_gone()
            raise
        await self._until(self._confirmed.wait())
        await self._command(leg.hold, False)
        self._answered = True
        self.state = CallState.IVR
        self._notify(self._id, "answered", {})

    async def play(self, prompts: Sequence[str], *, barge_in: bool) -> PlayEnd:
        """Play prompts in order; a missing or unreadable file is logged and skipped."""
        await self._check_up()
        if barge_in and self._digits:
            return PlayEnd.DIGIT
        loaded = [p for p in [await self._load(name) for name in prompts] if p is not None]
        if not loaded:
            return PlayEnd.FINISHED
        return await self._play_loaded(loaded, barge_in=barge_in)

    async def next_digit(self, wait_s: float) -> str | None:
        """The next digit, queued or awaited; None after ``wait_s``.

        While it waits the caller hears silence rather than nothing: RTP goes
        on, so a gateway that hangs up on a silent stream keeps the call, and
        the far end's jitter buffer and NAT bindings stay as they were.
        """
        await self._check_up()
        if not self._digits:
            ended = await self._play_loaded(
                [Silence(min(round(wait_s * 1000), LONGEST_SILENCE_MS))], barge_in=True
            )
            if ended is PlayEnd.FINISHED:
                return None
            if not self._digits:  # the engine's digit event comes just after the playback's end
                try:
                    await self._until(asyncio.wait_for(self._digit_arrived.wait(), DIGIT_EVENT_S))
                except TimeoutError:
                    return None
        return self._digits.popleft()

    async def _play_loaded(
        self, playlist: Sequence[Prompt | Silence], *, barge_in: bool
    ) -> PlayEnd:
        """Play ``playlist`` to its end, or until a digit if ``barge_in``."""
        self._digit_arrived.clear()
        finished = await self._start_playback(playlist, loop=False, barge_in=barge_in)
        if not barge_in:
            await self._until(asyncio.shield(finished))
            return PlayEnd.FINISHED
        digit = asyncio.ensure_future(self._digit_arrived.wait())
        waits: list[asyncio.Future[Any]] = [finished, digit]
        try:
            await self._until(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED))
        finally:
            digit.cancel()
        if finished.done() and finished.result().reason != "digit" and not self._digits:
            return PlayEnd.FINISHED
        # A digit ends the prompt; the engine stopped it already unless it came by INFO.
        if not finished.done():
            await self._command(self._caller_leg().stop_playback)
        return PlayEnd.DIGIT

    async def offer(self, extension: str, ring_s: float) -> OfferResult:
        """Ring every registered phone of ``extension`` for ``ring_s`` seconds."""
        await self._check_up()
        bindings = self._registrar.contacts(extension)
        record = self._extension(extension)
        codecs = allowed_codecs(record) if record is not None else DEFAULT_PREFERENCE
        if not bindings or not codecs:
            return OfferResult(OfferOutcome.FAILED)
        leg = await self._media.leg(
            self.legs, LegFormat(codecs[0], OFFERED_EVENT_PT), beside=self._caller_leg()
        )
        caller = self.session.caller
        host = bindings[0].registrar_host or self.session.local_host
        try:
            session = await self._media.place(
                self.legs,
                bindings,
                leg,
                codecs,
                Address(caller.uri, caller.display_name),
                Address(Uri("sip", host, extension)),
                no_answer_s=ring_s,
            )
        except SessionError as error:
            log.info("call %s: cannot reach %s: %s", self._id, extension, error)
            return OfferResult(OfferOutcome.FAILED)
        self.legs.legs[session] = leg
        event = await self._ring(session, extension)
        if isinstance(event, Ended):
            return OfferResult(_offer_outcome(event))
        return await self._answered_by(extension, session, event)

    async def _ring(self, session: OutgoingCall, destination: str) -> SessionEvent:
        """Wait for ``session``'s answer or failure while it rings ``destination``.

        Cancelling the wait, or the call ending, hangs the session up (CANCEL).
        """
        outcome: asyncio.Future[SessionEvent] = asyncio.get_running_loop().create_future()
        self._offers[session] = outcome
        previous, self.state = self.state, CallState.RINGING_AGENT
        self._ringing_agent = destination
        try:
            return await self._until(asyncio.shield(outcome))
        except (asyncio.CancelledError, CallEnded):
            session.hangup(Cause.NORMAL_CLEARING)  # CANCEL while it rings, else BYE
            raise
        finally:
            self._offers.pop(session, None)
            self._ringing_agent = None
            if self.state is CallState.RINGING_AGENT:
                self.state = previous

    async def _answered_by(
        self, destination: str, session: OutgoingCall, event: SessionEvent
    ) -> OfferResult:
        """The leg of ``session``, which answered ``destination``, fitted to its answer."""
        assert isinstance(event, Answered)
        try:
            fitted = await self._media.fit(self.legs, session, event.media) if event.media else None
        except (RuntimeError, ValueError):
            fitted = None  # the call's legs were closed as it ended
        await self._check_up()  # the caller left while the phone was fitted: _end hung it up
        if fitted is None or event.media is None:
            session.hangup(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            return OfferResult(OfferOutcome.FAILED)
        agent = LiveAgentLeg(destination, session, fitted, event.media)
        self._latest_agent = agent
        return OfferResult(OfferOutcome.ANSWERED, agent)

    async def _dial_out(self, number: str) -> OfferResult:
        """Call the outside ``number`` through the outbound routes open to the IVR, each trunk
        of the route in turn (the next one after a trunk's failure, ``fails_over``)."""
        dialer = self._dialer
        try:
            if dialer is None:
                raise OutboundRefused(404, "no trunks")
            plan = dialer.plan(number, IVR_CALLER)
        except OutboundRefused as refused:
            log.info("call %s: transfer to %s refused: %s", self._id, number, refused.reason)
            return OfferResult(OfferOutcome.FAILED)
        after = -1
        while True:
            attempt = await dialer.dial(self.legs, plan, beside=self._caller_leg(), after=after)
            if attempt is None:
                return OfferResult(OfferOutcome.FAILED)
            self.trunk_out = attempt.trunk
            event = await self._ring(attempt.session, number)
            if not isinstance(event, Ended):
                return await self._answered_by(number, attempt.session, event)
            await dialer.give_up(self.legs, attempt)
            if not fails_over(event):
                return OfferResult(_offer_outcome(event))
            after = attempt.index

    async def bridge(self, leg: AgentLeg) -> Hangup:
        """Connect caller and agent until either hangs up (the other is hung up too)."""
        await self._check_up()
        if not isinstance(leg, LiveAgentLeg):
            raise TypeError(f"not a leg of this call: {leg!r}")
        caller_leg = self._caller_leg()
        self._bridged = leg
        self.legs.parties[:] = [self.session, leg.session]
        self.state = CallState.TALKING
        if leg.session.ended and leg.session.end is not None:
            await self._end(self._hangup_of(leg.session.end, Side.AGENT))
        else:
            try:
                await self._media.connect(
                    caller_leg, leg.leg, leg.media, stop_inband_dtmf=self._ivr_listens
                )
                self._ivr_listens = False
            except (RuntimeError, ValueError):
                await self._check_up()  # its legs were closed as it ended
                raise
        return await self.wait_ended()

    async def start_music_on_hold(self, music: str | None) -> None:
        """Loop ``music`` (default: the built-in hold music) to the caller."""
        await self._check_up()
        self.state = CallState.QUEUED
        self._hold_music = music
        prompt = await self._load(music or DEFAULT_MUSIC)
        if prompt is None:
            return
        self._music = await self._start_playback([prompt], loop=True, barge_in=False)

    async def stop_music_on_hold(self) -> None:
        """Stop the music and wait until the engine has."""
        music, self._music = self._music, None
        if music is None or music.done() or self._ended.done():
            return
        await self._command(self._caller_leg().stop_playback)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(music), MUSIC_STOP_WAIT_S)

    async def start_recording(self, path: str) -> None:
        """Record caller (left) and the agent who answered last (right) to ``path``."""
        await self._check_up()
        caller_leg = self._caller_leg()
        agent = self._latest_agent
        engine = self._media.engine()
        if engine is None:
            return
        await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)

        stop_listening = agent is not None and self._ivr_listens

        def record() -> CallRecording:
            if stop_listening:
                # Stopped before the recording starts, not at the bridge a moment
                # later, so it takes the relay's path from its first frame.
                caller_leg.detect_inband_dtmf(False)
            right = agent.leg if agent else caller_leg
            return engine.record(path, left=caller_leg, right=right)

        self._recording = await self._command(record)
        if stop_listening:
            self._ivr_listens = False

    async def transfer(self, destination: str) -> Hangup:
        """Ring extension ``destination`` for the caller, or call it through the outbound
        routes open to the IVR when it is no extension; bridge when it answers."""
        await self._check_up()
        if not self._answered and self.session.state is SessionState.RINGING:
            try:
                self.session.ringing()
            except SessionError:
                await self._caller_gone()
                raise
        if self._extension(destination) is None:
            result = await self._dial_out(destination)
        else:
            result = await self.offer(destination, self._media.limits.no_answer_s)
        if result.leg is None:
            await self.hang_up(_FAILED_TRANSFER[result.outcome])
            return await self.wait_ended()
        await self.answer()
        return await self.bridge(result.leg)

    async def hang_up(self, cause: HangupCause) -> None:
        """End the call from the switch's side with ``cause``."""
        await self._end(Hangup(Side.SYSTEM, cause))

    async def wait_ended(self) -> Hangup:
        """How the call ended, once it has."""
        return await asyncio.shield(self._ended)

    def media_quality(self) -> Sequence[LegQuality]:
        """Each leg's loss, jitter and MOS from its final (or last) statistics."""
        return [leg_quality(name, stats) for name, stats in self._final.items()]

    # Events.
    async def _follow(self) -> None:
        """Handle the call's session and media events in order, for the call's whole life."""
        while True:
            source, event = await self.legs.events.get()
            try:
                if isinstance(event, MediaEvent):
                    await self._media_event(source, event)
                elif isinstance(source, Session):
                    await self._session_event(source, event)
            except Exception:
                log.exception("call %s: handling %s failed", self._id, event)

    async def _media_event(self, source: Session | RtpLeg, event: MediaEvent) -> None:
        if source is not self.caller_leg:
            if event.kind == "rtp_timeout" and self._bridged and source is self._bridged.leg:
                await self._end(Hangup(Side.AGENT, HangupCause.RECOVERY_ON_TIMER_EXPIRY))
            return
        if event.kind == "dtmf":
            self._digits.append(event.detail)
            self._digit_arrived.set()
        elif event.kind == "playback_finished" and self._playbacks:
            finished = self._playbacks.popleft()
            if not finished.done():
                finished.set_result(event)
        elif event.kind == "rtp_timeout":
            log.info("call %s: no RTP from the caller: hanging up", self._id)
            await self._end(Hangup(Side.SYSTEM, HangupCause.RECOVERY_ON_TIMER_EXPIRY))

    async def _session_event(self, source: Session, event: SessionEvent) -> None:
        bridged = self._bridged.session if self._bridged is not None else None
        if source is self.session:
            if isinstance(event, Confirmed):
                self._confirmed.set()
            elif isinstance(event, Ended):
                await self._end(self._hangup_of(event))
            elif isinstance(event, DtmfReceived):
                self._digits.append(event.relay.signal)
                self._digit_arrived.set()
                if bridged is not None:
                    pass_dtmf(event, bridged)
            elif isinstance(event, Reoffered):
                await self._reoffered(source, bridged, event)
        elif source in self._offers:
            if isinstance(event, Answered | Ended) and not self._offers[source].done():
                self._offers[source].set_result(event)
        elif source is bridged:
            if isinstance(event, Ended):
                await self._end(self._hangup_of(event, Side.AGENT))
            elif isinstance(event, DtmfReceived):
                pass_dtmf(event, self.session)
            elif isinstance(event, Reoffered):
                await self._agent_reoffered(source, event)

    async def _reoffered(self, source: Session, other: Session | None, event: Reoffered) -> None:
        if other is not None:
            await self._media.reoffered(self.legs, source, other, event)
            return
        await self._follow_leg(source, event)

    async def _follow_leg(self, source: Session, event: Reoffered) -> bool:
        """Point ``source``'s leg at its new address; no RTP timeout while it is held.

        Returns False when the session has no leg (any more)."""
        leg = self.legs.legs.get(source)
        if leg is None:
            return False
        if event.media is not None:
            await self._media.run(
                leg.set_remote, event.media.remote_address, event.media.remote_port
            )
        # A held party sends no RTP: no timeout for it meanwhile.
        await self._media.run(leg.hold, event.held)
        return True

    async def _agent_reoffered(self, source: Session, event: Reoffered) -> None:
        """The agent's re-INVITE: hold plays the hold music to the caller, resume stops it.

        The caller's side is not re-INVITEd: a gateway's caller would hear
        silence, and the queue's music tells them the call is still up.
        """
        if not await self._follow_leg(source, event):
            return
        if event.held and self.state is not CallState.HELD:
            self.state = CallState.HELD
            prompt = await self._load(self._hold_music or DEFAULT_MUSIC)
            if prompt is not None and not self._ended.done():
                self._music = await self._start_playback([prompt], loop=True, barge_in=False)
        elif not event.held and self.state is CallState.HELD:
            await self.stop_music_on_hold()
            self.state = CallState.TALKING

    # Ending.
    def _hangup_of(self, ended: Ended, far_side: Side = Side.CALLER) -> Hangup:
        """The ``Hangup`` for a session's end: the far side's if it hung up, else ours."""
        side = far_side if ended.by_peer else Side.SYSTEM
        return Hangup(side, ended.cause)

    async def _end(self, hangup: Hangup) -> None:
        """Hang up every session with the same cause, stop the recording, close the legs,
        keep their final statistics; then the call has ended."""
        if self._ending:
            await self.wait_ended()
            return
        self._ending = True
        cause = hangup.cause
        # Every session the call made has a leg, answered, ringing or being fitted.
        for session in [self.session, *self.legs.legs]:
            if not session.ended:
                session.hangup(cause)
        recording, self._recording = self._recording, None
        if recording is not None:
            with contextlib.suppress(RuntimeError, OSError):
                await self._media.run(recording.stop)
        final = await self._media.close_legs(self.legs)
        agent = self._bridged.leg if self._bridged is not None else None
        for name, leg in (("caller", self.caller_leg), ("agent", agent)):
            if leg is not None and leg in final:
                self._final[name] = final[leg]
        self.state = CallState.ENDED
        self._ended.set_result(hangup)
        self._notify(
            self._id, "ended", {"side": hangup.side.value, "cause": str(int(hangup.cause))}
        )

    # Helpers.
    async def _check_up(self) -> None:
        """``CallEnded`` once the call is ending (after its legs closed, so the record can
        read their final statistics)."""
        if self._ending:
            raise CallEnded(await self.wait_ended())

    async def _caller_gone(self) -> None:
        """``CallEnded`` if the caller's session is over, though its ``Ended`` event may
        still wait in the queue (a CANCEL that came while we acted)."""
        if self.session.end is not None:
            await self._end(self._hangup_of(self.session.end))
        await self._check_up()

    async def _command(self, command: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """An engine command on one of the call's legs; ``CallEnded`` if the call ended
        (closing its legs) meanwhile."""
        try:
            return await self._media.run(command, *args, **kwargs)
        except (RuntimeError, ValueError):
            await self._check_up()
            raise

    def _caller_leg(self) -> RtpLeg:
        if self.caller_leg is None:
            raise RuntimeError(f"call {self._id} has no media leg yet")
        return self.caller_leg

    async def _until(self, awaitable: Awaitable[_T]) -> _T:
        """Await ``awaitable``; ``CallEnded`` (and it is cancelled) if the call ends first."""
        work = asyncio.ensure_future(awaitable)
        ended = asyncio.shield(self._ended)
        waits: list[asyncio.Future[Any]] = [work, ended]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            ended.cancel()
        if self._ended.done():
            # Ending wins over a result that came with it (a playback cut short by the end).
            work.cancel()
            raise CallEnded(self._ended.result())
        return work.result()

    async def _load(self, name: str) -> Prompt | None:
        path = self._prompts.path(name)
        try:
            return await self._media.run(Prompt.load, path)
        except (PromptError, OSError) as error:
            log.warning("call %s: prompt %r not played: %s", self._id, name, error)
            return None

    async def _start_playback(
        self, prompts: Sequence[Prompt | Silence], *, loop: bool, barge_in: bool
    ) -> asyncio.Future[MediaEvent]:
        """Start playing on the caller's leg; the future of its ``playback_finished``."""
        leg = self._caller_leg()
        finished: asyncio.Future[MediaEvent] = asyncio.get_running_loop().create_future()
        # Queued first: the engine may report the end before the command returns here.
        self._playbacks.append(finished)
        try:
            await self._command(leg.play, prompts, loop=loop, barge_in=KEYPAD if barge_in else "")
        except BaseException:
            self._playbacks.remove(finished)
            raise
        return finished


_FAILED_TRANSFER = {
    OfferOutcome.BUSY: HangupCause.USER_BUSY,
    OfferOutcome.NO_ANSWER: HangupCause.NO_ANSWER,
    OfferOutcome.FAILED: HangupCause.DESTINATION_OUT_OF_ORDER,
    OfferOutcome.ANSWERED: HangupCause.NORMAL_CLEARING,
}


def _offer_outcome(ended: Ended) -> OfferOutcome:
    """What a phone's failure means to the ACD: busy, no answer, or a failure."""
    if ended.status in (486, 600):
        return OfferOutcome.BUSY
    if ended.status in (408, 480) or ended.cause is Cause.NO_ANSWER:
        return OfferOutcome.NO_ANSWER
    return OfferOutcome.FAILED
