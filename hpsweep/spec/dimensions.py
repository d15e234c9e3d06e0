"""The structure of a sweep's `space`: which dimensions are searched, what is fixed, the grid of a finite space.

Pure and Optuna-free, so validation can check a space (grid size, nothing searched) without importing
the search layer; `hpsweep.search.space` adds sampling and the resolution of trial configs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any, Self

from hpsweep.spec.params import Choice, IntRange, LogUniform, Uniform, is_searched, param_values
from hpsweep.spec.sections import ModelChoice

if TYPE_CHECKING:
    from hpsweep.spec.sweep_spec import SpaceSpec, SweepSpec


@dataclass(frozen=True)
class Dimension:
    """One searched dimension, named as in trial configs, with the branch it depends on (if any)."""

    name: str
    param: Any
    condition: str = ""
    path: str = ""  #: where the YAML sets it, for error messages

    def describe_range(self) -> str:
        """What is searched, without the condition: `loguniform [0.0001, 0.1]`, `choice sgd, adam`."""
        p = self.param
        if isinstance(p, Uniform):
            text = f"uniform [{p.uniform[0]:g}, {p.uniform[1]:g}]"
        elif isinstance(p, LogUniform):
            text = f"loguniform [{p.loguniform[0]:g}, {p.loguniform[1]:g}]"
        elif isinstance(p, IntRange):
            text = f"int [{p.int_[0]}, {p.int_[1]}]" + (f" step {p.step}" if p.step > 1 else "")
            text += " log" if p.log else ""
        else:
            text = "choice " + ", ".join(map(str, p.choice))
        return text

    def describe(self) -> str:
        """The range, and the branch it depends on: `uniform [0.8, 0.99]   (when optimizer = sgd)`."""
        return self.describe_range() + (f"   (when {self.condition})" if self.condition else "")


class SpaceLayout:
    """A sweep's space as dimensions: scalar knobs (the training knobs, `params`, a searched `model`)
    and branches (optimizer, scheduler), each option with parameters of its own."""

    def __init__(self, space: SpaceSpec, models: list[str] | None = None) -> None:
        self.space = space
        #: a searched architecture is a choice like any other: `model` in trial configs
        self.knobs: dict[str, Any] = {"model": Choice(choice=list(models))} if models is not None else {}
        self.knobs.update({**space.knobs(), **space.params})
        self.branches = {kind: branch.options() for kind, branch in space.branches().items()}
        self.searched_branches = {kind for kind, b in space.branches().items() if b.searched}

    @classmethod
    def of(cls, spec: SweepSpec) -> Self:

        name = spec.model.name
        return cls(spec.space, list(name.choice) if isinstance(name, ModelChoice) else None)

    def dimensions(self) -> list[Dimension]:
        dims = [Dimension(n, p, path=self._path(n)) for n, p in self.knobs.items() if is_searched(p)]
        for kind, options in self.branches.items():
            searched = kind in self.searched_branches
            if searched:
                dims.append(Dimension(kind, Choice(choice=list(options)), path=f"space.{kind}"))
            for option, params in options.items():
                cond = f"{kind} = {option}" if searched else ""
                where = f"space.{kind}.choice.{option}" if searched else f"space.{kind}"
                dims += [Dimension(f"{kind}.{option}.{n}", p, cond, f"{where}.{n}")
                         for n, p in params.items() if is_searched(p)]
        return dims

    def trained_dimensions(self) -> list[Dimension]:
        """`dimensions`, with the range of a knob that optimizer options may set for themselves (`lr`,
        `weight_decay`) widened to take in theirs: what trials report as having trained with (see
        `trained_with`), for the report's importances and figures."""
        options = self.branches.get("optimizer", {})
        dims = []
        for dim in self.dimensions():
            own = [p for params in options.values() for n, p in params.items() if n == dim.name]
            dims.append(Dimension(dim.name, _widened(dim.param, own), dim.condition, dim.path) if own else dim)
        return dims

    def _path(self, name: str) -> str:
        if name == "model":
            return "model.name"
        return f"space.{'params.' if name in self.space.params else ''}{name}"

    def fixed(self) -> dict[str, Any]:
        """Values every trial shares."""
        out = {n: p for n, p in self.knobs.items() if not is_searched(p)}
        for kind, options in self.branches.items():
            if kind not in self.searched_branches:
                option, params = next(iter(options.items()))
                out[kind] = option
                out.update({f"{kind}.{option}.{n}": p for n, p in params.items() if not is_searched(p)})
        return out

    def option_constants(self) -> dict[str, tuple[Any, str]]:
        """The fixed parameters of the options of searched branches (`optimizer.sgd.nesterov`), each with
        the condition it applies under (`optimizer = sgd`)."""
        return {f"{kind}.{option}.{n}": (p, f"{kind} = {option}")
                for kind, options in self.branches.items() if kind in self.searched_branches
                for option, params in options.items() for n, p in params.items() if not is_searched(p)}

    def continuous(self) -> list[Dimension]:
        """Searched dimensions with infinitely many values (grid search cannot take them)."""
        return [d for d in self.dimensions() if param_values(d.param) is None]

    def grid_size(self) -> int | None:
        if self.continuous():
            return None
        total = math.prod(len(param_values(p) or []) for p in self.knobs.values())
        for options in self.branches.values():
            total *= sum(math.prod(len(param_values(p) or []) for p in ps.values()) for ps in options.values())
        return total

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every distinct configuration as a flat trial config (like `sample`), branch parameters only
        where their branch is taken."""
        if self.continuous():
            names = ", ".join(d.name for d in self.continuous())
            raise ValueError(f"grid search needs finite parameters; continuous: {names}")
        axes: list[list[dict[str, Any]]] = [
            [{name: encode(v, param)} for v in param_values(param) or []] for name, param in self.knobs.items()]
        for kind, options in self.branches.items():
            axes.append([
                {kind: option, **dict(combo)}
                for option, params in options.items()
                for combo in product(*[[(f"{kind}.{option}.{n}", encode(v, p)) for v in param_values(p) or []]
                                       for n, p in params.items()])
            ])
        for combo in product(*axes):
            yield {k: v for part in combo for k, v in part.items()}


#: training knobs that an optimizer option may set for itself (`optimizer.sgd.lr`); a trial that takes the
#: option trains with the option's value, whatever the top-level knob drew
OPTION_KNOBS = ("lr", "weight_decay")


def set_by_option(config: Mapping[str, Any], name: str) -> str | None:
    """The key (`optimizer.sgd.lr`) whose value the trial trained with instead of knob `name`, if any."""
    key = f"optimizer.{config.get('optimizer')}.{name}"
    return key if name in OPTION_KNOBS and config.get(key) is not None else None


def trained_with(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config as it trained: `lr` (and `weight_decay`) show the chosen optimizer's own value where
    it sets one, so that a column means one thing in every trial: the learning rate the trial used."""
    out = dict(config)
    for name in OPTION_KNOBS:
        if name in out and (key := set_by_option(config, name)) is not None:
            out[name] = config[key]
    return out


def _widened(param: Any, others: list[Any]) -> Any:
    """`param`'s range (or choices) taking in the values or ranges in `others`."""
    if isinstance(param, Choice):
        extra = [v for o in others for v in (o.choice if isinstance(o, Choice) else [o]) if v not in param.choice]
        return Choice(choice=[*param.choice, *extra]) if extra else param
    if not isinstance(param, Uniform | LogUniform | IntRange):
        return param
    low, high = param.bounds
    for other in others:
        lo, hi = other.bounds if isinstance(other, Uniform | LogUniform | IntRange) else (
            (min(other.choice), max(other.choice)) if isinstance(other, Choice) else (other, other))
        low, high = min(low, lo), max(high, hi)
    field = "int" if isinstance(param, IntRange) else "uniform" if isinstance(param, Uniform) else "loguniform"
    return type(param).model_validate({**param.model_dump(by_alias=True), field: [low, high]})


def encode(value: Any, param: Any) -> Any:
    """Optuna's categorical values are scalars: a searched list (milestones) travels as '3,6'."""
    if isinstance(param, Choice) and isinstance(value, list):
        return ",".join(map(str, value))
    return value


def grid_size(spec: SweepSpec) -> int:
    size = SpaceLayout.of(spec).grid_size()
    if size is None:
        raise ValueError("grid search needs finite parameters")
    return size
