"""Warm start: trials until the best-so-far reaches a target, for a TPE sweep warm-started from one earlier
sweep against the same sweep started cold, on the same sampler seeds.

The workload is one where search is measurable (on the digits random search reaches the top tenth within
a few trials): an MLP regressing Friedman's first function (scikit-learn's make_friedman1: ten uniform
inputs, five of them used, Gaussian noise; generated, nothing downloaded) through hpsweep's tabular
trainable, over a wide space where most learning rates train badly. The earlier sweep is the same
problem searched before with another sampler seed, as a user's previous sweep would be."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bench.common import Outcome, scratch_folder
from hpsweep.spec import validate_data

SPACE: dict[str, Any] = {
    "lr": {"loguniform": [1.0e-5, 1.0]},
    "batch_size": {"choice": [16, 32, 64, 128, 256]},
    "weight_decay": {"loguniform": [1.0e-7, 1.0e-1]},
    "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.0, 0.99]}}}},
}
#: the target: what the best tenth of the cold sweep's trials reach (val_rmse, lower is better)
TARGET_QUANTILE = 0.1
ROWS = 3000


def _friedman_csv(folder: Path) -> Path:
    import pandas as pd
    from sklearn.datasets import make_friedman1

    features, target = make_friedman1(n_samples=ROWS, n_features=10, noise=1.0, random_state=0)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(10)])
    frame["target"] = target
    path = folder / "friedman1.csv"
    frame.to_csv(path, index=False)
    return path


def _raw(name: str, csv: Path, trials: int, epochs: int, seed: int, warm: list[str] | None) -> dict[str, Any]:
    return {
        "name": name, "trainable": "tabular",
        "data": {"source": "tabular_csv", "path": str(csv), "target": "target", "task": "regression"},
        "model": {"name": "mlp", "hidden_sizes": [64, 32]},
        "train": {"epochs": epochs, "metric": "val_rmse", "mode": "min", "seed": 0},
        # one trial at a time: the order of the trials, and so the count, does not depend on timing
        "search": {"algorithm": "tpe", "num_trials": trials, "max_concurrent": 1, "seed": seed,
                   **({"warm_start": warm} if warm else {})},
        "space": SPACE,
        "resources": {"cpu": os.cpu_count() or 1},
    }


def trials_to_target(values: list[float], target: float) -> int | None:
    """The 1-based count of trials, in the order they ran, until one reached `target` (lower is better)."""
    return next((n for n, value in enumerate(values, 1) if value <= target), None)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def warm_start(quick: bool, seeds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> Outcome:
    """Per seed: an earlier sweep (sampler seed + 100), then the cold and the warm sweep with the same
    sampler seed, in alternating order. A side that never reaches the target counts its budget + 1."""
    import ray

    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep

    trials, epochs = (3, 2) if quick else (20, 12)
    seeds = (0,) if quick else seeds
    folder = scratch_folder()
    csv = _friedman_csv(folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    def sweep(name: str, seed: int, warm: list[str] | None = None) -> list[float]:
        raw = _raw(name, csv, trials, epochs, seed, warm)
        spec = validate_data(raw, str(folder / f"{name}.yaml"), base_dir=folder)
        outcome = run_sweep(spec, plan_sweep(spec, raw, storage=str(folder / "results"), uri=uri), "bench")
        return [r.best if r.best is not None else float("inf")
                for r in sorted(outcome.trials.values(), key=lambda r: r.number)]

    counts: dict[str, list[int]] = {"cold": [], "warm": []}
    notes = []
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        for turn, seed in enumerate(seeds):
            lender = sweep(f"bench-warm-earlier-{seed}", seed + 100)
            sides = [("cold", None), ("warm", [f"bench-warm-earlier-{seed}"])]
            found = {side: sweep(f"bench-warm-{side}-{seed}", seed, warm)
                     for side, warm in (sides if turn % 2 == 0 else reversed(sides))}
            target = _quantile(found["cold"], TARGET_QUANTILE)
            for side in counts:
                counts[side].append(trials_to_target(found[side], target) or trials + 1)
            notes.append(f"seed {seed}: target val_rmse {target:.3f}, warm {counts['warm'][-1]} vs cold "
                         f"{counts['cold'][-1]} trials; best warm {min(found['warm']):.3f}, cold "
                         f"{min(found['cold']):.3f}, the earlier sweep {min(lender):.3f}")
    finally:
        ray.shutdown()
    ratio = sum(counts["warm"]) / sum(counts["cold"])
    detail = (f"trials until the best-so-far val_rmse reaches the cold sweep's best-tenth value, summed over "
              f"{len(seeds)} seeds: {sum(counts['warm'])} warm vs {sum(counts['cold'])} cold; MLP on make_friedman1 "
              f"({ROWS} rows), TPE, {trials} trials of {epochs} epochs one at a time, warm-started from one earlier "
              f"sweep of the same problem (sampler seed + 100); " + "; ".join(notes))
    return Outcome("warm start, trials to target", ratio, "<= 0.5", ratio <= 0.5, detail)
