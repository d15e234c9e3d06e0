"""Faults during a sweep: a worker that dies, a trial out of memory, Ctrl-C on the driver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _sweep(folder: Path, trainable: str, **search: object) -> Path:
    path = folder / f"{trainable}.yaml"
    path.write_text(yaml.safe_dump({
        "name": trainable, "trainable": trainable, "data": {"source": "sklearn_digits"},
        "train": {"epochs": 3, "metric": "val_accuracy"}, "search": {"num_trials": 1, **search},
        "space": {"params": {"attempts": str(folder / "attempts.txt")}}}))
    return path


def _trial_runs(folder: Path, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    return [(r, client) for r in runs if "mlflow.parentRunId" in r.data.tags]


def _run(run_cli, folder: Path, sweep: Path):
    return run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--storage", str(folder / "results"))


def _killed_while_saving(root: Path) -> Path:
    """A process that stages a checkpoint as a trial does and is killed with -9 before its report returns:
    the folder it leaves behind."""
    code = ("from hpsweep.train.checkpoint import staging_folder\n"
            "with staging_folder() as folder:\n"
            "    (folder / 'checkpoint.pt').write_bytes(b'state')\n"
            "    print(folder, flush=True)\n"
            "    input()\n")
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(root)},
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    folder = Path(process.stdout.readline().strip())
    process.kill()
    process.wait()
    assert folder.parent == root and (folder / "checkpoint.pt").exists()
    return folder


def test_checkpoint_folders_of_killed_processes_are_removed_and_others_kept(tmp_path):
    from hpsweep.train.checkpoint import STAGING_PREFIX, remove_orphaned_staging, staging_folder

    orphan = _killed_while_saving(tmp_path)
    elsewhere = tmp_path / orphan.name.replace(socket.gethostname(), "another-host")  # a shared /tmp
    elsewhere.mkdir()
    unrelated = tmp_path / f"{STAGING_PREFIX}notes"
    unrelated.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path))
        with staging_folder() as mine:  # this process is alive: its folder is in use
            assert remove_orphaned_staging() == [orphan]
            assert mine.exists()
    assert sorted(tmp_path.iterdir()) == sorted([elsewhere, unrelated])


def test_a_killed_worker_resumes_from_its_checkpoint(ray_session, tmp_path, run_cli):
    # the workers stage checkpoints in this process's temporary folder: one left there by a worker
    # killed with -9 while saving is removed by the next sweep on this machine
    orphan = _killed_while_saving(Path(tempfile.gettempdir()))
    code, _, err = _run(run_cli, tmp_path, _sweep(tmp_path, "crashy", max_failures=1))
    assert code == 0, err
    assert not orphan.exists()
    assert (tmp_path / "attempts.txt").read_text().count("start") == 2  # died once, started again
    ((run, client),) = _trial_runs(tmp_path, "crashy")
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5), (3, 0.75)]  # epoch 1 not redone
    assert run.info.status == "FINISHED" and run.data.tags["hpsweep.stop_reason"] == "completed"


def test_a_failure_in_hpsweeps_checkpoint_handling_does_not_cost_the_checkpoint(ray_session, tmp_path, run_cli,
                                                                                   monkeypatch, caplog):
    """Ray registers a checkpoint only after every on_checkpoint callback has returned. Here hpsweep's
    pruning of old checkpoints fails at every epoch: the trial must still resume from its checkpoint
    (crashy dies again if it starts over, and would then exceed max_failures)."""
    from hpsweep.sweep import tune_hooks

    def broken(trial_folder: Path, keep: set[Path], grace_s: float) -> list[Path]:
        if grace_s > 0:  # while the sweep runs; the clean-up at its end goes on as usual
            raise RuntimeError("pruning broke")
        return []

    monkeypatch.setattr(tune_hooks, "prune_checkpoints", broken)
    monkeypatch.setattr(tune_hooks, "PRUNE_EVERY_S", 0.0)
    code, _, err = _run(run_cli, tmp_path, _sweep(tmp_path, "crashy", max_failures=1))
    assert code == 0, err
    assert (tmp_path / "attempts.txt").read_text().count("start") == 2
    assert "handling its checkpoint" in caplog.text and "pruning broke" in caplog.text  # logged, not hidden
    ((run, _),) = _trial_runs(tmp_path, "crashy")
    assert run.info.status == "FINISHED"


def test_past_max_failures_the_trial_fails_and_the_sweep_ends(ray_session, tmp_path, run_cli):
    code, out, _ = _run(run_cli, tmp_path, _sweep(tmp_path, "crashy", max_failures=0))
    assert code == 1 and "1 trials: 0 finished, 1 failed" in out
    ((run, _),) = _trial_runs(tmp_path, "crashy")
    assert run.info.status == "FAILED"


def test_out_of_memory_fails_the_trial_once_with_its_reason(ray_session, tmp_path, run_cli):
    code, _, _ = _run(run_cli, tmp_path, _sweep(tmp_path, "hungry", max_failures=2))
    assert code == 1
    assert (tmp_path / "attempts.txt").read_text().count("start") == 1  # not retried with the same config
    ((run, _),) = _trial_runs(tmp_path, "hungry")
    assert run.info.status == "FAILED" and run.data.tags["hpsweep.stop_reason"] == "oom"
    assert "out of memory: MemoryError: could not allocate 64 GiB" in run.data.tags["hpsweep.error"]


def _sleepy(tmp_path: Path, epochs: int = 60) -> tuple[Path, dict[str, str]]:
    sweep = tmp_path / "sleepy.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "sleepy", "trainable": "sleepy", "data": {"source": "sklearn_digits"},
        "train": {"epochs": epochs, "metric": "val_accuracy"}, "search": {"num_trials": 4, "max_concurrent": 2},
        "space": {"params": {"x": {"choice": [1, 2, 3, 4]}}}}))
    # explicit: mlflow.set_tracking_uri in this process exports MLFLOW_TRACKING_URI to children
    return sweep, {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def _no_process_left(session: int, grace_s: float = 10.0) -> None:
    """No process of the driver's session runs `grace_s` after it exited. A zombie does not count: Ray's
    workers can exit just after their raylet, and are then the init process's to reap (on CI's init,
    seen 2 s after); one whose parent were still in the session would show that parent running."""
    def running() -> list[str]:
        table = subprocess.run(["ps", "-eo", "sid=,stat=,cmd="], capture_output=True, text=True).stdout
        rows = [line.split(None, 2) for line in table.splitlines()]
        return [" ".join(row) for row in rows if row[0] == str(session) and not row[1].startswith("Z")]

    deadline = time.time() + grace_s
    while (left := running()) and time.time() < deadline:
        time.sleep(0.2)
    assert left == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_cleanly_and_leaves_no_process(tmp_path, signum, code):
    sweep, env = _sleepy(tmp_path, epochs=60 if signum == signal.SIGINT else 8)
    database = tmp_path / "mlflow.db"
    driver = subprocess.Popen([str(Path(sys.executable).with_name("hpsweep")), "run", str(sweep)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.time() + 120
    while not _trial_runs_exist(database) and time.time() < deadline:
        time.sleep(1)
    time.sleep(3)  # a few epochs in
    driver.send_signal(signum)
    stopped = time.time()
    output, _ = driver.communicate(timeout=60)
    assert driver.returncode == code, output
    assert time.time() - stopped < 30
    assert "interrupted:" in output and "SIGTERM received" not in output
    runs = _trial_runs(tmp_path, "sleepy")
    assert runs and all(r.info.status == "KILLED" for r, _ in runs)
    assert f"`hpsweep run {sweep}` resumes it" in output
    _no_process_left(driver.pid)
    if signum == signal.SIGTERM:  # the same command resumes it: every trial once, all finished
        again = subprocess.run([str(Path(sys.executable).with_name("hpsweep")), "run", str(sweep)], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and again.stdout.startswith("resuming sweep "), again.stdout + again.stderr
        runs = _trial_runs(tmp_path, "sleepy")
        assert len(runs) == 4 and all(r.info.status == "FINISHED" for r, _ in runs)


@pytest.mark.parametrize("after_s", [0.7, 1.5, 3.0, 5.0, 8.0])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_at_any_moment_of_start_up_ends_cleanly(tmp_path, signum, code, after_s):
    """From importing, through Ray's start and the MLflow store's creation, to the first trials: an
    interrupt ends the command with its exit code, no traceback or crash dump, no process left behind and
    no MLflow run left RUNNING."""
    sweep, env = _sleepy(tmp_path)
    driver = subprocess.Popen([str(Path(sys.executable).with_name("hpsweep")), "run", str(sweep)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    time.sleep(after_s)
    driver.send_signal(signum)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == code, output
    assert "Traceback" not in output and "SIGTERM received" not in output and "Fatal Python" not in output
    _no_process_left(driver.pid)
    assert _running_runs(tmp_path / "mlflow.db") == 0
    if any(tmp_path.rglob("hpsweep-sweep.json")):  # a sweep was recorded: the command says how to go on
        assert f"`hpsweep run {sweep}` resumes" in output, output
    else:
        assert "nothing was started or recorded" in output and not (tmp_path / "hpsweep-results").exists(), output


def _running_runs(database: Path) -> int:
    import sqlite3

    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0]


def _trial_runs_exist(database: Path) -> bool:
    if not database.exists():
        return False
    import sqlite3

    try:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT count(*) FROM tags WHERE key = 'hpsweep.trial_id'").fetchone()[0] > 0
    except sqlite3.Error:
        return False


@pytest.mark.parametrize(("every", "ran"), [("1h", [1, 2, 3, 4, 5, 5, 6]), (0, [1, 2, 3, 4, 5, 6])])
def test_a_crashed_trial_repeats_only_the_epochs_after_its_latest_checkpoint(ray_session, tmp_path, run_cli,
                                                                             every, ran):
    """`plateau` improves at epochs 1 and 4 and dies in epoch 6. With checkpoints only at best and last
    epochs (checkpoint_every: 1h) it resumes from epoch 4 and runs epoch 5 again; with checkpoint_every: 0
    it resumes from epoch 5. Either way MLflow holds each epoch once and the best checkpoint is epoch 4's."""
    from hpsweep.train.checkpoint import load_checkpoint

    log = tmp_path / "epochs.log"
    sweep = tmp_path / "plateau.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "plateau", "trainable": "plateau", "data": {"source": "sklearn_digits"},
        "train": {"epochs": 6, "metric": "val_accuracy", "checkpoint_every": every},
        "search": {"num_trials": 1, "max_failures": 1}, "space": {"params": {"log": str(log)}}}))
    code, _, err = _run(run_cli, tmp_path, sweep)
    assert code == 0, err
    assert [int(line) for line in log.read_text().split()] == ran
    ((run, client),) = _trial_runs(tmp_path, "plateau")
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.4), (3, 0.4), (4, 0.6), (5, 0.3), (6, 0.3)]
    folder = Path(client.download_artifacts(run.info.run_id, "checkpoint", str(tmp_path / "best")))
    assert load_checkpoint(folder)["epoch"] == 4


def test_hyperband_pauses_and_resumes_trials_without_repeating_epochs(ray_session, tmp_path, run_cli):
    """HyperBand pauses trials at its rungs and a paused trial continues from its last report's
    checkpoint, so under it every epoch checkpoints, whatever checkpoint_every says."""
    log = tmp_path / "epochs.log"
    sweep = tmp_path / "plateau.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "plateau", "trainable": "plateau", "data": {"source": "sklearn_digits"},
        "train": {"epochs": 6, "metric": "val_accuracy", "checkpoint_every": "1h"},
        # HyperBand's second bracket holds 5 trials, paused at epoch 2 until all of them get there
        "search": {"num_trials": 9, "scheduler": "hyperband"},
        "space": {"params": {"log": str(log), "die_at": 0, "x": {"uniform": [0.5, 1.0]}}}}))
    code, _, err = _run(run_cli, tmp_path, sweep)
    assert code == 0, err
    ran: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        x, epoch = line.split()
        ran.setdefault(x, []).append(int(epoch))
    assert len(ran) == 9 and {len(epochs) for epochs in ran.values()} == {2, 6}  # halved at epoch 2
    for epochs in ran.values():
        assert epochs == list(range(1, len(epochs) + 1)), ran  # no epoch ran twice
