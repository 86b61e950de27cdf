"""``CALLBOX_CORE`` picks the implementation behind ``import core``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import core
from core import _reference


def _implementation(value: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CALLBOX_CORE=value)
    env.pop("LD_PRELOAD", None)
    return subprocess.run(
        [sys.executable, "-c", "import core; print(core.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("value", ["native", "python"])
def test_environment_switch_selects_implementation(value: str) -> None:
    result = _implementation(value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == value


def test_unknown_implementation_is_refused_with_the_choices() -> None:
    result = _implementation("fast")
    assert result.returncode != 0
    assert "CALLBOX_CORE='fast' is not an implementation: use native, sanitize or python" in (
        result.stderr
    )


def test_the_python_twin_has_no_media_engine_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core._loader, "impl", _reference)
    monkeypatch.setattr(core._loader, "IMPLEMENTATION", "python")
    with pytest.raises(RuntimeError, match="needs the compiled core; CALLBOX_CORE=python has none"):
        core.Engine(workers=1)
