"""Reading sweep YAML safely: size and encoding limits, no Python tags, no duplicate keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hpsweep.errors import Problem, SpecError

MAX_BYTES = 1 << 20  # a sweep file is a page of text; anything near a megabyte is a mistake
#: values a document may expand to, counting each alias as the value it repeats: a sweep file has a few
#: hundred; a few hundred bytes of nested aliases can expand to billions ("billion laughs")
MAX_NODES = 100_000
MAX_DEPTH = 50  #: nesting levels; a sweep file has five or six

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
    (so `1e-3` is a number, `true` a boolean, `null` None). yaml.YAMLError when it is not one, and for
    what a sweep file may not hold either (other tags, aliases expanding past the limits, deep nesting)."""
    if not text.strip():
        return None
    loader = _SweepLoader(text)
    try:
        _check_depth(text)
        node = loader.get_single_node()
        if node is None:
            return None
        problems: list[Problem] = []
        _check_nodes(node, (), problems, [MAX_NODES])
        if problems:
            raise yaml.YAMLError(problems[0].message)
        return loader.construct_document(node)
    except _TooLarge as exc:
        raise yaml.YAMLError(str(exc)) from None
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"


class _TooLarge(Exception):
    """The document expands past MAX_NODES values or MAX_DEPTH levels."""


def _check_nodes(node: yaml.Node, path: tuple[str, ...], problems: list[Problem], budget: list[int]) -> None:
    """Walk the composed document: report foreign tags and duplicate keys with their field paths. Each
    alias is walked as the value it repeats, against `budget`: _TooLarge once it is spent."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge(f"the document expands to more than {MAX_NODES:,} values (anchors and aliases "
                        f"repeat values); a sweep file holds a few hundred")
    if len(path) > MAX_DEPTH:
        raise _TooLarge(f"{'.'.join(path[:3])}...: nested more than {MAX_DEPTH} levels deep")
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
            _check_nodes(value_node, (*path, key), problems, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_nodes(item, (*path, str(index)), problems, budget)


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


_OPENS = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
          yaml.BlockMappingStartToken)
_CLOSES = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def _check_depth(text: str) -> None:
    """_TooLarge past MAX_DEPTH levels, from the tokens alone: PyYAML composes nested values recursively,
    and reaching Python's recursion limit that way takes a second and more."""
    scanner = _SweepLoader(text)
    depth = 0
    try:
        while (token := scanner.get_token()) is not None:
            depth += isinstance(token, _OPENS) - isinstance(token, _CLOSES)
            if depth > MAX_DEPTH:
                raise _TooLarge(f"line {token.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
    finally:
        scanner.dispose()


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    loader = _SweepLoader(text)
    try:
        _check_depth(text)
        node = loader.get_single_node()
        if node is None:
            raise SpecError(source, [Problem("", "file is empty; a sweep file is a YAML mapping")])
        problems: list[Problem] = []
        _check_nodes(node, (), problems, [MAX_NODES])
        if problems:
            raise SpecError(source, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(source, [Problem("", f"{where}not valid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError(source, [Problem("", f"not valid YAML: {exc}")]) from None
    except _TooLarge as exc:
        raise SpecError(source, [Problem("", str(exc))]) from None
    except RecursionError:  # PyYAML composes nested values recursively, before any check can run
        raise SpecError(source, [Problem("", f"nested too deeply to read (a sweep file nests five or six "
                                             f"levels; at most {MAX_DEPTH})")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(source, [Problem("", f"a sweep file is a YAML mapping of sections, got a {kind}")])
    return data


def as_yaml(value: Any) -> str:
    """A value as the sweep file would write it: `[64, 32]`, `null`, `0.001` (not Python's reprs)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
