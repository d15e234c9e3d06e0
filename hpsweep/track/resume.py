"""Re-attaching a resumed sweep to what MLflow already holds: the parent run, each trial's run and the
epochs it logged, and the epochs that only a trial's checkpoint still carries."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hpsweep import contract as C
from hpsweep.track.queries import is_parent, search_all
from hpsweep.track.records import SUMMARY_METRICS, TrialRecord, best_of, epoch_metrics

log = logging.getLogger(__name__)


class Resuming:
    """The part of SweepTracker that resumes a sweep. It uses the tracker's client, ids and records, and
    its `_add_epoch`, `_flush` and `finish_trial`."""

    client: Any
    experiment_id: str
    sweep_id: str
    parent_id: str
    uri: str
    metric: str
    mode: str
    trials: dict[str, TrialRecord]

    def _find_parent(self) -> Any:
        """The sweep's parent run (a sweep recorded before parent runs carried ROLE_TAG is found among all
        the runs tagged with its id), or None."""
        parents = search_all(self.client, [self.experiment_id], f"tags.`{C.SWEEP_TAG}` = '{self.sweep_id}' and "
                                                                 f"tags.`{C.ROLE_TAG}` = '{C.SWEEP_ROLE}'")
        if not parents:
            parents = [r for r in search_all(self.client, [self.experiment_id],
                                             f"tags.`{C.SWEEP_TAG}` = '{self.sweep_id}'") if is_parent(r)]
        if not parents:
            log.info("sweep %s has no parent run in %s yet; creating it", self.sweep_id, self.uri)
        return parents[0] if parents else None

    def _attach_trials(self) -> None:
        """Rebuild the record of every trial this sweep already logged, so a resumed trial writes into
        its own run and each epoch it repeats is not logged twice."""
        children = search_all(self.client, [self.experiment_id], f"tags.`{C.PARENT_TAG}` = '{self.parent_id}'")
        for run in children:
            trial_id = run.data.tags.get(C.TRIAL_TAG)
            if trial_id is None:
                continue
            number = C.trial_number(run.info.run_name) or len(self.trials) + 1
            record = TrialRecord(run.info.run_id, number, attached=True)
            steps: dict[int, dict[str, float]] = {}
            for key in run.data.metrics:
                if key in SUMMARY_METRICS or key.startswith(C.best_metric("")):
                    continue
                for point in self.client.get_metric_history(run.info.run_id, key):
                    steps.setdefault(point.step, {})[key] = point.value
            record.history = [{**values, "epoch": step} for step, values in sorted(steps.items())]
            record.last_step = max(steps, default=0)
            record.best = best_of([h.get(self.metric) for h in record.history], self.mode)
            stop = run.data.tags.get(C.STOP_TAG)
            record.stop = stop if stop not in (None, C.StopReason.INTERRUPTED) else None
            record.error = run.data.tags.get(C.ERROR_TAG)
            self.trials[trial_id] = record
        log.info("resuming sweep %s: %d trials already recorded", self.sweep_id, len(self.trials))

    def reconcile(self, ray_trials: Mapping[str, str],
                  reported: Mapping[str, list[dict[str, Any]]] | None = None) -> None:
        """Match the recorded trials with the trials Ray Tune restored (trial id -> Ray status).
        `reported`: per trial, the epochs its latest checkpoint says it reported (see `backfill`).

        A run whose trial Ray does not know was started after Ray last saved its state, before the
        driver died: Ray and the searcher will run that slot again as a new trial, so the run is tagged
        and deleted (MLflow keeps deleted runs until `mlflow gc`). A run left open by the crash whose
        trial Ray had already ended is closed the way the trial ended."""
        for trial_id in [t for t in self.trials if t not in ray_trials]:
            run_id = self.trials.pop(trial_id).run_id
            log.info("deleting run %s: trial %s was lost with the driver and runs again", run_id, trial_id)
            self.client.set_tag(run_id, C.STOP_TAG, C.StopReason.LOST)
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED")
            self.client.delete_run(run_id)
        for trial_id, entries in (reported or {}).items():
            if trial_id in self.trials:
                self.backfill(trial_id, entries)
        for trial_id, status in ray_trials.items():
            record = self.trials.get(trial_id)
            if record is None or status not in ("TERMINATED", "ERROR"):
                continue
            if self.client.get_run(record.run_id).info.status == "RUNNING":
                if status == "ERROR":
                    record.stop = record.stop or C.StopReason.ERROR
                self.finish_trial(trial_id, error=record.error or (
                    "the trial failed (recorded before the driver stopped)" if status == "ERROR" else None))

    def backfill(self, trial_id: str, entries: list[dict[str, Any]]) -> int:
        """Write the epochs a trial reported that MLflow lacks (held when the driver died); how many.
        `entries` come from the trial's checkpoint: [{"step": n, "time": ms, "metrics": {name: value}}, ...]."""
        record = self.trials[trial_id]
        added = sum(self._add_epoch(record, int(e["step"]), epoch_metrics(e["metrics"]), e.get("time"))
                    for e in sorted(entries, key=lambda e: int(e["step"])))
        if added:
            log.info("recorded %d epochs of trial %s from its checkpoint", added, trial_id)
            self._flush(record)
        return added

