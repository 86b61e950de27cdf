"""Call control: a B2BUA that routes every INVITE through the media engine.

An INVITE from a trunk's address is the trunk's call: a configured
inbound number becomes a ``LiveCall`` (``calls/live.py``) that the call
center's IVR runs to its end (which writes the call record); any other
number gets 404. Any other INVITE is challenged (407, the extension's
password, the same digest realm and rules as the registrar's 401); a call
to a configured inbound number goes to the IVR the same way. An offer that
does not parse (``session.py``) or has no codec in common gets 488.

Otherwise the dialled number
(the Request-URI's user, else the To user) must be a configured extension with
at least one registered phone (480 otherwise); every phone of that
extension rings at once (``SessionManager.call`` forks along each
registration's flow). A number that is no extension is an outside number:
it goes out through the first outbound route (``calls/outbound.py``) it
matches that is open to the calling extension (404 when none matches, 403
when none is open to it), through the route's trunks in order: a trunk's
5xx or 408 moves the call on to the next trunk with a new leg, any other
failure goes back to the caller with its Q.850 cause. Such a call is like
a call between extensions from then on, and its call record is written
when it ends.

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
up.

An attended transfer is a REFER whose Refer-To carries Replaces naming the
transferor's dialog of another call with the switch (RFC 3891 tags: to-tag
ours). That dialog must be a live, confirmed session of the same phone's
extension in another call between extensions (481 otherwise, 486 for
``early-only``, 603 for a queue call or a call with a transfer under way).
Its call's far party and leg then join the REFER's call in the transferor's
place (``LegControl.adopt``); the two legs are bridged when they share a
worker, else the far party is moved by re-INVITE to a new leg beside the
other's (``LegControl.move``). Hold is carried over (a party is held exactly
when its new peer holds it), the transferor hears NOTIFY 200 and gets a BYE
on both dialogs, and the merged call goes on like any two-party call.

A semi-attended transfer is the same REFER naming the transferor's early
dialog of a call still ringing at its callee: that ringing call becomes a
transfer target of the REFER's call (as in a blind transfer), the early
dialog ends with 487, and the transferee is taken off hold and hears
ringback until the target answers (then bridged, NOTIFY 200, the transferor
hung up) or fails (NOTIFY with its status; transferee and transferor hung
up); the transferee's hang-up CANCELs the target.

A phone's INVITE with Replaces (RFC 3891) takes over one of the switch's
dialogs in a call between extensions: a confirmed one of the same extension
(a call moved from a desk phone to a softphone) or, for call pickup, the
early dialog of the switch's INVITE to a ringing phone of the same extension
or of one in the same ``pickup_group``. The new phone gets a leg beside its
peer's, bridged to it, and a 200; the replaced phone gets BYE, or every
ringing phone of the call CANCEL with ``Reason: SIP;cause=200;text="Call
completed elsewhere"`` (and the caller its 200). Another extension's dialog
gets 403; a dialog of a queue call, of a call with a transfer under way or
of a call not yet set up 603 (the stack answers 481 and 486 itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.calllog.journal import INTERRUPTED
from appliance.calllog.records import (
    CallDirection,
    CallOutcome,
    CallRecord,
    OpenCall,
    microseconds,
)
from appliance.calls.interface import Hangup, HangupCause, Side
from appliance.calls.legs import (
    OFFERED_EVENT_PT,
    CallLegs,
    CallLimits,
    CallState,
    LegControl,
    LegFormat,
    StatsOf,
    allowed_codecs,
    answered_format,
    common_codec,
    leg_quality,
    legs_status,
    new_call_id,
    offered_format,
    pass_dtmf,
)
from appliance.calls.live import LiveCall
from appliance.calls.outbound import (
    OutboundPlan,
    OutboundRefused,
    TrunkAttempt,
    TrunkDialer,
    fails_over,
)
from appliance.config.records import Extension, OutboundRoute
from appliance.media import MediaEvents
from appliance.sip.auth import DigestChallenger, Verdict
from appliance.sip.causes import Cause, Reason, reason_phrase
from appliance.sip.message import Address
from appliance.sip.refer import Transfer
from appliance.sip.registrar import Registrar
from appliance.sip.sdp import (
    DEFAULT_PREFERENCE,
    Codec,
    SdpError,
    SessionDescription,
    create_answer,
    negotiate,
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
    TransferRequested,
)
from appliance.sip.trunk import Trunks, trunk_codecs
from appliance.switch.callcenter import CallCenter, CallEvent, CallEventKind
from core import Engine, LegStats, MediaEvent, RtpLeg

log = logging.getLogger(__name__)

RINGBACK_PLAN = "cn"
"""The tone plan (``core.tone_plans()``) of the ringback a transferee hears while the
target of a semi-attended transfer rings."""


@dataclass(eq=False)
class Call(CallLegs):
    """One call between two extensions: its two sessions and their two legs."""

    caller: IncomingCall
    number: str
    started: float
    callee: OutgoingCall | None = None
    caller_leg: RtpLeg | None = None
    callee_leg: RtpLeg | None = None
    answered_at: float | None = None
    state: CallState = CallState.ROUTING
    rang: bool = False
    early_media: bool = False
    """The callee's early media is bridged to the caller (a 183 with SDP went to the caller)."""
    merged: bool = False
    """An attended transfer merged another call into this one: its parties are no
    longer the caller and the dialled number, and ``status`` names them instead."""
    transfers: dict[Session, tuple[Transfer, Session]] = field(default_factory=dict)
    """Calls placed for a transfer, each with its REFER and its transferee."""
    transfers_out: dict[Session, tuple[OutboundPlan, TrunkAttempt]] = field(default_factory=dict)
    """Those of them that go to an outside number: the route and the trunk tried now."""
    plan: OutboundPlan | None = None
    """An outside number's route (None: a call between extensions)."""
    attempt: TrunkAttempt | None = None
    """The trunk the outside call is placed through now."""
    started_at: float = field(default_factory=time.time)
    hangup: Hangup | None = None
    """Which side ended the call first, and why."""
    ringing_back: set[Session] = field(default_factory=set)
    """Transferees of a semi-attended transfer: they hear ringback while the target rings,
    and its failure hangs them up."""

    def peer(self, session: Session) -> Session | None:
        """The party ``session`` is connected to, if it is one of the two."""
        if session not in self.parties or len(self.parties) != 2:
            return None
        return self.parties[1] if session is self.parties[0] else self.parties[0]

    def sessions(self) -> list[Session]:
        """Every session of the call still to follow: parties and transfer targets."""
        return [*self.parties, *self.transfers]

    def _talking(self) -> dict[str, str | None]:
        """``from`` and ``to`` of a merged call: the phones of its two parties."""
        phones = [_phone(party) for party in self.parties]
        return dict(zip(("from", "to"), phones, strict=False))

    def status_sides(self) -> list[tuple[str, RtpLeg | None]]:
        """The legs a line of ``callbox status`` shows, by name."""
        sides = [self.legs.get(party) for party in self.parties]
        return list(zip(("caller", "callee"), sides, strict=False))

    def status(self, stats: StatsOf | None) -> dict[str, Any]:
        """A line of ``callbox status``, its legs' figures from ``stats`` (none if None)."""
        return {
            "id": self.id,
            "from": self.caller.caller.uri.user or str(self.caller.caller.uri),
            "to": self.number,
            "trunk": self.attempt.trunk if self.attempt is not None else None,
            **(self._talking() if self.merged else {}),
            "state": self.state.value,
            "seconds": round(time.monotonic() - self.started, 1),
            "held": any(party.held_by_peer for party in self.parties),
            **legs_status(self, self.status_sides(), stats),
        }


class CallControl:
    """The switch's B2BUA: takes each ``IncomingCall`` and routes it.

    A trunk's call, or an extension's call to a configured inbound number,
    becomes a ``LiveCall`` that the call center's IVR runs; an extension's
    call to another extension is connected to it. ``extension(number)``
    reads an extension's configuration; ``engine()`` and ``media_events()``
    give the media engine once it runs.
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
        *,
        trunks: Trunks | None = None,
        callcenter: CallCenter | None = None,
        routes: Callable[[], Sequence[OutboundRoute]] = tuple,
    ) -> None:
        self.sessions = sessions
        self.registrar = registrar
        self.extension = extension
        self.auth_failed = auth_failed
        self.limits = limits or CallLimits()
        self.trunks = trunks
        self.callcenter = callcenter
        self.media = LegControl(sessions, engine, media_events, self.limits)
        self.dialer = TrunkDialer(trunks or Trunks(), self.media, routes)
        self.challenger: DigestChallenger = registrar.challenger
        self.calls: dict[str, Call] = {}
        self.live: dict[str, LiveCall] = {}
        """Inbound calls the IVR runs, by id."""
        self._tasks: set[asyncio.Task[None]] = set()
        sessions.on_incoming = self.incoming

    def incoming(self, session: IncomingCall) -> None:
        """A new INVITE: a trunk's, or an extension's authenticated at once; each call is
        then routed and connected in a task of its own.

        Half of the INVITEs are challenged (a phone sends its credentials only
        when asked): those need no task and no store read.
        """
        trunks = self.trunks
        if trunks is not None and trunks.match(session.flow.remote[0], session.invite) is not None:
            self._spawn(self._from_trunk(session))
            return
        extension = self._authenticate(session)
        if extension is not None and session.replaces is not None:
            self._spawn(self._replace(session, extension))
        elif extension is not None:
            self._spawn(self._run(session, extension))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def status(self, legs: bool = True) -> list[dict[str, Any]]:
        """Every live call, for ``callbox status``: with its legs' figures (their
        statistics read together, off the loop) unless ``legs`` is False."""
        calls: list[Call | LiveCall] = [*self.calls.values(), *self.live.values()]
        if not legs:
            return [call.status(None) for call in calls]
        read = [leg for call in calls for _, leg in call.status_sides() if leg is not None]
        stats = await self.media.stats_of(read)
        return [call.status(stats) for call in calls]

    def hang_up(self, call_id: str, cause: HangupCause = HangupCause.NORMAL_CLEARING) -> bool:
        """Hang up the live call ``call_id`` (either kind) with ``cause``; False if none."""
        live = self.live.get(call_id)
        if live is not None:
            self._spawn(live.hang_up(cause))
            return True
        call = self.calls.get(call_id)
        if call is None:
            return False
        self._hangup_all(call, cause)
        return True

    async def close(self) -> None:
        """Hang up every call and wait for their tasks (the switch is stopping)."""
        for call in list(self.calls.values()):
            self._hangup_all(call, Cause.NORMAL_CLEARING)
        for live in list(self.live.values()):
            await live.hang_up(HangupCause.NORMAL_CLEARING)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.media.close()

    # One call, from INVITE to hang-up

    async def _run(self, session: IncomingCall, extension: Extension) -> None:
        if session.ended:
            return  # cancelled before this task ran
        # The dialled number: the Request-URI's user, or To's when the URI names only us.
        number = session.callee.user or session.invite.to.uri.user or ""
        callcenter = self.callcenter
        if callcenter is not None and callcenter.number_known(number):
            await self._run_live(session, extension.number, number, None, allowed_codecs(extension))
            return
        call = Call(session, number, time.monotonic(), id=new_call_id())
        self.calls[call.id] = call
        session.listener = call.listen
        try:
            if await self._connect(call, extension):
                await self._follow(call)
        except Exception:
            log.exception("call %s failed", call.id)
            self._hangup_all(call, Cause.TEMPORARY_FAILURE)
        finally:
            del self.calls[call.id]
            final = await self.media.close_legs(call)
            call.stop_listening([call.caller, *call.transfers])
            log.info("call %s from %s to %s over", call.id, extension.number, call.number)
            if call.plan is not None:
                self._log_outbound(call, extension.number, final)

    async def _from_trunk(self, session: IncomingCall) -> None:
        """Route a trunk's INVITE to the IVR (404 for a number not configured)."""
        if session.ended:
            return  # cancelled before this task ran
        trunks = self.trunks
        assert trunks is not None
        inbound = trunks.inbound_call(session.invite, session.flow.remote[0])
        assert inbound is not None
        callcenter = self.callcenter
        if callcenter is None or not callcenter.number_known(inbound.dialled):
            log.info("trunk %s: no inbound number %s: 404", inbound.trunk, inbound.dialled)
            session.reject(404)
            return
        trunk = trunks.states[inbound.trunk].trunk
        codecs = trunk_codecs(trunk) or DEFAULT_PREFERENCE
        await self._run_live(session, inbound.caller.number, inbound.dialled, trunk.name, codecs)

    async def _run_live(
        self,
        session: IncomingCall,
        caller: str,
        dialled: str,
        trunk: str | None,
        codecs: tuple[Codec, ...],
    ) -> None:
        """Run the inbound number's flow for the call until it ends (488 if no codec fits)."""
        callcenter = self.callcenter
        assert callcenter is not None
        offer = session.offer
        chosen = common_codec(offer, codecs) if offer is not None else None
        if offer is None or chosen is None or not self.media.ready():
            session.reject(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            return
        offered, codec = chosen
        call = LiveCall(
            new_call_id(),
            session,
            caller=caller,
            dialled=dialled,
            trunk=trunk,
            media=self.media,
            registrar=self.registrar,
            extension=self.extension,
            prompts=callcenter.prompts(dialled),
            notify=lambda call_id, kind, detail: callcenter.events.emit(
                CallEvent(call_id, CallEventKind(kind), time.time(), detail)
            ),
            dialer=self.dialer,
        )
        self.live[call.id] = call
        try:
            await call.start(offered_format(offered, codec), offered)
            await callcenter.ivr.handle(call)
        except Exception:
            log.exception("call %s failed", call.id)
            await call.hang_up(HangupCause.NORMAL_UNSPECIFIED)
        finally:
            await call.close()
            del self.live[call.id]
            log.info("call %s from %s to %s over", call.id, caller, dialled)

    def _authenticate(self, session: IncomingCall) -> Extension | None:
        """The calling extension, or None when the INVITE was challenged or refused."""
        number = session.caller.uri.user or ""
        source = session.flow.remote[0]
        # Read only when the INVITE carries credentials for the caller (not to challenge).
        read: list[Extension | None] = []

        def password(username: str) -> str | None:
            if username != number:
                return None
            read.append(self.extension(number))
            return read[0].password if read[0] is not None else None

        verification = self.challenger.verify(session.invite, "Proxy-Authorization", password)
        if verification.verdict in (Verdict.MISSING, Verdict.STALE):
            stale = verification.verdict is Verdict.STALE
            session.challenge(self.challenger.challenges(stale=stale))
            return None
        extension = read[0] if read else None
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
        bindings = self.registrar.contacts(call.number) if called is not None else []
        if called is None:
            try:
                call.plan = self.dialer.plan(call.number, calling.number)
            except OutboundRefused as refused:
                log.info("call %s: %s: %d", call.id, refused.reason, refused.status)
                caller.reject(refused.status, [("Warning", f'399 callbox "{refused.reason}"')])
                return False
            self._write_down_outbound(call, calling.number)
        elif not bindings:
            caller.reject(Cause.SUBSCRIBER_ABSENT)
            return False
        offer = caller.offer
        chosen = common_codec(offer, allowed_codecs(calling)) if offer is not None else None
        if offer is None or chosen is None or not self.media.ready():
            caller.reject(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            return False
        offered, codec = chosen
        caller_format = offered_format(offered, codec)
        call.caller_leg = await self.media.leg(
            call,
            caller_format,
            rtcp_mux=offered.rtcp_mux,
            remote=(offer.address_of(offered), offered.port),
        )
        if called is None:
            call.parties.append(caller)
            call.legs[caller] = call.caller_leg
            return not caller.ended and await self._dial_out(call)
        callee_codecs = allowed_codecs(called)
        call.callee_leg = await self.media.leg(
            call, LegFormat(callee_codecs[0], OFFERED_EVENT_PT), beside=call.caller_leg
        )
        call.parties.append(caller)
        call.legs[caller] = call.caller_leg
        if caller.ended:
            return False  # cancelled while the legs were made
        try:
            call.callee = await self.media.place(
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
        call.state = CallState.RINGING
        if caller.ended:
            call.callee.cancel()
            return False
        return True

    async def _dial_out(self, call: Call) -> bool:
        """Place the outside call through the next trunk of its route that takes it; False
        (the caller refused with the last trunk's failure, else 503) when none is left."""
        plan, caller, failed = call.plan, call.caller, call.attempt
        assert plan is not None
        assert call.caller_leg is not None
        attempt = await self.dialer.dial(
            call, plan, beside=call.caller_leg, after=failed.index if failed else -1
        )
        if attempt is None:
            ended = failed.session.end if failed is not None else None
            if caller.ended:
                return False  # it gave up while the trunks were tried
            if ended is not None:
                _pass_failure(caller, ended)
            else:
                why = f"no trunk of route {plan.route.name} is up"
                log.info("call %s: %s", call.id, why)
                caller.reject(Cause.NO_CIRCUIT_AVAILABLE, [("Warning", f'399 callbox "{why}"')])
            return False
        call.attempt = attempt
        call.callee, call.callee_leg = attempt.session, attempt.leg
        call.parties.append(attempt.session)
        call.state = CallState.RINGING
        if caller.ended:
            attempt.session.cancel()
            return False
        return True

    async def _fail_over(self, call: Call, source: Session, event: Ended) -> bool:
        """Whether the trunk's failure ``event`` moved the outside call on to another trunk."""
        attempt = call.attempt
        if attempt is None or source is not attempt.session or not fails_over(event):
            return False
        log.info(
            "call %s: trunk %s failed (%s): trying the next", call.id, attempt.trunk, event.status
        )
        await self.dialer.give_up(call, attempt)
        call.early_media = False  # the next trunk's early media replaces this one's
        if await self._dial_out(call):
            call.hangup = None  # the call goes on through another trunk
        else:
            call.state = CallState.ENDED
        return True

    def _log_outbound(self, call: Call, caller: str, final: dict[RtpLeg, LegStats]) -> None:
        """Write the outside call's record: route, trunk, number sent, outcome, quality."""
        if self.callcenter is None:
            return
        answered = call.answered_at is not None
        hangup = call.hangup or Hangup(Side.SYSTEM, Cause.NORMAL_CLEARING)
        callee_end = call.callee.end if call.callee is not None else None
        outcome = _outbound_outcome(answered, hangup, callee_end)
        record = _outbound_record(call, caller, time.time(), hangup, outcome, final)
        self.callcenter.call_log.add(record)

    def _write_down_outbound(self, call: Call, caller: str) -> None:
        """Keep the outside call written down while it runs (a crash leaves its record)."""
        if self.callcenter is None:
            return

        def progress() -> tuple[object, ...]:
            return call.state, call.answered_at, call.attempt

        def snapshot(now: float) -> OpenCall:
            record = _outbound_record(call, caller, now, INTERRUPTED, CallOutcome.INTERRUPTED, {})
            answered = call.answered_at
            return OpenCall(record, None if answered is None else microseconds(answered))

        self.callcenter.call_log.opened(call.id, progress, snapshot)

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
        if isinstance(event, Ended):
            if call.hangup is None:
                side = Side.CALLER if source is caller else Side.CALLEE
                call.hangup = Hangup(side if event.by_peer else Side.SYSTEM, event.cause)
            if caller.state is SessionState.RINGING and await self._fail_over(call, source, event):
                return
        if isinstance(event, Ended) and self._waiting_transferee(call, other):
            # A blind transferor may hang up at once: the transferee waits for the target.
            call.parties.remove(source)
            call.legs.pop(source, None)
        elif isinstance(event, Ended):
            if other is caller and caller.state is SessionState.RINGING:
                _pass_failure(caller, event)
            else:
                other.hangup(event.cause)
            self._alone(call, source, event)
            call.state = CallState.ENDED
        elif isinstance(event, Progress) and caller.state is SessionState.RINGING:
            if event.sdp is not None and source is call.callee and not call.early_media:
                await self._early_media(call, event.sdp)
            if event.status in (180, 183) and not call.rang:
                call.rang = True
                caller.ringing()
        elif isinstance(event, Answered):
            await self._answered(call, event)
        elif isinstance(event, Reoffered):
            await self._reoffered(call, source, other, event)
        elif isinstance(event, DtmfReceived):
            pass_dtmf(event, other)
        elif isinstance(event, TransferRequested) and source.state is not SessionState.CONFIRMED:
            # A REFER inside an early dialog (the phone's call still ringing): phones transfer
            # from the call that is up, naming the ringing one with Replaces.
            event.transfer.notify(603, reason_phrase(603))
        elif isinstance(event, TransferRequested) and event.transfer.replaces is not None:
            await self._attended_transfer(call, source, other, event.transfer)
        elif isinstance(event, TransferRequested):
            await self._transfer(call, source, other, event.transfer)

    async def _answered(self, call: Call, event: Answered) -> None:
        caller, callee = call.caller, call.callee
        assert callee is not None
        assert call.caller_leg is not None
        assert call.callee_leg is not None
        media = event.media
        leg = await self.media.fit(call, callee, media) if media is not None else None
        if media is None or leg is None:
            # The callee named a codec we cannot decode: nothing can carry it.
            callee.hangup(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            caller.reject(Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED)
            return
        call.callee_leg = leg
        await self.media.connect(call.caller_leg, leg, media)
        if caller.state is not SessionState.RINGING:
            callee.hangup(Cause.NORMAL_CLEARING)  # the caller gave up meanwhile
            return
        _answer(call, caller, call.caller_leg)
        call.state = CallState.ANSWERED
        call.answered_at = time.time()

    async def _early_media(self, call: Call, sdp: SessionDescription) -> None:
        """Pass the callee's early media (a 183 with SDP: a provider's ringback or
        announcement) on: its leg is pointed at the SDP's address and bridged (both legs
        still without RTP timeout), and the caller gets a 183 with our answer.

        An early SDP in another format than the callee's leg is left out (the leg can only
        move by re-INVITE after the answer): the caller hears its own ringing.
        """
        callee, leg = call.callee, call.callee_leg
        assert callee is not None
        assert call.caller_leg is not None
        offer = callee.local_sdp
        try:
            media = negotiate(offer, sdp) if offer is not None else None
        except SdpError as error:
            log.info("call %s: early media not taken: %s", call.id, error)
            return
        if media is None or leg is None or not call.formats[leg].fits(answered_format(media)):
            return
        await self.media.connect(call.caller_leg, leg, media, early=True)
        if call.caller.state is SessionState.RINGING:
            # Also after a 180: the 183's SDP tells the phone to play what comes in.
            call.early_media = call.rang = True
            call.caller.ringing(_answer_sdp(call, call.caller, call.caller_leg))

    async def _reoffered(
        self, call: Call, source: Session, other: Session, event: Reoffered
    ) -> None:
        held = await self.media.reoffered(call, source, other, event)
        call.state = CallState.HELD if held else CallState.ANSWERED

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
        if call.transfers or not self.media.ready():
            transfer.notify(603, "Declined")  # one at a time
            return
        extension = self.extension(number)
        if extension is None:
            await self._transfer_out(call, transferor, transferee, transfer, number)
            return
        bindings = self.registrar.contacts(number)
        if not bindings:
            transfer.notify(480, "Temporarily Unavailable")
            return
        codecs = allowed_codecs(extension)
        carried = LegFormat(codecs[0], OFFERED_EVENT_PT)
        leg = await self.media.leg(call, carried, beside=call.legs[transferee])
        try:
            target = await self.media.place(
                call, bindings, leg, codecs, _identity(transferee), Address(transfer.target.uri)
            )
        except SessionError as error:
            log.info("call %s: cannot reach %s for a transfer: %s", call.id, number, error)
            transfer.notify(503, "Service Unavailable")
            return
        call.transfers[target] = (transfer, transferee)
        call.legs[target] = leg
        log.info("call %s: transferring to %s", call.id, number)

    async def _transfer_out(
        self,
        call: Call,
        transferor: Session,
        transferee: Session,
        transfer: Transfer,
        number: str,
    ) -> None:
        """Call the outside ``number`` of a blind transfer for the transferee, through the
        outbound route open to the transferor's extension (404/403 by NOTIFY if none).

        Only an extension's phone may send a call out: a trunk's REFER (the far end of an
        outside call) is refused with 403, or anyone reaching us over a trunk could dial
        out at our cost.
        """
        phone = _phone(transferor)
        trunk_side = call.attempt is not None and transferor is call.attempt.session
        if phone is None or trunk_side or self.extension(phone) is None:
            log.info("call %s: transfer to %s refused: not from an extension", call.id, number)
            transfer.notify(403, reason_phrase(403))
            return
        try:
            plan = self.dialer.plan(number, phone)
        except OutboundRefused as refused:
            log.info("call %s: no transfer to %s: %s", call.id, number, refused.reason)
            transfer.notify(refused.status, reason_phrase(refused.status))
            return
        if not await self._transfer_through(call, transferee, transfer, plan, after=-1):
            transfer.notify(503, reason_phrase(503))

    async def _transfer_through(
        self, call: Call, transferee: Session, transfer: Transfer, plan: OutboundPlan, after: int
    ) -> bool:
        """Place a transfer's call through the next trunk of ``plan``; False if none is left."""
        attempt = await self.dialer.dial(call, plan, beside=call.legs[transferee], after=after)
        if attempt is None:
            return False
        call.transfers[attempt.session] = (transfer, transferee)
        call.transfers_out[attempt.session] = (plan, attempt)
        log.info("call %s: transferring to %s", call.id, plan.dialled)
        return True

    async def _transfer_event(self, call: Call, target: Session, event: SessionEvent) -> None:
        transfer, transferee = call.transfers[target]
        out = call.transfers_out.pop(target, None) if isinstance(event, Ended | Answered) else None
        if isinstance(event, Progress) and event.status in (180, 183):
            transfer.notify(180, "Ringing")
        elif isinstance(event, Ended):
            del call.transfers[target]
            call.legs.pop(target, None)
            if out is not None:
                plan, attempt = out
                await self.dialer.give_up(call, attempt)
                again = fails_over(event) and not transferee.ended
                if again and await self._transfer_through(
                    call, transferee, transfer, plan, attempt.index
                ):
                    return  # the next trunk of the route rings
            status = event.status or 500
            transfer.notify(status, reason_phrase(status))
            ringing_back = self._ringing_back_failed(call, transferee, event.cause)
            if not ringing_back and call.peer(transferee) is None:
                transferee.hangup(event.cause)  # its transferor has gone already
        elif isinstance(event, Answered):
            del call.transfers[target]
            if event.media is None or transferee.ended:
                target.hangup(Cause.NORMAL_CLEARING)
                self._ringing_back_failed(call, transferee, Cause.NORMAL_CLEARING)
                return
            leg = await self.media.fit(call, target, event.media)
            if leg is None:
                cause = Cause.BEARER_CAPABILITY_NOT_IMPLEMENTED
                target.hangup(cause)
                transfer.notify(488, reason_phrase(488))
                self._ringing_back_failed(call, transferee, cause)
                return
            transferor = call.peer(transferee)
            kept = call.legs[transferee]
            if transferee in call.ringing_back:
                call.ringing_back.discard(transferee)
                await self.media.run(kept.stop_playback)
            await self.media.connect(kept, leg, event.media)
            transfer.notify(200, "OK")
            if out is not None:
                call.attempt = out[1]  # status names the trunk the call now goes through
            if transferor is None:
                call.parties.append(target)
                return
            call.parties[call.parties.index(transferor)] = target
            call.legs.pop(transferor, None)
            transferor.hangup(Cause.NORMAL_CLEARING)

    @staticmethod
    def _ringing_back_failed(call: Call, transferee: Session, cause: Cause) -> bool:
        """A semi-attended transfer's target failed: its transferee, which left the
        transferor's call to hear the target ring, is hung up with ``cause``, and so is
        the transferor. False for a blind transfer (its transferee stays)."""
        if transferee not in call.ringing_back:
            return False
        call.ringing_back.discard(transferee)
        transferor = call.peer(transferee)
        transferee.hangup(cause)
        if transferor is not None:
            transferor.hangup(Cause.NORMAL_CLEARING)
        return True

    # Attended transfer (REFER with Replaces)

    def _replaced_call(
        self, call: Call, transferor: Session, transfer: Transfer
    ) -> tuple[Call, Session, Session] | int:
        """The call whose dialog the REFER's Replaces names, that dialog's session and its
        peer; else the status the transfer fails with.

        The dialog is confirmed (attended transfer) or the early dialog of the same
        phone's call still ringing at its callee (semi-attended: the peer is the switch's
        outgoing call, still ringing).
        """
        replaces = transfer.replaces
        assert replaces is not None
        replaced = self.sessions.sessions.get(replaces.dialog_id)
        # RFC 3891 3: 481 for no such dialog; only the transferor's own dialogs count.
        if replaced is None or replaced is transferor or _phone(replaced) != _phone(transferor):
            return 481
        early = isinstance(replaced, IncomingCall) and replaced.state is SessionState.RINGING
        if not early and replaced.state is not SessionState.CONFIRMED:
            return 481
        if replaces.early_only and not early:
            return 486  # RFC 3891 3: the dialog is confirmed already
        other = next((c for c in self.calls.values() if replaced in c.parties), None)
        if other is None or other is call or other.transfers or call.transfers:
            return 603  # a queue call the IVR runs, or one with a transfer of its own going
        target = other.peer(replaced)
        up = SessionState.CALLING if early else SessionState.CONFIRMED
        if target is None or target.state is not up:
            return 603  # the ringing call is not placed yet, or the other is ending
        return other, replaced, target

    async def _attended_transfer(
        self, call: Call, transferor: Session, transferee: Session, transfer: Transfer
    ) -> None:
        """Connect the transferee to the peer of the dialog the REFER replaces.

        The phone talks to the transferee in ``call`` and to the target in another
        call; the target's session and leg join ``call`` in the transferor's place,
        the transferor's two sessions are hung up, and ``call`` goes on between
        the transferee and the target. Their legs are bridged when they share a
        worker; otherwise the target is moved by re-INVITE to a new leg on the
        transferee's worker.
        """
        found = self._replaced_call(call, transferor, transfer)
        if isinstance(found, int):
            log.info(
                "call %s: attended transfer to %s refused: %d", call.id, transfer.replaces, found
            )
            transfer.notify(found, reason_phrase(found))
            return
        other, replaced, target = found
        if target.state is SessionState.CALLING:
            await self._semi_attended_transfer(call, transferee, transfer, other, replaced, target)
            return
        # Every change of who owns what happens before the first await, so neither
        # call's task sees a session or leg half moved.
        leg = self.media.adopt(other, call, target)
        call.parties[call.parties.index(transferor)] = target
        transferors_leg = call.legs.pop(transferor)
        call.merged = True
        log.info("call %s: attended transfer: takes %s from call %s", call.id, target.id, other.id)
        try:
            kept = call.legs[transferee]
            if await self.media.run(lambda: leg.worker != kept.worker):
                moved = await self.media.move(call, target, call.formats[leg], beside=kept)
                remote = _remote_address(target)
                if moved is None or remote is None:
                    transfer.notify(487, reason_phrase(487))  # the target hung up meanwhile
                    return
                # Where it sent RTP so far; the leg latches on where RTP comes from anyway.
                await self.media.run(moved.set_remote, *remote)
                leg = moved
            await self.media.bridge(kept, leg)
            await self.media.drop(call, transferors_leg)
            await self._carry_hold(call)
            transfer.notify(200, "OK")
        finally:
            # The transferor leaves both calls; the other call ends with its last session.
            for session in (transferor, replaced):
                session.hangup(Cause.NORMAL_CLEARING)

    async def _semi_attended_transfer(
        self,
        call: Call,
        transferee: Session,
        transfer: Transfer,
        other: Call,
        replaced: Session,
        target: Session,
    ) -> None:
        """Give the transferee the call still ringing at the target (semi-attended).

        The ringing outgoing call and its leg join ``call`` as a transfer's target
        (its answer, failure or the transferee's hang-up then go as for a blind
        transfer), the transferor's early dialog it replaces ends at once (487: a
        UAS cannot BYE it), and the transferee is taken off hold and hears ringback
        on a leg beside the target's (moved there by re-INVITE from another worker).
        """
        assert isinstance(replaced, IncomingCall)
        # Every change of who owns what happens before the first await (as above).
        ringing = self.media.adopt(other, call, target)
        other.callee, other.callee_leg = None, None
        call.transfers[target] = (transfer, transferee)
        call.ringing_back.add(transferee)
        call.merged = True
        replaced.reject(487)
        log.info(
            "call %s: semi-attended transfer: %s rings for it (from call %s)",
            call.id, target.id, other.id,
        )  # fmt: skip
        if other.rang:
            transfer.notify(180, "Ringing")
        kept = call.legs[transferee]
        if await self.media.run(lambda: ringing.worker != kept.worker):
            moved = await self.media.move(call, transferee, call.formats[kept], beside=ringing)
            remote = _remote_address(transferee)
            if moved is None or remote is None:
                return  # the transferee hung up meanwhile: its Ended cancels the target
            await self.media.run(moved.set_remote, *remote)
            kept = moved
        else:
            await self.media.unbridge(kept)
        if transferee.held_locally:
            transferee.resume()
        await self.media.run(kept.play_tone, "ringback", plan=RINGBACK_PLAN, barge_in=False)

    async def _carry_hold(self, call: Call) -> None:
        """After a transfer each party is held exactly when its new peer holds it: a
        transferee the transferor had held is resumed. The legs follow."""
        for party in call.parties:
            peer = call.peer(party)
            assert peer is not None
            if party.state is SessionState.CONFIRMED and party.held_locally != peer.held_by_peer:
                (party.hold if peer.held_by_peer else party.resume)()
        held = any(party.held_by_peer for party in call.parties)
        for party in call.parties:
            await self.media.run(call.legs[party].hold, held)
        call.state = CallState.HELD if held else CallState.ANSWERED

    # A phone's INVITE with Replaces (RFC 3891): a call taken over, or picked up

    def _replacement(
        self, session: IncomingCall, extension: Extension
    ) -> tuple[Call, Session] | int:
        """The call whose dialog ``session``'s Replaces names and that dialog's session;
        else the status to refuse the INVITE with.

        RFC 3891 6.1 leaves authorization to the recipient: a confirmed dialog may be
        taken over by a phone of the extension on it; the early dialog of a phone
        ringing (pickup) by a phone of that extension or of its ``pickup_group``.
        """
        replaced = session.replaces
        assert replaced is not None
        if replaced.ended:
            return 481  # RFC 3891 3 (the stack checked; it ended since)
        call = next((c for c in self.calls.values() if replaced in c.parties), None)
        peer = call.peer(replaced) if call is not None else None
        if call is None or peer is None or call.transfers:
            return 603  # a queue call the IVR runs, or one with a transfer going
        if replaced.state is SessionState.CONFIRMED:
            if peer.state is not SessionState.CONFIRMED:
                return 603
            allowed = _phone(replaced) == extension.number
        elif (
            call.caller.state is SessionState.RINGING
            and call.callee is not None
            and replaced is call.callee
        ):
            allowed = self._may_pick_up(extension, _phone(replaced))
        else:
            return 603
        return (call, replaced) if allowed else 403

    def _may_pick_up(self, picking: Extension, ringing: str | None) -> bool:
        """Whether a phone of ``picking`` may pick up a call ringing at ``ringing``."""
        if ringing == picking.number:
            return True
        rung = self.extension(ringing) if ringing else None
        group = picking.pickup_group
        return bool(group) and rung is not None and rung.pickup_group == group

    async def _replace(self, session: IncomingCall, extension: Extension) -> None:
        """Connect ``session``'s phone in place of the dialog its Replaces names.

        The new phone gets a leg beside its peer's (one worker), bridged to it.
        A confirmed dialog's phone gets BYE; a ringing one (pickup) is CANCELled
        as completed elsewhere and the caller is answered. Nothing changes when
        the INVITE is refused.
        """
        if session.ended:
            return  # cancelled before this task ran
        found = self._replacement(session, extension)
        offer = session.offer
        chosen = common_codec(offer, allowed_codecs(extension)) if offer is not None else None
        if isinstance(found, int) or offer is None or chosen is None or not self.media.ready():
            status = found if isinstance(found, int) else 488
            replaces = session.invite.headers.get("Replaces")
            log.info("%s's Replaces %s refused: %d", extension.number, replaces, status)
            session.reject(status)
            return
        call, replaced = found
        peer = call.peer(replaced)
        assert peer is not None
        offered, codec = chosen
        leg = await self.media.leg(
            call,
            offered_format(offered, codec),
            rtcp_mux=offered.rtcp_mux,
            beside=call.legs[peer],
            remote=(offer.address_of(offered), offered.port),
        )
        if session.ended or self._replacement(session, extension) != found:
            # The call changed while the leg was made (answered, hung up, transferred).
            await self.media.drop(call, leg)
            if not session.ended:
                session.reject(481)
            return
        # Every change of who owns what happens before the next await, so the call's
        # own task never sees a session or leg half moved.
        call.parties[call.parties.index(replaced)] = session
        replaced_leg = call.legs.pop(replaced)
        call.legs[session] = leg
        session.listener = call.listen
        call.merged = True
        if replaced.state is SessionState.CONFIRMED:
            log.info("call %s: %s takes over from %s", call.id, session.id, replaced.id)
            replaced.hangup(Cause.NORMAL_CLEARING)
        else:
            assert isinstance(replaced, OutgoingCall)
            log.info("call %s: picked up by %s", call.id, extension.number)
            replaced.cancel(Cause.NORMAL_CLEARING, Reason("SIP", 200, "Call completed elsewhere"))
            _answer(call, call.caller, call.legs[peer])
            call.answered_at = time.monotonic()
        _answer(call, session, leg)
        await self.media.bridge(call.legs[peer], leg)
        await self.media.drop(call, replaced_leg)
        await self._carry_hold(call)

    def _hangup_all(self, call: Call, cause: Cause) -> None:
        for session in [call.caller, *call.sessions()]:
            session.hangup(cause)


def _answer(call: Call, session: IncomingCall, leg: RtpLeg) -> None:
    """Answer ``session``'s offer with ``leg`` (its address and codec)."""
    session.answer(_answer_sdp(call, session, leg))


def _answer_sdp(call: Call, session: IncomingCall, leg: RtpLeg) -> SessionDescription:
    """Our SDP answer to ``session``'s offer: ``leg``, in the codec it was made for."""
    assert session.offer is not None
    return create_answer(
        session.offer,
        session.local_host,
        leg.local_port,
        (call.formats[leg].codec,),
        rtcp_mux=leg.local_rtcp_port == leg.local_port,
    )


def _pass_failure(caller: IncomingCall, ended: Ended) -> None:
    """Refuse the caller with the callee side's failure: its status and Q.850 cause (a
    Reason header, RFC 3326); a challenge was for us, not the caller: its cause's status."""
    status = ended.status
    if status is None or status in (401, 407):
        caller.reject(ended.cause)
    else:
        caller.reject(status, [("Reason", str(Reason.q850(ended.cause)))])


def _outbound_record(
    call: Call,
    caller: str,
    ended: float,
    hangup: Hangup,
    outcome: CallOutcome,
    final: dict[RtpLeg, LegStats],
) -> CallRecord:
    """The outside call's record, as if it ended at ``ended`` with ``hangup``."""
    plan, answered = call.plan, call.answered_at
    assert plan is not None
    sides = (("caller", call.caller_leg), ("callee", call.callee_leg))
    return CallRecord(
        id=call.id,
        started_us=microseconds(call.started_at),
        ended_us=microseconds(ended),
        dialled=call.number,
        caller=caller,
        outcome=outcome,
        hangup_side=hangup.side.value,
        hangup_cause=int(hangup.cause),
        trunk=call.attempt.trunk if call.attempt is not None else None,
        answered_us=None if answered is None else microseconds(answered),
        talk_s=None if answered is None else round(ended - answered, 1),
        legs=[leg_quality(name, final[leg]) for name, leg in sides if leg in final],
        direction=CallDirection.OUTBOUND,
        route=plan.route.name,
        number_sent=plan.number,
    )


def _outbound_outcome(answered: bool, hangup: Hangup, callee_end: Ended | None) -> CallOutcome:
    """How an outside call ended up: answered, cancelled by the caller, or the far end's
    (or the trunks') failure."""
    if answered:
        return CallOutcome.ANSWERED
    if hangup.side is Side.CALLER:
        return CallOutcome.CANCELLED
    status = callee_end.status if callee_end is not None else None
    if status in (486, 600):
        return CallOutcome.BUSY
    if status in (408, 480) or hangup.cause is Cause.NO_ANSWER:
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


def _identity(session: Session) -> Address:
    """Who the party of ``session`` is, for the From of a call placed for it."""
    if isinstance(session, IncomingCall):
        return Address(session.caller.uri, session.caller.display_name)
    assert isinstance(session, OutgoingCall)
    return Address(session.callee.uri, session.callee.display_name)


def _phone(session: Session) -> str | None:
    """The extension (user part) of the phone on the far side of ``session``."""
    if isinstance(session, IncomingCall):
        return session.caller.uri.user
    if isinstance(session, OutgoingCall):
        return session.callee.uri.user
    return None


def _remote_address(session: Session) -> tuple[str, int] | None:
    """Where the peer of ``session`` takes RTP, by its last SDP (None: no audio stream)."""
    sdp = session.remote_sdp
    audio = next((m for m in sdp.media if m.media == "audio" and m.port), None) if sdp else None
    if sdp is None or audio is None:
        return None
    return sdp.address_of(audio), audio.port
