"""The private Ray and MLflow attributes hpsweep.compat relies on still exist in the installed releases.

A failure here means a new Ray or MLflow moved something: update hpsweep/compat.py and the version
bounds in pyproject.toml together.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from conftest import REPO


def test_ray_keeps_a_trials_ranked_checkpoints_where_compat_reads_them():
    from ray.tune.experiment import Trial

    from hpsweep.compat import best_checkpoint

    trial = Trial("__fake", stub=True)
    assert isinstance(trial.run_metadata.checkpoint_manager.best_checkpoint_results, list)
    assert best_checkpoint(trial) is None  # no checkpoint yet, and no AttributeError swallowed into None


def test_ray_search_generators_keep_their_budget_where_compat_sets_it():
    from ray.tune.search import BasicVariantGenerator, SearchGenerator
    from ray.tune.search.optuna import OptunaSearch

    from hpsweep.compat import set_search_budget

    generator = SearchGenerator(OptunaSearch(metric="m", mode="max", space={}))
    for name in ("_total_samples", "_finished", "_counter"):
        assert hasattr(generator, name), f"SearchGenerator has no {name}"
    generator._finished, generator._counter = True, 3
    set_search_budget(generator, 5)
    assert generator._total_samples == 5 and generator._finished is False
    assert BasicVariantGenerator  # imported from the same module as in Ray's own layout


def test_mlflow_keeps_the_active_experiment_where_compat_reads_it():
    from mlflow.tracking import fluent

    from hpsweep.compat import active_experiment_id, restore_active_experiment

    assert hasattr(fluent, "_active_experiment_id")
    before = active_experiment_id()
    restore_active_experiment("12345")
    assert active_experiment_id() == "12345"
    restore_active_experiment(before)


def test_ray_records_the_address_of_ray_start_where_compat_looks(tmp_path, monkeypatch):
    from ray._common.utils import get_ray_address_file

    from hpsweep.compat import recorded_local_ray

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert recorded_local_ray() is None  # nothing recorded
    record = Path(get_ray_address_file(None))
    assert record.is_relative_to(tmp_path)
    record.parent.mkdir(parents=True)
    record.write_text("127.0.0.1:1")  # recorded, but no Ray runs there
    assert recorded_local_ray() is None


def test_ray_tune_keeps_the_trial_actors_default_environment_where_compat_changes_it():
    from ray.tune.execution import class_cache

    from hpsweep.compat import trial_actors_without_runtime_env

    assert '"PL_DISABLE_FORK": "1"' in inspect.getsource(class_cache)  # Ray Tune's default for every trial
    saved = dict(class_cache.DEFAULT_ENV_VARS)  # a sweep run earlier in this process may have removed it
    try:
        class_cache.DEFAULT_ENV_VARS["PL_DISABLE_FORK"] = "1"
        trial_actors_without_runtime_env()
        assert "PL_DISABLE_FORK" not in class_cache.DEFAULT_ENV_VARS
    finally:
        class_cache.DEFAULT_ENV_VARS.clear()
        class_cache.DEFAULT_ENV_VARS.update(saved)


def test_a_local_ray_head_starts_its_monitors_and_api_server_where_compat_leaves_them_out():
    from ray._private import node, parameter

    from hpsweep.compat import lean_local_ray

    head = inspect.getsource(node.Node.start_head_processes)
    assert "self._ray_params.no_monitor" in head and "self.start_api_server(" in head
    assert "include_log_monitor" in inspect.getsource(node.Node.start_ray_processes)
    for log_monitor in (False, True):
        with lean_local_ray(log_monitor):
            params = parameter.RayParams()
            assert params.no_monitor is True and params.include_log_monitor is (None if log_monitor else False)
            assert node.Node.start_api_server(None, include_dashboard=False, raise_on_failure=False) is None
    # and Ray's own again once the start is over
    assert parameter.RayParams().no_monitor is False and node.Node.start_api_server.__name__ == "start_api_server"


def test_ray_tune_lists_the_variables_it_forwards_where_compat_trims_them():
    from ray.tune.execution import class_cache

    from hpsweep.compat import tune_forwards_no_cloud_secrets

    assert '"AWS_SECRET_ACCESS_KEY"' in inspect.getsource(class_cache)  # what Ray Tune forwards by default
    saved = class_cache.ENV_VARS_TO_PROPAGATE  # a sweep run earlier in this process has trimmed it already
    try:
        class_cache.ENV_VARS_TO_PROPAGATE = set(saved) | {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
        tune_forwards_no_cloud_secrets()
        assert not any(name.startswith("AWS_") for name in class_cache.ENV_VARS_TO_PROPAGATE)
        assert class_cache.ENV_VARS_TO_PROPAGATE  # Ray's own variables are still forwarded
        assert "ENV_VARS_TO_PROPAGATE" in inspect.getsource(class_cache._ActorClassCache.get)
    finally:
        class_cache.ENV_VARS_TO_PROPAGATE = saved


def test_mlflow_checks_pinned_requirements_where_compat_skips_it():
    import mlflow.pyfunc
    from mlflow.utils import environment

    from hpsweep.compat import pinned_requirements_trusted

    modules = (environment, mlflow.pyfunc)
    checks = [module.warn_dependency_requirement_mismatches for module in modules]
    with pinned_requirements_trusted():
        for module, check in zip(modules, checks, strict=True):
            assert module.warn_dependency_requirement_mismatches is not check
            assert module.warn_dependency_requirement_mismatches(["torch==0.0.1"]) is None
    assert [module.warn_dependency_requirement_mismatches for module in modules] == checks
    # still the functions that saving a model, and loading it back to try its input example, call by this name
    assert "warn_dependency_requirement_mismatches(" in inspect.getsource(environment._process_pip_requirements)
    assert "warn_dependency_requirement_mismatches(" in inspect.getsource(mlflow.pyfunc.load_model)


def test_no_other_module_reaches_into_ray_or_mlflow_privates():
    """Only compat.py may read or write an attribute with a leading underscore on Ray or MLflow objects."""
    offenders = []
    for path in (REPO / "hpsweep").rglob("*.py"):
        if path.name == "compat.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("ray", "mlflow"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in node.module.split(".")):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in (
                    "fluent", "ray", "mlflow", "tune") and node.attr.startswith("_"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} touches {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)


def test_ray_tune_keeps_the_optuna_study_where_compat_adds_trials():
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from hpsweep.compat import add_finished_trials

    searcher = OptunaSearch(space=lambda trial: None, metric="m", mode="max")
    unit = optuna.distributions.FloatDistribution(0, 1)
    trial = optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": unit}, value=0.9)
    add_finished_trials(searcher, [trial])
    assert [t.value for t in searcher._ot_study.get_trials()] == [0.9]

