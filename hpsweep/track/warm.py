"""Warm start: the finished trials of earlier sweeps that fit this sweep's space, read from MLflow.

Fingerprints decide which sweeps may lend: the same trainable, the same data (the data fingerprint on
their parent run) and the same metric. From each, a trial is borrowed only when every parameter it
took is one this space searches or fixes, inside its new bounds or choices, on the same branches.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from hpsweep import contract as C
from hpsweep.search.space import SearchSpace, distribution, encode
from hpsweep.spec.dimensions import set_by_option
from hpsweep.spec.params import Choice, IntRange, LogUniform, Uniform
from hpsweep.spec.sweep_spec import TRAINING_KNOBS, SweepSpec
from hpsweep.track.queries import UnknownSweep, find_sweep, search_all, trial_runs

log = logging.getLogger(__name__)

#: at most this many earlier sweeps lend trials to `auto` (the newest that may), as SageMaker's warm start
AUTO_SWEEPS = 5
#: at most this many of the borrowed configurations run again first, so that this sweep's own numbers
#: (its epochs, its data split) are measured on the best of them
RERUN_MAX = 3
_COUNTED = {C.StopReason.COMPLETED, C.StopReason.EARLY_STOPPED}


@dataclass
class Borrowed:
    """One earlier trial, as the sampler receives it: Optuna's parameter names and encoded values."""

    params: dict[str, Any]
    value: float
    pruned_at: int | None  #: the epoch the trial scheduler stopped it at (a pruned trial), else None
    source: str  #: `<sweep id>/trial-007`


@dataclass
class WarmStart:
    """What a sweep borrows: the trials, the sweeps they came from, what was skipped and why."""

    trials: list[Borrowed] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rerun: list[dict[str, Any]] = field(default_factory=list)  #: configurations run again first

    def describe(self) -> str:
        if not self.sweeps and not self.skipped:
            return "warm start: no earlier sweep of this trainable, data and metric"
        text = (f"warm start: {len(self.trials)} trials from {', '.join(self.sweeps) or 'no sweep'}"
                f"{f', the best {len(self.rerun)} run again first' if self.rerun else ''}")
        return text + (f"; skipped {len(self.skipped)}: {'; '.join(self.skipped[:3])}"
                       f"{' ...' if len(self.skipped) > 3 else ''}" if self.skipped else "")

    def as_json(self) -> str:
        return json.dumps({"sweeps": self.sweeps, "borrowed": [t.source for t in self.trials],
                           "rerun": self.rerun, "skipped": self.skipped}, indent=2)


def gather(client: Any, spec: SweepSpec, parent_id: str, fingerprint: str) -> WarmStart:
    """The trials `spec.search.warm_start` names (or `auto` finds) that fit `spec`'s space."""
    found = WarmStart()
    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    for parent in _lenders(client, spec, parent_id, found):
        sweep_id = parent.data.tags.get(C.SWEEP_TAG, parent.info.run_id)
        why = _mismatch(parent, spec, metric, fingerprint)
        if why:
            found.skipped.append(f"sweep {sweep_id}: {why}")
            continue
        if spec.search.warm_start == "auto" and len(found.sweeps) == AUTO_SWEEPS:
            break  # the newest that may lend, however many others of the trainable came between
        found.sweeps.append(sweep_id)
        space = SearchSpace.of(spec)
        for run in trial_runs(client, parent):
            borrowed, reason = _borrow(run, space, metric, sweep_id)
            if borrowed is not None:
                found.trials.append(borrowed)
            elif reason:
                found.skipped.append(f"{sweep_id}/{run.info.run_name}: {reason}")
    counted = sorted((t for t in found.trials if t.pruned_at is None), key=lambda t: t.value,
                     reverse=mode == "max")
    found.rerun = [t.params for t in counted[:min(RERUN_MAX, max(1, spec.num_trials // 5))]]
    return found


def _lenders(client: Any, spec: SweepSpec, parent_id: str, found: WarmStart) -> list[Any]:
    """The parent runs of the sweeps to borrow from, newest first."""
    wanted = spec.search.warm_start
    if wanted == "auto":
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = search_all(client, experiments, f"tags.`{C.ROLE_TAG}` = '{C.SWEEP_ROLE}' and "
                          f"tags.`{C.TRAINABLE_TAG}` = '{spec.trainable}'", order_by=["attributes.start_time DESC"])
        return [r for r in runs if r.info.run_id != parent_id]
    parents = []
    for ref in wanted or []:
        try:
            parents.append(find_sweep(client, ref).parent)
        except UnknownSweep as exc:
            found.skipped.append(f"{ref}: {exc}")
    return parents


def _mismatch(parent: Any, spec: SweepSpec, metric: str, fingerprint: str) -> str:
    """Why an earlier sweep may not lend to this one, or ''."""
    tags, params = parent.data.tags, parent.data.params
    if tags.get(C.TRAINABLE_TAG) != spec.trainable:
        return f"trainable {tags.get(C.TRAINABLE_TAG)}, not {spec.trainable}"
    if params.get("metric") != metric:
        return f"metric {params.get('metric')}, not {metric}"
    if tags.get(C.FINGERPRINT_TAG) != fingerprint:
        return "different data (its data fingerprint differs)" if tags.get(C.FINGERPRINT_TAG) \
            else "its data was not fingerprinted (a sweep from before warm start)"
    return ""


def _borrow(run: Any, space: SearchSpace, metric: str, sweep_id: str) -> tuple[Borrowed | None, str]:
    """The run as a borrowed trial, or (None, why not); why is '' for a trial that has no result."""
    stop, value = run.data.tags.get(C.STOP_TAG), run.data.metrics.get(C.best_metric(metric))
    if value is None or not math.isfinite(value) or (stop not in _COUNTED and stop != C.StopReason.SCHEDULER):
        return None, ""
    config = space.from_logged(run.data.params)
    params, why = fitted(config, space)
    if params is None:
        return None, why
    pruned = int(run.data.metrics.get(C.EPOCHS_RUN, 1)) if stop == C.StopReason.SCHEDULER else None
    return Borrowed(params, float(value), pruned, f"{sweep_id}/{run.info.run_name}"), ""


def fitted(config: dict[str, Any], space: SearchSpace) -> tuple[dict[str, Any] | None, str]:
    """`config` (a trial's parameters) as Optuna's parameters of `space`, or (None, the first misfit)."""
    dims = {d.name: d for d in space.dimensions()}
    constants = space.option_constants()  # fixed parameters of one option, with the condition they need
    fixed = {**space.fixed(), **{k: v for k, (v, _) in constants.items()}}
    params: dict[str, Any] = {}
    for name, value in config.items():
        if name in dims:
            param = dims[name].param
            if set_by_option(config, name):  # the trial trained with its optimizer's own: any draw did
                value = _middle(param)
            elif not _inside(value, param):
                return None, f"{name}={value} is outside this sweep's {dims[name].describe_range()}"
            params[name] = encode(value, param)
        elif name in fixed:
            if fixed[name] != value and not set_by_option(config, name):
                return None, f"{name}={value}, where this sweep fixes {fixed[name]}"
        else:
            return None, f"{name} is not in this sweep's space"
    for name, dim in dims.items():
        if name not in params and _applies(dim.condition, config):
            return None, f"it has no {name}, which this sweep searches"
    for name, value in fixed.items():  # a value this sweep fixes, the trial ran without (its default counts)
        if name not in config and _applies(constants.get(name, (None, ""))[1], config) and (
                name not in TRAINING_KNOBS or TRAINING_KNOBS[name].default != value):
            return None, f"it ran without {name}, which this sweep fixes at {value}"
    return params, ""


def _applies(condition: str, config: dict[str, Any]) -> bool:
    """Whether a branch condition (`optimizer = sgd`) holds for the trial; no condition always does."""
    kind, _, option = condition.partition(" = ")
    return not condition or config.get(kind) == option


def _inside(value: Any, param: Any) -> bool:
    if isinstance(param, Choice):
        return encode(value, param) in [encode(v, param) for v in param.choice]
    if isinstance(param, IntRange):
        return isinstance(value, int) and value in param.values()
    low, high = param.bounds
    return isinstance(value, int | float) and low <= value <= high


def _middle(param: Any) -> Any:
    """A value inside `param` for a draw the trial never used."""
    if isinstance(param, Choice):
        return param.choice[0]
    low, high = param.bounds
    if isinstance(param, LogUniform):
        return math.sqrt(low * high)
    if isinstance(param, IntRange):
        values = param.values()
        return values[len(values) // 2]
    return (low + high) / 2 if isinstance(param, Uniform) else low


def as_trials(warm: WarmStart, space: SearchSpace) -> list[Any]:
    """The borrowed trials as Optuna's finished trials: completed ones with their value, pruned ones
    with the value they had when the scheduler stopped them."""
    import optuna

    dims = {d.name: d.param for d in space.dimensions()}
    out = []
    for trial in warm.trials:
        distributions = {k: distribution(dims[k]) for k in trial.params}
        if trial.pruned_at is None:
            out.append(optuna.trial.create_trial(params=trial.params, distributions=distributions, value=trial.value,
                                                 user_attrs={"hpsweep_borrowed": trial.source}))
        else:
            out.append(optuna.trial.create_trial(params=trial.params, distributions=distributions,
                                                 state=optuna.trial.TrialState.PRUNED,
                                                 intermediate_values={trial.pruned_at: trial.value},
                                                 user_attrs={"hpsweep_borrowed": trial.source}))
    return out
