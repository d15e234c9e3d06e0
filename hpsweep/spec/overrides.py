"""`--set KEY=VALUE`: one grammar for every verb that reads a sweep file (run, resume, submit, train, space).

KEY is either a dotted path in the sweep file (`train.epochs`, `search.scheduler.grace_period`,
`data.image_size`) or a hyperparameter as `hpsweep space` names it: a training knob (`lr`), a parameter
of the sweep's own (`hidden` or `params.hidden`, for `space.params.hidden`), the architecture (`model`), a branch
(`optimizer`, `scheduler`) or one option's parameter (`optimizer.sgd.momentum`). VALUE is read as the
sweep file would read it: `1e-3` is a number, `[3, 6]` a list, `{loguniform: [1e-4, 0.1]}` a range.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from hpsweep.errors import UserError
from hpsweep.spec.options import OPTIMIZERS, SCHEDULERS
from hpsweep.spec.sweep_spec import BRANCH_DEFAULTS, TRAINING_KNOBS, SweepSpec
from hpsweep.spec.yamlio import parse_scalar

_BRANCHES = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}


class OverrideError(UserError):
    """A --set that cannot be applied; the message names the key."""


def parse_set(item: str) -> tuple[list[str], Any]:
    """`a.b=value` as (["a", "b"], the value read as YAML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise OverrideError(f"--set takes KEY=VALUE (got {item!r})")
    try:
        value = parse_scalar(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise OverrideError(f"--set {key}: {text!r} is not a YAML value ({problem})") from None
    return key.split("."), value


def apply_sets(raw: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """A copy of the sweep file's data with every --set applied, in order."""
    out = copy.deepcopy(raw)
    for item in sets:
        path, value = parse_set(item)
        key = ".".join(path)
        if path == ["model"]:  # the architecture, a hyperparameter like the others (not the whole section)
            _set_path(out, ["model", "name"], value, key)
        elif path[0] in SweepSpec.model_fields:
            _set_path(out, path, value, key)
        elif path[0] in _BRANCHES:
            _set_branch(out.setdefault("space", {}), path, value, key)
        elif len(path) == 2 and path[0] == "params":
            _set_path(out, ["space", *path], value, key)
        elif len(path) == 1 and path[0] in TRAINING_KNOBS:
            _set_path(out, ["space", path[0]], value, key)
        elif len(path) == 1 and path[0] in ((out.get("space") or {}).get("params") or {}):
            _set_path(out, ["space", "params", path[0]], value, key)
        else:
            known = [*TRAINING_KNOBS, *_BRANCHES, *((out.get("space") or {}).get("params") or {})]
            raise OverrideError(f"--set {key}: not a sweep-file section ({', '.join(SweepSpec.model_fields)}) "
                                f"nor a hyperparameter of this sweep ({', '.join(known)})")
    return out


def _set_path(data: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    node = data
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str):  # `scheduler: asha` is shorthand for `scheduler: {name: asha}`
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            where = ".".join(path[:depth + 1])
            raise OverrideError(f"--set {key}: {where} is {child!r} in the sweep file, not a mapping")
        node = child
    node[path[-1]] = value


def _set_branch(space: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    """`optimizer=sgd`, or `optimizer.sgd.momentum=0.9`: a parameter of one option, set where the sweep
    file keeps that option (the fixed branch, or its entry in a choice)."""
    kind = path[0]
    if len(path) == 1:
        space[kind] = value
        return
    if len(path) != 3 or path[1] not in _BRANCHES[kind]:
        raise OverrideError(f"--set {key}: a {kind} parameter is {kind}.<{kind}>.<parameter>, with a {kind} "
                            f"among {', '.join(_BRANCHES[kind])}")
    option, name = path[1], path[2]
    current = space.get(kind, BRANCH_DEFAULTS[kind])
    if isinstance(current, str):
        current = {"name": current}
    if isinstance(current, dict) and "choice" in current:
        choice = current["choice"]
        options = {o: {} for o in choice} if isinstance(choice, list) else dict(choice)
        if option not in options:
            raise OverrideError(f"--set {key}: the sweep chooses its {kind} among {', '.join(options)}, not {option}")
        options[option] = {**(options[option] or {}), name: value}
        space[kind] = {**current, "choice": options}
    elif isinstance(current, dict) and current.get("name") == option:
        space[kind] = {**current, name: value}
    else:
        taken = current.get("name") if isinstance(current, dict) else current
        raise OverrideError(f"--set {key}: the sweep's {kind} is {taken}, not {option} (set {kind}={option} first)")
