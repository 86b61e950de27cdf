"""Typed records from untyped data, with errors a user can act on.

One small validator serves every place where outside data becomes a typed
record: the TOML settings and ``CALLBOX_*`` variables, the YAML configuration
document, the store's msgpack values and (later) the REST API. Records are
frozen dataclasses; constraints ride on ``Annotated`` metadata. Errors are
``ConfigError`` with the dotted path of the offending key
(``queues[1].ring_timeout``), what is allowed, and where known the line.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Input that does not fit the schema: names the key, the problem and what is allowed."""

    def __init__(
        self, message: str, path: str = "", line: int | None = None, source: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.source = source

    def located(self, source: str | None, line: int | None) -> ConfigError:
        """A copy that also says which file and line the problem is on."""
        return ConfigError(self.message, self.path, line, source)

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


@dataclass(frozen=True)
class Range:
    """Inclusive numeric bounds."""

    min: float | None = None
    max: float | None = None

    def check(self, value: float, path: str) -> None:
        """Raise ``ConfigError`` if ``value`` is out of bounds."""
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            low = self.min if self.min is not None else "-inf"
            high = self.max if self.max is not None else "inf"
            raise ConfigError(f"must be between {low} and {high}, got {value!r}", path)


@dataclass(frozen=True)
class Pattern:
    """A full-match regular expression, with a description of it for error messages."""

    regex: str
    description: str

    def check(self, value: str, path: str) -> None:
        """Raise ``ConfigError`` unless ``value`` matches in full."""
        if not re.fullmatch(self.regex, value):
            raise ConfigError(f"must be {self.description}, got {value!r}", path)


@dataclass(frozen=True)
class Length:
    """Bounds on the length of a string or list."""

    min: int = 0
    max: int | None = None

    def check(self, value: str | list[Any] | dict[str, Any], path: str) -> None:
        """Raise ``ConfigError`` if ``value`` is too short or too long."""
        if len(value) < self.min or (self.max is not None and len(value) > self.max):
            bound = f"{self.min}..{self.max}" if self.max is not None else f"at least {self.min}"
            raise ConfigError(f"must have {bound} items, got {len(value)}", path)


@dataclass(frozen=True)
class Tagged:
    """Marks a union of dataclasses told apart by the value of ``key`` (each has ``TAG``)."""

    key: str = "type"


NAME = Pattern(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "1-64 letters, digits, '_', '.' or '-'")
Name = typing.Annotated[str, NAME]


def join(path: str, key: str | int) -> str:
    """The path of ``key`` inside ``path`` (``queues`` + 1 -> ``queues[1]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _describe(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp is type(None):
        return "empty"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _check_constraints(value: Any, metadata: tuple[Any, ...], path: str) -> None:
    for constraint in metadata:
        check = getattr(constraint, "check", None)
        if check is not None:
            check(value, path)


def _from_string(text: str, tp: Any, path: str) -> Any:
    """Coerce an environment variable's text to ``tp`` (ints, floats, bools; others stay text)."""
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"must be true or false (1/0, yes/no, on/off), got {text!r}", path)
    if tp is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(f"must be an integer, got {text!r}", path) from None
    if tp is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ConfigError(f"must be a number, got {text!r}", path) from None
    return text


def parse(tp: Any, data: Any, path: str = "", *, from_strings: bool = False) -> Any:
    """Validate ``data`` against the type ``tp`` and build the typed value.

    ``from_strings`` coerces scalar text (environment variables) to the
    declared type first. Raises ``ConfigError`` naming the path on any misfit.
    """
    metadata: tuple[Any, ...] = ()
    if typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        metadata = tuple(extra)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _parse_union(tp, metadata, data, path, from_strings)
    if from_strings and isinstance(data, str) and tp in (bool, int, float):
        data = _from_string(data, tp, path)
    value = _parse_plain(tp, origin, data, path, from_strings)
    _check_constraints(value, metadata, path)
    return value


def _parse_union(
    tp: Any, metadata: tuple[Any, ...], data: Any, path: str, from_strings: bool
) -> Any:
    members = typing.get_args(tp)
    tag = next((m for m in metadata if isinstance(m, Tagged)), None)
    if tag is not None:
        if not isinstance(data, Mapping):
            raise ConfigError("must be a mapping", path)
        choices = {cls.TAG: cls for cls in members}
        kind = data.get(tag.key)
        if kind not in choices:
            allowed = ", ".join(sorted(choices))
            raise ConfigError(f"'{tag.key}' must be one of {allowed}, got {kind!r}", path)
        return parse(choices[kind], {k: v for k, v in data.items() if k != tag.key}, path)
    if data is None and type(None) in members:
        return None
    others = [m for m in members if m is not type(None)]
    if len(others) == 1:
        return parse(others[0], data, path, from_strings=from_strings)
    errors = []
    for member in others:
        try:
            return parse(member, data, path, from_strings=from_strings)
        except ConfigError as exc:
            errors.append(exc.message)
    raise ConfigError(f"must be {_describe(tp)}: " + "; ".join(errors), path)


def _parse_plain(tp: Any, origin: Any, data: Any, path: str, from_strings: bool) -> Any:
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(data, list):
            raise ConfigError(f"must be a list, got {_kind(data)}", path)
        return [
            parse(item_type, item, join(path, i), from_strings=from_strings)
            for i, item in enumerate(data)
        ]
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a mapping, got {_kind(data)}", path)
        return {
            parse(key_type, str(k), join(path, str(k))): parse(
                value_type, v, join(path, str(k)), from_strings=from_strings
            )
            for k, v in data.items()
        }
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return parse_record(tp, data, path, from_strings=from_strings)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise ConfigError(f"must be {_describe(tp)}, got {data!r}", path) from None
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, float, bool):
        # bool is an int in Python; a config value of true is not a port number.
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ConfigError(f"must be {_describe(tp)}, got {_kind(data)} {data!r}", path)
        return data
    raise TypeError(f"schema type {tp!r} at {path} is not supported")


def _kind(data: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    if data is None:
        return "nothing"
    if isinstance(data, Mapping):
        return "a mapping"
    if isinstance(data, list):
        return "a list"
    return names.get(type(data), type(data).__name__)


_RECORD_FIELDS: dict[type, tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]] = {}


def _record_fields(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A dataclass's resolved type hints and its init fields by name.

    Resolving the hints evaluates every annotation string: done once per
    class, since a record is parsed on each store read.
    """
    found = _RECORD_FIELDS.get(cls)
    if found is None:
        assert dataclasses.is_dataclass(cls)
        hints = typing.get_type_hints(cls, include_extras=True)
        found = hints, {f.name: f for f in dataclasses.fields(cls) if f.init}
        _RECORD_FIELDS[cls] = found
    return found


def parse_record(cls: type[T], data: Any, path: str = "", *, from_strings: bool = False) -> T:
    """Build the dataclass ``cls`` from a mapping; unknown and missing keys are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"must be a mapping, got {_kind(data)}", path)
    hints, fields = _record_fields(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(str(key), list(fields)), join(path, str(key)))
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            values[name] = parse(
                hints[name], data[name], join(path, name), from_strings=from_strings
            )
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"the key '{name}' is required ({_describe(hints[name])})", path)
    try:
        record = cls(**values)
    except ConfigError as exc:
        raise ConfigError(exc.message, join(path, exc.path) if exc.path else path) from None
    return record


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    guess = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    return f"unknown key '{key}'{hint} (allowed: {', '.join(allowed)})"


def dump(value: Any) -> Any:
    """The plain data form of a record (the inverse of ``parse``): for YAML, msgpack, JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        tag = getattr(type(value), "TAG", None)
        if tag is not None:
            out["type"] = tag
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if field.metadata.get("dump") is False or item is None:
                continue
            out[field.name] = dump(item)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value
