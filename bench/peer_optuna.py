"""The script a user would write instead of hpsweep on one machine: Optuna's `study.optimize` with two
parallel jobs, a successive-halving pruner, and MLflow parent/child runs, sweeping the demo's CNN over
the demo's space (sweeps/digits_cnn.yaml) on scikit-learn's digits.

Written the way Optuna's and MLflow's documentation show, with nothing slowed on purpose. Run as
`python -m bench.peer_optuna TRACKING_URI [TRIALS]`; the benchmark times it as a whole process.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import mlflow
import optuna
import torch
import torch.nn.functional as F
from mlflow import MlflowClient
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

EPOCHS, PATIENCE, JOBS = 8, 3, 2


def load() -> tuple[torch.Tensor, ...]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return x_train, x_val, y_train, y_val


def cnn(dropout: float = 0.0) -> nn.Module:
    def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return [*layers, nn.MaxPool2d(2)] if pool else layers

    return nn.Sequential(*block(1, 32, True), *block(32, 64, True), *block(64, 128, False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(128, 10))


def make_optimizer(trial: optuna.Trial, model: nn.Module) -> torch.optim.Optimizer:
    name = trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd"])
    if name == "sgd":
        lr = trial.suggest_float("sgd_lr", 1e-2, 0.2, log=True)
        momentum = trial.suggest_float("momentum", 0.8, 0.95)
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True)
    lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=trial.suggest_float("weight_decay", 1e-5,
                                                                                          1e-2, log=True))
    return torch.optim.Adam(model.parameters(), lr=lr)


def make_scheduler(trial: optuna.Trial, optimizer: torch.optim.Optimizer, steps: int) -> object | None:
    name = trial.suggest_categorical("scheduler", ["none", "cosine", "onecycle"])
    if name == "cosine":
        warmup = trial.suggest_int("warmup_epochs", 0, 1)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=(EPOCHS - warmup) * steps)
        if not warmup:
            return cosine
        ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup * steps)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup * steps])
    if name == "onecycle":
        factor = trial.suggest_float("max_lr_factor", 2, 8)
        top = optimizer.param_groups[0]["lr"] * factor
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=top, total_steps=EPOCHS * steps)
    return None


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, data: tuple[torch.Tensor, ...],
                batch_size: int, smoothing: float) -> float:
    """One epoch of training; the validation accuracy after it."""
    x_train, x_val, y_train, y_val = data
    model.train()
    order = torch.randperm(len(x_train))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        loss = F.cross_entropy(model(x_train[index]), y_train[index], label_smoothing=smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    model.eval()
    with torch.no_grad():
        return (model(x_val).argmax(1) == y_val).float().mean().item()


def main(uri: str, trials: int) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // JOBS))
    x_train, x_val, y_train, y_val = load()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("peer-optuna")
    client = MlflowClient(uri)

    with mlflow.start_run(run_name="sweep") as parent:
        experiment = parent.info.experiment_id

        def objective(trial: optuna.Trial) -> float:
            batch_size = trial.suggest_categorical("batch_size", [32, 64, 128])
            smoothing = trial.suggest_float("label_smoothing", 0.0, 0.1)
            torch.manual_seed(0)
            model = cnn()
            optimizer = make_optimizer(trial, model)
            steps = math.ceil(len(x_train) / batch_size)
            scheduler = make_scheduler(trial, optimizer, steps)
            run = client.create_run(experiment, run_name=f"trial-{trial.number}",
                                    tags={"mlflow.parentRunId": parent.info.run_id})
            for key, value in trial.params.items():
                client.log_param(run.info.run_id, key, value)
            best, stale = 0.0, 0
            try:
                for epoch in range(EPOCHS):
                    accuracy = train_epoch(model, optimizer, scheduler, (x_train, x_val, y_train, y_val), batch_size,
                                           smoothing)
                    client.log_metric(run.info.run_id, "val_accuracy", accuracy, step=epoch + 1)
                    best, stale = (accuracy, 0) if accuracy > best else (best, stale + 1)
                    trial.report(accuracy, epoch + 1)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
                    if stale >= PATIENCE:
                        break
            finally:
                client.set_terminated(run.info.run_id)
            return best

        sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=4)  # the demo's 4 random start-up trials
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=2)  # the demo's ASHA
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        study.optimize(objective, n_trials=trials, n_jobs=JOBS)
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric("best_val_accuracy", study.best_value)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 12)
