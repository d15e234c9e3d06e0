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
