"""Optuna samplers for `search.algorithm`, and the first configurations a sweep draws (for `hpsweep space`)."""

from __future__ import annotations

import warnings
from itertools import islice
from typing import TYPE_CHECKING, Any

from hpsweep.search.space import SearchSpace

if TYPE_CHECKING:
    import optuna

    from hpsweep.spec.sweep_spec import SweepSpec


def first_configs(spec: SweepSpec, count: int) -> list[dict[str, Any]]:
    """The configurations a sweep's first trials get, before any result could steer the sampler."""
    space = SearchSpace.of(spec)
    if spec.search.algorithm == "grid":
        return list(islice(space.grid(), count))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if m == "max" else "minimize" for m in spec.train.modes()]
    study = optuna.create_study(sampler=make_sampler(spec), directions=directions)
    return [space.sample(study.ask()) for _ in range(count)]


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for `search.algorithm`, seeded from search.seed or train.seed."""
    import optuna

    seed = spec.search.seed if spec.search.seed is not None else spec.train.seed
    startup = {} if spec.startup_trials is None else {"n_startup_trials": spec.startup_trials}
    samplers = optuna.samplers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        match spec.search.algorithm:
            case "tpe":
                # multivariate + group model conditional spaces jointly; constant_liar keeps
                # concurrent trials from piling onto the same point.
                return samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True, **startup)
            case "random":
                return samplers.RandomSampler(seed=seed)
            case "qmc":
                return samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False,
                                           warn_asynchronous_seeding=False)
            case "grid":
                from hpsweep.search.grid import GridSampler

                return GridSampler(seed=seed)
            case "cmaes":
                return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **startup)
            case "gp":
                return samplers.GPSampler(seed=seed, warn_independent_sampling=False, **startup)
            case "nsga2":
                return samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown algorithm {spec.search.algorithm!r}")  # pragma: no cover - Literal-checked
