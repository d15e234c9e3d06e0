"""Checking a tracking URI before anything starts: a scheme MLflow can store runs in, and for SQLite a
folder the database can be created in."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlparse

from hpsweep.contract import best_metric
from hpsweep.errors import UserError
from hpsweep.storage import unwritable
from hpsweep.track.writer import tracking_uri

#: the schemes MLflow 3 opens a tracking store for (a database dialect may follow a "+")
SCHEMES = frozenset({"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                     "databricks-uc", "uc"})


def check_tracking_uri(explicit: str | None) -> None:
    """UserError naming --tracking-uri (or $MLFLOW_TRACKING_URI) when MLflow could not use it."""
    uri = tracking_uri(explicit)
    given = "--tracking-uri" if explicit else "MLFLOW_TRACKING_URI"
    scheme = urlparse(uri).scheme.split("+")[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a local path
        scheme = ""
    if scheme not in SCHEMES:
        raise UserError(f"{given}: {uri!r} is not a store MLflow can record to (schemes: "
                        f"{', '.join(sorted(s for s in SCHEMES if s))}, or a folder)")
    if scheme == "sqlite" and uri.removeprefix("sqlite:///") not in ("", ":memory:"):
        _check_folder(Path(uri.removeprefix("sqlite:///")).expanduser().parent, given, uri)


def _check_folder(folder: Path, given: str, uri: str) -> None:
    if (blocked := unwritable(folder)) is not None:
        raise UserError(f"{given}: cannot create the SQLite database of {uri}: {blocked} is not a writable folder")


LOCAL_UI = "http://127.0.0.1:5000"  #: where `mlflow ui` serves by default


def _served(uri: str) -> bool:
    """Whether the store is a tracking server, which serves its own UI."""
    return urlparse(uri).scheme in ("http", "https")


def _ui(uri: str) -> str:
    """The MLflow UI of a store: a tracking server's own, else `mlflow ui` on its default address."""
    return uri.rstrip("/") if _served(uri) else LOCAL_UI


def runs_page(uri: str, experiment_id: str, metric: str, mode: str) -> str:
    """The MLflow UI's page of an experiment's runs, in its machine-learning view (MLflow 3 opens an
    experiment it takes for GenAI on an overview of traces), best `best_<metric>` first: the chart view
    draws the first ten runs listed, which are then the best trials."""
    order = quote(f"metrics.`{best_metric(metric)}`")
    return (f"{_ui(uri)}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&orderByKey={order}&orderByAsc={'true' if mode == 'min' else 'false'}")


def run_page(uri: str, experiment_id: str, run_id: str) -> str:
    """One run's page in the MLflow UI."""
    return f"{_ui(uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def ui_command(uri: str) -> str | None:
    """The command that serves the MLflow UI for a store that is not a server already, else None."""
    return None if _served(uri) else f"mlflow ui --backend-store-uri {uri}"
