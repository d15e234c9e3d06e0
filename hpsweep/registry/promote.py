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

from hpsweep.spec import SweepSpec
from hpsweep.track.queries import RecordedSweep
from hpsweep.track.tracker import PARENT_TAG, SWEEP_TAG, tracking_uri
from hpsweep.train import metrics as M
from hpsweep.train.data.base import PreparedData

log = logging.getLogger(__name__)
DECISION, TEST_TAG, FINGERPRINT = "hpsweep.decision", "hpsweep.test_metric", "hpsweep.data_fingerprint"
ALIAS_TAG = "hpsweep.alias"


class PromotionError(Exception):
    """Bad input for a promotion: an unknown sweep, no finished trial, or data the models cannot share."""


@dataclass(frozen=True)
class Candidate:
    role: str  #: challenger or champion
    model_uri: str
    test: dict[str, float]
    run_id: str = ""
    version: str = ""
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
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
    model_uri = best.data.tags["hpsweep.model_uri"]
    challenger = Candidate("challenger", model_uri, _evaluate(model_uri, data, inputs), best.info.run_id,
                           params=dict(best.data.params))
    champion = _champion(client, name, alias, data, inputs)
    promoted, reason = _decide(challenger, champion, metric, mode, margin)
    decision = Decision(promoted, reason, name, alias, metric, mode, challenger, champion, dry_run=dry_run,
                        sweep_id=sweep.parent.data.tags[SWEEP_TAG])
    if dry_run:
        return decision
    if promoted:
        version = _register(client, decision, best, data.fingerprint(), val_metric)
        decision = replace(decision, version=version)
        _settle_alias(client, name, alias, data.fingerprint(), mode)
    _record(client, sweep.parent.info.run_id, decision)
    return decision


def _find_sweep(client: Any, ref: str) -> RecordedSweep:
    from hpsweep.track.queries import UnknownSweep, find_sweep

    try:
        return find_sweep(client, ref)
    except UnknownSweep as exc:
        raise PromotionError(str(exc)) from None


def _best_trial(client: Any, parent: Any, val_metric: str, mode: str) -> Any:
    """The best finished trial by the validation metric; diverged or failed trials never qualify."""
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'", max_results=10_000)
    finished = [r for r in runs if r.info.status == "FINISHED"
                and r.data.tags.get("hpsweep.stop_reason") != "diverged"
                and math.isfinite(r.data.metrics.get(f"best_{val_metric}", math.nan))]
    if not finished:
        raise PromotionError(f"sweep {parent.data.tags[SWEEP_TAG]} has no finished trial with a finite {val_metric}")
    # the tracker named the best trial when the sweep ended (ties broken once, there); else pick here
    named = [r for r in finished if r.info.run_id == parent.data.tags.get("hpsweep.best_run_id")]
    pick = max if mode == "max" else min
    best = named[0] if named else pick(finished, key=lambda r: r.data.metrics[f"best_{val_metric}"])
    if "hpsweep.model_uri" not in best.data.tags:
        raise PromotionError(f"the best trial ({best.info.run_name}) has no logged model")
    return best


def _raw_test_inputs(spec: SweepSpec, data: PreparedData) -> Any:
    """The test examples as a served model receives them: uint8 images, or the CSV's rows."""
    assert data.test is not None
    if data.is_image:
        return data.test.x.numpy()
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
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception:  # no such model or alias yet: the first promotion has no champion to beat
        return None
    uri = f"models:/{name}/{version.version}"
    run_params = {}
    if version.run_id:
        try:
            run_params = dict(client.get_run(version.run_id).data.params)
        except Exception:
            run_params = {}
    return Candidate("champion", uri, _evaluate(uri, data, inputs), version.run_id or "", str(version.version),
                     run_params)


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
        SWEEP_TAG: decision.sweep_id, "hpsweep.trial_id": best.data.tags.get("hpsweep.trial_id", ""),
        "hpsweep.run_id": best.info.run_id, f"hpsweep.{val_metric}": str(best.data.metrics[f"best_{val_metric}"]),
        TEST_TAG: f"{decision.metric}={test[decision.metric]!r}", "hpsweep.test_metrics": json.dumps(test),
        FINGERPRINT: fingerprint, "hpsweep.previous_champion": decision.champion.version if decision.champion
        else "none", DECISION: "promoted", "hpsweep.reason": decision.reason, ALIAS_TAG: decision.alias,
    }
    for key, value in tags.items():
        client.set_model_version_tag(decision.model_name, version.version, key, value)
    return str(version.version)


def _settle_alias(client: Any, name: str, alias: str, fingerprint: str, mode: str, rounds: int = 3) -> None:
    """Point the alias at the best version promoted for it on this data. Racing promoters each settle
    after registering, so whichever settles last has seen both versions and leaves the alias on the better."""
    for attempt in range(rounds):
        best_version, best_score = None, None
        for version in client.search_model_versions(f"name='{name}'"):
            tags = version.tags or {}
            if (tags.get(DECISION) != "promoted" or tags.get(FINGERPRINT) != fingerprint
                    or tags.get(ALIAS_TAG) != alias):
                continue
            score = float(tags[TEST_TAG].split("=", 1)[1])
            better = best_score is None or (score > best_score if mode == "max" else score < best_score)
            if better or (score == best_score and int(version.version) < int(best_version or 0)):
                best_version, best_score = version.version, score
        if best_version is None:
            return
        current = _alias_version(client, name, alias)
        if current == str(best_version):
            if attempt:
                return
        else:
            client.set_registered_model_alias(name, alias, best_version)
        time.sleep(0.2 * (attempt + 1))  # let a racing promoter's write land, then check again


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def _record(client: Any, parent_run_id: str, decision: Decision) -> None:
    """Every decision, promoted or held, is kept on the sweep's parent run (an audit trail of the alias)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    client.log_dict(parent_run_id, asdict(decision), f"promotions/{stamp}-{decision.alias}.json")
    summary = f"{'promoted' if decision.promoted else 'held'}" + (f" as version {decision.version}"
                                                                   if decision.version else "")
    client.set_tag(parent_run_id, f"hpsweep.promotion.{decision.alias}", f"{stamp}: {summary}")
