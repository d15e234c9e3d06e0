"""One trial in this process, without Ray: what `hpsweep train` runs.

It runs the sweep's own trainable, as a sweep's trial would (a plugin's as well as the built-in ones),
with a context whose `report` hands every epoch to the caller instead of Ray Tune.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hpsweep.contract import RESULT_BEST, RESULT_STOP, StopReason
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.train.data.base import PreparedData
from hpsweep.train.metrics import improves
from hpsweep.train.trainable import TrialContext, load_trainable


@dataclass(frozen=True)
class LocalEpoch:
    """One epoch a local trial reported."""

    epoch: int
    metrics: dict[str, Any]
    is_best: bool
    state: dict[str, Any] | None  #: the checkpoint that came with it, if any


@dataclass
class LocalResult:
    status: str = StopReason.COMPLETED.value  #: the trial's StopReason
    best_value: float | None = None
    best_epoch: int = 0
    epochs: int = 0


def run_local(spec: SweepSpec, config: Mapping[str, Any], data: PreparedData | None,
              pretrained: dict[str, Any] | None, on_epoch: Callable[[LocalEpoch], None]) -> LocalResult:
    """Run the sweep's trainable on `config` here; every epoch goes to `on_epoch`, with its checkpoint."""
    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    result = LocalResult()

    def report(metrics: Mapping[str, Any], state: dict[str, Any] | None = None) -> None:
        result.epochs += 1
        epoch = int(metrics.get("epoch", result.epochs))
        value = metrics.get(metric)
        improved = isinstance(value, int | float) and math.isfinite(value) and improves(value, result.best_value, mode)
        is_best = bool(metrics.get(RESULT_BEST, improved))
        if is_best and isinstance(value, int | float):
            result.best_value, result.best_epoch = float(value), epoch
        if metrics.get(RESULT_STOP):
            result.status = str(metrics[RESULT_STOP])
        on_epoch(LocalEpoch(epoch, dict(metrics), is_best, state))

    # every epoch checkpoints (checkpoint_every 0), so that the caller can keep the best one
    context = TrialContext(spec, data, report, None, float(os.cpu_count() or 1), pretrained, checkpoint_every=0.0)
    load_trainable(spec.trainable)(config, context)
    return result
