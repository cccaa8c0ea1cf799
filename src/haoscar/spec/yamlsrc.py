"""YAML reading that remembers the line of every key, so that each problem can be reported as FILE:LINE."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 without its surprises: ``52:54:00:12:34:56`` is a MAC, not the base-60 integer PyYAML would make
    of it, ``010`` is ten, not eight, and ``no`` / ``on`` are words (a host or domain may be called that), only
    ``true`` and ``false`` are booleans, as in YAML 1.2."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    # SafeLoader's own int constructor reads a leading 0 as octal; padding: 010 means ten.
    return int(str(loader.construct_scalar(node)).replace("_", ""))  # type: ignore[arg-type]


_SpecLoader.add_constructor(_INT, _decimal_int)
_SpecLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_SpecLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_SpecLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


@dataclass
class Located:
    """Plain data from a YAML document, plus the line of every mapping key and sequence item."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int:
        """The line of ``path``, or of its nearest ancestor that appears in the file."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)


class YamlSyntaxError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load_located(text: str) -> Located:
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        located = Located(data=None)
        if node is not None:
            located.lines[()] = node.start_mark.line + 1
            located.data = _build(loader, node, (), located)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlSyntaxError(line, f"YAML syntax error: {_explain(exc, mark)}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"YAML syntax error: {exc}") from None
    finally:
        loader.dispose()


def _explain(exc: yaml.MarkedYAMLError, mark: yaml.Mark | None) -> str:
    """PyYAML's problem text, the column, and the usual fix for the mistakes people make most."""
    problem = exc.problem or str(exc)
    where = f" (column {mark.column + 1})" if mark is not None else ""
    hint = ""
    if "'\\t'" in problem:
        hint = "; indent with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        hint = "; a value containing ': ' must be quoted, or a key is missing its own line"
    elif "another document" in problem:
        hint = "; a spec is one YAML document: remove the second '---'"
    elif "undefined alias" in problem:
        hint = "; define the anchor (&name) before using it (*name)"
    elif "could not determine a constructor" in problem:
        hint = "; remove the '!' tag, a spec holds plain values"
    elif exc.context:
        hint = f"; {exc.context} started on line {exc.context_mark.line + 1}" if exc.context_mark else ""
    return f"{problem}{where}{hint}"


def _build(loader: _SpecLoader, node: yaml.Node, path: Path_, located: Located) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in result:
                located.duplicates.append((child, line))
                continue
            located.lines[child] = line
            result[key] = _build(loader, value_node, child, located)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            located.lines[child] = item.start_mark.line + 1
            items.append(_build(loader, item, child, located))
        return items
    return loader.construct_object(node, deep=True)


def dotted(path: Path_) -> str:
    """``('clients', 0, 'start_ip')`` -> ``clients[0].start_ip``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"
