"""The peer relay harness against a real rtpengine (Debian's rtpengine-daemon, userspace mode).

rtpengine runs as a child on loopback with a private configuration; calls
are set up over its ng protocol and RTP is observed on plain UDP sockets
playing the two phones, or at the load generator. Speed is not asserted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import capacity, plot_capacity
from benchmarks.rtpengine_ng import NgClient, NgError, audio_sdp, media_port
from benchmarks.rtpengine_peer import (
    Rtpengine,
    RtpengineConfig,
    RtpengineError,
    merge,
    rtpengine,
    run_peer_step,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("rtpengine") is None, reason="rtpengine-daemon not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
# Fixed test ports sit below the ephemeral range; rtpengine skips a port that is taken.
TEST_PORT_MIN, TEST_PORT_MAX = 31600, 31699
HOST = "127.0.0.1"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Rtpengine]:
    """A running rtpengine, not pinned, writing its log and recordings under ``tmp_path``."""
    config = RtpengineConfig(tmp_path, port_min=TEST_PORT_MIN, port_max=TEST_PORT_MAX, cpu=None)
    with rtpengine(config) as running:
        yield running


@pytest.fixture
def phones() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A caller phone and an agent phone: UDP sockets on loopback."""
    pair = tuple(socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for phone in pair:
        phone.bind((HOST, 0))
        phone.settimeout(2.0)
    yield pair[0], pair[1]
    for phone in pair:
        phone.close()


def rtp(sequence: int, payload: bytes) -> bytes:
    """An RTP packet (version 2, PCMA) carrying ``payload``."""
    header = bytes([0x80, 8]) + sequence.to_bytes(2, "big") + (160 * sequence).to_bytes(4, "big")
    return header + (0x1234ABCD).to_bytes(4, "big") + payload


def port_of(phone: socket.socket) -> int:
    """The phone's local port."""
    port: int = phone.getsockname()[1]
    return port


def relay(
    phone_from: socket.socket, to_port: int, phone_to: socket.socket, count: int
) -> list[bytes]:
    """Send ``count`` RTP packets to rtpengine's port; the payloads the other phone receives."""
    payloads = []
    for sequence in range(count):
        phone_from.sendto(rtp(sequence, bytes([sequence]) * 160), (HOST, to_port))
        packet, source = phone_to.recvfrom(2048)
        assert source[0] == HOST
        payloads.append(packet[12:])
    return payloads


def test_rtpengine_answers_ping_on_its_ng_port(peer: Rtpengine) -> None:
    peer.ng.ping()
    assert peer.process.poll() is None


def test_rtpengine_relays_rtp_both_ways_between_the_ports_its_sdp_names(
    peer: Rtpengine, phones: tuple[socket.socket, socket.socket]
) -> None:
    caller, agent = phones
    caller_sends_to, agent_sends_to = peer.relay_calls(
        [port_of(caller), port_of(agent)], record=False
    )
    assert TEST_PORT_MIN <= caller_sends_to <= TEST_PORT_MAX
    assert TEST_PORT_MIN <= agent_sends_to <= TEST_PORT_MAX
    expected = [bytes([n]) * 160 for n in range(5)]
    assert relay(caller, caller_sends_to, agent, 5) == expected
    assert relay(agent, agent_sends_to, caller, 5) == expected


def test_start_recording_writes_the_relayed_audio_into_a_pcap(
    peer: Rtpengine, phones: tuple[socket.socket, socket.socket]
) -> None:
    caller, agent = phones
    caller_sends_to, _ = peer.relay_calls(
        [port_of(caller), port_of(agent)], record=False, tag="rec"
    )
    peer.ng.start_recording("rec-0", "caller")
    relay(caller, caller_sends_to, agent, 3)
    peer.ng.delete("rec-0", "caller")
    pcaps = list((peer.config.recording_dir / "pcaps").glob("rec-0-*.pcap"))
    assert len(pcaps) == 1
    recorded = pcaps[0].read_bytes()
    assert all(bytes([n]) * 160 in recorded for n in range(3))


def test_record_call_flag_names_the_pcap_in_the_offer_reply(peer: Rtpengine) -> None:
    offered = peer.ng.offer("flagged", "caller", audio_sdp(HOST, 30000, 1), record=True)
    assert len(offered.recordings) == 1
    assert Path(offered.recordings[0]).parent == peer.config.recording_dir / "pcaps"
    assert offered.media_port != 30000


def test_answer_to_an_unknown_call_is_an_ng_error_with_rtpengine_reason(peer: Rtpengine) -> None:
    with pytest.raises(NgError, match="refused 'answer': Unknown call-id"):
        peer.ng.answer("no-such-call", "caller", "agent", audio_sdp(HOST, 30000, 1))


def test_silent_ng_port_is_an_ng_error_after_retries() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        with (
            NgClient(HOST, port_of(silent), timeout_s=0.3) as client,
            pytest.raises(NgError, match="no reply from rtpengine"),
        ):
            client.ping()


def test_sdp_without_audio_is_an_ng_error_naming_it() -> None:
    with pytest.raises(NgError, match="without an m=audio line"):
        media_port(b"v=0\r\nm=video 4000 RTP/AVP 96\r\n")


def test_rtpengine_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, 0))
        config = RtpengineConfig(tmp_path, ng_port=port_of(taken), cpu=None)
        with (
            pytest.raises(
                RtpengineError, match=r"(?s)rtpengine exited.*NG control connection port"
            ),
            rtpengine(config),
        ):
            pass


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="rtpengine and the generator need a CPU each"
)
def test_peer_step_relays_every_generated_packet_of_two_calls() -> None:
    subprocess.run(["make", "-s", "build/loadgen"], cwd=ROOT, check=True)
    settings = capacity.Settings(
        warmup_s=0.2, hold_s=0.6, late_ms=20, record=False, phone_sockets="per-call",
        nice=0, realtime=False,
    )  # fmt: skip
    row = run_peer_step(settings, 2, record=True)
    for direction in ("caller_to_agent", "agent_to_caller"):
        report = row["generator"][direction]
        assert report["sent"] == 2 * 30  # two calls, 0.6 s of 20 ms packets
        assert report["lost"] == 0
    assert row["recording"] == "on"
    assert row["recorded_bytes"] > 2 * 2 * 30 * 172
    assert row["cpu_us_per_call_second"] > 0


def test_plot_draws_each_kind_measured_and_the_engine_from_core_capacity_into_a_png(
    tmp_path: Path,
) -> None:
    def row(cpu_pct: float, bad_pct: float) -> dict[str, float]:
        return {"box_cpu_pct": cpu_pct, "cpu_us_per_call_second": 10 * cpu_pct,
                "lost_or_late_pct": bad_pct}  # fmt: skip

    peer = {
        "rtpengine": "10.5",
        "steps": [
            {"calls": 50, "rtpengine": row(10, 0), "echo": row(5, 0)},
            {"calls": 500, "rtpengine": row(90, 0.5), "echo": row(50, 0)},
        ],
    }
    core = {"recording": "on", "steps": [{"calls": 50, "engine": row(8, 0), "echo": row(5, 0)}]}
    output = tmp_path / "capacity.png"
    drawn = plot_capacity.plot(peer, core, output)
    assert drawn == [
        "Callbox engine (bridged, recorded) [core-capacity.json]",
        "rtpengine userspace (relay)",
        "bare UDP echo (floor)",
    ]
    png = output.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1200, 368)  # 15 x 4.6 inches at 80 dpi


def test_merged_runs_give_the_range_of_calls_held_and_of_cost_over_runs_that_measured_it() -> None:
    def run(held: int, cost: float) -> dict[str, Any]:
        report = {"sent": 100, "lost": 0, "late": 1, "transit_us": {"p99": 900}}
        generator = {"caller_to_agent": report, "agent_to_caller": report, "generator_cpu_s": 0.1}
        step = {"cpu_us_per_call_second": cost, "lost_or_late_pct": 0.0, "generator": generator}
        return {
            "summary": {"rtpengine": {"max_calls_under_bar": held}},
            "settings": {"kinds": ["rtpengine"]}, "rtpengine": "10.5", "machine": {},
            "commit": "abc", "date": "2026-12-06", "note": "", "load_average": {},
            "steps": [{"calls": 50, "rtpengine": step}],
        }  # fmt: skip

    without_rtpengine = run(0, 0.0)
    without_rtpengine["summary"] = {}
    without_rtpengine["steps"] = [{"calls": 50}]
    merged = merge([run(750, 900.0), run(1000, 1100.0), without_rtpengine])
    assert merged["summary"]["rtpengine"] == {
        "max_calls_under_bar": [750, 1000],
        "cpu_us_per_call_second_by_calls": {"50": [900.0, 1100.0]},
    }
    step = merged["runs"][1]["steps"][0]["rtpengine"]
    assert (step["sent"], step["late"], step["transit_us_p99"]) == (200, 2, 900)
    assert "generator" not in step
