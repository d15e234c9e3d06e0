"""search.warm_start: a sweep borrows the finished trials of earlier sweeps that fit its space, runs the
best of them again first, and says what it borrowed and skipped; incompatible sweeps lend nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import spec_for

pytestmark = pytest.mark.slow


def _steady(folder: Path, name: str, high: float, trials: int, warm: object = None, **data: object) -> Path:
    """`steady` trials: val_accuracy = x * epoch / epochs, so the best x is the highest."""
    sweep = folder / f"{name}.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": name, "trainable": "steady", "data": {"source": "sklearn_digits", **data},
        "train": {"epochs": 2, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": trials, "max_concurrent": 2, "seed": len(name),
                   **({"warm_start": warm} if warm is not None else {})},
        "space": {"params": {"x": {"uniform": [0.1, high]}, "sleep": 0.0}}}))
    return sweep


def _run(run_cli, folder: Path, sweep: Path) -> str:
    code, out, err = run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                             "--storage", str(folder / "results"))
    assert code == 0, out + err
    return out


def _trials(folder: Path, experiment: str) -> tuple[dict, dict[str, float]]:
    """The sweep's warm_start.json (or {}) and each trial's x, by trial name."""
    from mlflow import MlflowClient

    from hpsweep.track.queries import read_artifact_text

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    listed = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    warm = json.loads(read_artifact_text(client, parent.info.run_id, "sweep/warm_start.json")) \
        if "sweep/warm_start.json" in listed else {}
    xs = {r.info.run_name: float(r.data.params["x"]) for r in runs if "mlflow.parentRunId" in r.data.tags}
    return warm, xs


def test_a_sweep_borrows_the_trials_that_fit_its_space_and_reruns_the_best_first(ray_session, tmp_path, run_cli):
    _run(run_cli, tmp_path, _steady(tmp_path, "wide", high=1.0, trials=6))
    _, wide = _trials(tmp_path, "wide")
    out = _run(run_cli, tmp_path, _steady(tmp_path, "narrow", high=0.8, trials=5, warm=["wide"]))
    warm, narrow = _trials(tmp_path, "narrow")
    fits = {name for name, x in wide.items() if x <= 0.8}
    assert fits and len(fits) < len(wide)  # seed 4 draws some of each
    assert {source.split("/")[1] for source in warm["borrowed"]} == fits
    assert sorted(s.split(": ")[0].split("/")[1] for s in warm["skipped"]) == sorted(set(wide) - fits)
    assert all("is outside this sweep's uniform [0.1, 0.8]" in s for s in warm["skipped"])
    best = max(wide[name] for name in fits)
    assert warm["rerun"] == [{"x": best}]
    first = [narrow["trial-001"], narrow["trial-002"]]  # the first two start together
    assert best in first and sorted(narrow.values()).count(best) == 1, narrow  # run again first, once
    assert f"warm start: {len(fits)} trials from wide-" in out and "the best 1 run again first" in out


def test_sweeps_of_other_data_or_another_metric_lend_nothing(ray_session, tmp_path, run_cli):
    _run(run_cli, tmp_path, _steady(tmp_path, "first", high=1.0, trials=2))
    out = _run(run_cli, tmp_path, _steady(tmp_path, "other", high=1.0, trials=2, warm="auto",
                                          split={"train": 0.6, "val": 0.2, "test": 0.2}))
    warm, _ = _trials(tmp_path, "other")
    assert warm["borrowed"] == [] and warm["sweeps"] == []
    assert len(warm["skipped"]) == 1 and "different data" in warm["skipped"][0], warm
    assert "warm start: 0 trials from no sweep; skipped 1: sweep first-" in out


@pytest.mark.parametrize(("config", "why"), [
    ({"lr": 0.5}, "lr=0.5 is outside this sweep's loguniform [0.0001, 0.1]"),
    ({"lr": 0.01, "optimizer": "adamw"}, "optimizer=adamw is outside this sweep's choice"),
    ({"lr": 0.01, "optimizer": "sgd", "optimizer.sgd.momentum": 0.9, "optimizer.sgd.nesterov": False},
     "optimizer.sgd.nesterov=False, where this sweep fixes True"),
    ({"lr": 0.01, "optimizer": "adam", "dropout": 0.2}, "dropout is not in this sweep's space"),
    ({"optimizer": "adam"}, "it has no lr, which this sweep searches"),
    ({"lr": 0.01, "optimizer": "sgd", "optimizer.sgd.nesterov": True}, "it has no optimizer.sgd.momentum"),
    ({"lr": 0.01, "optimizer": "sgd", "optimizer.sgd.momentum": 0.9}, "it ran without optimizer.sgd.nesterov"),
])
def test_a_trial_that_does_not_fit_the_new_space_is_skipped_with_the_reason(tmp_path, config, why):
    from hpsweep.search.space import SearchSpace
    from hpsweep.track.warm import fitted

    spec = spec_for(tmp_path, space={"lr": {"loguniform": [1.0e-4, 0.1]}, "optimizer": {"choice": {
        "adam": {}, "sgd": {"momentum": {"uniform": [0.5, 0.99]}, "nesterov": True}}}})
    params, reason = fitted(config, SearchSpace.of(spec))
    assert params is None and reason.startswith(why)


@pytest.mark.parametrize(("config", "fits"), [
    ({"lr": 0.01}, False),  # ran without dropout, at the default 0.0: this sweep fixes 0.3
    ({"lr": 0.01, "dropout": 0.3}, True),
])
def test_a_value_this_sweep_fixes_must_be_the_one_the_trial_ran_with(tmp_path, config, fits):
    from hpsweep.search.space import SearchSpace
    from hpsweep.track.warm import fitted

    spec = spec_for(tmp_path, space={"lr": {"loguniform": [1.0e-4, 0.1]}, "dropout": 0.3, "batch_size": 64})
    params, reason = fitted({**config, "batch_size": 64}, SearchSpace.of(spec))  # 64: as logged, or the default
    assert (params is not None) == fits and (fits or reason == "it ran without dropout, which this sweep fixes at 0.3")
    assert fitted({**config, "dropout": 0.3}, SearchSpace.of(spec))[0] is not None  # batch_size 64 is the default


def test_an_sgd_trial_with_its_own_lr_fits_and_its_unused_top_level_draw_is_not_held_against_it(tmp_path):
    from hpsweep.search.space import SearchSpace
    from hpsweep.track.warm import fitted

    spec = spec_for(tmp_path, space={"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "optimizer": {"choice": {
        "adam": {}, "sgd": {"lr": {"loguniform": [1.0e-2, 0.5]}}}}})
    # logged as it trained: lr shows the SGD option's own 0.2, outside the top-level range
    params, reason = fitted({"lr": 0.2, "optimizer": "sgd", "optimizer.sgd.lr": 0.2}, SearchSpace.of(spec))
    assert reason == "" and params["optimizer.sgd.lr"] == 0.2 and 1.0e-4 <= params["lr"] <= 1.0e-2


def test_auto_borrows_from_the_five_newest_sweeps_that_may_lend(ray_session, tmp_path, run_cli):
    """A newer sweep of other data does not crowd out older ones that fit: it is skipped, with why."""
    for n in range(1, 7):
        _run(run_cli, tmp_path, _steady(tmp_path, f"lender{n}", high=1.0, trials=1))
    _run(run_cli, tmp_path, _steady(tmp_path, "otherdata", high=1.0, trials=1,
                                    split={"train": 0.6, "val": 0.2, "test": 0.2}))
    _run(run_cli, tmp_path, _steady(tmp_path, "auto", high=1.0, trials=2, warm="auto"))
    warm, _ = _trials(tmp_path, "auto")
    assert [s.split("-2")[0] for s in warm["sweeps"]] == ["lender6", "lender5", "lender4", "lender3", "lender2"]
    assert len(warm["borrowed"]) == 5 and len(warm["skipped"]) == 1
    assert warm["skipped"][0].startswith("sweep otherdata-") and "different data" in warm["skipped"][0]
