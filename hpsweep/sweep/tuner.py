"""Ray Tune's Tuner for a sweep: built new, or restored from the sweep's folder to resume it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpsweep.compat import add_finished_trials, trial_actors_without_runtime_env, tune_forwards_no_cloud_secrets
from hpsweep.contract import RESULT_SCORE
from hpsweep.search.samplers import make_sampler
from hpsweep.search.schedulers import build_scheduler
from hpsweep.search.space import SearchSpace
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.sweep.checkpoints import STATE_SAVE_S
from hpsweep.sweep.plan import SweepPlan
from hpsweep.sweep.tune_hooks import BudgetedSearch, BudgetStopper, SweepCallback
from hpsweep.sweep.worker import trial_entry
from hpsweep.sweep.workers import trial_resources
from hpsweep.track.warm import WarmStart, as_trials


def make_tuner(spec: SweepSpec, data: Any, pretrained: Any, plan: SweepPlan,
               warm: WarmStart | None = None, fixed: list[dict[str, Any]] | None = None) -> Any:
    """A new Tuner, or, for a sweep that ran before, Ray Tune's saved experiment restored: finished trials
    kept, unfinished ones continued from their latest checkpoints, the searcher's state reloaded.
    `warm`: earlier sweeps' trials for a new tuner's sampler (a restored one has them already).
    `fixed`: the configurations to run, each once, in place of a search (a confirmation's)."""
    from ray import tune

    tune_forwards_no_cloud_secrets()  # Ray would record them with every trial actor
    trial_actors_without_runtime_env()  # the first trials take the workers Ray started ahead of time

    # Save the experiment state every 5 s (Ray's default adapts, to 10 s or more): a driver killed with -9
    # then repeats at most 5 s of each running trial. Saving every second cost each 12-epoch trial 0.2 s:
    # trials wait at every report while the driver serialises every changed trial's state.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SAVE_S))
    # Ray's CSV and TensorBoard loggers repeat what MLflow records and cost the driver time at every
    # result (the trial waits for it): only Ray's result.json is kept (see _build_tuner).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    sweep = {"raw": plan.state.raw, "source": spec.source, "base_dir": str(spec.base_dir)}
    # `data`: the object ref of the one copy in Ray's object store, and where a node without the sweep's
    # image cache fetches it (node_data.share): a node's trials all read the same copy
    ref, fetch = data
    # a list, which Tune passes on as is: a data-parallel trial hands the ref itself to its other workers
    data_ref = [ref] if ref is not None and spec.resources.workers > 1 else None
    trainable = tune.with_resources(tune.with_parameters(trial_entry, sweep=sweep, data=ref, pretrained=pretrained,
                                                         fetch=fetch, data_ref=data_ref),
                                    trial_resources(spec))
    if plan.resuming and _restorable(plan.folder):
        # Unpickles the experiment's state: the results folder must be trusted (docs/running.md).
        return tune.Tuner.restore(str(plan.folder), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    return _build_tuner(spec, trainable, plan, warm, fixed)


def _restorable(folder: Path) -> bool:
    """Whether Ray Tune saved enough of the sweep to restore it: the tuner, then (every few seconds) the
    experiment's state, then the searcher's. A driver killed in between leaves the tuner without the
    rest, and Ray's restore then starts the experiment over with a single trial (it does not pass the
    number of samples on; seen with Ray 2.60). Such a sweep is started anew in the same folder instead:
    its trials had not been saved by Ray, so the tracker deletes their runs and they run again."""
    from ray import tune

    return (tune.Tuner.can_restore(str(folder)) and any(folder.glob("experiment_state-*.json"))
            and any(folder.glob("search_gen_state-*.json")))


def _searcher(spec: SweepSpec, warm: WarmStart | None, fixed: list[dict[str, Any]] | None) -> Any:
    """Optuna's sampler behind Ray's OptunaSearch, or, for a confirmation, its fixed configurations."""
    from ray.tune.search.optuna import OptunaSearch

    metrics, modes = spec.train.metrics(), spec.train.modes()
    if fixed is not None:
        from hpsweep.search.fixed import FixedConfigs

        return FixedConfigs(fixed, metrics[0], modes[0])
    single = len(metrics) == 1
    space = SearchSpace.of(spec)
    searcher = OptunaSearch(space=space.define_by_run, sampler=make_sampler(spec),
                            metric=metrics[0] if single else metrics, mode=modes[0] if single else modes,
                            points_to_evaluate=warm.rerun if warm is not None and single else None)
    if warm is not None and single:  # the borrowed trials are finished trials of the sampler's study
        add_finished_trials(searcher, as_trials(warm, space))
    return searcher


def _build_tuner(spec: SweepSpec, trainable: Any, plan: SweepPlan, warm: WarmStart | None,
                 fixed: list[dict[str, Any]] | None) -> Any:
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import ConcurrencyLimiter

    metrics, modes = spec.train.metrics(), spec.train.modes()
    single = len(metrics) == 1
    searcher = _searcher(spec, warm, fixed)
    if spec.search.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=BudgetedSearch(searcher, plan.sweep_id), scheduler=build_scheduler(spec),
            num_samples=spec.num_trials, reuse_actors=True,
            metric=metrics[0] if single else None, mode=modes[0] if single else None,
        ),
        run_config=tune.RunConfig(
            name=plan.sweep_id, storage_path=str(plan.root), verbose=0,
            callbacks=[SweepCallback(plan.sweep_id), JsonLoggerCallback()],
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            stop=BudgetStopper(plan.sweep_id),
            # Ray keeps every checkpoint; the callback prunes them once Ray's saved state has moved on
            # (Ray's own num_to_keep deletes checkpoints that a driver killed with -9 may resume from).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=RESULT_SCORE,
                                                    checkpoint_score_order=modes[0]),
        ),
    )
