"""A hyperparameter as the sweep YAML writes it: a constant, or a distribution to search.

The same key takes either form, so fixing a searched value (or searching a fixed one) is a
one-line change: `lr: 0.01` versus `lr: {loguniform: [1.0e-4, 0.1]}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, WithJsonSchema, model_validator

from hpsweep.errors import show_value
from hpsweep.spec.strict import StrictModel

Scalar = bool | int | float | str | None
#: choice values may also be short lists (e.g. multistep milestones)
ChoiceValue = Scalar | list[int | float]


class Uniform(StrictModel):
    """A real number drawn uniformly from [low, high]."""

    uniform: tuple[float, float] = Field(description="[low, high]: drawn uniformly between them")

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        _check_order(*self.uniform)
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        return self.uniform


class LogUniform(StrictModel):
    """A positive real number drawn uniformly on a log scale from [low, high]."""

    loguniform: tuple[float, float] = Field(
        description="[low, high], both > 0: drawn uniformly on a log scale (learning rates, weight decay)")

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        low, high = self.loguniform
        if low <= 0:
            raise ValueError(f"loguniform bounds must be > 0 (got low {show_value(low)})")
        _check_order(low, high)
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        return self.loguniform


class IntRange(StrictModel):
    """An integer drawn from [low, high] (both included), on a grid of `step` or on a log scale."""

    int_: tuple[int, int] = Field(alias="int", description="[low, high]: an integer between them, both included")
    step: int = Field(1, ge=1, description="spacing of the allowed values, counted from low")
    log: bool = Field(False, description="draw on a log scale (needs low >= 1 and step 1)")

    @model_validator(mode="after")
    def _consistent(self) -> IntRange:
        low, high = self.int_
        _check_order(low, high)
        if self.log and low < 1:
            raise ValueError(f"int with log: true needs low >= 1 (got {low})")
        if self.log and self.step != 1:
            raise ValueError("int with log: true cannot also have a step")
        if (high - low) % self.step:
            below = high - (high - low) % self.step
            raise ValueError(f"int range [{low}, {high}] does not end on a multiple of step {self.step} "
                             f"from low; use high {below} or {below + self.step}")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        return self.int_

    def values(self) -> list[int]:
        return list(range(self.int_[0], self.int_[1] + 1, self.step))


class Choice(StrictModel):
    """One of a list of values (categorical)."""

    choice: list[ChoiceValue] = Field(min_length=1, description="the values to choose among")

    @model_validator(mode="after")
    def _distinct(self) -> Choice:
        seen: list[Any] = []
        for value in self.choice:
            if any(_same(value, other) for other in seen):
                raise ValueError(f"choice lists {show_value(value)} twice")
            seen.append(value)
        return self


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _check_order(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"bounds must be finite numbers (got [{low}, {high}])")
    if low >= high:
        raise ValueError(f"low must be below high (got low {show_value(low)}, high {show_value(high)})")


Searched = Uniform | LogUniform | IntRange | Choice
_KINDS = {"uniform": Uniform, "loguniform": LogUniform, "int": IntRange, "choice": Choice}


def _plain_value(value: Any) -> Any:
    """A constant is a scalar or a short list of numbers; mappings are searched values."""
    ok = isinstance(value, bool | int | float | str) or value is None or (
        isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
    if not ok:
        raise ValueError(f"a fixed value is a number, string, true/false, null or list of numbers "
                         f"(got {show_value(value)})")
    return value


def _param_tag(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "fixed"
    kinds = [key for key in value if key in _KINDS]
    return f"~{kinds[0]}" if len(kinds) == 1 else None


#: A value written in the YAML: a constant, or one of the distributions above.
Param = Annotated[
    Annotated[Annotated[Any, AfterValidator(_plain_value),
                        WithJsonSchema({"type": ["number", "string", "boolean", "null", "array"],
                                        "items": {"type": "number"}})], Tag("fixed")]
    | Annotated[Uniform, Tag("~uniform")]
    | Annotated[LogUniform, Tag("~loguniform")]
    | Annotated[IntRange, Tag("~int")]
    | Annotated[Choice, Tag("~choice")],
    Discriminator(
        _param_tag,
        custom_error_type="param_kind",
        custom_error_message="a searched value is a mapping with exactly one of: uniform, loguniform, int, choice",
    ),
]


def is_searched(param: Any) -> bool:
    return isinstance(param, Searched)


@dataclass(frozen=True)
class Domain:
    """The values a hyperparameter may take; checked for constants, ranges and every choice."""

    kind: Literal["float", "int", "bool", "int_list"]
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    le: float | None = None
    nullable: bool = False
    help: str = ""

    def describe(self) -> str:
        noun = {"float": "a number", "int": "an integer", "bool": "true or false",
                "int_list": "a list of integers"}[self.kind]
        limits = [f"{op} {_num(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<", self.lt), ("<=", self.le))
                  if v is not None]
        text = noun + (" " + " and ".join(limits) if limits else "")
        return text + (" (or null)" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int_list":
            return (isinstance(value, list) and len(value) > 0
                    and all(isinstance(v, int) and not isinstance(v, bool) and self._in_limits(v) for v in value))
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        return math.isfinite(value) and self._in_limits(value)

    def _in_limits(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.lt is None or v < self.lt) and (self.le is None or v <= self.le))

    def check(self, param: Any) -> Any:
        """Raise ValueError naming what is wrong if `param` can produce a value outside the domain."""
        if isinstance(param, Choice):
            bad = [v for v in param.choice if not self.accepts(v)]
            if bad:
                raise ValueError(f"every choice must be {self.describe()} (got {show_value(bad[0])})")
        elif isinstance(param, Uniform | LogUniform):
            if self.kind != "float":
                raise ValueError(f"must be {self.describe()}: search it with int or choice, not "
                                 f"{type(param).__name__.lower()}")
            self._check_bounds(param.bounds)
        elif isinstance(param, IntRange):
            if self.kind not in ("int", "float"):
                raise ValueError(f"must be {self.describe()}: search it with choice, not int")
            self._check_bounds(param.bounds)
        elif not self.accepts(param):
            hint = f"; to search these values write {{choice: {param}}}" if isinstance(param, list) else ""
            raise ValueError(f"must be {self.describe()} (got {show_value(param)}){hint}")
        return param

    def _check_bounds(self, bounds: tuple[float, float]) -> None:
        bad = [b for b in bounds if not self.accepts(b)]
        if bad:
            raise ValueError(f"range must stay within {self.describe()} (got bound {show_value(bad[0])})")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def knob(domain: Domain) -> Any:
    """The pydantic type of a hyperparameter whose values must lie in `domain`."""
    return Annotated[Param, AfterValidator(domain.check), Field(description=domain.help or domain.describe())]


def param_values(param: Any) -> list[Any] | None:
    """Every value a parameter can take, or None when it is continuous."""
    if isinstance(param, Choice):
        return list(param.choice)
    if isinstance(param, IntRange):
        return param.values()
    if isinstance(param, Uniform | LogUniform):
        return None
    return [param]


def param_extremes(param: Any) -> tuple[Any, Any]:
    """Smallest and largest value a numeric parameter can take (for constraints such as freeze < epochs)."""
    if isinstance(param, Uniform | LogUniform | IntRange):
        return param.bounds
    values = param_values(param) or []
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return (min(numbers), max(numbers)) if numbers else (None, None)
