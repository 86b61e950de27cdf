"""Real peers for the call center's end-to-end tests, all on loopback.

- ``callbox``: the switch (SIP, call control, IVR, ACD, media engine) run
  in the test's own process, so a test can log agents in and read call
  records; SIP and RTP still go over loopback sockets.
- ``RtpCaller``: the media side of a trunk's caller. SIPp from the trunk's
  address (127.0.0.3) does the signalling with an offer naming this
  socket; the caller records what it hears, presses digits (RFC 4733
  events, or in-band tones in its audio) and then sends a tone.
- ``BaresipPhone``: baresip registered as an extension with its password,
  answering by itself, sending a tone, recording what it hears (sndfile)
  and hanging up on command (ctrl_tcp).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import os
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import core
from appliance.config import open_store
from appliance.settings import Settings, SipSettings
from appliance.switch.service import Switch
from tests.sip.net import free_port
from tests.sip.test_calls import Baresip
from tests.sip.test_switch import RunningSwitch, import_config, password_of

GATEWAY = "127.0.0.3"
"""The trunk's address: SIPp and the RTP caller send from here."""
RATE = 8000
FRAME = 160
CALLER_TONE_HZ = 1000
AGENT_TONE_HZ = 1700
WAIT_S = 30.0


def trunk_config(extra: str, extensions: tuple[str, ...] = ("1001",), trunks: str = "") -> str:
    """YAML: trunk ``gateway`` (IP trust for 127.0.0.3) and ``trunks``, ``extensions``, then
    ``extra``."""
    return (
        "trunks:\n  - {name: gateway, mode: ip, host: 127.0.0.3, allow: [127.0.0.3/32],"
        " options_interval: 0, codecs: [PCMA, PCMU]}\n"
        + trunks
        + "extensions:\n"
        + "".join(f'  - number: "{n}"\n    password: {password_of(n)}\n' for n in extensions)
        + extra
    )


@contextlib.asynccontextmanager
async def callbox(
    tmp_path: Path, config: str, prompts: Path | None = None, **settings: object
) -> AsyncIterator[Switch]:
    """The switch on a free loopback port with ``config`` imported.

    ``prompts`` (a folder of generated built-in prompts) becomes the data
    folder's prompts; ``settings`` replace top-level settings.
    """
    data = tmp_path / "var"
    data.mkdir()
    if prompts is not None:
        (data / "prompts").symlink_to(prompts)
    base = Settings(data_dir=str(data), sip=SipSettings(host="127.0.0.1", port=free_port()))
    chosen = replace(base, **settings)  # type: ignore[arg-type]
    (tmp_path / "config.yaml").write_text(config)
    env = dict(os.environ, CALLBOX_DATA_DIR=str(data))
    await asyncio.to_thread(import_config, tmp_path / "config.yaml", env)
    store = open_store(chosen)
    switch = Switch(chosen, store)
    switch.start_media()
    await switch.sip.start(chosen.sip.host, chosen.sip.port)
    await switch.load_config()
    try:
        yield switch
    finally:
        await switch.calls.close()
        await switch.callcenter.close()
        await switch.sip.close()
        switch.stop_media()
        store.close()


async def eventually(check: Callable[[], object], what: str, seconds: float = WAIT_S) -> None:
    """Poll ``check`` until it is true."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# Audio analysis


def tone_share(samples: array.array[int], hz: float) -> float:
    """The share (0..1) of the samples' power that is at ``hz`` (Goertzel)."""
    n = len(samples)
    if n == 0:
        return 0.0
    k = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    total = 0.0
    for x in samples:
        s0 = x + k * s1 - s2
        s2, s1 = s1, s0
        total += x * x
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    return (2 * power / n) / total if total else 0.0


def has_tone(samples: array.array[int], hz: float, seconds: float = 1.0) -> bool:
    """Whether some ``seconds`` of ``samples`` are mostly (over 60 %) a tone at ``hz``."""
    window = int(RATE * seconds)
    step = RATE // 4
    if len(samples) < window:
        return False
    return any(
        tone_share(samples[start : start + window], hz) > 0.6
        for start in range(0, max(len(samples) - window, 0) + 1, step)
    )


def rms_dbfs(samples: array.array[int]) -> float:
    """The RMS level of ``samples`` in dBFS."""
    if not samples:
        return -120.0
    mean = sum(x * x for x in samples) / len(samples)
    return 10 * math.log10(mean / 32768**2) if mean else -120.0


def read_wav(path: Path) -> tuple[int, list[array.array[int]]]:
    """A 16-bit WAV's rate and its channels."""
    with wave.open(str(path)) as wav:
        channels, rate = wav.getnchannels(), wav.getframerate()
        frames = array.array("h", wav.readframes(wav.getnframes()))
    return rate, [frames[i::channels] for i in range(channels)]


def at_8k(rate: int, samples: array.array[int]) -> array.array[int]:
    """``samples`` at 8 kHz (every n-th sample: the tones tested are far below 4 kHz)."""
    if rate == RATE:
        return samples
    resampler = core.Resampler(rate, RATE)
    return array.array("h", resampler.process(samples.tobytes()))


# The caller's media


class RtpCaller:
    """A caller's RTP (PCMA, 20 ms) on a socket at the trunk's address.

    It answers whatever address sends to it (the switch's leg), keeps what it
    hears decoded, and sends silence, DTMF or its tone as told.
    """

    def __init__(
        self, *, telephone_event: int | None = 101, tone_hz: float = CALLER_TONE_HZ
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((GATEWAY, 0))
        self.sock.settimeout(0.005)
        self.port = int(self.sock.getsockname()[1])
        self.telephone_event = telephone_event
        self.tone_hz = tone_hz
        self.heard = array.array("h")
        self.remote: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._tone = False
        self._inband = core.DtmfGenerator(-8, 2, 120, 120)
        self._events: list[str] = []
        self._encoder = core.Encoder("PCMA")
        self._stop = threading.Event()
        self._seq = 0
        self._timestamp = 0
        self._phase = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sdp(self) -> str:
        """The offer's media lines."""
        formats = "8" if self.telephone_event is None else f"8 {self.telephone_event}"
        lines = [
            f"m=audio {self.port} RTP/AVP {formats}",
            "a=rtpmap:8 PCMA/8000",
        ]
        if self.telephone_event is not None:
            lines += [
                f"a=rtpmap:{self.telephone_event} telephone-event/8000",
                f"a=fmtp:{self.telephone_event} 0-16",
            ]
        return "\n".join([*lines, "a=ptime:20", "a=sendrecv"])

    def press(self, digit: str) -> None:
        """Press ``digit``: RFC 4733 events if the offer had them, else in-band tones."""
        with self._lock:
            if self.telephone_event is None:
                self._inband.queue(digit)
            else:
                self._events.append(digit)

    def start_tone(self) -> None:
        """Send the caller's tone from now on."""
        self._tone = True

    def heard_since(self, start: int) -> array.array[int]:
        """What the caller heard from sample ``start`` on."""
        with self._lock:
            return self.heard[start:]

    def close(self) -> None:
        """Stop sending and close the socket."""
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                data = b""
            if len(data) > 12 and data[0] >> 6 == 2 and not 200 <= data[1] <= 204:
                self.remote = source
                if data[1] & 0x7F == 8:
                    decoded = array.array("h", core.alaw_decode(data[12:]))
                    with self._lock:
                        self.heard.extend(decoded)
            now = time.monotonic()
            if self.remote is not None and now >= next_send:
                next_send = max(next_send + 0.02, now - 0.1)
                self._send_frame()

    def _send_frame(self) -> None:
        assert self.remote is not None
        with self._lock:
            event = self._events.pop(0) if self._events else None
            pcm = self._audio()
        if event is not None:
            self._send_event(event)
        self._packet(8, self._encoder.encode(pcm), self._timestamp)
        self._timestamp += FRAME

    def _audio(self) -> bytes:
        if self._inband.busy:
            return self._inband.generate(FRAME)
        if not self._tone:
            return bytes(2 * FRAME)
        samples = array.array(
            "h",
            (
                round(10000 * math.sin(2 * math.pi * self.tone_hz * (self._phase + n) / RATE))
                for n in range(FRAME)
            ),
        )
        self._phase += FRAME
        return samples.tobytes()

    def _send_event(self, digit: str) -> None:
        """One RFC 4733 digit of 100 ms: updates every 20 ms, the end packet three times."""
        assert self.telephone_event is not None
        code = core.dtmf_event(digit)
        start = self._timestamp
        for step in range(1, 6):
            payload = core.TelephoneEvent(code, False, 10, step * FRAME).encode()
            self._packet(self.telephone_event, payload, start, marker=step == 1)
            time.sleep(0.02)
        for _ in range(3):
            payload = core.TelephoneEvent(code, True, 10, 5 * FRAME).encode()
            self._packet(self.telephone_event, payload, start)
        self._timestamp += 5 * FRAME

    def _packet(self, pt: int, payload: bytes, timestamp: int, *, marker: bool = False) -> None:
        assert self.remote is not None
        header = struct.pack(
            "!BBHII", 0x80, pt | (0x80 if marker else 0), self._seq & 0xFFFF,
            timestamp & 0xFFFFFFFF, 0x5EED,
        )  # fmt: skip
        self._seq += 1
        self.sock.sendto(header + payload, self.remote)


def _ack(branch: str) -> str:
    return f"""  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}
From: <sip:13800138000@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

  ]]></send>
"""


_CALLER_BYE = """  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:13800138000@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 99 BYE
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
"""

_OK = """SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
"""
"""A 200 to the request just received (its headers copied)."""

_SWITCH_BYE = f"""  <recv request="BYE"/>
  <send><![CDATA[
{_OK}Content-Length: 0

  ]]></send>
"""


def _info(after_ms: int, digit: str, cseq: int) -> str:
    """``digit`` by INFO (application/dtmf-relay) ``after_ms`` after what came before."""
    body = f"Signal={digit}\nDuration=160"
    return f"""  <pause milliseconds="{after_ms}"/>
  <send retrans="500"><![CDATA[
INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:13800138000@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

{body}
  ]]></send>
  <recv response="200"/>
"""


def trunk_call_scenario(
    path: Path,
    caller: RtpCaller,
    *,
    hang_up_after_ms: int | None = None,
    refused: int | None = None,
    sdp: str | None = None,
    infos: Sequence[tuple[int, str]] = (),
) -> Path:
    """A SIPp scenario for the trunk's caller: INVITE with an offer naming ``caller``'s
    socket (or ``sdp``), then the ``refused`` status and its ACK; else 200 and ACK, then
    ``infos`` (each a pause in ms and a digit) by INFO, and BYE after ``hang_up_after_ms``,
    or the switch's BYE answered."""
    if refused is not None:
        # The ACK of a failure belongs to the INVITE's transaction: its branch.
        ending = f'  <recv response="{refused}"/>\n' + _ack("[branch-3]")
    else:
        ending = (
            '  <recv response="180" optional="true"/>\n'
            '  <recv response="183" optional="true"/>\n'
            '  <recv response="200" rrs="true"/>\n'
            + _ack("[branch]")
            + "".join(_info(pause, digit, cseq) for cseq, (pause, digit) in enumerate(infos, 2))
            + (
                f'  <pause milliseconds="{hang_up_after_ms}"/>\n' + _CALLER_BYE
                if hang_up_after_ms is not None
                else _SWITCH_BYE
            )
        )
    offer = (
        sdp
        if sdp is not None
        else (f"v=0\no=gw 1 1 IN IP4 {GATEWAY}\ns=-\nc=IN IP4 {GATEWAY}\nt=0 0\n{caller.sdp()}")
    )
    path.write_text(f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="trunk caller">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:13800138000@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:13800138000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{offer}
  ]]></send>
  <recv response="100" optional="true"/>
{ending}</scenario>
""")
    return path


async def start_sipp(
    switch: Switch | RunningSwitch,
    scenario: Path,
    number: str,
    cwd: Path,
    *extra: str,
    local: str = GATEWAY,
    server: bool = False,
) -> asyncio.subprocess.Process:
    """SIPp from ``local`` (the trunk's address) running ``scenario`` toward ``number``;
    ``server`` waits for requests instead. ``extra`` options come last (a ``-p`` there
    wins over the free port given before)."""
    port = switch.port if isinstance(switch, RunningSwitch) else switch.settings.sip.port
    target = [] if server else [f"127.0.0.1:{port}"]
    return await asyncio.create_subprocess_exec(
        "sipp", *target, "-sf", str(scenario), "-s", number,
        "-m", "1", "-i", local, "-p", str(free_port()), "-nostdin", "-timeout", "60",
        "-timeout_error", "-trace_err", "-trace_msg", *extra,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process, cwd: Path) -> str:
    """SIPp's output once it ended; fails the test unless its scenario passed."""
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    text = out.decode(errors="replace")
    if process.returncode != 0:
        errors = await asyncio.to_thread(messages, cwd, "*_errors.log")
        raise AssertionError(f"SIPp failed:\n{text[-3000:]}\n{errors[-3000:]}")
    return text


def messages(cwd: Path, logs: str = "*_messages.log") -> str:
    """Every SIP message SIPp logged (``-trace_msg``), or its other ``logs``."""
    return "".join(p.read_text() for p in cwd.glob(logs))


# The agent's phone


class BaresipPhone(Baresip):
    """baresip as an agent's extension: a tone out, what it hears recorded; it answers by
    itself unless told not to (then it rings until CANCELled)."""

    def __init__(
        self,
        switch: Switch,
        number: str,
        home: Path,
        tone_hz: int = AGENT_TONE_HZ,
        *,
        answers: bool = True,
    ) -> None:
        super().__init__(
            RunningSwitch(None, switch.settings.sip.port, home.parent, {}),  # type: ignore[arg-type]
            number,
            home,
            tone_hz,
            "udp",
            answers=answers,
            controlled=True,
        )
        self.recordings = home / "heard"
        self.recordings.mkdir()
        with (home / "config").open("a") as config:
            config.write(f"module\tsndfile.so\nsnd_path\t{self.recordings}\n")

    def heard(self) -> array.array[int]:
        """What the phone heard on its calls (sndfile's decoded audio), at 8 kHz."""
        heard = array.array("h")
        for path in sorted(self.recordings.glob("*dec.wav")):
            rate, channels = read_wav(path)
            heard.extend(at_8k(rate, channels[0]))
        return heard


async def stop_process(process: subprocess.Popen[str] | None) -> str:
    """Terminate a peer and return its output (off the loop: it de-registers from the switch
    running on it)."""
    return await asyncio.to_thread(_stop, process)


def _stop(process: subprocess.Popen[str] | None) -> str:
    if process is None or process.poll() is not None:
        return ""
    process.terminate()
    out, _ = process.communicate(timeout=30)
    return out
