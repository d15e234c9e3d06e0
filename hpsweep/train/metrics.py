"""Validation metrics: classification (accuracy, macro F1/precision/recall, ROC AUC for two classes,
confusion matrix) and regression (MSE, RMSE, MAE, R²), in the units of the data."""

from __future__ import annotations

import math
import re

import torch

#: metrics that cannot go below 0 or above 1: their worst value is 0 (for max) or 1 (for min)
_BOUNDED = re.compile(r"(accuracy|f1|precision|recall|auc)$")


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether `value` beats the best so far (None: nothing yet) for a metric that is `mode`d (min or max)."""
    return best is None or (value > best if mode == "max" else value < best)


def worst_value(metric: str, mode: str) -> float:
    """What a diverged trial reports: the worst the metric can be, never NaN."""
    if _BOUNDED.search(metric):
        return 0.0 if mode == "max" else 1.0
    return -math.inf if mode == "max" else math.inf


def classification(logits: torch.Tensor, labels: torch.Tensor, classes: int) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics from validation logits, and the confusion matrix (rows: true class, columns: predicted)."""
    predicted = logits.argmax(dim=1)
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    true_positive = confusion.diag().double()
    predicted_count = confusion.sum(dim=0).double()
    actual_count = confusion.sum(dim=1).double()
    precision = torch.where(predicted_count > 0, true_positive / predicted_count.clamp_min(1), 0.0)
    recall = torch.where(actual_count > 0, true_positive / actual_count.clamp_min(1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), 0.0)
    present = actual_count > 0  # macro averages over the classes that occur in this split
    metrics = {
        "accuracy": float(true_positive.sum() / max(1, len(labels))),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
    }
    if classes == 2 and bool(present.all()):
        from sklearn.metrics import roc_auc_score

        metrics["auc"] = float(roc_auc_score(labels.numpy(), logits.softmax(dim=1)[:, 1].numpy()))
    return metrics, confusion


def regression(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    error = (predicted.double() - target.double())
    mse = float((error**2).mean())
    variance = float(((target.double() - target.double().mean()) ** 2).mean())
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(error.abs().mean()),
            "r2": 1.0 - mse / variance if variance > 0 else 0.0}
