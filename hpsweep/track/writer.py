"""The one MLflow writer of a sweep: an MlflowClient whose writes run on a thread of their own, in order,
and the SQLite tracking store that is the embedded default."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def create_sqlite_store(uri: str) -> None:
    """Create a new SQLite tracking database all at once: its tables are built in a file of its own, which
    is then linked into place only if no database is there yet. A driver killed while MLflow was
    creating the tables used to leave a half-built database that every later run refused.

    MLflow builds a new database by running each of its schema migrations in turn (1-1.5 s on a 2-core
    machine). The first database built with this MLflow is kept as a template in the user's cache, and
    later ones are copies of it: the same tables, migration version and Default experiment."""
    import uuid

    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return
    path = Path(uri[len(prefix):])
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        if not _copied_template(partial):
            from mlflow import MlflowClient

            MlflowClient(f"{prefix}{partial}").search_experiments(max_results=1)  # builds every table
            _keep_template(partial)
        os.link(partial, path)  # fails if another process created it meanwhile: theirs is kept
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def sqlite_template() -> Path:
    """Where the empty database of this MLflow and SQLAlchemy is kept ($XDG_CACHE_HOME, else ~/.cache)."""
    from importlib.metadata import version

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hpsweep" / f"mlflow-{version('mlflow')}-sqlalchemy-{version('sqlalchemy')}.db"


def _copied_template(partial: Path) -> bool:
    """Fill `partial` from the template, as MLflow would have built it here; False if there is no usable
    template (a damaged one is then rebuilt)."""
    import shutil
    import sqlite3
    import time

    template = sqlite_template()
    if not template.is_file():
        return False
    try:
        shutil.copyfile(template, partial)
        with contextlib.closing(sqlite3.connect(partial)) as db, db:
            if db.execute("SELECT version_num FROM alembic_version").fetchone() is None:
                raise sqlite3.DatabaseError("no schema version")
            # MLflow places the Default experiment's artifacts in ./mlruns of the folder it was made from
            now = int(time.time() * 1000)
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                       "WHERE experiment_id = 0", (str(Path.cwd() / "mlruns" / "0"), now, now))
    except (OSError, sqlite3.Error) as exc:
        log.warning("ignoring the SQLite template %s (%s); MLflow builds the database", template, exc)
        partial.unlink(missing_ok=True)
        return False
    return True


def _keep_template(built: Path) -> None:
    """Keep a database MLflow has just built as the template (renamed into place: never half-written)."""
    import shutil

    template = sqlite_template()
    staged = template.with_name(f".{template.name}.{os.getpid()}.partial")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, staged)
        os.replace(staged, template)
    except OSError as exc:  # a read-only home: every new database is built by MLflow, as before
        log.debug("could not keep %s as the SQLite template: %s", built, exc)
        staged.unlink(missing_ok=True)


class Writer:
    """An MlflowClient whose calls all run on one thread, in the order they were made. The calls that
    only write (`WRITES`, and `submit`) return at once; any other call waits for its answer, and so for
    every write made before it. A write that failed is raised by the next call that waits, or `wait`."""

    WRITES = frozenset({"delete_run", "log_batch", "log_dict", "log_metric", "log_text", "set_tag",
                        "set_terminated", "update_run"})

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpsweep-mlflow")
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def direct(self) -> Any:
        """The MlflowClient itself: only for code that runs on the writer's thread (`submit`)."""
        return self._client

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the writer's thread after every call made so far; do not wait for it."""
        self._pool.submit(fn).add_done_callback(self._note)

    def wait(self) -> None:
        """Return once every write made so far is done; raise the first that failed."""
        self._pool.submit(lambda: None).result()
        self._raise()

    def _note(self, done: Future[Any]) -> None:
        if (error := done.exception()) is not None:
            log.debug("an MLflow write failed: %r", error)
            with self._lock:
                self._failed = self._failed or error

    def _raise(self) -> None:
        with self._lock:
            error, self._failed = self._failed, None
        if error is not None:
            raise error

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name in self.WRITES:
            def write(*args: Any, **kwargs: Any) -> None:
                self.submit(functools.partial(method, *args, **kwargs))
            return write

        def call(*args: Any, **kwargs: Any) -> Any:
            answer = self._pool.submit(method, *args, **kwargs).result()
            self._raise()
            return answer
        return call
