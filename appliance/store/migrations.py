"""Schema migrations, run when the store opens.

Each record kind's stored schema version is kept in the ``meta`` sub-database.
A migration turns the plain data of one version into the next; the store runs
the chain for every record of a kind, in one write transaction, so a crash
mid-migration leaves the old data intact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Migration = Callable[[Any], Any]


def _user_v2(data: Any) -> Any:
    """users 1 -> 2: ``must_change_password`` added; existing passwords are the users' own."""
    return {**data, "must_change_password": False}


def _call_v2(data: Any) -> Any:
    """calls 1 -> 2: ``direction`` added (outbound calls have records too); earlier records
    are all of inbound calls."""
    return {**data, "direction": "inbound"}


# kind -> {from_version: function giving the data of from_version + 1}
MIGRATIONS: Mapping[str, Mapping[int, Migration]] = {
    "users": {1: _user_v2},
    "calls": {1: _call_v2},
}
