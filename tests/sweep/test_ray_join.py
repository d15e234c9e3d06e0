"""A Ray that `ray start` left running on this machine is joined by every `hpsweep run` and left running;
without one, each run starts its own Ray and stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import stop_ray_start
from conftest import free_port

BIN = Path(sys.executable).parent


def _gcs_alive(port: int) -> bool:
    found = subprocess.run(["pgrep", "-f", f"gcs_server.*--gcs_server_port={port}"], capture_output=True)
    return found.returncode == 0


@pytest.fixture
def started_ray() -> Iterator[tuple[dict[str, str], int]]:
    """`ray start --head` as a user would run it, under a Ray temp folder of its own (RAY_TMPDIR, where
    `ray start` records its address): the environment that finds it, and its port. Stopped afterwards."""
    temp = tempfile.mkdtemp(prefix="hj", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": temp}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (Path(temp) / "ray" / "ray_current_cluster").exists():
            assert head.poll() is None and time.time() < deadline, "ray start did not come up"
            time.sleep(0.5)
        yield env, port
    finally:
        stop_ray_start(head)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_runs_join_the_ray_that_ray_start_left_running_and_leave_it_running(started_ray, sweep_file, tmp_path):
    env, port = started_ray
    sweep = sweep_file({"train": {"epochs": 1}, "search": {"num_trials": 2}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for attempt in (1, 2):
        done = subprocess.run([str(BIN / "hpsweep"), "run", str(sweep), "--restart", "--storage",
                               str(tmp_path / "results"), "--tracking-uri", uri], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        joined = [line for line in done.stdout.splitlines() if line.startswith("Ray: joined the running Ray at")]
        assert joined and f":{port} " in joined[0], (attempt, done.stdout)
        assert "2 trials: 2 finished, 0 failed" in done.stdout
        assert _gcs_alive(port)  # the sweep left the shared Ray running for the next one
        if attempt == 1:
            # Ray started 2 workers (its CPUs) as the first sweep joined, and its 2 trials took them (one
            # more starts on a busy machine when a trial asks before they are ready); were the trials
            # refused those workers, each would start one of its own: 4
            assert _workers_started(env) < 4


def _workers_started(env: dict[str, str]) -> int:
    """How many worker processes the raylet of `ray start` has started so far, from its log."""
    log = Path(env["RAY_TMPDIR"]) / "ray" / "session_latest" / "logs" / "raylet.out"
    return log.read_text().count("Started worker process with pid")


@pytest.mark.slow
def test_a_recorded_ray_that_is_gone_is_ignored_and_a_local_ray_started(sweep_file, tmp_path):
    """`ray start`'s record outlives a Ray killed without `ray stop`: the run starts its own instead of
    failing to connect."""
    temp = Path(tempfile.mkdtemp(prefix="hg", dir="/tmp"))
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
        env = {**os.environ, "RAY_TMPDIR": str(temp)}
        env.pop("RAY_ADDRESS", None)
        sweep = sweep_file({"train": {"epochs": 1}, "search": {"num_trials": 1}})
        done = subprocess.run([str(BIN / "hpsweep"), "run", str(sweep), "--storage", str(tmp_path / "results"),
                               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Ray: started a local Ray" in done.stdout
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_address_nothing_answers_at_is_bad_input_named_at_once(tmp_path):
    """Ray itself retries such an address for minutes before a ConnectionError; the run says in seconds
    which setting is wrong, exits 2 and leaves no sweep behind."""
    sweep = tmp_path / "smoke.yaml"
    shutil.copy(Path(__file__).parents[2] / "sweeps" / "smoke.yaml", sweep)
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{free_port()}", "HPSWEEP_STORAGE": str(tmp_path / "results"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    began = time.monotonic()
    done = subprocess.run([str(BIN / "hpsweep"), "run", str(sweep)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "RAY_ADDRESS" in done.stderr
    assert time.monotonic() - began < 60
    assert not any((tmp_path / "results").glob("smoke-*"))


def test_ctrl_c_while_joining_an_address_that_never_answers_as_ray_ends_the_run(tmp_path):
    """Something listens at RAY_ADDRESS but is not Ray: the join hangs in Ray's retries, and Ctrl-C must
    still end the command within seconds, not when Ray gives up."""
    import socket

    sweep = tmp_path / "smoke.yaml"
    shutil.copy(Path(__file__).parents[2] / "sweeps" / "smoke.yaml", sweep)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{listener.getsockname()[1]}",
               "HPSWEEP_STORAGE": str(tmp_path / "results"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
        driver = subprocess.Popen([str(BIN / "hpsweep"), "run", str(sweep)], cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(12)  # past the imports and into Ray's join
        assert driver.poll() is None
        driver.send_signal(signal.SIGINT)
        began = time.monotonic()
        out, _ = driver.communicate(timeout=60)
    assert driver.returncode == 130 and time.monotonic() - began < 15, out
    assert "interrupted" in out
