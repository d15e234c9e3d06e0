"""What a sweep's results say: which parameters mattered, whether the best trial sits at the edge of a
searched range, and the best trial as a sweep file of its own (`best.yaml`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpsweep.report.confirmation import recorded_confirmation
from hpsweep.report.gather import EdgeWarning, ReportError, SweepReport, TrialResult, rank_trials, trial_result
from hpsweep.search.space import Dimension, SearchSpace, distribution, encode
from hpsweep.spec.dimensions import set_by_option
from hpsweep.spec.params import Choice, IntRange, LogUniform, Uniform
from hpsweep.spec.sweep_spec import local_paths
from hpsweep.track.queries import RecordedSweep, UnknownSweep, find_sweep, trial_runs
from hpsweep.track.writer import tracking_uri

#: how close to an end of a range (as a fraction of it, on the search's own scale) counts as the edge
EDGE = 0.1


#: above this many counted trials the report uses PED-ANOVA: fANOVA's forest grows with the trials (over
#: a minute at 1,000), PED-ANOVA compares the top trials' parameter densities with all trials' (seconds)
FANOVA_MAX_TRIALS = 200


def importance_method(counted: int) -> str:
    """The importance evaluator the report uses for this many counted trials."""
    return "fANOVA" if counted <= FANOVA_MAX_TRIALS else "PED-ANOVA"


def importances(trials: Sequence[TrialResult], space: SearchSpace, mode: str = "max") -> tuple[dict[str, float], str]:
    """Importances of the parameters every counted trial has, on an Optuna study rebuilt from the trials'
    results (Optuna's fANOVA, or PED-ANOVA for large sweeps); a note instead when there is too little to
    learn from."""
    import optuna

    dims = {d.name: d.param for d in space.trained_dimensions()}  # lr as trials trained with it
    counted = [t for t in trials if t.counts]
    if len(counted) < 3 or not dims:
        return {}, "parameter importances need at least 3 finished trials and a searched parameter"
    if len({t.best for t in counted}) < 2:
        return {}, "every finished trial reached the same value: no parameter made a difference"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # PED-ANOVA looks at the best trials, so the study's direction must be the sweep's
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for trial in counted:
        params = {k: encode(v, dims[k]) for k, v in trial.params.items() if k in dims}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: distribution(dims[k]) for k in params}, value=float(trial.best or 0)))
    try:
        evaluator = (optuna.importance.FanovaImportanceEvaluator(seed=0) if len(counted) <= FANOVA_MAX_TRIALS
                     else optuna.importance.PedAnovaImportanceEvaluator())
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as exc:
        return {}, f"parameter importances could not be computed: {exc}"
    if not found:
        return {}, "no searched parameter was taken by every finished trial"
    return {k: round(float(v), 4) for k, v in found.items()}, ""


def log_scale(param: Any) -> bool:
    """Whether the search draws this range on a log scale."""
    return isinstance(param, LogUniform) or (isinstance(param, IntRange) and param.log)


def _position(value: Any, param: Any) -> float | None:
    """Where `value` sits in the parameter's searched range, 0 (low end) to 1 (high end), on the scale
    the search draws on; None for parameters without an order (or with fewer than three choices)."""
    if isinstance(param, IntRange) and len(param.values()) < 3:
        return None  # two values: each is an edge, so sitting on one says nothing
    if isinstance(param, Uniform | LogUniform | IntRange):
        low, high = param.bounds
        if log_scale(param):
            low, high, value = math.log(low), math.log(high), math.log(value)
        return (float(value) - low) / (high - low) if high > low else None
    if isinstance(param, Choice):
        numbers = sorted(v for v in param.choice if isinstance(v, int | float) and not isinstance(v, bool))
        if len(numbers) < 3 or len(numbers) != len(param.choice) or value not in numbers:
            return None
        return numbers.index(value) / (len(numbers) - 1)
    return None


def edge_warnings(trials: Sequence[TrialResult], dims: Sequence[Dimension]) -> list[EdgeWarning]:
    """The tuning playbook's check: when the best trial sits at the edge of a searched range, better values
    may lie beyond it, so the range should be widened on that side before trusting the result."""
    best = next((t for t in trials if t.counts), None)
    if best is None:
        return []
    found = []
    for dim in dims:
        if dim.name not in best.params or set_by_option(best.params, dim.name):
            continue  # not taken, or the trial's optimizer set its own (its dimension has its own check)
        value = best.params[dim.name]
        where = _position(value, dim.param)
        if where is None:
            continue
        side = "high" if where >= 1 - EDGE else "low" if where <= EDGE else None
        if side is None:
            continue
        if isinstance(dim.param, Choice):
            what = (f"add a value {'above' if side == 'high' else 'below'} {value} to {dim.path}: the best trial "
                    f"({best.name}) took the {'largest' if side == 'high' else 'smallest'} one")
        else:
            searched = dim.describe_range()
            what = (f"widen {dim.name}.{side} ({dim.path}: {searched}): the best trial ({best.name}) took "
                    f"{value:.4g}, in the {'top' if side == 'high' else 'bottom'} {EDGE:.0%} of the range")
        found.append(EdgeWarning(dim.name, side, value, what))
    return found


def best_yaml(sweep: RecordedSweep, best: TrialResult, space: SearchSpace, report: SweepReport) -> str:
    """The sweep file with every searched value fixed to the best trial's: one trial, nothing searched.
    Relative paths become absolute, so the file works wherever it is saved."""
    import copy

    import yaml

    out = copy.deepcopy(dict(sweep.raw))
    for name, value in local_paths(sweep.spec):
        if not Path(value).expanduser().is_absolute():
            section, key = name.split(".")
            out[section][key] = str(sweep.spec.resolve_path(value).resolve())
    params = dict(best.params)
    section = out.setdefault("space", {})
    extras = set(section.get("params") or {})
    model = params.pop("model", None)
    if model is not None:
        out.setdefault("model", {})["name"] = model
    for kind in ("optimizer", "scheduler"):
        if kind not in params:
            continue
        chosen = params.pop(kind)
        prefix = f"{kind}.{chosen}."
        options = {k[len(prefix):]: params.pop(k) for k in list(params) if k.startswith(prefix)}
        section[kind] = {"name": chosen, **options} if options else chosen
        for stale in [k for k in params if k.startswith(f"{kind}.")]:
            params.pop(stale)
    for name, value in params.items():
        if name in extras:
            section["params"][name] = value
        else:
            section[name] = value
    search = out.get("search") or {}
    out["search"] = {k: v for k, v in search.items() if k in ("algorithm", "seed")} | {"num_trials": 1}
    if out["search"].get("algorithm") == "grid":
        out["search"]["algorithm"] = "random"
    header = (f"# The best trial of sweep {report.sweep_id}: {best.name}, {report.metric} {best.best:.6g}.\n"
              "# Every searched value is fixed to that trial's; run it with `hpsweep train` or `hpsweep run`.\n")
    return header + yaml.safe_dump(out, sort_keys=False)


def build_report(ref: str, uri: str | None = None) -> tuple[SweepReport, RecordedSweep, Any]:
    """Everything the report shows, read from MLflow: (report, the recorded sweep, the client)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(uri))
    try:
        sweep = find_sweep(client, ref)
    except UnknownSweep as exc:
        raise ReportError(str(exc)) from None
    spec = sweep.spec
    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    space = SearchSpace.of(spec)
    runs = trial_runs(client, sweep.parent)
    if not runs:
        raise ReportError(f"sweep {sweep.sweep_id} has no trials recorded yet")
    trials = rank_trials([trial_result(run, metric, space) for run in runs], mode)
    report = SweepReport(sweep.sweep_id, spec.experiment_name, sweep.parent.info.run_id, metric, mode, trials)
    report.importances, report.importance_note = importances(trials, space, mode)
    report.importance_method = importance_method(sum(t.counts for t in trials))
    report.warnings = edge_warnings(trials, space.dimensions())
    report.stops = dict(Counter(t.stop_reason or t.status.lower() for t in trials).most_common())
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    seconds = sum(t.seconds for t in trials)
    report.compute = {"trials": len(trials), "trial_epochs": sum(t.epochs for t in trials),
                      "trial_seconds": round(seconds, 1), "cpu_seconds": round(seconds * cpu, 1),
                      "gpu_seconds": round(seconds * gpu, 1)}
    if (info := sweep.parent.info).end_time and info.start_time:
        report.compute["sweep_seconds"] = round((info.end_time - info.start_time) / 1000, 1)
    if report.best is not None:
        report.best_yaml = best_yaml(sweep, report.best, space, report)
    report.confirmation = recorded_confirmation(client, sweep.parent)
    return report, sweep, client
