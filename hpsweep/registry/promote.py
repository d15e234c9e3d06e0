"""Promotion: put a sweep's best model into the MLflow Model Registry only when it beats the champion
on the held-out test split (which the search never saw), and record every decision."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from hpsweep import contract as C
from hpsweep.errors import UserError
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.track.queries import RecordedSweep, UnknownSweep, find_sweep, model_versions, trial_runs
from hpsweep.track.writer import tracking_uri
from hpsweep.train import metrics as M
from hpsweep.train.data.base import PreparedData

log = logging.getLogger(__name__)


class PromotionError(UserError):
    """Bad input for a promotion: an unknown sweep, no finished trial, or data the models cannot share."""


@dataclass(frozen=True)
class Candidate:
    """A model in a promotion: the sweep's best (challenger) or the alias's holder (champion), evaluated."""

    role: str  #: challenger or champion
    model_uri: str
    test: dict[str, float]  #: its metrics on the test split
    #: the hyperparameters it was trained with, as MLflow logged them
    params: dict[str, str] = field(default_factory=dict)
    run_id: str = ""  #: the trial run it came from
    version: str = ""  #: its registered version (the champion's)


@dataclass(frozen=True)
class Decision:
    """What a promotion decided and why; recorded on the sweep's parent run, promoted or held."""

    promoted: bool
    reason: str
    model_name: str
    alias: str
    metric: str  #: the test metric compared, e.g. accuracy
    mode: str
    challenger: Candidate
    champion: Candidate | None
    version: str = ""  #: the version created when promoted
    dry_run: bool = False
    sweep_id: str = ""


def promote(ref: str, *, model_name: str | None = None, alias: str | None = None,
            min_improvement: float | None = None, dry_run: bool = False, uri: str | None = None) -> Decision:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(uri))  # register_model and artifact downloads use the global URI
    client = MlflowClient(tracking_uri(uri))
    sweep = _find_sweep(client, ref)
    spec = sweep.spec
    val_metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    if not val_metric.startswith("val_"):
        raise PromotionError(f"promotion compares a validation metric on the test split; train.metric is {val_metric}")
    metric = val_metric.removeprefix("val_")
    name = model_name or spec.registry.model_name or spec.name
    alias = alias or spec.registry.alias
    margin = spec.registry.min_improvement if min_improvement is None else min_improvement
    best = _best_trial(client, sweep.parent, val_metric, mode)
    from hpsweep.train.data import prepare

    data = prepare(spec)
    if data.test is None or len(data.test) == 0:
        raise PromotionError("the sweep has no test split (data.split.test is 0): nothing to promote on")
    inputs = _raw_test_inputs(spec, data)
    model_uri = best.data.tags[C.MODEL_URI_TAG]
    challenger = Candidate("challenger", model_uri, _evaluate(model_uri, data, inputs),
                           params=dict(best.data.params), run_id=best.info.run_id)
    champion = _champion(client, name, alias, data, inputs)
    promoted, reason = _decide(challenger, champion, metric, mode, margin)
    decision = Decision(promoted, reason, name, alias, metric, mode, challenger, champion, dry_run=dry_run,
                        sweep_id=sweep.parent.data.tags[C.SWEEP_TAG])
    if dry_run:
        return decision
    if promoted:
        version = _register(client, decision, best, data.fingerprint(), val_metric)
        decision = replace(decision, version=version)
        _settle_alias(client, decision, data.fingerprint())
    _record(client, sweep.parent.info.run_id, decision)
    return decision


def _find_sweep(client: Any, ref: str) -> RecordedSweep:
    try:
        return find_sweep(client, ref)
    except UnknownSweep as exc:
        raise PromotionError(str(exc)) from None


def _best_trial(client: Any, parent: Any, val_metric: str, mode: str) -> Any:
    """The best finished trial by the validation metric; diverged or failed trials never qualify."""
    score = C.best_metric(val_metric)
    finished = [r for r in trial_runs(client, parent)
                if C.counts_as_result(r.info.status, r.data.tags.get(C.STOP_TAG), r.data.metrics.get(score))]
    if not finished:
        raise PromotionError(f"sweep {parent.data.tags[C.SWEEP_TAG]} has no finished trial with a finite {val_metric}")
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


def _evaluate(model_uri: str, data: PreparedData, inputs: Any) -> dict[str, float]:
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


def _champion(client: Any, name: str, alias: str, data: PreparedData, inputs: Any) -> Candidate | None:
    """The version the alias points at, evaluated; None only when the model or the alias does not exist
    yet. Any other failure to read the registry (a network, permission or server error) is raised: a
    champion that could not be read must never count as no champion."""
    version = current_version(client, name, alias)
    if version is None:
        return None
    uri = f"models:/{name}/{version.version}"
    run_params = {}
    if version.run_id:
        try:
            run_params = dict(client.get_run(version.run_id).data.params)
        except Exception:
            run_params = {}
    return Candidate("champion", uri, _evaluate(uri, data, inputs), params=run_params, run_id=version.run_id or "",
                     version=str(version.version))


def _decide(challenger: Candidate, champion: Candidate | None, metric: str, mode: str,
            margin: float) -> tuple[bool, str]:
    score = challenger.test.get(metric, math.nan)
    if not math.isfinite(score):
        return False, f"held: the challenger's test {metric} is not a finite number"
    if champion is None:
        return True, "promoted: there is no champion yet"
    held = champion.test[metric]
    gain = score - held if mode == "max" else held - score
    if gain > 0 and gain >= margin:
        return True, f"promoted: test {metric} {score:.4g} beats the champion's {held:.4g} by {gain:.4g}"
    return False, (f"held: test {metric} {score:.4g} against the champion's {held:.4g} "
                   f"(needs to be better by at least {max(margin, 0):g})")


def _register(client: Any, decision: Decision, best: Any, fingerprint: str, val_metric: str) -> str:
    import contextlib
    import io

    import mlflow

    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints its own notices; the CLI reports the version
        version = mlflow.register_model(decision.challenger.model_uri, decision.model_name)
    test = decision.challenger.test
    tags = {
        C.SWEEP_TAG: decision.sweep_id, C.TRIAL_TAG: best.data.tags.get(C.TRIAL_TAG, ""),
        "hpsweep.run_id": best.info.run_id, f"hpsweep.{val_metric}": str(best.data.metrics[C.best_metric(val_metric)]),
        C.TEST_TAG: f"{decision.metric}={test[decision.metric]!r}", C.TEST_MODE_TAG: decision.mode,
        "hpsweep.test_metrics": json.dumps(test), C.FINGERPRINT_TAG: fingerprint,
        "hpsweep.previous_champion": decision.champion.version if decision.champion else "none",
        C.DECISION_TAG: "promoted", "hpsweep.reason": decision.reason, C.ALIAS_TAG: decision.alias,
    }
    for key, value in tags.items():
        client.set_model_version_tag(decision.model_name, version.version, key, value)
    return str(version.version)


def _settle_alias(client: Any, decision: Decision, fingerprint: str, rounds: int = 3) -> None:
    """Point the alias at the best version promoted for it on this data. Racing promoters each settle
    after registering, so whichever settles last has seen both versions and leaves the alias on the better.
    Only versions scored on the same test metric, compared the same way, are ranked against each other."""
    name, alias = decision.model_name, decision.alias
    for attempt in range(rounds):
        best_version, best_score = None, None
        for version in model_versions(client, name):
            score = _comparable_score(version.tags or {}, decision, fingerprint)
            if score is None:
                continue
            better = best_score is None or (score > best_score if decision.mode == "max" else score < best_score)
            if better or (score == best_score and int(version.version) < int(best_version or 0)):
                best_version, best_score = version.version, score
        if best_version is None:
            return
        current = current_version(client, name, alias)
        if current is not None and str(current.version) == str(best_version):
            if attempt:
                return
        else:
            client.set_registered_model_alias(name, alias, best_version)
        time.sleep(0.2 * (attempt + 1))  # let a racing promoter's write land, then check again


def _comparable_score(tags: dict[str, str], decision: Decision, fingerprint: str) -> float | None:
    """A version's stored test score, when it was promoted for this alias on this data and scored on the
    decision's metric in the decision's mode; None for any other version."""
    if (tags.get(C.DECISION_TAG) != "promoted" or tags.get(C.FINGERPRINT_TAG) != fingerprint
            or tags.get(C.ALIAS_TAG) != decision.alias or tags.get(C.TEST_MODE_TAG) != decision.mode):
        return None
    metric, _, value = tags.get(C.TEST_TAG, "").partition("=")
    try:
        return float(value) if metric == decision.metric else None
    except ValueError:
        return None


def current_version(client: Any, name: str, alias: str) -> Any:
    """The model version `alias` points at, or None when the registered model or the alias does not exist.
    Other errors (network, permission, server) are raised."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (model.aliases or {}).get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def _record(client: Any, parent_run_id: str, decision: Decision) -> None:
    """Every decision, promoted or held, is kept on the sweep's parent run (an audit trail of the alias)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    client.log_dict(parent_run_id, asdict(decision), f"{C.PROMOTIONS_ARTIFACTS}/{stamp}-{decision.alias}.json")
    summary = f"{'promoted' if decision.promoted else 'held'}" + (f" as version {decision.version}"
                                                                   if decision.version else "")
    client.set_tag(parent_run_id, f"{C.PROMOTION_TAG}.{decision.alias}", f"{stamp}: {summary}")
