"""Capacity of the whole box: concurrent calls through trunk -> IVR -> queue -> agent, recorded.

``python -m benchmarks.callcenter_load [--quick]`` (and ``callbox bench
capacity``) starts the switch (``python -m appliance switch``, one media
worker) pinned to CPU 0 with a generated configuration: a trunk trusting
127.0.0.3, a number whose flow answers and queues, one queue (no wrap-up)
and one agent per extension. Agents are one SIPp UAS (pinned to CPU 1)
that registers every agent extension from its port and answers with
``-rtp_echo``: each agent sends back the audio it hears. Agents log in
through the control API (loopback TCP). Callers are a SIPp UAC at the
trunk's address with RTP of its own (``rtp_stream``: a 1 kHz tone, 20 ms
frames) at ``--rate`` new calls per second.

A step is N concurrent calls: SIPp places N calls (``-l N``), each held
until every call is up plus ``--hold`` seconds; the measuring window is
``--hold`` seconds while all N are talking. It measures the switch's CPU
(``/proc/<pid>/task/*/schedstat``) per call-second, its resident memory
per call, set-up latency (INVITE to 200, SIPp's ``-trace_rtt``), the
event-loop lag (response time of ``GET /v1/queues/<q>`` on the control
API every 200 ms, against the same before any call), frames lost inside
the box (from the legs' counters in ``GET /v1/calls`` at both ends of the
window: packets a leg received that the bridged leg did not send, plus
packets a leg's RTP statistics count lost) and, from the call records the
switch writes, each leg's loss, jitter and MOS estimate. The ramp stops
after the first step that fails the bar of issue 6: a failed set-up,
0.1 % of frames lost, event-loop lag grown by 50 ms, or (read from the
call records after the run) a MOS estimate under 4.3.

Each step also runs the floor: ``benchmarks.capacity``'s bare UDP echo
(``build/loadgen echo``) of the same number of calls, so the JSON gives
the box's cost as a ratio to it, and the peer: rtpengine (userspace,
``benchmarks.rtpengine_peer``) relaying the same number of calls, recording
them when the box records, for ``peer_cpu_us_per_call_second`` and
``ratio_to_peer`` (``--no-peer`` skips it; so does a box without rtpengine).

``--codecs g711=70,g722=20,opus=10`` makes agents answer in G.722 or Opus (each
codec's agents are a SIPp UAS of their own, their extensions allowed only that
codec) while the trunk stays G.711, so the box transcodes; per step the JSON
gives the negotiated mix and quality per agent codec. ``--jitter-ms``,
``--loss-pct`` and ``--reorder-pct`` put ``benchmarks.impair``'s relay between
the box and the agents' echo. Late, lost and concealed frames inside the box
come from the switch's jitter buffers (each call's legs in ``GET /v1/calls``,
over the calls up at both ends of the window). ``--attach``
measures a running appliance through its control API instead of starting one.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import csv
import http.client
import importlib.util
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import core
from appliance.calllog.service import CallLog
from appliance.calls.legs import JITTER_COUNTERS
from appliance.config import open_store
from appliance.ivr.prompts import generate_prompts
from appliance.settings import Settings as ApplianceSettings
from benchmarks import capacity, plot_capacity, rtpengine_peer
from benchmarks.impair import Impairment
from benchmarks.processes import cpu_seconds, raise_file_limit, run_queue_wait_s
from benchmarks.run import commit, provenance
from benchmarks.sip_load import (
    HOST,
    PASSWORD,
    SCENARIOS,
    SIPP_CPU,
    SWITCH_CPU,
    BenchmarkError,
    RunningSwitch,
    Settings,
    callee_phone,
    final_stats,
    first_error,
    free_udp_and_tcp_port,
    running_switch,
    sipp_command,
)

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "127.0.0.3"
NUMBER = "4008009000"
QUEUE = "load"
FIRST_AGENT = 60000
STEPS = (25, 50, 100, 200, 300, 400, 500, 750, 1000, 1250, 1500)
QUICK_STEPS = (5, 10)
PAYLOAD_TYPES = {"PCMA": 8, "PCMU": 0}
# What an agent answers with, per codec of the mix: payload type, rtpmap, fmtp.
ANSWER_SDP: dict[str, tuple[int, str, str]] = {
    "PCMA": (8, "PCMA/8000", ""),
    "PCMU": (0, "PCMU/8000", ""),
    "G722": (9, "G722/8000", ""),
    "opus": (111, "opus/48000/2", "useinbandfec=1"),
}
CODEC_ALIASES = {
    "g711": "PCMA", "pcma": "PCMA", "g711a": "PCMA", "pcmu": "PCMU", "g711u": "PCMU",
    "g722": "G722", "opus": "opus",
}  # fmt: skip
G711 = frozenset({"PCMA", "PCMU"})
# The bar of issue 6.
MAX_LOST_PCT = 0.1
MIN_MOS = 4.3
MAX_LAG_GROWTH_MS = 50.0
LAG_PROBE_S = 0.2
SETTLE_S = 2.0
API_TIMEOUT_S = 30.0
PLAIN_EVERY_S = 5.0
# Calls outlive the window by this much, so a slow sample at its end still finds them up.
HOLD_MARGIN_S = 5.0
# With calls coming and going (--call-seconds), the share of N that must be talking.
FULL_SHARE = 0.95
# The agents' SIPp echoes every agent's RTP through one socket: with the
# default 208 KB of receive buffer it dropped bursts of the box's sends (ss
# counted 95,000-620,000 drops in a 500-call run), which came back to the
# box's agent legs as gaps and counted as frames lost inside the box (0.15-
# 0.21 % in two runs of three). SIPp's -rtp_buffsize does not reach that socket.
ECHO_BUFFER_BYTES = 4 * 1024 * 1024
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")
PROMPT_CACHE = ROOT / "build" / "bench-prompts"
# The switch's media ports: above the busiest ephemeral ports and clear of the tests'
# ranges (as benchmarks.capacity).
SWITCH_ENV = {"CALLBOX_RTP_PORT_MIN": "40000", "CALLBOX_RTP_PORT_MAX": "59999"}


def parse_mix(text: str) -> dict[str, int]:
    """``g711=70,g722=20,opus=10`` as the agents' answer codecs and their shares (per cent
    of the agents, summing to 100). Raises ``ValueError`` naming what is wrong."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        codec = CODEC_ALIASES.get(name.strip().lower())
        if codec is None:
            known = ", ".join(sorted(CODEC_ALIASES))
            raise ValueError(f"{name.strip()!r}: not a codec of the mix (one of {known})")
        if not share.strip().isdigit() or not 0 < int(share) <= 100:
            raise ValueError(f"{part.strip()!r}: the share must be a percentage 1..100")
        mix[codec] = mix.get(codec, 0) + int(share)
    if sum(mix.values()) != 100:
        raise ValueError(f"the shares add up to {sum(mix.values())}, not 100")
    return mix


def agent_codecs(agents: list[str], mix: dict[str, int]) -> dict[str, str]:
    """Each agent's answer codec: the mix's shares over every run of consecutive agents
    (the ACD takes the longest idle agents, a run of them, so each step gets the mix)."""
    given = dict.fromkeys(mix, 0)
    codecs = {}
    for i, agent in enumerate(agents):
        codec = max(mix, key=lambda c: mix[c] * (i + 1) / 100 - given[c])
        given[codec] += 1
        codecs[agent] = codec
    return codecs


def center_yaml(
    agents: list[str], codec: str, codecs: dict[str, str] | None = None, queue_s: float = 0.0
) -> str:
    """The configuration: trunk ``gateway`` (IP trust for 127.0.0.3, ``codec`` only),
    number ``NUMBER`` -> flow ``load`` (answer, queue ``load``), and one agent per extension,
    whose phone may use its codec of ``codecs`` only (PCMA by default): the switch offers it
    that codec alone, so its leg is made in it and the call transcodes when it is not
    the trunk's. The queue rings an agent for longer than the ``queue_s`` its phone waits
    before answering."""
    ring_timeout = max(20, math.ceil(queue_s) + 10)
    codecs = codecs or {}
    agent_lines = "".join(
        f'  - {{number: "{a}", name: load {a}, group: {QUEUE}, extension: "{a}"}}\n' for a in agents
    )
    extension_lines = "".join(
        f'  - {{number: "{a}", password: {PASSWORD.format(number=a)},'
        f" codecs: [{codecs.get(a, 'PCMA')}]}}\n"
        for a in agents
    )
    return (
        f"trunks:\n  - {{name: gateway, mode: ip, host: {GATEWAY}, allow: [{GATEWAY}/32],"
        f" options_interval: 0, codecs: [{codec}]}}\n"
        + "extensions:\n"
        + extension_lines
        + f'numbers:\n  - {{number: "{NUMBER}", flow: load, trunk: gateway}}\n'
        "flows:\n  - name: load\n    start: answer\n    nodes:\n"
        "      answer: {type: answer, next: queue}\n"
        f"      queue: {{type: queue, queue: {QUEUE}}}\n"
        f"queues:\n  - {{name: {QUEUE}, skill: {QUEUE}, ring_timeout: {ring_timeout}, wrapup: 0,"
        " max_wait: 300}\n"
        f"skills:\n  - {{name: {QUEUE}}}\n"
        "agents:\n" + agent_lines
    )


def caller_scenario(path: Path, codec: str) -> Path:
    """The trunk caller: INVITE (set-up time measured to the 200), ACK, its RTP stream for
    the call's duration (``-d``), BYE."""
    pt = PAYLOAD_TYPES[codec]
    audio = f"tone.{codec.lower()}"
    write_tone(path.parent / audio, codec)
    path.write_text(f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="trunk caller (load)">
  <send retrans="500" start_rtd="1"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1380013[call_number]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=gw 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP {pt}
a=rtpmap:{pt} {codec}/8000
a=ptime:20
a=sendrecv
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" rtd="1"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1380013[call_number]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <nop><action><exec rtp_stream="{audio},-1,{pt}"/></action></nop>
  <pause/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1380013[call_number]@[local_ip]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
""")
    return path


def agent_scenario(
    path: Path, codec: str, relay_port: int | None, answer_after_s: float = 0.0
) -> Path:
    """The agents' UAS scenario (``benchmarks/sipp/call_uas.xml``) answering in ``codec``; with
    ``relay_port``, its SDP names the impairing relay on loopback instead of SIPp's echo; with
    ``answer_after_s``, the phone rings that long before it answers (the caller waits in the
    queue, hearing its music, meanwhile)."""
    pt, rtpmap, fmtp = ANSWER_SDP[codec]
    media = f"m=audio [media_port] RTP/AVP {pt} 101\na=rtpmap:{pt} {rtpmap}\n" + (
        f"a=fmtp:{pt} {fmtp}\n" if fmtp else ""
    )
    text = (SCENARIOS / "call_uas.xml").read_text(encoding="ascii")
    pcma = "m=audio [media_port] RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\n"
    if pcma not in text:
        raise BenchmarkError("benchmarks/sipp/call_uas.xml no longer answers PCMA as expected")
    text = text.replace(pcma, media)
    if answer_after_s > 0:
        answer = '  <send retrans="500">'
        if text.count(answer) != 1:
            raise BenchmarkError("benchmarks/sipp/call_uas.xml no longer sends one 200 OK")
        pause = f'  <pause milliseconds="{round(answer_after_s * 1000)}"/>\n\n'
        text = text.replace(answer, pause + answer)
    if relay_port is not None:
        text = text.replace("c=IN IP[media_ip_type] [media_ip]", f"c=IN IP4 {HOST}")
        text = text.replace("m=audio [media_port]", f"m=audio {relay_port}")
    path.write_text(text, encoding="ascii")
    return path


def write_tone(path: Path, codec: str) -> None:
    """One second of a 1 kHz tone at -10 dBFS in ``codec`` (raw G.711, as rtp_stream reads)."""
    samples = array.array(
        "h", (round(10362 * math.sin(2 * math.pi * 1000 * n / 8000)) for n in range(8000))
    )
    encoder, pcm = core.Encoder(codec), samples.tobytes()
    frame = 2 * 160
    path.write_bytes(
        b"".join(encoder.encode(pcm[i : i + frame]) for i in range(0, len(pcm), frame))
    )


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the switch's unix control socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("switch", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a TCP address."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class ControlApi:
    """The switch's control API: on loopback TCP (a port) or its unix socket (a path)."""

    def __init__(self, where: int | Path, queue: str = QUEUE) -> None:
        self.where = where
        self.queue = queue

    def request(self, method: str, path: str) -> Any:
        """One request; its JSON answer. Raises ``OSError`` when the switch does not answer,
        ``BenchmarkError`` when it answers with an error."""
        connection = (
            UnixHTTPConnection(str(self.where), API_TIMEOUT_S)
            if isinstance(self.where, Path)
            else http.client.HTTPConnection(HOST, self.where, timeout=API_TIMEOUT_S)
        )
        try:
            connection.request(method, "/v1" + path, body=b"" if method == "POST" else None)
            response = connection.getresponse()
            body = json.loads(response.read())
        except (http.client.HTTPException, ValueError) as error:
            raise OSError(f"the control API's answer to {method} {path}: {error}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise BenchmarkError(f"{method} /v1{path}: {response.status} {body}")
        return body

    def response_ms(self) -> float:
        """How long a cheap request (one queue's status) takes: the event loop's lag, seen
        from outside."""
        started = time.perf_counter()
        self.request("GET", f"/queues/{self.queue}")
        return (time.perf_counter() - started) * 1000


class LagProbe:
    """Samples the control API's response time every ``LAG_PROBE_S`` in a thread."""

    def __init__(self, api: ControlApi) -> None:
        self.api = api
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(LAG_PROBE_S):
            self.samples.append(self.api.response_ms())


def percentile(values: list[float], pct: float) -> float | None:
    """The ``pct`` percentile of ``values`` (nearest rank), or None."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 2)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


Legs = dict[str, dict[str, Any]]


def leg_counters(api: ControlApi) -> dict[str, Legs]:
    """Per talking call, each leg's counters (``GET /v1/calls``: codec, received, sent, lost,
    MOS, jitter buffer)."""
    return {
        call["id"]: call["legs"]
        for call in api.request("GET", "/calls")["calls"]
        if call.get("state") == "talking" and {"caller", "agent"} <= set(call.get("legs", {}))
    }


def calls_talking(api: ControlApi) -> int:
    """Calls talking to an agent (``GET /v1/calls?legs=false``: states only, no leg
    statistics)."""
    calls = api.request("GET", "/calls?legs=false")["calls"]
    return sum(call.get("state") == "talking" and call.get("agent") is not None for call in calls)


def call_lost_inside(legs0: Legs, legs1: Legs) -> tuple[int, int]:
    """Frames one call lost inside the box between two samples, and frames it received.

    Lost: what each leg's RTP statistics count lost (on loopback, datagrams its socket
    dropped; with an impairing relay also what the relay dropped) and, on a relayed call,
    what one leg received and the bridged leg did not send on. A transcoded call sends
    from its jitter buffer on the 20 ms tick, so what it holds at either end of the window
    is not loss: there the buffers' late frames (``late_pct``) count instead.
    """
    lost = received = 0
    relayed = legs1["caller"]["codec"] == legs1["agent"]["codec"]

    def delta(leg: str, field: str) -> int:
        return int(legs1[leg][field]) - int(legs0[leg][field])

    for inbound, outbound in (("caller", "agent"), ("agent", "caller")):
        came = delta(inbound, "received")
        received += came
        lost += max(0, delta(inbound, "lost"))
        if relayed:
            lost += max(0, came - delta(outbound, "sent"))
    return lost, received


def lost_inside(before: dict[str, Legs], after: dict[str, Legs]) -> tuple[int, int]:
    """Frames lost inside the box between two samples, and frames the box received."""
    lost = received = 0
    for call_id in before.keys() & after.keys():
        call_lost, call_received = call_lost_inside(before[call_id], after[call_id])
        lost += call_lost
        received += call_received
    return lost, received


def buffer_delta(legs0: Legs, legs1: Legs) -> dict[str, int]:
    """The jitter-buffer counters of a call's legs summed, between two samples."""
    total = dict.fromkeys(JITTER_COUNTERS, 0)
    for leg in ("caller", "agent"):
        first, last = legs0[leg]["jitter_buffer"], legs1[leg]["jitter_buffer"]
        if first is not None and last is not None:
            for key in JITTER_COUNTERS:
                total[key] += last[key] - first[key]
    return total


def buffer_figures(counters: dict[str, int]) -> dict[str, Any]:
    """Late, lost and concealed frames of jitter buffers, and their shares in per cent."""
    expected = counters["received"] + counters["lost"]
    ticks = counters["played"] + counters["concealed"]

    def pct(count: int, of: int) -> float | None:
        return round(100 * count / of, 4) if of else None

    return {
        "frames": counters["received"],
        "late": counters["late"],
        "lost": counters["lost"],
        "concealed": counters["concealed"],
        "late_pct": pct(counters["late"], counters["received"]),
        "lost_pct": pct(counters["lost"], expected),
        "concealed_pct": pct(counters["concealed"], ticks),
    }


def media_window(
    before: dict[str, Legs], after: dict[str, Legs], media: dict[str, Any]
) -> dict[str, Any]:
    """What the box's jitter buffers did in the window: their counters summed over the calls
    up at both of its ends (``GET /v1/media/stats`` sums the live calls, so a call that
    ended inside the window took its counters out of the second sum, which could then come
    out below the first), with the legs and least MOS of ``media``, taken at its end."""
    total: Counter[str] = Counter()
    for call_id in before.keys() & after.keys():
        total.update(buffer_delta(before[call_id], after[call_id]))
    counters = {key: total[key] for key in JITTER_COUNTERS}
    return {
        "legs_with_jitter_buffer": media["legs_with_jitter_buffer"],
        **buffer_figures(counters),
        "mos_min": media["mos_min"],
    }


def quality_by_codec(
    before: dict[str, Legs], after: dict[str, Legs], dropped: dict[str, int]
) -> dict[str, Any]:
    """Per agent codec (the caller's trunk side is the same for all): calls, frames lost
    inside the box (less what the network ``dropped`` on the way in, per codec), the jitter
    buffers' late, lost and concealed frames, the legs' least MOS at the window's end."""
    groups: dict[str, dict[str, Any]] = {}
    for call_id in before.keys() & after.keys():
        legs0, legs1 = before[call_id], after[call_id]
        group = groups.setdefault(
            legs1["agent"]["codec"],
            {"calls": 0, "lost": 0, "received": 0, "mos": [], "buffer": Counter[str]()},
        )
        lost, received = call_lost_inside(legs0, legs1)
        group["calls"] += 1
        group["lost"] += lost
        group["received"] += received
        group["mos"] += [legs1[leg]["mos"] for leg in ("caller", "agent")]
        group["buffer"].update(buffer_delta(legs0, legs1))
    return {
        codec: {
            "calls": g["calls"],
            "frames_received": g["received"],
            "lost_pct": (
                round(100 * max(0, g["lost"] - dropped.get(codec, 0)) / g["received"], 4)
                if g["received"]
                else None
            ),
            "jitter_buffer": buffer_figures({k: g["buffer"][k] for k in JITTER_COUNTERS}),
            "mos_min": min(g["mos"]),
        }
        for codec, g in sorted(groups.items())
    }


def setup_latencies_ms(rundir: Path) -> list[float]:
    """Every call's INVITE-to-200 time from SIPp's ``-trace_rtt`` file."""
    values: list[float] = []
    for path in rundir.glob("*_rtt.csv"):
        with path.open(encoding="ascii", errors="replace") as handle:
            for row in csv.reader(handle, delimiter=";"):
                try:
                    values.append(float(row[1]))
                except (IndexError, ValueError):
                    continue  # the header
    return values


@dataclass(frozen=True)
class Placing:
    """How the callers' SIPp places a step's calls: ``total`` in all, at most ``limit`` at
    once, ``rate`` new ones every ``period_ms``, each ``hold_ms`` long from its answer."""

    total: int
    limit: int
    rate: int
    period_ms: int
    hold_ms: int


@contextmanager
def callers(
    switch: RunningSwitch, scenario: Path, placing: Placing, number: str
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """SIPp at the trunk's address placing calls to ``number`` as ``placing`` says, in a
    folder of its own (where it writes its statistics and ``sipp.out``)."""
    rundir = Path(tempfile.mkdtemp(prefix="sipp-callers-", dir=switch.workdir))
    for source in scenario.parent.glob("tone.*"):
        shutil.copy(source, rundir)
    shutil.copy(scenario, rundir)
    command = sipp_command(
        switch, scenario.name, free_udp_and_tcp_port(), "-s", number,
        "-m", str(placing.total), "-l", str(placing.limit),
        "-r", str(placing.rate), "-rp", str(placing.period_ms), "-d", str(placing.hold_ms),
        "-trace_rtt", "-rtt_freq", "1",
        "-timeout", str((placing.hold_ms + placing.total * placing.period_ms // placing.rate)
                        // 1000 + 120),
        # rtp_stream's ports count up from -mp: a base of its own per run, below the
        # ephemeral range, where another SIPp left at 127.0.0.3 is unlikely.
        "-mp", str(random.randrange(10000, 28000, 2)),
    )  # fmt: skip
    command[command.index("-sf") + 1] = scenario.name
    command[command.index("-i") + 1] = GATEWAY
    with (rundir / "sipp.out").open("w") as out:
        process = subprocess.Popen(
            command, cwd=rundir, stdout=out, stderr=subprocess.STDOUT, text=True,
            preexec_fn=switch.settings.pin(switch.settings.sipp_cpus),
        )  # fmt: skip
    try:
        yield process, rundir
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=60)


def wait_until(check: Callable[[], bool], seconds: float, interval_s: float = 0.1) -> bool:
    """Poll ``check`` every ``interval_s`` until true or ``seconds`` pass; whether it
    became true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return False


@dataclass
class AgentGroup:
    """The agents that answer in one codec: one SIPp UAS of their own, on its own ports."""

    codec: str
    extensions: list[str]
    port: int
    media_port: int
    """Where its ``-rtp_echo`` listens."""
    scenario: Path | None = None


class ImpairingRelay:
    """``benchmarks.impair`` in a process of its own (on the generator's CPUs)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise BenchmarkError("the impairing relay did not start")
        self.ports: list[int] = json.loads(line)["ports"]

    def stats(self) -> dict[str, Any]:
        """Its counters so far."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        counters: dict[str, Any] = json.loads(self.process.stdout.readline())
        return counters


@contextmanager
def impairing_relay(
    echo_ports: list[int], impairment: Impairment, settings: Settings, seed: int
) -> Iterator[ImpairingRelay]:
    """The relay between the box and each agent group's echo, impairing what enters the box."""
    command = [
        sys.executable, "-m", "benchmarks.impair", "--jitter-ms", str(impairment.jitter_ms),
        "--loss-pct", str(impairment.loss_pct), "--reorder-pct", str(impairment.reorder_pct),
        "--seed", str(seed), *(f"--echo-port={port}" for port in echo_ports),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=settings.pin(settings.sipp_cpus),
    )  # fmt: skip
    with process:  # closes its pipes
        try:
            yield ImpairingRelay(process)
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def network_window(
    before: dict[str, Any], after: dict[str, Any], window_s: float
) -> dict[str, Any]:
    """What the relay did to the RTP entering the box between two samples."""
    delayed = after["delayed"] - before["delayed"]
    return {
        "to_box": after["to_box"] - before["to_box"],
        "dropped": after["dropped"] - before["dropped"],
        "reordered": after["reordered"] - before["reordered"],
        "delay_ms_mean": (
            round((after["delay_ms_total"] - before["delay_ms_total"]) / delayed, 2)
            if delayed
            else 0.0
        ),
        "relay_cpu_pct": round(100 * (after["cpu_s"] - before["cpu_s"]) / window_s, 1),
    }


class Progress:
    """The live display on stderr: one line rewritten in place on a terminal; elsewhere
    plain lines, at most one every ``PLAIN_EVERY_S`` (and every step's result)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self.so_far = ""
        """The quality so far: the last step's verdict."""

    def update(self, text: str) -> None:
        """Show where the step is now."""
        line = f"{text}{self.so_far}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
        elif time.monotonic() - self._last >= PLAIN_EVERY_S:
            self._last = time.monotonic()
            print(line, file=self.stream, flush=True)

    def line(self, text: str) -> None:
        """A line that stays (a step's result)."""
        print(("\r\x1b[K" if self.tty else "") + text, file=self.stream, flush=True)


class Run:
    """One ramp against one switch.

    ``agents`` maps each agent number to its extension (the same in the generated
    configuration); ``codecs`` each agent to the codec it answers in.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        switch: RunningSwitch,
        api: ControlApi,
        agents: dict[str, str],
        codecs: dict[str, str],
    ) -> None:
        self.args = args
        self.switch = switch
        self.api = api
        self.agents = agents
        self.progress = Progress()
        self.scenario = caller_scenario(switch.workdir / "caller.xml", args.codec)
        self.idle_lag_ms = percentile([api.response_ms() for _ in range(20)], 50) or 0.0
        self.rss_idle = rss_bytes(switch.pid)
        # The agents' phones keep their ports from step to step (see callee_phone).
        self.groups = [
            AgentGroup(
                codec,
                [agents[a] for a in agents if codecs[a] == codec],
                free_udp_and_tcp_port(),
                free_udp_and_tcp_port(),
            )
            for codec in dict.fromkeys(codecs.values())
        ]
        self.relay: ImpairingRelay | None = None

    def prepare(self, relay: ImpairingRelay | None) -> None:
        """Write each group's scenario, its SDP naming ``relay`` when there is one."""
        self.relay = relay
        for i, group in enumerate(self.groups):
            group.scenario = agent_scenario(
                self.switch.workdir / f"agents-{group.codec}.xml",
                group.codec,
                relay.ports[i] if relay is not None else None,
                self.args.queue_seconds,
            )

    def step(self, calls: int) -> dict[str, Any]:
        """N calls talking to agents at once, measured ``hold`` seconds.

        By default the N come up at ``rate`` and are held through the window. With
        ``--call-seconds D`` they come and go: calls arrive N every D seconds and talk
        D seconds each, so N talk at once on average while calls start and end all
        through the window. Either way each caller first waits ``--queue-seconds`` in
        the queue, hearing its music, before the agent's phone answers.
        """
        args, pid, api = self.args, self.switch.pid, self.api
        queue_s, talk_s = args.queue_seconds, args.call_seconds
        churn = talk_s is not None
        arrivals_per_s: float | None = None  # with calls coming and going
        if talk_s is not None:
            # Steady once the first calls have ended: as many end as begin.
            ramp_s = queue_s + talk_s
            total = math.ceil(calls * (ramp_s + SETTLE_S + args.hold + HOLD_MARGIN_S) / talk_s)
            # The caller's time from the IVR's answer: the queue's wait, then the talk.
            placing = Placing(total, total, calls, round(talk_s * 1000), round(ramp_s * 1000))
            arrivals_per_s = round(calls / talk_s, 2)
        else:
            ramp_s = calls / args.rate + queue_s
            hold_ms = int((ramp_s + SETTLE_S + args.hold + HOLD_MARGIN_S) * 1000)
            placing = Placing(calls, calls, args.rate, 1000, hold_ms)
        started_wall = time.time()
        with ExitStack() as phones:
            for group in self.groups:
                phones.enter_context(
                    callee_phone(
                        self.switch, group.extensions, 1_000_000, "-rtp_echo",
                        "-mp", str(group.media_port), register_rate=300, port=group.port,
                        scenario=str(group.scenario),
                    )
                )  # fmt: skip
            sipp, rundir = phones.enter_context(
                callers(self.switch, self.scenario, placing, args.number)
            )
            started = time.monotonic()

            def all_up() -> bool:
                up = calls_talking(api)
                self.progress.update(f"{calls:5d} calls: {up:5d} up")
                return up >= calls and not churn

            # Polled without the legs' figures, twice a second: the full listing
            # reads every leg's statistics, the box's own work, not the calls'.
            up = wait_until(all_up, ramp_s + (SETTLE_S if churn else 30), interval_s=0.5)
            up_s = time.monotonic() - started
            if churn:
                up = calls_talking(api) >= FULL_SHARE * calls
            else:
                time.sleep(max(0.0, SETTLE_S - (up_s - ramp_s)))
            talking: list[int] = []
            with LagProbe(api) as probe:
                before = leg_counters(api)
                network0 = self.relay.stats() if self.relay is not None else None
                cpu0, wait0, t0 = cpu_seconds(pid), run_queue_wait_s(pid), time.monotonic()
                while (left := t0 + args.hold - time.monotonic()) > 0:
                    if churn:
                        talking.append(calls_talking(api))
                    up_now = talking[-1] if talking else len(before)
                    self.progress.update(
                        f"{calls:5d} calls: {up_now:5d} up, measuring, {left:4.0f} s left"
                    )
                    time.sleep(min(1.0, left))
                cpu1, wait1, t1 = cpu_seconds(pid), run_queue_wait_s(pid), time.monotonic()
                rss = rss_bytes(pid)
                network1 = self.relay.stats() if self.relay is not None else None
                after, media1 = leg_counters(api), api.request("GET", "/media/stats")
            sipp.wait(timeout=placing.hold_ms / 1000 + ramp_s + args.hold + 120)
        stat_files = list(rundir.glob("*_.csv"))
        if not stat_files:
            out = (rundir / "sipp.out").read_text(errors="replace")
            raise BenchmarkError(f"the callers' SIPp wrote no statistics: {out[-1500:]}")
        stats = final_stats(stat_files[0])
        latencies = setup_latencies_ms(rundir)
        lost, received = lost_inside(before, after)
        window = t1 - t0
        network, dropped = None, {}
        if network0 is not None and network1 is not None and self.relay is not None:
            network = network_window(network0, network1, window)
            # What the network dropped never reached the box: not the box's loss.
            lost = max(0, lost - network["dropped"])
            per_port = {
                int(port): count - network0["dropped_per_port"].get(port, 0)
                for port, count in network1["dropped_per_port"].items()
            }
            dropped = {
                group.codec: per_port.get(port, 0)
                for group, port in zip(self.groups, self.relay.ports, strict=True)
            }
        inside = media_window(before, after, media1)
        by_codec = quality_by_codec(before, after, dropped)
        failed = int(stats.get("FailedCall(C)", "0"))
        successful = int(stats.get("SuccessfulCall(C)", "0"))
        # Calls talking in the window: N when held; coming and going, their mean.
        present = [len(before), *talking, len(after)]
        mean_calls = sum(present) / len(present) if churn else calls
        held_per_s = round(calls / up_s, 1) if up and up_s else None
        per_second = arrivals_per_s if churn else held_per_s
        row: dict[str, Any] = {
            "calls": calls,
            "calls_up": len(after),
            "calls_talking_mean": round(mean_calls, 1),
            "coming_and_going": churn,
            "placed": placing.total,
            "all_up": up,
            "calls_up_after_s": round(up_s, 2),
            "calls_per_second": per_second,
            "successful": successful,
            "failed": failed + (placing.total - successful),
            "retransmissions": int(stats.get("Retransmissions(C)", "0")),
            "window_s": round(window, 2),
            "switch_cpu_pct": round(100 * (cpu1 - cpu0) / window, 1),
            "switch_run_queue_wait_pct": round(100 * (wait1 - wait0) / window, 1),
            "cpu_us_per_call_second": round((cpu1 - cpu0) * 1e6 / (mean_calls * window), 1),
            "rss_mb": round(rss / 2**20, 1),
            "memory_kb_per_call": round((rss - self.rss_idle) / 1024 / mean_calls, 1),
            "frames_received": received,
            "frames_lost_inside": lost,
            "lost_pct": round(100 * lost / received, 4) if received else 100.0,
            "late_pct": inside["late_pct"] or 0.0,
            "inside": inside,
            "codec_mix": dict(Counter(legs["agent"]["codec"] for legs in after.values())),
            "by_codec": by_codec,
            "mos_min": min((q["mos_min"] for q in by_codec.values()), default=None),
            "network": network,
            "setup_latency_ms_p50": percentile(latencies, 50),
            "setup_latency_ms_p90": percentile(latencies, 90),
            "setup_latency_ms_p99": percentile(latencies, 99),
            "lag_ms_idle": self.idle_lag_ms,
            "lag_ms_p50": percentile(probe.samples, 50),
            "lag_ms_p90": percentile(probe.samples, 90),
            "lag_ms_max": percentile(probe.samples, 100),
            "started": started_wall,
            "ended": time.time(),
        }
        if sipp.returncode != 0 or row["failed"]:
            row["errors"] = first_error(rundir)[:600]
        shutil.rmtree(rundir, ignore_errors=True)
        return row

    def ready_agents(self) -> None:
        """Every agent logged in and ready, through the control API (a step that failed may
        have left some not ready: no answer, unreachable)."""
        states = {a["number"]: a["state"] for a in self.api.request("GET", "/agents")["agents"]}
        for agent in self.agents:
            if states.get(agent) == "logged_out":
                self.api.request("POST", f"/agents/{agent}/login")
            elif states.get(agent) == "not_ready":
                self.api.request("POST", f"/agents/{agent}/ready")


def live_failure(row: dict[str, Any]) -> str | None:
    """Why a step fails the bar on what was measured live, or None."""
    if row["failed"]:
        return f"{row['failed']} failed set-ups ({row['calls_up']} of {row['calls']} up)"
    if row.get("coming_and_going"):
        if row["calls_talking_mean"] < FULL_SHARE * row["calls"]:
            return f"{row['calls_talking_mean']} of {row['calls']} calls talking on average"
    elif not row["all_up"]:
        return f"only {row['calls_up']} of {row['calls']} calls up"
    elif row["calls_up"] < row["calls"]:
        return f"only {row['calls_up']} of {row['calls']} calls still up at the window's end"
    lost_or_late = row["lost_pct"] + row["late_pct"]
    if lost_or_late >= MAX_LOST_PCT:
        return (
            f"{lost_or_late:.4f}% of frames lost or late inside the box ({row['lost_pct']}% "
            f"lost, {row['late_pct']}% late in its jitter buffers)"
        )
    # The bar's MOS is on G.711 calls (wideband and Opus legs have E-model scores of their own).
    g711 = [q["mos_min"] for codec, q in row["by_codec"].items() if codec in G711]
    if g711 and min(g711) < MIN_MOS:
        return f"MOS estimate {min(g711)} under {MIN_MOS} on a G.711 call"
    # The 90th percentile: one slow probe is a pause (a full garbage collection, another
    # process on the CPU); growth is most probes slow.
    lag = row["lag_ms_p90"]
    if lag is not None and lag - row["lag_ms_idle"] > MAX_LAG_GROWTH_MS:
        return f"event-loop lag grew to {lag} ms (90th percentile)"
    return None


def add_call_records(data_dir: Path, rows: list[dict[str, Any]], g711_only: bool) -> None:
    """Each step's per-leg loss, jitter and MOS from the call records the switch wrote
    (read once the switch has stopped), and the bar's MOS check when every call was G.711
    (records do not name their codec)."""
    store = open_store(ApplianceSettings(data_dir=str(data_dir)))
    try:
        for row in rows:
            records = asyncio.run(CallLog(store).calls(row["started"], row["ended"]))
            legs = [leg for record in records for leg in record.legs]
            answered = [r for r in records if r.outcome.value == "answered"]
            # The flow answers the caller at once; the agent answers after the queue's wait.
            to_agent = [
                (r.answered_us - r.started_us) / 1000 + r.wait_s * 1000
                for r in answered
                if r.answered_us is not None and r.wait_s is not None
            ]
            row["to_agent_ms_p50"] = percentile(to_agent, 50)
            row["to_agent_ms_p99"] = percentile(to_agent, 99)
            row["call_records"] = len(records)
            row["answered_records"] = len(answered)
            row["recorded"] = sum(1 for r in answered if r.recording)
            row["mos_min"] = min((leg.mos for leg in legs), default=None)
            row["mos_mean"] = round(statistics.fmean(leg.mos for leg in legs), 2) if legs else None
            row["leg_loss_pct_max"] = max((leg.loss_percent for leg in legs), default=None)
            row["leg_jitter_ms_max"] = max((leg.jitter_ms for leg in legs), default=None)
            mos = row["mos_min"]
            if g711_only and row.get("fails") is None and mos is not None and mos < MIN_MOS:
                row["fails"] = f"MOS estimate {row['mos_min']} under {MIN_MOS}"
    finally:
        store.close()


def _relay_settings(args: argparse.Namespace) -> capacity.Settings:
    """How the floor and the peer carry a step's calls: ``benchmarks.capacity``'s generator."""
    return capacity.Settings(
        warmup_s=1.0, hold_s=args.hold, late_ms=20, record=False,
        phone_sockets="per-call", nice=args.nice, realtime=args.realtime,
    )  # fmt: skip


def _relay_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("cpu_us_per_call_second", "box_cpu_pct", "lost_or_late_pct")}


def floor_step(args: argparse.Namespace, calls: int) -> dict[str, Any]:
    """The bare UDP echo of ``calls`` calls (``benchmarks.capacity``'s floor)."""
    return _relay_row(capacity.run_step(_relay_settings(args), "echo", calls))


def peer_step(args: argparse.Namespace, calls: int) -> dict[str, Any]:
    """rtpengine relaying ``calls`` calls of the same streams (recording them as the box does)."""
    row = rtpengine_peer.run_peer_step(_relay_settings(args), calls, record=args.record)
    return _relay_row(row)


def progress(row: dict[str, Any]) -> str:
    """One step's line for the live display."""
    floor = row.get("floor", {}).get("cpu_us_per_call_second")
    peer = row.get("peer", {}).get("cpu_us_per_call_second")
    return (
        f"{row['calls']:5d} calls: {row['calls_up']:5d} up in {row['calls_up_after_s']:5.1f} s, "
        f"switch {row['switch_cpu_pct']:5.1f}% CPU, {row['cpu_us_per_call_second']:7.1f} us/call-s"
        + (f" (floor {floor:6.1f})" if floor is not None else "")
        + (f" (rtpengine {peer:6.1f})" if peer is not None else "")
        + f", lost {row['lost_pct']:.3f}% late {row['late_pct']:.3f}%"
        f" concealed {row['inside']['concealed_pct']}%,"
        f" set-up p50/p99 {row['setup_latency_ms_p50']}/"
        f"{row['setup_latency_ms_p99']} ms, lag max {row['lag_ms_max']} ms, "
        f"{row['memory_kb_per_call']} KB/call"
        + (f"  FAIL: {row['fails']}" if row.get("fails") else "")
    )


def summary(rows: list[dict[str, Any]], codec: str, record: bool | None) -> dict[str, Any]:
    """The largest step that passed the bar and what a call cost there (``record`` None:
    attached to an appliance whose configuration decides)."""
    # The steps before the first that failed (with --keep-going more may follow it).
    first_failed = next((i for i, row in enumerate(rows) if row.get("fails")), len(rows))
    passed = rows[:first_failed]
    best = passed[-1] if passed else None
    last = rows[first_failed] if first_failed < len(rows) else (rows[-1] if rows else None)

    def at_best(key: str) -> Any:
        return best[key] if best else None

    floor = best.get("floor", {}).get("cpu_us_per_call_second") if best else None
    peer = best.get("peer", {}).get("cpu_us_per_call_second") if best else None
    cost = at_best("cpu_us_per_call_second")
    if last is None or not last.get("fails"):
        limited = "none: every step passed"
    else:
        # The wait is not only other work's: the switch's own threads (event loop, media
        # worker, recording writer) share its CPU and wait for each other.
        limited = (
            f"the box at {last['calls']} calls: {last['fails']} (the switch's threads waited "
            f"for their CPU {last['switch_run_queue_wait_pct']}% of the window)"
        )
    return {
        "max_concurrent_calls": at_best("calls") or 0,
        "codec": codec,
        "recording": record,
        "cpu_us_per_call_second": cost,
        "floor_cpu_us_per_call_second": floor,
        "ratio_to_floor": round(cost / floor, 2) if cost and floor else None,
        "peer_cpu_us_per_call_second": peer,
        "ratio_to_peer": round(cost / peer, 2) if cost and peer else None,
        "memory_kb_per_call": at_best("memory_kb_per_call"),
        "setup_latency_ms_p50": at_best("setup_latency_ms_p50"),
        "setup_latency_ms_p99": at_best("setup_latency_ms_p99"),
        "to_agent_ms_p50": at_best("to_agent_ms_p50"),
        "to_agent_ms_p99": at_best("to_agent_ms_p99"),
        "calls_per_second": max((r["calls_per_second"] or 0 for r in passed), default=None),
        "mos_min": at_best("mos_min"),
        "lost_pct": at_best("lost_pct"),
        "late_pct": at_best("late_pct"),
        "concealed_pct": best["inside"]["concealed_pct"] if best else None,
        "by_codec": at_best("by_codec"),
        "lag_ms_max": at_best("lag_ms_max"),
        "limited_by": limited,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The summary table printed at the end, and one of quality per agent codec."""
    head = (
        "| calls | up | calls/s | switch CPU % | us/call-s | floor us/call-s "
        "| rtpengine us/call-s | KB/call | set-up p50 ms | p99 ms | lost % | late % "
        "| concealed % | MOS min | lag max ms | verdict |"
    )
    lines = [head, "|" + "---:|" * 15 + "---|"]
    for r in rows:
        floor = r.get("floor", {}).get("cpu_us_per_call_second")
        peer = r.get("peer", {}).get("cpu_us_per_call_second")
        lines.append(
            f"| {r['calls']} | {r['calls_up']} | {r['calls_per_second']} | {r['switch_cpu_pct']} "
            f"| {r['cpu_us_per_call_second']} | {floor} | {peer} | {r['memory_kb_per_call']} "
            f"| {r['setup_latency_ms_p50']} | {r['setup_latency_ms_p99']} | {r['lost_pct']} "
            f"| {r['late_pct']} | {r['inside']['concealed_pct']} | {r.get('mos_min')} "
            f"| {r['lag_ms_max']} | {r.get('fails') or 'pass'} |"
        )
    lines += [
        "",
        "| calls | agent codec | calls | lost % | late % | buffer lost % | concealed % | MOS min |",
        "|" + "---:|---|" + "---:|" * 6,
    ]
    for r in rows:
        for codec, q in r["by_codec"].items():
            buffer = q["jitter_buffer"]
            lines.append(
                f"| {r['calls']} | {codec} | {q['calls']} | {q['lost_pct']} | {buffer['late_pct']} "
                f"| {buffer['lost_pct']} | {buffer['concealed_pct']} | {q['mos_min']} |"
            )
    return "\n".join(lines)


@contextmanager
def prompts_cached(workdir: Path) -> Iterator[None]:
    """The built-in prompts, generated once into ``build/bench-prompts`` and linked into the
    switch's data folder, so a run does not wait for espeak-ng."""
    PROMPT_CACHE.mkdir(parents=True, exist_ok=True)
    generate_prompts(PROMPT_CACHE, "zh")
    (workdir / "var").mkdir(parents=True, exist_ok=True)
    (workdir / "var" / "prompts").symlink_to(PROMPT_CACHE)
    yield


@contextmanager
def echo_receive_buffers() -> Iterator[int]:
    """``net.core.rmem_default`` at ECHO_BUFFER_BYTES while the run lasts, when it is lower
    and may be written (root), so the agents' echo socket holds a burst of the box's sends;
    the value in effect is yielded, and the old one restored."""
    before = int(RMEM_DEFAULT.read_text())
    if before >= ECHO_BUFFER_BYTES:
        yield before
        return
    try:
        RMEM_DEFAULT.write_text(str(ECHO_BUFFER_BYTES))
    except OSError:
        yield before
        return
    try:
        yield ECHO_BUFFER_BYTES
    finally:
        RMEM_DEFAULT.write_text(str(before))


def agents_needed(args: argparse.Namespace) -> int:
    """Agents for the largest step: one per call, and with calls coming and going also
    those whose phones ring for the next calls (each agent is busy W + D seconds of every
    D), with a tenth more so that no caller waits for a free agent."""
    calls: int = max(args.steps)
    if args.call_seconds is None:
        return calls
    busy_share = 1 + float(args.queue_seconds) / float(args.call_seconds)
    return math.ceil(calls * busy_share * 1.1) + 2


def agent_numbers(args: argparse.Namespace) -> list[str]:
    """The numbers (and extensions) of the agents the benchmark configures."""
    return [str(FIRST_AGENT + i) for i in range(agents_needed(args))]


def generator_settings(args: argparse.Namespace) -> Settings:
    """SIPp's (and the switch's, when the benchmark starts it) CPUs and priority."""
    return Settings(
        args.hold, 0, 0, 0, args.nice, args.realtime,
        frozenset(args.appliance_cpus), frozenset(args.generator_cpus),
    )  # fmt: skip


def ramp(
    args: argparse.Namespace, switch: RunningSwitch, api: ControlApi, agents: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every step on ``switch`` (until one fails the bar, unless ``--keep-going``): the rows,
    and why the ramp was cut short, if it was."""
    codecs = agent_codecs(list(agents), args.mix)
    bench = Run(args, switch, api, agents, codecs)
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        relay = None
        if not args.impairment.none:
            echo_ports = [group.media_port for group in bench.groups]
            relay = stack.enter_context(
                impairing_relay(echo_ports, args.impairment, switch.settings, args.seed)
            )
        bench.prepare(relay)
        for calls in args.steps:
            try:
                bench.ready_agents()
                row = bench.step(calls)
            except (OSError, BenchmarkError, subprocess.TimeoutExpired) as exc:
                # An overloaded switch stops answering its control API in time.
                aborted = {"calls": calls, "error": f"{type(exc).__name__}: {exc}"[:600]}
                bench.progress.line(f"{calls:5d} calls: aborted: {aborted['error']}")
                return rows, aborted
            row["fails"] = live_failure(row)
            if args.floor:
                bench.progress.update(f"{calls:5d} calls: the echo floor")
                row["floor"] = floor_step(args, calls)
            if args.peer:
                bench.progress.update(f"{calls:5d} calls: rtpengine")
                row["peer"] = peer_step(args, calls)
            rows.append(row)
            bench.progress.line(progress(row))
            passed = [r["calls"] for r in rows if not r["fails"]]
            bench.progress.so_far = f"  (so far: {max(passed) if passed else 0} calls passed)"
            if row["fails"] and not args.keep_going:
                break
    return rows, None


def own_switch(
    args: argparse.Namespace, workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The ramp on a switch of the benchmark's own, with the generated configuration."""
    agents = agent_numbers(args)
    codecs = agent_codecs(agents, args.mix)
    control_port = free_udp_and_tcp_port()
    with (
        prompts_cached(workdir),
        running_switch(
            workdir, center_yaml(agents, args.codec, codecs, args.queue_seconds),
            generator_settings(args), None,
            extra_env=SWITCH_ENV | {
                "CALLBOX_CONTROL_TCP_PORT": str(control_port),
                "CALLBOX_IVR_RECORD_QUEUE_CALLS": "true" if args.record else "false",
            },
        ) as switch,
    ):  # fmt: skip
        api = ControlApi(control_port)
        if not wait_until(lambda: _answers(api), 30):
            raise BenchmarkError("the switch's control API did not answer")
        rows, aborted = ramp(args, switch, api, {a: a for a in agents})
    add_call_records(workdir / "var", rows, g711_only=set(args.mix) <= G711)
    return rows, aborted


def attached_switch(
    args: argparse.Namespace, workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The ramp on the running switch whose control API ``--attach`` names: its process, SIP
    address, queue and agents come from ``GET /v1/status``."""
    where: int | Path = int(args.attach) if args.attach.isdigit() else Path(args.attach)
    api = ControlApi(where)
    try:
        status = api.request("GET", "/status")
    except OSError as error:
        raise BenchmarkError(
            f"--attach {args.attach}: the control API does not answer: {error}"
        ) from None
    sip = re.search(r"(\d+\.\d+\.\d+\.\d+):(\d+)", status["listeners"]["sip"])
    if sip is None or sip.group(1) not in (HOST, "0.0.0.0"):
        raise BenchmarkError(
            f"--attach: the switch's SIP listens on {status['listeners']['sip']}, not on {HOST}"
        )
    queues = {q["name"]: q for q in status["queues"]}
    queue: str = args.queue or next(iter(queues), "")
    if queue not in queues:
        raise BenchmarkError(f"--attach: no queue {queue!r} (queues: {', '.join(queues)})")
    api.queue = queue
    members = {a for agents in queues[queue]["agents"].values() for a in agents}
    agents = {
        a["number"]: a["extension"]
        for a in sorted(status["agents"], key=lambda a: str(a["number"]))
        if a["number"] in members and a.get("extension")
    }
    if len(agents) < agents_needed(args):
        raise BenchmarkError(
            f"--attach: queue {queue} has {len(agents)} agents with an extension; the largest "
            f"step needs {agents_needed(args)} (callbox bench capacity --print-config)"
        )
    switch = RunningSwitch(
        int(status["pid"]), int(sip.group(2)), workdir, workdir / "none", generator_settings(args)
    )
    return ramp(args, switch, api, agents)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The ramp on one switch (started here, or the one ``--attach`` names); the JSON document."""
    workdir = Path(tempfile.mkdtemp(prefix="callbox-bench-capacity-"))
    # This process (its progress display, the lag probe, its reads of the API) is
    # the generator's side: left to the scheduler it ran on the appliance's CPU
    # too, taking the box's time and waiting behind its media worker for its own,
    # which the lag figure then counted as the box's. Every child sets its own CPUs.
    own_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, args.generator_cpus)
    benchmark_cpus = sorted(args.generator_cpus)
    try:
        with echo_receive_buffers() as rmem_default:
            rows, aborted = (
                attached_switch(args, workdir) if args.attach else own_switch(args, workdir)
            )
    finally:
        os.sched_setaffinity(0, own_cpus)  # called in-process (the tests): given back
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result = summary(rows, args.codec, None if args.attach else args.record)
    result["codec_mix"] = args.mix
    result["impairment"] = None if args.impairment.none else asdict(args.impairment)
    if aborted is not None and not any(row.get("fails") for row in rows):
        result["limited_by"] = f"the box at {aborted['calls']} calls: {aborted['error']}"
    return {
        "summary": result,
        "steps": rows,
        "aborted": aborted,
        "settings": {
            "steps": list(args.steps),
            "rate": args.rate if args.call_seconds is None else None,
            "call_seconds": args.call_seconds,
            "queue_seconds": args.queue_seconds,
            "hold_s": args.hold,
            "codec": args.codec,
            "codec_mix": args.mix,
            "impairment": {
                **asdict(args.impairment),
                "where": "RTP from the agents into the box (benchmarks/impair.py)",
                "seed": args.seed,
            },
            "attached": args.attach,
            "recording": (
                "as the attached appliance is configured"
                if args.attach
                else "on (every answered queue call, stereo WAV)"
                if args.record
                else "off"
            ),
            "appliance_cpus": None if args.attach else list(args.appliance_cpus),
            "generator_cpus": list(args.generator_cpus),
            "benchmark_cpus": benchmark_cpus,
            "media_workers": None if args.attach else 1,
            "socket_receive_buffer_default_bytes": rmem_default,
            "nice": args.nice,
            "realtime": args.realtime,
            "bar": {
                "failed_setups": 0,
                "lost_or_late_pct_below": MAX_LOST_PCT,
                "g711_mos_at_least": MIN_MOS,
                "lag_growth_ms_at_most": MAX_LAG_GROWTH_MS,
            },
        },
    }


def _answers(api: ControlApi) -> bool:
    try:
        api.request("GET", f"/queues/{QUEUE}")
    except OSError:
        return False
    return True


def parser() -> argparse.ArgumentParser:
    """The options of ``callbox bench capacity`` and ``python -m benchmarks.callcenter_load``."""
    steps = lambda s: tuple(int(n) for n in s.split(","))  # noqa: E731
    p = argparse.ArgumentParser(
        prog="callbox bench capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 5 and 10 calls, 4 s each")
    p.add_argument("--steps", type=steps, help="comma-separated concurrent calls per step")
    p.add_argument("--hold", type=float, help="seconds measured per step (default 10; quick 4)")
    p.add_argument("--rate", type=int, default=50, help="new calls per second (default 50)")
    p.add_argument(
        "--call-seconds", type=float, metavar="D",
        help="calls come and go: N every D seconds, each talking D seconds with its agent, "
        "so N talk at once on average while calls start and end through the window "
        "(default: N come up at --rate and are held)",
    )  # fmt: skip
    p.add_argument(
        "--queue-seconds", type=float, default=0.0, metavar="W",
        help="each caller waits W seconds in the queue, hearing its music, before the "
        "agent's phone answers (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--codec", choices=sorted(PAYLOAD_TYPES), default="PCMA",
        help="the trunk's codec (agents answer PCMA: PCMU transcodes)",
    )  # fmt: skip
    p.add_argument(
        "--keep-going", action="store_true", help="run every step, even after one fails the bar"
    )
    p.add_argument(
        "--record", action=argparse.BooleanOptionalAction, default=True,
        help="record every call (default), or bridge them unrecorded",
    )  # fmt: skip
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the echo floor")
    p.add_argument(
        "--peer", action=argparse.BooleanOptionalAction, default=True,
        help="also relay each step's calls through rtpengine (userspace, recording when the "
        "box records) and report its cost (default: on)",
    )  # fmt: skip
    p.add_argument(
        "--appliance-cpus", type=steps, default=(SWITCH_CPU,),
        help=f"CPUs the switch runs on (default {SWITCH_CPU})",
    )  # fmt: skip
    p.add_argument(
        "--generator-cpus", type=steps, default=(SIPP_CPU,),
        help=f"CPUs SIPp and the benchmark itself run on (default {SIPP_CPU}; "
        "the echo floor keeps 0 and 1)",
    )  # fmt: skip
    p.add_argument(
        "--codecs", default="g711=100", metavar="MIX",
        help="the agents' answer codecs and their shares, e.g. g711=70,g722=20,opus=10 (g711: "
        "PCMA; also pcmu, g722, opus); the trunk stays on --codec, so the box transcodes "
        "every call whose agent answers in another codec (default g711=100)",
    )  # fmt: skip
    p.add_argument(
        "--jitter-ms", type=float, default=0.0,
        help="delay each RTP packet from the agents into the box by a random 0..J ms",
    )  # fmt: skip
    p.add_argument("--loss-pct", type=float, default=0.0, help="drop this %% of those packets")
    p.add_argument(
        "--reorder-pct", type=float, default=0.0,
        help="hold this %% of those packets 25 ms longer, so the next overtakes them",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=2026, help="the impairment's random seed")
    p.add_argument(
        "--attach", metavar="CONTROL",
        help="measure a running appliance instead of starting one: its control socket's path "
        "(var/run/switch.sock) or its control TCP port on loopback (docs/benchmark.md says "
        "what it must be configured with; --print-config writes it)",
    )  # fmt: skip
    p.add_argument("--queue", help="with --attach: the queue its number's IVR sends calls to")
    p.add_argument(
        "--number", default=NUMBER, help=f"the number the callers dial (default {NUMBER})"
    )
    p.add_argument(
        "--print-config", action="store_true",
        help="print the configuration the benchmark gives its own switch (for --attach) and stop",
    )  # fmt: skip
    p.add_argument("--plot", type=Path, metavar="PNG", help="also draw the steps into this PNG")
    p.add_argument("--nice", type=int, default=-10, help="nice value of switch and SIPp")
    p.add_argument("--realtime", action="store_true", help="SCHED_FIFO for switch and SIPp")
    p.add_argument("--json", action="store_true", help="print the JSON document at the end")
    p.add_argument("--output", type=Path, help="also write the JSON document to this file")
    p.add_argument("--label", default="latest", help="key of this run under the file's runs")
    p.add_argument("--note", default="", help="a remark stored with the results")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the ramp, print the table (and the JSON), write the file."""
    p = parser()
    args = p.parse_args(argv)
    args.steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    args.hold = args.hold or (4.0 if args.quick else 10.0)
    if args.call_seconds is not None and not args.hold < args.call_seconds <= 3600:
        # Loss inside the box is counted over the calls up through the whole window.
        p.error(
            f"--call-seconds must be more than --hold ({args.hold:g}) and at most 3600: "
            f"got {args.call_seconds:g}"
        )
    if not 0 <= args.queue_seconds <= 600:
        p.error(f"--queue-seconds must be 0 to 600: got {args.queue_seconds}")
    try:
        args.mix = parse_mix(args.codecs)
        args.impairment = Impairment(args.jitter_ms, args.loss_pct, args.reorder_pct)
    except ValueError as error:
        p.error(str(error))
    if args.print_config:
        agents = agent_numbers(args)
        config = center_yaml(agents, args.codec, agent_codecs(agents, args.mix), args.queue_seconds)
        print(config, end="")
        return 0
    # Under impairment the bar measures the network as much as the box: show every step.
    args.keep_going = args.keep_going or not args.impairment.none
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        p.error("--plot needs matplotlib: pip install .[bench]")
    if shutil.which("sipp") is None:
        p.error("SIPp is missing (Debian package sip-tester)")
    if len(os.sched_getaffinity(0)) < 2:
        p.error("needs two CPUs: one for the switch, one for SIPp")
    if args.peer and shutil.which(rtpengine_peer.RTPENGINE) is None:
        print("rtpengine is not installed (apt install rtpengine-daemon): no peer", file=sys.stderr)
        args.peer = False
    if (args.floor or args.peer) and not capacity.LOADGEN.exists():
        p.error(f"{capacity.LOADGEN} is missing (make build/loadgen), or pass --no-floor --no-peer")
    raise_file_limit()
    measured = commit()
    load_before = os.getloadavg()
    document = run(args)
    document.update(
        load_average={"before": load_before, "after": os.getloadavg()},
        note=args.note,
        **provenance(measured),
    )
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        print(table(document["steps"]))
        print(json.dumps(document["summary"]))
    if args.output is not None:
        write(args.output, args.label, document)
    if args.plot is not None:
        mix = ", ".join(f"{codec} {share} %" for codec, share in args.mix.items())
        plot_capacity.plot(
            plot_document(document), None, args.plot,
            heading=f"callbox bench capacity on {document['machine'].get('cpu_model')}, "
            f"{document['date'][:10]}: agents {mix}, trunk {args.codec}"
            + ("" if args.impairment.none else f", impaired {asdict(args.impairment)}"),
            calls_label="concurrent calls, recorded (2 legs each)" if args.record
            else "concurrent calls (2 legs each)",
        )  # fmt: skip
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def plot_document(document: dict[str, Any]) -> dict[str, Any]:
    """The steps in ``plot_capacity``'s form: per step the switch's, the floor's and the
    peer's CPU and frames lost or late."""
    peer = "rtpengine-recording" if document["summary"]["recording"] else "rtpengine"
    steps = []
    # A step whose calls never all came up measured nothing of them.
    for row in (r for r in document["steps"] if r["all_up"]):
        step: dict[str, Any] = {
            "calls": row["calls"],
            "switch": {
                "box_cpu_pct": row["switch_cpu_pct"],
                "cpu_us_per_call_second": row["cpu_us_per_call_second"],
                "lost_or_late_pct": row["lost_pct"] + row["late_pct"],
            },
        }
        if "floor" in row:
            step["echo"] = row["floor"]
        if "peer" in row:
            step[peer] = row["peer"]
        steps.append(step)
    return {"steps": steps, "machine": document.get("machine", {}), "date": document.get("date")}


RANGE_KEYS = (
    "max_concurrent_calls", "cpu_us_per_call_second", "floor_cpu_us_per_call_second",
    "ratio_to_floor", "memory_kb_per_call", "setup_latency_ms_p50", "setup_latency_ms_p99",
    "calls_per_second",
)  # fmt: skip


def write(path: Path, label: str, document: dict[str, Any]) -> None:
    """``document`` into ``path``: its fields at the top, and under ``runs.<label>`` beside
    the earlier runs kept there; ``ranges`` gives each summary figure's least and greatest
    over every run (a shared machine is noisy: repeat and read the range)."""
    runs: dict[str, Any] = {}
    if path.exists():
        runs = json.loads(path.read_text(encoding="utf-8")).get("runs", {})
    runs[label] = {k: v for k, v in document.items() if k != "runs"}
    ranges = {}
    for key in RANGE_KEYS:
        values = [r["summary"][key] for r in runs.values() if r["summary"].get(key) is not None]
        ranges[key] = [min(values), max(values)] if values else None
    merged = {**document, "ranges": ranges, "runs": runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
