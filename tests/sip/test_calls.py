"""The switch connects calls between registered extensions: SIPp on both sides, on loopback.

The callee is a SIPp that registers extension 1002 (``register.xml``) and
then, on the same UDP port, plays the phone (``answer.xml``, ``busy.xml``,
...); the caller is a SIPp that authenticates as extension 1001 and dials
(``call_*.xml``). Each test passes when both SIPp scenarios complete, which
checks every message each side receives.
"""

from __future__ import annotations

import array
import json
import math
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import core
from tests.sip.net import Certificate, free_media_ports, free_port
from tests.sip.test_switch import RunningSwitch, callbox_status, password_of, running_switch

SCENARIOS = Path(__file__).parent / "sipp"
CALLER, CALLEE = "1001", "1002"

pytestmark = pytest.mark.slow


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[RunningSwitch]:
    with running_switch(tmp_path, ("1001", "1002", "1003")) as running:
        yield running


def sipp_args(switch: RunningSwitch, scenario: str, number: str, port: int) -> list[str]:
    return [
        "sipp", f"127.0.0.1:{switch.port}", "-sf", str(SCENARIOS / scenario),
        "-s", number, "-m", "1", "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_media_ports()),
        "-nostdin", "-timeout", "40", "-timeout_error", "-trace_err", "-trace_msg",
    ]  # fmt: skip


def finish(process: subprocess.Popen[str], what: str, cwd: Path) -> str:
    out, _ = process.communicate(timeout=60)
    errors = "".join(p.read_text()[-3000:] for p in cwd.glob("*_errors.log"))
    assert process.returncode == 0, f"{what} failed:\n{out[-3000:]}\n{errors}"
    return out


class Phones:
    """A callee SIPp registered as an extension (1002) and a caller SIPp as 1001."""

    def __init__(self, switch: RunningSwitch, tmp_path: Path, number: str = CALLEE) -> None:
        self.switch = switch
        self.number = number
        self.callee_dir = tmp_path / "callee"
        self.caller_dir = tmp_path / "caller"
        self.callee_dir.mkdir(parents=True)
        self.caller_dir.mkdir(parents=True)
        self.callee_port = free_port()
        self.started: list[subprocess.Popen[str]] = []
        """Every SIPp started in the background, stopped by ``close`` if still running."""

    def close(self) -> None:
        """Kill the SIPps a failed test left running (a passing test has waited for them)."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
            if process.stdout is not None:
                process.stdout.close()
            process.wait()

    def register_callee(self) -> None:
        args = sipp_args(self.switch, "register.xml", self.number, self.callee_port)
        done = subprocess.run(
            [*args, "-au", self.number, "-ap", password_of(self.number)],
            cwd=self.callee_dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:]

    def callee(self, scenario: str, *extra: str) -> subprocess.Popen[str]:
        """The registered phone, waiting for its call (SIPp in UAS mode on the same port)."""
        args = sipp_args(self.switch, scenario, self.number, self.callee_port)
        # As a UAS, SIPp takes no remote address: it answers whoever calls.
        return self._background([args[0], *args[2:], *extra], self.callee_dir)

    def start_call(self, scenario: str, number: str = CALLEE, *extra: str) -> subprocess.Popen[str]:
        """Extension 1001 dials ``number`` in the background (``call`` waits for the end)."""
        args = sipp_args(self.switch, scenario, number, free_port())
        return self._background(
            [*args, "-key", "caller", CALLER, "-au", CALLER, "-ap", password_of(CALLER), *extra],
            self.caller_dir,
        )

    def _background(self, command: list[str], cwd: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.started.append(process)
        return process

    def call(self, scenario: str, number: str = CALLEE, *extra: str) -> str:
        """Extension 1001 dials ``number``; returns SIPp's output once it has finished."""
        return finish(
            self.start_call(scenario, number, *extra), f"caller {scenario}", self.caller_dir
        )

    def caller_received(self) -> str:
        """Every message the caller's SIPp logged (``-trace_msg``)."""
        return "".join(p.read_text() for p in self.caller_dir.glob("*_messages.log"))


@pytest.fixture
def phones(switch: RunningSwitch, tmp_path: Path) -> Iterator[Phones]:
    running = Phones(switch, tmp_path)
    yield running
    running.close()


def connect(phones: Phones, callee: str, caller: str, *caller_extra: str) -> None:
    phones.register_callee()
    answering = phones.callee(callee)
    phones.call(caller, CALLEE, *caller_extra)
    finish(answering, f"callee {callee}", phones.callee_dir)


def test_extensions_call_each_other_and_the_caller_hangs_up(phones: Phones) -> None:
    connect(phones, "answer.xml", "call_caller_bye.xml")
    received = phones.caller_received()
    assert "SIP/2.0 407 Proxy Authentication Required" in received
    assert "SIP/2.0 180 Ringing" in received


def test_a_call_over_tcp_reaches_a_udp_phone(phones: Phones) -> None:
    connect(phones, "answer.xml", "call_caller_bye.xml", "-t", "t1")


def test_the_callee_hangs_up_and_the_caller_gets_the_bye(phones: Phones) -> None:
    connect(phones, "answer_then_bye.xml", "call_callee_bye.xml")


def test_hold_and_resume_pass_through_to_the_other_phone(phones: Phones) -> None:
    connect(phones, "answer_hold.xml", "call_hold.xml")


def test_a_busy_phone_gives_the_caller_486(phones: Phones) -> None:
    connect(phones, "busy.xml", "call_refused.xml")
    assert "SIP/2.0 486 Busy Here" in phones.caller_received()


def test_the_caller_cancels_and_the_ringing_phone_is_cancelled(phones: Phones) -> None:
    connect(phones, "ring.xml", "call_cancel.xml")


def test_unknown_number_gets_404(phones: Phones) -> None:
    phones.call("call_refused.xml", "4999")
    assert "SIP/2.0 404 Not Found" in phones.caller_received()


def test_unregistered_extension_gets_480(phones: Phones) -> None:
    phones.call("call_refused.xml", "1003")
    assert "SIP/2.0 480 Temporarily Unavailable" in phones.caller_received()


def test_no_answer_cancels_the_phone_and_gives_the_caller_480(tmp_path: Path) -> None:
    with running_switch(tmp_path, (CALLER, CALLEE), CALLBOX_SIP_NO_ANSWER_S="2") as switch:
        phones = Phones(switch, tmp_path)
        connect(phones, "ring.xml", "call_refused.xml")
    assert "SIP/2.0 480 Temporarily Unavailable" in phones.caller_received()


def test_silent_media_hangs_up_both_phones_with_cause_102(tmp_path: Path) -> None:
    # Neither SIPp sends RTP: after 2 s both legs time out and both phones get a BYE.
    with running_switch(tmp_path, (CALLER, CALLEE), CALLBOX_RTP_TIMEOUT_S="2") as switch:
        phones = Phones(switch, tmp_path)
        connect(phones, "answer.xml", "call_callee_bye.xml")
    assert 'Reason: Q.850;cause=102;text="recovery on timer expiry"' in phones.caller_received()


def test_status_lists_no_call_once_both_hung_up(phones: Phones) -> None:
    connect(phones, "answer.xml", "call_caller_bye.xml")
    status = callbox_status(phones.switch.env)
    assert status.returncode == 0, status.stderr
    assert "calls         0 live" in status.stdout


class Baresip:
    """A baresip phone registered as an extension, answering calls by itself unless
    ``answers`` is false (then it rings until told to ``accept``); ``controlled`` (or not
    ``answers``) takes commands over ctrl_tcp (``command``)."""

    def __init__(
        self,
        switch: RunningSwitch,
        number: str,
        home: Path,
        tone_hz: int,
        transport: str,
        *,
        ca_file: Path | None = None,
        port: int | None = None,
        answers: bool = True,
        controlled: bool = False,
    ) -> None:
        home.mkdir()
        (home / "config").write_text(
            (f"sip_cafile\t{ca_file}\n" if ca_file is not None else "")
            + f"poll_method\tepoll\nsip_listen\t127.0.0.1:{free_port()}\n"
            "module_path\t/usr/lib/baresip/modules\n"
            "module\tg711.so\nmodule\tausine.so\nmodule\taubridge.so\n"
            "module_app\taccount.so\nmodule_app\tmenu.so\n"
            f"audio_source\tausine,{tone_hz}\naudio_player\taubridge,sink{number}\n"
            # ausine makes 48 kHz stereo only; baresip resamples it for G.711.
            "ausrc_srate\t48000\nausrc_channels\t2\n"
        )
        (home / "accounts").write_text(
            f"<sip:{number}@127.0.0.1:{port or switch.port};transport={transport}>"
            f";auth_pass={password_of(number)};regint=600;"
            f"answermode={'auto' if answers else 'manual'}\n"
        )
        self.control_port = free_port() if controlled or not answers else None
        if self.control_port is not None:
            with (home / "config").open("a") as config:
                config.write(
                    f"module_app\tctrl_tcp.so\nctrl_tcp_listen\t127.0.0.1:{self.control_port}\n"
                )
        self.home = home
        self.process: subprocess.Popen[str] | None = None

    def command(self, command: str) -> None:
        """Send a command (``accept``, ``hangup``) over ctrl_tcp (a JSON netstring)."""
        assert self.control_port is not None, "made without ctrl_tcp"
        body = json.dumps({"command": command, "token": "t"}).encode()
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as sock:
            sock.sendall(str(len(body)).encode() + b":" + body + b",")
            sock.recv(4096)

    def start(self, *commands: str) -> None:
        args = ["baresip", "-f", str(self.home)]
        for command in commands:
            args += ["-e", command]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> str:
        assert self.process is not None
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        (self.home / "output.log").write_text(out)
        return out


def wait_for_status(switch: RunningSwitch, pattern: str, seconds: float = 30) -> str:
    """``callbox status`` once its output matches ``pattern`` (polled)."""
    deadline = time.monotonic() + seconds
    while True:
        status = callbox_status(switch.env)
        if re.search(pattern, status.stdout, re.MULTILINE):
            return status.stdout
        assert time.monotonic() < deadline, f"no {pattern!r} in:\n{status.stdout}{status.stderr}"
        time.sleep(0.3)


def call_between_baresip_phones(
    switch: RunningSwitch, callee: Baresip, caller: Baresip, transport: str, port: int
) -> None:
    """The caller dials the callee; both legs carry RTP both ways; both hang up."""
    callee.start()
    try:
        wait_for_status(switch, rf"^extension     {CALLEE}: .* from {transport} ")
        caller.start(f"/dial sip:{CALLEE}@127.0.0.1:{port};transport={transport}")
        # Both legs have carried 100 packets (2 s of 20 ms frames) each way at least.
        line = r"^  \S+ +1001 +1002 +- +answered +PCMA +[\d.]+ s +- +"
        legs = r"caller PCMA port \d+ rx \d{3,} tx \d{3,}, callee PCMA port \d+ rx \d{3,} tx \d{3,}"
        wait_for_status(switch, line + legs)
    finally:
        caller_out = caller.stop()
        callee.stop()
    wait_for_status(switch, r"^calls         0 live")
    assert f"Call established: sip:{CALLEE}@" in caller_out, caller_out[-2000:]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_two_baresip_phones_call_each_other_with_rtp_both_ways_through_the_engine(
    switch: RunningSwitch, tmp_path: Path, transport: str
) -> None:
    # Over TCP the INVITE reaches the callee down the connection it registered on.
    callee = Baresip(switch, CALLEE, tmp_path / "callee", 440, transport)
    caller = Baresip(switch, CALLER, tmp_path / "caller", 880, transport)
    call_between_baresip_phones(switch, callee, caller, transport, switch.port)


def test_two_baresip_phones_call_each_other_over_tls(
    tmp_path: Path, certificate: Certificate
) -> None:
    tls_port = free_port()
    with running_switch(
        tmp_path,
        ("1001", "1002"),
        CALLBOX_SIP_TLS_PORT=str(tls_port),
        CALLBOX_SIP_TLS_CERTIFICATE=str(certificate.cert),
        CALLBOX_SIP_TLS_KEY=str(certificate.key),
    ) as switch:
        # Each phone checks the switch's certificate (its subjectAltName is 127.0.0.1).
        callee, caller = (
            Baresip(switch, number, tmp_path / number, hz, "tls", ca_file=certificate.cert,
                    port=tls_port)
            for number, hz in ((CALLEE, 440), (CALLER, 880))
        )  # fmt: skip
        call_between_baresip_phones(switch, callee, caller, "tls", tls_port)


@pytest.mark.parametrize("attempt", range(3))
def test_a_call_survives_ten_percent_loss_on_both_phones(phones: Phones, attempt: int) -> None:
    # Each SIPp drops a tenth of what it sends and receives; retransmissions recover.
    phones.register_callee()
    answering = phones.callee("answer_lossy.xml", "-lost", "10")
    phones.call("call_caller_bye.xml", CALLEE, "-lost", "10")
    finish(answering, "callee answer_lossy.xml", phones.callee_dir)


@pytest.mark.parametrize("attempt", range(3))
def test_hold_and_resume_survive_ten_percent_loss_on_the_callers_side(
    phones: Phones, attempt: int
) -> None:
    connect(phones, "answer_hold.xml", "call_hold.xml", "-lost", "10")


def test_dtmf_by_info_is_passed_on_and_a_transfer_to_an_absent_phone_fails_by_notify(
    phones: Phones,
) -> None:
    connect(phones, "answer_info.xml", "call_info_refer.xml")


def test_every_phone_of_the_extension_rings_and_the_first_answer_wins(phones: Phones) -> None:
    # Two phones register extension 1002; one answers, the other is CANCELled.
    desk = Phones(phones.switch, phones.caller_dir.parent / "desk")
    phones.register_callee()
    desk.register_callee()
    answering = phones.callee("answer.xml")
    ringing = desk.callee("ring.xml")
    phones.call("call_caller_bye.xml")
    finish(answering, "callee answer.xml", phones.callee_dir)
    finish(ringing, "second phone ring.xml", desk.callee_dir)
    cancelled = "".join(p.read_text() for p in desk.callee_dir.glob("*_messages.log"))
    assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancelled


def test_a_blind_transfer_connects_the_callee_to_the_target_and_hangs_up_the_transferor(
    phones: Phones,
) -> None:
    # 1001 calls 1002 and REFERs it to 1003, which answers and later hangs up on 1002.
    target = Phones(phones.switch, phones.caller_dir.parent / "target", "1003")
    phones.register_callee()
    target.register_callee()
    transferee = phones.callee("answer.xml")
    answering = target.callee("answer_then_bye.xml")
    phones.call("call_transfer.xml", CALLEE, "-key", "transfer_to", "1003")
    finish(answering, "target answer_then_bye.xml", target.callee_dir)
    finish(transferee, "transferee answer.xml", phones.callee_dir)


def test_the_callees_hold_and_resume_reach_the_caller_as_reinvites(phones: Phones) -> None:
    connect(phones, "answer_and_hold.xml", "call_held.xml")


def write_alaw_tone(path: Path, seconds: int = 2, hz: int = 1000) -> None:
    """A raw A-law file of a tone at -10 dBFS, for SIPp's ``rtp_stream``."""
    amplitude = 0.316 * 32767
    samples = array.array(
        "h",
        (round(amplitude * math.sin(2 * math.pi * hz * n / 8000)) for n in range(8000 * seconds)),
    )
    encoder = core.Encoder("PCMA")
    frame = 160  # 20 ms at 8 kHz
    path.write_bytes(
        b"".join(encoder.encode(samples[i : i + frame]) for i in range(0, len(samples), frame))
    )


def test_a_pcma_caller_and_a_pcmu_phone_talk_through_a_transcoder(phones: Phones) -> None:
    # The caller offers PCMA only; 1002 is offered PCMA and PCMU, answers PCMU and is
    # moved by re-INVITE to a PCMU leg. The caller streams A-law, the phone echoes it.
    write_alaw_tone(phones.caller_dir / "alaw.raw")
    phones.register_callee()
    answering = phones.callee("answer_pcmu.xml", "-rtp_echo")
    calling = phones.start_call("call_pcma_rtp.xml")
    try:
        line = r"^  \S+ +1001 +1002 +- +answered +PCMA/PCMU +[\d.]+ s +- +"
        legs = r"caller PCMA port \d+ rx \d{3,} tx \d{3,}, callee PCMU port \d+ rx \d{3,} tx \d{3,}"
        wait_for_status(phones.switch, line + legs)
    finally:
        finish(calling, "caller call_pcma_rtp.xml", phones.caller_dir)
        finish(answering, "callee answer_pcmu.xml", phones.callee_dir)


def test_a_caller_offering_no_codec_we_decode_gets_488(phones: Phones) -> None:
    # call_refused.xml, offering GSM only (written at test time).
    refused = (SCENARIOS / "call_refused.xml").read_text()
    gsm = phones.caller_dir / "call_gsm.xml"
    gsm.write_text(
        refused.replace("RTP/AVP 8 101", "RTP/AVP 3 101").replace("8 PCMA/8000", "3 GSM/8000")
    )
    phones.register_callee()
    phones.call(str(gsm))
    assert "SIP/2.0 488 Not Acceptable Here" in phones.caller_received()
