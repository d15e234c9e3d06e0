"""`promote --confirm`: the top configurations re-trained with fresh seeds on the test session's Ray,
nested under the sweep in MLflow, gated against the champion, resumable after an interrupt.

The sweep is seeded so that its best trial is lucky: with train.seed 0, lr 0.005 beats lr 0.008 on
validation (0.881 against 0.829 here), while seeds 1 and 2 of each put lr 0.008 clearly ahead (0.894
against 0.857). Training on CPU with one thread per trial repeats to the bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow
HPSWEEP = str(Path(sys.executable).with_name("hpsweep"))
LUCKY = {"name": "lucky", "trainable": "image_classifier", "data": {"source": "sklearn_digits"},
         "model": {"name": "mlp", "hidden_sizes": [16]}, "train": {"epochs": 2, "metric": "val_accuracy"},
         "search": {"algorithm": "grid", "num_trials": 2, "max_concurrent": 2},
         "space": {"lr": {"choice": [0.005, 0.008]}, "batch_size": 32, "dropout": 0.5}, "resources": {"cpu": 1}}


@pytest.fixture(scope="module")
def lucky(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The finished lucky sweep in its own SQLite store: (folder, tracking URI)."""
    from hpsweep.cli import main

    folder = tmp_path_factory.mktemp("confirm")
    (folder / "lucky.yaml").write_text(yaml.safe_dump(LUCKY))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    assert main(["run", str(folder / "lucky.yaml"), "--tracking-uri", uri, "--storage", str(folder / "results")]) == 0
    return folder, uri


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _confirm(run_cli: Any, lucky: tuple[Path, str], *args: str) -> tuple[int, str, str]:
    folder, uri = lucky
    return run_cli("promote", "lucky", *args, "--tracking-uri", uri, "--storage", str(folder / "results"))


def _confirmations(uri: str) -> list[Any]:
    """Every confirmation's parent run in the lucky experiment."""
    client = _client(uri)
    experiment = client.get_experiment_by_name("lucky").experiment_id
    return client.search_runs([experiment], "tags.`hpsweep.role` = 'confirmation'")


def _seed_runs(uri: str, parent_id: str) -> list[tuple[str, str]]:
    """(lr, seed) of each trial run of a confirmation."""
    client = _client(uri)
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return sorted((r.data.params["lr"], r.data.params["seed"]) for r in runs)


def test_the_lucky_best_loses_on_retraining_and_the_runner_up_is_promoted(lucky, run_cli):
    folder, uri = lucky
    client = _client(uri)
    original = client.search_runs([client.get_experiment_by_name("lucky").experiment_id],
                                  "tags.`hpsweep.role` = 'sweep'")[0]
    best = client.get_run(original.data.tags["hpsweep.best_run_id"])
    assert best.data.params["lr"] == "0.005"  # the sweep's own pick, made on seed 0
    code, out, err = _confirm(run_cli, lucky, "--confirm", "2", "--seeds", "2", "--model-name", "lucky")
    assert code == 0, err
    assert "promoted" in out and "selection bias of the sweep's best trial" in out
    version = client.get_model_version_by_alias("lucky", "champion")
    registered = client.get_run(version.tags["hpsweep.run_id"])
    assert registered.data.params["lr"] == "0.008"  # the runner-up, by its seeds' mean
    assert registered.data.params["seed"] == version.tags["hpsweep.confirm.registered_seed"]
    assert version.run_id == registered.info.run_id  # the very model that was scored on the test split
    seeds = json.loads(version.tags["hpsweep.confirm.seeds"])
    assert sorted(seeds) == ["1", "2"] and float(version.tags["hpsweep.confirm.selection_bias"]) > 0
    # nested under the sweep's parent run; each configuration trained once per seed, never with seed 0
    (confirmation,) = _confirmations(uri)
    assert confirmation.data.tags["mlflow.parentRunId"] == original.info.run_id
    assert _seed_runs(uri, confirmation.info.run_id) == [("0.005", "1"), ("0.005", "2"), ("0.008", "1"),
                                                         ("0.008", "2")]
    # the sweep itself still reads as its two trials, and its report shows the confirmation
    page = Path(next(line for line in out.splitlines() if line.startswith("report: ")).split()[1])
    assert page.is_relative_to(folder / "results")  # the sweep's own report, rewritten
    assert "Confirmation of the best configurations" in page.read_text() and "#2 (chosen)" in page.read_text()
    code, out, _ = run_cli("status", "lucky", "--tracking-uri", uri)
    assert code == 0 and "2 trials" in out and "seed" not in out


def test_nothing_beats_the_champion_and_the_alias_stays(lucky, run_cli):
    """The sweep's own best, confirmed alone, against the runner-up's promoted seed: held. A confirmation
    that finished is reused: asking again trains nothing."""
    _, uri = lucky
    code, _, err = _confirm(run_cli, lucky, "--confirm", "2", "--seeds", "2", "--model-name", "guard")
    assert code == 0, err
    before = len(_confirmations(uri))
    code, out, err = _confirm(run_cli, lucky, "--confirm", "1", "--seeds", "2", "--model-name", "guard")
    assert code == 0, err
    assert "held" in out and "guard@champion stays on version 1" in out
    client = _client(uri)
    assert [str(v.version) for v in client.search_model_versions("name='guard'")] == ["1"]
    assert len(_confirmations(uri)) == before + 1  # only the new configuration list trained
    code, out, _ = _confirm(run_cli, lucky, "--confirm", "1", "--seeds", "2", "--model-name", "guard")
    assert code == 0 and "held" in out and len(_confirmations(uri)) == before + 1


def test_an_interrupted_confirmation_registers_nothing_and_resumes(lucky, ray_session):
    folder, uri = lucky
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    argv = [HPSWEEP, "promote", "lucky", "--confirm", "2", "--seeds", "3", "--model-name", "midway",
            "--storage", str(folder / "results")]
    driver = subprocess.Popen(argv, cwd=folder, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while not _finished_seed(uri):
        assert driver.poll() is None and time.time() < deadline, driver.communicate()[0]
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=90)
    assert driver.returncode == 130, out
    assert "nothing was registered" in out and "resumes it" in out
    client = _client(uri)
    assert "midway" not in [m.name for m in client.search_registered_models()]
    done = subprocess.run(argv, cwd=folder, env=env, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (parent,) = [r for r in _confirmations(uri) if r.data.tags["hpsweep.confirm_key"] == _key_of(client, "midway")]
    runs = _seed_runs(uri, parent.info.run_id)
    assert runs == sorted((lr, str(seed)) for lr in ("0.005", "0.008") for seed in (1, 2, 3))  # each once
    assert client.get_model_version_by_alias("midway", "champion") is not None


def _finished_seed(uri: str) -> bool:
    """Whether the first trial of the 6-trial (--seeds 3) confirmation has finished: at most two run at
    a time, so four or more are still to train when it has."""
    client = _client(uri)
    for parent in _confirmations(uri):
        if parent.data.params.get("num_trials") != "6":
            continue
        runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = "
                                  f"'{parent.info.run_id}' and attributes.status = 'FINISHED'")
        if runs:
            return True
    return False


def _key_of(client: Any, model: str) -> str:
    """The confirmation key behind a registered model's champion."""
    version = client.get_model_version_by_alias(model, "champion")
    return client.get_run(client.get_run(version.tags["hpsweep.run_id"]).data.tags["mlflow.parentRunId"]
                          ).data.tags["hpsweep.confirm_key"]


def test_a_registry_that_fails_after_the_retraining_costs_a_rerun_and_no_training(lucky, run_cli):
    """The store refuses new model versions (an SQLite trigger: the real database failing as a full disk
    would): exit 1 with one line, nothing registered; once it accepts writes again, the same command
    reuses the finished confirmation and registers."""
    import sqlite3

    folder, uri = lucky
    code, _, err = _confirm(run_cli, lucky, "--confirm", "2", "--seeds", "2", "--model-name", "warmup")
    assert code == 0, err  # the (2 configurations, 2 seeds) confirmation has finished
    trained = len(_confirmations(uri))
    database = sqlite3.connect(folder / "mlflow.db")
    database.execute("CREATE TRIGGER refuse_versions BEFORE INSERT ON model_versions "
                     "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    database.commit()
    try:
        code, out, err = _confirm(run_cli, lucky, "--confirm", "2", "--seeds", "2", "--model-name", "flaky")
        assert code == 1 and len(err.strip().splitlines()) == 1 and "flaky" in err, (out, err)
    finally:
        database.execute("DROP TRIGGER refuse_versions")
        database.commit()
        database.close()
    assert "flaky" not in [m.name for m in _client(uri).search_registered_models()]
    code, out, err = _confirm(run_cli, lucky, "--confirm", "2", "--seeds", "2", "--model-name", "flaky")
    assert code == 0 and "flaky@champion is now version 1" in out, err
    assert len(_confirmations(uri)) == trained  # nothing trained again


def test_a_promotion_maps_the_images_its_sweep_decoded_instead_of_decoding_them_again(
        ray_session, run_cli, digit_files, tmp_path, monkeypatch):
    """The test split is read through the cache of decoded images that the sweep used: the one it
    recorded when no --storage is given, --storage's with a confirmation (whose trials use it too). A
    folder of gigabytes is decoded once, not once more into the default storage."""
    monkeypatch.delenv("HPSWEEP_CACHE", raising=False)  # caches in each storage, as for a user
    monkeypatch.delenv("HPSWEEP_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)  # the default storage would be ./hpsweep-results here
    sweep = {**LUCKY, "name": "folders", "data": {"source": "image_folder", "path": str(digit_files / "folders")},
             "train": {"epochs": 1, "metric": "val_accuracy"}}
    (tmp_path / "folders.yaml").write_text(yaml.safe_dump(sweep))
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "elsewhere"
    code, _, err = run_cli("run", "folders.yaml", "--tracking-uri", uri, "--storage", str(storage))
    assert code == 0, err
    decoded = sorted(p.name for p in (storage / "data-cache").iterdir())
    assert decoded
    code, out, err = run_cli("promote", "folders", "--dry-run", "--model-name", "folders", "--tracking-uri", uri)
    assert code == 0, err
    assert "dry run" in out.lower()
    assert not (tmp_path / "hpsweep-results").exists()  # the recorded cache was read, not a new one made
    code, out, err = run_cli("promote", "folders", "--confirm", "1", "--seeds", "2", "--model-name", "folders",
                             "--tracking-uri", uri, "--storage", str(storage))
    assert code == 0, err
    assert "promoted" in out
    assert sorted(p.name for p in (storage / "data-cache").iterdir()) == decoded
    assert not (tmp_path / "hpsweep-results").exists()
