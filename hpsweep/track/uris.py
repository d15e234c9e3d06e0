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
