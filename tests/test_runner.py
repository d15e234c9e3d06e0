"""Runner pieces that need no Ray cluster: scheduler settings and --set overrides."""

from __future__ import annotations

import pytest

from conftest import spec_for
from hpsweep.cli import _apply_sets
from hpsweep.runner import build_scheduler


def test_asha_waits_out_the_frozen_epochs(tmp_path):
    spec = spec_for(tmp_path, train={"epochs": 8}, space={"freeze_epochs": {"int": [0, 3]}},
                    search={"scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}})
    scheduler = build_scheduler(spec)
    assert scheduler._grace_period == 4 and scheduler._max_t == 8
    unfrozen = spec_for(tmp_path, train={"epochs": 8}, search={"scheduler": {"name": "asha", "grace_period": 2}})
    assert build_scheduler(unfrozen)._grace_period == 2


def test_median_rule_waits_out_the_frozen_epochs(tmp_path):
    spec = spec_for(tmp_path, train={"epochs": 6}, space={"freeze_epochs": 2},
                    search={"scheduler": {"name": "median", "grace_period": 1}})
    assert build_scheduler(spec)._grace_period == 3


def test_set_changes_the_file_or_fixes_a_hyperparameter():
    raw = {"name": "x", "train": {"epochs": 5}, "space": {"lr": {"loguniform": [0.001, 0.1]}}}
    out = _apply_sets(raw, ["train.epochs=2", "lr=0.01", "params.depth=3"], trials=4, concurrency=1)
    assert out["train"]["epochs"] == 2 and out["space"]["lr"] == 0.01 and out["space"]["params"] == {"depth": 3}
    assert out["search"] == {"num_trials": 4, "max_concurrent": 1}
    assert raw["train"]["epochs"] == 5  # the file's data is not changed in place
    with pytest.raises(ValueError, match="key=value"):
        _apply_sets(raw, ["lr"], None, None)
