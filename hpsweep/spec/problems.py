"""Turn pydantic's validation errors into one clear line per problem, named by the YAML field path."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from hpsweep.errors import Problem, show_value
from hpsweep.spec.strict import did_you_mean

_NO_GOT = {"unknown_key", "missing", "param_kind"}
#: union tags carry these markers (see params.py, branches.py, sections.py); they are not YAML keys
_TAG = re.compile(r"^(~|=)|^fixed$")
_NAME_KEY = {"unknown_data_source": "source"}


def problems_from(exc: ValidationError, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for error in exc.errors():
        path = _yaml_path(data, error["loc"], keep_last=error["type"] == "missing")
        problem = _explain(error, path)
        if problem.path in seen:  # one line per field: the first reason is enough to fix it
            continue
        seen.add(problem.path)
        problems.append(problem)
    return problems


def _yaml_path(data: Any, loc: tuple[Any, ...], keep_last: bool) -> list[str]:
    """The path as the user wrote it: union tags and union member labels dropped."""
    parts: list[str] = []
    current = data
    for index, segment in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(segment, str) and _TAG.search(segment):
            continue
        if _has(current, segment):
            current = current[segment]
        elif isinstance(current, list) and segment in current:  # `choice: [sgd, step]` shorthand
            current = None
        elif isinstance(current, str) and not last:  # `scheduler: asha` shorthand
            current = None
            continue
        elif not (last and keep_last):
            continue
        parts.append(str(segment))
    return parts


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def _explain(error: Any, path: list[str]) -> Problem:
    kind, message, value = error["type"], error["msg"], error["input"]
    if kind.startswith("unknown_") and kind != "unknown_key":
        return _unknown_name(kind, message, value, path)
    if kind == "literal_error" and isinstance(value, str):
        options = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        message = f"unknown value {value!r}{did_you_mean(value, options)} (choose from: {', '.join(options)})"
        return Problem(".".join(path), message)
    if kind == "param_kind" and isinstance(value, dict):
        unknown = [k for k in value if k not in ("uniform", "loguniform", "int", "choice", "step", "log")]
        if unknown:
            hint = did_you_mean(str(unknown[0]), ["uniform", "loguniform", "int", "choice"])
            message += f"; unknown key {unknown[0]!r}{hint}"
        else:
            message += f" (got {', '.join(map(str, value))})"
    if kind == "missing":
        message = "required key is missing"
    if kind in ("too_long", "too_short", "missing") and path and path[-1].isdigit():
        path = path[:-1]  # a tuple given too few items reports the missing index
    if kind in ("too_long", "too_short", "missing") and path and path[-1] in ("uniform", "loguniform", "int"):
        message = f"{path[-1]} takes two bounds, [low, high]"
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    message = re.sub(r"^(Input|List|String|Value|Dictionary|Tuple) should", "should", message)
    if kind not in _NO_GOT and "(got" not in message and repr(value) not in message:
        message += f" (got {show_value(value)})"
    return Problem(".".join(path), message)


def _unknown_name(kind: str, message: str, value: Any, path: list[str]) -> Problem:
    """An unknown optimizer, scheduler or data source: point at its name and suggest the closest."""
    key = _NAME_KEY.get(kind, "name")
    options = re.findall(r"choose from: ([^)]*)", message)[0].split(", ")
    what = message.split(" (")[0]
    name = value.get(key) if isinstance(value, dict) else None
    if name is None:
        return Problem(".".join(path), f"needs {key!r}: one of {', '.join(options)}"
                       + (" (or a choice)" if kind in ("unknown_optimizer", "unknown_scheduler") else ""))
    return Problem(".".join([*path, key]),
                   f"{what} {name!r}{did_you_mean(str(name), options)} (choose from: {', '.join(options)})")
