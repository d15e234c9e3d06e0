"""Sweeps of many trials: the harness's cost per trial at 1,000 trials."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from bench.common import Outcome, median, scratch_folder, timed
from bench.sweep_bench import _timed_sweep
from hpsweep.spec import validate_data
from hpsweep.train.data import prepare
from hpsweep.train.trial import run_trial


def _raw(trials: int) -> dict[str, Any]:
    return {"name": f"many-{trials}", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
            "model": {"name": "mlp", "hidden_sizes": [16]}, "train": {"epochs": 1, "metric": "val_accuracy"},
            "search": {"algorithm": "tpe", "num_trials": trials, "max_concurrent": os.cpu_count() or 1},
            "space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}, "batch_size": 64}, "resources": {"cpu": 1}}


def many_trials(quick: bool) -> Outcome:
    """A sweep of 1,000 trivial trials (an MLP on digits, one epoch): (sweep wall - start-up - the trials'
    own time shared over the CPUs) / trials. Start-up is a sweep of one trial per CPU, timed apart."""
    import ray

    trials = 40 if quick else 1000
    cpus = os.cpu_count() or 1
    folder = scratch_folder()
    spec = validate_data(_raw(trials), str(folder / "many.yaml"), base_dir=folder)
    data = prepare(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a one-CPU trial runs
    try:
        run_trial(spec, data, {"lr": 0.01})
        bare = median([timed(lambda: run_trial(spec, data, {"lr": 0.01})) for _ in range(20)])
    finally:
        torch.set_num_threads(threads)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        small = validate_data(_raw(cpus), str(folder / "small.yaml"), base_dir=folder)
        _timed_sweep(small, _raw(cpus), folder, 0)  # warm-up: workers, imports
        startup = _timed_sweep(small, _raw(cpus), folder, 1)
        wall = _timed_sweep(spec, _raw(trials), folder, 2)
    finally:
        ray.shutdown()
    ideal = trials * bare / cpus
    cost = (wall - startup - ideal) / trials
    return Outcome(f"per-trial cost, {trials:,} trials", cost, "<= 0.25 s per trial", cost <= 0.25,
                   f"{trials:,} one-epoch MLP trials on digits, TPE, {cpus} at a time: sweep {wall:.0f} s, "
                   f"start-up {startup:.1f} s (a {cpus}-trial sweep), the trials' own time {ideal:.0f} s "
                   f"({bare * 1000:.0f} ms each, median of 20, over {cpus} CPUs); in seconds per trial")
