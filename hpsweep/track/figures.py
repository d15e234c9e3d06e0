"""Figures logged beside the runs: a trial's learning curve and its confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpsweep.contract import CONFUSION_FILE


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: Sequence[Mapping[str, float]], metric: str) -> Any:
    """Losses on the left axis, the sweep metric on the right, per epoch."""
    plt = pyplot()
    figure, losses = plt.subplots(figsize=(6, 3.5))
    epochs = [int(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        if any(key in h for h in history):
            losses.plot(epochs, [h.get(key, float("nan")) for h in history], style, label=key)
    losses.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    losses.xaxis.set_major_locator(MaxNLocator(integer=True))
    losses.set_ylabel("loss")
    if metric not in ("train_loss", "val_loss") and any(metric in h for h in history):
        right = losses.twinx()
        right.plot(epochs, [h.get(metric, float("nan")) for h in history], "o-", color="tab:green", label=metric)
        right.set_ylabel(metric)
        right.legend(loc="center right")
    if losses.get_lines():
        losses.legend(loc="upper right")
    figure.tight_layout()
    return figure


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Any:
    plt = pyplot()
    size = max(3.0, 0.45 * len(class_names) + 1.5)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=90)
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                axes.text(j, i, str(count), ha="center", va="center", fontsize=7,
                          color="white" if count > peak / 2 else "black")
    figure.tight_layout()
    return figure


def log_best_figures(client: Any, record: Any, metric: str, class_names: Sequence[str]) -> None:
    """The best trial's learning curve and confusion matrix as images. Only for the best trial:
    drawing them takes the driver about half a second of CPU per trial, taken from the trials, and
    MLflow charts every run's metrics itself."""

    figures = []
    if record.history:
        figures.append((learning_curve(record.history, metric), "learning_curve.png"))
    confusion = record.confusion
    if confusion is None:  # a trial that finished before a resume: its matrix is in its run
        try:
            import mlflow

            confusion = mlflow.artifacts.load_dict(f"runs:/{record.run_id}/{CONFUSION_FILE}")["matrix"]
        except Exception:
            confusion = None
    if confusion is not None:
        names = tuple(class_names) or tuple(str(i) for i in range(len(confusion)))
        figures.append((confusion_matrix(confusion, names), "confusion_matrix.png"))
    for figure, name in figures:
        try:
            client.log_figure(record.run_id, figure, name)
        finally:
            figure.clear()
            import matplotlib.pyplot as plt

            plt.close(figure)
