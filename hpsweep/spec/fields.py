"""Field types that several sections share: plain names, durations, and unions picked by a key's value."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Discriminator, Tag

from hpsweep.spec.strict import StrictModel

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


_NAME = re.compile(NAME_PATTERN)


def check_name(value: str) -> str:
    """Sweep and model names end up in paths and MLflow names: keep them plain."""
    if not _NAME.match(value):
        raise ValueError(f"use letters, digits, '_', '.' and '-' (up to 100), starting with a letter or digit "
                         f"(got {value!r})")
    return value


ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"  #: what MLflow accepts as a registered model's alias


def check_alias(value: str) -> str:
    if not re.match(ALIAS_PATTERN, value):
        raise ValueError(f"an alias is a letter or '_' then up to 63 letters, digits, '_' or '-' (got {value!r})")
    return value


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h)?\s*$")


def duration(value: Any) -> Any:
    """`time_budget: 90`, `90s`, `30m` or `2h`; seconds as a number."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"a duration is seconds or a number with s, m or h (got {value!r})")
        return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    return value


def _shorthand(value: Any) -> Any:
    """`scheduler: asha` is shorthand for `scheduler: {name: asha}`."""
    return {"name": value} if isinstance(value, str) else value


def named_union(kind: str, key: str, *members: type[StrictModel]) -> Any:
    """A union picked by the value of `key` (data sources by `source`, schedulers by `name`)."""
    tags = {m.model_fields[key].annotation.__args__[0]: m for m in members}  # type: ignore[union-attr]

    def tag(value: Any) -> str | None:
        name = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        return f"={name}" if isinstance(name, str) and name in tags else None  # not a name: pydantic reports it

    union = Annotated[
        Union[tuple(Annotated[m, Tag(f"={n}")] for n, m in tags.items())],  # noqa: UP007
        Discriminator(tag, custom_error_type=f"unknown_{kind.replace(' ', '_')}",
                      custom_error_message=f"unknown {kind} (choose from: {', '.join(tags)})"),
    ]
    return Annotated[union, BeforeValidator(_shorthand, json_schema_input_type=union | Literal[tuple(tags)])]
