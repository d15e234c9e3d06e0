"""Data-parallel trials (`resources.workers`): a trial's epoch time on 2 workers against 1, through real
sweeps (`hpsweep run` in a process of its own), on a CNN over photos where the convolutions dominate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.common import Outcome, interleaved, listed, median, round_ratios, scratch_folder
from bench.photos import photo_folder

IMAGE_SIZE = 64


def _sweep(folder: Path, images: Path, workers: int, cpu: float, epochs: int) -> Path:
    name = f"w{workers}c{cpu:g}".replace(".", "_")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "trainable": "image_classifier",
        "data": {"source": "image_folder", "path": str(images), "image_size": IMAGE_SIZE,
                 "split": {"train": 0.8, "val": 0.2, "test": 0.0}},
        "model": {"name": "cnn"}, "train": {"epochs": epochs, "metric": "val_accuracy", "precision": "fp32"},
        "search": {"num_trials": 1}, "space": {"lr": 0.003, "batch_size": 64, "dropout": 0.0},
        "resources": {"workers": workers, "cpu": cpu}}))
    return path


def _epoch_time(sweep: Path, folder: Path) -> float:
    """The median epoch time (s) of the sweep's one trial, leaving out its first epoch (warm-up)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    hpsweep = Path(sys.executable).parent / "hpsweep"
    done = subprocess.run([str(hpsweep), "run", str(sweep), "--restart", "--storage", str(folder / "results"),
                           "--tracking-uri", uri], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the sweep {sweep} failed: {done.stderr[-2000:]}")
    client = MlflowClient(uri)
    name = yaml.safe_load(sweep.read_text())["name"]
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], order_by=["start_time DESC"])
    trial = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    times = sorted(client.get_metric_history(trial.info.run_id, "epoch_time_s"), key=lambda m: m.step)
    return median([m.value for m in times[1:]] or [times[0].value])


def worker_scaling(quick: bool) -> list[Outcome]:
    """Two rows: a 2-worker trial (1 CPU each) against a 1-worker trial with 1 CPU (the scaling, ideally
    0.5), and against a 1-worker trial with 2 CPUs (the same cores used by threads instead)."""
    cores = os.cpu_count() or 1
    if cores < 2:
        return []
    folder = scratch_folder()
    os.environ.setdefault("HPSWEEP_CACHE", str(folder / "cache"))
    images = photo_folder(folder / "photos", 200 if quick else 1500)
    epochs = 2 if quick else 4
    sweeps: dict[str, Any] = {"2x1": _sweep(folder, images, 2, 1, epochs), "1x1": _sweep(folder, images, 1, 1, epochs),
                              "1x2": _sweep(folder, images, 1, 2, epochs)}
    values = interleaved({side: lambda sweep=sweep: _epoch_time(sweep, folder) for side, sweep in sweeps.items()},
                         1 if quick else 3, warm_up=False)
    scaling = median(round_ratios(values, "2x1", "1x1"))
    threads = median(round_ratios(values, "2x1", "1x2"))
    train = int(0.8 * (200 if quick else 1500))
    detail = (f"{train:,} training photos at {IMAGE_SIZE}x{IMAGE_SIZE}, CNN, global batch 64, fp32, gloo; median "
              f"epoch (after the first): 2 workers x 1 CPU {median(values['2x1']):.2f} s, 1 worker x 1 CPU "
              f"{median(values['1x1']):.2f} s, 1 worker x 2 CPUs {median(values['1x2']):.2f} s")
    return [
        Outcome("2 workers / 1 worker (1 CPU each)", scaling, "<= 0.625 (>= 80% scaling efficiency)",
                scaling <= 0.625, f"{detail}; scaling efficiency {0.5 / scaling:.0%}; each round's ratio "
                f"{listed(round_ratios(values, '2x1', '1x1'))}"),
        Outcome("2 workers x 1 CPU / 1 worker x 2 CPUs", threads, "<= 1.1 (as fast as threads on the same cores)",
                threads <= 1.1, f"each round's ratio {listed(round_ratios(values, '2x1', '1x2'))}"),
    ]
