"""What MLflow knows about a sweep: its latest parent run and the state of every trial."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpsweep.tracking import PARENT_TAG, SWEEP_TAG, tracking_uri


class UnknownSweep(LookupError):
    pass


@dataclass(frozen=True)
class TrialRow:
    name: str
    status: str
    stop_reason: str
    epochs: int
    best: float | None
    params: dict[str, str]
    run_id: str


@dataclass(frozen=True)
class SweepStatus:
    sweep_id: str
    experiment: str
    parent_run_id: str
    status: str
    metric: str
    trials: list[TrialRow]


def latest_parent(client: Any, name: str) -> Any:
    """The parent run of the latest sweep recorded in experiment `name` (a sweep's name or its
    tracking.experiment); UnknownSweep when there is none."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise UnknownSweep(f"no sweep named {name!r} in {client.tracking_uri}")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` != ''",
                              order_by=["attributes.start_time DESC"], max_results=50)
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    if not parents:
        raise UnknownSweep(f"experiment {name!r} holds no hpsweep sweep")
    return parents[0]


def sweep_status(name: str, uri: str | None = None) -> SweepStatus:
    """The latest sweep recorded in experiment `name` (a sweep's name, or its tracking.experiment)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(uri))
    parent = latest_parent(client, name)
    experiment = client.get_experiment(parent.info.experiment_id)
    metric = parent.data.params.get("metric", "")
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
                                  order_by=["attributes.run_name ASC"], max_results=10_000)
    rows = [_row(run, metric) for run in children]
    return SweepStatus(parent.data.tags[SWEEP_TAG], name, parent.info.run_id, parent.info.status, metric, rows)


def _row(run: Any, metric: str) -> TrialRow:
    metrics = run.data.metrics
    return TrialRow(run.info.run_name or run.info.run_id, run.info.status,
                    run.data.tags.get("hpsweep.stop_reason", ""), int(metrics.get("epochs_run", 0)),
                    metrics.get(f"best_{metric}"), dict(run.data.params), run.info.run_id)
