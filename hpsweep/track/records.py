"""What the tracker knows about each trial, and how Ray Tune's results become MLflow metrics and params."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hpsweep.contract import EPOCHS_RUN

log = logging.getLogger(__name__)

#: keys Ray Tune adds to every result; they are bookkeeping, not metrics of the model
RAY_KEYS = {"training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "time_since_restore",
            "iterations_since_restore", "done", "trial_id", "node_ip", "hostname", "date", "experiment_tag",
            "checkpoint_dir_name", "should_checkpoint", "config", "epoch"}
#: metrics logged once when a trial ends, not per epoch
SUMMARY_METRICS = {EPOCHS_RUN}
#: how often a running trial's epoch metrics reach MLflow, at most (HPSWEEP_METRICS_FLUSH_S overrides)
FLUSH_S = 5.0
_PACKAGES = ("hpsweep", "torch", "torchvision", "ray", "optuna", "mlflow", "pandas", "pydantic", "scikit-learn")


def flush_interval() -> float:
    raw = os.environ.get("HPSWEEP_METRICS_FLUSH_S")
    try:
        return max(0.0, float(raw)) if raw else FLUSH_S
    except ValueError:
        log.warning("HPSWEEP_METRICS_FLUSH_S=%r is not a number of seconds; using %s", raw, FLUSH_S)
        return FLUSH_S


def epoch_step(result: Mapping[str, Any], default: int) -> int:
    """The step an epoch's metrics are logged at: its epoch, else Ray's iteration, else `default`."""
    return int(result.get("epoch", result.get("training_iteration", default)))


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a reported result that are metrics of the model (no Ray or hpsweep bookkeeping)."""
    return {k: float(v) for k, v in result.items() if is_metric(k, v)}


@dataclass
class TrialRecord:
    """What the tracker knows about one trial while the sweep runs."""

    run_id: str
    number: int
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_checkpoint: Any = None  #: the ray.tune.Checkpoint of the best epoch so far
    confusion: list[list[int]] | None = None
    stop: str | None = None
    error: str | None = None  #: why the trial failed, when it reported that itself (out of memory)
    last_step: int = 0  #: the latest epoch logged: a retried trial's repeated epochs are logged once
    pending: list[Any] = field(default_factory=list)  #: epoch metrics (mlflow Metric) not yet written
    flushed_at: float = field(default_factory=time.monotonic)
    attached: bool = False  #: recorded before this start of the sweep (its summary may be logged already)


def best_of(values: list[float | None], mode: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def is_metric(key: str, value: Any) -> bool:
    return (key not in RAY_KEYS and not key.startswith("hpsweep_") and isinstance(value, int | float)
            and not isinstance(value, bool) and not math.isnan(value))


def as_params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:6000]) for k, v in values.items()]


def package_versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def trial_error(trial: Any) -> str:
    """The last lines of a failed trial's error, as Ray recorded it."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
        return "\n".join(text.splitlines()[-20:])
    return "the trial failed (Ray recorded no error message)"
