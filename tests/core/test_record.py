"""The call recorder: channel layout, pause, exact and crash-safe WAV, drops, MP3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

import core
from core import _reference
from tests.core.signals import goertzel_peak, tone_pcm
from tests.core.tools import run_tool

pytestmark = pytest.mark.skipif(
    core.IMPLEMENTATION == "python", reason="the Python twin has no recorder"
)

CALLER_HZ = 697.0
AGENT_HZ = 1209.0
LEVEL_DBM0 = -10.0
PRESENT = 2000.0  # Goertzel peak of a -10 dBm0 tone is about 3300
ABSENT = 50.0


@pytest.fixture
def service() -> Iterator[core.RecorderService]:
    """A recorder service whose writer thread ends with the test."""
    with core.RecorderService() as svc:
        yield svc


def frames(frequency: float, rate: int, count: int) -> list[bytes]:
    """``count`` consecutive 20 ms frames of one continuous tone."""
    n = rate * core.FRAME_MS // 1000
    signal_ = tone_pcm(frequency, LEVEL_DBM0, rate, n * count)
    return [signal_[2 * n * i : 2 * n * (i + 1)] for i in range(count)]


def silence(rate: int) -> bytes:
    """One 20 ms frame of silence."""
    return bytes(2 * rate * core.FRAME_MS // 1000)


def channels(path: Path) -> tuple[int, int, list[bytes]]:
    """(sample rate, frames, one PCM byte string per channel) of a WAV."""
    with wave.open(str(path)) as w:
        data = array("h", w.readframes(w.getnframes()))
        count = w.getnchannels()
        return w.getframerate(), w.getnframes(), [data[c::count].tobytes() for c in range(count)]


def record_tones(service: core.RecorderService, path: Path, rate: int, layout: str) -> None:
    """One second: the caller's tone on the left input, the agent's on the right."""
    rec = service.start(path, sample_rate=rate, layout=layout)  # type: ignore[arg-type]
    for left, right in zip(frames(CALLER_HZ, rate, 50), frames(AGENT_HZ, rate, 50), strict=True):
        assert rec.write(left, right)
    rec.close()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_stereo_recording_puts_the_caller_left_and_the_agent_right(
    service: core.RecorderService, tmp_path: Path, rate: int
) -> None:
    path = tmp_path / "call.wav"
    record_tones(service, path, rate, "stereo")
    file_rate, _, (left, right) = channels(path)
    assert file_rate == rate
    assert goertzel_peak(left, rate, CALLER_HZ) > PRESENT
    assert goertzel_peak(left, rate, AGENT_HZ) < ABSENT
    assert goertzel_peak(right, rate, AGENT_HZ) > PRESENT
    assert goertzel_peak(right, rate, CALLER_HZ) < ABSENT


def test_mono_recording_mixes_both_sides(service: core.RecorderService, tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    record_tones(service, path, 8000, "mono")
    _, _, (mixed,) = channels(path)
    assert goertzel_peak(mixed, 8000, CALLER_HZ) > PRESENT
    assert goertzel_peak(mixed, 8000, AGENT_HZ) > PRESENT


def test_paused_span_is_written_as_silence_and_counted(
    service: core.RecorderService, tmp_path: Path
) -> None:
    path = tmp_path / "call.wav"
    tone = frames(CALLER_HZ, 8000, 30)
    rec = service.start(path)
    for i, frame in enumerate(tone):
        if i == 10:
            rec.pause()
        if i == 20:
            rec.resume()
        rec.write(frame, frame)
    info = rec.close()
    assert (info.frames_written, info.frames_paused, info.pauses) == (30, 10, 1)
    _, _, (left, right) = channels(path)
    span = 2 * 160 * 10
    assert left[span : 2 * span] == right[span : 2 * span] == bytes(span)
    assert goertzel_peak(left[:span], 8000, CALLER_HZ) > PRESENT
    assert goertzel_peak(left[2 * span :], 8000, CALLER_HZ) > PRESENT


def test_closed_wav_holds_exactly_the_ticks_written(
    service: core.RecorderService, tmp_path: Path
) -> None:
    path = tmp_path / "call.wav"
    rec = service.start(path, sample_rate=16000)
    quiet = silence(16000)
    for _ in range(137):
        rec.write(quiet, quiet)
    info = rec.close()
    assert info == core.RecordingInfo(str(path), 16000, 2, 137, 0, 0, 0)
    assert info.duration_s == pytest.approx(2.74)
    assert channels(path)[1] == 137 * 320
    assert float(run_tool(["sox", "--i", "-D", str(path)])) == pytest.approx(2.74)
    assert path.stat().st_size == 44 + 137 * 320 * 4


# Writes frames on a real 20 ms grid and prints the count after each one.
CHILD = """
import sys, time
import core
service = core.RecorderService()
rec = service.start(sys.argv[1])
frame = bytes(rec.frame_bytes)
start = time.monotonic()
for n in range(1, 100000):
    rec.write(frame, frame)
    print(n, flush=True)
    time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
"""


def test_sigkill_leaves_a_wav_that_plays_to_within_a_second_of_the_kill(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if int(line) >= 125:  # 2.5 s
                break
        os.kill(child.pid, signal.SIGKILL)
        # The child prints after each write: its last line is what it wrote before dying.
        written = int(([line, *child.stdout])[-1])
    assert child.returncode == -signal.SIGKILL
    reported_s = written * 0.02
    with wave.open(str(path)) as w:
        duration = w.getnframes() / w.getframerate()
    assert reported_s - 1.0 <= duration <= reported_s + 0.02
    assert float(run_tool(["sox", "--i", "-D", str(path)])) == pytest.approx(duration)


def test_full_ring_drops_and_counts_frames_without_blocking(tmp_path: Path) -> None:
    # The writer drains every 500 ms, so a burst of 50 frames overruns a 4-frame ring.
    with core.RecorderService(drain_interval_ms=500) as svc:
        rec = svc.start(tmp_path / "call.wav", ring_frames=4)
        quiet = silence(8000)
        accepted = [rec.write(quiet, quiet) for _ in range(50)]
        info = rec.close()
    assert accepted[:4] == [True] * 4
    assert info.frames_dropped == accepted.count(False) > 0
    assert info.frames_written == accepted.count(True)
    assert channels(tmp_path / "call.wav")[1] == info.frames_written * 160


def test_frame_of_the_wrong_size_is_refused_naming_the_size(
    service: core.RecorderService, tmp_path: Path
) -> None:
    rec = service.start(tmp_path / "call.wav", sample_rate=16000)
    with pytest.raises(core.RecordError, match=r"a frame must be 640 bytes .*: got 320 and 640"):
        rec.write(bytes(320), bytes(640))
    rec.close()


def test_unwritable_path_raises_naming_the_file(
    service: core.RecorderService, tmp_path: Path
) -> None:
    path = tmp_path / "missing" / "call.wav"
    with pytest.raises(core.RecordError, match=f"cannot open the recording '{path}'"):
        service.start(path)
    assert service.active == 0


def test_bad_settings_are_refused(service: core.RecorderService, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate must be 8000 or 16000: got 44100"):
        service.start(tmp_path / "a.wav", sample_rate=44100)
    with pytest.raises(ValueError, match="layout must be 'stereo' or 'mono'"):
        service.start(tmp_path / "a.wav", layout="quad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bitrate_kbps must be one of"):
        core.wav_to_mp3(tmp_path / "a.wav", tmp_path / "a.mp3", bitrate_kbps=33)


def test_write_after_close_is_refused(service: core.RecorderService, tmp_path: Path) -> None:
    rec = service.start(tmp_path / "call.wav")
    info = rec.close()
    assert rec.close() == info
    with pytest.raises(ValueError, match="is closed"):
        rec.write(silence(8000), silence(8000))


def test_closing_the_service_finishes_open_recordings(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with core.RecorderService() as svc:
        rec = svc.start(path)
        for _ in range(7):
            rec.write(silence(8000), silence(8000))
    assert channels(path)[1] == 7 * 160


def decoded_by_sox(mp3: Path, tmp_path: Path) -> tuple[int, int, list[bytes]]:
    """The MP3 decoded to WAV by sox, as :func:`channels` reads it."""
    wav = tmp_path / "decoded.wav"
    run_tool(["sox", str(mp3), "-b", "16", str(wav)])
    return channels(wav)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_mono_mp3_decodes_with_both_sides_tones(
    service: core.RecorderService, tmp_path: Path, rate: int
) -> None:
    record_tones(service, tmp_path / "call.wav", rate, "stereo")
    size = core.wav_to_mp3(tmp_path / "call.wav", tmp_path / "call.mp3", bitrate_kbps=32)
    assert size == (tmp_path / "call.mp3").stat().st_size
    file_rate, count, (mixed,) = decoded_by_sox(tmp_path / "call.mp3", tmp_path)
    assert file_rate == rate
    assert count >= rate  # LAME pads; nothing is lost
    assert goertzel_peak(mixed[: 2 * rate], rate, CALLER_HZ) > PRESENT / 2
    assert goertzel_peak(mixed[: 2 * rate], rate, AGENT_HZ) > PRESENT / 2


def test_joint_stereo_mp3_keeps_the_sides_apart(
    service: core.RecorderService, tmp_path: Path
) -> None:
    record_tones(service, tmp_path / "call.wav", 16000, "stereo")
    core.wav_to_mp3(
        tmp_path / "call.wav", tmp_path / "call.mp3", bitrate_kbps=64, mode="joint_stereo"
    )
    _, _, (left, right) = decoded_by_sox(tmp_path / "call.mp3", tmp_path)
    assert goertzel_peak(left, 16000, CALLER_HZ) > PRESENT / 2
    assert goertzel_peak(left, 16000, AGENT_HZ) < PRESENT / 10
    assert goertzel_peak(right, 16000, AGENT_HZ) > PRESENT / 2
    assert goertzel_peak(right, 16000, CALLER_HZ) < PRESENT / 10


def test_mp3_of_a_cut_short_wav_converts_what_the_file_holds(
    service: core.RecorderService, tmp_path: Path
) -> None:
    wav = tmp_path / "call.wav"
    record_tones(service, wav, 8000, "stereo")
    # A crash can leave a header that promises more data than reached the disk.
    with wav.open("r+b") as f:
        f.truncate(44 + 4 * 4000)
    core.wav_to_mp3(wav, tmp_path / "call.mp3")
    _, count, (mixed,) = decoded_by_sox(tmp_path / "call.mp3", tmp_path)
    assert 4000 <= count < 8000
    assert goertzel_peak(mixed[:8000], 8000, CALLER_HZ) > PRESENT / 2


def test_mp3_errors_name_the_problem_and_leave_no_file(
    service: core.RecorderService, tmp_path: Path
) -> None:
    record_tones(service, tmp_path / "mono.wav", 8000, "mono")
    mp3 = tmp_path / "out.mp3"
    with pytest.raises(core.RecordError, match="joint stereo needs a stereo WAV"):
        core.wav_to_mp3(tmp_path / "mono.wav", mp3, mode="joint_stereo")
    with pytest.raises(core.RecordError, match="96 is not an MP3 bitrate at 8000 Hz"):
        core.wav_to_mp3(tmp_path / "mono.wav", mp3, bitrate_kbps=96)
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(core.RecordError, match="is not a WAV file"):
        core.wav_to_mp3(tmp_path / "text.wav", mp3)
    assert not mp3.exists()


def test_the_python_twin_has_no_recorder_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core._loader, "impl", _reference)
    monkeypatch.setattr(core._loader, "IMPLEMENTATION", "python")
    with pytest.raises(NotImplementedError, match="needs the compiled core"):
        core.RecorderService()
