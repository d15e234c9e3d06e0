"""MLflow tracking for a sweep. The driver is the only writer: trials report to Ray Tune, and a Tune
callback on the driver turns their results into one parent run per sweep and one nested run per trial.
One writer means no 'database is locked' on SQLite and works with any tracking URI.

A trial's epoch metrics are written at most once every `flush_s` seconds (one batch per trial), and
always when the trial ends or the sweep stops: each write costs the driver, which shares the CPUs with
the trials, about as much as a small epoch's bookkeeping. The writes go out on a thread of their own
(`Writer`), in the order they were made, so Ray Tune's loop on the driver never waits for the tracking
store (a remote server's round trips, a checkpoint's upload). Epochs still held when the driver is killed
are not lost: every checkpoint carries the metrics its trial reported, and a resumed sweep writes any
epoch MLflow lacks from the checkpoint its trial continues from (`Resuming.reconcile`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hpsweep import contract as C
from hpsweep.spec.dimensions import trained_with
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.track.figures import log_best_figures
from hpsweep.track.records import (
    TrialRecord,
    as_params,
    epoch_metrics,
    epoch_step,
    flush_interval,
    git_commit,
    package_versions,
)
from hpsweep.track.resume import Resuming
from hpsweep.track.writer import Writer, create_sqlite_store, tracking_uri
from hpsweep.train.metrics import improves

log = logging.getLogger(__name__)


class SweepTracker(Resuming):
    """Creates the parent run and writes everything about the sweep's trials into MLflow."""

    def __init__(self, spec: SweepSpec, sweep_id: str, sweep_text: str, uri: str | None = None,
                 effective: dict[str, Any] | None = None, attach: bool = False,
                 class_names: tuple[str, ...] = (), flush_s: float | None = None, fingerprint: str = "",
                 parent_tags: Mapping[str, str] | None = None) -> None:
        """`attach`: continue the sweep's existing parent run and trial runs (a resumed sweep).
        `class_names`: the classes of classification data, to label confusion matrices.
        `flush_s`: the longest a trial's epoch metrics wait before they are written (default: flush_interval()).
        `fingerprint`: the data's (PreparedData.fingerprint), which later sweeps' warm start compares.
        `parent_tags`: more tags for a new parent run (a confirmation's nest it under the sweep it confirms)."""
        import mlflow
        from mlflow import MlflowClient

        self.spec, self.sweep_id, self.fingerprint = spec, sweep_id, fingerprint
        self.uri = tracking_uri(uri)
        create_sqlite_store(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.client: Any = Writer(MlflowClient(self.uri))
        experiment = self.client.get_experiment_by_name(spec.experiment_name)
        self.experiment_id = (experiment.experiment_id if experiment is not None
                              else self.client.create_experiment(spec.experiment_name))
        if experiment is None or C.EXPERIMENT_KIND_TAG not in (experiment.tags or {}):  # a user's choice stays
            self.client.set_experiment_tag(self.experiment_id, C.EXPERIMENT_KIND_TAG, C.EXPERIMENT_KIND)
        self.metric, self.mode = spec.train.metrics()[0], spec.train.modes()[0]
        self.trials: dict[str, TrialRecord] = {}
        self.class_names = class_names
        self.flush_s = flush_interval() if flush_s is None else flush_s
        existing = self._find_parent() if attach else None
        if existing is not None:
            self.parent_id = existing.info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            self._attach_trials()
            self._log_sweep(sweep_text, effective, params=False)
            return
        parent = self.client.create_run(self.experiment_id, run_name=sweep_id, tags={
            C.SWEEP_TAG: sweep_id, C.ROLE_TAG: C.SWEEP_ROLE, C.SWEEP_NAME_TAG: spec.name,
            C.TRAINABLE_TAG: spec.trainable, C.NOTE_TAG: spec.description or f"hpsweep sweep {spec.name}",
            C.BASE_DIR_TAG: str(spec.base_dir), C.SOURCE_TAG: spec.source,
            **({C.FINGERPRINT_TAG: fingerprint} if fingerprint else {}),
            **({C.GIT_COMMIT_TAG: commit} if (commit := git_commit(spec.base_dir)) else {}), **(parent_tags or {}),
        })
        self.parent_id = parent.info.run_id
        self._log_sweep(sweep_text, effective)

    def next_number(self) -> int:
        return max((r.number for r in self.trials.values()), default=0) + 1

    def _log_sweep(self, sweep_text: str, effective: dict[str, Any] | None, params: bool = True) -> None:
        """The sweep as run; on a resume only the files, which may carry a new budget (params are fixed)."""
        search = self.spec.search
        if params:
            self.client.log_batch(self.parent_id, params=as_params({
                # search.*: the trials' own `scheduler` column is their LR schedule, one name one meaning
                "trainable": self.spec.trainable, "search.algorithm": search.algorithm,
                "num_trials": self.spec.num_trials, "search.scheduler": search.scheduler.name,
                "metric": self.metric, "mode": self.mode,
                "epochs": self.spec.train.epochs, "data.source": self.spec.data.source,
            } | ({} if self.spec.startup_trials is None else {"startup_trials": self.spec.startup_trials})))
        else:
            self.client.set_tag(self.parent_id, C.NUM_TRIALS_TAG, str(self.spec.num_trials))
        self.client.log_text(self.parent_id, sweep_text, C.SWEEP_FILE)
        if effective is not None:  # the file with any --set applied: what the sweep really ran
            import yaml

            self.client.log_text(self.parent_id, yaml.safe_dump(effective, sort_keys=False), C.EFFECTIVE_SWEEP)
        self.client.log_dict(self.parent_id, self.spec.model_dump(mode="json", by_alias=True), C.RESOLVED_SWEEP)
        self.client.log_dict(self.parent_id, package_versions(), C.VERSIONS_FILE)

    # ------------------------------------------------------------ trials

    def start_trial(self, trial_id: str, config: Mapping[str, Any]) -> TrialRecord:
        """The trial's run: a new one, or its existing one reopened when the trial resumes."""
        if (record := self.trials.get(trial_id)) is not None:
            if self.client.get_run(record.run_id).info.status != "RUNNING":
                self.client.update_run(record.run_id, status="RUNNING")
            return record
        number = self.next_number()
        run = self.client.create_run(self.experiment_id, run_name=C.trial_run_name(number), tags={
            C.PARENT_TAG: self.parent_id, C.TRIAL_TAG: trial_id, C.SWEEP_TAG: self.sweep_id})
        self.client.log_batch(run.info.run_id, params=as_params(trained_with(config)))  # lr: the one it used
        record = self.trials[trial_id] = TrialRecord(run.info.run_id, number)
        return record

    def log_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        record = self.trials[trial_id]
        record.stop = result.get(C.RESULT_STOP) or record.stop
        record.error = result.get(C.RESULT_ERROR) or record.error
        if result.get(C.RESULT_CONFUSION) is not None:
            record.confusion = result[C.RESULT_CONFUSION]
        if self._add_epoch(record, epoch_step(result, len(record.history) + 1), epoch_metrics(result)) \
                and time.monotonic() - record.flushed_at >= self.flush_s:
            self._flush(record)

    def _add_epoch(self, record: TrialRecord, step: int, values: dict[str, float], at_ms: int | None = None) -> bool:
        """Queue one epoch's metrics for MLflow; False for an epoch already recorded (a retried trial)."""
        from mlflow.entities import Metric

        if step <= record.last_step:
            return False
        record.last_step = step
        record.history.append({**values, "epoch": step})
        at_ms = int(at_ms) if at_ms is not None else int(time.time() * 1000)
        record.pending.extend(Metric(k, v, at_ms, step) for k, v in values.items())
        value = values.get(self.metric)
        if value is not None and improves(value, record.best, self.mode):
            record.best = value
        return True

    def flush(self, due_only: bool = False) -> None:
        """Write every trial's held epoch metrics; with `due_only`, those held for `flush_s` or more."""
        now = time.monotonic()
        for record in self.trials.values():
            if record.pending and (not due_only or now - record.flushed_at >= self.flush_s):
                self._flush(record)

    def _flush(self, record: TrialRecord, metrics: Sequence[Any] = (), tags: Sequence[Any] = ()) -> None:
        """Write the held epoch metrics, with any summary `metrics` and `tags`, in as few batches as
        MLflow allows (at most 1,000 entries each)."""
        queued, record.pending = [*record.pending, *metrics], []
        tags = list(tags)
        while queued or tags:
            batch, queued = queued[:900], queued[900:]
            self.client.log_batch(record.run_id, metrics=batch, tags=tags)
            tags = []
        record.flushed_at = time.monotonic()

    def finish_trial(self, trial_id: str, error: str | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        record = self.trials[trial_id]
        run_id = record.run_id
        summary = {C.EPOCHS_RUN: float(len(record.history))}
        if record.best is not None:
            summary[C.best_metric(self.metric)] = record.best
        if record.attached:  # finished once before a crash: its summary is logged already
            logged = self.client.get_run(run_id).data.metrics
            summary = {k: v for k, v in summary.items() if k not in logged}
        if record.confusion is not None:  # the figure is drawn for the best trial only, at the end
            names = list(self.class_names) or [str(i) for i in range(len(record.confusion))]
            self.client.log_dict(run_id, {"classes": names, "matrix": record.confusion}, C.CONFUSION_FILE)
        if record.best_checkpoint is not None:
            self.client.submit(functools.partial(self._log_checkpoint, trial_id, run_id, record.best_checkpoint))
        error = error or record.error
        if error is not None:
            tags = {C.ERROR_TAG: error[-4900:],
                    C.STOP_TAG: record.stop if record.stop == C.StopReason.OOM else C.StopReason.ERROR}
        else:  # no stop reason from the loop means Ray's scheduler ended the trial before its last epoch
            tags = {C.STOP_TAG: record.stop or C.StopReason.SCHEDULER}
        now = int(time.time() * 1000)
        self._flush(record, metrics=[Metric(k, v, now, 0) for k, v in summary.items()],
                    tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, "FAILED" if error is not None else "FINISHED")

    def _log_checkpoint(self, trial_id: str, run_id: str, checkpoint: Any) -> None:
        """On the writer's thread: the checkpoint's files, fetched where the storage is remote."""
        try:
            with checkpoint.as_directory() as folder:
                self.client.direct.log_artifacts(run_id, folder, C.CHECKPOINT_ARTIFACTS)
        except Exception as exc:  # a checkpoint that vanished must not lose the rest of the record
            log.warning("could not log the best checkpoint of %s: %s", trial_id, exc)

    def wait(self) -> None:
        """Return once everything written so far is in MLflow."""
        self.client.wait()

    # ------------------------------------------------------------ the end

    def best_trial(self) -> tuple[str, TrialRecord] | None:
        """The best trial by the sweep metric; a diverged or failed trial never is, whatever it reached."""
        scored = [(tid, r) for tid, r in self.trials.items()
                  if C.counts_as_result("FAILED" if r.error else "FINISHED", r.stop, r.best)]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda item: item[1].best)  # type: ignore[arg-type, return-value]

    def finish_sweep(self, status: str, log_model: Callable[[str, TrialRecord, str], str | None] | None = None
                     ) -> None:
        """Summarise the best trial on the parent run, log its model, close the parent run."""
        self._close_open_trials("KILLED")  # none should be open; a sweep never leaves a run RUNNING
        best = self.best_trial()
        if best is not None:
            trial_id, record = best
            params = self.client.get_run(record.run_id).data.params
            self.client.log_batch(self.parent_id, params=as_params({f"best.{k}": v for k, v in params.items()}))
            self.client.log_metric(self.parent_id, C.best_metric(self.metric), float(record.best or 0.0))
            self.client.set_tag(self.parent_id, C.BEST_TRIAL_TAG, trial_id)
            self.client.set_tag(self.parent_id, C.BEST_RUN_TAG, record.run_id)
            try:
                log_best_figures(self.client, record, self.metric, self.class_names)
            except Exception as exc:  # a figure must never cost the sweep its summary
                log.warning("could not draw the best trial's figures: %s", exc)
            if log_model is not None:
                try:
                    if (model_uri := log_model(trial_id, record, self.uri)) is not None:
                        self.client.set_tag(self.parent_id, C.BEST_MODEL_TAG, model_uri)
                        self.client.set_tag(record.run_id, C.MODEL_URI_TAG, model_uri)
                except Exception as exc:
                    log.warning("could not log the best trial's model: %s", exc)
        self.client.set_terminated(self.parent_id, status)

    def abort(self, status: str = "KILLED") -> None:
        """Close every run still open (an interrupt or a crash of the driver's loop); a resume reopens them."""
        self._close_open_trials(status)
        if self.client.get_run(self.parent_id).info.status == "RUNNING":
            self.client.set_terminated(self.parent_id, status)

    def finish_cut_trials(self, reason: str) -> None:
        """Record the trials Ray stopped without ending them (the time budget ran out) as finished early."""
        for trial_id, record in self.trials.items():
            if self.client.get_run(record.run_id).info.status == "RUNNING":
                record.stop = record.stop or reason
                self.finish_trial(trial_id)

    def _close_open_trials(self, status: str) -> None:
        self.flush()
        for record in self.trials.values():
            if self.client.get_run(record.run_id).info.status == "RUNNING":
                self.client.set_tag(record.run_id, C.STOP_TAG, C.StopReason.INTERRUPTED)
                self.client.set_terminated(record.run_id, status)
