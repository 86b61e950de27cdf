"""Fixtures shared by the core's tests."""

from __future__ import annotations

from types import ModuleType

import pytest

import core
from core import _reference


@pytest.fixture(params=["core", "reference"])
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The public ``core`` API run on the loaded implementation, then on the Python twin.

    The public wrappers stay the same; only the private module behind them is
    swapped, so each test proves both implementations through one surface.
    """
    if request.param == "reference":
        monkeypatch.setattr(core._loader, "impl", _reference)
    return core
