"""The call recorder: crash-safe WAV per call, MP3 after the call (core/record/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader
from core._codecs import _native

RecordError: type[OSError] = getattr(_loader.impl, "RecordError", OSError)
"""A recording or MP3 file could not be opened, read or written; the message names it."""

FRAME_MS = 20
"""Every frame given to :meth:`Recording.write` is this long."""

# MPEG-2 and 2.5 CBR bitrates up to 96 kbit/s; above 64 only at 16 kHz (checked natively).
MP3_BITRATES = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96)
"""Bitrates (kbit/s) :func:`wav_to_mp3` accepts; 80 and 96 only for 16 kHz."""


@dataclass(frozen=True)
class RecordingInfo:
    """What a closed recording holds.

    ``frames_written`` 20 ms frames are in the file, ``frames_paused`` of them
    silence written while paused (``pauses`` times); ``frames_dropped`` were
    given to :meth:`Recording.write` while its ring was full and are not in it.
    """

    path: str
    sample_rate: int
    channels: int
    frames_written: int
    frames_dropped: int
    frames_paused: int
    pauses: int

    @property
    def duration_s(self) -> float:
        """Length of the audio in the file, in seconds."""
        return self.frames_written * FRAME_MS / 1000


class _ClosedOnExit(ABC):
    """``with`` closes it, also on error."""

    @abstractmethod
    def close(self) -> object:
        """Release what it holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Recording(_ClosedOnExit):
    """One call's WAV file, fed one 20 ms frame of each side per tick.

    Made by :meth:`RecorderService.start`. One thread writes frames (the
    engine's worker, later); pause, resume and close may come from another.
    """

    def __init__(self, service: RecorderService, native: Any, path: str) -> None:
        self._service = service
        self._native = native
        self.path = path
        """Where the WAV is written."""
        self.frame_bytes: int = 2 * native.frame_samples()
        """Bytes of one side's 20 ms frame (16-bit PCM at the recording's rate)."""
        self._info: RecordingInfo | None = None

    def write(self, left: Buffer, right: Buffer) -> bool:
        """Queue one tick: ``left`` is the caller's frame, ``right`` the agent's.

        Never blocks: returns ``False`` if the ring was full and the frame was
        dropped (counted in :attr:`RecordingInfo.frames_dropped`). Raises
        ``RecordError`` for a frame that is not ``frame_bytes`` long, and
        ``ValueError`` after close.
        """
        if self._info is not None:
            raise ValueError(f"the recording {self.path!r} is closed")
        accepted: bool = self._native.write(left, right)
        return accepted

    def pause(self) -> None:
        """Write silence instead of the audio from now on (say, while a card number is read).

        The file keeps the call's timing; each pause counts one marker.
        """
        self._native.pause()

    def resume(self) -> None:
        """Record the audio again."""
        self._native.resume()

    @property
    def paused(self) -> bool:
        """Whether frames are being replaced by silence."""
        result: bool = self._native.paused()
        return result

    def close(self) -> RecordingInfo:
        """Write what is queued, make the header exact and close the file (idempotent).

        Blocks until the writer thread has done so (a few ms); from a coroutine,
        use ``asyncio.to_thread``.
        """
        if self._info is None:
            self._info = RecordingInfo(*self._service._native.close(self._native))
        return self._info


class RecorderService(_ClosedOnExit):
    """The writer thread shared by all recordings of a process.

    Every ``drain_interval_ms`` it moves queued frames to disk; at least twice
    a second it rewrites each growing file's WAV sizes, so a killed process
    leaves files that play to within a second of the kill. Needs the compiled
    core (``NotImplementedError`` on the Python twin).
    """

    def __init__(self, drain_interval_ms: int = 20) -> None:
        if not 1 <= drain_interval_ms <= 500:
            raise ValueError(f"drain_interval_ms must be 1..500: got {drain_interval_ms}")
        self._native = _native("RecorderService")(drain_interval_ms)

    def start(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate: int = 8000,
        layout: Literal["stereo", "mono"] = "stereo",
        ring_frames: int = 250,
    ) -> Recording:
        """Create (or truncate) the WAV at ``path`` and start recording into it.

        ``stereo`` puts the caller on the left channel and the agent on the
        right; ``mono`` mixes both. ``ring_frames`` frames (5 s by default)
        may wait for the writer before new ones are dropped. Raises
        ``ValueError`` for a bad setting and ``RecordError`` if the file
        cannot be created.
        """
        if sample_rate not in (8000, 16000):
            raise ValueError(f"sample_rate must be 8000 or 16000: got {sample_rate}")
        if layout not in ("stereo", "mono"):
            raise ValueError(f"layout must be 'stereo' or 'mono': got {layout!r}")
        if not 1 <= ring_frames <= 100000:
            raise ValueError(f"ring_frames must be 1..100000: got {ring_frames}")
        name = os.fspath(path)
        native = self._native.start(name, sample_rate, layout == "stereo", ring_frames)
        return Recording(self, native, name)

    @property
    def active(self) -> int:
        """Recordings started and not yet closed."""
        result: int = self._native.active()
        return result

    def close(self) -> None:
        """Finish every recording still open (exact files) and stop the writer thread."""
        self._native.stop()


def wav_to_mp3(
    wav_path: str | os.PathLike[str],
    mp3_path: str | os.PathLike[str],
    *,
    bitrate_kbps: int = 32,
    mode: Literal["mono", "joint_stereo"] = "mono",
) -> int:
    """Encode a 16-bit PCM WAV (8 or 16 kHz) to a constant-bitrate MP3 with LAME.

    ``mono`` mixes a stereo WAV down; ``joint_stereo`` keeps both sides and
    needs a stereo WAV. Releases the GIL, so ``await asyncio.to_thread(...)``
    converts without stalling the loop. Returns the MP3's size in bytes.
    Raises ``ValueError`` for a bad setting and ``RecordError`` for a file
    that cannot be read or written (no partial MP3 is left behind).
    """
    if mode not in ("mono", "joint_stereo"):
        raise ValueError(f"mode must be 'mono' or 'joint_stereo': got {mode!r}")
    if bitrate_kbps not in MP3_BITRATES:
        raise ValueError(f"bitrate_kbps must be one of {MP3_BITRATES}: got {bitrate_kbps}")
    convert = _native("wav_to_mp3")
    size: int = convert(os.fspath(wav_path), os.fspath(mp3_path), bitrate_kbps, mode == "mono")
    return size
