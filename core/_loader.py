"""Picks the implementation behind ``import core`` (see the package docstring)."""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> tuple[str, ModuleType]:
    choice = os.environ.get("CALLBOX_CORE", "native")
    if choice == "native":
        from core import _core

        return choice, _core
    if choice == "sanitize":
        from core import _core_sanitize

        return choice, _core_sanitize
    if choice == "python":
        from core import _reference

        return choice, _reference
    raise ImportError(
        f"CALLBOX_CORE={choice!r} is not an implementation: use native, sanitize or python"
    )


IMPLEMENTATION, impl = _load()
"""Which implementation is loaded (``native``, ``sanitize`` or ``python``), and its module."""
