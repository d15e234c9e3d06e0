"""`hpsweep promote --confirm K --seeds S`: re-train the sweep's top K configurations with S fresh seeds
each, as a small sweep on the same Ray cluster nested under the original parent run, score every seed's
model on the test split, and promote only what beats the champion with the stated confidence
(registry/confirmation.py says how).

Nothing reaches the registry until every seed is trained and scored. An interrupted confirmation resumes
as any sweep does (the same command continues it); one that finished is reused, not trained again, so a
failure while scoring or registering costs a rerun of the command and no training.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hpsweep import contract as C
from hpsweep.registry.best_model import log_recorded
from hpsweep.registry.confirmation import ConfirmedConfig, SeedResult, judge, summary
from hpsweep.registry.promote import (
    PromotionError,
    Target,
    champion_of,
    evaluate,
    finished_trials,
    settle,
    test_data,
)
from hpsweep.registry.versions import Candidate, Decision
from hpsweep.search.space import SearchSpace
from hpsweep.spec.dimensions import trained_with
from hpsweep.spec.sweep_spec import SweepSpec, validate_data
from hpsweep.storage import cache_root
from hpsweep.track.queries import search_all, trial_runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """`--confirm K --seeds S --confidence C`, and where the confirmation's results go."""

    top: int
    seeds: int
    confidence: float = 0.95
    storage: str | None = None


@dataclass(frozen=True)
class Pick:
    """One of the sweep's top configurations: its rank there, its trial run, its config."""

    rank: int
    run: Any
    config: dict[str, Any]


class ConfirmationInterrupted(KeyboardInterrupt):
    """The confirmation's sweep was interrupted; the same command resumes it."""


def confirm(goal: Target, request: Request, *, dry_run: bool = False,
            hooks: dict[str, Callable[..., None]] | None = None) -> Decision:
    """Re-train, score and decide; the decision is written unless `dry_run` (the re-training is recorded
    either way). `hooks`: on_progress and on_status for the confirmation's sweep, as `run` shows it, and
    on_trials, told how many trials it will run."""
    hooks = hooks or {}
    say = hooks.get("on_status") or (lambda line: None)
    spec = goal.sweep.spec
    picks = top_configs(goal, request.top)
    seeds = [spec.train.seed + 1 + i for i in range(request.seeds)]
    configs = [{**pick.config, C.SEED_PARAM: seed} for pick in picks for seed in seeds]
    if (planned := hooks.get("on_trials")) is not None:
        planned(len(configs))  # fewer than K x S when the sweep has fewer distinct configurations
    key = hashlib.sha256(json.dumps([goal.sweep.sweep_id, configs], sort_keys=True, default=str).encode()
                         ).hexdigest()[:16]
    say(f"confirming sweep {goal.sweep.sweep_id}: its top {len(picks)} configuration(s), each re-trained with "
        f"seeds {', '.join(map(str, seeds))} ({len(configs)} trials)")
    # a sweep without a test split is refused before anything trains; the images are decoded into the
    # cache the confirmation's sweep then maps (run_sweep's), not decoded a second time into another
    data, inputs = test_data(spec, cache_root(request.storage))
    parent = _finished(goal, key) or _train(goal, configs, key, request, hooks)
    results = _scored(goal, spec, data, inputs, parent, picks, seeds)
    champion = champion_of(goal, data, inputs)
    verdict = judge(results, champion.test.get(goal.metric) if champion else None, goal.metric, goal.mode,
                    goal.margin, request.confidence)
    numbers = summary(results, verdict, request.confidence, goal.mode, parent.data.tags[C.SWEEP_TAG])
    pick = verdict.chosen
    seed = verdict.registered or (pick.seeds[0] if pick is not None else results[0].seeds[0])
    challenger = Candidate("challenger", seed.model_uri, seed.test_metrics,
                           params=dict(pick.params if pick else results[0].params), run_id=seed.run_id)
    if champion is not None and champion.run_id and champion.run_id == seed.run_id:
        verdict = replace(verdict, promoted=False,
                          reason=f"held: this seed's model is already the champion (version {champion.version})")
    decision = Decision(verdict.promoted, verdict.reason, goal.name, goal.alias, goal.metric, goal.mode, challenger,
                        champion, dry_run=dry_run, sweep_id=goal.sweep.sweep_id, confirmation=numbers)
    decision = settle(goal, decision, goal.client.get_run(seed.run_id) if decision.promoted else None, data)
    if not dry_run:
        _refresh_report(goal, request.storage, say)
    return decision


def _refresh_report(goal: Target, storage: str | None, say: Callable[[str], None]) -> None:
    """Rewrite the sweep's report, which now shows the confirmation; a report that cannot be drawn costs
    the decision nothing but a warning."""
    from hpsweep.report.html import write_report

    try:
        report = write_report(goal.sweep.parent.info.run_id, uri=goal.client.tracking_uri, storage=storage)
        say(f"report: {report.files['html']} (the confirmation is in it)")
    except Exception as exc:
        log.warning("could not rewrite the sweep report: %s", exc)


def top_configs(goal: Target, k: int) -> list[Pick]:
    """The sweep's best K distinct configurations among trials that count as results, best first."""
    score = C.best_metric(goal.val_metric)
    finished = finished_trials(goal.client, goal.sweep.parent, goal.val_metric)
    finished.sort(key=lambda r: r.data.metrics[score], reverse=goal.mode == "max")
    space, picks, seen = SearchSpace.of(goal.sweep.spec), [], set()
    for run in finished:
        config = space.from_logged(dict(run.data.params))
        if (same := json.dumps(config, sort_keys=True, default=str)) in seen:
            continue  # a warm start's re-run of a configuration: the same configuration once
        try:
            space.resolve(config)
        except ValueError as exc:
            raise PromotionError(f"trial {run.info.run_name} cannot be re-trained by this sweep: {exc}") from None
        seen.add(same)
        picks.append(Pick(len(picks) + 1, run, config))
        if len(picks) == k:
            break
    return picks


def confirmation_raw(sweep_raw: dict[str, Any], sweep_id: str, experiment: str, trials: int,
                     key: str) -> dict[str, Any]:
    """The confirmation's sweep file: the sweep's own training, data and resources, in its experiment,
    with every trial running all its epochs (no scheduler, time budget or warm start)."""
    raw = copy.deepcopy(sweep_raw)
    raw["name"] = f"{str(raw['name'])[:90]}-confirm"
    raw["description"] = f"re-trains the best configurations of sweep {sweep_id} with fresh seeds (key {key})"
    raw.setdefault("tracking", {})["experiment"] = experiment
    search = raw.setdefault("search", {})
    for field in ("time_budget", "warm_start", "startup_trials", "scheduler"):
        search.pop(field, None)
    search.update(algorithm="random", num_trials=trials)
    return raw


def _finished(goal: Target, key: str) -> Any:
    """A finished confirmation of the same configurations and seeds, whose trials are reused."""
    found = search_all(goal.client, [goal.sweep.parent.info.experiment_id],
                       f"tags.`{C.CONFIRMS_TAG}` = '{goal.sweep.sweep_id}' and tags.`{C.CONFIRM_KEY_TAG}` = '{key}'"
                       " and attributes.status = 'FINISHED'", ["attributes.start_time DESC"])
    return found[0] if found else None


def _train(goal: Target, configs: list[dict[str, Any]], key: str, request: Request,
           hooks: dict[str, Callable[..., None]]) -> Any:
    """Run (or resume) the confirmation's sweep; its parent run once every trial has ended."""
    import yaml

    from hpsweep.storage import results_root
    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep
    from hpsweep.sweep.state import unfinished_sweep

    sweep = goal.sweep
    experiment = goal.client.get_experiment(sweep.parent.info.experiment_id).name
    raw = confirmation_raw(sweep.raw, sweep.sweep_id, experiment, len(configs), key)
    spec = validate_data(raw, sweep.spec.source, sweep.spec.base_dir)
    previous = unfinished_sweep(results_root(request.storage), spec.name)
    other = previous is not None and previous[1].raw.get("description") != raw["description"]
    plan = plan_sweep(spec, raw, storage=request.storage, uri=goal.client.tracking_uri, restart=other)
    plan = replace(plan, fixed=configs, parent_tags={
        C.ROLE_TAG: C.CONFIRMATION_ROLE, C.PARENT_TAG: sweep.parent.info.run_id,
        C.CONFIRMS_TAG: sweep.sweep_id, C.CONFIRM_KEY_TAG: key})
    if (say := hooks.get("on_status")) is not None:
        say(f"{'resuming' if plan.resuming else 'starting'} the confirmation sweep {plan.sweep_id}")
    outcome = run_sweep(spec, plan, yaml.safe_dump(raw, sort_keys=False), on_progress=hooks.get("on_progress"),
                        on_status=hooks.get("on_status"))
    if outcome.interrupted:
        raise ConfirmationInterrupted(plan.sweep_id)
    return goal.client.get_run(outcome.parent_run_id)


def _scored(goal: Target, spec: SweepSpec, data: Any, inputs: Any, parent: Any, picks: list[Pick],
            seeds: list[int]) -> list[ConfirmedConfig]:
    """Every seed of every configuration, its model logged (once) and evaluated on the test split."""
    score = C.best_metric(goal.val_metric)
    runs = {_identity(r.data.params): r for r in trial_runs(goal.client, parent)}
    results = []
    for pick in picks:
        seed_results = []
        for seed in seeds:
            run = runs.get(_identity({k: str(v) for k, v in trained_with({**pick.config, C.SEED_PARAM: seed}).items()}))
            seed_results.append(_seed_result(goal, spec, data, inputs, run, seed, score))
        results.append(ConfirmedConfig(pick.rank, pick.run.info.run_id, pick.run.data.metrics[score],
                                       dict(pick.run.data.params), seed_results))
    return results


def _seed_result(goal: Target, spec: SweepSpec, data: Any, inputs: Any, run: Any, seed: int,
                 score: str) -> SeedResult:
    usable = run is not None and C.counts_as_result(run.info.status, run.data.tags.get(C.STOP_TAG),
                                                    run.data.metrics.get(score))
    if not usable:
        return SeedResult(seed, run.info.run_id if run is not None else "", math.nan, math.nan)
    model_uri = run.data.tags.get(C.MODEL_URI_TAG)
    if model_uri is None:
        model_uri = log_recorded(spec, data, run.info.run_id, goal.client.tracking_uri)
        goal.client.set_tag(run.info.run_id, C.MODEL_URI_TAG, model_uri)
    test = evaluate(model_uri, data, inputs)
    return SeedResult(seed, run.info.run_id, run.data.metrics[score], test.get(goal.metric, math.nan), model_uri, test)


def _identity(params: dict[str, str]) -> str:
    return json.dumps(sorted(params.items()))
