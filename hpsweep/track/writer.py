"""The one MLflow writer of a sweep: an MlflowClient whose writes run on a thread of their own, in order,
and the SQLite tracking store that is the embedded default."""

from __future__ import annotations

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
    """Create a new SQLite tracking database all at once: MLflow builds its tables in a file of its own,
    which is then linked into place only if no database is there yet. A driver killed while MLflow was
    creating the tables used to leave a half-built database that every later run refused."""
    import uuid

    from mlflow import MlflowClient

    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return
    path = Path(uri[len(prefix):])
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        MlflowClient(f"{prefix}{partial}").search_experiments(max_results=1)  # builds every table
        os.link(partial, path)  # fails if another process created it meanwhile: theirs is kept
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


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
