"""Reading sweep YAML safely: size and encoding limits, no Python tags, no duplicate keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hpsweep.errors import Problem, SpecError

MAX_BYTES = 1 << 20  # a sweep file is a page of text; anything near a megabyte is a mistake

# Tags a sweep may use: the YAML core schema. Anything else (!!python/object, custom !tags) is refused.
_CORE_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
}


class _SweepLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 demands `1.0e-3`, a classic trap for lr)."""


_SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_scalar(text: str) -> Any:
    """A value typed on a command line or kept as text by MLflow, read as the sweep file would read it
    (so `1e-3` is a number, `true` a boolean, `null` None)."""
    if not text.strip():
        return None
    return yaml.load(text, Loader=_SweepLoader)


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"


def _check_nodes(node: yaml.Node, path: tuple[str, ...], problems: list[Problem]) -> None:
    """Walk the composed document: report foreign tags and duplicate keys with their field paths."""
    where = ".".join(path)
    line = node.start_mark.line + 1
    if node.tag not in _CORE_TAGS:
        problems.append(Problem(where, f"line {line}: YAML tag {node.tag!r} is not allowed in a sweep file"))
        return
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            if key == "<<":
                problems.append(Problem(where, f"line {key_node.start_mark.line + 1}: merge keys are not supported"))
                continue
            if key in seen:
                dup = ".".join((*path, key))
                problems.append(Problem(dup, f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"))
            seen.add(key)
            _check_nodes(value_node, (*path, key), problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_nodes(item, (*path, str(index)), problems)


def read_yaml(path: Path) -> dict[str, Any]:
    """Load one sweep document as plain data, or raise SpecError naming every problem found."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(source, [Problem("", f"cannot read file: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(source, [Problem("", f"file is {len(raw)} bytes; a sweep file may be at most {MAX_BYTES}")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(source, [Problem("", f"not UTF-8 text (bad byte at offset {exc.start})")]) from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    loader = _SweepLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(source, [Problem("", "file is empty; a sweep file is a YAML mapping")])
        problems: list[Problem] = []
        _check_nodes(node, (), problems)
        if problems:
            raise SpecError(source, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(source, [Problem("", f"{where}not valid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError(source, [Problem("", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(source, [Problem("", f"a sweep file is a YAML mapping of sections, got a {kind}")])
    return data
