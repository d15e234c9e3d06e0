"""Checking a tracking URI before anything starts: a scheme MLflow can store runs in, and for SQLite a
folder the database can be created in."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

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


def runs_page(uri: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs, in its machine-learning view (MLflow 3 opens an
    experiment it takes for GenAI on an overview of traces). A tracking server serves its own UI; any
    other store is seen through `mlflow ui` on its default address."""
    base = uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_command(uri: str) -> str | None:
    """The command that serves the MLflow UI for a store that is not a server already, else None."""
    return None if urlparse(uri).scheme in ("http", "https") else f"mlflow ui --backend-store-uri {uri}"
