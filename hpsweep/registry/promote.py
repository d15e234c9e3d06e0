"""Promotion: put a sweep's best model into the MLflow Model Registry only when it beats the champion
on the held-out test split (which the search never saw), and record every decision."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpsweep import contract as C
from hpsweep.errors import UserError
from hpsweep.registry.versions import Candidate, Decision, current_version, promote_version, record
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.track.queries import RecordedSweep, UnknownSweep, find_sweep, trial_runs
from hpsweep.track.writer import tracking_uri
from hpsweep.train import metrics as M
from hpsweep.train.data.base import PreparedData

log = logging.getLogger(__name__)


class PromotionError(UserError):
    """Bad input for a promotion: an unknown sweep, no finished trial, or data the models cannot share."""


@dataclass(frozen=True)
class Target:
    """What a promotion compares and where it registers: the sweep, its metric, the model name and alias."""

    client: Any
    sweep: RecordedSweep
    val_metric: str  #: the sweep's validation metric, e.g. val_accuracy
    mode: str
    name: str
    alias: str
    margin: float

    @property
    def metric(self) -> str:
        """The test metric compared, e.g. accuracy."""
        return self.val_metric.removeprefix("val_")


def target(ref: str, model_name: str | None, alias: str | None, min_improvement: float | None,
           uri: str | None) -> Target:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(uri))  # register_model and artifact downloads use the global URI
    client = MlflowClient(tracking_uri(uri))
    sweep = _find_sweep(client, ref)
    spec = sweep.spec
    val_metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    if not val_metric.startswith("val_"):
        raise PromotionError(f"promotion compares a validation metric on the test split; train.metric is {val_metric}")
    return Target(client, sweep, val_metric, mode, model_name or spec.registry.model_name or spec.name,
                  alias or spec.registry.alias,
                  spec.registry.min_improvement if min_improvement is None else min_improvement)


def test_data(spec: SweepSpec, cache: Path | None = None) -> tuple[PreparedData, Any]:
    """The sweep's data, and its test split as a served model receives it; PromotionError without one.
    `cache`: the folder of decoded-data caches to use (default: storage.cache_root())."""
    from hpsweep.train.data import prepare

    data = prepare(spec, cache)
    if data.test is None or len(data.test) == 0:
        raise PromotionError("the sweep has no test split (data.split.test is 0): nothing to promote on")
    return data, _raw_test_inputs(spec, data)


def sweep_cache(sweep: RecordedSweep, storage: str | None = None) -> Path:
    """Where to read `sweep`'s decoded data from: the cache of `storage` (--storage) or of $HPSWEEP_CACHE
    when given, else the folder the sweep recorded that it cached its data in, if this machine has it
    (a sweep run with --storage elsewhere), else the default."""
    from hpsweep.storage import CACHE_ENV, cache_root

    if storage is not None or os.environ.get(CACHE_ENV):
        return cache_root(storage)
    recorded = sweep.parent.data.tags.get(C.DATA_CACHE_TAG)
    return Path(recorded) if recorded and Path(recorded).is_dir() else cache_root()


def promote(ref: str, *, model_name: str | None = None, alias: str | None = None,
            min_improvement: float | None = None, dry_run: bool = False, uri: str | None = None,
            storage: str | None = None) -> Decision:
    """Evaluate the sweep's best model against the alias's holder on the test split, and settle it.
    `storage`: the results storage whose data cache to read the test split through (sweep_cache)."""
    goal = target(ref, model_name, alias, min_improvement, uri)
    client, sweep = goal.client, goal.sweep
    best = _best_trial(client, sweep.parent, goal.val_metric, goal.mode)
    data, inputs = test_data(sweep.spec, sweep_cache(sweep, storage))
    model_uri = best.data.tags[C.MODEL_URI_TAG]
    challenger = Candidate("challenger", model_uri, evaluate(model_uri, data, inputs),
                           params=dict(best.data.params), run_id=best.info.run_id)
    champion = champion_of(goal, data, inputs)
    promoted, reason = _decide(challenger, champion, goal.metric, goal.mode, goal.margin)
    decision = Decision(promoted, reason, goal.name, goal.alias, goal.metric, goal.mode, challenger, champion,
                        dry_run=dry_run, sweep_id=sweep.sweep_id)
    return settle(goal, decision, best, data)


def settle(goal: Target, decision: Decision, run: Any, data: PreparedData) -> Decision:
    """Write the decision: register `run`'s model and move the alias when promoted; record it either way
    (a dry run writes nothing)."""
    if decision.dry_run:
        return decision
    parent_id = goal.sweep.parent.info.run_id
    if decision.promoted:
        return promote_version(goal.client, decision, run, data.fingerprint(), goal.val_metric, parent_id)
    record(goal.client, parent_id, decision)
    return decision


def _find_sweep(client: Any, ref: str) -> RecordedSweep:
    try:
        return find_sweep(client, ref)
    except UnknownSweep as exc:
        raise PromotionError(str(exc)) from None


def finished_trials(client: Any, parent: Any, val_metric: str) -> list[Any]:
    """The sweep's trial runs that count as results (diverged or failed ones never do); PromotionError
    when there is none."""
    score = C.best_metric(val_metric)
    finished = [r for r in trial_runs(client, parent)
                if C.counts_as_result(r.info.status, r.data.tags.get(C.STOP_TAG), r.data.metrics.get(score))]
    if not finished:
        raise PromotionError(f"sweep {parent.data.tags[C.SWEEP_TAG]} has no finished trial with a finite {val_metric}")
    return finished


def _best_trial(client: Any, parent: Any, val_metric: str, mode: str) -> Any:
    """The best finished trial by the validation metric; diverged or failed trials never qualify."""
    score = C.best_metric(val_metric)
    finished = finished_trials(client, parent, val_metric)
    # the tracker named the best trial when the sweep ended (ties broken once, there); else pick here
    named = [r for r in finished if r.info.run_id == parent.data.tags.get(C.BEST_RUN_TAG)]
    pick = max if mode == "max" else min
    best = named[0] if named else pick(finished, key=lambda r: r.data.metrics[score])
    if C.MODEL_URI_TAG not in best.data.tags:
        raise PromotionError(f"the best trial ({best.info.run_name}) has no logged model")
    return best


def _raw_test_inputs(spec: SweepSpec, data: PreparedData) -> Any:
    """The test examples as a served model receives them: uint8 images, or the CSV's rows."""
    assert data.test is not None
    if data.is_image:
        return data.test.examples().numpy()
    import pandas as pd

    table = pd.read_csv(spec.resolve_path(spec.data.path))
    rows = [int(i.split()[1]) - 2 for i in data.test.ids]
    return table.iloc[rows].reset_index(drop=True)


def evaluate(model_uri: str, data: PreparedData, inputs: Any) -> dict[str, float]:
    """Test metrics of one model; its own preprocessing is applied to the raw inputs."""
    from hpsweep.registry.model_format import load_registered, raw_outputs

    net, description = load_registered(model_uri)
    assert data.test is not None
    prep = description["preprocessing"]
    try:
        outputs = raw_outputs(net, description, inputs)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise PromotionError(f"{model_uri} cannot take this sweep's data: {exc}") from None
    if data.task == "regression":
        predicted = outputs.squeeze(1) * prep["target_std"][0] + prep["target_mean"][0]
        values = M.regression(predicted, data.test.y)
        return {**values, "loss": values["mse"]}
    names = list(prep["class_names"])
    if sorted(names) != sorted(data.class_names):
        raise PromotionError(f"{model_uri} predicts classes {names}, the sweep's data has {list(data.class_names)}")
    order = torch.tensor([names.index(c) for c in data.class_names])
    logits = outputs[:, order]
    values, _ = M.classification(logits, data.test.y, len(data.class_names))
    return {**values, "loss": float(torch.nn.functional.cross_entropy(logits, data.test.y))}


def champion_of(goal: Target, data: PreparedData, inputs: Any) -> Candidate | None:
    """The version the alias points at, evaluated; None only when the model or the alias does not exist
    yet. Any other failure to read the registry (a network, permission or server error) is raised: a
    champion that could not be read must never count as no champion."""
    client, name = goal.client, goal.name
    version = current_version(client, name, goal.alias)
    if version is None:
        return None
    uri = f"models:/{name}/{version.version}"
    run_params = {}
    if version.run_id:
        try:
            run_params = dict(client.get_run(version.run_id).data.params)
        except Exception:
            run_params = {}
    return Candidate("champion", uri, evaluate(uri, data, inputs), params=run_params, run_id=version.run_id or "",
                     version=str(version.version))


def _decide(challenger: Candidate, champion: Candidate | None, metric: str, mode: str,
            margin: float) -> tuple[bool, str]:
    score = challenger.test.get(metric, math.nan)
    if not math.isfinite(score):
        return False, f"held: the challenger's test {metric} is not a finite number"
    if champion is None:
        return True, "promoted: there is no champion yet"
    if champion.run_id and champion.run_id == challenger.run_id:
        return False, f"held: this sweep's best trial is already the champion (version {champion.version})"
    held = champion.test[metric]
    gain = score - held if mode == "max" else held - score
    if gain > 0 and gain >= margin:
        return True, f"promoted: test {metric} {score:.4g} beats the champion's {held:.4g} by {gain:.4g}"
    return False, (f"held: test {metric} {score:.4g} against the champion's {held:.4g} "
                   f"(needs to be better by at least {max(margin, 0):g})")


