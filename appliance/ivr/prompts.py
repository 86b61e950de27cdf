"""The built-in prompts, spoken by espeak-ng and shaped by sox at set-up time.

No audio ships with Callbox: each language's prompts are generated into
``<data dir>/prompts/<lang>/<name>.wav`` (16-bit PCM, mono, 16 kHz, so a
G.722 leg gets wideband audio and a G.711 leg a resampled copy). A stamp
file per language records the version of the texts it was made from; a
change of the texts (bump ``TEXT_VERSION``) regenerates every file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from appliance.config.records import BUILTIN_PROMPTS

TEXT_VERSION = 2
"""Bump when a text or the audio shaping changes: existing prompts are regenerated."""

SAMPLE_RATE = 16000
TARGET_RMS_DBFS = -16.0
PEAK_LIMIT_DBFS = -1.0
HOLD_MUSIC = "hold_music"
STAMP_FILE = ".version"
SOX = ("sox", "-R")
"""sox in repeatable mode: its dither and plucked notes are seeded, so the same prompts come
out as the same bytes (the appliance image is reproducible)."""
OUTPUT_FORMAT = ("-r", str(SAMPLE_RATE), "-c", "1", "-b", "16")
"""sox's options for the files it writes: the prompts' format."""

# espeak-ng's peaks stand 19-21 dB above its RMS level: compressing 2:1 above
# -20 dBFS (5 ms look-ahead, 3 dB headroom) lets the speech come nearer to
# TARGET_RMS_DBFS before the peak limit stops the gain.
SPEECH_COMPRESSOR = ("0.005,0.1", "-90,-90,-60,-60,-20,-12,0,-6", "-3", "-90", "0.005")
COMMAND_TIMEOUT_S = 60.0

VOICES = {"zh": "cmn", "en": "en"}
"""espeak-ng voice of each language (``cmn``: Mandarin)."""

TEXTS: dict[str, dict[str, str]] = {
    "welcome": {
        "zh": "您好，欢迎致电。",
        "en": "Welcome, thank you for calling.",
    },
    "menu": {
        "zh": "销售请按1，技术支持请按2。",
        "en": "For sales press 1, for support press 2.",
    },
    "please_hold": {
        "zh": "请稍候，我们正在为您转接。",
        "en": "Please hold while we connect your call.",
    },
    "all_busy": {
        "zh": "所有座席都在忙，请稍候，我们会尽快为您服务。",
        "en": "All our agents are busy. Please stay on the line.",
    },
    "invalid": {
        "zh": "输入无效，请重试。",
        "en": "Sorry, that is not a valid choice. Please try again.",
    },
    "goodbye": {
        "zh": "感谢您的来电，再见。",
        "en": "Thank you for calling. Goodbye.",
    },
    "closed": {
        "zh": "我们现在已下班，请在工作时间再来电。",
        "en": "We are closed now. Please call again during our opening hours.",
    },
}
"""What each spoken built-in prompt says, per language."""

# Hold music: four strummed chords (C, A minor, F, G), two seconds each, so
# the eight-second loop ends where it began.
HOLD_CHORDS = (
    ("C3", "G3", "C4", "E4"),
    ("A2", "E3", "A3", "C4"),
    ("F2", "C3", "F3", "A3"),
    ("G2", "D3", "G3", "B3"),
)
CHORD_SECONDS = 2

LANGUAGES = tuple(VOICES)


class PromptGenerationError(RuntimeError):
    """A tool generating the prompts is missing or failed; names the command and its output."""

    def __init__(self, command: Sequence[str], problem: str) -> None:
        self.command = list(command)
        self.problem = problem
        super().__init__(f"{command[0]} failed ({' '.join(command)}): {problem}")


def _run(command: Sequence[str]) -> str:
    """Run a tool; its stderr (sox prints its statistics there)."""
    if shutil.which(command[0]) is None:
        raise PromptGenerationError(
            command, f"{command[0]} is not installed (scripts/install-system-deps installs it)"
        )
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise PromptGenerationError(
            command, f"no result within {COMMAND_TIMEOUT_S:.0f} s"
        ) from None
    except OSError as exc:
        raise PromptGenerationError(command, exc.strerror or str(exc)) from None
    if done.returncode != 0:
        raise PromptGenerationError(
            command, f"exit status {done.returncode}: {done.stderr.strip() or '(no output)'}"
        )
    return done.stderr


def _level_db(stats: str, label: str) -> float:
    match = re.search(rf"^{label}\s+(-?[\d.]+|-inf)", stats, re.MULTILINE)
    if match is None or match.group(1) == "-inf":
        raise PromptGenerationError(["sox", "stats"], f"no {label!r} in its output: {stats!r}")
    return float(match.group(1))


def _write_leveled(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` at about TARGET_RMS_DBFS, its peaks below PEAK_LIMIT_DBFS."""
    stats = _run([*SOX, str(source), "-n", "stats"])
    gain = min(
        TARGET_RMS_DBFS - _level_db(stats, "RMS lev dB"),
        PEAK_LIMIT_DBFS - _level_db(stats, "Pk lev dB"),
    )
    partial = target.with_suffix(".tmp.wav")
    _run([*SOX, str(source), "-b", "16", str(partial), "gain", f"{gain:.2f}"])
    os.replace(partial, target)


def _speak(text: str, voice: str, work: Path, target: Path) -> None:
    spoken = work / "spoken.wav"
    _run(["espeak-ng", "-v", voice, "-w", str(spoken), text])
    trimmed = work / "trimmed.wav"
    # Trim silence at both ends (reverse, trim the start again, reverse back).
    silence = ["silence", "1", "0.02", "0.5%"]
    shaping = ["rate", "-v", str(SAMPLE_RATE), *silence, "reverse", *silence, "reverse"]
    _run([*SOX, str(spoken), *OUTPUT_FORMAT, str(trimmed), *shaping, "compand", *SPEECH_COMPRESSOR])
    _write_leveled(trimmed, target)


def _hold_music(work: Path, target: Path) -> None:
    chords = [
        f"|{' '.join(SOX)} -n -r {SAMPLE_RATE} -c 1 -p synth {CHORD_SECONDS} "
        + " ".join(f"pl {note}" for note in notes)
        + " delay 0 .08 .16 .24 remix - fade 0 "
        + f"{CHORD_SECONDS} .3"
        for notes in HOLD_CHORDS
    ]
    music = work / "music.wav"
    _run([*SOX, *chords, *OUTPUT_FORMAT, str(music)])
    _write_leveled(music, target)


def prompt_folder(prompts_root: Path, lang: str) -> Path:
    """Where one language's built-in prompts live."""
    return prompts_root / lang


def generate_prompts(
    prompts_root: Path,
    lang: str,
    *,
    force: bool = False,
    names: Sequence[str] | None = None,
    text_version: int = TEXT_VERSION,
) -> list[str]:
    """Generate the built-in prompts of ``lang`` that are missing or older than the texts.

    ``force`` regenerates all; ``names`` limits the work to some prompts.
    Returns the names generated. Raises PromptGenerationError when espeak-ng
    or sox is missing or fails, ValueError for an unknown language or name.
    """
    if lang not in VOICES:
        raise ValueError(f"no built-in prompts in language {lang!r} (known: {', '.join(VOICES)})")
    wanted = sorted(BUILTIN_PROMPTS) if names is None else list(names)
    unknown = set(wanted) - BUILTIN_PROMPTS
    if unknown:
        raise ValueError(f"not built-in prompts: {', '.join(sorted(unknown))}")
    folder = prompt_folder(prompts_root, lang)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / STAMP_FILE
    current = stamp.exists() and stamp.read_text(encoding="ascii").strip() == str(text_version)
    if not current:
        # Files made from other texts count as missing; the stamp is written
        # first so its mtime is the line newer prompts must be above.
        stamp.write_text(f"{text_version}\n", encoding="ascii")
    since = stamp.stat().st_mtime_ns
    generated = []
    with tempfile.TemporaryDirectory(prefix="callbox-prompts-") as work:
        for name in wanted:
            target = folder / f"{name}.wav"
            if not force and target.exists() and target.stat().st_mtime_ns >= since:
                continue
            if name == HOLD_MUSIC:
                _hold_music(Path(work), target)
            else:
                _speak(TEXTS[name][lang], VOICES[lang], Path(work), target)
            generated.append(name)
    return generated


def ensure_prompts(prompts_root: Path, languages: Sequence[str] = LANGUAGES) -> list[str]:
    """Generate what is missing in every language (at set-up); ``lang/name`` of each file made."""
    return [f"{lang}/{name}" for lang in languages for name in generate_prompts(prompts_root, lang)]
