"""Logging the best trial's model at the end of a sweep: rebuilt from its best checkpoint on the driver,
logged as an MLflow pyfunc with a signature and an input example, ready to register."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hpsweep.compat import active_experiment_id, restore_active_experiment
from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.track.records import TrialRecord
from hpsweep.train.data.base import PreparedData


def model_logger(spec: SweepSpec, data: PreparedData) -> Callable[[str, TrialRecord, str], str | None]:
    """Logs the best trial's best checkpoint as an MLflow model, with a signature and an input example."""

    def log_best(trial_id: str, record: TrialRecord, uri: str) -> str | None:
        import mlflow

        from hpsweep.registry.model_format import describe, log_model
        from hpsweep.search.space import SearchSpace
        from hpsweep.train.checkpoint import load_checkpoint
        from hpsweep.train.trial import architecture, build_net

        if record.best_checkpoint is None:
            return None
        with record.best_checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder))
        space = SearchSpace.of(spec)
        params = space.resolve(space.from_logged(mlflow.MlflowClient(uri).get_run(record.run_id).data.params))
        net = build_net(spec.model_copy(update={"model": spec.model.model_copy(update={"pretrained": None})}),
                        data, params)
        net.load_state_dict(state["model"])
        description = describe(architecture(spec, params), list(spec.model.hidden_sizes), net, data.preprocessing,
                                data.input_shape, data.num_outputs)
        client = mlflow.MlflowClient(uri)
        ended = client.get_run(record.run_id).info
        with _active_experiment(ended.experiment_id), mlflow.start_run(run_id=record.run_id):
            model_uri = log_model(net.eval(), description, example=_input_example(spec, data)).model_uri
        # reopening the run to log the model moved its end to now: the trial's duration is its training's
        client.set_terminated(record.run_id, ended.status, end_time=ended.end_time)
        return model_uri

    return log_best


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
