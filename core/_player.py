"""The prompt player: WAV prompts, playlists, music on hold, barge-in (core/player/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader
from core._codecs import _native

PromptError: type[ValueError] = getattr(_loader.impl, "PromptError", ValueError)
"""A prompt file cannot be read or is not a WAV the player takes.

The message starts with the file's name and says what is wrong
(``prompt.wav: 2 channels; prompts must be mono``).
"""

PLAYER_RATES = (8000, 16000, 48000)
"""Sample rates prompts may have and players may produce."""

DTMF_DIGITS = "0123456789*#"
"""The digits of a telephone keypad: the default barge-in set."""


class Prompt:
    """A prompt decoded to 16-bit PCM at its file's rate, immutable and shared.

    WAV files of mono 16-bit PCM, A-law or u-law (also in a
    WAVE_FORMAT_EXTENSIBLE header) at 8, 16 or 48 kHz are taken; a file whose
    writer crashed (its data size 0 or past the end of the file) plays what
    is there. Every other file raises :data:`PromptError`.
    """

    def __init__(self, native: Any) -> None:
        self._native = native

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Prompt:
        """The prompt in the WAV at ``path``, decoded once per version of the file.

        Loads go through a process-wide cache keyed by path; a file replaced
        or rewritten on disk (another inode, size or mtime) is read again.
        Releases the GIL while it reads and decodes.
        """
        return cls(_native("Prompt").load(os.fspath(path)))

    @classmethod
    def decode(cls, data: Buffer, name: str = "<bytes>") -> Prompt:
        """A prompt from a WAV held in memory (an upload to check, say); ``name`` is for errors."""
        return cls(_native("Prompt").decode(data, name))

    @property
    def name(self) -> str:
        """The path it was loaded from (or the name given to :meth:`decode`)."""
        result: str = self._native.name
        return result

    @property
    def sample_rate(self) -> int:
        """The file's sample rate: 8000, 16000 or 48000."""
        result: int = self._native.sample_rate
        return result

    @property
    def encoding(self) -> Literal["pcm16", "alaw", "ulaw"]:
        """How the file stores its samples."""
        result: Literal["pcm16", "alaw", "ulaw"] = self._native.encoding
        return result

    @property
    def truncated(self) -> bool:
        """The file's data size was 0 or past its end (a writer crashed); it plays what is there."""
        result: bool = self._native.truncated
        return result

    @property
    def samples(self) -> int:
        """Length in samples at :attr:`sample_rate`."""
        result: int = self._native.samples
        return result

    @property
    def duration_ms(self) -> float:
        """Length in milliseconds."""
        return self.samples * 1000 / self.sample_rate

    @property
    def pcm(self) -> bytes:
        """The decoded audio: 16-bit native-endian PCM at :attr:`sample_rate` (a copy)."""
        result: bytes = self._native.pcm()
        return result

    def __repr__(self) -> str:
        return (
            f"Prompt({self.name!r}, {self.encoding}, {self.sample_rate} Hz, "
            f"{self.duration_ms:.0f} ms)"
        )


@dataclass(frozen=True)
class Silence:
    """A pause of ``ms`` milliseconds in a playlist."""

    ms: int

    def __post_init__(self) -> None:
        if not 0 <= self.ms <= 3_600_000:
            raise ValueError(f"a silence lasts 0 to 3600000 ms: got {self.ms}")


def _playlist_items(playlist: Sequence[Prompt | Silence]) -> list[tuple[Any, int]]:
    """The playlist as the C++ player takes it: (native prompt or None, silence ms) pairs."""
    items: list[tuple[Any, int]] = []
    for item in playlist:
        if isinstance(item, Prompt):
            items.append((item._native, 0))
        elif isinstance(item, Silence):
            items.append((None, item.ms))
        else:
            raise TypeError(f"a playlist holds Prompt and Silence items: got {item!r}")
    return items


class PromptCacheInfo(NamedTuple):
    """What the process's prompt cache holds (``bytes`` of PCM, at most ``max_bytes``)
    and how loads went.

    ``misses`` counts loads that read a file (first use, or the file changed);
    ``evictions`` prompts dropped beyond ``max_bytes``.
    """

    prompts: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


def prompt_cache_info() -> PromptCacheInfo:
    """The state of the cache behind :meth:`Prompt.load`."""
    return PromptCacheInfo(*_native("prompt_cache_info")())


def set_prompt_cache_limit(max_bytes: int) -> None:
    """Set how much decoded PCM the prompt cache keeps (256 MiB to start with).

    The least recently loaded prompts beyond it are dropped at once and on
    later loads; players that hold them keep playing them, and a later load
    reads the file again. The prompt loaded last always stays.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must not be negative: got {max_bytes}")
    _native("set_prompt_cache_limit")(max_bytes)


class PlaybackEnd(NamedTuple):
    """Why a player stopped: ``finished``, ``digit`` (barge-in; ``detail`` is the digit) or
    ``stopped``."""

    reason: Literal["finished", "digit", "stopped"]
    detail: str


class PlaybackPosition(NamedTuple):
    """Where a player is: the playlist ``item`` (its length once finished), how far into it,
    what it has played in all, and how often a looping playlist has started over."""

    item: int
    offset_ms: int
    played_ms: int
    loops: int


class Player:
    """Plays a playlist of prompts and silences in order, 20 ms per frame.

    ``rate`` is the output rate (8000, 16000 or 48000): prompts at another
    rate are resampled when the player is made, once per prompt and rate.
    ``loop`` starts over after the last item (music on hold) until
    :meth:`stop` or a barge-in digit. ``barge_in`` holds the DTMF digits that
    end playback (all keypad digits by default; ``""`` for none). The engine
    runs the same C++ player on a leg; this class drives it from Python.
    Raises ``ValueError`` for bad settings.
    """

    def __init__(
        self,
        playlist: Sequence[Prompt | Silence],
        *,
        rate: int = 8000,
        loop: bool = False,
        barge_in: str = DTMF_DIGITS,
    ) -> None:
        if rate not in PLAYER_RATES:
            raise ValueError(f"rate must be one of {PLAYER_RATES}: got {rate}")
        self._native = _native("Player")(_playlist_items(playlist), rate, loop, barge_in)
        self.sample_rate = rate
        """Samples per second of the frames."""
        self.frame_samples = rate // 50
        """Samples in one 20 ms frame."""

    def next_frame(self) -> bytes | None:
        """The next 20 ms of audio, or ``None`` once playback has ended.

        The last frame of a playlist that does not loop is padded with silence.
        """
        frame: bytes | None = self._native.next_frame()
        return frame

    def on_digit(self, digit: str) -> bool:
        """A DTMF digit came in: ``True`` if it is a barge-in digit and ends playback."""
        if len(digit) != 1:
            raise ValueError(f"one digit at a time: got {digit!r}")
        ended: bool = self._native.on_digit(digit)
        return ended

    def stop(self) -> None:
        """End playback now (reason ``stopped``); does nothing once it has ended."""
        self._native.stop()

    @property
    def end(self) -> PlaybackEnd | None:
        """Why playback ended, or ``None`` while it goes on."""
        end = self._native.end()
        return None if end is None else PlaybackEnd(*end)

    @property
    def position(self) -> PlaybackPosition:
        """Where playback is."""
        item, offset, played, loops = self._native.position()
        per_ms = self.sample_rate // 1000
        return PlaybackPosition(item, offset // per_ms, played // per_ms, loops)
