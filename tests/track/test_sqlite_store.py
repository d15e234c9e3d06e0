"""A new SQLite tracking store: built by MLflow once, copied from that template afterwards, and the copy
is the same database MLflow would have built (tables, schema version, Default experiment)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _schema(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str]], list[tuple[str, str]]]:
    with sqlite3.connect(path) as db:
        tables = db.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
        experiments = db.execute("SELECT name, artifact_location FROM experiments ORDER BY experiment_id").fetchall()
    return tables, version, experiments


def test_a_new_store_is_copied_from_the_template_and_matches_what_mlflow_builds(cache, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from hpsweep.track.writer import create_sqlite_store, sqlite_template

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    create_sqlite_store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")  # MLflow builds it; kept as the template
    template = sqlite_template()
    assert template.is_file() and template.is_relative_to(cache)
    monkeypatch.chdir(tmp_path / "b")
    create_sqlite_store(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")  # a copy

    built, copied = _schema(tmp_path / "a" / "mlflow.db"), _schema(tmp_path / "b" / "mlflow.db")
    assert built[:2] == copied[:2] and built[1]  # the same tables and schema version
    assert copied[2] == [("Default", str(tmp_path / "b" / "mlruns" / "0"))]  # as MLflow would place it here
    client = MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")  # MLflow accepts the copy as current
    experiment = client.create_experiment("sweep")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val_accuracy", 0.5)
    assert client.get_metric_history(run.info.run_id, "val_accuracy")[0].value == 0.5
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["mlflow.db"]  # no partial file left


def test_a_damaged_template_is_rebuilt_and_never_reaches_a_store(cache, tmp_path):
    from mlflow import MlflowClient

    from hpsweep.track.writer import create_sqlite_store, sqlite_template

    template = sqlite_template()
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database")
    create_sqlite_store(f"sqlite:///{tmp_path / 'mlflow.db'}")

    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment("0").name == "Default"
    assert _schema(template)[1]  # the template was rebuilt from MLflow's database
