"""Fixtures shared by the core's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import core
from core import Engine, _reference
from tests.core.engine_peers import LOOPBACK, Peer


@pytest.fixture(params=["core", "reference"])
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The public ``core`` API run on the loaded implementation, then on the Python twin.

    The public wrappers stay the same; only the private module behind them is
    swapped, so each test proves both implementations through one surface.
    """
    if request.param == "reference":
        monkeypatch.setattr(core._loader, "impl", _reference)
    return core


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An engine with two workers on loopback."""
    with Engine(workers=2, port_min=31000, port_max=31999, host=LOOPBACK) as e:
        yield e


@pytest.fixture
def peers() -> Iterator[Callable[[], Peer]]:
    """Makes far ends, closed after the test."""
    made: list[Peer] = []

    def make() -> Peer:
        made.append(Peer())
        return made[-1]

    yield make
    for peer in made:
        peer.close()
