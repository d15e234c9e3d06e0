"""The sweep report: what a person looks at after a sweep, built from what MLflow recorded.

This module holds what the report is made of (trials ranked, range warnings, the report itself);
`analysis` fills it in, `figures` draws it, `html` writes it and `compare` sets two side by side.

Which trials won (leaderboard, learning curves), which hyperparameters mattered (Optuna's fANOVA
importances on a study rebuilt from the trials' results, a parallel-coordinates view), whether the
searched ranges were wide enough (per-parameter plots, warnings when the best trial sits at the edge
of a range), what stopped trials early, what the sweep cost, and a `best.yaml` to run next. Written
as files and as one self-contained HTML page, and logged to the sweep's parent run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsweep.contract import EPOCHS_RUN, STOP_TAG, best_metric, counts_as_result, trial_number
from hpsweep.errors import UserError
from hpsweep.search.space import SearchSpace

log = logging.getLogger(__name__)
TOP_CURVES = 5


@dataclass(frozen=True)
class TrialResult:
    number: int
    name: str
    run_id: str
    status: str  #: MLflow's: FINISHED, FAILED, KILLED
    stop_reason: str  #: completed, early_stopped, scheduler, time_budget, diverged, error, oom, interrupted
    best: float | None
    epochs: int
    seconds: float
    params: dict[str, Any]  #: typed, as the trial received them

    @property
    def counts(self) -> bool:
        """A result that can win: finished with a finite metric, neither diverged nor failed."""
        return counts_as_result(self.status, self.stop_reason, self.best)


@dataclass(frozen=True)
class EdgeWarning:
    param: str
    side: str  #: high or low
    value: Any
    message: str


@dataclass
class SweepReport:
    sweep_id: str
    experiment: str
    parent_run_id: str
    metric: str
    mode: str
    trials: list[TrialResult]  #: ranked: results best first, then the trials that did not count
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""
    importance_method: str = "fANOVA"  #: Optuna's evaluator the importances come from
    warnings: list[EdgeWarning] = field(default_factory=list)
    stops: dict[str, int] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=dict)
    best_yaml: str = ""
    files: dict[str, Path] = field(default_factory=dict)
    confirmation: dict[str, Any] | None = None  #: the latest `promote --confirm`'s numbers

    @property
    def best(self) -> TrialResult | None:
        return self.trials[0] if self.trials and self.trials[0].counts else None

    @functools.cached_property
    def _positions(self) -> dict[int, int]:
        """Each trial's place in `trials`, by identity (looking each up by equality was quadratic)."""
        return {id(trial): place for place, trial in enumerate(self.trials, 1)}

    def rank(self, trial: TrialResult) -> int | None:
        return self._positions[id(trial)] if trial.counts else None


class ReportError(UserError):
    """The sweep cannot be reported on: unknown, or nothing recorded yet."""


def trial_result(run: Any, metric: str, space: SearchSpace) -> TrialResult:
    info, data = run.info, run.data
    name = info.run_name or info.run_id
    seconds = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else 0.0
    return TrialResult(trial_number(name) or 0, name, info.run_id, info.status, data.tags.get(STOP_TAG, ""),
                       data.metrics.get(best_metric(metric)), int(data.metrics.get(EPOCHS_RUN, 0)), seconds,
                       space.from_logged(data.params))


def rank_trials(trials: Sequence[TrialResult], mode: str) -> list[TrialResult]:
    """Results best first (ties: the earlier trial first), then the trials that did not count, by number."""
    sign = -1.0 if mode == "max" else 1.0
    counted = sorted((t for t in trials if t.counts), key=lambda t: (sign * float(t.best or 0.0), t.number))
    return counted + sorted((t for t in trials if not t.counts), key=lambda t: t.number)


# ---------------------------------------------------------------- analysis


# ---------------------------------------------------------------- figures


# ---------------------------------------------------------------- writing


# ---------------------------------------------------------------- comparing two sweeps


