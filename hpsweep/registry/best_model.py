"""Logging the best trial's model at the end of a sweep: rebuilt from its best checkpoint on the driver,
logged as an MLflow pyfunc with a signature and an input example, ready to register."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hpsweep import contract as C
from hpsweep.compat import active_experiment_id, restore_active_experiment
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.track.records import TrialRecord
from hpsweep.train.data.base import PreparedData


def model_logger(spec: SweepSpec, data: PreparedData) -> Callable[[str, TrialRecord, str], str | None]:
    """Logs the best trial's best checkpoint as an MLflow model, with a signature and an input example."""

    def log_best(trial_id: str, record: TrialRecord, uri: str) -> str | None:
        from hpsweep.train.checkpoint import load_checkpoint

        if record.best_checkpoint is None:
            return None
        with record.best_checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder))
        return log_trained(spec, data, record.run_id, state, uri)

    return log_best


def log_recorded(spec: SweepSpec, data: PreparedData, run_id: str, uri: str) -> str:
    """Log the model of a finished trial run from the best checkpoint its run keeps in MLflow; its URI."""
    import tempfile

    import mlflow

    from hpsweep.train.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory(prefix="hpsweep-") as tmp:
        folder = mlflow.MlflowClient(uri).download_artifacts(run_id, C.CHECKPOINT_ARTIFACTS, dst_path=tmp)
        state = load_checkpoint(Path(folder))
    return log_trained(spec, data, run_id, state, uri)


def log_trained(spec: SweepSpec, data: PreparedData, run_id: str, state: dict[str, Any], uri: str) -> str:
    """Rebuild the trial's model with its checkpoint's weights and log it to its (finished) run."""
    import mlflow

    from hpsweep.registry.model_format import describe, log_model
    from hpsweep.search.space import SearchSpace
    from hpsweep.train.trial import architecture, build_net

    client = mlflow.MlflowClient(uri)
    logged = {k: v for k, v in client.get_run(run_id).data.params.items() if k != C.SEED_PARAM}
    space = SearchSpace.of(spec)
    params = space.resolve(space.from_logged(logged))
    net = build_net(spec.model_copy(update={"model": spec.model.model_copy(update={"pretrained": None})}),
                    data, params)
    net.load_state_dict(state["model"])
    description = describe(architecture(spec, params), list(spec.model.hidden_sizes), net, data.preprocessing,
                           data.input_shape, data.num_outputs)
    ended = client.get_run(run_id).info
    with _active_experiment(ended.experiment_id), mlflow.start_run(run_id=run_id):
        model_uri = log_model(net.eval(), description, example=_input_example(spec, data)).model_uri
    # reopening the run to log the model moved its end to now: the trial's duration is its training's
    client.set_terminated(run_id, ended.status, end_time=ended.end_time)
    return model_uri


@contextlib.contextmanager
def _active_experiment(experiment_id: str) -> Iterator[None]:
    """MLflow reopens a run only inside its own experiment as the process's active one; switch to it for
    the model logging and put back whatever the caller had (a notebook may have set its own)."""
    import mlflow

    previous = active_experiment_id()
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        restore_active_experiment(previous)


def _input_example(spec: SweepSpec, data: PreparedData) -> Any:
    """A few raw inputs as a served model receives them: uint8 images, or the CSV's feature columns."""
    if data.is_image:
        import torch

        return data.val.take(torch.arange(min(2, len(data.val)))).numpy()
    import pandas as pd

    features = [c["name"] for c in data.preprocessing["columns"]]
    return pd.read_csv(spec.resolve_path(spec.data.path), nrows=2)[features]
