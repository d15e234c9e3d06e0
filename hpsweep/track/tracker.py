"""MLflow tracking for a sweep. The driver is the only writer: trials report to Ray Tune, and a Tune
callback on the driver turns their results into one parent run per sweep and one nested run per trial.
One writer means no 'database is locked' on SQLite and works with any tracking URI.

A trial's epoch metrics are written at most once every `flush_s` seconds (one batch per trial), and
always when the trial ends or the sweep stops: each write costs the driver, which shares the CPUs with
the trials, about as much as a small epoch's bookkeeping. The writes go out on a thread of their own
(`Writer`), in the order they were made, so Ray Tune's loop on the driver never waits for the tracking
store (a remote server's round trips, a checkpoint's upload). Epochs still held when the driver is killed
are not lost: every checkpoint carries the metrics its trial reported (REPORTED_FILE), and a resumed
sweep writes any epoch MLflow lacks from the checkpoint its trial continues from (`reconcile`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hpsweep.spec import SweepSpec

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SWEEP_TAG, TRIAL_TAG, PARENT_TAG = "hpsweep.sweep_id", "hpsweep.trial_id", "mlflow.parentRunId"
BASE_DIR_TAG, EFFECTIVE_SWEEP = "hpsweep.base_dir", "sweep/effective.yaml"
CONFUSION_FILE = "confusion_matrix.json"
#: keys Ray Tune adds to every result; they are bookkeeping, not metrics of the model
RAY_KEYS = {"training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "time_since_restore",
            "iterations_since_restore", "done", "trial_id", "node_ip", "hostname", "date", "experiment_tag",
            "checkpoint_dir_name", "should_checkpoint", "config", "epoch"}
#: metrics logged once when a trial ends, not per epoch
SUMMARY_METRICS = {"epochs_run"}
#: the file in each checkpoint listing every epoch its trial reported: [{"step": n, "time": ms, "metrics": {...}}]
REPORTED_FILE = "reported.json"
#: how often a running trial's epoch metrics reach MLflow, at most (HPSWEEP_METRICS_FLUSH_S overrides)
FLUSH_S = 5.0
_PACKAGES = ("hpsweep", "torch", "torchvision", "ray", "optuna", "mlflow", "pandas", "pydantic", "scikit-learn")


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def flush_interval() -> float:
    raw = os.environ.get("HPSWEEP_METRICS_FLUSH_S")
    try:
        return max(0.0, float(raw)) if raw else FLUSH_S
    except ValueError:
        log.warning("HPSWEEP_METRICS_FLUSH_S=%r is not a number of seconds; using %s", raw, FLUSH_S)
        return FLUSH_S


def epoch_step(result: Mapping[str, Any], default: int) -> int:
    """The step an epoch's metrics are logged at: its epoch, else Ray's iteration, else `default`."""
    return int(result.get("epoch", result.get("training_iteration", default)))


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a reported result that are metrics of the model (no Ray or hpsweep bookkeeping)."""
    return {k: float(v) for k, v in result.items() if _is_metric(k, v)}


def read_artifact_text(client: Any, run_id: str, path: str) -> str:
    """A run's artifact file as text, through a temporary copy that is removed (MLflow's own download
    would leave a folder behind in /tmp every time)."""
    with tempfile.TemporaryDirectory(prefix="hpsweep-") as tmp:
        return Path(client.download_artifacts(run_id, path, dst_path=tmp)).read_text(encoding="utf-8")


def create_sqlite_store(uri: str) -> None:
    """Create a new SQLite tracking database all at once: MLflow builds its tables in a file of its own,
    which is then linked into place only if no database is there yet. A driver killed while MLflow was
    creating the tables used to leave a half-built database that every later run refused."""
    import uuid

    from mlflow import MlflowClient

    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return
    path = Path(uri[len(prefix):])
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        MlflowClient(f"{prefix}{partial}").search_experiments(max_results=1)  # builds every table
        os.link(partial, path)  # fails if another process created it meanwhile: theirs is kept
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


class Writer:
    """An MlflowClient whose calls all run on one thread, in the order they were made. The calls that
    only write (`WRITES`, and `submit`) return at once; any other call waits for its answer, and so for
    every write made before it. A write that failed is raised by the next call that waits, or `wait`."""

    WRITES = frozenset({"delete_run", "log_batch", "log_dict", "log_metric", "log_text", "set_tag",
                        "set_terminated", "update_run"})

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpsweep-mlflow")
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def direct(self) -> Any:
        """The MlflowClient itself: only for code that runs on the writer's thread (`submit`)."""
        return self._client

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the writer's thread after every call made so far; do not wait for it."""
        self._pool.submit(fn).add_done_callback(self._note)

    def wait(self) -> None:
        """Return once every write made so far is done; raise the first that failed."""
        self._pool.submit(lambda: None).result()
        self._raise()

    def _note(self, done: Future[Any]) -> None:
        if (error := done.exception()) is not None:
            log.debug("an MLflow write failed: %r", error)
            with self._lock:
                self._failed = self._failed or error

    def _raise(self) -> None:
        with self._lock:
            error, self._failed = self._failed, None
        if error is not None:
            raise error

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name in self.WRITES:
            def write(*args: Any, **kwargs: Any) -> None:
                self.submit(functools.partial(method, *args, **kwargs))
            return write

        def call(*args: Any, **kwargs: Any) -> Any:
            answer = self._pool.submit(method, *args, **kwargs).result()
            self._raise()
            return answer
        return call


@dataclass
class TrialRecord:
    """What the tracker knows about one trial while the sweep runs."""

    run_id: str
    number: int
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_checkpoint: Any = None  #: the ray.tune.Checkpoint of the best epoch so far
    confusion: list[list[int]] | None = None
    stop: str | None = None
    error: str | None = None  #: why the trial failed, when it reported that itself (out of memory)
    last_step: int = 0  #: the latest epoch logged: a retried trial's repeated epochs are logged once
    pending: list[Any] = field(default_factory=list)  #: epoch metrics (mlflow Metric) not yet written
    flushed_at: float = field(default_factory=time.monotonic)
    attached: bool = False  #: recorded before this start of the sweep (its summary may be logged already)


class SweepTracker:
    """Creates the parent run and writes everything about the sweep's trials into MLflow."""

    def __init__(self, spec: SweepSpec, sweep_id: str, sweep_text: str, uri: str | None = None,
                 effective: dict[str, Any] | None = None, attach: bool = False,
                 class_names: tuple[str, ...] = (), flush_s: float | None = None) -> None:
        """`attach`: continue the sweep's existing parent run and trial runs (a resumed sweep).
        `class_names`: the classes of classification data, to label confusion matrices.
        `flush_s`: the longest a trial's epoch metrics wait before they are written (default: flush_interval())."""
        import mlflow
        from mlflow import MlflowClient

        self.spec, self.sweep_id = spec, sweep_id
        self.uri = tracking_uri(uri)
        create_sqlite_store(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.client: Any = Writer(MlflowClient(self.uri))
        experiment = self.client.get_experiment_by_name(spec.experiment_name)
        self.experiment_id = (experiment.experiment_id if experiment is not None
                              else self.client.create_experiment(spec.experiment_name))
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
            SWEEP_TAG: sweep_id, "hpsweep.sweep_name": spec.name, "hpsweep.train.trainable": spec.trainable,
            "mlflow.note.content": spec.description or f"hpsweep sweep {spec.name}",
            BASE_DIR_TAG: str(spec.base_dir), "hpsweep.source": spec.source,
            **({"mlflow.source.git.commit": commit} if (commit := _git_commit(spec.base_dir)) else {}),
        })
        self.parent_id = parent.info.run_id
        self._log_sweep(sweep_text, effective)

    # ------------------------------------------------------------ resuming

    def _find_parent(self) -> Any:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{self.sweep_id}'",
                                       max_results=10_000)
        parents = [r for r in runs if PARENT_TAG not in r.data.tags]
        if not parents:
            log.info("sweep %s has no parent run in %s yet; creating it", self.sweep_id, self.uri)
        return parents[0] if parents else None

    def _attach_trials(self) -> None:
        """Rebuild the record of every trial this sweep already logged, so a resumed trial writes into
        its own run and each epoch it repeats is not logged twice."""
        children = self.client.search_runs([self.experiment_id],
                                           filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'",
                                           max_results=10_000)
        for run in children:
            trial_id = run.data.tags.get(TRIAL_TAG)
            if trial_id is None:
                continue
            record = TrialRecord(run.info.run_id, _trial_number(run.info.run_name, len(self.trials) + 1),
                                 attached=True)
            steps: dict[int, dict[str, float]] = {}
            for key in run.data.metrics:
                if key in SUMMARY_METRICS or key.startswith("best_"):
                    continue
                for point in self.client.get_metric_history(run.info.run_id, key):
                    steps.setdefault(point.step, {})[key] = point.value
            record.history = [{**values, "epoch": step} for step, values in sorted(steps.items())]
            record.last_step = max(steps, default=0)
            record.best = _best_of([h.get(self.metric) for h in record.history], self.mode)
            stop = run.data.tags.get("hpsweep.stop_reason")
            record.stop = stop if stop not in (None, "interrupted") else None
            record.error = run.data.tags.get("hpsweep.error")
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
            self.client.set_tag(run_id, "hpsweep.stop_reason", "lost")
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
                    record.stop = record.stop or "error"
                self.finish_trial(trial_id, error=record.error or (
                    "the trial failed (recorded before the driver stopped)" if status == "ERROR" else None))

    def next_number(self) -> int:
        return max((r.number for r in self.trials.values()), default=0) + 1

    def _log_sweep(self, sweep_text: str, effective: dict[str, Any] | None, params: bool = True) -> None:
        """The sweep as run; on a resume only the files, which may carry a new budget (params are fixed)."""
        search = self.spec.search
        if params:
            self.client.log_batch(self.parent_id, params=_params({
                "trainable": self.spec.trainable, "algorithm": search.algorithm, "num_trials": self.spec.num_trials,
                "scheduler": search.scheduler.name, "metric": self.metric, "mode": self.mode,
                "epochs": self.spec.train.epochs, "data.source": self.spec.data.source,
            } | ({} if self.spec.startup_trials is None else {"startup_trials": self.spec.startup_trials})))
        else:
            self.client.set_tag(self.parent_id, "hpsweep.num_trials", str(self.spec.num_trials))
        self.client.log_text(self.parent_id, sweep_text, "sweep/sweep.yaml")
        if effective is not None:  # the file with any --set applied: what the sweep really ran
            import yaml

            self.client.log_text(self.parent_id, yaml.safe_dump(effective, sort_keys=False), EFFECTIVE_SWEEP)
        self.client.log_dict(self.parent_id, self.spec.model_dump(mode="json", by_alias=True), "sweep/resolved.json")
        self.client.log_dict(self.parent_id, _versions(), "sweep/versions.json")

    # ------------------------------------------------------------ trials

    def start_trial(self, trial_id: str, config: Mapping[str, Any]) -> TrialRecord:
        """The trial's run: a new one, or its existing one reopened when the trial resumes."""
        if (record := self.trials.get(trial_id)) is not None:
            if self.client.get_run(record.run_id).info.status != "RUNNING":
                self.client.update_run(record.run_id, status="RUNNING")
            return record
        number = self.next_number()
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number:03d}", tags={
            PARENT_TAG: self.parent_id, TRIAL_TAG: trial_id, SWEEP_TAG: self.sweep_id})
        self.client.log_batch(run.info.run_id, params=_params(config))
        record = self.trials[trial_id] = TrialRecord(run.info.run_id, number)
        return record

    def log_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        record = self.trials[trial_id]
        record.stop = result.get("hpsweep_stop") or record.stop
        record.error = result.get("hpsweep_error") or record.error
        if result.get("hpsweep_confusion") is not None:
            record.confusion = result["hpsweep_confusion"]
        if self._add_epoch(record, epoch_step(result, len(record.history) + 1), epoch_metrics(result)) \
                and time.monotonic() - record.flushed_at >= self.flush_s:
            self._flush(record)

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
        if value is not None and (record.best is None or (value > record.best if self.mode == "max"
                                                          else value < record.best)):
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
        summary = {"epochs_run": float(len(record.history))}
        if record.best is not None:
            summary[f"best_{self.metric}"] = record.best
        if record.attached:  # finished once before a crash: its summary is logged already
            logged = self.client.get_run(run_id).data.metrics
            summary = {k: v for k, v in summary.items() if k not in logged}
        if record.confusion is not None:  # the figure is drawn for the best trial only, at the end
            names = list(self.class_names) or [str(i) for i in range(len(record.confusion))]
            self.client.log_dict(run_id, {"classes": names, "matrix": record.confusion}, CONFUSION_FILE)
        if record.best_checkpoint is not None:
            self.client.submit(functools.partial(self._log_checkpoint, trial_id, run_id, record.best_checkpoint))
        error = error or record.error
        if error is not None:
            tags = {"hpsweep.error": error[-4900:],
                    "hpsweep.stop_reason": record.stop if record.stop == "oom" else "error"}
        else:  # no stop reason from the loop means Ray's scheduler ended the trial before its last epoch
            tags = {"hpsweep.stop_reason": record.stop or "scheduler"}
        now = int(time.time() * 1000)
        self._flush(record, metrics=[Metric(k, v, now, 0) for k, v in summary.items()],
                    tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, "FAILED" if error is not None else "FINISHED")

    def _log_checkpoint(self, trial_id: str, run_id: str, checkpoint: Any) -> None:
        """On the writer's thread: the checkpoint's files, fetched where the storage is remote."""
        try:
            with checkpoint.as_directory() as folder:
                self.client.direct.log_artifacts(run_id, folder, "checkpoint")
        except Exception as exc:  # a checkpoint that vanished must not lose the rest of the record
            log.warning("could not log the best checkpoint of %s: %s", trial_id, exc)

    def wait(self) -> None:
        """Return once everything written so far is in MLflow."""
        self.client.wait()

    def _log_figures(self, record: TrialRecord) -> None:
        """The best trial's learning curve and confusion matrix as images. Only for the best trial:
        drawing them takes the driver about half a second of CPU per trial, taken from the trials, and
        MLflow charts every run's metrics itself."""
        from hpsweep.track import figures as plots

        figures = []
        if record.history:
            figures.append((plots.learning_curve(record.history, self.metric), "learning_curve.png"))
        confusion = record.confusion
        if confusion is None:  # a trial that finished before a resume: its matrix is in its run
            try:
                import mlflow

                confusion = mlflow.artifacts.load_dict(f"runs:/{record.run_id}/{CONFUSION_FILE}")["matrix"]
            except Exception:
                confusion = None
        if confusion is not None:
            names = self.class_names or tuple(str(i) for i in range(len(confusion)))
            figures.append((plots.confusion_matrix(confusion, names), "confusion_matrix.png"))
        for figure, name in figures:
            try:
                self.client.log_figure(record.run_id, figure, name)
            finally:
                figure.clear()
                import matplotlib.pyplot as plt

                plt.close(figure)

    # ------------------------------------------------------------ the end

    def best_trial(self) -> tuple[str, TrialRecord] | None:
        """The best trial by the sweep metric; a diverged or failed trial never is, whatever it reached."""
        scored = [(tid, r) for tid, r in self.trials.items() if r.best is not None and math.isfinite(r.best)
                  and r.stop not in ("diverged", "error", "oom")]
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
            self.client.log_batch(self.parent_id, params=_params({f"best.{k}": v for k, v in params.items()}))
            self.client.log_metric(self.parent_id, f"best_{self.metric}", float(record.best or 0.0))
            self.client.set_tag(self.parent_id, "hpsweep.best_trial_id", trial_id)
            self.client.set_tag(self.parent_id, "hpsweep.best_run_id", record.run_id)
            try:
                self._log_figures(record)
            except Exception as exc:  # a figure must never cost the sweep its summary
                log.warning("could not draw the best trial's figures: %s", exc)
            if log_model is not None:
                try:
                    if (model_uri := log_model(trial_id, record, self.uri)) is not None:
                        self.client.set_tag(self.parent_id, "hpsweep.best_model_uri", model_uri)
                        self.client.set_tag(record.run_id, "hpsweep.model_uri", model_uri)
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
                self.client.set_tag(record.run_id, "hpsweep.stop_reason", "interrupted")
                self.client.set_terminated(record.run_id, status)


def _trial_number(run_name: str | None, default: int) -> int:
    tail = (run_name or "").rpartition("-")[2]
    return int(tail) if tail.isdigit() else default


def _best_of(values: list[float | None], mode: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def _is_metric(key: str, value: Any) -> bool:
    return (key not in RAY_KEYS and not key.startswith("hpsweep_") and isinstance(value, int | float)
            and not isinstance(value, bool) and not math.isnan(value))


def _params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:6000]) for k, v in values.items()]


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def trial_error(trial: Any) -> str:
    """The last lines of a failed trial's error, as Ray recorded it."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
        return "\n".join(text.splitlines()[-20:])
    return "the trial failed (Ray recorded no error message)"



def close_sweep_runs(uri: str, sweep_id: str, status: str, reason: str) -> int:
    """Close every run of a sweep that is still open (a sweep given up with --restart); how many."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    runs = client.search_runs(experiments, filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}' and "
                                                         "attributes.status = 'RUNNING'", max_results=10_000)
    for run in runs:
        client.set_tag(run.info.run_id, "hpsweep.stop_reason", reason)
        client.set_terminated(run.info.run_id, status)
    return len(runs)
