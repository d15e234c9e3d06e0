"""Runner pieces that need no Ray cluster: scheduler settings and --set overrides."""

from __future__ import annotations

import pytest

from conftest import spec_for
from hpsweep.cli import _apply_sets
from hpsweep.sweep.driver import build_scheduler, grace_period


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


def test_set_changes_the_file_or_fixes_a_hyperparameter():
    raw = {"name": "x", "train": {"epochs": 5}, "space": {"lr": {"loguniform": [0.001, 0.1]}}}
    out = _apply_sets(raw, ["train.epochs=2", "lr=1e-3", "params.depth=3"], trials=4, concurrency=1)
    assert out["train"]["epochs"] == 2 and out["space"]["lr"] == 0.001 and out["space"]["params"] == {"depth": 3}
    assert out["search"] == {"num_trials": 4, "max_concurrent": 1}
    assert raw["train"]["epochs"] == 5  # the file's data is not changed in place
    with pytest.raises(ValueError, match="key=value"):
        _apply_sets(raw, ["lr"], None, None)


@pytest.mark.parametrize(("concurrent", "warned"), [(3, True), (9, False), (None, False)])
def test_hyperband_under_a_concurrency_limit_is_warned_about(tmp_path, caplog, concurrent, warned):
    """Ray's HyperBand refills its first bracket once earlier trials end, so below num_trials concurrent
    trials it stops few or none early (seen: 9 trials of 6 epochs, max_concurrent 3, none stopped)."""
    search = {"scheduler": "hyperband", "num_trials": 9, **({"max_concurrent": concurrent} if concurrent else {})}
    build_scheduler(spec_for(tmp_path, search=search))
    assert ("search.max_concurrent 3 below num_trials 9" in caplog.text) is warned
