"""Checks that span sections: a trial must be able to satisfy them for every value the space can draw.

Each check takes only sections that validated on their own, so a sweep file with a typo in one
section still gets its constraint problems reported in the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

from hpsweep.errors import Problem, show_value
from hpsweep.spec.data_sources import IMAGE_SOURCES
from hpsweep.spec.params import Choice, param_extremes, param_values
from hpsweep.spec.sections import DEFAULT_TRIALS, MODELLING, TORCHVISION_MODELS

Check = Callable[..., list[Problem]]


def check_constraints(sections: dict[str, Any], partial: frozenset[str] = frozenset()) -> list[Problem]:
    """Run every check whose sections are available; `partial` sections had their bad keys dropped,
    so only checks that look at single keys (not at the whole section) may use them."""
    problems: list[Problem] = []
    for check, needs, whole in _CHECKS:
        if any(sections.get(name) is None for name in needs):
            continue
        if whole and partial.intersection(needs):
            continue
        problems += check(*(sections[name] for name in needs))
    return problems


def _branch_paths(kind: str, branch: Any) -> dict[str, str]:
    """Where each option's parameters live in the YAML, for error paths."""
    options = branch.options()
    if branch.searched:
        return {o: f"space.{kind}.choice.{o}" for o in options}
    return {o: f"space.{kind}" for o in options}


def _epoch_bounds(space: Any, train: Any) -> list[Problem]:
    """freeze_epochs and warmup_epochs must leave at least one epoch; milestones must fall inside the run."""
    problems: list[Problem] = []
    epochs = train.epochs
    if "freeze_epochs" in space.model_fields_set:
        _, high = param_extremes(space.freeze_epochs)
        if high is not None and high >= epochs:
            problems.append(Problem("space.freeze_epochs", f"must be < train.epochs ({epochs}) in every trial, "
                                    f"so the backbone trains at least one epoch (can reach {high})"))
    if "scheduler" in space.model_fields_set:
        paths = _branch_paths("scheduler", space.scheduler)
        for option, params in space.scheduler.options().items():
            if "warmup_epochs" in params:
                _, high = param_extremes(params["warmup_epochs"])
                if high is not None and high >= epochs:
                    problems.append(Problem(f"{paths[option]}.warmup_epochs",
                                            f"must be < train.epochs ({epochs}) in every trial (can reach {high})"))
            if "milestones" in params:
                problems += _milestones(params["milestones"], epochs, f"{paths[option]}.milestones")
    return problems


def _milestones(param: Any, epochs: int, path: str) -> list[Problem]:
    lists = param.choice if isinstance(param, Choice) else [param]
    for milestones in lists:
        if any(b <= a for a, b in pairwise(milestones)):
            return [Problem(path, f"milestones must increase (got {show_value(milestones)})")]
        if milestones[-1] >= epochs:
            return [Problem(path, f"every milestone must be < train.epochs ({epochs}) "
                            f"(got {show_value(milestones)})")]
    return []


def _nesterov(space: Any) -> list[Problem]:
    """torch's SGD refuses Nesterov without momentum: no trial may draw nesterov with momentum 0."""
    if "optimizer" not in space.model_fields_set:
        return []
    sgd = space.optimizer.options().get("sgd")
    if sgd is None or True not in (param_values(sgd.get("nesterov", False)) or []):
        return []
    low, _ = param_extremes(sgd.get("momentum", 0.0))
    if low is not None and low <= 0:
        path = _branch_paths("optimizer", space.optimizer)["sgd"]
        return [Problem(f"{path}.nesterov", f"nesterov needs momentum > 0 in every trial, but momentum can be {low:g}")]
    return []


def _scheduler_fits(search: Any, train: Any) -> list[Problem]:
    grace = getattr(search.scheduler, "grace_period", None)
    if grace is not None and grace > train.epochs:
        return [Problem("search.scheduler.grace_period",
                        f"must be <= train.epochs ({train.epochs}) (got {grace})")]
    return []


def _algorithm_fits(search: Any, train: Any, space: Any, model: Any) -> list[Problem]:
    from hpsweep.spec.dimensions import SpaceLayout

    problems: list[Problem] = []
    n_metrics = len(train.metrics())
    algorithm = search.algorithm
    if algorithm == "nsga2" and n_metrics < 2:
        problems.append(Problem("search.algorithm", "nsga2 optimises several metrics; train.metric names one "
                                "(list two or more, or use tpe)"))
    if algorithm == "cmaes" and n_metrics > 1:
        problems.append(Problem("search.algorithm", f"cmaes optimises one metric; train.metric names {n_metrics}"))
    if search.startup_trials is not None:
        if algorithm not in MODELLING:
            problems.append(Problem("search.startup_trials", f"{algorithm} does not model past trials; start-up "
                                    f"trials are for {', '.join(MODELLING)}"))
        elif search.startup_trials >= (trials := search.num_trials or DEFAULT_TRIALS):
            problems.append(Problem("search.startup_trials", f"{search.startup_trials} start-up trials leave none "
                                    f"of the {trials} trials to {algorithm} (lower it, or use algorithm: random)"))
    if search.warm_start and (n_metrics > 1 or algorithm == "grid"):
        problems.append(Problem("search.warm_start", "earlier trials guide a sampler of one metric; "
                                + (f"train.metric names {n_metrics}" if n_metrics > 1 else "grid search tries "
                                   "every point whatever came before")))
    if n_metrics > 1 and search.scheduler.name != "fifo":
        problems.append(Problem("search.scheduler", f"{search.scheduler.name} stops trials by one metric; "
                                f"with {n_metrics} metrics use fifo"))
    compiled = SpaceLayout(space, None if isinstance(model.name, str) else model.names())
    if not compiled.dimensions():
        if algorithm != "grid" and (search.num_trials or 1) > 1:
            problems.append(Problem("space", "nothing is searched: every value is fixed, so every trial "
                                    "would be the same (search something, or set search.num_trials: 1)"))
        return problems
    if algorithm == "grid":
        for dim in compiled.continuous():
            problems.append(Problem(dim.path, "grid search needs finite values (choice or int), "
                                    "not a continuous range"))
        size = compiled.grid_size()
        if size is not None and search.num_trials and search.num_trials > size:
            problems.append(Problem("search.num_trials", f"the grid has only {size} distinct "
                                    f"configurations (got {search.num_trials})"))
    return problems


def _model_fits_data(model: Any, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    names = model.names()
    if not isinstance(data, IMAGE_SOURCES) and names != ["mlp"]:
        problems.append(Problem("model.name", f"{data.source} data is a table: only mlp fits it "
                                f"(got {', '.join(repr(n) for n in names)})"))
    if model.pretrained == "imagenet" and any(n not in TORCHVISION_MODELS for n in names):
        problems.append(Problem("model.pretrained", f"imagenet weights exist for {', '.join(TORCHVISION_MODELS)} "
                                f"(got model {', '.join(repr(n) for n in names)})"))
    return problems


#: (check, sections it reads, whether it needs those sections whole)
_CHECKS: list[tuple[Check, tuple[str, ...], bool]] = [
    (_epoch_bounds, ("space", "train"), False),
    (_nesterov, ("space",), False),
    (_scheduler_fits, ("search", "train"), False),
    (_algorithm_fits, ("search", "train", "space", "model"), True),
    (_model_fits_data, ("model", "data"), False),
]
