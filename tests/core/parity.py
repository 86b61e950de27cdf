"""Comparing the compiled core with its Python twin on the same input."""

from __future__ import annotations

from collections.abc import Callable


def outcome(parse: Callable[[bytes], object], data: bytes) -> object:
    """What ``parse`` makes of ``data``: its result, or the message of the ValueError it raises."""
    try:
        return parse(data)
    except ValueError as error:
        return str(error)
