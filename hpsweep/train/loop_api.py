"""What the shared loop takes and gives: its settings, each epoch's report, the result of a fit, and the
metrics it reports for a dataset (checked against `train.metric` before anything trains)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hpsweep.spec.data_sources import Augment
from hpsweep.train.data.base import PreparedData
from hpsweep.train.metrics import improves


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from a sweep's `train` section (the same for every trial)."""

    epochs: int
    objectives: tuple[tuple[str, str], ...]  #: (metric, mode); the first decides best epoch and early stopping
    patience: int | None = None
    precision: str = "auto"
    seed: int = 0
    augment: Augment | None = None

    @property
    def metric(self) -> str:
        return self.objectives[0][0]

    @property
    def mode(self) -> str:
        return self.objectives[0][1]

    def better(self, value: float, best: float | None) -> bool:
        return improves(value, best, self.mode)


@dataclass
class EpochReport:
    """One finished epoch: its metrics and, on request, a checkpoint of the whole training state."""

    epoch: int
    metrics: dict[str, float]
    is_best: bool
    stop: str | None  #: None, or why training ends after this epoch: completed, early_stopped, diverged
    state: Callable[[], dict[str, Any]]
    confusion: torch.Tensor | None = None


@dataclass
class FitResult:
    status: str
    best_value: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    confusion: torch.Tensor | None = None  #: at the best epoch (classification)


def reported_metrics(data: PreparedData) -> list[str]:
    """Metric names the loop reports for this data, for checking `train.metric` before training."""
    if data.task == "regression":
        names = ["val_loss", "val_mse", "val_rmse", "val_mae", "val_r2"]
    else:
        names = ["val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall"]
        names += ["val_auc"] if data.num_outputs == 2 else []
    return ["train_loss", *names, "epoch_time_s"]
