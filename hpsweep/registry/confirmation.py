"""The numbers behind `promote --confirm`: the top configurations re-trained with fresh seeds, which one
goes forward, whether it beats the champion with the stated confidence, and which seed's model is
registered.

The best of many noisy trials is picked partly for its luck. Re-training it with new seeds measures
what the configuration is worth; the original trial's validation value minus its seeds' mean is that
luck (the selection bias), reported for every confirmation.

- The configuration that goes forward is the one with the best mean *validation* value over its seeds:
  the test split decides only the gate, so the gated number is not itself the best of K.
- The gate is a one-sided t-test over the seeds' test values against the champion's test value plus the
  margin. The champion is one registered model evaluated once, so it contributes no variance: Welch's
  test with one side fixed is this one-sample test.
- The registered model is the seed whose test value is nearest its configuration's mean, among the seeds
  that beat the champion themselves: a typical model of the configuration, not its luckiest, and one
  whose own score agrees with the decision when the alias is settled on the best version.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

METHOD = "one-sided t-test over seeds against the champion's test value"


@dataclass(frozen=True)
class SeedResult:
    """One re-trained seed of a configuration."""

    seed: int
    run_id: str
    val: float  #: its best validation value
    test: float  #: its test value on the compared metric
    model_uri: str = ""
    test_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfirmedConfig:
    """One of the sweep's top configurations and its re-trained seeds."""

    rank: int  #: its place in the original sweep (1: the sweep's best trial)
    run_id: str  #: the original trial's run
    val_original: float  #: what the original trial reached on validation
    params: dict[str, str]
    seeds: list[SeedResult]

    @property
    def complete(self) -> bool:
        """Every seed trained to a finite validation and test value."""
        return len(self.seeds) >= 2 and all(math.isfinite(s.val) and math.isfinite(s.test) for s in self.seeds)

    def mean(self, what: str) -> float:
        values = [getattr(s, what) for s in self.seeds]
        return statistics.fmean(values) if values else math.nan

    def interval(self, confidence: float, mode: str) -> tuple[float, float]:
        """The one-sided bound on the mean test value: (lower, +inf) for max, (-inf, upper) for min."""
        if not self.complete:
            return (math.nan, math.nan)
        from scipy import stats

        tests = [s.test for s in self.seeds]
        half = float(stats.t.ppf(confidence, len(tests) - 1)) * statistics.stdev(tests) / math.sqrt(len(tests))
        mean = statistics.fmean(tests)
        return (mean - half, math.inf) if mode == "max" else (-math.inf, mean + half)

    def selection_bias(self) -> float:
        """The original trial's validation value minus its seeds' mean: how lucky the pick was."""
        return self.val_original - self.mean("val")


@dataclass(frozen=True)
class Verdict:
    promoted: bool
    reason: str
    chosen: ConfirmedConfig | None  #: the configuration that went forward
    registered: SeedResult | None  #: its seed whose model is (or, when held, would have been) registered


def judge(configs: Sequence[ConfirmedConfig], champion: float | None, metric: str, mode: str, margin: float,
          confidence: float) -> Verdict:
    """Choose a configuration by its seeds' validation mean, then gate its test values against the champion."""
    complete = [c for c in configs if c.complete]
    if not complete:
        return Verdict(False, "held: no configuration trained every seed to a finite value", None, None)
    sign = -1.0 if mode == "max" else 1.0
    chosen = min(complete, key=lambda c: (sign * c.mean("val"), c.rank))  # ties: the better original rank
    lower, upper = chosen.interval(confidence, mode)
    bound = lower if mode == "max" else upper
    where = (f"configuration #{chosen.rank}: mean test {metric} {chosen.mean('test'):.4g} over "
             f"{len(chosen.seeds)} seeds, {confidence:.0%} {'lower' if mode == 'max' else 'upper'} bound "
             f"{bound:.4g}")
    if champion is None:
        return Verdict(True, f"promoted: there is no champion yet ({where})", chosen, _registered(chosen, None, mode))
    gain = bound - champion if mode == "max" else champion - bound
    if gain > 0 and gain >= margin:
        return Verdict(True, f"promoted: {where} beats the champion's {champion:.4g} by at least {gain:.4g}",
                       chosen, _registered(chosen, champion, mode))
    return Verdict(False, f"held: {where} does not beat the champion's {champion:.4g} by at least "
                          f"{max(margin, 0):g} with {confidence:.0%} confidence", chosen,
                   _registered(chosen, champion, mode))


def _registered(chosen: ConfirmedConfig, champion: float | None, mode: str) -> SeedResult:
    """The seed nearest the mean test value among those that beat the champion themselves (ties: lower seed)."""
    beats = [s for s in chosen.seeds if champion is None or (s.test > champion if mode == "max" else s.test < champion)]
    mean = chosen.mean("test")
    return min(beats or chosen.seeds, key=lambda s: (abs(s.test - mean), s.seed))


def summary(configs: Sequence[ConfirmedConfig], verdict: Verdict, confidence: float, mode: str,
            sweep_id: str) -> dict[str, Any]:
    """What is recorded on the parent run and shown in the report: every seed's numbers, the bounds, the
    choice, the registered seed and the selection bias of the sweep's best trial."""
    rows = []
    for config in configs:
        lower, upper = config.interval(confidence, mode)
        rows.append({**asdict(config), "val_mean": config.mean("val"), "test_mean": config.mean("test"),
                     "bound": lower if mode == "max" else upper, "selection_bias": config.selection_bias()})
    best = next((c for c in configs if c.rank == 1), None)
    return {"method": METHOD, "confidence": confidence, "mode": mode, "confirmation_sweep": sweep_id,
            "configurations": rows, "chosen_rank": verdict.chosen.rank if verdict.chosen else None,
            "registered_seed": verdict.registered.seed if verdict.promoted and verdict.registered else None,
            "registered_run": verdict.registered.run_id if verdict.promoted and verdict.registered else None,
            "selection_bias": best.selection_bias() if best is not None else None}
