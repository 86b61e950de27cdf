"""docs/media.md's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import core

DOC = Path(__file__).resolve().parents[2] / "docs" / "media.md"


@pytest.mark.skipif(core.IMPLEMENTATION == "python", reason="the Python twin has no media engine")
def test_the_bridge_example_in_the_media_doc_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    exec(compile(example, str(DOC), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines[:3]] == ["True"] * 3
    assert lines[3].startswith("received 3, lost 0, MOS ")
