"""The registry's side of a promotion: register the challenger's model as a version, tag it, settle the
alias on the best version, and record the decision on the sweep; all of it or, on a failure, none."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hpsweep import contract as C
from hpsweep.track.queries import model_versions

log = logging.getLogger(__name__)


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
    #: `promote --confirm`'s numbers (confirmation.summary): every seed, the bounds, the selection bias
    confirmation: dict[str, Any] | None = None


def promote_version(client: Any, decision: Decision, best: Any, fingerprint: str, val_metric: str,
                     parent_run_id: str) -> Decision:
    """Register the challenger, tag it, move the alias and record the decision. When a step fails, the
    registry is put back as it was: the new version deleted, the registered model too when this promotion
    created it, and the alias back on the version that held it."""
    created, existed = "", _model_exists(client, decision.model_name)
    try:
        created = _register(client, decision)
        decision = replace(decision, version=created)
        _tag_version(client, decision, best, fingerprint, val_metric)
        _settle_alias(client, decision, fingerprint)
        record(client, parent_run_id, decision)
        return decision
    except BaseException:
        _roll_back(client, decision, created, existed)
        raise


def _roll_back(client: Any, decision: Decision, created: str, existed: bool) -> None:
    name, alias = decision.model_name, decision.alias
    try:
        if created:
            client.delete_model_version(name, created)
        if not existed and _model_exists(client, name) and not model_versions(client, name):
            client.delete_registered_model(name)  # made by this promotion; a racing promoter's version stays
        elif decision.champion is not None:
            held = current_version(client, name, alias)
            if held is None or str(held.version) != decision.champion.version:
                client.set_registered_model_alias(name, alias, decision.champion.version)
    except Exception:  # the registry that failed the promotion may fail this too: say what may be left
        log.warning("the promotion failed and could not be undone: check %s version %s and alias %s",
                    name, created or "(none)", alias, exc_info=True)


def _register(client: Any, decision: Decision) -> str:
    import contextlib
    import io

    import mlflow

    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints its own notices; the CLI reports the version
        version = mlflow.register_model(decision.challenger.model_uri, decision.model_name)
    return str(version.version)


def _tag_version(client: Any, decision: Decision, best: Any, fingerprint: str, val_metric: str) -> None:
    test = decision.challenger.test
    tags = {
        C.SWEEP_TAG: decision.sweep_id, C.TRIAL_TAG: best.data.tags.get(C.TRIAL_TAG, ""),
        "hpsweep.run_id": best.info.run_id, f"hpsweep.{val_metric}": str(best.data.metrics[C.best_metric(val_metric)]),
        C.TEST_TAG: f"{decision.metric}={test[decision.metric]!r}", C.TEST_MODE_TAG: decision.mode,
        "hpsweep.test_metrics": json.dumps(test), C.FINGERPRINT_TAG: fingerprint,
        "hpsweep.previous_champion": decision.champion.version if decision.champion else "none",
        C.DECISION_TAG: "promoted", "hpsweep.reason": decision.reason, C.ALIAS_TAG: decision.alias,
    }
    origin = f"Best trial ({best.info.run_name}) of sweep {decision.sweep_id}"
    if (confirmed := decision.confirmation) is not None:
        tags |= confirmation_tags(confirmed)
        origin = (f"Seed {confirmed['registered_seed']} of configuration #{confirmed['chosen_rank']} of sweep "
                  f"{decision.sweep_id}, re-trained in {confirmed['confirmation_sweep']}")
    for key, value in tags.items():
        client.set_model_version_tag(decision.model_name, decision.version, key, value)
    client.update_model_version(decision.model_name, decision.version, description=(
        f"{origin}, promoted to @{decision.alias}: test {decision.metric} {test[decision.metric]:.4g} on the "
        f"held-out split. {decision.reason}."))
    if not (client.get_registered_model(decision.model_name).description or ""):  # a user's text stays
        client.update_registered_model(decision.model_name, description=(
            f"Models promoted by hpsweep: each version is the best trial of a sweep, scored on its data's "
            f"held-out test split ({decision.metric}); @{decision.alias} is the best promoted so far."))


def confirmation_tags(confirmed: dict[str, Any]) -> dict[str, str]:
    """A confirmed version's tags: the method, the chosen configuration's per-seed test values and bound,
    the registered seed and the selection bias of the sweep's best trial."""
    chosen = next(c for c in confirmed["configurations"] if c["rank"] == confirmed["chosen_rank"])
    return {"hpsweep.confirm.method": f"{confirmed['method']} ({confirmed['confidence']:.0%})",
            "hpsweep.confirm.seeds": json.dumps({str(s["seed"]): s["test"] for s in chosen["seeds"]}),
            "hpsweep.confirm.test_mean": repr(chosen["test_mean"]), "hpsweep.confirm.bound": repr(chosen["bound"]),
            "hpsweep.confirm.registered_seed": str(confirmed["registered_seed"]),
            "hpsweep.confirm.selection_bias": repr(confirmed["selection_bias"]),
            "hpsweep.confirm.sweep_id": confirmed["confirmation_sweep"]}


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


def _model_exists(client: Any, name: str) -> bool:
    return _registered_model(client, name) is not None


def _registered_model(client: Any, name: str) -> Any:
    """The registered model, or None when there is none by that name; other errors are raised."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def current_version(client: Any, name: str, alias: str) -> Any:
    """The model version `alias` points at, or None when the registered model or the alias does not exist.
    Other errors (network, permission, server) are raised."""
    model = _registered_model(client, name)
    version = None if model is None else (model.aliases or {}).get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def record(client: Any, parent_run_id: str, decision: Decision) -> None:
    """Every decision, promoted or held, is kept on the sweep's parent run (an audit trail of the alias)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    client.log_dict(parent_run_id, asdict(decision), f"{C.PROMOTIONS_ARTIFACTS}/{stamp}-{decision.alias}.json")
    summary = f"{'promoted' if decision.promoted else 'held'}" + (f" as version {decision.version}"
                                                                   if decision.version else "")
    client.set_tag(parent_run_id, f"{C.PROMOTION_TAG}.{decision.alias}", f"{stamp}: {summary}")
    if decision.confirmation is not None:  # the report shows the latest confirmation's numbers
        client.log_dict(parent_run_id, {**decision.confirmation, "decision": decision.reason}, C.CONFIRMATION_FILE)
        if (bias := decision.confirmation["selection_bias"]) is not None:
            client.set_tag(parent_run_id, "hpsweep.selection_bias", repr(bias))
