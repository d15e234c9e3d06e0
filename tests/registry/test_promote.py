"""Promotion to the MLflow Model Registry, prediction with the champion, and a PostgreSQL-backed server."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import free_port, wait_until_up

pytestmark = pytest.mark.slow
HPSWEEP = str(Path(sys.executable).with_name("hpsweep"))


def _sweep(folder: Path, name: str, space: dict, epochs: int, trials: int) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
        "model": {"name": "mlp", "hidden_sizes": [64]}, "train": {"epochs": epochs, "metric": "val_accuracy"},
        "search": {"algorithm": "random", "num_trials": trials, "max_concurrent": 2}, "space": space,
        "resources": {"cpu": 1}, "registry": {"model_name": "digits"}}))
    return path


@pytest.fixture(scope="module")
def store(ray_session, tmp_path_factory):
    """Two finished sweeps on the same data in one SQLite store: a strong one and a deliberately weak one."""
    from hpsweep.cli import main

    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    strong = _sweep(folder, "strong", {"lr": {"loguniform": [0.003, 0.01]}}, epochs=5, trials=2)
    weak = _sweep(folder, "weak", {"lr": {"choice": [1.0e-5, 2.0e-5]}, "optimizer": "sgd"}, epochs=1, trials=2)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for sweep in (strong, weak):
            assert main(["run", str(sweep), "--tracking-uri", uri, "--storage", str(folder / "results")]) == 0
    finally:
        os.chdir(cwd)
    return folder, uri


def _promote(run_cli, store, *args: str):
    _, uri = store
    return run_cli("promote", *args, "--tracking-uri", uri)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def test_better_challenger_takes_the_alias_and_is_tagged(store, run_cli):
    _, uri = store
    code, out, err = _promote(run_cli, store, "strong")
    assert code == 0, err
    assert "promoted: there is no champion yet; digits@champion is now version 1" in out
    client = _client(uri)
    version = client.get_model_version_by_alias("digits", "champion")
    tags = version.tags
    assert str(version.version) == "1" and tags["hpsweep.decision"] == "promoted"
    assert tags["hpsweep.sweep_id"].startswith("strong-") and tags["hpsweep.trial_id"]
    assert float(tags["hpsweep.test_metric"].split("=")[1]) > 0.85
    assert "hpsweep.val_accuracy" in tags and tags["hpsweep.previous_champion"] == "none"
    assert len(tags["hpsweep.data_fingerprint"]) == 16
    assert version.description.startswith("Best trial (trial-") and tags["hpsweep.sweep_id"] in version.description
    assert "test accuracy" in version.description
    assert "held-out test split (accuracy)" in client.get_registered_model("digits").description


def test_weaker_or_equal_challengers_do_not_move_it(store, run_cli):
    _, uri = store
    _promote(run_cli, store, "strong")  # first promotion, if this test runs alone
    client = _client(uri)
    before = client.get_model_version_by_alias("digits", "champion").version
    count = len(client.search_model_versions("name='digits'"))
    code, out, err = _promote(run_cli, store, "weak")
    assert code == 0, err
    assert "held: test accuracy" in out and f"stays on version {before}" in out
    code, out, _ = _promote(run_cli, store, "strong")
    assert code == 0 and f"held: this sweep's best trial is already the champion (version {before})" in out
    assert client.get_model_version_by_alias("digits", "champion").version == before
    assert len(client.search_model_versions("name='digits'")) == count
    weak_parent = client.search_runs([client.get_experiment_by_name("weak").experiment_id],
                                     filter_string="tags.`hpsweep.sweep_id` != ''")
    parent = next(r for r in weak_parent if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["hpsweep.promotion.champion"].endswith("held")
    assert any(a.path.startswith("promotions/") for a in client.list_artifacts(parent.info.run_id, "promotions"))


def test_dry_run_writes_nothing(store, run_cli):
    _, uri = store
    client = _client(uri)
    versions = len(client.search_model_versions("name='digits'")) if client.search_registered_models() else 0
    code, out, _ = _promote(run_cli, store, "strong", "--alias", "dry", "--dry-run")
    assert code == 0 and out.strip().splitlines()[-1].startswith("dry run, nothing written: would be promoted")
    assert len(client.search_model_versions("name='digits'")) == versions
    with pytest.raises(Exception, match="dry"):
        client.get_model_version_by_alias("digits", "dry")


def test_racing_promoters_leave_the_alias_on_the_better_version(store):
    folder, uri = store
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}

    def promote(sweep: str) -> tuple[int, str]:
        done = subprocess.run([HPSWEEP, "promote", sweep, "--alias", "race"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        return done.returncode, done.stderr

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(promote, ["weak", "strong"]))
    assert [code for code, _ in results] == [0, 0], results
    winner = _client(uri).get_model_version_by_alias("digits", "race")
    assert winner.tags["hpsweep.sweep_id"].startswith("strong-")


def test_diverged_trials_are_never_promoted(store, run_cli, tmp_path):
    from hpsweep.cli import main

    _, uri = store
    sweep = _sweep(tmp_path, "diverged", {"lr": {"choice": [1.0e6, 2.0e6]}, "optimizer": "sgd"}, epochs=2, trials=2)
    # exit 1: no trial is usable (tests/spec/test_bad_input.py checks what it says)
    assert main(["run", str(sweep), "--tracking-uri", uri, "--storage", str(tmp_path / "results")]) == 1
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("diverged").experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2  # ended, not stuck RUNNING, and never the sweep's best
    assert {(r.info.status, r.data.tags["hpsweep.stop_reason"]) for r in trials} == {("FINISHED", "diverged")}
    assert all("hpsweep.best_run_id" not in r.data.tags for r in runs)
    code, _, err = _promote(run_cli, store, "diverged")
    assert code == 2 and "has no finished trial with a finite val_accuracy" in err


def test_unknown_sweep_is_bad_input(store, run_cli):
    code, _, err = _promote(run_cli, store, "no-such-sweep")
    assert code == 2 and err.strip() == f"hpsweep: no sweep named 'no-such-sweep' in {store[1]}"


def test_the_pyfunc_predicts_what_the_loop_evaluates(store, run_cli):
    """The registered model on raw uint8 images agrees with the trained network on the loop's batches."""
    import mlflow

    from hpsweep.registry.model_format import load_registered
    from hpsweep.spec import load_spec
    from hpsweep.train.batches import BatchPlan, batches
    from hpsweep.train.data import prepare

    folder, uri = store
    _promote(run_cli, store, "strong")
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model("models:/digits@champion")
    data = prepare(load_spec(folder / "strong.yaml"))
    served = pyfunc.predict(data.test.examples().numpy())["label"].to_numpy()
    net, _ = load_registered("models:/digits@champion")
    plan = BatchPlan(True, data.mean, data.std, None, torch.device("cpu"))
    with torch.no_grad():
        looped = torch.cat([net.eval()(x).argmax(1) for x, *_ in batches(data.test, 128, plan, train=False)])
    assert np.array_equal(served, looped.numpy())
    assert (served == data.test.y.numpy()).mean() > 0.85
    grey_8x8 = data.test.examples()[:3, 0].numpy()  # [N, H, W] works too: preprocessing travels with the model
    assert list(pyfunc.predict(grey_8x8[:, None])["label"]) == list(served[:3])


def test_predict_writes_a_csv_in_input_order(store, run_cli, digit_files, tmp_path):
    _, uri = store
    _promote(run_cli, store, "strong")
    out = tmp_path / "predictions.csv"
    code, stdout, err = run_cli("predict", "models:/digits@champion", str(digit_files / "folders"),
                                "--out", str(out), "--tracking-uri", uri)
    assert code == 0, err and "wrote 1797 predictions" in stdout
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == ["input", "label", "class_name", "probability"]
    assert list(table["input"]) == sorted(table["input"])
    truth = table["input"].str.split("/").str[0].astype(int)
    assert (table["label"] == truth).mean() > 0.85 and table["probability"].between(0, 1).all()
    code, _, err = run_cli("predict", "models:/digits@champion", str(digit_files / "csv" / "labels.csv"),
                           "--out", str(tmp_path / "p2.csv"), "--tracking-uri", uri)
    assert code == 0 and len(pd.read_csv(tmp_path / "p2.csv")) == 1797
    code, _, err = run_cli("predict", "models:/digits@champion", str(tmp_path / "nope"), "--tracking-uri", uri)
    assert code == 2 and err.strip() == f"hpsweep: {tmp_path / 'nope'}: no such file or folder"


def test_promotion_prediction_and_the_report_leave_nothing_in_the_temp_folder(store, run_cli, digit_files,
                                                                              tmp_path, monkeypatch):
    """Each fetches files from MLflow (the models, the recorded sweep, the best trial's confusion matrix)
    into a temporary copy, which is gone when the command ends: repeated use does not fill the disk."""
    import tempfile

    _, uri = store
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert _promote(run_cli, store, "strong")[0] == 0
    assert _promote(run_cli, store, "weak")[0] == 0  # evaluates the champion and the challenger
    code, _, err = run_cli("predict", "models:/digits@champion", str(digit_files / "folders"),
                           "--out", str(tmp_path / "predictions.csv"), "--tracking-uri", uri)
    assert code == 0, err
    code, _, err = run_cli("report", "strong", "--no-log", "--out", str(tmp_path / "report"),
                           "--tracking-uri", uri)
    assert code == 0 and (tmp_path / "report" / "confusion_matrix.png").is_file(), err
    assert sorted(p.name for p in scratch.iterdir()) == []


def test_sweep_and_promotion_against_a_postgresql_backed_server(ray_session, postgres_mlflow, tmp_path, run_cli):
    import psycopg

    uri, database = postgres_mlflow
    sweep = _sweep(tmp_path, "pgsweep", {"lr": {"loguniform": [0.003, 0.01]}}, epochs=2, trials=2)
    code, _, err = run_cli("run", str(sweep), "--tracking-uri", uri, "--storage", str(tmp_path / "results"))
    assert code == 0, err
    code, out, err = run_cli("promote", "pgsweep", "--tracking-uri", uri)
    assert code == 0 and "now version 1" in out, err
    with psycopg.connect(host="127.0.0.1", dbname=database, user="postgres") as db, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == 3  # the parent and two trials, in PostgreSQL
        cursor.execute("SELECT version FROM registered_model_aliases WHERE alias = 'champion'")
        assert cursor.fetchone()[0] == 1
    import mlflow

    from hpsweep.registry.model_format import fetch_model

    mlflow.set_tracking_uri(uri)
    with fetch_model("models:/digits@champion") as model:  # the artifacts, through the server
        assert (model / "weights.pt").is_file()
    assert not model.exists()  # and nothing of them left on disk


def test_the_champion_serves_with_mlflow_models_serve(store, run_cli):
    """`mlflow models serve` on models:/NAME@champion answers a JSON request of raw images."""
    import json
    import urllib.request

    from sklearn.datasets import load_digits

    folder, uri = store
    _promote(run_cli, store, "strong")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", "models:/digits@champion", "--env-manager", "local",
                               "-p", str(port)], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        digits = load_digits()
        images = (digits.images[:20] * 255 / 16).round().astype(int)[:, None].tolist()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                         data=json.dumps({"inputs": images}).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
        labels = [p["label"] for p in answer]
        assert len(labels) == 20 and np.mean(np.array(labels) == digits.target[:20]) >= 0.8
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


def _copy_store(store, tmp_path) -> str:
    """The module's tracking store copied, so a test can damage or extend it without touching the others
    (the copy's runs point at the same artifact folders)."""
    import shutil

    folder, _ = store
    shutil.copy(folder / "mlflow.db", tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_champion_that_cannot_be_read_stops_the_promotion_and_writes_nothing(store, run_cli, tmp_path):
    """Only "no such model or alias" means there is no champion. A registry that fails to answer (here a
    broken table of the real store: every read of the model's aliases raises) must not be taken for an
    empty one, or the challenger would be promoted over a champion nobody compared it with."""
    import sqlite3

    _promote(run_cli, store, "strong")  # a champion exists
    uri = _copy_store(store, tmp_path)
    database = sqlite3.connect(tmp_path / "mlflow.db")
    versions_before = database.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    database.execute("DROP TABLE registered_model_aliases")
    database.commit()
    code, out, err = run_cli("promote", "strong", "--tracking-uri", uri)
    assert code == 1, (out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("hpsweep: error:")
    assert "promoted" not in out
    assert database.execute("SELECT count(*) FROM model_versions").fetchone()[0] == versions_before
    database.close()


def test_versions_scored_on_another_metric_are_not_ranked_against_the_alias(store, run_cli, tmp_path):
    """A version promoted for the same alias and data but scored on another test metric (here an mse of
    40, which is 'higher' than any accuracy) must not win the alias back from a new accuracy champion."""
    import mlflow

    from hpsweep import contract as C
    from hpsweep.track.queries import find_sweep
    from hpsweep.train.data import prepare

    uri = _copy_store(store, tmp_path)
    client = _client(uri)
    weak = find_sweep(client, "weak")
    mlflow.set_tracking_uri(uri)
    other = mlflow.register_model(weak.parent.data.tags[C.BEST_MODEL_TAG], "cross")
    for key, value in {C.DECISION_TAG: "promoted", C.ALIAS_TAG: "champion", C.TEST_TAG: "mse=40.0",
                       C.TEST_MODE_TAG: "max", C.FINGERPRINT_TAG: prepare(weak.spec).fingerprint()}.items():
        client.set_model_version_tag("cross", other.version, key, value)
    code, _, err = run_cli("promote", "strong", "--model-name", "cross", "--tracking-uri", uri)
    assert code == 0, err
    champion = client.get_model_version_by_alias("cross", "champion")
    assert champion.version != other.version and champion.tags[C.SWEEP_TAG].startswith("strong-")
    assert champion.tags[C.TEST_TAG].startswith("accuracy=") and champion.tags[C.TEST_MODE_TAG] == "max"


FAULTS = {  # a table of the real store that stops accepting writes at one step of a promotion
    "tagging the new version": "model_version_tags",
    "moving the alias": "registered_model_aliases",
    "recording the decision on the sweep": "tags",
}


@pytest.mark.parametrize("step", list(FAULTS))
def test_a_promotion_that_fails_part_way_leaves_the_registry_as_it_was(store, run_cli, tmp_path, step):
    """The store refuses writes after the new version is registered (SQLite triggers on the copied store:
    the real database failing as a full disk or a lost server would). The promotion fails with one line and
    the registry is as before: no new version, the alias on its old holder, a model made for it removed."""
    import sqlite3

    uri = _copy_store(store, tmp_path)
    code, _, err = run_cli("promote", "weak", "--model-name", "pair", "--tracking-uri", uri)
    assert code == 0, err  # weak holds pair@champion, so strong will be promoted over it
    database = sqlite3.connect(tmp_path / "mlflow.db")
    table = FAULTS[step]
    for event in ("INSERT", "UPDATE"):
        database.execute(f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON {table} "
                         "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    database.commit()
    for name in ("pair", "fresh"):
        code, out, err = run_cli("promote", "strong", "--model-name", name, "--tracking-uri", uri)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "disk is full" in err, (step, out, err)
    client = _client(uri)
    versions = client.search_model_versions("name='pair'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias("pair", "champion").version) == "1"
    assert "fresh" not in [m.name for m in client.search_registered_models()]
    database.close()
