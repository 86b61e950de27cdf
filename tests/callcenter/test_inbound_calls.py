"""Inbound calls end to end: trunk -> IVR menu -> queue -> agent, with real peers on loopback.

The caller is SIPp at the trunk's address (127.0.0.3) with its RTP in the
test (``RtpCaller``: it hears the prompts, presses digits, sends a tone);
agents are baresip phones registered with their passwords that answer by
themselves. The switch runs in the test's process, so the test logs
agents in and reads call records and the queue log from the store.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from appliance.acd.agents import AgentState, AgentStateChanged
from appliance.calllog.records import CallRecord, QueueEvent, QueueEventKind
from appliance.calls.interface import HangupCause
from appliance.calls.legs import CallState
from appliance.ivr.prompts import generate_prompts
from appliance.switch.callcenter import CallEvent, CallEventKind
from appliance.switch.service import Switch
from tests.callcenter.peers import (
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    BaresipPhone,
    RtpCaller,
    at_8k,
    callbox,
    eventually,
    finish,
    has_tone,
    messages,
    read_wav,
    rms_dbfs,
    start_sipp,
    stop_process,
    trunk_call_scenario,
    trunk_config,
)
from tests.sip.net import free_media_ports, free_port
from tests.sip.test_switch import SCENARIOS as SIP_SCENARIOS
from tests.sip.test_switch import password_of

pytestmark = pytest.mark.slow

NUMBER = "4008001234"
PROVIDER = "127.0.0.4"
"""An outside provider's address (the trunk's caller is at 127.0.0.3)."""


MENU = """      menu:
        type: menu
        prompt: menu
        options: {"1": sales}
        timeout: 10
        retries: 1
        invalid_prompt: invalid
      sales:
        type: queue
        queue: sales
"""


def center_config(
    *agents: str,
    ring_timeout: int = 20,
    start: str = "menu",
    nodes: str = MENU,
    extra: str = "",
    trunks: str = "",
) -> str:
    """Number ``NUMBER`` on the trunk, its flow ``main`` (``nodes`` from ``start``; by
    default a menu whose 1 is queue ``sales``), the queue served by ``agents`` (each on
    their own extension), and ``extra`` records; ``trunks`` are more trunks."""
    return trunk_config(
        f"""numbers:
  - {{number: "{NUMBER}", flow: main, trunk: gateway}}
flows:
  - name: main
    start: {start}
    nodes:
{nodes}queues:
  - {{name: sales, skill: sales, ring_timeout: {ring_timeout}, wrapup: 0, max_wait: 300}}
skills:
  - {{name: sales}}
agents:
"""
        + "".join(
            f'  - {{number: "{a}", name: agent {a}, group: sales, extension: "{a}"}}\n'
            for a in agents
        )
        + extra,
        extensions=agents or ("1001",),
        trunks=trunks,
    )


@pytest.fixture(scope="session")
def builtin_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in Mandarin prompts, generated once with espeak-ng and sox."""
    root = tmp_path_factory.mktemp("prompts")
    generate_prompts(root, "zh")
    return root


@pytest.fixture
def caller() -> Iterator[RtpCaller]:
    peer = RtpCaller()
    yield peer
    peer.close()


def loud_frames(heard: array.array[int]) -> int:
    """How many 20 ms frames of ``heard`` are above -45 dBFS (a prompt or music, not silence)."""
    return sum(1 for i in range(0, len(heard) - 160, 160) if rms_dbfs(heard[i : i + 160]) > -45)


def quiet_seconds_at_the_end(heard: array.array[int]) -> float:
    """How long the end of ``heard`` is silence (20 ms frames at or below -45 dBFS)."""
    frames = 0
    while len(heard) >= 160 * (frames + 1):
        end = len(heard) - 160 * frames
        if rms_dbfs(heard[end - 160 : end]) > -45:
            break
        frames += 1
    return frames * 0.02


async def prompt_heard(caller: RtpCaller) -> None:
    """Wait until the caller has heard half a second of audio above -45 dBFS (a prompt)."""
    await eventually(
        lambda: loud_frames(caller.heard_since(0)) >= 25, "the menu prompt at the caller"
    )


async def records(switch: Switch, since: float) -> list[CallRecord]:
    log = switch.callcenter.call_log
    await log.flush()
    return await log.calls(since, time.time() + 1)


async def sipp_phone(switch: Switch, cwd: Path, scenario: str) -> asyncio.subprocess.Process:
    """SIPp registered as extension 1001, then its phone playing ``scenario`` (from
    tests/sip/sipp) on the same port, in ``cwd``."""
    await asyncio.to_thread(cwd.mkdir, exist_ok=True)
    port = free_port()
    registering = await start_sipp(
        switch, SIP_SCENARIOS / "register.xml", "1001", cwd, "-p", str(port),
        "-au", "1001", "-ap", password_of("1001"), local="127.0.0.1",
    )  # fmt: skip
    await finish(registering, cwd)
    return await start_sipp(
        switch, SIP_SCENARIOS / scenario, "1001", cwd, "-p", str(port),
        local="127.0.0.1", server=True,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def agent_phone(
    switch: Switch, tmp_path: Path, number: str, *, answers: bool = True, login: bool = True
) -> AsyncIterator[BaresipPhone]:
    """Extension ``number``'s baresip phone, registered, and (``login``) its agent logged
    in, ready."""
    phone = BaresipPhone(switch, number, tmp_path / f"phone{number}", answers=answers)
    phone.start()
    try:
        await eventually(lambda: switch.registrar.contacts(number), f"{number} to register")
        if login:
            switch.callcenter.acd.login(number)
        yield phone
    finally:
        await stop_process(phone.process)


async def answered_call_with_tones_both_ways(
    tmp_path: Path, caller: RtpCaller, prompts: Path
) -> None:
    since = time.time()
    async with callbox(tmp_path, center_config("1001"), prompts) as switch:
        events: list[CallEvent] = []
        switch.callcenter.events.add(
            lambda event: events.append(event) if isinstance(event, CallEvent) else None
        )
        async with agent_phone(switch, tmp_path, "1001") as agent:
            scenario = trunk_call_scenario(tmp_path / "call.xml", caller, hang_up_after_ms=None)
            sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
            await prompt_heard(caller)
            statuses = await switch.calls.status()
            assert [(s["to"], s["state"]) for s in statuses] == [(NUMBER, "ivr")]
            heard_before_agent = len(caller.heard_since(0))
            caller.press("1")
            caller.start_tone()
            await eventually(
                # Two seconds of it, so the agent too has heard the caller for a while.
                lambda: has_tone(caller.heard_since(heard_before_agent), AGENT_TONE_HZ, 2.0),
                "the agent's tone at the caller",
            )
            (talking,) = await switch.calls.status()
            assert (talking["state"], talking["agent"]) == ("talking", "1001")
            assert set(talking["legs"]) == {"caller", "agent"}
            await asyncio.to_thread(agent.command, "hangup")
            await finish(sipp, tmp_path)
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
        queue_log = await switch.callcenter.call_log.queue_events(since, time.time() + 1)
    assert has_tone(agent.heard(), CALLER_TONE_HZ), "the caller's tone at the agent"
    assert (record.trunk, record.dialled, record.outcome.value) == ("gateway", NUMBER, "answered")
    assert record.caller.endswith("13800138000")
    assert (record.queue, record.agent, record.agent_extension) == ("sales", "1001", "1001")
    assert (record.hangup_side, record.hangup_cause, record.ring_attempts) == ("agent", 16, 1)
    assert record.ivr_path == ["menu", "sales"]
    assert record.digits == "1"
    assert record.answered_us is not None
    assert record.started_us <= record.answered_us < record.ended_us
    assert record.wait_s is not None
    assert record.talk_s is not None
    assert record.wait_s > 0
    assert record.talk_s > 1
    assert record.wait_s + record.talk_s <= (record.ended_us - record.started_us) / 1e6 + 0.1
    legs = {q.leg: q for q in record.legs}
    assert set(legs) == {"caller", "agent"}
    assert all(q.loss_percent < 5 and 1 <= q.mos <= 4.5 for q in legs.values())
    assert [e.kind for e in queue_log] == [
        QueueEventKind.ENTER,
        QueueEventKind.OFFERED,
        QueueEventKind.ANSWERED,
    ]
    assert [e.kind for e in events if e.call_id == record.id] == [
        CallEventKind.STARTED,
        CallEventKind.ANSWERED,
        CallEventKind.QUEUED,
        CallEventKind.CONNECTED,
        CallEventKind.ENDED,
    ]
    assert record.recording is not None
    assert record.recording.endswith(f"{record.id}.wav")
    rate, (left, right) = read_wav(Path(record.recording))
    assert has_tone(at_8k(rate, left), CALLER_TONE_HZ), "the caller's tone on the left"
    assert has_tone(at_8k(rate, right), AGENT_TONE_HZ), "the agent's tone on the right"


async def test_trunk_caller_presses_1_by_rfc4733_reaches_the_agent_and_is_recorded(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    await answered_call_with_tones_both_ways(tmp_path, caller, builtin_prompts)


async def test_trunk_caller_presses_1_in_band_reaches_the_agent_and_is_recorded(
    tmp_path: Path, builtin_prompts: Path
) -> None:
    caller = RtpCaller(telephone_event=None)
    try:
        await answered_call_with_tones_both_ways(tmp_path, caller, builtin_prompts)
    finally:
        caller.close()


async def test_a_number_that_is_not_configured_gets_404(tmp_path: Path, caller: RtpCaller) -> None:
    async with callbox(tmp_path, center_config("1001")) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller, refused=404)
        await finish(await start_sipp(switch, scenario, "4009999999", tmp_path), tmp_path)
        assert not switch.calls.live
    assert "SIP/2.0 404 Not Found" in messages(tmp_path)


async def test_an_offer_that_does_not_parse_gets_488(tmp_path: Path, caller: RtpCaller) -> None:
    broken = "v=0\no=gw 1 1 IN IP4 127.0.0.3\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 8"  # no c=
    async with callbox(tmp_path, center_config("1001")) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller, refused=488, sdp=broken)
        await finish(await start_sipp(switch, scenario, NUMBER, tmp_path), tmp_path)
    received = messages(tmp_path)
    assert "SIP/2.0 488 Not Acceptable Here" in received
    assert 'Warning: 399 callbox "Bad SDP: ' in received


async def test_an_offer_without_a_common_codec_gets_488(tmp_path: Path, caller: RtpCaller) -> None:
    gsm = (
        "v=0\no=gw 1 1 IN IP4 127.0.0.3\ns=-\nc=IN IP4 127.0.0.3\nt=0 0\n"
        "m=audio 4000 RTP/AVP 3\na=rtpmap:3 GSM/8000"
    )
    since = time.time()
    async with callbox(tmp_path, center_config("1001")) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller, refused=488, sdp=gsm)
        await finish(await start_sipp(switch, scenario, NUMBER, tmp_path), tmp_path)
        assert await records(switch, since) == []
    assert "SIP/2.0 488 Not Acceptable Here" in messages(tmp_path)


async def test_caller_hanging_up_while_queued_is_abandoned_and_no_agent_rings_after(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    since = time.time()
    async with callbox(tmp_path, center_config("1001"), builtin_prompts) as switch:
        acd = switch.callcenter.acd
        states: list[AgentState] = []
        acd.events.add(
            lambda event: (
                states.append(event.state) if isinstance(event, AgentStateChanged) else None
            )
        )
        async with agent_phone(switch, tmp_path, "1001"):
            acd.set_not_ready("1001", "break")
            # The caller hangs up 8 s after the answer, well after it has pressed 1.
            scenario = trunk_call_scenario(tmp_path / "call.xml", caller, hang_up_after_ms=8000)
            sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
            await prompt_heard(caller)
            caller.press("1")
            await eventually(lambda: acd.waiting("sales"), "the call to wait in the queue")
            assert [s["state"] for s in await switch.calls.status()] == ["queued"]
            queued_at = len(caller.heard_since(0))
            await finish(sipp, tmp_path)
            await eventually(lambda: not switch.calls.live, "the call to end")
            acd.set_ready("1001")
            await asyncio.sleep(1)  # time for an offer to go out, if one wrongly did
            assert acd.agent("1001").state is AgentState.READY
        (record,) = await records(switch, since)
        queue_log = await switch.callcenter.call_log.queue_events(since, time.time() + 1)
    assert AgentState.RINGING not in states
    assert [e.kind for e in queue_log] == [QueueEventKind.ENTER, QueueEventKind.ABANDONED]
    assert (record.outcome.value, record.hangup_side, record.queue) == (
        "abandoned",
        "caller",
        "sales",
    )
    assert record.ring_attempts == 0
    assert record.agent is None
    assert record.wait_s is not None
    assert record.wait_s > 1
    # Music on hold played while it waited.
    music = caller.heard_since(queued_at)
    assert rms_dbfs(music) > -40


async def second_agent_answers(
    switch: Switch, tmp_path: Path, caller: RtpCaller, answering: BaresipPhone, reason: str
) -> tuple[CallRecord, list[QueueEvent]]:
    """The caller presses 1; agent 1001 is set not ready for ``reason`` and 1002 (on
    ``answering``) talks, then hangs up. The call's record and queue log."""
    since = time.time()
    acd = switch.callcenter.acd
    scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
    sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
    await prompt_heard(caller)
    caller.press("1")
    if reason == "no answer":  # its phone rings for the ring timeout
        await eventually(lambda: acd.agent("1001").state is AgentState.RINGING, "1001 to ring")
        # The ACD rings the agent first; the call says so once its offer has a leg.
        await eventually(
            lambda: [c.state for c in switch.calls.live.values()] == [CallState.RINGING_AGENT],
            "the call to show the agent ringing",
        )
        ringing = [(s["state"], s["agent"]) for s in await switch.calls.status()]
        assert ringing == [("ringing_agent", "1001")]
    await eventually(lambda: acd.agent("1002").state is AgentState.TALKING, "agent 1002 to talk")
    first = acd.agent("1001")
    assert (first.state, first.reason) == (AgentState.NOT_READY, reason)
    await asyncio.to_thread(answering.command, "hangup")
    await finish(sipp, tmp_path)
    await eventually(lambda: not switch.calls.live, "the call to end")
    (record,) = await records(switch, since - 1)
    queue_log = await switch.callcenter.call_log.queue_events(since - 1, time.time() + 1)
    assert [(e.kind, e.agent) for e in queue_log] == [
        (QueueEventKind.ENTER, None),
        (QueueEventKind.OFFERED, "1001"),
        (QueueEventKind.RONA if reason == "no answer" else QueueEventKind.DECLINED, "1001"),
        (QueueEventKind.OFFERED, "1002"),
        (QueueEventKind.ANSWERED, "1002"),
    ]
    assert (record.outcome.value, record.agent, record.ring_attempts) == ("answered", "1002", 2)
    return record, queue_log


async def test_an_agent_who_does_not_answer_is_set_not_ready_and_the_next_agent_gets_the_call(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    config = center_config("1001", "1002", ring_timeout=5)
    # 1001 logs in first, so it is the longest idle and offered first.
    async with (
        callbox(tmp_path, config, builtin_prompts) as switch,
        agent_phone(switch, tmp_path, "1001", answers=False),
        agent_phone(switch, tmp_path, "1002") as answering,
    ):
        _, queue_log = await second_agent_answers(switch, tmp_path, caller, answering, "no answer")
    rona = queue_log[2]
    assert rona.wait_s is not None
    assert rona.wait_s >= 5


async def test_menu_timeouts_and_invalid_keys_use_the_retries_then_the_failed_branch(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    since = time.time()
    nodes = """      menu:
        type: menu
        prompt: menu
        options: {"1": sales}
        timeout: 2
        retries: 1
        invalid_prompt: invalid
        failed: bye
      sales:
        type: queue
        queue: sales
      bye:
        type: hangup
"""
    async with callbox(tmp_path, center_config("1001", nodes=nodes), builtin_prompts) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await prompt_heard(caller)
        caller.press("9")  # no such option: the invalid prompt, then one more try
        await finish(sipp, tmp_path)  # the try times out: the switch hangs up
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    # While the last try waited 2 s for a key the caller's RTP went on, carrying silence.
    assert quiet_seconds_at_the_end(caller.heard_since(0)) >= 1.5
    assert (record.ivr_path, record.digits) == (["menu", "bye"], "9")
    assert (record.outcome.value, record.hangup_side, record.hangup_cause) == ("ivr", "system", 16)
    assert record.queue is None


async def test_outside_the_schedule_the_flow_takes_the_closed_branch(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    since = time.time()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    nodes = MENU + (
        "      hours:\n        type: time_condition\n        schedule: office\n"
        "        open: menu\n        closed: closed\n"
        "      closed:\n        type: play\n        prompt: closed\n        next: bye\n"
        "      bye:\n        type: hangup\n"
    )
    # Open every day, all day, except that today is a holiday.
    schedule = (
        "schedules:\n  - name: office\n    timezone: UTC\n    periods:\n"
        "      - {days: [mon, tue, wed, thu, fri, sat, sun], start: '00:00', end: '23:59'}\n"
        f"    holidays: ['{today}']\n"
    )
    config = center_config("1001", start="hours", nodes=nodes, extra=schedule)
    async with callbox(tmp_path, config, builtin_prompts) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await prompt_heard(caller)  # the closed announcement
        await finish(sipp, tmp_path)
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert record.ivr_path == ["hours", "closed", "bye"]
    assert (record.outcome.value, record.hangup_side) == ("ivr", "system")


async def test_an_extension_dialling_the_number_hears_the_menu(
    tmp_path: Path, builtin_prompts: Path
) -> None:
    since = time.time()
    async with callbox(tmp_path, center_config("1001"), builtin_prompts) as switch:
        phone = BaresipPhone(switch, "1001", tmp_path / "phone")
        phone.start(f"/dial sip:{NUMBER}@127.0.0.1:{switch.settings.sip.port}")
        try:

            async def sent_to_caller() -> int:
                statuses = await switch.calls.status()
                legs = statuses[0]["legs"] if statuses else {}
                return int(legs["caller"]["sent"]) if "caller" in legs else 0

            deadline = time.monotonic() + 30
            while await sent_to_caller() < 150:  # three seconds of the menu prompt
                assert time.monotonic() < deadline, "the menu never played to the phone"
                await asyncio.sleep(0.1)
            (status,) = await switch.calls.status()
            assert (status["from"], status["to"], status["state"]) == ("1001", NUMBER, "ivr")
            await asyncio.to_thread(phone.command, "hangup")
            await eventually(lambda: not switch.calls.live, "the call to end")
        finally:
            await stop_process(phone.process)
        (record,) = await records(switch, since)
    heard = phone.heard()
    loud = sum(1 for i in range(0, len(heard) - 160, 160) if rms_dbfs(heard[i : i + 160]) > -45)
    assert loud >= 50, "the phone heard a second of the prompt"
    assert (record.caller, record.dialled, record.trunk) == ("1001", NUMBER, None)
    assert (record.outcome.value, record.hangup_side, record.ivr_path) == (
        "ivr",
        "caller",
        ["menu"],
    )


async def test_a_site_prompt_plays_and_a_missing_prompt_file_is_skipped(
    tmp_path: Path, caller: RtpCaller
) -> None:
    since = time.time()
    greeting = tmp_path / "greeting.wav"
    made = await asyncio.create_subprocess_exec(
        "sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(greeting), "synth", "2", "sine",
        "600", "vol", "0.5",
    )  # fmt: skip
    assert await made.wait() == 0
    nodes = (
        "      greet:\n        type: play\n        prompt: greeting\n        next: gone\n"
        "      gone:\n        type: play\n        prompt: vanished\n        next: bye\n"
        "      bye:\n        type: hangup\n"
    )
    prompts = (
        f"prompts:\n  - {{name: greeting, file: {greeting}}}\n"
        "  - {name: vanished, file: site/vanished.wav}\n"
    )
    config = center_config("1001", start="greet", nodes=nodes, extra=prompts)
    async with callbox(tmp_path, config) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await finish(sipp, tmp_path)  # the greeting, nothing for the missing file, BYE
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert has_tone(caller.heard_since(0), 600), "the site's greeting at the caller"
    assert record.ivr_path == ["greet", "gone", "bye"]
    assert (record.outcome.value, record.hangup_side, record.hangup_cause) == ("ivr", "system", 16)


async def test_the_agents_hold_plays_hold_music_to_the_caller_until_the_agent_resumes(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    async with (
        callbox(tmp_path, center_config("1001"), builtin_prompts) as switch,
        agent_phone(switch, tmp_path, "1001") as agent,
    ):
        # The caller's scenario answers no re-INVITE: the trunk's side is never held.
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await prompt_heard(caller)
        caller.press("1")
        await eventually(lambda: has_tone(caller.heard_since(0), AGENT_TONE_HZ), "talk")
        (call,) = switch.calls.live.values()
        await asyncio.to_thread(agent.command, "hold")
        await eventually(lambda: call.state == "held", "the agent's hold")
        held = len(caller.heard_since(0))
        await eventually(
            lambda: loud_frames(caller.heard_since(held)) >= 100, "two seconds of hold music"
        )
        on_hold = caller.heard_since(held)
        assert not has_tone(on_hold, AGENT_TONE_HZ), "the agent is heard while holding"
        assert not call.session.held_locally
        await asyncio.to_thread(agent.command, "resume")
        await eventually(lambda: call.state == "talking", "the agent's resume")
        resumed = len(caller.heard_since(0))
        await eventually(
            lambda: has_tone(caller.heard_since(resumed), AGENT_TONE_HZ),
            "the agent's tone after the resume",
        )
        await asyncio.to_thread(agent.command, "hangup")
        await finish(sipp, tmp_path)


async def test_a_transfer_node_rings_the_extension_and_connects_the_caller(
    tmp_path: Path, caller: RtpCaller
) -> None:
    since = time.time()
    nodes = '      xfer:\n        type: transfer\n        destination: "1001"\n'
    config = center_config("1001", start="xfer", nodes=nodes)
    async with callbox(tmp_path, config) as switch:
        async with agent_phone(switch, tmp_path, "1001", login=False) as phone:
            scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
            sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
            caller.start_tone()
            await eventually(
                lambda: has_tone(caller.heard_since(0), AGENT_TONE_HZ, 2.0),
                "the extension's tone at the caller",
            )
            await asyncio.to_thread(phone.command, "hangup")
            await finish(sipp, tmp_path)
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert has_tone(phone.heard(), CALLER_TONE_HZ), "the caller's tone at the extension"
    assert "SIP/2.0 180 Ringing" in messages(tmp_path)
    assert (record.outcome.value, record.transferred_to, record.ivr_path) == (
        "transferred",
        "1001",
        ["xfer"],
    )
    assert (record.hangup_side, record.hangup_cause) == ("agent", 16)


async def test_a_transfer_node_to_an_outside_number_goes_out_through_the_ivr_route_and_is_bridged(
    tmp_path: Path, caller: RtpCaller
) -> None:
    since = time.time()
    port = free_port()
    provider_dir = tmp_path / "provider"
    provider_dir.mkdir()
    nodes = '      xfer:\n        type: transfer\n        destination: "013812345678"\n'
    config = center_config(
        "1001",
        start="xfer",
        nodes=nodes,
        trunks=f"  - {{name: provider, mode: ip, host: {PROVIDER}, port: {port},"
        f" allow: [{PROVIDER}/32], options_interval: 0}}\n",
        extra='routes:\n  - {name: ivr-out, pattern: "0.", strip: 1, prepend: "86",'
        " trunks: [provider], callers: [ivr]}\n",
    )
    async with callbox(tmp_path, config) as switch:
        # The provider answers and sends the caller's audio back (-rtp_echo).
        provider = await start_sipp(
            switch, SIP_SCENARIOS / "answer.xml", "provider", provider_dir, "-rtp_echo",
            "-mp", str(free_media_ports()), "-p", str(port), local=PROVIDER, server=True,
        )  # fmt: skip
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await eventually(
            lambda: any(c.state is CallState.TALKING for c in switch.calls.live.values()),
            "the provider's answer bridged",
        )
        (call_id,) = switch.calls.live
        (status,) = await switch.calls.status()
        assert status["trunk"] == "gateway > provider"
        # Nobody sends first (the provider only echoes): the caller sends where the switch's
        # answer said, as a gateway would, and must hear its own tone come back.
        caller.remote = ("127.0.0.1", status["legs"]["caller"]["port"])
        caller.start_tone()
        await eventually(
            lambda: has_tone(caller.heard_since(0), CALLER_TONE_HZ, 2.0),
            "the caller's tone back from the provider",
        )
        assert switch.calls.hang_up(call_id, HangupCause.NORMAL_CLEARING)
        await finish(sipp, tmp_path)
        await finish(provider, provider_dir)
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert "INVITE sip:8613812345678@" in messages(provider_dir)
    assert (record.outcome.value, record.transferred_to, record.trunk) == (
        "transferred",
        "013812345678",
        "gateway",
    )


@pytest.mark.parametrize("first_phone", ["busy", "unregistered"])
async def test_a_busy_or_unreachable_phone_sets_its_agent_not_ready_and_the_next_agent_answers(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path, first_phone: str
) -> None:
    config = center_config("1001", "1002")
    async with callbox(tmp_path, config, builtin_prompts) as switch:
        busy = await sipp_phone(switch, tmp_path, "busy.xml") if first_phone == "busy" else None
        switch.callcenter.acd.login("1001")  # the longest idle: offered first
        async with agent_phone(switch, tmp_path, "1002") as answering:
            reason = {"busy": "busy", "unregistered": "unreachable"}[first_phone]
            await second_agent_answers(switch, tmp_path, caller, answering, reason)
        if busy is not None:
            await finish(busy, tmp_path)


async def test_a_digit_by_info_chooses_in_the_menu(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    since = time.time()
    async with callbox(tmp_path, center_config("1001"), builtin_prompts) as switch:
        # Nobody is logged in: the call waits in the queue until the caller hangs up.
        scenario = trunk_call_scenario(
            tmp_path / "call.xml", caller, infos=[(1000, "1")], hang_up_after_ms=3000
        )
        await finish(await start_sipp(switch, scenario, NUMBER, tmp_path), tmp_path)
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert (record.ivr_path, record.digits, record.queue) == (["menu", "sales"], "1", "sales")
    assert (record.outcome.value, record.hangup_side) == ("abandoned", "caller")


async def test_call_control_hangs_up_a_live_call_by_id_with_its_cause(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    since = time.time()
    async with callbox(tmp_path, center_config("1001"), builtin_prompts) as switch:
        scenario = trunk_call_scenario(tmp_path / "call.xml", caller)
        sipp = await start_sipp(switch, scenario, NUMBER, tmp_path)
        await prompt_heard(caller)
        (call_id,) = switch.calls.live
        assert switch.calls.hang_up(call_id, HangupCause.CALL_REJECTED)
        assert not switch.calls.hang_up("no-such-call", HangupCause.NORMAL_CLEARING)
        await finish(sipp, tmp_path)
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert 'Reason: Q.850;cause=21;text="call rejected"' in messages(tmp_path)
    assert (record.id, record.hangup_side, record.hangup_cause) == (call_id, "system", 21)


async def test_info_digits_choose_in_the_menu_and_are_passed_to_the_agent_once_bridged(
    tmp_path: Path, caller: RtpCaller, builtin_prompts: Path
) -> None:
    since = time.time()
    async with callbox(tmp_path, center_config("1001"), builtin_prompts) as switch:
        # The agent's phone answers and expects the caller's 5 by INFO, then a BYE.
        agent = await sipp_phone(switch, tmp_path / "agent", "answer_info.xml")
        switch.callcenter.acd.login("1001")
        # 1 a second after the answer (the menu), 5 three seconds later (to the agent);
        # the caller hangs up a second after that.
        scenario = trunk_call_scenario(
            tmp_path / "call.xml", caller, infos=[(1000, "1"), (3000, "5")], hang_up_after_ms=1000
        )
        await finish(await start_sipp(switch, scenario, NUMBER, tmp_path), tmp_path)
        await finish(agent, tmp_path / "agent")
        await eventually(lambda: not switch.calls.live, "the call to end")
        (record,) = await records(switch, since)
    assert (record.digits, record.agent, record.hangup_side) == ("1", "1001", "caller")
