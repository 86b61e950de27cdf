"""The configuration as one YAML document, with line numbers in every error.

PyYAML's loaders drop positions and silently keep the last of two equal keys.
Here the document is composed to nodes, turned into plain data while the line
of every key is noted by its dotted path, and only then validated; a schema
error is reported at the line of the key it names.
"""

from __future__ import annotations

from typing import Any

import yaml

from appliance.config.records import Configuration
from appliance.schema import ConfigError, dump, join, parse_record


def _plain(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("keys must be plain text", path, key_node.start_mark.line + 1)
            key = str(key_node.value)
            child = join(path, key)
            if key in result:
                raise ConfigError(
                    f"the key '{key}' appears twice (first on line {lines[child]})",
                    child,
                    key_node.start_mark.line + 1,
                )
            lines[child] = key_node.start_mark.line + 1
            result[key] = _plain(value_node, child, lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, join(path, i), lines) for i, item in enumerate(node.value)]
    # Scalars: let PyYAML's safe constructor resolve the tag (int, bool, null, ...).
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("")


def load_document(text: str, source: str = "<config>") -> Configuration:
    """Parse and validate a YAML configuration document.

    Raises ``ConfigError`` naming the source, line and key of the first problem.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML: {problem}", "", line, source) from None
    if node is None:
        return Configuration()
    lines: dict[str, int] = {}
    try:
        data = _plain(node, "", lines)
        return parse_record(Configuration, data)
    except ConfigError as exc:
        raise exc.located(source, exc.line or _line_of(exc.path, lines)) from None


def dump_document(configuration: Configuration) -> str:
    """The YAML text of ``configuration``: sections in a fixed order, keys as declared."""
    header = (
        "# Callbox configuration (callbox config export); import with: callbox config import FILE\n"
    )
    body = yaml.safe_dump(dump(configuration), sort_keys=False, allow_unicode=True, width=100)
    return header + body
