"""The built-in prompts as espeak-ng and sox make them, loaded by the media core's player."""

from __future__ import annotations

import array
import math
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

import core
from appliance.config.records import BUILTIN_PROMPTS
from appliance.ivr.prompts import (
    HOLD_MUSIC,
    SAMPLE_RATE,
    TEXT_VERSION,
    TEXTS,
    VOICES,
    PromptGenerationError,
    generate_prompts,
)

# A subset keeps the test fast: two spoken prompts and the music.
SUBSET = ["welcome", "menu", HOLD_MUSIC]


def _rms_dbfs(prompt: core.Prompt) -> float:
    samples = array.array("h", prompt.pcm)
    mean_square = sum(s * s for s in samples) / len(samples)
    return 10 * math.log10(mean_square / 32768**2)


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.wav")}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prompts")
    for lang in ("zh", "en"):
        assert generate_prompts(root, lang, names=SUBSET) == SUBSET
    return root


def test_every_builtin_prompt_has_a_text_in_both_languages_or_is_the_music() -> None:
    assert set(TEXTS) | {HOLD_MUSIC} == BUILTIN_PROMPTS
    assert all(set(texts) == {"zh", "en"} for texts in TEXTS.values())


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("name", SUBSET)
def test_generated_prompt_loads_as_16khz_mono_with_speech_level(
    generated: Path, lang: str, name: str
) -> None:
    path = generated / lang / f"{name}.wav"
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
    prompt = core.Prompt.load(str(path))
    assert (prompt.sample_rate, prompt.encoding) == (SAMPLE_RATE, "pcm16")
    assert not prompt.truncated
    assert 0.5 <= prompt.samples / SAMPLE_RATE <= 8.0
    # Levelled to about -16 dBFS RMS (less where the peaks would clip).
    assert -24.0 <= _rms_dbfs(prompt) <= -14.0


def test_mandarin_and_english_prompts_differ(generated: Path) -> None:
    for name in ("welcome", "menu"):
        zh = (generated / "zh" / f"{name}.wav").read_bytes()
        en = (generated / "en" / f"{name}.wav").read_bytes()
        assert zh != en


def test_second_run_regenerates_nothing(generated: Path) -> None:
    before = _mtimes(generated / "zh")
    assert generate_prompts(generated, "zh", names=SUBSET) == []
    assert _mtimes(generated / "zh") == before


def test_changed_text_version_regenerates_the_prompts(tmp_path: Path) -> None:
    assert generate_prompts(tmp_path, "en", names=["goodbye"]) == ["goodbye"]
    assert generate_prompts(tmp_path, "en", names=["goodbye"]) == []
    changed = generate_prompts(tmp_path, "en", names=["goodbye"], text_version=TEXT_VERSION + 1)
    assert changed == ["goodbye"]
    assert generate_prompts(tmp_path, "en", names=["goodbye"], text_version=TEXT_VERSION + 1) == []


def test_force_regenerates_current_prompts(tmp_path: Path) -> None:
    generate_prompts(tmp_path, "zh", names=["invalid"])
    assert generate_prompts(tmp_path, "zh", names=["invalid"], force=True) == ["invalid"]


def test_missing_espeak_ng_raises_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH with sox but not espeak-ng.
    tools = tmp_path / "bin"
    tools.mkdir()
    sox = shutil.which("sox")
    assert sox is not None
    os.symlink(sox, tools / "sox")
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(PromptGenerationError, match="espeak-ng is not installed") as caught:
        generate_prompts(tmp_path / "prompts", "en", names=["welcome"])
    assert caught.value.command[0] == "espeak-ng"


def test_failing_espeak_ng_raises_an_error_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(VOICES, "en", "qqq")
    with pytest.raises(PromptGenerationError, match="voice does not exist") as caught:
        generate_prompts(tmp_path, "en", names=["welcome"])
    assert caught.value.command[:3] == ["espeak-ng", "-v", "qqq"]
    assert not (tmp_path / "en" / "welcome.wav").exists()


def test_unknown_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no built-in prompts in language 'fr'"):
        generate_prompts(tmp_path, "fr")


def test_callbox_prompts_command_generates_then_reports_up_to_date(tmp_path: Path) -> None:
    env = dict(os.environ, CALLBOX_DATA_DIR=str(tmp_path))

    def callbox_prompts(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "appliance", "prompts", "--lang", "en", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    assert "en: 8 prompts generated" in callbox_prompts()
    assert sorted(p.stem for p in (tmp_path / "prompts" / "en").glob("*.wav")) == sorted(
        BUILTIN_PROMPTS
    )
    assert "en: 0 prompts generated" in callbox_prompts()
    assert "en: 8 prompts generated" in callbox_prompts("--force")


def test_prompts_made_twice_are_the_same_bytes(generated: Path, tmp_path: Path) -> None:
    """sox's dither and plucked notes are seeded: the appliance image builds reproducibly."""
    assert generate_prompts(tmp_path, "en", names=SUBSET) == SUBSET
    for name in SUBSET:
        first = (generated / "en" / f"{name}.wav").read_bytes()
        assert (tmp_path / "en" / f"{name}.wav").read_bytes() == first, name
