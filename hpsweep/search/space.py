"""A validated sweep's `space` compiled for Optuna (define-by-run) and for trials (typed parameters).

Pure: no I/O and no state besides the spec. Names in a trial's config are readable and stable,
because they become MLflow params: `lr`, `batch_size`, `optimizer`, `optimizer.sgd.momentum`,
`scheduler.step.gamma`. A branch's parameters are their own dimensions and appear only in
trials that take that branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpsweep.spec.dimensions import Dimension, SpaceLayout, encode
from hpsweep.spec.options import OPTIMIZERS, SCHEDULERS, BranchDecl
from hpsweep.spec.params import Choice, Domain, IntRange, LogUniform, Uniform, is_searched
from hpsweep.spec.sweep_spec import BRANCH_DEFAULTS, TRAINING_KNOBS
from hpsweep.spec.yamlio import parse_scalar

if TYPE_CHECKING:
    import optuna

_REGISTRIES: dict[str, Mapping[str, BranchDecl]] = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}


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


class SearchSpace(SpaceLayout):
    """The compiled space of one sweep: define-by-run sampling for Optuna, and typed trial parameters
    from a flat config (what a trainable receives, or what MLflow logged)."""

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

        for name, param in self.knobs.items():
            take(name, param)
        for kind, options in self.branches.items():
            if kind in self.searched_branches:
                chosen = config[kind] = trial.suggest_categorical(kind, list(options))
            else:
                chosen = config[kind] = next(iter(options))
                constants.add(kind)
            for pname, param in options[chosen].items():
                take(f"{kind}.{chosen}.{pname}", param)
        return config, constants

    def from_logged(self, logged: Mapping[str, str]) -> dict[str, Any]:
        """A trial's config from its MLflow params, which are text: each value read back as its dimension
        says (a choice's own value, `None` included; a float; an int), the rest as the sweep file would."""
        dims = {d.name: d.param for d in self.dimensions()}
        fixed = self.fixed()
        config: dict[str, Any] = {}
        for name, text in logged.items():
            param = dims.get(name)
            if isinstance(param, Choice):
                config[name] = next((v for v in param.choice if str(encode(v, param)) == text), parse_scalar(text))
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
        flat = dict(config)
        values = {k: _decode(flat.pop(k, d.default), d.domain) for k, d in TRAINING_KNOBS.items()}
        branches = {kind: _resolve_branch(kind, flat, BRANCH_DEFAULTS[kind]) for kind in BRANCH_DEFAULTS}
        extra = {k: flat.pop(k) for k in self.space.params if k in flat}
        model = flat.pop("model", None)
        if model is not None and (not isinstance(self.knobs.get("model"), Choice)
                                  or model not in self.knobs["model"].choice):
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


def distribution(param: Any) -> Any:
    """The Optuna distribution `_suggest` draws a searched parameter from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, Uniform):
        return FloatDistribution(*param.uniform)
    if isinstance(param, LogUniform):
        return FloatDistribution(*param.loguniform, log=True)
    if isinstance(param, IntRange):
        return IntDistribution(*param.int_, step=param.step, log=param.log)
    return CategoricalDistribution([encode(v, param) for v in param.choice])


def _suggest(trial: optuna.Trial, name: str, param: Any) -> Any:
    if isinstance(param, Uniform):
        return trial.suggest_float(name, *param.uniform)
    if isinstance(param, LogUniform):
        return trial.suggest_float(name, *param.loguniform, log=True)
    if isinstance(param, IntRange):
        return trial.suggest_int(name, *param.int_, step=param.step, log=param.log)
    return trial.suggest_categorical(name, [encode(v, param) for v in param.choice])


__all__ = ["Branch", "Dimension", "SearchSpace", "TrialParams", "distribution", "encode"]
