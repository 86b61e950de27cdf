"""The switch's control API against a real switch process: REST, the event stream, TCP, the CLI.

Clients are aiohttp over the switch's unix socket (and loopback TCP); live
calls come from SIPp phones registered as extensions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.sip.net import free_port
from tests.sip.test_calls import CALLEE, Phones, finish
from tests.sip.test_switch import RunningSwitch, callbox_status, running_switch

pytestmark = pytest.mark.slow

WAIT = 20.0
EXTENSIONS = ("1001", "1002")
CONFIG = """\
skills:
  - {name: sales}
  - {name: support}
queues:
  - {name: sales, skill: sales}
  - {name: support, skill: support}
agents:
  - {number: "2001", name: 张伟, group: sales, extension: "1001", skills: {sales: 5}}
  - {number: "2002", name: 李娜, group: support, extension: "1002", skills: {support: 5, sales: 2}}
  - {number: "2003", name: Desk Less, group: support}
"""


class Api:
    """A client of the control API: JSON requests and the event stream."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(
        self, method: str, path: str, body: object = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """Status and JSON of ``method path`` with a JSON ``body`` (or ``raw`` bytes)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self.session.request(
            method, self.base + path, data=data, headers=headers
        ) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()

    async def ok(self, method: str, path: str, body: object = None) -> Any:
        """The JSON of a request that must succeed."""
        status, result = await self.request(method, path, body)
        assert status == 200, result
        return result

    async def events(self) -> aiohttp.ClientWebSocketResponse:
        """A new event stream, once the switch counts it (so no event is missed)."""
        ws = await self.session.ws_connect(self.base + "/v1/events")
        await self.wait_for(lambda status: status["event_clients"] >= 1)
        return ws

    async def wait_for(self, condition: Any) -> dict[str, Any]:
        """The switch's status once ``condition(status)`` holds (polled)."""
        deadline = time.monotonic() + WAIT
        while True:
            status: dict[str, Any] = await self.ok("GET", "/v1/status")
            if condition(status):
                return status
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def unix_client(switch: RunningSwitch) -> AsyncIterator[Api]:
    socket_path = switch.workdir / "var" / "run" / "switch.sock"
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, "http://switch")


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[RunningSwitch]:
    with running_switch(tmp_path, EXTENSIONS, CONFIG) as running:
        yield running


@pytest.fixture
async def api(switch: RunningSwitch) -> AsyncIterator[Api]:
    async with unix_client(switch) as client:
        yield client


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    event: dict[str, Any] = await ws.receive_json(timeout=WAIT)
    return event


# Agents


async def test_agents_list_state_reason_since_and_call(api: Api) -> None:
    agents = (await api.ok("GET", "/v1/agents"))["agents"]
    assert [(a["number"], a["name"], a["extension"]) for a in agents] == [
        ("2001", "张伟", "1001"),
        ("2002", "李娜", "1002"),
        ("2003", "Desk Less", None),
    ]
    assert {(a["state"], a["reason"], a["since"], a["call_id"]) for a in agents} == {
        ("logged_out", "", None, None)
    }
    before = time.time()
    agent = await api.ok("POST", "/v1/agents/2001/login")
    assert (agent["number"], agent["state"]) == ("2001", "ready")
    assert before - 1 <= agent["since"] <= time.time() + 1
    assert await api.ok("GET", "/v1/agents/2001") == agent


async def test_rest_state_changes_reach_the_event_stream_in_order(api: Api) -> None:
    ws = await api.events()
    await api.ok("POST", "/v1/agents/2002/login")
    await api.ok("POST", "/v1/agents/2002/not_ready", {"reason": "lunch"})
    agent = await api.ok("POST", "/v1/agents/2002/not_ready", {"reason": "training"})
    assert (agent["state"], agent["reason"]) == ("not_ready", "training")
    await api.ok("POST", "/v1/agents/2002/ready")
    await api.ok("POST", "/v1/agents/2002/logout")
    seen = [await next_event(ws) for _ in range(5)]
    assert [(e["type"], e["agent"], e["state"], e["reason"]) for e in seen] == [
        ("agent_state", "2002", "ready", ""),
        ("agent_state", "2002", "not_ready", "lunch"),
        ("agent_state", "2002", "not_ready", "training"),
        ("agent_state", "2002", "ready", ""),
        ("agent_state", "2002", "logged_out", ""),
    ]
    times = [e["time"] for e in seen]
    assert times == sorted(times)
    assert all(e["call_id"] is None for e in seen)
    await ws.close()


async def test_changes_the_acd_refuses_answer_409_with_its_reason(api: Api) -> None:
    await api.ok("POST", "/v1/agents/2001/login")
    assert await api.request("POST", "/v1/agents/2001/login") == (
        409,
        {"error": "agent 2001 is already logged in (ready)"},
    )
    assert await api.request("POST", "/v1/agents/2002/ready") == (
        409,
        {"error": "agent 2002 is logged out; log in first"},
    )
    assert await api.request("POST", "/v1/agents/2003/login") == (
        409,
        {"error": "agent 2003 has no extension to take calls on"},
    )


async def test_unknown_agent_call_queue_and_route_answer_404_in_json(api: Api) -> None:
    assert await api.request("GET", "/v1/agents/9999") == (
        404,
        {"error": "no agent numbered '9999'"},
    )
    assert await api.request("POST", "/v1/agents/9999/not_ready", {"reason": "x"}) == (
        404,
        {"error": "no agent numbered '9999'"},
    )
    assert await api.request("POST", "/v1/calls/77/hangup") == (
        404,
        {"error": "no live call '77'"},
    )
    assert await api.request("GET", "/v1/queues/nowhere") == (
        404,
        {"error": "no queue named 'nowhere'"},
    )
    assert await api.request("GET", "/v1/nothing") == (404, {"error": "no route GET /v1/nothing"})
    assert await api.request("GET", "/v1/calls?legs=no") == (
        400,
        {"error": "legs must be true or false: got 'no'"},
    )
    status, body = await api.request("DELETE", "/v1/agents")
    assert (status, body) == (405, {"error": "Method Not Allowed"})
    status, body = await api.request("GET", "/v1/events")
    assert (status, body["error"]) == (
        400,
        "/v1/events is a WebSocket: ask for an upgrade (Upgrade: websocket)",
    )


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/v1/agents/2001/not_ready", b"{reason", "the body is not JSON: "),
        ("/v1/agents/2001/not_ready", b'["lunch"]', "the body must be a JSON object"),
        ("/v1/agents/2001/not_ready", b"{}", "reason: required, a non-empty string"),
        ("/v1/agents/2001/not_ready", b'{"reason": "  "}', "reason: required, a non-empty"),
        ("/v1/agents/2001/not_ready", b'{"reason": 5}', "reason: required, a non-empty string"),
        ("/v1/agents/2001/not_ready", json.dumps({"reason": "x" * 65}).encode(), "at most 64"),
        ("/v1/agents/2001/not_ready", b'{"reason": "a", "why": 1}', "why: unknown field"),
        ("/v1/agents/2001/login", b'{"reason": "a"}', "reason: unknown field (allowed: none)"),
        ("/v1/calls/1/hangup", b'{"cause": "busy"}', "cause: must be a Q.850 cause value"),
        ("/v1/calls/1/hangup", b'{"cause": 999}', "cause: must be a Q.850 cause value"),
        ("/v1/calls/1/hangup", b'{"cause": true}', "cause: must be a Q.850 cause value"),
        ("/v1/calls/1/hangup", b"\xff\xfe{", "the body is not JSON: "),
    ],
)
async def test_a_bad_body_answers_400_naming_the_problem(
    api: Api, path: str, body: bytes, error: str
) -> None:
    await api.ok("POST", "/v1/agents/2001/login")
    status, result = await api.request("POST", path, raw=body)
    assert status == 400
    assert error in result["error"]
    assert (await api.ok("GET", "/v1/agents/2001"))["state"] == "ready"


# Queues


async def test_queues_show_member_agents_by_state_and_counts_since_start(api: Api) -> None:
    await api.ok("POST", "/v1/agents/2001/login")
    await api.ok("POST", "/v1/agents/2002/login")
    await api.ok("POST", "/v1/agents/2002/not_ready", {"reason": "meeting"})
    queues = (await api.ok("GET", "/v1/queues"))["queues"]
    assert [q["name"] for q in queues] == ["sales", "support"]
    sales = await api.ok("GET", "/v1/queues/sales")
    assert sales == queues[0]
    assert (sales["waiting"], sales["longest_wait_s"], sales["calls"]) == (0, None, [])
    assert {state: agents for state, agents in sales["agents"].items() if agents} == {
        "ready": ["2001"],
        "not_ready": ["2002"],
    }
    assert sales["counts"]["answered"] == 0
    assert sales["counts"]["abandoned"] == 0
    assert sales["counts"]["timed_out"] == 0
    assert {s: a for s, a in queues[1]["agents"].items() if a} == {
        "not_ready": ["2002"],
        "logged_out": ["2003"],
    }


# Calls


async def test_hang_up_ends_a_live_extension_call_with_the_cause(
    switch: RunningSwitch, api: Api, tmp_path: Path
) -> None:
    phones = Phones(switch, tmp_path)
    phones.register_callee()
    # Both phones wait for a BYE from the switch: only the hang-up ends the call.
    answering = phones.callee("answer.xml")
    calling = phones.start_call("call_callee_bye.xml")
    try:
        status = await api.wait_for(
            lambda s: [c["state"] for c in s["calls"]] == ["answered"],
        )
        (call,) = (await api.ok("GET", "/v1/calls"))["calls"]
        assert (call["from"], call["to"], call["state"]) == ("1001", CALLEE, "answered")
        assert call["id"] == status["calls"][0]["id"]
        assert set(call["legs"]) == {"caller", "callee"}
        assert call["legs"]["caller"]["received"] >= 0
        # Without the legs' figures: the same line, no trip to the media workers.
        (light,) = (await api.ok("GET", "/v1/calls?legs=false"))["calls"]
        assert "legs" not in light
        assert {k: light[k] for k in ("id", "state", "codec")} == {
            k: call[k] for k in ("id", "state", "codec")
        }
        hung_up = await api.ok("POST", f"/v1/calls/{call['id']}/hangup", {"cause": 21})
        assert hung_up == {"call_id": call["id"], "cause": 21}
    finally:
        await asyncio.to_thread(finish, calling, "caller", phones.caller_dir)
        await asyncio.to_thread(finish, answering, "callee", phones.callee_dir)
    assert 'Reason: Q.850;cause=21;text="call rejected"' in phones.caller_received()
    await api.wait_for(lambda s: not s["calls"])
    assert await api.request("POST", f"/v1/calls/{call['id']}/hangup") == (
        404,
        {"error": f"no live call '{call['id']}'"},
    )


# The event stream's clients


async def test_a_closed_stream_client_is_removed(api: Api) -> None:
    first = await api.events()
    second = await api.session.ws_connect(api.base + "/v1/events")
    await api.wait_for(lambda s: s["event_clients"] == 2)
    await first.close()
    await api.wait_for(lambda s: s["event_clients"] == 1)
    await api.ok("POST", "/v1/agents/2001/login")
    assert (await next_event(second))["state"] == "ready"
    await second.close()
    await api.wait_for(lambda s: s["event_clients"] == 0)


async def test_a_stream_client_that_stops_reading_is_dropped_with_1008(tmp_path: Path) -> None:
    settings = {"CALLBOX_CONTROL_EVENT_BACKLOG": "5"}
    with running_switch(tmp_path, EXTENSIONS, CONFIG, **settings) as switch:
        async with unix_client(switch) as api:
            ws = await api.events()
            await api.ok("POST", "/v1/agents/2001/login")
            # The client reads nothing: once the sockets' buffers are full the
            # switch holds its events, and past five of them it drops the client.
            reason = {"reason": "r" * 64}
            for _ in range(20_000):
                await api.ok("POST", "/v1/agents/2001/not_ready", reason)
                await api.ok("POST", "/v1/agents/2001/ready")
                status = await api.ok("GET", "/v1/status")
                if status["event_clients"] == 0:
                    break
            assert status["event_clients"] == 0
            # What it was sent before that is still there to read, then the close.
            received = 0
            while (message := await ws.receive(timeout=WAIT)).type is aiohttp.WSMsgType.TEXT:
                received += 1
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert (message.data, message.extra) == (1008, "more than 5 events behind")
            assert received > 5
            # The switch serves on.
            assert (await api.ok("GET", "/v1/agents/2001"))["state"] == "ready"


async def test_stopping_the_switch_closes_the_stream_with_1001(tmp_path: Path) -> None:
    with running_switch(tmp_path, EXTENSIONS, CONFIG) as switch:
        async with unix_client(switch) as api:
            ws = await api.events()
            switch.process.send_signal(signal.SIGINT)
            message = await ws.receive(timeout=WAIT)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert (message.data, message.extra) == (1001, "the switch is stopping")
            # The stream did not hold the shutdown up (the switch waits up to 60 s for handlers).
            await asyncio.to_thread(switch.process.wait, 10)


# Loopback TCP


def callbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``callbox ARGS`` with the settings of ``env``, once it has exited."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_api_also_listens_on_loopback_tcp_when_a_port_is_set(tmp_path: Path) -> None:
    port = free_port()
    settings = {"CALLBOX_CONTROL_TCP_PORT": str(port)}
    with running_switch(tmp_path, EXTENSIONS, CONFIG, **settings):
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{port}")
            status = await api.ok("GET", "/v1/status")
            assert status["listeners"]["control_tcp"] == f"http://127.0.0.1:{port}"
            ws = await api.events()
            await api.ok("POST", "/v1/agents/2001/login")
            assert (await next_event(ws))["state"] == "ready"
            await ws.close()


def test_a_non_loopback_tcp_host_stops_the_switch_at_start(tmp_path: Path) -> None:
    env = {
        "CALLBOX_DATA_DIR": str(tmp_path / "var"),
        "CALLBOX_SIP_HOST": "127.0.0.1",
        "CALLBOX_SIP_PORT": str(free_port()),
        "CALLBOX_CONTROL_TCP_HOST": "0.0.0.0",
        "CALLBOX_CONTROL_TCP_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
    }
    result = callbox(env, "switch")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "control tcp_host '0.0.0.0' is not a loopback address (0.0.0.0)" in result.stderr
    assert not (tmp_path / "var" / "run" / "switch.sock").exists()


# The command line


def test_callbox_agent_commands_and_status_tables(switch: RunningSwitch) -> None:
    login = callbox(switch.env, "agent", "login", "2001")
    assert (login.returncode, login.stdout) == (0, "agent 2001 张伟: ready\n"), login.stderr
    away = callbox(switch.env, "agent", "notready", "2001", "--reason", "lunch")
    assert away.stdout == "agent 2001 张伟: not_ready (lunch)\n", away.stderr
    assert callbox(switch.env, "agent", "login", "2002").returncode == 0
    refused = callbox(switch.env, "agent", "login", "2002")
    assert refused.returncode == 1
    assert refused.stderr == "callbox agent login: agent 2002 is already logged in (ready)\n"
    missing = callbox(switch.env, "agent", "notready", "2002")
    assert missing.returncode == 1
    assert "reason: required" in missing.stderr
    bad = callbox(switch.env, "agent", "ready", "../status")
    assert bad.returncode == 2
    assert "an agent number is digits, got '../status'" in bad.stderr
    unknown = callbox(switch.env, "agent", "ready", "9999")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "callbox agent ready: no agent numbered '9999'\n",
    )

    status = callbox_status(switch.env)
    assert status.returncode == 0, status.stderr
    # Columns are aligned with runs of spaces: compare the cells.
    rows = [" ".join(line.split()) for line in status.stdout.splitlines()]
    assert "agents 3 configured, 2 logged in" in rows
    agents = rows.index("agent name extension state reason since call")
    assert rows[agents + 1].startswith("2001 张伟 1001 not_ready lunch ")
    assert rows[agents + 2].startswith("2002 李娜 1002 ready - ")
    assert rows[agents + 3] == "2003 Desk Less - logged_out - - -"
    assert "queues 2 configured" in rows
    queues = rows.index(
        "queue skill strategy waiting longest wait agents ready answered abandoned timed out"
    )
    assert rows[queues + 1] == "sales sales longest_idle 0 - 1 of 2 0 0 0"
    assert rows[queues + 2] == "support support longest_idle 0 - 1 of 2 0 0 0"
