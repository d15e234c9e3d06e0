"""Compile a validated sweep's `space` into an Optuna define-by-run function.

Pure: no I/O and no state besides the spec. Names in a trial's config are readable and stable,
because they become MLflow params: `lr`, `batch_size`, `optimizer`, `optimizer.sgd.momentum`,
`scheduler.step.gamma`. A branch's parameters are their own dimensions and appear only in
trials that take that branch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice, product
from typing import TYPE_CHECKING, Any

from hpsweep.spec.options import OPTIMIZERS, SCHEDULERS, BranchDecl
from hpsweep.spec.params import Choice, Domain, IntRange, LogUniform, Uniform, is_searched, param_values

if TYPE_CHECKING:
    import optuna

    from hpsweep.spec import SpaceSpec, SweepSpec

_REGISTRIES: dict[str, Mapping[str, BranchDecl]] = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}


@dataclass(frozen=True)
class Dimension:
    """One searched dimension, named as in trial configs, with the branch it depends on (if any)."""

    name: str
    param: Any
    condition: str = ""
    path: str = ""  #: where the YAML sets it, for error messages

    def describe(self) -> str:
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
        return text + (f"   (when {self.condition})" if self.condition else "")


@dataclass(frozen=True)
class Branch:
    """The option a trial takes for a branch hyperparameter, with all its parameters filled in."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialParams:
    """Every hyperparameter of one trial, typed, defaults filled in, per-optimizer overrides applied."""

    lr: float
    batch_size: int
    weight_decay: float
    freeze_epochs: int
    head_lr_multiplier: float
    label_smoothing: float
    dropout: float
    grad_clip: float | None
    optimizer: Branch
    scheduler: Branch
    extra: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None  #: the architecture, when the sweep searches among several


class SearchSpace:
    """The compiled space of one sweep: define-by-run sampling, grid enumeration and trial resolution."""

    def __init__(self, space: SpaceSpec, models: list[str] | None = None) -> None:
        self._space = space
        #: a searched architecture is a choice like any other: `model` in trial configs
        self._knobs: dict[str, Any] = {"model": Choice(choice=list(models))} if models is not None else {}
        self._knobs.update({**space.knobs(), **space.params})
        self._branches = {kind: branch.options() for kind, branch in space.branches().items()}
        self._searched_branches = {kind for kind, b in space.branches().items() if b.searched}

    @classmethod
    def of(cls, spec: SweepSpec) -> SearchSpace:
        from hpsweep.spec.sections import ModelChoice

        name = spec.model.name
        return cls(spec.space, list(name.choice) if isinstance(name, ModelChoice) else None)

    # ------------------------------------------------------------ sampling

    def define_by_run(self, trial: optuna.Trial) -> dict[str, Any]:
        """For Ray Tune's OptunaSearch: suggests on `trial` and returns this trial's constants."""
        config, constants = self._draw(trial)
        return {name: config[name] for name in constants}

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The whole flat config of one trial (searched and fixed values), as a trainable receives it."""
        return self._draw(trial)[0]

    def _draw(self, trial: optuna.Trial) -> tuple[dict[str, Any], set[str]]:
        """The trial's config in drawing order, and which of its names are constants."""
        config: dict[str, Any] = {}
        constants: set[str] = set()

        def take(name: str, param: Any) -> None:
            if is_searched(param):
                config[name] = _suggest(trial, name, param)
            else:
                config[name] = param
                constants.add(name)

        for name, param in self._knobs.items():
            take(name, param)
        for kind, options in self._branches.items():
            if kind in self._searched_branches:
                chosen = config[kind] = trial.suggest_categorical(kind, list(options))
            else:
                chosen = config[kind] = next(iter(options))
                constants.add(kind)
            for pname, param in options[chosen].items():
                take(f"{kind}.{chosen}.{pname}", param)
        return config, constants

    # ------------------------------------------------------------ introspection

    def dimensions(self) -> list[Dimension]:
        dims = [Dimension(n, p, path=self._path(n)) for n, p in self._knobs.items() if is_searched(p)]
        for kind, options in self._branches.items():
            searched = kind in self._searched_branches
            if searched:
                dims.append(Dimension(kind, Choice(choice=list(options)), path=f"space.{kind}"))
            for option, params in options.items():
                cond = f"{kind} = {option}" if searched else ""
                where = f"space.{kind}.choice.{option}" if searched else f"space.{kind}"
                dims += [Dimension(f"{kind}.{option}.{n}", p, cond, f"{where}.{n}")
                         for n, p in params.items() if is_searched(p)]
        return dims

    def _path(self, name: str) -> str:
        if name == "model":
            return "model.name"
        return f"space.{'params.' if name in self._space.params else ''}{name}"

    def fixed(self) -> dict[str, Any]:
        """Values every trial shares."""
        out = {n: p for n, p in self._knobs.items() if not is_searched(p)}
        for kind, options in self._branches.items():
            if kind not in self._searched_branches:
                option, params = next(iter(options.items()))
                out[kind] = option
                out.update({f"{kind}.{option}.{n}": p for n, p in params.items() if not is_searched(p)})
        return out

    def continuous(self) -> list[Dimension]:
        """Searched dimensions with infinitely many values (grid search cannot take them)."""
        return [d for d in self.dimensions() if param_values(d.param) is None]

    def grid_size(self) -> int | None:
        if self.continuous():
            return None
        total = math.prod(len(param_values(p) or []) for p in self._knobs.values())
        for options in self._branches.values():
            total *= sum(math.prod(len(param_values(p) or []) for p in ps.values()) for ps in options.values())
        return total

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every distinct configuration as a flat trial config (like `sample`), branch parameters only
        where their branch is taken."""
        if self.continuous():
            names = ", ".join(d.name for d in self.continuous())
            raise ValueError(f"grid search needs finite parameters; continuous: {names}")
        axes: list[list[dict[str, Any]]] = [
            [{name: _encode(v, param)} for v in param_values(param) or []] for name, param in self._knobs.items()]
        for kind, options in self._branches.items():
            axes.append([
                {kind: option, **dict(combo)}
                for option, params in options.items()
                for combo in product(*[[(f"{kind}.{option}.{n}", _encode(v, p)) for v in param_values(p) or []]
                                       for n, p in params.items()])
            ])
        for combo in product(*axes):
            yield {k: v for part in combo for k, v in part.items()}

    def from_logged(self, logged: Mapping[str, str]) -> dict[str, Any]:
        """A trial's config from its MLflow params, which are text: each value read back as its dimension
        says (a choice's own value, `None` included; a float; an int), the rest as the sweep file would."""
        from hpsweep.spec.yamlio import parse_scalar

        dims = {d.name: d.param for d in self.dimensions()}
        fixed = self.fixed()
        config: dict[str, Any] = {}
        for name, text in logged.items():
            param = dims.get(name)
            if isinstance(param, Choice):
                config[name] = next((v for v in param.choice if str(_encode(v, param)) == text), parse_scalar(text))
            elif isinstance(param, Uniform | LogUniform):
                config[name] = float(text)
            elif isinstance(param, IntRange):
                config[name] = int(text)
            elif name in fixed and str(fixed[name]) == text:
                config[name] = fixed[name]
            else:
                config[name] = parse_scalar(text)
        return config

    # ------------------------------------------------------------ resolution

    def resolve(self, config: Mapping[str, Any]) -> TrialParams:
        """Typed trial parameters from a flat config; unknown keys and out-of-domain values are errors."""
        from hpsweep.spec import BRANCH_DEFAULTS, TRAINING_KNOBS

        flat = dict(config)
        values = {k: _decode(flat.pop(k, d.default), d.domain) for k, d in TRAINING_KNOBS.items()}
        branches = {kind: _resolve_branch(kind, flat, BRANCH_DEFAULTS[kind]) for kind in BRANCH_DEFAULTS}
        extra = {k: flat.pop(k) for k in self._space.params if k in flat}
        model = flat.pop("model", None)
        if model is not None and (not isinstance(self._knobs.get("model"), Choice)
                                  or model not in self._knobs["model"].choice):
            raise ValueError(f"model {model!r} is not among the sweep's model choices")
        if flat:
            raise ValueError(f"unknown hyperparameter(s): {', '.join(sorted(flat))}")
        for name, value in values.items():
            TRAINING_KNOBS[name].domain.check(value)
        opt_params = dict(branches["optimizer"].params)
        if opt_params.pop("lr", None) is not None:
            values["lr"] = branches["optimizer"].params["lr"]
        if opt_params.pop("weight_decay", None) is not None:
            values["weight_decay"] = branches["optimizer"].params["weight_decay"]
        optimizer = Branch(branches["optimizer"].name, opt_params)
        return TrialParams(**values, optimizer=optimizer, scheduler=branches["scheduler"], extra=extra, model=model)


def _resolve_branch(kind: str, flat: dict[str, Any], default: str) -> Branch:
    name = flat.pop(kind, default)
    registry = _REGISTRIES[kind]
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}")
    decl = registry[name]
    prefix = f"{kind}.{name}."
    params = {}
    for pname, declared in decl.params.items():
        value = _decode(flat.pop(prefix + pname, declared.default), declared.domain)
        if value is None and declared.required:
            raise ValueError(f"{kind} {name} needs {pname}")
        if value is not None:
            declared.domain.check(value)
        params[pname] = value
    return Branch(name, params)


def _decode(value: Any, domain: Domain) -> Any:
    """List-valued choices travel through Optuna as '3,6' strings; turn them back into lists."""
    if domain.kind == "int_list" and isinstance(value, str):
        return [int(v) for v in value.split(",")]
    return value


def _suggest(trial: optuna.Trial, name: str, param: Any) -> Any:
    if isinstance(param, Uniform):
        return trial.suggest_float(name, *param.uniform)
    if isinstance(param, LogUniform):
        return trial.suggest_float(name, *param.loguniform, log=True)
    if isinstance(param, IntRange):
        return trial.suggest_int(name, *param.int_, step=param.step, log=param.log)
    return trial.suggest_categorical(name, [_encode(v, param) for v in param.choice])


def _encode(value: Any, param: Any) -> Any:
    """Optuna's categorical values are scalars: a searched list (milestones) travels as '3,6'."""
    if isinstance(param, Choice) and isinstance(value, list):
        return ",".join(map(str, value))
    return value


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


def grid_size(spec: SweepSpec) -> int:
    size = SearchSpace.of(spec).grid_size()
    if size is None:
        raise ValueError("grid search needs finite parameters")
    return size


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
