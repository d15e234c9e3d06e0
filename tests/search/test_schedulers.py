"""Trial schedulers built from `search.scheduler`: grace periods and the HyperBand warning."""

from __future__ import annotations

import pytest

from conftest import spec_for
from hpsweep.search.schedulers import build_scheduler, grace_period


@pytest.mark.parametrize(("scheduler", "freeze", "epochs", "expected"), [
    ("asha", {"int": [0, 3]}, 8, 4),   # raised past the most frozen epochs a trial can draw
    ("asha", None, 8, 2),              # nothing frozen: as written
    ("median", 2, 6, 3),
    ("asha", 7, 8, 8),                 # never beyond the last epoch
])
def test_grace_period_covers_the_frozen_epochs(tmp_path, scheduler, freeze, epochs, expected):
    space = {"freeze_epochs": freeze} if freeze is not None else {}
    spec = spec_for(tmp_path, train={"epochs": epochs}, space=space,
                    search={"scheduler": {"name": scheduler, "grace_period": 2 if freeze is None else 1}})
    assert grace_period(spec) == expected
    assert type(build_scheduler(spec)).__name__ in ("AsyncHyperBandScheduler", "MedianStoppingRule")


@pytest.mark.parametrize(("concurrent", "warned"), [(3, True), (9, False), (None, False)])
def test_hyperband_under_a_concurrency_limit_is_warned_about(tmp_path, caplog, concurrent, warned):
    """Ray's HyperBand refills its first bracket once earlier trials end, so below num_trials concurrent
    trials it stops few or none early (seen: 9 trials of 6 epochs, max_concurrent 3, none stopped)."""
    search = {"scheduler": "hyperband", "num_trials": 9, **({"max_concurrent": concurrent} if concurrent else {})}
    build_scheduler(spec_for(tmp_path, search=search))
    assert ("search.max_concurrent 3 below num_trials 9" in caplog.text) is warned
