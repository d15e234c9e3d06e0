"""The confirmation's gate on its own: the chosen configuration, the confidence bound against the
champion, and which seed's model would be registered."""

from __future__ import annotations

import math
import statistics

from hpsweep.registry.confirmation import ConfirmedConfig, SeedResult, judge


def _config(rank: int, original: float, vals: list[float], tests: list[float]) -> ConfirmedConfig:
    pairs = enumerate(zip(vals, tests, strict=True), 1)
    seeds = [SeedResult(seed, f"run-{rank}-{seed}", val, test) for seed, (val, test) in pairs]
    return ConfirmedConfig(rank, f"orig-{rank}", original, {"lr": str(rank)}, seeds)


def test_a_mean_above_the_champion_is_not_enough_when_the_seeds_disagree():
    spread = _config(1, 0.95, [0.90, 0.90, 0.90], [0.80, 0.97, 0.93])  # mean 0.9 > 0.88, seeds far apart
    tight = _config(1, 0.95, [0.90, 0.90, 0.90], [0.895, 0.905, 0.90])  # the same mean, seeds close
    assert statistics.fmean(s.test for s in spread.seeds) > 0.88
    assert not judge([spread], 0.88, "accuracy", "max", 0.0, 0.95).promoted
    assert judge([tight], 0.88, "accuracy", "max", 0.0, 0.95).promoted
    assert not judge([tight], 0.88, "accuracy", "max", 0.05, 0.95).promoted  # the margin is on the bound


def test_more_confidence_asks_for_more():
    config = _config(1, 0.95, [0.9] * 3, [0.89, 0.91, 0.90])
    bounds = [config.interval(c, "max")[0] for c in (0.5, 0.8, 0.95, 0.99)]
    assert math.isclose(bounds[0], 0.90) and bounds == sorted(bounds, reverse=True)
    low = config.interval(0.99, "max")[0]
    assert judge([config], low - 0.001, "accuracy", "max", 0.0, 0.95).promoted
    assert not judge([config], low - 0.001, "accuracy", "max", 0.0, 0.999).promoted


def test_the_configuration_goes_forward_by_its_seeds_validation_not_its_original_value_or_test():
    lucky = _config(1, 0.99, [0.85, 0.86], [0.97, 0.97])  # best originally and on test, worst re-trained
    steady = _config(2, 0.90, [0.91, 0.92], [0.93, 0.94])
    verdict = judge([lucky, steady], None, "accuracy", "max", 0.0, 0.95)
    assert verdict.promoted and verdict.chosen is steady
    assert math.isclose(lucky.selection_bias(), 0.99 - 0.855)


def test_minimised_metrics_gate_on_the_upper_bound():
    config = _config(1, 0.10, [0.2, 0.2, 0.2], [0.30, 0.31, 0.29])
    upper = config.interval(0.95, "min")[1]
    assert upper > 0.30
    assert judge([config], upper + 0.01, "loss", "min", 0.0, 0.95).promoted
    assert not judge([config], upper - 0.01, "loss", "min", 0.0, 0.95).promoted


def test_the_registered_seed_is_typical_and_beats_the_champion_itself():
    config = _config(1, 0.9, [0.9] * 4, [0.99, 0.95, 0.94, 0.96])  # mean 0.96
    assert judge([config], None, "accuracy", "max", 0.0, 0.5).registered.seed == 4  # 0.96: the mean itself
    config = _config(1, 0.9, [0.9] * 3, [0.935, 0.95, 0.965])  # mean 0.95
    verdict = judge([config], 0.90, "accuracy", "max", 0.0, 0.5)
    assert verdict.registered.seed == 2
    config = _config(1, 0.9, [0.9] * 3, [0.945, 0.93, 0.975])  # mean 0.95, nearest it seed 1
    verdict = judge([config], 0.946, "accuracy", "max", 0.0, 0.5)  # seed 1 alone does not beat 0.946
    assert verdict.promoted and verdict.registered.seed == 3


def test_a_configuration_with_a_failed_seed_never_goes_forward():
    broken = _config(1, 0.99, [0.99, math.nan], [0.99, math.nan])
    fine = _config(2, 0.90, [0.90, 0.91], [0.90, 0.91])
    assert judge([broken, fine], None, "accuracy", "max", 0.0, 0.95).chosen is fine
    verdict = judge([broken], None, "accuracy", "max", 0.0, 0.95)
    assert not verdict.promoted and "no configuration" in verdict.reason
