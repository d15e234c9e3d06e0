"""A disk filling under the results folder: the sweep stops while its state can still be written, every
run is closed, and once space is freed the same command resumes it to the end, each trial once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
MB = 2**20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MB file system (tmpfs) for the results folder."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"a small file system cannot be mounted here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_filling_disk_stops_the_sweep_resumably_and_freeing_space_resumes_it(small_disk, tmp_path, run_cli,
                                                                               ray_session, monkeypatch):
    from mlflow import MlflowClient

    sweep = tmp_path / "filling.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "filling", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "model": {"name": "mlp", "hidden_sizes": [256]}, "train": {"epochs": 4, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": 6, "max_concurrent": 2},
        "space": {"lr": {"loguniform": [0.001, 0.01]}}, "resources": {"cpu": 1}}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ("run", str(sweep), "--tracking-uri", uri, "--storage", str(small_disk / "results"))
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * int(15.75 * MB))  # leaves 8.25 MB: the first checkpoints take it below 8
    monkeypatch.setenv("HPSWEEP_MIN_FREE_MB", "8")
    code, out, err = run_cli(*args)
    assert code == 1, out + err
    assert "stopped: only" in out and "MB free under" in out and "Free some space" in out, out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("filling").experiment_id
    runs = client.search_runs([experiment])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    assert not list(small_disk.rglob("*.partial"))
    ballast.unlink()
    code, out, err = run_cli(*args)
    assert code == 0 and out.startswith("resuming sweep filling-"), out + err
    trials = [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.info.run_name for r in trials) == [f"trial-{n:03d}" for n in range(1, 7)]
    assert all(r.info.status == "FINISHED" for r in trials)
    assert "6 trials: 6 finished, 0 failed" in out
