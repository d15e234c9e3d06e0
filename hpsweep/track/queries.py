"""What MLflow knows about a sweep: its latest parent run and the state of every trial."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsweep.spec import SweepSpec
from hpsweep.track.tracker import BASE_DIR_TAG, EFFECTIVE_SWEEP, PARENT_TAG, SWEEP_TAG, read_artifact_text, tracking_uri


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


@dataclass(frozen=True)
class RecordedSweep:
    """A sweep as MLflow recorded it: its parent run and the sweep file it ran (any --set applied)."""

    parent: Any
    spec: SweepSpec
    raw: dict[str, Any]

    @property
    def sweep_id(self) -> str:
        return str(self.parent.data.tags[SWEEP_TAG])


def find_sweep(client: Any, ref: str) -> RecordedSweep:
    """A sweep's latest parent run, from its name, its YAML file, or the parent run's ID."""
    import yaml

    from hpsweep.spec import load_spec, validate_data

    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            parent = client.get_run(ref)
        except Exception:
            raise UnknownSweep(f"no run {ref} in {client.tracking_uri}") from None
    else:
        parent = latest_parent(client, load_spec(ref).experiment_name if ref.endswith((".yaml", ".yml")) else ref)
    if SWEEP_TAG not in parent.data.tags or PARENT_TAG in parent.data.tags:
        raise UnknownSweep(f"run {parent.info.run_id} is not an hpsweep sweep's parent run")
    raw = yaml.safe_load(read_artifact_text(client, parent.info.run_id, EFFECTIVE_SWEEP))
    base_dir = Path(parent.data.tags.get(BASE_DIR_TAG, "."))
    return RecordedSweep(parent, validate_data(raw, parent.data.tags.get("hpsweep.source", "<sweep>"), base_dir), raw)


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
