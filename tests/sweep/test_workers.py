"""Trials that span several workers (`resources.workers`): data-parallel training over gloo on this
machine's two CPUs, through real sweeps on the test session's Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

pytestmark = pytest.mark.slow
HPSWEEP = str(Path(sys.executable).with_name("hpsweep"))


def _sweep(folder: Path, name: str, workers: int, epochs: int = 3, space: dict[str, Any] | None = None,
           search: dict[str, Any] | None = None, model: str = "mlp", **train: Any) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "model": {"name": model}, "train": {"epochs": epochs, "metric": "val_accuracy", **train},
        "search": {"num_trials": 1, **(search or {})}, "resources": {"workers": workers, "cpu": 1},
        "space": space or {"lr": 0.01, "batch_size": 50, "dropout": 0.0}}))
    return path


def _run(run_cli: Any, folder: Path, sweep: Path) -> tuple[int, str, str]:
    return run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--storage", str(folder / "results"))


def _trials(folder: Path, experiment: str) -> tuple[Any, list[Any], list[Any]]:
    """(client, trial runs, parent runs)"""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    return (client, [r for r in runs if "mlflow.parentRunId" in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" not in r.data.tags])


def _history(client: Any, run: Any, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def _reported(folder: Path) -> list[dict[str, Any]]:
    """Every result Ray Tune received, from the trials' result.json files."""
    rows = []
    for path in (folder / "results").glob("*/*/result.json"):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def _ranks() -> list[psutil.Process]:
    """The processes of trial workers other than rank 0 (Ray names them after their actor class)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("_Rank" in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def _ranks_left(grace_s: float = 10.0) -> list[psutil.Process]:
    """The trial workers still running `grace_s` after the sweep ended: Ray ends an actor's process
    asynchronously, and one may still be exiting when the command returns (seen in CI: in disk sleep)."""
    def alive(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + grace_s
    while (left := [p for p in _ranks() if alive(p)]) and time.time() < deadline:
        time.sleep(0.2)
    return left


def test_two_workers_with_a_global_batch_train_as_one_worker_with_that_batch(ray_session, tmp_path, run_cli):
    """The same seed and a global batch of 50: every epoch's training loss and validation metrics of a
    2-worker trial match the single-worker trial's (each worker trains on half of each batch and
    validates half of the split; DDP averages the gradients, the outputs are gathered)."""
    for name, workers in (("single", 1), ("pair", 2)):
        code, out, err = _run(run_cli, tmp_path, _sweep(tmp_path, name, workers, epochs=4))
        assert code == 0, err
        assert ("2 workers per trial" in out) == (workers == 2), out
    histories = {}
    for name in ("single", "pair"):
        client, (trial,), _ = _trials(tmp_path, name)
        assert trial.data.tags["hpsweep.stop_reason"] == "completed"
        histories[name] = {key: _history(client, trial, key)
                           for key in ("train_loss", "val_loss", "val_accuracy", "val_f1")}
    for key, single in histories["single"].items():
        assert [step for step, _ in single] == [1, 2, 3, 4]
        pair = histories["pair"][key]
        assert [s for s, _ in pair] == [1, 2, 3, 4]
        assert [v for _, v in pair] == pytest.approx([v for _, v in single], rel=1e-4, abs=1e-5), key
    assert histories["single"]["train_loss"][0][1] > histories["single"]["train_loss"][-1][1]  # it learned


def test_a_killed_worker_restarts_its_trial_from_its_checkpoint(ray_session, tmp_path, run_cli):
    """kill -9 of rank 1 mid-trial fails rank 0's next step; Ray Tune restarts the trial from its latest
    checkpoint (search.max_failures) and the sweep finishes with every epoch recorded once."""
    # 40 epochs: on a fast host 14 epochs of 0.28 s ended before the watcher had seen the second worker
    epochs = 40
    sweep = _sweep(tmp_path, "killed", 2, epochs=epochs, model="cnn", checkpoint_every=0,
                   search={"max_failures": 2})
    killed: list[int] = []

    def kill_rank_one() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if len(_reported(tmp_path)) >= 2 and (ranks := _ranks()):
                os.kill(ranks[0].pid, signal.SIGKILL)
                killed.append(ranks[0].pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_rank_one, daemon=True)
    killer.start()
    code, _, err = _run(run_cli, tmp_path, sweep)
    killer.join()
    assert code == 0, err
    assert killed, "the trial's second worker was never seen"
    rows = _reported(tmp_path)
    since = [int(row["iterations_since_restore"]) for row in rows]
    restarts = [i for i in range(1, len(rows)) if since[i] == 1]
    assert len(restarts) == 1, since  # the trial ran again once...
    assert int(rows[restarts[0]]["epoch"]) > 1  # ...from a checkpoint, not from its first epoch
    assert int(rows[-1]["epoch"]) == epochs
    client, (trial,), (parent,) = _trials(tmp_path, "killed")
    assert parent.info.status == "FINISHED" and trial.data.tags["hpsweep.stop_reason"] == "completed"
    assert [s for s, _ in _history(client, trial, "val_accuracy")] == list(range(1, epochs + 1))


def test_an_asha_sweep_of_two_worker_trials_survives_its_driver_killed(ray_session, tmp_path):
    """Four 2-worker trials under ASHA: one MLflow run per trial (not per worker), a weak trial stopped
    by ASHA, then the driver killed with -9 in a later trial and run again: the sweep finishes with
    every epoch recorded once and no worker left behind. (The kill comes after ASHA's decision: Ray Tune
    rebuilds a restored experiment's scheduler without the scores it had recorded, ray-project/ray#30838.)"""
    sweep = _sweep(tmp_path, "asha", 2, epochs=6, search={
        "num_trials": 4, "algorithm": "grid", "scheduler": {"name": "asha", "grace_period": 1,
                                                            "reduction_factor": 2}},
        space={"lr": {"choice": [0.05, 0.00002, 0.02, 0.00001]}, "batch_size": 50, "dropout": 0.0})
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HPSWEEP_STORAGE": str(tmp_path / "results")}

    def driver() -> subprocess.Popen[str]:
        return subprocess.Popen([HPSWEEP, "run", str(sweep)], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(condition: Any) -> None:
        deadline = time.time() + 240
        while not condition():
            assert time.time() < deadline and first.poll() is None, first.communicate()[0]
            time.sleep(0.2)

    def stopped_by_asha() -> bool:
        from mlflow import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        if not _states_exist(tmp_path) or client.get_experiment_by_name("asha") is None:
            return False
        _, trials, _ = _trials(tmp_path, "asha")
        return any(r.data.tags.get("hpsweep.stop_reason") == "scheduler" for r in trials)

    first = driver()
    wait_for(stopped_by_asha)
    reported = len(_reported(tmp_path))
    wait_for(lambda: len(_reported(tmp_path)) > reported)  # a later trial is training
    first.kill()
    first.communicate()
    second = driver()
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    client, trials, (parent,) = _trials(tmp_path, "asha")
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in trials) == ["trial-001", "trial-002", "trial-003", "trial-004"]
    reasons = {r.info.run_name: r.data.tags["hpsweep.stop_reason"] for r in trials}
    assert set(reasons.values()) <= {"completed", "scheduler"} and "scheduler" in reasons.values(), reasons
    for trial in trials:
        steps = [s for s, _ in _history(client, trial, "val_accuracy")]
        assert steps == list(range(1, len(steps) + 1)), (trial.info.run_name, steps)
        assert len(steps) == 6 or reasons[trial.info.run_name] == "scheduler", (trial.info.run_name, steps)
    assert not _ranks_left()  # no worker outlives its trial


def _states_exist(folder: Path) -> bool:
    return any((folder / "results").glob("*/hpsweep-sweep.json"))


def test_resources_no_cluster_can_hold_are_refused_before_anything_starts(ray_session, tmp_path, run_cli):
    """Three 1-CPU workers on this 2-CPU Ray: exit 2 naming `resources`, and no MLflow run written."""
    code, _, err = _run(run_cli, tmp_path, _sweep(tmp_path, "toolarge", 3))
    assert code == 2
    assert "resources: 3 workers of 1 CPU each can never run here" in err
    assert len(err.strip().splitlines()) == 1, err
    from mlflow import MlflowClient

    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("toolarge") is None


@pytest.mark.parametrize(("resources", "nodes", "refused"), [
    ({"workers": 4, "cpu": 2, "gpu": 1}, [{"CPU": 16, "GPU": 2}, {"CPU": 16, "GPU": 2}], None),
    ({"workers": 3, "cpu": 2, "gpu": 1}, [{"CPU": 16, "GPU": 1}, {"CPU": 16, "GPU": 1}],
     "3 workers of 2 CPU and 1 GPU each can never run here: this cluster holds 2 such worker(s)"),
    ({"workers": 2, "cpu": 3}, [{"CPU": 4}, {"CPU": 4}], None),  # one worker on each node
    ({"workers": 2, "cpu": 3}, [{"CPU": 5}], "holds 1 such worker(s) (its largest node has 5 CPU)"),
    ({"cpu": 4}, [{"CPU": 2}, {"CPU": 2}], "a trial of 4 CPU can never run here"),
    ({"gpu": 1}, [{"CPU": 64}], "a trial of 1 CPU and 1 GPU can never run here"),
])
def test_a_trial_no_node_or_cluster_could_hold_is_refused(tmp_path, resources, nodes, refused):
    """Counted per node: a worker's CPUs and GPU must sit on one node, and a trial needs all its workers."""
    from conftest import spec_for
    from hpsweep.errors import SpecError
    from hpsweep.sweep.workers import check_fits

    spec = spec_for(tmp_path, resources=resources)
    if refused is None:
        check_fits(spec, nodes)
        return
    with pytest.raises(SpecError) as raised:
        check_fits(spec, nodes)
    (line,) = raised.value.lines()
    assert line.startswith(f"{spec.source}: resources: ") and refused in line, line
