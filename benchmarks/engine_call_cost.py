"""What one call costs the media engine's worker, per 20 ms tick.

Runs N calls of each kind on one worker for a few seconds, fed by this
process with paced RTP (one pre-encoded 20 ms tone frame per leg per tick),
and reads the worker thread's CPU time from ``/proc/self/task/*/schedstat``
(nanoseconds on CPU; the thread is named ``callbox-media``). The figure per
call subtracts the idle worker's own ticking. Packet handling (recvmmsg,
sendmmsg) is included: it is what a call costs. The recorder's writer
thread is measured apart. The machine is shared, so the numbers are rough.

    .venv/bin/python -m benchmarks.engine_call_cost [--calls 10] [--seconds 5]

Writes ``benchmarks/results/engine-call-cost.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

import core
from benchmarks.run import RESULTS, machine
from tests.core.signals import tone_pcm

PAYLOAD_TYPES = {"PCMA": 8, "G722": 9, "G729": 18, "opus": 111}
# Name, the two legs' codecs, recorded, and the second leg's peer fmtp (what it asks to receive).
SCENARIOS = [
    ("relay PCMA-PCMA", "PCMA", "PCMA", False, ""),
    ("relay PCMA-PCMA, recorded", "PCMA", "PCMA", True, ""),
    ("transcode PCMA-G722, recorded", "PCMA", "G722", True, ""),
    ("transcode PCMA-G729, recorded", "PCMA", "G729", True, ""),
    ("transcode PCMA-opus, recorded", "PCMA", "opus", True, ""),
    # What every WebRTC browser offers: the encoder then spends SILK's in-band FEC.
    ("transcode PCMA-opus with in-band FEC, recorded", "PCMA", "opus", True, "useinbandfec=1"),
]


def thread_cpu_ns(name: str) -> int:
    """CPU time so far of this process's threads called ``name``."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            total += int((task / "schedstat").read_text().split()[0])
    return total


def frame_of(codec: str) -> bytes:
    """One 20 ms frame of a 1 kHz tone in ``codec``."""
    encoder = core.Encoder(codec)
    return encoder.encode(tone_pcm(1000, -10, encoder.sample_rate, encoder.frame_samples))


def run(
    calls: int, seconds: float, codec_a: str, codec_b: str, record: bool, fmtp_b: str = ""
) -> dict[str, float]:
    """CPU of the worker and the recorder while ``calls`` calls talk for ``seconds``."""
    with core.Engine(workers=1, port_min=30000, port_max=30999, host="127.0.0.1") as engine:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        # Per leg: its port, payload type, frame and timestamp step.
        feeds: list[tuple[int, int, bytes, int]] = []
        recordings = []
        with tempfile.TemporaryDirectory() as folder:
            for n in range(calls):
                legs: list[core.RtpLeg] = []
                for codec, fmtp in ((codec_a, ""), (codec_b, fmtp_b)):
                    beside = legs[0] if legs else None
                    leg = engine.create_rtp_leg(
                        codec=codec, payload_type=PAYLOAD_TYPES[codec], beside=beside, fmtp=fmtp
                    )
                    leg.set_remote("127.0.0.1", sink.getsockname()[1])
                    legs.append(leg)
                    step = core.codec_info(codec).rtp_clock_rate // 50
                    feeds.append((leg.local_port, PAYLOAD_TYPES[codec], frame_of(codec), step))
                engine.bridge(legs[0], legs[1])
                if record:
                    wav = f"{folder}/{n}.wav"
                    recordings.append(engine.record(wav, left=legs[0], right=legs[1]))
            ticks = int(seconds * 50)
            start = time.monotonic()
            worker_before = thread_cpu_ns("callbox-media")
            writer_before = thread_cpu_ns("callbox-rec")
            for tick in range(ticks):
                for port, payload_type, frame, step in feeds:
                    seq, ts = tick & 0xFFFF, tick * step
                    packet = core.build_rtp(payload_type, seq, ts, port, frame)
                    sink.sendto(packet, ("127.0.0.1", port))
                try:
                    while True:
                        sink.recv(4096)
                except BlockingIOError:
                    pass
                time.sleep(max(0.0, start + (tick + 1) * 0.02 - time.monotonic()))
            worker = thread_cpu_ns("callbox-media") - worker_before
            writer = thread_cpu_ns("callbox-rec") - writer_before
            for recording in recordings:
                recording.stop()
        sink.close()
    return {
        "worker_us_per_tick": worker / ticks / 1000,
        "recorder_us_per_tick": writer / ticks / 1000,
    }


def main() -> None:
    """Measure every scenario and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    idle = run(0, args.seconds, "PCMA", "PCMA", False)["worker_us_per_tick"]
    results = []
    for name, codec_a, codec_b, record, fmtp_b in SCENARIOS:
        cost = run(args.calls, args.seconds, codec_a, codec_b, record, fmtp_b)
        per_call = (cost["worker_us_per_tick"] - idle) / args.calls
        results.append(
            {
                "scenario": name,
                "calls": args.calls,
                "worker_us_per_call_tick": round(per_call, 1),
                "worker_us_per_call_second": round(per_call * 50),
                "recorder_us_per_call_tick": round(cost["recorder_us_per_tick"] / args.calls, 1),
            }
        )
        print(f"{name}: {per_call:.1f} us per call per tick on the worker")
    out = {"machine": machine(), "idle_worker_us_per_tick": round(idle, 1), "results": results}
    (RESULTS / "engine-call-cost.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
