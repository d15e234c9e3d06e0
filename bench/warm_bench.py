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
#: the target: what the best tenth of all trials reach (val_rmse, lower is better)
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


def warm_start(quick: bool, seeds: tuple[int, ...] = tuple(range(1, 9))) -> Outcome:
    """Per seed: an earlier sweep (sampler seed + 100), then the cold and the warm sweep with the same
    sampler seed, in alternating order. A side that never reaches the target counts its budget + 1.

    The target is one value for the whole run: the best tenth of every trial of both sides over all
    seeds. Each cold sweep's own best tenth (the measure of the first runs) is reported beside it: a
    sweep reaches its own best tenth within its budget by construction and the other side need not,
    so that target favours the side it is taken from."""
    import ray

    trials, epochs = (3, 2) if quick else (20, 12)
    seeds = (0,) if quick else seeds
    folder = scratch_folder()
    csv = _friedman_csv(folder)
    found: list[dict[str, list[float]]] = []
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        for turn, seed in enumerate(seeds):
            found.append(_one_seed(folder, csv, trials, epochs, seed, flipped=turn % 2 == 1))
    finally:
        ray.shutdown()
    target = _quantile([v for side in found for k in ("cold", "warm") for v in side[k]], TARGET_QUANTILE)
    counts = {side: [trials_to_target(f[side], target) or trials + 1 for f in found] for side in ("cold", "warm")}
    own = {side: [trials_to_target(f[side], _quantile(f["cold"], TARGET_QUANTILE)) or trials + 1 for f in found]
           for side in ("cold", "warm")}
    ratio = sum(counts["warm"]) / sum(counts["cold"])
    notes = [f"seed {seed}: warm {w} vs cold {c}; best warm {min(f['warm']):.3f}, cold {min(f['cold']):.3f}, "
             f"the earlier sweep {min(f['earlier']):.3f}"
             for seed, w, c, f in zip(seeds, counts["warm"], counts["cold"], found, strict=True)]
    detail = (f"trials until the best-so-far val_rmse reaches {target:.3f} (the best tenth of all {trials}-trial "
              f"sweeps' trials, cold and warm, over {len(seeds)} seeds), summed: {sum(counts['warm'])} warm vs "
              f"{sum(counts['cold'])} cold; against each cold sweep's own best tenth instead: "
              f"{sum(own['warm'])} vs {sum(own['cold'])} ({sum(own['warm']) / sum(own['cold']):.3f}); MLP on "
              f"make_friedman1 ({ROWS} rows), TPE, {epochs} epochs a trial, one at a time, warm-started from one "
              f"earlier sweep of the same problem (sampler seed + 100); " + "; ".join(notes))
    return Outcome("warm start, trials to target", ratio, "<= 0.5", ratio <= 0.5, detail)


def _one_seed(folder: Path, csv: Path, trials: int, epochs: int, seed: int, flipped: bool) -> dict[str, list[float]]:
    """Each trial's best val_rmse, in the order they ran, of the earlier, the cold and the warm sweep."""
    from hpsweep.sweep.driver import run_sweep
    from hpsweep.sweep.plan import plan_sweep

    uri = f"sqlite:///{folder / 'mlflow.db'}"

    def sweep(name: str, sampler_seed: int, warm: list[str] | None = None) -> list[float]:
        raw = _raw(name, csv, trials, epochs, sampler_seed, warm)
        spec = validate_data(raw, str(folder / f"{name}.yaml"), base_dir=folder)
        outcome = run_sweep(spec, plan_sweep(spec, raw, storage=str(folder / "results"), uri=uri), "bench")
        return [r.best if r.best is not None else float("inf")
                for r in sorted(outcome.trials.values(), key=lambda r: r.number)]

    found = {"earlier": sweep(f"bench-warm-earlier-{seed}", seed + 100)}
    sides = [("cold", None), ("warm", [f"bench-warm-earlier-{seed}"])]
    for side, warm in reversed(sides) if flipped else sides:
        found[side] = sweep(f"bench-warm-{side}-{seed}", seed, warm)
    return found
