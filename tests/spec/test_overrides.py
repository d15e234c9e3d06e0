"""`--set KEY=VALUE`: one grammar for run, resume, submit, train and space."""

from __future__ import annotations

import pytest

from hpsweep.spec.overrides import OverrideError, apply_sets

RAW = {"name": "x", "train": {"epochs": 5}, "search": {"scheduler": "asha"},
       "space": {"lr": {"loguniform": [0.001, 0.1]}, "params": {"depth": 2},
                 "optimizer": {"choice": ["adam", "sgd"]}, "scheduler": {"name": "step", "step_size": 2}}}


def test_paths_knobs_params_and_branches_land_where_the_sweep_file_keeps_them():
    out = apply_sets(RAW, ["train.epochs=2", "lr=1e-3", "depth=3", "params.width=8",
                           "search.scheduler.grace_period=2", "optimizer.sgd.momentum=0.9",
                           "scheduler.step.gamma=0.5", "model=cnn"])
    assert out["train"]["epochs"] == 2 and out["space"]["lr"] == 0.001
    assert out["space"]["params"] == {"depth": 3, "width": 8}
    assert out["search"]["scheduler"] == {"name": "asha", "grace_period": 2}  # the shorthand became a mapping
    assert out["space"]["optimizer"] == {"choice": {"adam": {}, "sgd": {"momentum": 0.9}}}
    assert out["space"]["scheduler"] == {"name": "step", "step_size": 2, "gamma": 0.5}
    assert out["model"] == {"name": "cnn"}
    assert RAW["train"]["epochs"] == 5 and RAW["space"]["optimizer"] == {"choice": ["adam", "sgd"]}  # a copy


def test_a_branch_can_be_fixed_then_given_parameters():
    out = apply_sets(RAW, ["optimizer=sgd", "optimizer.sgd.nesterov=true", "optimizer.sgd.momentum=0.9"])
    assert out["space"]["optimizer"] == {"name": "sgd", "nesterov": True, "momentum": 0.9}
    default = apply_sets({"name": "x"}, ["optimizer.adam.beta1=0.8"])  # adam is the default optimizer
    assert default["space"]["optimizer"] == {"name": "adam", "beta1": 0.8}


@pytest.mark.parametrize(("item", "message"), [
    ("lr", "--set takes KEY=VALUE (got 'lr')"),
    ("=3", "--set takes KEY=VALUE (got '=3')"),
    ("train..epochs=3", "--set takes KEY=VALUE"),
    ("lr=[unclosed", "--set lr: '[unclosed' is not a YAML value"),
    ("lr=!!python/object:os.system x", "--set lr: '!!python/object:os.system x' is not a YAML value"),
    ("momentum=0.9", "--set momentum: not a sweep-file section"),
    ("optimizer.rmsprop.alpha=0.9", "--set optimizer.rmsprop.alpha: the sweep chooses its optimizer among adam, sgd"),
    ("scheduler.cosine.min_lr_factor=0.1", "--set scheduler.cosine.min_lr_factor: the sweep's scheduler is step"),
    ("optimizer.sgd=0.9", "--set optimizer.sgd: a optimizer parameter is optimizer.<optimizer>.<parameter>"),
    ("train.epochs.x=1", "--set train.epochs.x: train.epochs is 5 in the sweep file, not a mapping"),
])
def test_bad_sets_name_the_key_in_one_line(item, message):
    with pytest.raises(OverrideError) as caught:
        apply_sets(RAW, [item])
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_space_shows_the_space_with_sets_applied(sweep_file, run_cli):
    file = sweep_file({"space": {"optimizer": {"choice": ["adam", "sgd"]}}})
    code, out, _ = run_cli("space", str(file), "--set", "optimizer=sgd", "--set", "lr=0.01",
                           "--set", "batch_size={choice: [16, 32]}")
    assert code == 0
    searched = out.split("searched:")[1].split("fixed:")[0]
    assert "batch_size" in searched and "optimizer" not in searched and "lr" not in searched
    assert "  lr " in out.split("fixed:")[1] and "optimizer                          sgd" in out
    code, _, err = run_cli("space", str(file), "--set", "lr=[unclosed")
    assert code == 2 and err.startswith("hpsweep: --set lr: '[unclosed' is not a YAML value")
