"""hpsweep's hooks into Ray Tune's loop on the driver: the search generator, the stopper and the callback
that turns trial events into MLflow records (through the tracker) and progress events."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search import SearchGenerator
from ray.tune.stopper import Stopper

from hpsweep.compat import best_checkpoint, set_search_budget
from hpsweep.contract import RESULT_BEST, RESULT_CONFUSION, RESULT_STOP, StopReason
from hpsweep.spec.dimensions import trained_with
from hpsweep.sweep.checkpoints import PRUNE_EVERY_S, PRUNE_GRACE_S, prune_checkpoints, read_reported
from hpsweep.sweep.interrupt import INTERRUPT, relay_interrupt
from hpsweep.sweep.live import LIVE, LiveSweep, Progress
from hpsweep.track.records import trial_error
from hpsweep.track.tracker import SweepTracker

log = logging.getLogger(__name__)


class BudgetedSearch(SearchGenerator):
    """Ray's search generator, whose number of trials on a resume is the sweep file's current one
    (Ray would keep the number the sweep started with)."""

    def __init__(self, searcher: Any, sweep_id: str) -> None:
        super().__init__(searcher)
        self.sweep_id = sweep_id

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if (live := LIVE.get(self.sweep_id)) is not None:
            set_search_budget(self, live.state.num_trials)


class BudgetStopper(Stopper):
    """Stops the sweep when its time budget, counted over every start of the sweep, is spent."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        live = LIVE.get(self.sweep_id)
        deadline = live.deadline if live is not None else None
        return deadline is not None and time.monotonic() >= deadline


class SweepCallback(Callback):
    """Driver side: Ray's trial events to the tracker (MLflow) and to the progress display.

    Ray skips registering a checkpoint when an on_checkpoint callback raises (the trial then resumes
    from scratch), so nothing here may raise on a checkpoint."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id
        self.pruned_at: dict[str, float] = {}  #: trial id -> when its checkpoints were last pruned

    @property
    def live(self) -> LiveSweep:
        return LIVE[self.sweep_id]

    @property
    def tracker(self) -> SweepTracker:
        return self.live.tracker

    def _emit(self, event: str, trial: Any, **kw: Any) -> None:
        if self.live.on_progress is not None:
            record = self.tracker.trials.get(trial.trial_id)
            self.live.on_progress(Progress(event, record.number if record else 0, trained_with(trial.config), **kw))

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
                record.best_checkpoint = best_checkpoint(trial)
            # A trial Ray had ended may have had its end still on the way to MLflow (the tracker writes
            # on a thread) when the driver died: its last result says how it ended.
            last = trial.last_result or {}
            record.stop = record.stop or last.get(RESULT_STOP)
            record.confusion = record.confusion or last.get(RESULT_CONFUSION)
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
        if (trial.last_result or {}).get(RESULT_BEST):
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
            record.best_checkpoint = best_checkpoint(trial)
        self.tracker.finish_trial(trial.trial_id)
        self._emit("end", trial, epoch=len(record.history), value=record.best,
                   status=record.stop or StopReason.SCHEDULER)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self.tracker.start_trial(trial.trial_id, trial.config)
        record.stop = StopReason.ERROR
        self.tracker.finish_trial(trial.trial_id, error=trial_error(trial))
        self._emit("end", trial, epoch=len(record.history), value=record.best, status=StopReason.ERROR)
