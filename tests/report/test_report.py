"""The sweep report: written when a sweep ends, again with `hpsweep report`, compared with `hpsweep compare`."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import BASE, HEADLESS, chromium, merged

pytestmark = pytest.mark.slow

SEARCHED = {
    "train": {"epochs": 3, "metric": "val_accuracy", "patience": 2},
    "search": {"algorithm": "random", "num_trials": 6, "max_concurrent": 2, "seed": 3,
               "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}},
    "space": {"replace": {
        "lr": {"loguniform": [1.0e-4, 3.0e-2]},
        "batch_size": {"choice": [32, 64, 128]},
        "dropout": {"uniform": [0.0, 0.5]},
        "optimizer": {"choice": {"adam": {}, "sgd": {"momentum": {"uniform": [0.5, 0.95]}}}},
    }},
}
#: plain SGD learns faster the larger its step here: the best trial takes the top of the lr grid
EDGE = {
    "name": "edge",
    "train": {"epochs": 2, "metric": "val_accuracy"},
    "search": {"algorithm": "grid", "num_trials": 3, "max_concurrent": 2},
    "space": {"replace": {"lr": {"choice": [0.001, 0.01, 0.1]}, "optimizer": "sgd", "batch_size": 64}},
}


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


@pytest.fixture(scope="module")
def sweeps(ray_session, tmp_path_factory, digit_files) -> dict[str, Any]:
    """Two tiny sweeps run by `hpsweep run`, each of which writes its report when it ends."""
    import contextlib
    import io

    from hpsweep.cli import main

    folder = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    found: dict[str, Any] = {"folder": folder, "uri": uri}
    # the edge sweep reads image files by a path relative to its sweep file
    images = {"data": {"replace": {"source": "image_folder",
                                   "path": os.path.relpath(digit_files / "folders", folder)}}}
    table = folder / "diabetes.csv"
    assert main(["data", "export-diabetes", str(table)]) == 0
    regression = {"name": "regression", "trainable": "tabular",
                  "data": {"replace": {"source": "tabular_csv", "path": table.name, "target": "target",
                                       "task": "regression"}},
                  "train": {"epochs": 2, "metric": "val_rmse", "mode": "min"},
                  "search": {"algorithm": "random", "num_trials": 3, "max_concurrent": 2},
                  "space": {"replace": {"lr": {"loguniform": [1.0e-3, 3.0e-2]}, "grad_clip": {"choice": [None]}}}}
    for name, patch in (("searched", {"name": "searched", **SEARCHED}), ("edge", {**EDGE, **images}),
                        ("regression", regression)):
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(merged(BASE, patch)), encoding="utf-8")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["run", str(path), "--tracking-uri", uri, "--storage", str(folder / "results")])
        assert code == 0, out.getvalue()
        found[name] = {"file": path, "out": out.getvalue()}
    return found


def _report_folder(run_output: str) -> Path:
    match = re.search(r"^report: (\S+)", run_output, re.MULTILINE)
    assert match, run_output
    return Path(match.group(1)).parent


def _parent(uri: str, experiment: str) -> Any:
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              filter_string="tags.`hpsweep.sweep_id` != ''")
    return next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)


def _children(uri: str, parent: Any, order_by: list[str] | None = None) -> list[Any]:
    return _client(uri).search_runs([parent.info.experiment_id],
                                    filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                    order_by=order_by, max_results=1000)


def test_a_finished_sweep_writes_its_report_and_logs_it_beside_the_runs(sweeps):
    folder = _report_folder(sweeps["searched"]["out"])
    expected = {"leaderboard.csv", "leaderboard.md", "learning_curves.png", "importances.png",
                "optimization_history.png", "parallel_coordinates.png", "parameters.png", "confusion_matrix.png",
                "best.yaml", "summary.json", "report.html"}
    assert expected <= {p.name for p in folder.iterdir()}
    parent = _parent(sweeps["uri"], "searched")
    logged = {Path(a.path).name for a in _client(sweeps["uri"]).list_artifacts(parent.info.run_id, "report")}
    assert expected <= logged
    assert not list(folder.parent.glob(".report.*"))  # no staging folder left behind


def test_the_leaderboard_ranks_trials_as_mlflow_does(sweeps):
    uri = sweeps["uri"]
    folder = _report_folder(sweeps["searched"]["out"])
    rows = list(csv.DictReader((folder / "leaderboard.csv").open(encoding="utf-8")))
    parent = _parent(uri, "searched")
    ordered = _children(uri, parent, ["metrics.`best_val_accuracy` DESC", "attributes.run_name ASC"])
    counted = [r for r in ordered if r.info.status == "FINISHED"
               and r.data.tags.get("hpsweep.stop_reason") not in ("diverged", "error", "oom")]
    ranked = [row for row in rows if row["rank"] != "-"]
    assert [row["trial"] for row in ranked] == [r.info.run_name for r in counted]
    assert [int(row["rank"]) for row in ranked] == list(range(1, len(counted) + 1))
    for row, run in zip(ranked, counted, strict=True):
        assert float(row["best_val_accuracy"]) == run.data.metrics["best_val_accuracy"]
        assert int(row["epochs"]) == int(run.data.metrics["epochs_run"])
        assert row["stop_reason"] == run.data.tags["hpsweep.stop_reason"]
        assert row["lr"] == run.data.params["lr"]
    assert len(rows) == 6
    markdown = (folder / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0].startswith("| rank | trial | status | stop_reason | best_val_accuracy | epochs | lr")
    assert [line.split("|")[2].strip() for line in markdown[2:]] == [row["trial"] for row in rows]


def test_best_yaml_validates_and_fixes_the_best_trials_values(sweeps, run_cli):
    from hpsweep.search.samplers import first_configs
    from hpsweep.spec import load_spec

    uri = sweeps["uri"]
    folder = _report_folder(sweeps["searched"]["out"])
    best_file = folder / "best.yaml"
    code, out, err = run_cli("validate", str(best_file))
    assert code == 0, out + err
    spec = load_spec(best_file)
    assert spec.num_trials == 1 and spec.search.scheduler.name == "fifo"
    config = first_configs(spec, 1)[0]
    best_run = _client(uri).get_run(_parent(uri, "searched").data.tags["hpsweep.best_run_id"])
    # what `hpsweep train best.yaml` trains with, written as MLflow wrote the best trial's params
    assert {k: str(v) for k, v in config.items()} == best_run.data.params
    assert f"{best_run.info.run_name}, val_accuracy" in best_file.read_text(encoding="utf-8")
    # training it again gives the best trial's result (up to the order of floating-point sums)
    code, out, err = run_cli("train", str(best_file))
    assert code == 0, err
    again = float(re.search(r"completed: best val_accuracy ([0-9.]+)", out).group(1))
    assert again == pytest.approx(best_run.data.metrics["best_val_accuracy"], abs=0.02)


def test_best_yaml_works_wherever_it_is_saved(sweeps, tmp_path, run_cli):
    moved = tmp_path / "elsewhere" / "best.yaml"
    moved.parent.mkdir()
    shutil.copy(_report_folder(sweeps["edge"]["out"]) / "best.yaml", moved)
    raw = yaml.safe_load(moved.read_text(encoding="utf-8"))
    assert Path(raw["data"]["path"]).is_absolute() and Path(raw["data"]["path"]).is_dir()
    assert raw["space"]["lr"] == 0.1 and raw["search"] == {"algorithm": "random", "num_trials": 1}
    code, out, err = run_cli("validate", str(moved))
    assert code == 0, out + err


def test_every_part_of_the_report_holds_the_sweeps_numbers(sweeps):
    uri = sweeps["uri"]
    folder = _report_folder(sweeps["searched"]["out"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    children = _children(uri, _parent(uri, "searched"))
    assert summary["compute"]["trial_epochs"] == sum(int(r.data.metrics["epochs_run"]) for r in children)
    assert summary["compute"]["trials"] == 6 and summary["compute"]["cpu_seconds"] > 0
    reasons: dict[str, int] = {}
    for run in children:
        reasons[run.data.tags["hpsweep.stop_reason"]] = reasons.get(run.data.tags["hpsweep.stop_reason"], 0) + 1
    assert summary["stops"] == reasons
    importances = summary["importances"]
    assert importances and set(importances) <= {"lr", "batch_size", "dropout", "optimizer"}
    assert sum(importances.values()) == pytest.approx(1.0, abs=0.01)
    page = (folder / "report.html").read_text(encoding="utf-8")
    for title in ("Leaderboard", "Learning curves of the top trials", "Parameter importances", "Parallel coordinates",
                  "The metric against each parameter", "Confusion matrix of the best trial", "How trials ended",
                  "Compute used", "best.yaml", "Range warnings", "Optimisation history"):
        assert f"<h2>{title}" in page, title
    assert not re.search(r"""src=["']?(https?:)?//""", page)  # nothing fetched from a network
    assert page.count('src="data:image/png;base64,') == 6
    experiment = children[0].info.experiment_id
    for run in children:  # each trial links to its run in the MLflow UI
        link = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run.info.run_id}"
        assert f'<a href="{link}">{run.info.run_name}</a>' in page
    assert "<th>direction</th>" in page
    assert re.search(r"(larger|smaller) helps|no clear direction|best on average", page)
    assert '<div class="scroll"><table class="sortable">' in page  # the leaderboard scrolls inside its box


def test_report_without_out_rewrites_the_report_where_run_wrote_it(sweeps, run_cli):
    written = _report_folder(sweeps["regression"]["out"])
    (written / "report.html").unlink()
    code, out, err = run_cli("report", "regression", "--tracking-uri", sweeps["uri"], "--no-log",
                             "--storage", str(sweeps["folder"] / "results"))
    assert code == 0, err
    assert f"report: {written / 'report.html'}" in out and (written / "report.html").exists()


def test_the_edge_warning_fires_when_the_best_lr_tops_its_range(sweeps, run_cli, tmp_path):
    folder = _report_folder(sweeps["edge"]["out"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert [(w["param"], w["side"], w["value"]) for w in summary["warnings"]] == [("lr", "high", 0.1)]
    code, out, err = run_cli("report", "edge", "--tracking-uri", sweeps["uri"], "--out", str(tmp_path / "edge"))
    assert code == 0, err
    assert "warning: add a value above 0.1 to space.lr" in out
    assert "add a value above 0.1 to space.lr" in (tmp_path / "edge" / "report.html").read_text(encoding="utf-8")
    # the searched sweep's best lr is wherever it is; only a range the best trial sits at the edge of warns
    searched = json.loads((_report_folder(sweeps["searched"]["out"]) / "summary.json").read_text(encoding="utf-8"))
    best = next(row for row in searched["leaderboard"] if row["rank"] == 1)
    assert all(w["value"] == best["params"][w["param"]] for w in searched["warnings"])


def test_edge_warnings_on_continuous_ranges():
    from hpsweep.report.analysis import edge_warnings
    from hpsweep.report.gather import TrialResult
    from hpsweep.search.space import Dimension
    from hpsweep.spec.params import IntRange, LogUniform, Uniform

    dims = [Dimension("lr", LogUniform(loguniform=(1e-4, 1e-2)), path="space.lr"),
            Dimension("dropout", Uniform(uniform=(0.0, 0.5)), path="space.dropout"),
            Dimension("freeze_epochs", IntRange.model_validate({"int": [0, 10]}), path="space.freeze_epochs")]

    def trial(number: int, best: float, **params: Any) -> TrialResult:
        return TrialResult(number, f"trial-{number:03d}", "r", "FINISHED", "completed", best, 3, 1.0, params)

    top = trial(1, 0.9, lr=0.0092, dropout=0.02, freeze_epochs=5)
    found = edge_warnings([top, trial(2, 0.8, lr=0.001, dropout=0.3, freeze_epochs=5)], dims)
    assert [(w.param, w.side) for w in found] == [("lr", "high"), ("dropout", "low")]
    assert found[0].message.startswith("widen lr.high (space.lr: loguniform [0.0001, 0.01])")
    middle = trial(1, 0.9, lr=0.001, dropout=0.25, freeze_epochs=5)
    assert edge_warnings([middle], dims) == []
    two = [Dimension("warmup", IntRange.model_validate({"int": [0, 1]}), path="space.warmup")]
    assert edge_warnings([trial(1, 0.9, warmup=1)], two) == []  # with two values, each is an edge
    diverged = TrialResult(1, "trial-001", "r", "FINISHED", "diverged", 0.99, 1, 1.0, {"lr": 0.0099})
    assert edge_warnings([diverged], dims) == []  # a diverged trial is never the best


def test_the_report_html_renders_with_every_image_in_headless_chromium(sweeps, tmp_path):
    browser = chromium()
    page = (_report_folder(sweeps["searched"]["out"]) / "report.html").read_text(encoding="utf-8")
    probe = ("<script>window.addEventListener('load', () => { const images = [...document.images];"
             " document.title = 'images ' + images.length + ' loaded ' +"
             " images.filter(i => i.complete && i.naturalWidth > 0).length; });</script></body>")
    copy = tmp_path / "report.html"
    copy.write_text(page.replace("</body>", probe), encoding="utf-8")
    done = subprocess.run([browser, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                           "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r"<title>images (\d+) loaded (\d+)</title>", done.stdout)
    assert match, done.stdout[:2000]
    assert match.group(1) == match.group(2) == "6"


def test_a_click_on_a_leaderboard_header_sorts_the_trials_by_it_in_headless_chromium(sweeps, tmp_path):
    """The page sorts its leaderboard without a network: a click on `lr` orders the trials by it, a second
    click reverses them; read back from the DOM Chromium rendered."""
    folder = _report_folder(sweeps["searched"]["out"])
    page = (folder / "report.html").read_text(encoding="utf-8")
    probe = ("<script>window.addEventListener('load', () => { const table = document.querySelector('table.sortable');"
             " const th = [...table.querySelectorAll('th')].find(h => h.textContent === 'lr');"
             " const order = () => [...table.tBodies[0].rows].map(r => r.cells[1].textContent).join(',');"
             " th.click(); const up = order(); th.click();"
             " document.title = 'up ' + up + ' down ' + order(); });</script></body>")
    copy = tmp_path / "report.html"
    copy.write_text(page.replace("</body>", probe), encoding="utf-8")
    done = subprocess.run([chromium(), *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r"<title>up (\S+) down (\S+)</title>", done.stdout)
    assert match, done.stdout[:2000]
    with (folder / "leaderboard.csv").open(encoding="utf-8") as handle:
        lrs = {row["trial"]: float(row["lr"]) for row in csv.DictReader(handle)}
    by_lr = sorted(lrs, key=lrs.get)
    assert match.group(1).split(",") == by_lr and match.group(2).split(",") == by_lr[::-1]


def test_compare_puts_the_two_best_trials_side_by_side_with_their_space_differences(sweeps, run_cli):
    uri = sweeps["uri"]
    code, out, err = run_cli("compare", "searched", "edge", "--tracking-uri", uri)
    assert code == 0, err
    assert "Downloading artifacts" not in err  # the terminal belongs to the CLI: no MLflow progress bars
    parents = {name: _parent(uri, name) for name in ("searched", "edge")}
    best_line = next(line for line in out.splitlines() if line.startswith("best val_accuracy"))
    values = [f"{p.data.metrics['best_val_accuracy']:.4g}" for p in parents.values()]
    assert best_line.split()[2:] == values
    assert "search space differs:" in out
    assert "  lr: A loguniform [0.0001, 0.03]  |  B choice 0.001, 0.01, 0.1" in out
    assert "  dropout: A uniform [0, 0.5]  |  B default" in out
    assert "  search.algorithm: A random  |  B grid" in out
    code, out, err = run_cli("compare", "searched", "no-such-sweep", "--tracking-uri", uri)
    assert code == 2 and "no sweep named 'no-such-sweep'" in err and out == ""


def test_report_of_an_unknown_sweep_is_a_one_line_error_and_writes_nothing(sweeps, run_cli, tmp_path):
    code, out, err = run_cli("report", "no-such-sweep", "--tracking-uri", sweeps["uri"],
                             "--out", str(tmp_path / "r"))
    assert out == ""
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no-such-sweep" in err
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == []


def test_a_regression_sweep_ranks_the_lowest_error_first_and_has_no_confusion_matrix(sweeps):
    uri = sweeps["uri"]
    folder = _report_folder(sweeps["regression"]["out"])
    rows = list(csv.DictReader((folder / "leaderboard.csv").open(encoding="utf-8")))
    errors = [float(row["best_val_rmse"]) for row in rows if row["rank"] != "-"]
    assert errors == sorted(errors) and len(errors) == 3
    assert not (folder / "confusion_matrix.png").exists()
    parent = _parent(uri, "regression")
    # the best trial's params, null included, were read back with their types: its model was logged
    assert "hpsweep.best_model_uri" in parent.data.tags
    assert float(rows[0]["best_val_rmse"]) == parent.data.metrics["best_val_rmse"]
