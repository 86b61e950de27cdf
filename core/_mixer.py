"""The conference mixer (core/mixer/).

Part of the public ``core`` package: import from ``core``, not from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Buffer

from core import _loader

_P = TypeVar("_P")  # a participant: a mixer's int, an engine's leg

MIN_GAIN_DB = -60.0
MAX_GAIN_DB = 20.0
_FULL_SCALE = 32767


class SupervisorMode(Enum):
    """How a supervisor joins an agent's call (see :meth:`Mixer.supervise`)."""

    LISTEN = "listen"
    """The supervisor hears agent and caller; neither hears the supervisor."""
    WHISPER = "whisper"
    """The supervisor hears both and coaches the agent; the caller does not hear it."""
    BARGE = "barge"
    """A full three-way call: everyone hears everyone."""


def gain_q12(gain_db: float) -> int:
    """A gain in dB (-60..+20) as the mixer's Q12 factor; ``ValueError`` outside the range."""
    if not MIN_GAIN_DB <= gain_db <= MAX_GAIN_DB:
        raise ValueError(f"gain_db must be in {MIN_GAIN_DB}..{MAX_GAIN_DB}: got {gain_db}")
    return round(4096 * 10 ** (gain_db / 20))


def route_supervisor(
    set_hears: Callable[[_P, _P, bool], None],
    supervisor: _P,
    agent: _P,
    caller: _P,
    mode: SupervisorMode,
) -> None:
    """Route a supervisor through ``set_hears(listener, talker, hears)``: it always hears
    both parties; ``mode`` says who hears it."""
    set_hears(supervisor, agent, True)
    set_hears(supervisor, caller, True)
    set_hears(agent, supervisor, mode is not SupervisorMode.LISTEN)
    set_hears(caller, supervisor, mode is SupervisorMode.BARGE)


@dataclass(frozen=True)
class TalkerEvent:
    """A participant started (``talking`` true) or stopped talking this tick."""

    participant: int
    talking: bool


@dataclass(frozen=True)
class MixedTick:
    """One tick's output: the common mix, who shares it, the own mixes and talker events.

    Everyone in ``shared`` hears exactly ``common`` (the whole conference), so
    the engine encodes it once per codec for all of them; everyone else has an
    entry in ``own``. ``common`` is also the mix to record.
    """

    common: bytes
    shared: tuple[int, ...]
    own: dict[int, bytes]
    events: tuple[TalkerEvent, ...]

    def output(self, participant: int) -> bytes:
        """What ``participant`` hears this tick (``KeyError`` if not in the mixer)."""
        if participant in self.own:
            return self.own[participant]
        if participant in self.shared:
            return self.common
        raise KeyError(participant)


class Mixer:
    """An N-1 conference mixer of 16-bit linear PCM frames, 20 ms per tick.

    Codec-agnostic: participants (any ``int`` id, e.g. a leg's) hand in
    decoded frames at ``sample_rate`` with :meth:`put`; :meth:`mix` ends the
    tick and gives each listener the one 32-bit sum less its own contribution
    and less anyone it must not hear (:meth:`set_hears`). A participant with no
    frame this tick is silent. One limiter gain for all outputs (it falls
    within 1 ms and recovers by 0.5 dB per tick) keeps the loudest output near
    -0.9 dBFS, and a soft knee bends what gets past it, so any number of
    full-scale talkers never wraps or clips flat.

    A participant talks when a frame's mean-square level exceeds
    ``talk_threshold_dbfs`` (relative to a full-scale square wave; a
    full-scale sine is -3 dBFS) and stops after ``hangover_ms`` of quieter
    frames, so short pauses do not flap. Raises ``ValueError`` for settings
    that cannot work, and for an unknown or duplicate participant.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        talk_threshold_dbfs: float = -40.0,
        hangover_ms: int = 300,
    ) -> None:
        if not -96.0 <= talk_threshold_dbfs <= 0.0:
            raise ValueError(f"talk_threshold_dbfs must be in -96..0: got {talk_threshold_dbfs}")
        if not 20 <= hangover_ms <= 10000:
            raise ValueError(f"hangover_ms must be in 20..10000: got {hangover_ms}")
        threshold = round(_FULL_SCALE**2 * 10 ** (talk_threshold_dbfs / 10))
        self._mixer = _loader.impl.Mixer(sample_rate, threshold, -(-hangover_ms // 20))

    @property
    def frame_samples(self) -> int:
        """Samples in one 20 ms frame at this mixer's rate."""
        result: int = self._mixer.frame_samples()
        return result

    @property
    def participants(self) -> list[int]:
        """The participants, in the order they joined."""
        result: list[int] = self._mixer.participants()
        return result

    def add(self, participant: int, *, gain_db: float = 0.0, muted: bool = False) -> None:
        """Join ``participant``: it hears everyone and everyone hears it."""
        self._mixer.add(participant)
        self.set_gain(participant, gain_db)
        self.set_muted(participant, muted)

    def remove(self, participant: int) -> None:
        """Take ``participant`` out; routing that named it is forgotten."""
        self._mixer.remove(participant)

    def set_gain(self, participant: int, gain_db: float) -> None:
        """Scale what ``participant`` says by ``gain_db`` (-60..+20 dB) for every listener."""
        self._mixer.set_gain(participant, gain_q12(gain_db))

    def set_muted(self, participant: int, muted: bool) -> None:
        """Mute: nobody hears ``participant``; it still hears, and is still detected talking."""
        self._mixer.set_muted(participant, muted)

    def set_hears(self, listener: int, talker: int, hears: bool) -> None:
        """Route: whether ``listener`` hears ``talker`` (by default everyone hears everyone)."""
        self._mixer.set_hears(listener, talker, hears)

    def hears(self, listener: int, talker: int) -> bool:
        """Whether ``listener`` hears ``talker`` (nobody hears itself)."""
        result: bool = self._mixer.hears(listener, talker)
        return result

    def supervise(self, supervisor: int, agent: int, caller: int, mode: SupervisorMode) -> None:
        """Route a supervisor on an agent's call; call again to change ``mode``.

        All three must have joined. The supervisor always hears both parties;
        ``mode`` says who hears the supervisor.
        """
        route_supervisor(self.set_hears, supervisor, agent, caller, mode)

    def talking(self, participant: int) -> bool:
        """Whether ``participant`` is talking (as of the last :meth:`mix`)."""
        result: bool = self._mixer.talking(participant)
        return result

    def put(self, participant: int, pcm: Buffer) -> None:
        """Hand in ``participant``'s frame for this tick (exactly :attr:`frame_samples` long).

        A second put in the same tick replaces the first.
        """
        self._mixer.put(participant, pcm)

    def mix(self) -> MixedTick:
        """End the tick: every listener's output and this tick's talker events."""
        common, shared, own, events = self._mixer.mix()
        return MixedTick(
            common,
            tuple(shared),
            dict(own),
            tuple(TalkerEvent(participant, talking) for participant, talking in events),
        )

    @property
    def limiter_gain_db(self) -> float:
        """The limiter's gain after the last tick (0 dB when nothing was too loud)."""
        gain: int = self._mixer.limiter_gain_q15()
        return 20 * math.log10(gain / 32768)
