"""Every private attribute of Ray or MLflow that hpsweep touches, in one place.

Each was checked on the versions pyproject.toml allows; tests/layout/test_compat.py fails loudly when a
release moves one. Nothing else in hpsweep may reach into a private attribute of either library.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


def recorded_local_ray() -> str | None:
    """The address `ray start` recorded on this machine (under RAY_TMPDIR) if the Ray there still runs:
    the one `ray.init()` joins by itself. Ray has no public way to ask."""
    from ray._private.services import find_bootstrap_address, find_gcs_addresses

    recorded = find_bootstrap_address(None)
    if recorded is None:
        return None
    find_gcs_addresses.cache_clear()  # Ray caches what it found, and Rays come and go
    ports = {address.rsplit(":", 1)[-1] for address in find_gcs_addresses()}
    return recorded if recorded.rsplit(":", 1)[-1] in ports else None


def trial_actors_without_runtime_env() -> None:
    """Ray Tune gives every trial actor a runtime environment of its own ({"PL_DISABLE_FORK": "1"}, for
    PyTorch Lightning) even when it has nothing to forward, and Ray will not place an actor with a
    runtime environment in the worker processes it started ahead of time: each trial then waits for a
    new process to start and import torch. Without it, the first trials take those processes: the ones a
    Ray this process started loads while the sweep starts, and the ones a running Ray (`ray start`)
    starts for the first sweep that joins it. hpsweep's loop does not use Lightning; a Ray it starts
    still passes the variable on, through the environment its workers inherit."""
    from ray.tune.execution import class_cache

    class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)


@contextlib.contextmanager
def pinned_requirements_trusted() -> Iterator[None]:
    """While a model is logged, skip MLflow's check of each pip requirement against the installed
    packages, which maps every installed distribution's modules first (about 1 s, each time). MLflow runs
    it twice per model: when it saves the model, and when it loads the model back to try the input
    example. hpsweep pins its requirements from this very environment, so the check has nothing to find."""
    import mlflow.pyfunc
    from mlflow.utils import environment

    modules = (environment, mlflow.pyfunc)
    saved = [module.warn_dependency_requirement_mismatches for module in modules]
    for module in modules:
        module.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        for module, check in zip(modules, saved, strict=True):
            module.warn_dependency_requirement_mismatches = check


def tune_forwards_no_cloud_secrets() -> None:
    """Ray Tune copies AWS_* credentials from the driver's environment into every trial actor's runtime
    environment, which Ray keeps in its control store and its runtime-environment agent's log. hpsweep's
    trials need none of them: checkpoints go to a folder every node mounts and MLflow is written by the
    driver alone. A trainable that reads cloud storage takes its credentials from the nodes'
    environment (a local Ray's workers inherit the command's)."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = {name for name in class_cache.ENV_VARS_TO_PROPAGATE
                                         if not name.startswith("AWS_")}


def import_ray_without_driver_signal_dump() -> None:
    """Import Ray so that this (driver) process's Ray core worker installs no failure-signal handler: with
    it, SIGTERM in the seconds before hpsweep takes SIGTERM back printed a stack dump. Ray reads
    RAY_DISABLE_FAILURE_SIGNAL_HANDLER once, at import; it is unset again so the processes Ray starts
    keep their handlers. A value the user set is left alone."""
    with environment_default("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1"):
        import ray._private.ray_constants  # noqa: F401


@contextlib.contextmanager
def environment_default(name: str, value: str) -> Iterator[None]:
    """Environment variable `name` set to `value` for the block (for what reads it then, or a process
    started then), unless the user set it: their value is left alone."""
    import os

    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def add_finished_trials(searcher: Any, trials: list[Any]) -> None:
    """Hand earlier sweeps' trials (Optuna FrozenTrials) to Ray Tune's OptunaSearch as finished trials
    of its study, which it creates when it is made; its own `evaluated_rewards` refuses a define-by-run
    space such as hpsweep's."""
    searcher._ot_study.add_trials(trials)


@contextlib.contextmanager
def lean_local_ray(log_monitor: bool) -> Iterator[None]:
    """While `ray.init` starts a local Ray: without three Python processes a sweep on one machine does not
    use, which take CPU while its workers import torch. The autoscaler monitor (nothing to scale); the
    dashboard head, which with `include_dashboard=False` serves only Ray's usage statistics, and which
    `ray.init` waits for before it starts the raylet; and, unless `log_monitor`, the log monitor, which
    forwards workers' output to the driver. `ray start` has options for the monitors (`--no-monitor`,
    `--include-log-monitor=false`), none for the head, and `ray.init` none at all: the node's parameters
    are set as Ray makes them, and the head node starts no API server (as when one fails to start, which
    Ray carries on from without a dashboard URL)."""
    from ray._private import node, parameter

    made, api_server = parameter.RayParams.__init__, node.Node.start_api_server

    def lean(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.no_monitor = True
        if not log_monitor:
            self.include_log_monitor = False

    def no_api_server(self: Any, **_: Any) -> None:
        return None

    parameter.RayParams.__init__ = lean  # type: ignore[method-assign]
    node.Node.start_api_server = no_api_server  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams.__init__ = made  # type: ignore[method-assign]
        node.Node.start_api_server = api_server  # type: ignore[method-assign]
