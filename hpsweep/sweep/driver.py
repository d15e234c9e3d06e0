"""Run a sweep on Ray Tune: Optuna proposes, Ray schedules and runs trials, the driver records to MLflow.

The data is prepared and checked once, before Ray starts, and shared with every trial through the
object store; trials never re-read the files.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsweep import contract as C
from hpsweep.contract import FAILED_REASONS, StopReason
from hpsweep.errors import UserError
from hpsweep.registry.best_model import model_logger
from hpsweep.registry.weights import pretrained_state
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.storage import cache_root
from hpsweep.sweep.checkpoints import prune_checkpoints
from hpsweep.sweep.interrupt import INTERRUPT, deferred_interrupt, graceful_interrupt, hold_terminate
from hpsweep.sweep.live import LIVE, LiveSweep, Progress
from hpsweep.sweep.node_data import blind_nodes, share
from hpsweep.sweep.plan import SweepPlan, abandon
from hpsweep.sweep.quiet import quiet
from hpsweep.sweep.ray_session import RaySession
from hpsweep.sweep.state import STATE_FILE, sweep_lock
from hpsweep.sweep.tuner import make_tuner
from hpsweep.sweep.warm_start import data_fingerprint, warm_start
from hpsweep.sweep.workers import check_fits, cluster_nodes, trial_preload
from hpsweep.track.records import TrialRecord
from hpsweep.track.tracker import SweepTracker
from hpsweep.track.uris import runs_page, ui_command
from hpsweep.train.checkpoint import remove_orphaned_staging
from hpsweep.train.data.base import PreparedData
from hpsweep.train.trainable import load_trainable
from hpsweep.train.trial import prepare_for

log = logging.getLogger(__name__)


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
    fault: str | None = None  #: why the sweep stopped itself before its end (a full disk)
    experiment_id: str = ""
    mode: str = "max"  #: whether the metric is maximised or minimised


def run_sweep(spec: SweepSpec, plan: SweepPlan, sweep_text: str, *,
              on_progress: Callable[[Progress], None] | None = None, verbose: bool = False,
              session: RaySession | None = None, on_status: Callable[[str], None] | None = None) -> SweepOutcome:
    """Prepare the data, start (or join) Ray, run or resume every trial, and record the sweep in MLflow.
    `session`: Ray as the caller already began starting it (the CLI does, before importing this module);
    this function closes it. `on_status` hears what start-up is doing, a line at a time."""
    say = on_status or (lambda line: None)
    with quiet(verbose):
        session = session or RaySession(verbose, trial_preload(spec))  # Ray comes up while the data is prepared
        try:
            data = prepare_for(spec, load_trainable(spec.trainable), cache_root(plan.root))
            pretrained = pretrained_state(spec.model.pretrained, spec.base_dir)  # read once, before any trial
            if data is not None:
                say(f"data: {data.describe()}")
            session.wait()
            hold_terminate()  # Ray's start replaced the process's SIGTERM handler with its own
            say(session.describe())
            check_shared_storage(plan.root)
            check_fits(spec, cluster_nodes())
            shared, fetch, data = share(data)
            with sweep_lock(plan.folder, plan.sweep_id):
                if plan.abandoned is not None:
                    abandon(*plan.abandoned)
                return _run(spec, plan, sweep_text, data, (shared, fetch), pretrained, on_progress, session, say)
        except BaseException:
            if not plan.resuming and not (plan.folder / STATE_FILE).exists():
                shutil.rmtree(plan.folder, ignore_errors=True)  # a new sweep that never started leaves nothing
            raise
        finally:
            session.close()
            remove_orphaned_staging()  # workers killed here (the sweep's own, when Ray stopped mid-report)


class TrackingUnusable(UserError):
    """The MLflow tracking store cannot be opened or written."""


class StorageNotShared(UserError, ValueError):
    """The results folder is not visible from every node of the cluster."""


def check_shared_storage(root: Path) -> None:
    """On a cluster of several nodes, make sure each one sees the results folder (Ray Tune keeps
    checkpoints there and a trial may move to another node); StorageNotShared names those that do not."""
    import uuid

    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".hpsweep-shared-{uuid.uuid4().hex}"
    marker.write_text("hpsweep checks that every node sees this folder\n", encoding="utf-8")
    try:
        blind = blind_nodes(marker)
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise StorageNotShared(f"results storage {root} is not shared: the cluster's node(s) {', '.join(blind)} "
                               f"cannot see it. Give --storage (or HPSWEEP_STORAGE) a folder every node mounts")


def _run(spec: SweepSpec, plan: SweepPlan, sweep_text: str, data: PreparedData | None, shared: Any,
         pretrained: Any, on_progress: Callable[[Progress], None] | None, session: RaySession,
         say: Callable[[str], None]) -> SweepOutcome:
    """`data` is the driver's view of the sweep's data; `shared` what trials read it by (node_data.share).
    Ray stops (on the session's thread) once the best model is logged, while the report is written."""
    tracker = _open_tracker(spec, plan, sweep_text, data)
    live = LIVE[plan.sweep_id] = LiveSweep(tracker, _warming_the_end(on_progress), plan.state, plan.folder,
                                           spent_before=plan.state.elapsed_s)
    failed = 0
    with closing_out(live) as outcome:
        say(f"MLflow: experiment {spec.experiment_name!r}, parent run {tracker.parent_id}; starting the first trials")
        say(f"MLflow UI: {runs_page(tracker.uri, tracker.experiment_id, tracker.metric, tracker.mode)}"
            + (f"  (serve it with: {command})" if (command := ui_command(tracker.uri)) else ""))
        warm = warm_start(spec, plan, tracker, say)
        with graceful_interrupt():
            _fit(make_tuner(spec, shared, pretrained, plan, warm=warm, fixed=plan.fixed),
                 live)
        for record in tracker.trials.values():  # Ray's final state is saved: only the best and latest stay
            if record.best_checkpoint is not None:
                best = Path(record.best_checkpoint.path)
                prune_checkpoints(best.parent, {best}, grace_s=0.0)
        if INTERRUPT["requested"]:
            tracker.abort("KILLED")  # what ran is recorded; the open runs reopen when the sweep resumes
        else:
            tracker.finish_cut_trials(StopReason.TIME_BUDGET)
            failed = sum(1 for r in tracker.trials.values() if r.stop in FAILED_REASONS - {StopReason.DIVERGED})
            status = "FAILED" if tracker.trials and failed == len(tracker.trials) else "FINISHED"
            tracker.finish_sweep(status, model_logger(spec, data) if data is not None else None)
            outcome["completed"] = True
        session.stop()  # nothing reads the data (a view of Ray's object store) from here on
    completed = outcome["completed"]
    best = tracker.best_trial()
    best_params = tracker.client.get_run(best[1].run_id).data.params if best else {}
    return SweepOutcome(plan.sweep_id, spec.experiment_name, tracker.parent_id, tracker.uri, tracker.metric,
                        tracker.trials, failed, best, best_params, interrupted=not completed, results=plan.folder,
                        report=_report(tracker, plan) if completed else None, fault=live.fault,
                        experiment_id=tracker.experiment_id, mode=tracker.mode)


def _fit(tuner: Any, live: LiveSweep) -> None:
    """Run the trials. After the sweep stopped itself on a full disk, Ray Tune may fail to read back
    the files it could not write (a trial's error, truncated): the stop is already recorded, so that
    is logged, not raised."""
    try:
        tuner.fit()
    except Exception:
        if live.fault is None:
            raise
        log.warning("Ray Tune ended with an error after %s", live.fault, exc_info=True)


def _open_tracker(spec: SweepSpec, plan: SweepPlan, sweep_text: str, data: PreparedData | None) -> SweepTracker:
    """Mark the sweep running and open (or reopen) its parent run. An interrupt while that happens is
    acted on once the run exists: it is closed KILLED, and the next `run` resumes the sweep."""
    state = plan.state
    state.status, state.starts = "running", state.starts + 1
    state.save(plan.folder)
    with deferred_interrupt() as heard:
        try:
            tracker = SweepTracker(spec, plan.sweep_id, sweep_text, state.tracking_uri, effective=state.raw,
                                   attach=plan.resuming, class_names=data.class_names if data is not None else (),
                                   fingerprint=data_fingerprint(spec, data),
                                   parent_tags={C.DATA_CACHE_TAG: str(cache_root(plan.root)), **plan.parent_tags})
        except Exception as exc:
            if not plan.resuming:  # nothing ran and nothing was recorded: no sweep for the next run to resume
                (plan.folder / STATE_FILE).unlink(missing_ok=True)
            raise TrackingUnusable(f"--tracking-uri: cannot record the sweep in {state.tracking_uri}: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if heard["signal"] is not None:
        tracker.abort("KILLED")
        state.status = "interrupted"
        state.save(plan.folder)
        raise KeyboardInterrupt
    return tracker


def _warming_the_end(on_progress: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
    """`on_progress`, which also starts loading the code the sweep's end runs (matplotlib for the figures
    and the report, MLflow's model saving: 1-2 s of imports) once the first epoch is reported, while the
    driver waits on trials, instead of at the end, while the user waits on the driver. Optuna's importance
    evaluators, which the report runs, import scikit-learn (about 1 s)."""
    begun = threading.Event()

    def hear(event: Progress) -> None:
        if event.event == "epoch" and not begun.is_set():
            begun.set()
            threading.Thread(target=_load_the_end, name="hpsweep-warm", daemon=True).start()
        if on_progress is not None:
            on_progress(event)

    return hear


def _load_the_end() -> None:
    try:
        import mlflow.models.signature  # noqa: F401
        import optuna.importance  # noqa: F401

        import hpsweep.report.html  # noqa: F401
        from hpsweep.track.figures import pyplot

        pyplot()
    except Exception as exc:  # loaded again, and any error raised, where they are used
        log.debug("loading the sweep's end ahead of time: %s", exc)


@contextlib.contextmanager
def closing_out(live: LiveSweep) -> Iterator[dict[str, bool]]:
    """Leave the sweep's state on disk and in MLflow settled however the block ends: its time accounted,
    no run left RUNNING, every write landed. Set `completed` in the yielded dict when the sweep ended.

    When the block raises, that error is what the user sees: a write to MLflow that also fails while
    closing the runs is logged, never raised in its place."""
    outcome = {"completed": False}
    try:
        yield outcome
    except BaseException:
        _close_out(live, completed=False, after_error=True)
        raise
    _close_out(live, outcome["completed"], after_error=False)


def _close_out(live: LiveSweep, completed: bool, after_error: bool) -> None:
    tracker = live.tracker
    live.state.status = "finished" if completed else "interrupted"
    LIVE.pop(live.state.sweep_id, None)
    try:
        live.account()
    except OSError as exc:  # a full disk: the runs are still closed; the previous state file stays
        log.error("could not save the sweep's state in %s: %s", live.folder, exc.strerror or exc)
    for _ in range(2):  # the writer raises a failed write once: the second pass closes what is still open
        try:
            if tracker.client.get_run(tracker.parent_id).info.status == "RUNNING":
                tracker.abort()
            tracker.wait()  # everything is in MLflow before the sweep's outcome is read from it
            return
        except Exception as exc:
            if not after_error:
                raise
            log.error("while stopping the sweep after an error, recording it failed too: %s: %s",
                      type(exc).__name__, exc)


def _report(tracker: SweepTracker, plan: SweepPlan) -> Path | None:
    """The sweep report, written beside the sweep's results and logged to its parent run. A report that
    cannot be drawn costs the sweep nothing but a warning."""
    from hpsweep.report.html import write_report

    try:
        return write_report(tracker.parent_id, plan.folder / "report", tracker.uri).files["html"]
    except Exception as exc:
        log.warning("could not write the sweep report: %s", exc)
        return None
