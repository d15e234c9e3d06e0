"""Keep third-party chatter (Ray's console reporter, MLflow's progress bars and notices, Optuna's log)
out of the terminal, which belongs to the CLI; all of it comes back with -v."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Silence them for the duration of the block (a sweep, a promotion, a prediction)."""
    if verbose:
        yield
        return
    # mlflow configures its loggers and warning filters when imported: import first, then silence
    import mlflow.models
    import mlflow.pyfunc  # noqa: F401
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = {"RAY_AIR_NEW_OUTPUT": "0", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    saved_env = {k: os.environ.get(k) for k in settings}
    loggers = [logging.getLogger(n) for n in ("ray", "ray.tune", "ray.train", "mlflow", "alembic")]
    # MLflow logs a store's failure (with its SQL) before raising it; the CLI reports the error itself
    levels = {"mlflow": logging.CRITICAL, "alembic": logging.CRITICAL}
    saved_levels = [lg.level for lg in loggers]
    os.environ.update(settings)
    for logger in loggers:
        logger.setLevel(levels.get(logger.name, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for logger, level in zip(loggers, saved_levels, strict=True):
            logger.setLevel(level)
