"""Run a sweep on Ray Tune: Optuna proposes, Ray schedules and runs trials, the driver records to MLflow.

The data is prepared and checked once, before Ray starts, and shared with every trial through the
object store; trials never re-read the files.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpsweep.registry.best_model import model_logger
from hpsweep.search.space import SearchSpace, make_sampler
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.spec.params import param_extremes
from hpsweep.sweep.interrupt import INTERRUPT, graceful_interrupt, relay_interrupt
from hpsweep.sweep.quiet import quiet
from hpsweep.sweep.state import SweepState, check_unchanged, fingerprint, settings_of, sweep_lock, unfinished_sweep
from hpsweep.track.tracker import (
    REPORTED_FILE,
    SweepTracker,
    TrialRecord,
    close_sweep_runs,
    epoch_metrics,
    epoch_step,
    tracking_uri,
    trial_error,
)
from hpsweep.train.checkpoint import remove_orphaned_staging
from hpsweep.train.data.base import DataError, PreparedData
from hpsweep.train.trainable import TrialContext, data_mismatch, load_trainable, uses_data

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
    results: Path | None = None  #: the sweep's folder of Ray Tune state and checkpoints
    report: Path | None = None  #: the sweep report's HTML page, when the sweep ended and it was written


@dataclass(frozen=True)
class SweepPlan:
    """What `hpsweep run` is about to do: start a sweep, or resume the unfinished one of the same name."""

    root: Path  #: the results storage
    state: SweepState
    resuming: bool
    abandoned: tuple[Path, SweepState] | None = None  #: an unfinished sweep that --restart gives up

    @property
    def sweep_id(self) -> str:
        return self.state.sweep_id

    @property
    def folder(self) -> Path:
        return self.root / self.state.sweep_id


def results_root(storage: str | None = None) -> Path:
    """The folder holding every sweep's Ray Tune state: --storage, $HPSWEEP_STORAGE or ./hpsweep-results."""
    location = storage or os.environ.get("HPSWEEP_STORAGE") or DEFAULT_STORAGE
    if "://" in location and not location.startswith("file://"):
        raise ValueError(f"results storage must be a folder (on a cluster, one every node mounts), got {location}")
    return Path(location.removeprefix("file://")).expanduser().resolve()


def plan_sweep(spec: SweepSpec, raw: dict[str, Any], *, storage: str | None = None, uri: str | None = None,
               restart: bool = False) -> SweepPlan:
    """Resume the latest unfinished sweep of this name if there is one (its settings must match, see
    state.check_unchanged), otherwise plan a new sweep. `restart` plans a new one regardless."""
    root = results_root(storage)
    previous = unfinished_sweep(root, spec.name)
    if previous is not None and not restart:
        _, state = previous
        check_unchanged(state, spec)
        state = replace(state, raw=raw, num_trials=spec.num_trials, time_budget=spec.search.time_budget,
                        tracking_uri=_absolute_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or state.tracking_uri))
        return SweepPlan(root, state, resuming=True)
    state = SweepState(_new_sweep_id(root, spec.name), spec.name, fingerprint(spec), settings_of(spec), raw,
                       spec.source, str(spec.base_dir), _absolute_uri(tracking_uri(uri)), num_trials=spec.num_trials,
                       time_budget=spec.search.time_budget)
    return SweepPlan(root, state, resuming=False, abandoned=previous)


def _new_sweep_id(root: Path, name: str) -> str:
    stamp = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = stamp, 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


def _absolute_uri(uri: str) -> str:
    """A relative SQLite URI made absolute, so a resume from another folder finds the same database."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def run_sweep(spec: SweepSpec, plan: SweepPlan, sweep_text: str, *,
              on_progress: Callable[[Progress], None] | None = None, verbose: bool = False) -> SweepOutcome:
    """Prepare the data, start (or join) Ray, run or resume every trial, and record the sweep in MLflow."""
    trainable = load_trainable(spec.trainable)
    data: PreparedData | None = None
    if uses_data(trainable):
        from hpsweep.train.data import prepare
        from hpsweep.train.trial import check_metrics

        data = prepare(spec)
        check_metrics(spec, data)
        if (why := data_mismatch(trainable, data)) is not None:
            raise DataError(spec.source, "trainable", why)
    from hpsweep.train.models import pretrained_state

    pretrained = pretrained_state(spec.model.pretrained, spec.base_dir)  # read once, here, before Ray starts
    with quiet(verbose):
        started_ray = _ensure_ray(verbose)
        try:
            check_shared_storage(plan.root)
            with sweep_lock(plan.folder, plan.sweep_id):
                if plan.abandoned is not None:
                    abandon(*plan.abandoned)
                return _run(spec, plan, sweep_text, data, pretrained, on_progress)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
            remove_orphaned_staging()  # workers killed here (the sweep's own, when Ray stopped mid-report)


class StorageNotShared(ValueError):
    """The results folder is not visible from every node of the cluster."""


def check_shared_storage(root: Path) -> None:
    """On a cluster of several nodes, make sure each one sees the results folder (Ray Tune keeps
    checkpoints there and a trial may move to another node); StorageNotShared names those that do not."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".hpsweep-shared-{uuid.uuid4().hex}"
    marker.write_text("hpsweep checks that every node sees this folder\n", encoding="utf-8")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        answers = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                           .remote(str(marker)) for n in nodes], timeout=120)
    finally:
        marker.unlink(missing_ok=True)
    blind = [n["NodeManagerAddress"] for n, seen in zip(nodes, answers, strict=True) if not seen]
    if blind:
        raise StorageNotShared(f"results storage {root} is not shared: the cluster's node(s) {', '.join(blind)} "
                               f"cannot see it. Give --storage (or HPSWEEP_STORAGE) a folder every node mounts")


def abandon(folder: Path, state: SweepState) -> None:
    """Give up an unfinished sweep (--restart): it is never resumed, and its open runs are closed."""
    with sweep_lock(folder, state.sweep_id):
        close_sweep_runs(state.tracking_uri, state.sweep_id, "KILLED", reason="abandoned")
        state.status = "abandoned"
        state.save(folder)
    log.info("abandoned sweep %s", state.sweep_id)


@dataclass
class _Live:
    """The driver-side objects of a running sweep. Ray Tune pickles its callbacks, stopper and search
    algorithm with the experiment and unpickles them on a resume; those keep only the sweep id and
    find the live objects here."""

    tracker: SweepTracker
    on_progress: Callable[[Progress], None] | None
    state: SweepState
    folder: Path
    started: float = field(default_factory=time.monotonic)
    spent_before: float = 0.0
    saved_at: float = 0.0
    reconciled: bool = False

    @property
    def deadline(self) -> float | None:
        budget = self.state.time_budget
        return None if budget is None else self.started + budget - self.spent_before

    def account(self, every: float = 0.0) -> None:
        """Record the time spent so far (every few seconds while running: a kill -9 loses at most that)."""
        now = time.monotonic()
        if now - self.saved_at >= every:
            self.state.elapsed_s = self.spent_before + now - self.started
            self.state.save(self.folder)
            self.saved_at = now


_LIVE: dict[str, _Live] = {}


def _run(spec: SweepSpec, plan: SweepPlan, sweep_text: str, data: PreparedData | None, pretrained: Any,
         on_progress: Callable[[Progress], None] | None) -> SweepOutcome:
    state = plan.state
    state.status, state.starts = "running", state.starts + 1
    state.save(plan.folder)
    tracker = SweepTracker(spec, plan.sweep_id, sweep_text, state.tracking_uri, effective=state.raw,
                           attach=plan.resuming, class_names=data.class_names if data is not None else ())
    live = _LIVE[plan.sweep_id] = _Live(tracker, on_progress, state,
                                        plan.folder, spent_before=state.elapsed_s)
    failed, completed = 0, False
    try:
        tuner = _tuner(spec, data, pretrained, plan)
        with graceful_interrupt():
            tuner.fit()
        for record in tracker.trials.values():  # Ray's final state is saved: only the best and latest stay
            if record.best_checkpoint is not None:
                best = Path(record.best_checkpoint.path)
                prune_checkpoints(best.parent, {best}, grace_s=0.0)
        if INTERRUPT["requested"]:
            tracker.abort("KILLED")  # what ran is recorded; the open runs reopen when the sweep resumes
        else:
            tracker.finish_cut_trials("time_budget")
            failed = sum(1 for r in tracker.trials.values() if r.stop in ("error", "oom"))
            status = "FAILED" if tracker.trials and failed == len(tracker.trials) else "FINISHED"
            tracker.finish_sweep(status, model_logger(spec, data) if data is not None else None)
            completed = True
    finally:
        state.status = "finished" if completed else "interrupted"
        live.account()
        if tracker.client.get_run(tracker.parent_id).info.status == "RUNNING":
            tracker.abort()
        tracker.wait()  # everything is in MLflow before the sweep's outcome is read from it
        _LIVE.pop(plan.sweep_id, None)
    best = tracker.best_trial()
    best_params = tracker.client.get_run(best[1].run_id).data.params if best else {}
    return SweepOutcome(plan.sweep_id, spec.experiment_name, tracker.parent_id, tracker.uri, tracker.metric,
                        tracker.trials, failed, best, best_params, interrupted=not completed, results=plan.folder,
                        report=_report(tracker, plan) if completed else None)


def _report(tracker: SweepTracker, plan: SweepPlan) -> Path | None:
    """The sweep report, written beside the sweep's results and logged to its parent run. A report that
    cannot be drawn costs the sweep nothing but a warning."""
    from hpsweep.report.gather import write_report

    try:
        return write_report(tracker.parent_id, plan.folder / "report", tracker.uri).files["html"]
    except Exception as exc:
        log.warning("could not write the sweep report: %s", exc)
        return None


def _ensure_ray(verbose: bool) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local Ray with this machine's CPUs; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
             log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    return True


def _tuner(spec: SweepSpec, data: PreparedData | None, pretrained: Any, plan: SweepPlan) -> Any:
    """A new Tuner, or, for a sweep that ran before, Ray Tune's saved experiment restored: finished trials
    kept, unfinished ones continued from their latest checkpoints, the searcher's state reloaded."""
    from ray import tune

    # Save the experiment state every 5 s (Ray's default adapts, to 10 s or more): a driver killed with -9
    # then repeats at most 5 s of each running trial. Saving every second cost each 12-epoch trial 0.2 s:
    # trials wait at every report while the driver serialises every changed trial's state.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SAVE_S))
    # Ray's CSV and TensorBoard loggers repeat what MLflow records and cost the driver time at every
    # result (the trial waits for it): only Ray's result.json is kept (see _build_tuner).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    sweep = {"raw": plan.state.raw, "source": spec.source, "base_dir": str(spec.base_dir)}
    trainable = tune.with_resources(tune.with_parameters(_trial_entry, sweep=sweep, data=data, pretrained=pretrained),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    if plan.resuming and _restorable(plan.folder):
        # Unpickles the experiment's state: the results folder must be trusted (see README).
        return tune.Tuner.restore(str(plan.folder), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    return _build_tuner(spec, trainable, plan)


def _restorable(folder: Path) -> bool:
    """Whether Ray Tune saved enough of the sweep to restore it: the tuner, then (every few seconds) the
    experiment's state, then the searcher's. A driver killed in between leaves the tuner without the
    rest, and Ray's restore then starts the experiment over with a single trial (it does not pass the
    number of samples on; seen with Ray 2.60). Such a sweep is started anew in the same folder instead:
    its trials had not been saved by Ray, so the tracker deletes their runs and they run again."""
    from ray import tune

    return (tune.Tuner.can_restore(str(folder)) and any(folder.glob("experiment_state-*.json"))
            and any(folder.glob("search_gen_state-*.json")))


def _build_tuner(spec: SweepSpec, trainable: Any, plan: SweepPlan) -> Any:
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    metrics, modes = spec.train.metrics(), spec.train.modes()
    single = len(metrics) == 1
    searcher: Any = OptunaSearch(space=SearchSpace.of(spec).define_by_run, sampler=make_sampler(spec),
                                 metric=metrics[0] if single else metrics, mode=modes[0] if single else modes)
    if spec.search.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_BudgetedSearch(searcher, plan.sweep_id), scheduler=build_scheduler(spec),
            num_samples=spec.num_trials, reuse_actors=True,
            metric=metrics[0] if single else None, mode=modes[0] if single else None,
        ),
        run_config=tune.RunConfig(
            name=plan.sweep_id, storage_path=str(plan.root), verbose=0,
            callbacks=[_Callback(plan.sweep_id), JsonLoggerCallback()],
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            stop=_BudgetStopper(plan.sweep_id),
            # Ray keeps every checkpoint; the callback prunes them once Ray's saved state has moved on
            # (Ray's own num_to_keep deletes checkpoints that a driver killed with -9 may resume from).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=SCORE,
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
        limit = spec.search.max_concurrent
        if limit is not None and limit < spec.num_trials:
            # Ray counts a bracket as full only while its trials live, so a trial started after others
            # have ended joins the first bracket, whose trials all run to the end (ray-project/ray#12536)
            log.warning("scheduler hyperband with search.max_concurrent %d below num_trials %d stops few or "
                        "no trials early: Ray Tune puts trials started after others have ended into its "
                        "first bracket, which runs every trial to the end; leave max_concurrent unset or use "
                        "asha", limit, spec.num_trials)
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

    from hpsweep.train.checkpoint import load_checkpoint, save_checkpoint, staging_folder

    remove_orphaned_staging()  # what workers killed on this machine while saving a checkpoint left behind
    spec = validate_data(sweep["raw"], sweep["source"], Path(sweep["base_dir"]))
    torch.set_num_threads(max(1, math.floor(spec.resources.cpu)))  # no oversubscription when trials share CPUs
    resume, reported = None, []
    if (checkpoint := tune.get_checkpoint()) is not None:
        try:
            with checkpoint.as_directory() as folder:
                resume = load_checkpoint(Path(folder))
                reported = read_reported(Path(folder))
        except FileNotFoundError:
            # A driver killed with -9 can leave Ray's saved state naming a checkpoint that was replaced
            # since; the trial starts over (the tracker logs each repeated epoch once).
            log.warning("checkpoint %s is gone; the trial starts from its first epoch", checkpoint.path)

    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    epochs_reported = 0

    def report(metrics: Any, state: dict[str, Any] | None = None) -> None:
        nonlocal epochs_reported
        epochs_reported += 1
        metrics = dict(metrics)
        if isinstance(metrics.get(metric), int | float):
            nudge = 1e-9 * epochs_reported
            metrics[SCORE] = float(metrics[metric]) - nudge if mode == "max" else float(metrics[metric]) + nudge
        reported.append({"step": epoch_step(metrics, len(reported) + 1), "time": int(time.time() * 1000),
                         "metrics": epoch_metrics(metrics)})
        if state is None:
            tune.report(metrics)
            return
        with staging_folder() as folder:
            save_checkpoint(state, folder)
            # what the trial reported so far goes with its state: the driver may not have written it yet
            (folder / REPORTED_FILE).write_text(json.dumps(reported), encoding="utf-8")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    # HyperBand pauses trials at its rungs, and a paused trial continues from the checkpoint of its last
    # report (Ray's function trainables have no other way to save): with it, every epoch checkpoints.
    every = 0.0 if spec.search.scheduler.name == "hyperband" else spec.train.checkpoint_every
    context = TrialContext(spec, data, report, resume, spec.resources.cpu, pretrained, checkpoint_every=every)
    try:
        load_trainable(spec.trainable)(config, context)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        # Retrying the same configuration would run out of memory again: end the trial with the reason
        # (the tracker marks it FAILED) instead of raising, which Ray would retry up to max_failures.
        from hpsweep.train.metrics import worst_value

        tune.report({metric: worst_value(metric, mode), "hpsweep_stop": "oom",
                     "hpsweep_error": f"out of memory: {type(exc).__name__}: {exc}"[:2000]})


def _ray_base(name: str) -> type:
    from ray.tune import Callback
    from ray.tune.search import SearchGenerator
    from ray.tune.stopper import Stopper

    return {"Callback": Callback, "SearchGenerator": SearchGenerator, "Stopper": Stopper}[name]


class _BudgetedSearch(_ray_base("SearchGenerator")):  # type: ignore[misc]
    """Ray's search generator, whose number of trials on a resume is the sweep file's current one
    (Ray would keep the number the sweep started with)."""

    def __init__(self, searcher: Any, sweep_id: str) -> None:
        super().__init__(searcher)
        self.sweep_id = sweep_id

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if (live := _LIVE.get(self.sweep_id)) is not None:
            self._total_samples = live.state.num_trials
            self._finished = self._finished and self._counter >= self._total_samples


class _BudgetStopper(_ray_base("Stopper")):  # type: ignore[misc]
    """Stops the sweep when its time budget, counted over every start of the sweep, is spent."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        live = _LIVE.get(self.sweep_id)
        deadline = live.deadline if live is not None else None
        return deadline is not None and time.monotonic() >= deadline


class _Callback(_ray_base("Callback")):  # type: ignore[misc]
    """Driver side: Ray's trial events to the tracker (MLflow) and to the progress display.

    Ray skips registering a checkpoint when an on_checkpoint callback raises (the trial then resumes
    from scratch), so nothing here may raise on a checkpoint."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id
        self.pruned_at: dict[str, float] = {}  #: trial id -> when its checkpoints were last pruned

    @property
    def live(self) -> _Live:
        return _LIVE[self.sweep_id]

    @property
    def tracker(self) -> SweepTracker:
        return self.live.tracker

    def _emit(self, event: str, trial: Any, **kw: Any) -> None:
        if self.live.on_progress is not None:
            record = self.tracker.trials.get(trial.trial_id)
            self.live.on_progress(Progress(event, record.number if record else 0, dict(trial.config), **kw))

    def _reconcile(self, trials: list[Any]) -> None:
        """Once, before the first trial starts: line MLflow up with the trials Ray restored, including
        the epochs their latest checkpoints hold that the driver had not written before it stopped."""
        live = self.live
        if live.reconciled:
            return
        live.reconciled = True
        reported = {}
        for trial in trials:
            if trial.trial_id in live.tracker.trials and (checkpoint := trial.checkpoint) is not None:
                try:
                    with checkpoint.as_directory() as folder:
                        reported[trial.trial_id] = read_reported(Path(folder))
                except FileNotFoundError:  # pruned: the trial starts over and reports every epoch again
                    continue
        for trial in trials:
            record = live.tracker.trials.get(trial.trial_id)
            if record is None:
                continue
            if record.best_checkpoint is None:
                record.best_checkpoint = _best_checkpoint(trial)
            # A trial Ray had ended may have had its end still on the way to MLflow (the tracker writes
            # on a thread) when the driver died: its last result says how it ended.
            last = trial.last_result or {}
            record.stop = record.stop or last.get("hpsweep_stop")
            record.confusion = record.confusion or last.get("hpsweep_confusion")
        live.tracker.reconcile({t.trial_id: t.status for t in trials}, reported)

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._reconcile(trials)
        relay_interrupt()
        self.live.account(every=5.0)
        self.tracker.flush(due_only=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if not INTERRUPT["requested"]:
            self._reconcile(trials)  # a restored sweep with nothing left to run never steps

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tracker.start_trial(trial.trial_id, trial.config)
        self._emit("start", trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        self.tracker.log_result(trial.trial_id, result)
        self._emit("epoch", trial, epoch=int(result.get("training_iteration", 0)),
                   value=self.tracker.trials[trial.trial_id].best)

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        try:
            self._checkpointed(trial, checkpoint)
        except Exception:  # see the class docstring: logged, and the checkpoint still counts
            log.exception("trial %s: handling its checkpoint %s failed", trial.trial_id, checkpoint.path)

    def _checkpointed(self, trial: Any, checkpoint: Any) -> None:
        record = self.tracker.trials[trial.trial_id]
        if (trial.last_result or {}).get("hpsweep_best"):
            record.best_checkpoint = checkpoint
        # The trial waits while the driver handles its result, and listing its folder every epoch
        # cost about a third of a millisecond (cProfile): superseded checkpoints are looked for every
        # PRUNE_EVERY_S instead (and all at once when the sweep stops).
        now = time.monotonic()
        if now - self.pruned_at.get(trial.trial_id, -math.inf) < PRUNE_EVERY_S:
            return
        self.pruned_at[trial.trial_id] = now
        keep = {Path(checkpoint.path)} | ({Path(record.best_checkpoint.path)} if record.best_checkpoint else set())
        prune_checkpoints(Path(checkpoint.path).parent, keep, grace_s=PRUNE_GRACE_S)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self.tracker.trials[trial.trial_id]
        if record.best_checkpoint is None:
            record.best_checkpoint = _best_checkpoint(trial)
        self.tracker.finish_trial(trial.trial_id)
        self._emit("end", trial, epoch=len(record.history), value=record.best, status=record.stop or "scheduler")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self.tracker.start_trial(trial.trial_id, trial.config)
        record.stop = "error"
        self.tracker.finish_trial(trial.trial_id, error=trial_error(trial))
        self._emit("end", trial, epoch=len(record.history), value=record.best, status="error")


#: how often Ray Tune saves the experiment state a resume starts from (TUNE_GLOBAL_CHECKPOINT_S overrides)
STATE_SAVE_S = 5
#: how long a superseded checkpoint outlives its successor: Ray saves its experiment state every
#: STATE_SAVE_S, so by then the state a resume would read names the successor
PRUNE_GRACE_S = 30.0
#: how often a running trial's superseded checkpoints are looked for
PRUNE_EVERY_S = 5.0


def prune_checkpoints(trial_folder: Path, keep: set[Path], grace_s: float) -> list[Path]:
    """Delete a trial's checkpoints except those in `keep` and those superseded less than `grace_s` ago."""
    import shutil

    found = sorted(trial_folder.glob("checkpoint_*"), key=lambda p: p.name)
    now, deleted = time.time(), []
    for older, newer in itertools.pairwise(found):
        if older in keep:
            continue
        try:
            if now - newer.stat().st_mtime < grace_s:
                continue
            shutil.rmtree(older)
        except OSError:
            continue  # already gone, or its successor vanished: nothing to do
        deleted.append(older)
    return deleted


def read_reported(folder: Path) -> list[dict[str, Any]]:
    """The epochs a checkpoint says its trial reported ([] for a checkpoint written without the list)."""
    path = folder / REPORTED_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("could not read %s: %s", path, exc)
        return []
    return entries if isinstance(entries, list) else []


def _best_checkpoint(trial: Any) -> Any:
    """The trial's best checkpoint as Ray ranked them (by SCORE: the loop's best epoch). Reads Ray's
    checkpoint bookkeeping, which has no public accessor while the sweep runs."""
    manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
    ranked = getattr(manager, "best_checkpoint_results", None) or []
    return ranked[-1].checkpoint if ranked else None
