"""The sweep written by hand on Ray Tune, as a user would who wants Ray without hpsweep: Tuner, OptunaSearch
(TPE, 4 random start-up trials), ASHA and MLflowLoggerCallback, one CPU per trial, over the same CNN, data,
space and early stopping as the plain Optuna script (bench/peer_optuna.py, whose pieces it reuses: an
Optuna FixedTrial replays a sampled configuration through the same code).

Written the way Ray Tune's documentation shows, with nothing slowed on purpose. Run as
`python -m bench.peer_tune TRACKING_URI RESULTS_FOLDER [TRIALS]`; the benchmark times it as a whole process.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import optuna
import torch
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from bench.peer_optuna import EPOCHS, PATIENCE, cnn, load, make_optimizer, make_scheduler, train_epoch

BATCH_SIZES = [32, 64, 128]


def space(trial: optuna.Trial) -> None:
    """The same suggestions, in the same order, as the Optuna script's objective."""
    trial.suggest_categorical("batch_size", BATCH_SIZES)
    trial.suggest_float("label_smoothing", 0.0, 0.1)
    optimizer = make_optimizer(trial, cnn())
    make_scheduler(trial, optimizer, steps=1)


def train(config: dict[str, Any], data: tuple[torch.Tensor, ...]) -> None:
    torch.set_num_threads(1)
    x_train = data[0]
    fixed = optuna.trial.FixedTrial(config)
    batch_size, smoothing = fixed.suggest_categorical("batch_size", BATCH_SIZES), config["label_smoothing"]
    torch.manual_seed(0)
    model = cnn()
    optimizer = make_optimizer(fixed, model)
    scheduler = make_scheduler(fixed, optimizer, math.ceil(len(x_train) / batch_size))
    best, stale = 0.0, 0
    for _ in range(EPOCHS):
        accuracy = train_epoch(model, optimizer, scheduler, data, batch_size, smoothing)
        best, stale = (accuracy, 0) if accuracy > best else (best, stale + 1)
        tune.report({"val_accuracy": accuracy, "best_val_accuracy": best})
        if stale >= PATIENCE:
            return


def main(uri: str, results: str, trials: int) -> None:
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=4)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train, data=load()), {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space, sampler=sampler, metric="val_accuracy", mode="max"),
            scheduler=ASHAScheduler(max_t=EPOCHS, grace_period=2, reduction_factor=2),
            num_samples=trials, metric="val_accuracy", mode="max"),
        run_config=tune.RunConfig(storage_path=results, name="peer-tune", verbose=0,
                                  callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name="peer-tune")]),
    )
    best = tuner.fit().get_best_result()
    print(f"best val_accuracy {best.metrics['best_val_accuracy']:.4f}: {best.config}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 12)
