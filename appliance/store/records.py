"""Typed records in the store: a record kind is a frozen dataclass with a sub-database.

A value is msgpack of ``{"v": schema_version, "d": data}``. The data is the
same plain form the YAML document and the REST API use (``schema.dump``), so
one schema serves all three. When a record's fields change, its
``SCHEMA_VERSION`` goes up and a migration (see ``migrations``) rewrites the
stored values when the store opens.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Protocol, TypeVar

import msgpack

from appliance.schema import ConfigError, dump, parse_record


class Record(Protocol):
    """What the store needs of a record class."""

    KIND: ClassVar[str]
    """The sub-database name."""
    SCHEMA_VERSION: ClassVar[int]

    def key(self) -> bytes:
        """The record's key in its sub-database."""
        ...


R = TypeVar("R", bound=Record)


class StoreError(RuntimeError):
    """The store cannot be used as it is: names the database and what to do."""


def encode(record: Record) -> bytes:
    """The stored bytes of ``record``."""
    packed: bytes = msgpack.packb({"v": type(record).SCHEMA_VERSION, "d": dump(record)})
    return packed


def decode_envelope(raw: bytes) -> tuple[int, Any]:
    """The schema version and plain data in a stored value."""
    envelope = msgpack.unpackb(raw)
    return int(envelope["v"]), envelope["d"]


def encode_envelope(version: int, data: Any) -> bytes:
    """Stored bytes for plain data at ``version`` (used by migrations)."""
    packed: bytes = msgpack.packb({"v": version, "d": data})
    return packed


def decode_cached(cls: type[R], raw: bytes) -> R:
    """``decode`` for single-record reads, remembering the last few thousand.

    Records are frozen values, so the same stored bytes always give an equal
    record and one decoded instance can serve every read of them: the
    switch reads an extension for each REGISTER and INVITE, and validating
    a record against its schema costs tens of microseconds. Scans do not go
    through it, so a report over a month of call records cannot push the
    configuration out or keep those records in memory.
    """
    return _decode_cached(cls, raw)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=4096)
def _decode_cached(cls: type[R], raw: bytes) -> R:
    return decode(cls, raw)


def decode(cls: type[R], raw: bytes) -> R:
    """The record of class ``cls`` stored as ``raw``."""
    version, data = decode_envelope(raw)
    if version != cls.SCHEMA_VERSION:
        raise StoreError(
            f"a {cls.KIND} record has schema version {version}, this Callbox reads "
            f"{cls.SCHEMA_VERSION}; reopen the store so migrations run"
        )
    try:
        return parse_record(cls, data, cls.KIND)
    except ConfigError as exc:
        raise StoreError(f"a stored {cls.KIND} record does not fit its schema: {exc}") from None
