"""Every private attribute of Ray or MLflow that hpsweep touches, in one place.

Each was checked on the versions pyproject.toml allows; tests/layout/test_compat.py fails loudly when a
release moves one. Nothing else in hpsweep may reach into a private attribute of either library.
"""

from __future__ import annotations

from typing import Any


def best_checkpoint(trial: Any) -> Any:
    """A running trial's best checkpoint as Ray Tune ranked them (by checkpoint_score_attribute), or None.
    Ray's checkpoint bookkeeping has no public accessor while the experiment runs."""
    manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
    ranked = getattr(manager, "best_checkpoint_results", None) or []
    return ranked[-1].checkpoint if ranked else None


def set_search_budget(generator: Any, total: int) -> None:
    """Give a restored SearchGenerator a new number of trials. Ray keeps the number the experiment
    started with, and a resume may raise or lower it."""
    generator._total_samples = total
    generator._finished = generator._finished and generator._counter >= total


def active_experiment_id() -> str | None:
    """The experiment MLflow's fluent API would log to (a notebook may have set its own)."""
    from mlflow.tracking import fluent

    return getattr(fluent, "_active_experiment_id", None)


def restore_active_experiment(experiment_id: str | None) -> None:
    """Put back what active_experiment_id() returned (`mlflow.set_experiment` would look it up in the store)."""
    from mlflow.tracking import fluent

    fluent._active_experiment_id = experiment_id
