"""Parameter importances that scale: fANOVA for small sweeps, PED-ANOVA for large ones, named in the report."""

from __future__ import annotations

import math
import random

import pytest

from conftest import spec_for
from hpsweep.report.analysis import FANOVA_MAX_TRIALS, importance_method, importances
from hpsweep.report.gather import TrialResult
from hpsweep.search.space import SearchSpace


def _trials(count: int, mode: str) -> list[TrialResult]:
    """The metric follows lr (best at lr = 0.01) and ignores batch_size."""
    rng = random.Random(0)
    out = []
    for n in range(1, count + 1):
        lr, batch = 10 ** rng.uniform(-4, -1), rng.choice([32, 64, 128])
        score = 1.0 - abs(math.log10(lr) + 2) / 3 + rng.gauss(0, 0.01)
        best = score if mode == "max" else 1.0 - score
        out.append(TrialResult(n, f"trial-{n:03d}", f"r{n}", "FINISHED", "completed", best, 3, 1.0,
                               {"lr": lr, "batch_size": batch}))
    return out


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("count", [40, FANOVA_MAX_TRIALS + 300])
def test_the_parameter_that_decides_the_metric_comes_first(tmp_path, count, mode):
    spec = spec_for(tmp_path, space={"lr": {"loguniform": [1.0e-4, 1.0e-1]}, "batch_size": {"choice": [32, 64, 128]}})
    found, note = importances(_trials(count, mode), SearchSpace.of(spec), mode)
    assert note == "" and next(iter(found)) == "lr" and found["lr"] > found["batch_size"]
    assert importance_method(count) == ("fANOVA" if count <= FANOVA_MAX_TRIALS else "PED-ANOVA")


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_direction_says_which_way_a_parameter_helps(tmp_path, mode):
    """Larger dropout helps (the metric rises with it, or the loss falls); sgd does best on average;
    batch_size is noise. The history plot is Optuna's, drawn from the same trials."""
    from hpsweep.report.extras import directions, history_figure

    rng = random.Random(1)
    trials = []
    for n in range(1, 41):
        dropout, optimizer, batch = rng.uniform(0, 0.5), rng.choice(["adam", "sgd"]), (32, 64)[n % 2]
        score = dropout + (0.2 if optimizer == "sgd" else 0.0) + rng.gauss(0, 0.01)
        trials.append(TrialResult(n, f"trial-{n:03d}", f"r{n}", "FINISHED", "completed",
                                  score if mode == "max" else -score, 3, 1.0,
                                  {"dropout": dropout, "optimizer": optimizer, "batch_size": batch}))
    spec = spec_for(tmp_path, space={"dropout": {"uniform": [0.0, 0.5]}, "optimizer": {"choice": ["adam", "sgd"]},
                                     "batch_size": {"choice": [32, 64]}})
    found = directions(trials, SearchSpace.of(spec).dimensions(), mode)
    assert found["dropout"].startswith("larger helps") and found["optimizer"] == "best on average: sgd"
    assert found["batch_size"] in ("no clear direction", "best on average: 32", "best on average: 64")
    figure = history_figure(trials, "val_accuracy", mode)
    assert figure is not None and len(figure.axes[0].lines) >= 1  # the best-so-far line
