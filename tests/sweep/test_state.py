"""A sweep's identity on disk and in MLflow, without Ray: fingerprints, the lock, and how a resumed
sweep's tracker lines MLflow up with the trials Ray restored."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from conftest import spec_for
from hpsweep.sweep.state import (
    SweepBusy,
    SweepChanged,
    SweepState,
    check_unchanged,
    fingerprint,
    settings_of,
    sweep_lock,
    unfinished_sweep,
)


def _state(spec, sweep_id: str = "t-1", status: str = "running", created: float = 1.0) -> SweepState:
    return SweepState(sweep_id, spec.name, fingerprint(spec), settings_of(spec), {}, spec.source,
                      str(spec.base_dir), "sqlite:///x.db", status=status, created=created)  # type: ignore[arg-type]


def test_budget_changes_keep_the_fingerprint_and_anything_else_is_named(tmp_path):
    spec = spec_for(tmp_path)
    state = _state(spec)
    more = spec_for(tmp_path, search={"num_trials": 40, "time_budget": "2h"}, train={"checkpoint_every": "30s"})
    check_unchanged(state, more)  # more trials, more time, checkpoints further apart: allowed
    assert more.train.checkpoint_every == 30.0
    changed = spec_for(tmp_path, space={"lr": {"loguniform": [1.0e-5, 1.0e-1]}}, train={"epochs": 9})
    with pytest.raises(SweepChanged) as caught:
        check_unchanged(state, changed)
    message = str(caught.value)
    assert "space.lr" in message and "train.epochs" in message and "--restart" in message
    assert "search.num_trials" not in message.split("(")[1].split(")")[0]


def test_the_latest_unfinished_sweep_of_a_name_is_the_one_resumed(tmp_path):
    spec = spec_for(tmp_path)
    root = tmp_path / "results"
    for sweep_id, status, created in [("t-1", "interrupted", 1.0), ("t-2", "running", 2.0),
                                      ("t-3", "finished", 3.0), ("t-4", "abandoned", 4.0)]:
        _state(spec, sweep_id, status, created).save(root / sweep_id)
    other = _state(spec_for(tmp_path, name="other"), "other-1", "running", 5.0)
    other.save(root / "other-1")
    folder, found = unfinished_sweep(root, "t")
    assert (folder.name, found.sweep_id) == ("t-2", "t-2")
    assert unfinished_sweep(root, "nobody") is None


def _hold(folder: Path, ready: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with sweep_lock(folder, "t-1"):
        ready.set()
        release.wait(30)


def test_a_second_driver_is_kept_off_a_running_sweep(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(SweepBusy, match=rf"sweep t-1 is being run by pid {holder.pid} on "), \
                sweep_lock(tmp_path, "t-1"):
            pass
    finally:
        release.set()
        holder.join(30)
    with sweep_lock(tmp_path, "t-1"):  # free once its holder is gone
        pass


def test_a_resumed_tracker_reuses_runs_drops_lost_ones_and_closes_ended_ones(tmp_path):
    from hpsweep.track.tracker import SweepTracker

    spec = spec_for(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = SweepTracker(spec, "t-1", "name: t\n", uri, flush_s=0)  # every epoch written at once
    for trial in ("a", "b", "c"):
        first.start_trial(trial, {"lr": 0.01})
        first.log_result(trial, {"val_accuracy": 0.5, "epoch": 1})
    first.log_result("a", {"val_accuracy": 0.7, "epoch": 2})
    first.wait()  # the epochs its writer thread had sent
    # the driver dies here: every run is RUNNING

    again = SweepTracker(spec, "t-1", "name: t\n", uri, attach=True)
    assert again.parent_id == first.parent_id
    assert set(again.trials) == {"a", "b", "c"}
    assert (again.trials["a"].last_step, again.trials["a"].best, again.trials["a"].number) == (2, 0.7, 1)
    # Ray restored a (unfinished) and c (it had ended); it never saved b
    again.reconcile({"a": "PENDING", "c": "TERMINATED"})
    client = again.client
    assert set(again.trials) == {"a", "c"}
    lost = client.get_run(first.trials["b"].run_id)
    assert lost.info.lifecycle_stage == "deleted" and lost.data.tags["hpsweep.stop_reason"] == "lost"
    assert client.get_run(first.trials["c"].run_id).info.status == "FINISHED"
    again.start_trial("d", {"lr": 0.02})  # a new trial takes the next free number
    assert again.trials["d"].number == 4

    again.start_trial("a", {"lr": 0.01})  # resumes into its own run
    again.log_result("a", {"val_accuracy": 0.7, "epoch": 2})  # an epoch repeated after the resume
    again.log_result("a", {"val_accuracy": 0.9, "epoch": 3})
    again.finish_trial("a")
    again.finish_trial("a")  # finished twice (before a crash and after): summaries logged once
    history = client.get_metric_history(first.trials["a"].run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.7), (3, 0.9)]
    assert len(client.get_metric_history(first.trials["a"].run_id, "best_val_accuracy")) == 1
    assert client.get_run(first.trials["a"].run_id).data.metrics["best_val_accuracy"] == 0.9


def test_epochs_held_when_the_driver_died_are_written_from_the_checkpoint_on_resume(tmp_path):
    from hpsweep.track.tracker import SweepTracker

    spec = spec_for(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = SweepTracker(spec, "t-1", "name: t\n", uri, flush_s=3600)
    first.start_trial("a", {"lr": 0.01})
    for epoch, value in enumerate([0.5, 0.8, 0.6], start=1):
        first.log_result("a", {"val_accuracy": value, "train_loss": 1 / epoch, "epoch": epoch})
    run_id = first.trials["a"].run_id
    client = first.client
    assert client.get_metric_history(run_id, "val_accuracy") == []  # held, not yet written
    # the driver dies; Ray restores trial a from its checkpoint of epoch 2, which lists epochs 1 and 2
    again = SweepTracker(spec, "t-1", "name: t\n", uri, attach=True, flush_s=3600)
    reported = [{"step": e, "time": 1_700_000_000_000 + e, "metrics": {"val_accuracy": v, "train_loss": 1 / e}}
                for e, v in [(1, 0.5), (2, 0.8)]]
    again.reconcile({"a": "PENDING"}, {"a": reported})
    client = again.client  # its reads wait for its own writes
    history = client.get_metric_history(run_id, "val_accuracy")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(1, 0.5, 1_700_000_000_001),
                                                                  (2, 0.8, 1_700_000_000_002)]
    assert (again.trials["a"].last_step, again.trials["a"].best) == (2, 0.8)
    again.start_trial("a", {"lr": 0.01})  # it continues after epoch 2
    again.log_result("a", {"val_accuracy": 0.6, "train_loss": 1 / 3, "epoch": 3})
    again.finish_trial("a")  # the held epoch and the summary go out together
    run = client.get_run(run_id)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")] == [
        (1, 0.5), (2, 0.8), (3, 0.6)]
    assert len(client.get_metric_history(run_id, "train_loss")) == 3
    assert (run.info.status, run.data.metrics["best_val_accuracy"], run.data.metrics["epochs_run"]) == (
        "FINISHED", 0.8, 3)


def test_a_new_sqlite_store_appears_whole_and_an_existing_one_is_kept(tmp_path):
    from mlflow import MlflowClient

    from hpsweep.track.writer import create_sqlite_store

    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    create_sqlite_store(uri)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mlflow.db"]  # no partial file left over
    MlflowClient(uri).create_experiment("kept")
    create_sqlite_store(uri)
    assert MlflowClient(uri).get_experiment_by_name("kept") is not None


def test_a_busy_tracking_store_holds_up_no_driver_call_and_gets_every_write_in_order(tmp_path):
    import sqlite3

    from mlflow import MlflowClient

    from hpsweep.track.tracker import SweepTracker

    spec = spec_for(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(spec, "t-1", "name: t\n", uri, flush_s=0)
    tracker.start_trial("a", {"lr": 0.01})
    run_id = tracker.trials["a"].run_id
    # another process (an MLflow UI, a second sweep) holds the database: no write can land now
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:  # each call returns while the store is locked: Ray Tune's loop on the driver would not wait
        for epoch, value in enumerate([0.4, 0.6, 0.5], start=1):
            tracker.log_result("a", {"val_accuracy": value, "epoch": epoch})
        tracker.finish_trial("a")
    finally:
        holder.execute("COMMIT")
        holder.close()
    tracker.wait()
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["best_val_accuracy"] == 0.6
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")] == [
        (1, 0.4), (2, 0.6), (3, 0.5)]


def test_a_write_mlflow_refused_is_raised_by_the_next_call_that_waits(tmp_path):
    from mlflow.exceptions import MlflowException

    from hpsweep.track.tracker import SweepTracker

    spec = spec_for(tmp_path)
    tracker = SweepTracker(spec, "t-1", "name: t\n", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.client.set_tag("no-such-run", "hpsweep.stop_reason", "scheduler")  # returns before MLflow answers
    with pytest.raises(MlflowException, match="no-such-run"):
        tracker.wait()
    tracker.wait()  # raised once
