"""`hpsweep run` against the bare loop: how much of the machine's time reaches training."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import Outcome, interleaved, median, timed
from bench.loop_bench import CONFIG
from hpsweep.data import prepare
from hpsweep.spec import SweepSpec, validate_data
from hpsweep.trial import run_trial


def _spec(folder: Path, trials: int, epochs: int) -> tuple[SweepSpec, dict[str, Any]]:
    raw = {"name": "bench-sweep", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
           "model": {"name": "cnn"}, "train": {"epochs": epochs, "metric": "val_accuracy", "precision": "fp32"},
           "search": {"algorithm": "random", "num_trials": trials, "max_concurrent": os.cpu_count() or 1},
           # label smoothing is searched (the validator wants a search) but costs the same in every trial
           "space": {"lr": CONFIG["lr"], "batch_size": CONFIG["batch_size"],
                     "label_smoothing": {"uniform": [0.0, 0.01]}},
           "resources": {"cpu": 1}}
    return validate_data(raw, str(folder / "bench.yaml"), base_dir=folder), raw


def harness_overhead(quick: bool) -> list[Outcome]:
    """N identical trials: `hpsweep run`'s wall time against the same trials' bare-loop time spread over
    the CPUs (each trial gets one, as in the sweep). Ray's start is timed apart: a sweep pays it once."""
    import ray

    from hpsweep.runner import plan_sweep, run_sweep

    trials, epochs, repeats = (2, 1, 1) if quick else (8, 12, 3)
    concurrency = min(trials, os.cpu_count() or 1)
    folder = Path(tempfile.mkdtemp(prefix="hpsweep-bench-"))
    spec, raw = _spec(folder, trials, epochs)
    data = prepare(spec)
    ray_start = timed(lambda: ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                                       logging_level=logging.ERROR))
    try:
        def bare() -> float:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # what a one-CPU trial gets
            try:
                config = {**CONFIG, "label_smoothing": 0.005}
                return sum(timed(lambda: run_trial(spec, data, config)) for _ in range(trials))
            finally:
                torch.set_num_threads(threads)

        counter = iter(range(1000))
        tiny, tiny_raw = _spec(folder, concurrency, 1)

        def sweep(spec: SweepSpec = spec, raw: dict[str, Any] = raw) -> float:
            plan = plan_sweep(spec, raw, storage=str(folder / f"results-{next(counter)}"),
                              uri=f"sqlite:///{folder / 'mlflow.db'}")
            started = time.perf_counter()
            outcome = run_sweep(spec, plan, "bench")
            assert len(outcome.trials) == spec.num_trials and not outcome.failed
            return time.perf_counter() - started

        # the fixed start-up: a sweep of one one-epoch trial per CPU (worker start, data, MLflow, the model)
        values = interleaved({"bare": bare, "sweep": sweep, "startup": lambda: sweep(tiny, tiny_raw)}, repeats)
    finally:
        ray.shutdown()
    ideal = median(values["bare"]) / concurrency
    wall, startup = median(values["sweep"]), median(values["startup"])
    per_trial_s = median(values["bare"]) / trials
    ratio, cost = (wall - startup) / ideal, (wall - startup - ideal) / trials
    goal = "<= 1.20 (2-10 s trials)" if per_trial_s < 30 else "<= 1.10 (trials >= 30 s)"
    limit = 1.20 if per_trial_s < 30 else 1.10
    detail = (f"{trials} CNN trials of {per_trial_s:.1f} s bare, {concurrency} at a time: sweep {wall:.1f} s "
              f"(ratio {wall / ideal:.2f} with its start-up) vs ideal {ideal:.1f} s; fixed start-up {startup:.1f} s "
              f"(a {concurrency}-trial, 1-epoch sweep) and Ray's start {ray_start:.1f} s reported apart")
    return [Outcome("harness overhead", ratio, goal, ratio <= limit, detail),
            Outcome("per-trial cost", cost, "<= 0.25 s per trial", cost <= 0.25,
                    "(sweep wall - start-up - ideal) / trials, in seconds, from the same run")]
