"""The switch process answers real SIP peers (sipsak, SIPp) on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from appliance.sip.message import Response, parse_message
from tests.sip.net import free_port

SCENARIOS = Path(__file__).parent / "sipp"
WAIT = 20.0
PASSWORD = "phone-1001-secret"
GATEWAY = "127.0.0.3"  # the trunk gateway's address in running_switch

pytestmark = pytest.mark.slow


def password_of(extension: str) -> str:
    """The password the test switch gives an extension."""
    return f"phone-{extension}-secret"


@dataclass
class RunningSwitch:
    process: subprocess.Popen[str]
    port: int
    workdir: Path
    env: dict[str, str]


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[RunningSwitch]:
    with running_switch(tmp_path) as running:
        yield running


@contextlib.contextmanager
def running_switch(
    tmp_path: Path,
    extensions: tuple[str, ...] = ("1001",),
    records: str = "",
    *,
    trunks: str = "",
    pickup_groups: str = "",
    **settings: str,
) -> Iterator[RunningSwitch]:
    """The switch process with ``extensions``, trunk ``gateway`` (127.0.0.3) and ``settings``.

    ``settings`` are ``CALLBOX_*`` variables; ``records`` is more of the YAML
    configuration (queues, agents, ...), ``trunks`` more entries of its
    trunks list; ``pickup_groups`` gives extensions a pickup group
    (``1002=sales 1003=sales``). Each extension's password is
    ``phone-<number>-secret`` (``password_of``).
    """
    running = start_switch(
        configured_switch(
            tmp_path, extensions, records, trunks=trunks, pickup_groups=pickup_groups, **settings
        )
    )
    yield running
    running.process.send_signal(signal.SIGINT)
    out, _ = running.process.communicate(timeout=30)
    assert running.process.returncode == 0, out


def configured_switch(
    tmp_path: Path,
    extensions: tuple[str, ...] = ("1001",),
    records: str = "",
    *,
    trunks: str = "",
    pickup_groups: str = "",
    **settings: str,
) -> RunningSwitch:
    """A data folder under ``tmp_path`` with the configuration ``running_switch`` describes,
    and the environment to run a switch on it; not started yet (no process)."""
    groups = dict(pair.split("=", 1) for pair in pickup_groups.split())
    port = free_port()
    env = dict(
        os.environ,
        CALLBOX_DATA_DIR=str(tmp_path / "var"),
        CALLBOX_SIP_HOST="127.0.0.1",
        CALLBOX_SIP_PORT=str(port),
        **settings,
    )
    env.pop("LD_PRELOAD", None)
    env.pop("NOTIFY_SOCKET", None)
    config = tmp_path / "extensions.yaml"
    config.write_text(
        "trunks:\n  - {name: gateway, mode: ip, host: 127.0.0.3, allow: [127.0.0.3/32],"
        " options_interval: 0}\n"
        + trunks
        + "extensions:\n"
        + "".join(
            f'  - number: "{n}"\n    password: {password_of(n)}\n'
            + (f"    pickup_group: {groups[n]}\n" if n in groups else "")
            for n in extensions
        )
        + records
    )
    import_config(config, env)
    return RunningSwitch(None, port, tmp_path, env)  # type: ignore[arg-type]


def start_switch(switch: RunningSwitch) -> RunningSwitch:
    """``switch`` (from ``configured_switch``) with a switch process started on its data
    folder, once it listens."""
    control = switch.workdir / "var" / "run" / "switch.sock"
    # A killed switch leaves its socket behind (the new one claims it): wait for the new one.
    control.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "switch"],
        env=switch.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # The switch binds SIP before its control socket, so the socket means SIP is up.
    deadline = time.monotonic() + 60
    while not control.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, _ = process.communicate()
            pytest.fail(f"switch did not start:\n{out}")
        time.sleep(0.05)
    return replace(switch, process=process)


def import_config(config: Path, env: dict[str, str]) -> None:
    """Import ``config`` with ``callbox config import`` into the data directory ``env`` names."""
    imported = subprocess.run(
        [sys.executable, "-m", "appliance", "config", "import", str(config)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr


def run_peer(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def sipp(
    switch: RunningSwitch, scenario: str, *transport: str, local: str = "127.0.0.1"
) -> subprocess.CompletedProcess[str]:
    return run_peer(
        [
            "sipp",
            f"127.0.0.1:{switch.port}",
            "-sf",
            str(SCENARIOS / scenario),
            *transport,
            "-m",
            "1",
            "-i",
            local,
            "-p",
            str(free_port()),
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
            "-trace_err",
        ],
        switch.workdir,
    )


def callbox_status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``callbox status`` against the switch that ``env`` points at."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sipsak_options_gets_200_with_allow_accept_supported(switch: RunningSwitch) -> None:
    result = run_peer(
        ["sipsak", "-vv", "-H", "127.0.0.1", "-s", f"sip:callbox@127.0.0.1:{switch.port}"],
        switch.workdir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIP/2.0 200 OK" in result.stdout
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, REGISTER" in (
        result.stdout
    )
    assert "Supported: replaces" in result.stdout
    assert "Accept: application/sdp" in result.stdout


def test_sipp_invite_without_credentials_gets_407_and_its_ack_is_taken(
    switch: RunningSwitch,
) -> None:
    result = sipp(switch, "invite_407.xml")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_sipp_options_over_tcp_gets_200(switch: RunningSwitch) -> None:
    result = sipp(switch, "options.xml", "-t", "t1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_malformed_udp_gets_400_and_the_switch_stays_up(switch: RunningSwitch) -> None:
    request = (
        "OPTIONS sip:callbox@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\n"
        "To: <sip:callbox@127.0.0.1>\r\nCall-ID: {branch}@probe\r\n"
        "CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(WAIT)
        target = ("127.0.0.1", switch.port)
        sock.sendto(b"\x16\x03\x01 not sip at all", target)
        sock.sendto(request.format(branch="bad", method="INVITE").encode(), target)
        bad = parse_message(sock.recv(65535))
        assert isinstance(bad, Response)
        assert (bad.status, bad.reason) == (400, "CSeq method does not match Request-Line")
        sock.sendto(request.format(branch="good", method="OPTIONS").encode(), target)
        good = parse_message(sock.recv(65535))
        assert isinstance(good, Response)
        assert good.status == 200
    assert switch.process.poll() is None


def test_switch_retransmits_407_until_acked_and_answers_a_repeated_invite_from_its_transaction(
    switch: RunningSwitch,
) -> None:
    invite = (
        b"INVITE sip:4000@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bKlossy\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=c9\r\n"
        b"To: <sip:4000@127.0.0.1>\r\nCall-ID: lossy@probe\r\n"
        b"CSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1>\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(WAIT)
        target = ("127.0.0.1", switch.port)

        def final() -> Response:
            while True:
                response = parse_message(sock.recv(65535))
                assert isinstance(response, Response)
                if response.status >= 200:
                    return response

        sock.sendto(invite, target)
        first = final()
        assert first.status == 407
        # No ACK: timer G brings the same 407 again (our ACK "was lost").
        again = final()
        assert (again.status, again.to.tag) == (407, first.to.tag)
        # A retransmitted INVITE is answered by the transaction, not a new 407 from the core.
        sock.sendto(invite, target)
        repeated = final()
        assert repeated.to.tag == first.to.tag
        ack = invite.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
        ack = ack.replace(b"To: <sip:4000@127.0.0.1>", f"To: {first.headers.get('To')}".encode())
        sock.sendto(ack, target)
    assert switch.process.poll() is None


def test_extension_registered_with_sipsak_shows_in_callbox_status(switch: RunningSwitch) -> None:
    result = run_peer(
        ["sipsak", "-U", "-vv", "-x", "600", "-u", "1001", "-a", PASSWORD,
         "-s", f"sip:1001@127.0.0.1:{switch.port}"],
        switch.workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    status = callbox_status(switch.env)
    assert status.returncode == 0, status.stderr
    assert f"udp/tcp 127.0.0.1:{switch.port}, tls off (no certificate configured)" in status.stdout
    assert "registered    1 extensions, 1 contacts" in status.stdout
    assert "extension     1001: sip:1001@127.0.0.1:" in status.stdout
    assert "from udp 127.0.0.1:" in status.stdout


def test_switch_with_a_certificate_answers_options_over_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls_port = free_port()
    with running_switch(
        tmp_path,
        CALLBOX_SIP_TLS_PORT=str(tls_port),
        CALLBOX_SIP_TLS_CERTIFICATE=str(cert),
        CALLBOX_SIP_TLS_KEY=str(key),
    ) as switch:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with (
            socket.create_connection(("127.0.0.1", tls_port), timeout=WAIT) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(
                b"OPTIONS sip:callbox@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKswtls\r\n"
                b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=w1\r\n"
                b"To: <sip:callbox@127.0.0.1>\r\nCall-ID: switch-tls@probe\r\n"
                b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            assert tls.recv(65535).startswith(b"SIP/2.0 200 OK\r\n")
        assert switch.process.poll() is None


def test_switch_bans_a_password_guesser_and_shows_the_ban_in_status(tmp_path: Path) -> None:
    with running_switch(tmp_path, CALLBOX_SECURITY_BAN_AFTER="2") as switch:
        for _ in range(2):
            guess = run_peer(
                ["sipsak", "-U", "-vv", "-u", "1001", "-a", "wrong-guess",
                 "-s", f"sip:1001@127.0.0.1:{switch.port}"],
                switch.workdir,
            )  # fmt: skip
            assert "403 Forbidden" in guess.stdout + guess.stderr
        status = callbox_status(switch.env)
        assert status.returncode == 0, status.stderr
        banned = re.search(r"banned        127\.0\.0\.1 for (\d+) s more", status.stdout)
        assert banned is not None, status.stdout
        assert 3000 < int(banned.group(1)) <= 3600


def status_json(env: dict[str, str]) -> dict[str, Any]:
    """``callbox status --json`` against the switch that ``env`` points at."""
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_invite_from_a_trunk_address_is_recognised_as_the_trunks_call(
    switch: RunningSwitch,
) -> None:
    result = sipp(switch, "trunk_invite_404.xml", local=GATEWAY)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    (gateway,) = status_json(switch.env)["trunks"]
    assert (gateway["name"], gateway["mode"], gateway["calls_in"]) == ("gateway", "ip", 1)
    human = callbox_status(switch.env).stdout
    assert "trunk         gateway (ip, udp 127.0.0.3:5060): 1 calls in, 0 out" in human


def test_invite_with_a_wrong_password_is_refused_and_repeated_ones_are_banned(
    tmp_path: Path,
) -> None:
    with running_switch(tmp_path, CALLBOX_SECURITY_BAN_AFTER="2") as switch:
        for _ in range(2):
            refused = sipp(
                switch, "invite_refused.xml", "-au", "1001", "-ap", "not-the-password",
                local="127.0.0.2",
            )  # fmt: skip
            assert refused.returncode == 0, refused.stdout[-2000:] + refused.stderr
        status = status_json(switch.env)
        assert "127.0.0.2" in status["banned"]
        assert status["trunks"][0]["calls_in"] == 0
        # The trunk's own address is still served.
        served = sipp(switch, "trunk_invite_404.xml", local=GATEWAY)
        assert served.returncode == 0, served.stdout[-2000:] + served.stderr


def test_trunk_imported_while_running_registers_shows_in_status_and_unregisters_at_stop(
    tmp_path: Path,
) -> None:
    provider_port = free_port()
    provider = subprocess.Popen(
        ["sipp", "-sf", str(SCENARIOS / "provider_register.xml"), "-set", "grant", "60",
         "-i", "127.0.0.1",
         "-p", str(provider_port), "-m", "1", "-nostdin", "-timeout", "60", "-timeout_error",
         "-trace_err"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with running_switch(tmp_path) as switch:
            config = tmp_path / "with-provider.yaml"
            config.write_text(
                "trunks:\n"
                f"  - {{name: provider, mode: register, host: 127.0.0.1, port: {provider_port},"
                " domain: provider.test, username: trunk-user, password: trunk-secret,"
                " options_interval: 0}\n"
                f'extensions:\n  - number: "1001"\n    password: {PASSWORD}\n'
            )
            import_config(config, switch.env)
            # The switch applies a changed configuration about a second after the import.
            deadline = time.monotonic() + 60
            while True:
                trunks = status_json(switch.env)["trunks"]
                registration = trunks[0]["registration"] if trunks else None
                if registration is not None and registration["state"] == "registered":
                    break
                assert time.monotonic() < deadline, trunks
                time.sleep(0.2)
            assert [t["name"] for t in trunks] == ["provider"]  # the gateway went
            human = callbox_status(switch.env).stdout
            assert "trunk         provider (register, udp 127.0.0.1:" in human
            assert "registration registered, expires in" in human
        # Stopping the switch sent Expires: 0, the scenario's last step.
        out, _ = provider.communicate(timeout=60)
        assert provider.returncode == 0, out[-3000:]
    finally:
        if provider.poll() is None:
            provider.kill()
            provider.communicate()
