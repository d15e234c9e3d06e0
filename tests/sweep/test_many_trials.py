"""A sweep of more trials than MLflow's old 50-run page, tried as a user would: every verb finds it by name."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.slow
TRIALS = 300  # a few hundred: past MLflow's old page of 50 runs, and past fANOVA's 200 (PED-ANOVA then)


@pytest.fixture(scope="module")
def big_sweep(ray_session, tmp_path_factory):
    from hpsweep.cli import main

    folder = tmp_path_factory.mktemp("many")
    sweep = folder / "many.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "many", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "model": {"name": "mlp", "hidden_sizes": [16]}, "train": {"epochs": 1, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": TRIALS},
        "space": {"lr": {"loguniform": [1.0e-3, 3.0e-2]}, "batch_size": {"choice": [64, 128]}}}))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    assert main(["run", str(sweep), "--tracking-uri", uri, "--storage", str(folder / "results")]) == 0
    return folder, sweep, uri


def test_status_lists_every_trial_of_a_large_sweep_by_name(big_sweep, run_cli):
    _, _, uri = big_sweep
    code, out, err = run_cli("status", "many", "--tracking-uri", uri)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line[2:].startswith("trial-")]
    assert len(rows) == TRIALS and len({row.split()[0] for row in rows if not row.startswith("*")}) == TRIALS - 1
    assert rows[0].startswith("* trial-") and not any(row.startswith("*") for row in rows[1:])  # the best, marked
    values = [float(row[42:60]) for row in rows]  # best first
    assert values == sorted(values, reverse=True) and all(len(line) <= 100 for line in out.splitlines())


def test_report_compare_and_promote_find_a_large_sweep_by_name(big_sweep, run_cli, tmp_path):
    _, sweep, uri = big_sweep
    code, out, err = run_cli("report", "many", "--tracking-uri", uri, "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert out.startswith("sweep many-") and f": {TRIALS} trials, best trial-" in out
    assert "importance (PED-ANOVA): " in out  # above 200 trials fANOVA would take minutes
    csv_rows = (tmp_path / "report" / "leaderboard.csv").read_text().splitlines()
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert len(csv_rows) == TRIALS + 1  # every trial, for scripts
    assert markdown.count("| trial-") == 50 and f"The other {TRIALS - 50} trials are in leaderboard.csv" in markdown
    assert f"The other {TRIALS - 50} trials are in leaderboard.csv" in (tmp_path / "report" / "report.html").read_text()
    code, out, err = run_cli("compare", "many", str(sweep), "--tracking-uri", uri)
    assert code == 0 and "the two sweeps search the same space with the same settings" in out, err
    code, out, err = run_cli("promote", "many", "--tracking-uri", uri)
    assert code == 0, err
    assert "promoted: there is no champion yet; many@champion is now version 1" in out
