"""`hpsweep run` end to end on Ray Tune and MLflow (SQLite), with tiny trials."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import HEADLESS, SWEEPS, chromium, free_port, text_sweep, wait_until_up

pytestmark = pytest.mark.slow


def _client(folder: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def _runs(folder: Path, experiment: str):
    client = _client(folder)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def _run(run_cli, folder: Path, sweep: Path, *extra: str):
    return run_cli("run", str(sweep), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--storage", str(folder / "results"), *extra)


@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory):
    """The shipped smoke sweep: 6 trials, 4 at a time on 2 CPUs, ASHA, one SQLite store."""
    import contextlib
    import io
    import os

    import mlflow
    from mlflow.tracking import fluent

    from hpsweep.cli import main

    folder = tmp_path_factory.mktemp("smoke")
    # the caller already works in an experiment of its own, as in a notebook: the sweep must not mind
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'notebook.db'}")
    mlflow.set_experiment("scratch")  # so the notebook's experiment ID differs from the sweep's
    notebook = mlflow.set_experiment("notebook").experiment_id
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", str(SWEEPS / "smoke.yaml"), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                         "--storage", str(folder / "results")])
    finally:
        os.chdir(cwd)
    assert fluent._active_experiment_id == notebook  # and it is left as it was
    return folder, code, out.getvalue(), err.getvalue()


def test_one_parent_and_a_nested_finished_run_per_trial(smoke):
    folder, code, out, err = smoke
    assert code == 0, err
    client, parents, children = _runs(folder, "smoke")
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["hpsweep.sweep_id"].startswith("smoke-")
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["hpsweep.trial_id"]
        assert child.info.status == "FINISHED"
        assert {"lr", "batch_size", "optimizer"} <= set(child.data.params)
        if child.data.params["optimizer"] == "sgd":
            assert "optimizer.sgd.momentum" in child.data.params
        else:
            assert not any(k.startswith("optimizer.sgd.") for k in child.data.params)
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"checkpoint", "confusion_matrix.json"} <= artifacts
        figures = {"learning_curve.png", "confusion_matrix.png"}
        if child.info.run_id == parent.data.tags["hpsweep.best_run_id"]:
            assert figures <= artifacts  # drawn for the best trial only
        else:
            assert not figures & artifacts
    sweep_files = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert sweep_files == {"sweep/sweep.yaml", "sweep/effective.yaml", "sweep/resolved.json", "sweep/versions.json"}
    assert "MLflow: experiment 'smoke'" in out and "mlflow ui --backend-store-uri" in out


def test_the_printed_link_opens_the_sweeps_runs_in_the_mlflow_ui(smoke, tmp_path):
    """MLflow 3's UI opens an experiment on a GenAI overview of traces; the link `run` prints leads to the
    runs table in the model-training view, seen in a real browser against `mlflow ui`."""
    from mlflow import MlflowClient

    folder, code, out, _ = smoke
    assert code == 0
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    experiment = MlflowClient(uri).get_experiment_by_name("smoke")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    page = (f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
            "&orderByKey=metrics.%60best_val_accuracy%60&orderByAsc=false")
    assert f"MLflow UI: {page}" in out and f"see it: mlflow ui --backend-store-uri {uri}, then open {page}" in out
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", uri,
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        shown = subprocess.run([chromium(), *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}",
                                "--virtual-time-budget=30000", "--window-size=1400,900", "--dump-dom",
                                page.replace(":5000/", f":{port}/")], capture_output=True, text=True, timeout=180)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    parent = next(line.split()[2] for line in out.splitlines() if line.startswith("starting sweep"))
    assert parent.rstrip(":") in shown.stdout and "matching runs" in shown.stdout, shown.stdout[-3000:]
    # sorted best first, so the chart view's first ten runs are the best trials
    assert "Sort: best_val_accuracy" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", shown.stdout))
    listed = re.findall(r">(trial-\d{3})<", shown.stdout)
    _, _, children = _runs(folder, "smoke")
    value = {c.data.tags["mlflow.runName"]: c.data.metrics["best_val_accuracy"] for c in children}
    assert listed and value[listed[0]] == max(value.values()), listed


def test_every_reported_epoch_reaches_mlflow_once(smoke):
    """Four concurrent trials against one SQLite file: every result Ray recorded is in MLflow, once."""
    folder, *_ = smoke
    client, _, children = _runs(folder, "smoke")
    results = {p.parent.name: [json.loads(line) for line in p.read_text().splitlines()]
               for p in (folder / "results").glob("*/*/result.json")}
    assert len(results) == 6
    for child in children:
        trial_id = child.data.tags["hpsweep.trial_id"]
        (lines,) = [v for k, v in results.items() if trial_id in k]
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, len(lines) + 1))
        assert [m.value for m in history] == pytest.approx([r["val_accuracy"] for r in lines])
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlap >= 2  # trials really ran side by side


def test_asha_stops_weak_trials_early_and_lets_the_best_run_to_the_end(ray_session, tmp_path, run_cli):
    """One trial at a time with seeded draws, so which trials ASHA stops does not depend on timing (the
    smoke sweep's four concurrent trials once reached each rung in an order that stopped none)."""
    sweep = tmp_path / "asha.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "asha", "trainable": "steady", "data": {"source": "sklearn_digits"},
        "train": {"epochs": 4, "metric": "val_accuracy"},  # steady: val_accuracy = x * epoch / 4
        "search": {"algorithm": "random", "num_trials": 6, "max_concurrent": 1, "seed": 5,
                   "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}},
        "space": {"params": {"x": {"uniform": [0.1, 1.0]}, "sleep": 0.0}}}))
    code, _, err = _run(run_cli, tmp_path, sweep)
    assert code == 0, err
    _, _, children = _runs(tmp_path, "asha")
    assert len(children) == 6
    order = sorted(children, key=lambda c: c.data.tags["mlflow.runName"])
    xs = [float(c.data.params["x"]) for c in order]
    stopped = [n for n, c in enumerate(order) if c.data.tags["hpsweep.stop_reason"] == "scheduler"]
    assert stopped, xs
    for n in stopped:
        assert order[n].info.status == "FINISHED" and order[n].data.metrics["epochs_run"] < 4
        assert xs[n] < max(xs[:n]), xs  # weaker than a trial before it at the same epoch
    best = order[xs.index(max(xs))]
    assert best.data.tags["hpsweep.stop_reason"] == "completed" and best.data.metrics["epochs_run"] == 4


def test_the_best_trials_duration_is_its_training_not_the_model_logging_at_the_end(smoke):
    folder, *_ = smoke
    client, parents, children = _runs(folder, "smoke")
    best = next(c for c in children if c.info.run_id == parents[0].data.tags["hpsweep.best_run_id"])
    last_epoch = max(m.timestamp for m in client.get_metric_history(best.info.run_id, "val_accuracy"))
    assert best.info.status == "FINISHED" and 0 <= best.info.end_time - last_epoch < 2000


def test_the_best_model_is_logged_and_predicts_raw_digits(smoke):
    import mlflow
    from sklearn.datasets import load_digits

    folder, *_ = smoke
    _, parents, children = _runs(folder, "smoke")
    parent = parents[0]
    best = max(children, key=lambda c: c.data.metrics["best_val_accuracy"])
    assert parent.data.tags["hpsweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_accuracy"] == best.data.metrics["best_val_accuracy"]
    assert parent.data.params["best.lr"] == best.data.params["lr"]
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(parent.data.tags["hpsweep.best_model_uri"])
    assert model.metadata.signature is not None
    digits = load_digits()
    images = (digits.images[:200] * 255 / 16).round().astype("uint8")[:, None]
    predictions = model.predict(images)
    assert list(predictions.columns) == ["label", "class_name", "probability"]
    assert (predictions["label"].to_numpy() == digits.target[:200]).mean() > 0.8


def test_status_lists_the_trials(smoke, run_cli):
    folder, *_ = smoke
    code, out, _ = run_cli("status", "smoke", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")
    assert code == 0
    rows = [line for line in out.splitlines() if line[2:].startswith("trial-")]
    assert len(rows) == 6 and rows[0].startswith("* ")
    # ASHA (the smoke sweep's scheduler) prunes some; the others run every epoch
    assert all(" finished, " in row or " pruned (asha, epoch " in row for row in rows), out


def test_list_and_bare_status_show_the_stores_sweeps_newest_first(smoke, run_cli, tmp_path):
    folder, *_ = smoke
    _, parents, _ = _runs(folder, "smoke")
    sweep_id = parents[0].data.tags["hpsweep.sweep_id"]
    best = parents[0].data.metrics["best_val_accuracy"]
    code, out, _ = run_cli("list", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")
    assert code == 0 and out.splitlines()[0].startswith("1 sweep in sqlite:///")
    row = out.splitlines()[2].split()
    assert row[:3] == [sweep_id, "finished", "6/6"] and row[3:5] == ["val_accuracy", f"{best:.4g}"]
    code, bare, err = run_cli("status", "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")
    assert code == 0 and bare == out, err  # no --address asked for: the local sweeps, not a complaint
    code, by_id, _ = run_cli("status", parents[0].info.run_id, "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")
    assert code == 0 and by_id.startswith(f"sweep {sweep_id} (finished), 6 trials")
    code, out, _ = run_cli("list", "--tracking-uri", f"sqlite:///{tmp_path / 'empty.db'}")
    assert code == 0 and out.startswith("no sweeps recorded in sqlite:///")


def test_a_trial_that_raises_is_failed_and_the_sweep_goes_on(ray_session, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "flaky.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "flaky", "trainable": "flaky", "data": {"source": "sklearn_digits"},
        "train": {"epochs": 2, "metric": "val_accuracy"}, "search": {"algorithm": "grid"},
        "space": {"params": {"explode": {"choice": [True, False]}}}}))
    code, out, _ = _run(run_cli, tmp_path, sweep)
    assert code == 0 and "2 trials: 1 finished, 1 failed" in out
    _, parents, children = _runs(tmp_path, "flaky")
    by_param = {c.data.params["explode"]: c for c in children}
    assert by_param["True"].info.status == "FAILED"
    assert "boom: this trial was told to fail" in by_param["True"].data.tags["hpsweep.error"]
    assert by_param["False"].info.status == "FINISHED" and parents[0].info.status == "FINISHED"
    code, out, _ = _run(run_cli, tmp_path, sweep, "--set", "params.explode=true")
    assert code == 1 and "1 trials: 0 finished, 1 failed" in out


def test_a_plugin_trains_a_scikit_learn_text_classifier(ray_session, tmp_path, run_cli):
    sweep = text_sweep(tmp_path, epochs=2, trials=3)
    code, _, err = _run(run_cli, tmp_path, sweep)
    assert code == 0, err
    _, _, children = _runs(tmp_path, "textclf")
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert max(c.data.metrics["best_val_accuracy"] for c in children) > 0.85
    assert {"C", "ngram_max"} <= set(children[0].data.params)


def test_a_bad_sweep_file_starts_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntrainable: image_classifier\ndata: {source: sklearn_digits}\n"
                   "space: {lr: {loguniform: [0, 1]}}\n")
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: missing\ntrainable: image_classifier\ndata: {source: image_folder, path: nope}\n"
                       "space: {lr: {loguniform: [0.001, 0.1]}}\n")
    script = Path(sys.executable).with_name("hpsweep")
    for sweep, line in ((bad, "space.lr: loguniform bounds must be > 0"), (missing, "data.path: folder not found")):
        result = subprocess.run([str(script), "run", str(sweep)], cwd=tmp_path, capture_output=True, text=True,
                                check=False, timeout=120)
        assert result.returncode == 2
        assert result.stderr.strip().startswith(f"{sweep}: {line}") and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "missing.yaml"]  # no mlflow.db, no results


def test_the_lr_a_trial_shows_is_the_lr_it_trained_with(ray_session, tmp_path, run_cli):
    """An optimizer option with a learning rate of its own (`sgd: {lr: 0.05}`) trains at that rate: its
    trials show it as `lr` in MLflow, the terminal and the report, not the top-level draw they ignored."""
    sweep = tmp_path / "lrs.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "lrs", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "model": {"name": "mlp", "hidden_sizes": [16]}, "train": {"epochs": 1, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": 4, "max_concurrent": 2, "seed": 1},
        "space": {"lr": {"loguniform": [1.0e-4, 1.0e-3]},
                  "optimizer": {"choice": {"adam": {}, "sgd": {"lr": 0.05, "momentum": 0.9}}}}}))
    code, out, err = _run(run_cli, tmp_path, sweep)
    assert code == 0, err
    _, _, children = _runs(tmp_path, "lrs")
    taken = {c.data.params["optimizer"]: c.data.params for c in children}
    assert set(taken) == {"adam", "sgd"}  # seed 1 draws both
    for run in children:
        lr = float(run.data.params["lr"])
        assert lr == 0.05 if run.data.params["optimizer"] == "sgd" else 1.0e-4 <= lr <= 1.0e-3
    rows = [line for line in out.splitlines() if line.startswith("trial-")]
    assert len(rows) == 4 and all(("lr=0.05 " in row) == ("optimizer=sgd" in row) for row in rows), out
    code, _, err = run_cli("report", "lrs", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                           "--out", str(tmp_path / "report"))
    assert code == 0, err
    importances = json.loads((tmp_path / "report" / "summary.json").read_text())["importances"]
    assert "lr" in importances  # on the rates the trials trained with
