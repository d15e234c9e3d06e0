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
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
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
