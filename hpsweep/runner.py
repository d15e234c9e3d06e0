"""Run a sweep on Ray Tune: Optuna proposes, Ray schedules and runs trials, the driver records to MLflow.

The data is prepared and checked once, before Ray starts, and shared with every trial through the
object store; trials never re-read the files.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsweep.best_model import model_logger
from hpsweep.data.base import DataError, PreparedData
from hpsweep.interrupt import INTERRUPT, InterruptStopper, graceful_interrupt
from hpsweep.params import param_extremes
from hpsweep.quiet import quiet
from hpsweep.space import SearchSpace, make_sampler
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.tracking import SweepTracker, TrialRecord, trial_error
from hpsweep.trainable import TrialContext, data_mismatch, load_trainable, uses_data

log = logging.getLogger(__name__)
DEFAULT_STORAGE = "hpsweep-results"
#: what Ray ranks checkpoints by: the sweep metric, nudged by epoch so that among equal values the
#: earliest epoch ranks first, as the loop's best epoch does (Ray then keeps the checkpoint we log)
SCORE = "hpsweep_score"


@dataclass(frozen=True)
class Progress:
    """One thing that happened to a trial, for a live display."""

    event: str  #: start, epoch, end
    trial: int
    params: dict[str, Any]
    epoch: int = 0
    value: float | None = None
    status: str = "RUNNING"


@dataclass
class SweepOutcome:
    sweep_id: str
    experiment: str
    parent_run_id: str
    tracking_uri: str
    metric: str
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    failed: int = 0
    best: tuple[str, TrialRecord] | None = None
    best_params: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False


def run_sweep(spec: SweepSpec, raw: dict[str, Any], sweep_text: str, *, uri: str | None = None,
              storage: str | None = None, on_progress: Callable[[Progress], None] | None = None,
              verbose: bool = False) -> SweepOutcome:
    """Prepare the data, start (or join) Ray, run every trial, and record the sweep in MLflow."""
    trainable = load_trainable(spec.trainable)
    data: PreparedData | None = None
    if uses_data(trainable):
        from hpsweep.data import prepare
        from hpsweep.trial import check_metrics

        data = prepare(spec)
        check_metrics(spec, data)
        if (why := data_mismatch(trainable, data)) is not None:
            raise DataError(spec.source, "trainable", why)
    from hpsweep.models import pretrained_state

    pretrained = pretrained_state(spec.model.pretrained, spec.base_dir)  # read once, here, before Ray starts
    sweep_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with quiet(verbose):
        return _run(spec, raw, sweep_text, data, pretrained, sweep_id, uri, storage, on_progress, verbose)


def _run(spec: SweepSpec, raw: dict[str, Any], sweep_text: str, data: PreparedData | None, pretrained: Any,
         sweep_id: str, uri: str | None, storage: str | None, on_progress: Callable[[Progress], None] | None,
         verbose: bool) -> SweepOutcome:
    tracker = SweepTracker(spec, sweep_id, sweep_text, uri, effective=raw)
    started_ray = _ensure_ray(verbose)
    status, failed = "KILLED", 0
    try:
        tuner = _build_tuner(spec, raw, data, pretrained, sweep_id, storage, [_Callback(tracker, data, on_progress)])
        with graceful_interrupt():
            tuner.fit()
        failed = sum(1 for r in tracker.trials.values() if r.stop in ("error", "oom"))
        status = "FAILED" if tracker.trials and failed == len(tracker.trials) else "FINISHED"
        if INTERRUPT["requested"]:
            status = "KILLED"  # stopped by Ctrl-C: what ran is recorded, the runs left open are closed
        tracker.finish_sweep(status, model_logger(spec, data) if data is not None else None)
    finally:
        if tracker.client.get_run(tracker.parent_id).info.status == "RUNNING":
            tracker.abort()
        if started_ray:
            import ray

            ray.shutdown()
    best = tracker.best_trial()
    best_params = tracker.client.get_run(best[1].run_id).data.params if best else {}
    return SweepOutcome(sweep_id, spec.experiment_name, tracker.parent_id, tracker.uri, tracker.metric,
                        tracker.trials, failed, best, best_params, interrupted=bool(INTERRUPT["requested"]))


def _ensure_ray(verbose: bool) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local Ray with this machine's CPUs; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
             log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    return True


def _build_tuner(spec: SweepSpec, raw: dict[str, Any], data: PreparedData | None, pretrained: Any,
                 sweep_id: str, storage: str | None, callbacks: list[Any]) -> Any:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    metrics, modes = spec.train.metrics(), spec.train.modes()
    single = len(metrics) == 1
    searcher = OptunaSearch(space=SearchSpace.of(spec).define_by_run, sampler=make_sampler(spec),
                            metric=metrics[0] if single else metrics, mode=modes[0] if single else modes)
    sweep = {"raw": raw, "source": spec.source, "base_dir": str(spec.base_dir)}
    trainable = tune.with_resources(tune.with_parameters(_trial_entry, sweep=sweep, data=data, pretrained=pretrained),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    location = storage or os.environ.get("HPSWEEP_STORAGE") or str(Path.cwd() / DEFAULT_STORAGE)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=build_scheduler(spec), num_samples=spec.num_trials,
            max_concurrent_trials=spec.search.max_concurrent, time_budget_s=spec.search.time_budget,
            reuse_actors=True, metric=metrics[0] if single else None, mode=modes[0] if single else None,
        ),
        run_config=tune.RunConfig(
            name=sweep_id, storage_path=location, callbacks=callbacks, verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            stop=InterruptStopper(),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=SCORE,
                                                    checkpoint_score_order=modes[0]),
        ),
    )


def build_scheduler(spec: SweepSpec) -> Any:
    """The trial scheduler. Grace periods cover the frozen-backbone epochs: a trial whose backbone is still
    frozen is behind by design, and stopping it then would judge it before it has really started."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    chosen, epochs = spec.search.scheduler, spec.train.epochs
    grace = grace_period(spec)
    if chosen.name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=grace,
                             reduction_factor=chosen.reduction_factor)
    if chosen.name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=epochs,
                                  reduction_factor=chosen.reduction_factor)
    if chosen.name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=grace,
                                  min_samples_required=chosen.min_samples_required)
    return FIFOScheduler()


def grace_period(spec: SweepSpec) -> int:
    """Epochs every trial runs before a scheduler may stop it: the sweep's grace period, raised to
    one past the most frozen epochs any trial can draw."""
    asked = getattr(spec.search.scheduler, "grace_period", 1)
    frozen = 0
    if "freeze_epochs" in spec.space.model_fields_set:
        frozen = int(param_extremes(spec.space.freeze_epochs)[1] or 0)
    grace = min(spec.train.epochs, max(asked, frozen + 1))
    if grace != asked:
        log.info("grace period raised to %d so no trial is stopped while its backbone is frozen", grace)
    return grace


def _trial_entry(config: dict[str, Any], sweep: dict[str, Any], data: PreparedData | None,
                 pretrained: dict[str, Any] | None) -> None:
    """Runs in a Ray worker: rebuild the spec, size torch to the trial's CPUs, run the trainable."""
    import torch
    from ray import tune

    from hpsweep.checkpoint import load_checkpoint, save_checkpoint

    spec = validate_data(sweep["raw"], sweep["source"], Path(sweep["base_dir"]))
    torch.set_num_threads(max(1, math.floor(spec.resources.cpu)))  # no oversubscription when trials share CPUs
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            resume = load_checkpoint(Path(folder))

    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    epochs_reported = 0

    def report(metrics: Any, state: dict[str, Any] | None = None) -> None:
        nonlocal epochs_reported
        epochs_reported += 1
        metrics = dict(metrics)
        if isinstance(metrics.get(metric), int | float):
            nudge = 1e-9 * epochs_reported
            metrics[SCORE] = float(metrics[metric]) - nudge if mode == "max" else float(metrics[metric]) + nudge
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(state, Path(folder))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    context = TrialContext(spec, data, report, resume, spec.resources.cpu, pretrained)
    try:
        load_trainable(spec.trainable)(config, context)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        # Retrying the same configuration would run out of memory again: end the trial with the reason
        # (the tracker marks it FAILED) instead of raising, which Ray would retry up to max_failures.
        from hpsweep.metrics import worst_value

        tune.report({metric: worst_value(metric, mode), "hpsweep_stop": "oom",
                     "hpsweep_error": f"out of memory: {type(exc).__name__}: {exc}"[:2000]})


def _callback_base() -> type:
    from ray.tune import Callback

    return Callback


class _Callback(_callback_base()):  # type: ignore[misc]
    """Driver side: Ray's trial events to the tracker (MLflow) and to the progress display."""

    def __init__(self, tracker: SweepTracker, data: PreparedData | None,
                 on_progress: Callable[[Progress], None] | None) -> None:
        self.tracker, self.on_progress = tracker, on_progress
        self.class_names = data.class_names if data is not None else ()

    def _emit(self, event: str, trial: Any, **kw: Any) -> None:
        if self.on_progress is not None:
            record = self.tracker.trials.get(trial.trial_id)
            self.on_progress(Progress(event, record.number if record else 0, dict(trial.config), **kw))

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.tracker.trials:
            self.tracker.start_trial(trial.trial_id, trial.config)
        self._emit("start", trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        self.tracker.log_result(trial.trial_id, result)
        self._emit("epoch", trial, epoch=int(result.get("training_iteration", 0)),
                   value=self.tracker.trials[trial.trial_id].best)

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        if (trial.last_result or {}).get("hpsweep_best"):
            self.tracker.trials[trial.trial_id].best_checkpoint = checkpoint

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tracker.finish_trial(trial.trial_id, class_names=self.class_names)
        record = self.tracker.trials[trial.trial_id]
        self._emit("end", trial, epoch=len(record.history), value=record.best, status=record.stop or "scheduler")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.tracker.trials:
            self.tracker.start_trial(trial.trial_id, trial.config)
        self.tracker.trials[trial.trial_id].stop = "error"
        self.tracker.finish_trial(trial.trial_id, error=trial_error(trial), class_names=self.class_names)
        record = self.tracker.trials[trial.trial_id]
        self._emit("end", trial, epoch=len(record.history), value=record.best, status="error")
