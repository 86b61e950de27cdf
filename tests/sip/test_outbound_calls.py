"""Extensions dial outside numbers through outbound routes and trunks: SIPp on every side.

The caller is a SIPp authenticating as extension 1001 (``Phones`` of
``test_calls.py``); each provider is a SIPp on a loopback address of its
own (127.0.0.4, 127.0.0.5: never the phones' 127.0.0.1, which would make
the phones' calls the trunk's). A route sends numbers starting with 0 out
with the 0 stripped and 86 prepended, presenting 02150001234. Each test
passes when every SIPp scenario completes, which checks every message
each side receives.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.calllog import CALL_LOG_RECORDS
from appliance.calllog.records import OpenCall
from appliance.config import CONFIG_RECORDS
from appliance.store import Store
from tests.sip.net import free_media_ports, free_port
from tests.sip.test_calls import SCENARIOS, Phones, finish, wait_for_status, write_alaw_tone
from tests.sip.test_switch import (
    RunningSwitch,
    configured_switch,
    running_switch,
    start_switch,
    status_json,
)

pytestmark = pytest.mark.slow

FIRST, SECOND = "127.0.0.4", "127.0.0.5"
DIALLED = "013812345678"
SENT = "8613812345678"


def route(trunks: str, callers: str = "[all]") -> str:
    """YAML: the route for numbers starting with 0 through ``trunks``, and one for 9... that
    only extension 1002 may use."""
    return (
        "routes:\n"
        f'  - {{name: outside, pattern: "0.", strip: 1, prepend: "86", trunks: {trunks},'
        f' caller_id: "02150001234", callers: {callers}}}\n'
        '  - {name: operator, pattern: "9XXX", trunks: [first], callers: ["1002"]}\n'
    )


def ip_trunk(name: str, address: str, port: int, transport: str = "udp") -> str:
    return (
        f"  - {{name: {name}, mode: ip, host: {address}, port: {port}, allow: [{address}/32],"
        f' transport: {transport}, caller_id: "02150009999", options_interval: 0}}\n'
    )


def registering_trunk(name: str, address: str, port: int) -> str:
    return (
        f"  - {{name: {name}, mode: register, host: {address}, port: {port},"
        " domain: provider.test, username: trunk-user, password: trunk-secret,"
        ' caller_id: "02150009999", options_interval: 0}\n'
    )


class Provider:
    """A SIPp provider at ``address`` running ``scenario`` for ``calls`` calls (with an A-law
    tone in ``alaw.raw`` for a scenario that streams one)."""

    def __init__(
        self, tmp_path: Path, name: str, address: str, scenario: str, *extra: str, calls: int = 1
    ) -> None:
        self.address = address
        self.port = free_port()
        self.dir = tmp_path / name
        self.dir.mkdir()
        write_alaw_tone(self.dir / "alaw.raw")  # SIPp reads it as it starts
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / scenario), "-i", address, "-p", str(self.port),
             "-mp", str(free_media_ports()), "-m", str(calls), "-nostdin", "-timeout", "60",
             "-timeout_error", "-trace_err", "-trace_msg", *extra],
            cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def finish(self) -> str:
        return finish(self.process, f"provider {self.address}", self.dir)

    def received(self) -> str:
        return "".join(p.read_text() for p in self.dir.glob("*_messages.log"))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


class SilentTrunk:
    """A UDP socket where a trunk's host is: it answers nothing and keeps what arrives."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.setblocking(False)

    def datagrams(self) -> list[bytes]:
        received = []
        while True:
            try:
                received.append(self.sock.recv(65535))
            except BlockingIOError:
                return received


@pytest.fixture
def providers() -> Iterator[list[Provider]]:
    started: list[Provider] = []
    yield started
    for provider in started:
        provider.close()


@pytest.fixture
def silent() -> Iterator[Callable[[str], SilentTrunk]]:
    """Makes ``SilentTrunk``s, closed after the test."""
    made: list[SilentTrunk] = []

    def make(address: str) -> SilentTrunk:
        made.append(SilentTrunk(address))
        return made[-1]

    yield make
    for trunk in made:
        trunk.sock.close()


def wait_registered(switch: RunningSwitch, trunk: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        state = next(t for t in status_json(switch.env)["trunks"] if t["name"] == trunk)
        if state["registration"]["state"] == "registered":
            return
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def call_records(switch: RunningSwitch, count: int = 1) -> list[dict[str, Any]]:
    """``callbox calls --json`` once it lists ``count`` records (the log writes in batches)."""
    deadline = time.monotonic() + 30
    while True:
        listed = subprocess.run(
            [sys.executable, "-m", "appliance", "calls", "--json"],
            env=switch.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        records: list[dict[str, Any]] = json.loads(listed.stdout)
        if len(records) >= count:
            return records
        assert time.monotonic() < deadline, records
        time.sleep(0.2)


@contextlib.contextmanager
def one_trunk(
    tmp_path: Path, providers: list[Provider], scenario: str, *extra: str, transport: str = "udp"
) -> Iterator[tuple[RunningSwitch, Phones, Provider]]:
    """The switch whose route has one IP trunk, ``first`` over ``transport``, to a SIPp
    provider playing ``scenario`` (with ``extra`` options); the caller's phones (an A-law
    tone ready to stream) and the provider, whose scenario must pass before the switch
    stops."""
    sipp_transport = {"udp": "u1", "tcp": "t1"}[transport]
    provider = Provider(tmp_path, "provider", FIRST, scenario, *extra, "-t", sipp_transport)
    providers.append(provider)
    trunk = ip_trunk("first", FIRST, provider.port, transport)
    with running_switch(tmp_path, ("1001", "1002"), route("[first]"), trunks=trunk) as switch:
        phones = Phones(switch, tmp_path)
        write_alaw_tone(phones.caller_dir / "alaw.raw")
        yield switch, phones, provider
        provider.finish()


def call_one_trunk(
    tmp_path: Path,
    providers: list[Provider],
    provider_scenario: str,
    caller_scenario: str,
    transport: str = "udp",
) -> tuple[Phones, Provider, dict[str, Any]]:
    """1001 dials ``DIALLED`` through ``one_trunk``; the caller's phones, the provider and
    the call record."""
    trunk = one_trunk(tmp_path, providers, provider_scenario, transport=transport)
    with trunk as (switch, phones, provider):
        phones.call(caller_scenario, DIALLED)
        (record,) = call_records(switch)
    return phones, provider, record


def call_seen_in_status(
    switch: RunningSwitch, phones: Phones, caller_scenario: str, status: str
) -> None:
    """1001 dials ``DIALLED``; ``callbox status`` must show a line matching ``status``
    before the caller's scenario ends."""
    calling = phones.start_call(caller_scenario, DIALLED)
    try:
        wait_for_status(switch, status)
    finally:
        finish(calling, f"caller {caller_scenario}", phones.caller_dir)


def test_an_extension_dials_out_through_a_registering_trunk_and_rtp_flows_both_ways(
    tmp_path: Path, providers: list[Provider]
) -> None:
    carrier = Provider(tmp_path, "carrier", FIRST, "provider_call.xml", "-rtp_echo", calls=2)
    providers.append(carrier)
    trunks = registering_trunk("carrier", FIRST, carrier.port) + ip_trunk("first", SECOND, 5060)
    with running_switch(tmp_path, ("1001", "1002"), route("[carrier]"), trunks=trunks) as switch:
        wait_registered(switch, "carrier")
        phones = Phones(switch, tmp_path)
        write_alaw_tone(phones.caller_dir / "alaw.raw")
        # The caller's A-law goes out to the provider, which echoes it back: a hundred
        # packets and more each way on both legs.
        line = rf"^  \S+ +1001 +{DIALLED} +carrier +answered +PCMA +[\d.]+ s +- +"
        legs = r"caller PCMA port \d+ rx \d{3,} tx \d{3,}, callee PCMA port \d+ rx \d{3,}"
        call_seen_in_status(switch, phones, "call_pcma_rtp.xml", line + legs + r" tx \d{3,}")
        carrier.finish()
        (record,) = call_records(switch)
    assert "SIP/2.0 180 Ringing" in phones.caller_received()
    assert {k: record.get(k) for k in (
        "direction", "caller", "dialled", "route", "trunk", "number_sent", "outcome",
        "hangup_side", "hangup_cause",
    )} == {
        "direction": "outbound", "caller": "1001", "dialled": DIALLED, "route": "outside",
        "trunk": "carrier", "number_sent": SENT, "outcome": "answered", "hangup_side": "caller",
        "hangup_cause": 16,
    }  # fmt: skip
    assert [leg["leg"] for leg in record["legs"]] == ["caller", "callee"]


def test_a_trunk_down_is_skipped_and_a_503_sends_the_call_to_the_next_trunk(
    tmp_path: Path, providers: list[Provider], silent: Callable[[str], SilentTrunk]
) -> None:
    # "dead" registers to a peer that never answers: not registered, so never tried.
    dead = silent("127.0.0.6")
    first = Provider(tmp_path, "first", FIRST, "unavailable.xml")
    carrier = Provider(tmp_path, "carrier", SECOND, "provider_call.xml", calls=2)
    providers.extend([first, carrier])
    trunks = (
        registering_trunk("dead", "127.0.0.6", dead.port)
        + ip_trunk("first", FIRST, first.port)
        + registering_trunk("carrier", SECOND, carrier.port)
    )
    with running_switch(
        tmp_path, ("1001", "1002"), route("[dead, first, carrier]"), trunks=trunks
    ) as switch:
        wait_registered(switch, "carrier")
        phones = Phones(switch, tmp_path)
        phones.call("call_caller_bye.xml", DIALLED)
        first.finish()
        carrier.finish()
        (record,) = call_records(switch)
    assert (record["trunk"], record["outcome"]) == ("carrier", "answered")
    assert "SIP/2.0 503" not in phones.caller_received()
    sent_to_dead = dead.datagrams()
    assert sent_to_dead
    assert all(datagram.startswith(b"REGISTER ") for datagram in sent_to_dead)


def test_when_no_trunk_of_the_route_is_up_the_caller_gets_503_with_cause_34(
    tmp_path: Path, silent: Callable[[str], SilentTrunk]
) -> None:
    dead = silent(FIRST)  # registering to it never succeeds
    with running_switch(
        tmp_path,
        ("1001", "1002"),
        route("[first]"),
        trunks=registering_trunk("first", FIRST, dead.port),
    ) as switch:
        phones = Phones(switch, tmp_path)
        phones.call("call_refused.xml", DIALLED)
        (record,) = call_records(switch)
    received = phones.caller_received()
    assert "SIP/2.0 503 Service Unavailable" in received
    assert 'Reason: Q.850;cause=34;text="no circuit available"' in received
    assert 'Warning: 399 callbox "no trunk of route outside is up"' in received
    assert all(datagram.startswith(b"REGISTER ") for datagram in dead.datagrams())
    assert (record.get("trunk"), record["outcome"]) == (None, "failed")


def test_when_every_trunk_fails_the_caller_gets_the_last_failure_with_its_q850_cause(
    tmp_path: Path, providers: list[Provider]
) -> None:
    phones, _, record = call_one_trunk(tmp_path, providers, "unavailable.xml", "call_refused.xml")
    received = phones.caller_received()
    assert "SIP/2.0 503 Service Unavailable" in received
    assert 'Reason: Q.850;cause=41;text="temporary failure"' in received
    assert (record["trunk"], record["outcome"], record["hangup_cause"]) == ("first", "failed", 41)


def test_busy_from_the_provider_gives_the_caller_486_and_no_other_trunk_is_tried(
    tmp_path: Path,
    providers: list[Provider],
    silent: Callable[[str], SilentTrunk],
) -> None:
    busy = Provider(tmp_path, "busy", FIRST, "busy.xml")
    providers.append(busy)
    silent_trunk = silent(SECOND)
    trunks = ip_trunk("first", FIRST, busy.port) + ip_trunk("second", SECOND, silent_trunk.port)
    with running_switch(
        tmp_path, ("1001", "1002"), route("[first, second]"), trunks=trunks
    ) as switch:
        phones = Phones(switch, tmp_path)
        phones.call("call_refused.xml", DIALLED)
        busy.finish()
        (record,) = call_records(switch)
    received = phones.caller_received()
    assert "SIP/2.0 486 Busy Here" in received
    assert 'Reason: Q.850;cause=17;text="user busy"' in received
    assert silent_trunk.datagrams() == []  # the INVITE to it would have come before the 486
    assert (record["trunk"], record["outcome"], record["hangup_cause"]) == ("first", "busy", 17)


@pytest.mark.parametrize(
    ("routes", "dialled", "status", "reason"),
    [
        (route("[first]"), "4999", "404 Not Found", "no outbound route for 4999"),
        (route("[first]"), "9123", "403 Forbidden", "outbound route operator is not open to 1001"),
        ("", DIALLED, "404 Not Found", f"no outbound route for {DIALLED}"),
    ],
    ids=["no-route-matches", "caller-not-allowed", "no-routes-at-all"],
)
def test_a_number_without_a_route_open_to_the_caller_is_refused_and_nothing_goes_out(
    tmp_path: Path,
    silent: Callable[[str], SilentTrunk],
    routes: str,
    dialled: str,
    status: str,
    reason: str,
) -> None:
    silent_trunk = silent(FIRST)
    with running_switch(
        tmp_path, ("1001", "1002"), routes, trunks=ip_trunk("first", FIRST, silent_trunk.port)
    ) as switch:
        phones = Phones(switch, tmp_path)
        phones.call("call_refused.xml", dialled)
    received = phones.caller_received()
    assert f"SIP/2.0 {status}" in received
    assert f'Warning: 399 callbox "{reason}"' in received
    assert silent_trunk.datagrams() == []


def test_the_callers_cancel_reaches_the_ringing_provider(
    tmp_path: Path, providers: list[Provider]
) -> None:
    _, ringing, record = call_one_trunk(tmp_path, providers, "ring.xml", "call_cancel.xml")
    assert "CANCEL sip:" + SENT in ringing.received()
    assert (record["outcome"], record["hangup_side"]) == ("cancelled", "caller")


def test_hold_and_resume_pass_through_to_the_provider(
    tmp_path: Path, providers: list[Provider]
) -> None:
    _, _, record = call_one_trunk(tmp_path, providers, "answer_hold.xml", "call_hold.xml")
    assert (record["outcome"], record["hangup_side"]) == ("answered", "caller")


def test_a_pcma_caller_talks_to_a_provider_answering_pcmu_through_a_transcoder(
    tmp_path: Path, providers: list[Provider]
) -> None:
    # The trunk offers PCMA then PCMU; the provider answers PCMU only, is moved by re-INVITE
    # to a PCMU leg and echoes the caller's A-law, transcoded both ways.
    with one_trunk(tmp_path, providers, "answer_pcmu.xml", "-rtp_echo") as (switch, phones, _):
        line = rf"^  \S+ +1001 +{DIALLED} +first +answered +PCMA/PCMU +[\d.]+ s +- +"
        legs = r"caller PCMA port \d+ rx \d{3,} tx \d{3,}, callee PCMU port \d+ rx \d{3,}"
        call_seen_in_status(switch, phones, "call_pcma_rtp.xml", line + legs + r" tx \d{3,}")


def test_a_providers_early_media_reaches_the_caller_while_it_rings(
    tmp_path: Path, providers: list[Provider]
) -> None:
    with one_trunk(tmp_path, providers, "provider_early.xml") as (switch, phones, _):
        # Still ringing (for 15 s), a hundred packets and more of the announcement (2 s)
        # went to the caller.
        line = rf"^  \S+ +1001 +{DIALLED} +first +ringing +PCMA +[\d.]+ s +- +"
        legs = r"caller PCMA port \d+ rx \d+ tx \d{3,}, callee PCMA port \d+ rx \d{3,}"
        call_seen_in_status(switch, phones, "call_caller_bye.xml", line + legs)
    received = phones.caller_received()
    assert "SIP/2.0 183 Session Progress" in received
    assert received.index("SIP/2.0 180 Ringing") < received.index("SIP/2.0 183 Session Progress")


def test_a_call_goes_out_over_a_tcp_trunk_and_is_hung_up_by_the_provider(
    tmp_path: Path, providers: list[Provider]
) -> None:
    _, provider, record = call_one_trunk(
        tmp_path, providers, "answer_then_bye.xml", "call_callee_bye.xml", "tcp"
    )
    assert "INVITE sip:" + SENT + "@127.0.0.4:" in provider.received()
    assert ";transport=tcp" in provider.received()
    assert (record["outcome"], record["hangup_side"]) == ("answered", "callee")


def test_a_blind_transfer_to_an_outside_number_connects_the_transferee_to_the_provider(
    tmp_path: Path, providers: list[Provider]
) -> None:
    # 1001 calls 1002 and REFERs it to the outside number: 1002 talks to the provider
    # until the provider hangs up.
    with one_trunk(tmp_path, providers, "answer_then_bye.xml") as (_, phones, provider):
        phones.register_callee()
        transferee = phones.callee("answer.xml")
        phones.call("call_transfer.xml", "1002", "-key", "transfer_to", DIALLED)
        finish(transferee, "transferee answer.xml", phones.callee_dir)
    assert f"INVITE sip:{SENT}@127.0.0.4:" in provider.received()


def test_a_refer_from_the_provider_cannot_send_the_call_out_again(
    tmp_path: Path, providers: list[Provider]
) -> None:
    # The far end of an outside call REFERs it to another outside number: refused by
    # NOTIFY 403 (the scenario checks it), and no second INVITE goes out.
    with one_trunk(tmp_path, providers, "provider_refer.xml") as (_, phones, provider):
        phones.call("call_pcma_rtp.xml", DIALLED)
    assert provider.received().count("INVITE sip:") == 1


def written_down(switch: RunningSwitch) -> list[OpenCall]:
    """The calls in progress the switch has written down so far (read beside it)."""
    store = Store.open(switch.workdir / "var" / "db", (*CONFIG_RECORDS, *CALL_LOG_RECORDS))
    try:
        return store.read_sync(lambda txn: list(txn.scan(OpenCall)))
    finally:
        store.close()


def test_an_outside_call_cut_off_by_a_killed_switch_keeps_its_record(
    tmp_path: Path, providers: list[Provider]
) -> None:
    provider = Provider(tmp_path, "provider", FIRST, "answer.xml")  # up until a BYE
    providers.append(provider)
    trunk = ip_trunk("first", FIRST, provider.port)
    switch = start_switch(
        configured_switch(tmp_path, ("1001", "1002"), route("[first]"), trunks=trunk)
    )
    phones = Phones(switch, tmp_path)
    try:
        phones.start_call("call_callee_bye.xml", DIALLED)  # up until the switch hangs up
        wait_for_status(switch, "answered")
        deadline = time.monotonic() + 30
        while not any(c.record.answered_us for c in written_down(switch)):
            assert time.monotonic() < deadline, "the answered call was never written down"
            time.sleep(0.2)
        switch.process.kill()
        switch.process.communicate(timeout=30)
        killed_at = time.time()
    finally:
        phones.close()
    restarted = start_switch(switch)
    try:
        (record,) = call_records(restarted)
    finally:
        restarted.process.send_signal(signal.SIGINT)
        out, _ = restarted.process.communicate(timeout=30)
    assert restarted.process.returncode == 0, out
    assert (record["direction"], record["outcome"]) == ("outbound", "interrupted")
    assert (record["route"], record["trunk"], record["number_sent"]) == ("outside", "first", SENT)
    assert (record["hangup_side"], record["hangup_cause"]) == ("system", 41)
    assert record["started_us"] < record["answered_us"] < record["ended_us"] <= killed_at * 1e6
    assert record["talk_s"] == (record["ended_us"] - record["answered_us"]) / 1e6
