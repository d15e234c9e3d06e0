"""What MLflow knows about sweeps: their parent runs, their trials, the sweep file each ran.

Every search pages through all its results: a sweep of any size is found by name, and nothing is
silently cut at a page boundary.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsweep import contract as C
from hpsweep.errors import UserError
from hpsweep.spec.sweep_spec import SweepSpec

#: runs asked for per page of a search (MLflow's stores answer up to 50,000 at once)
PAGE_SIZE = 1000


class UnknownSweep(UserError, LookupError):
    """No sweep of that name, file or parent run id in the tracking store."""


def _every_page(fetch: Callable[[str | None], Any]) -> Iterator[list[Any]]:
    """Call `fetch(page_token)` for each page of an MLflow search, following the page tokens to the end."""
    token = None
    while True:
        page = fetch(token)
        yield list(page)
        if not (token := getattr(page, "token", None)):
            return


def pages(client: Any, experiment_ids: Sequence[str], filter_string: str = "",
          order_by: Sequence[str] | None = None) -> Iterator[list[Any]]:
    """The runs matching a search, page by page."""
    return _every_page(lambda token: client.search_runs(
        list(experiment_ids), filter_string=filter_string, order_by=list(order_by or []), max_results=PAGE_SIZE,
        page_token=token))


def search_all(client: Any, experiment_ids: Sequence[str], filter_string: str = "",
               order_by: Sequence[str] | None = None) -> list[Any]:
    """Every run matching a search (all pages)."""
    return [run for page in pages(client, experiment_ids, filter_string, order_by) for run in page]


def model_versions(client: Any, name: str) -> list[Any]:
    """Every version of a registered model (all pages)."""
    return [version for page in _every_page(lambda token: client.search_model_versions(
        f"name='{name}'", max_results=PAGE_SIZE, page_token=token)) for version in page]


def is_parent(run: Any) -> bool:
    """A sweep's parent run: a confirmation's too, which is nested under the sweep it confirms."""
    tags = run.data.tags
    return C.SWEEP_TAG in tags and (C.PARENT_TAG not in tags
                                    or tags.get(C.ROLE_TAG) in (C.SWEEP_ROLE, C.CONFIRMATION_ROLE))


def latest_parent(client: Any, name: str) -> Any:
    """The parent run of the latest sweep recorded in experiment `name` (a sweep's name or its
    tracking.experiment); UnknownSweep when there is none."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise UnknownSweep(f"no sweep named {name!r} in {client.tracking_uri}")
    newest_first = ["attributes.start_time DESC"]
    role = f"tags.`{C.ROLE_TAG}` = '{C.SWEEP_ROLE}'"
    newest = next(pages(client, [experiment.experiment_id], role, newest_first))  # the first page is enough
    return newest[0] if newest else _untagged_parent(client, experiment.experiment_id, name)


def _untagged_parent(client: Any, experiment_id: str, name: str) -> Any:
    """A sweep recorded before parent runs carried ROLE_TAG: its parent is the newest run tagged with a
    sweep id that has no parent of its own, however many trial runs come before it."""
    for page in pages(client, [experiment_id], f"tags.`{C.SWEEP_TAG}` != ''", ["attributes.start_time DESC"]):
        for run in page:
            if is_parent(run):
                return run
    raise UnknownSweep(f"experiment {name!r} holds no hpsweep sweep")


def trial_runs(client: Any, parent: Any) -> list[Any]:
    """Every trial run of a sweep, by trial number (trial-999 before trial-1000)."""
    runs = [run for run in search_all(client, [parent.info.experiment_id],
                                      f"tags.`{C.PARENT_TAG}` = '{parent.info.run_id}'")
            if C.ROLE_TAG not in run.data.tags]  # a confirmation's parent run is nested here too
    return sorted(runs, key=lambda run: (C.trial_number(run.info.run_name) or 0, run.info.run_name or ""))


def read_artifact_text(client: Any, run_id: str, path: str) -> str:
    """A run's artifact file as text, through a temporary copy that is removed (MLflow's own download
    would leave a folder behind in /tmp every time)."""
    with tempfile.TemporaryDirectory(prefix="hpsweep-") as tmp:
        return Path(client.download_artifacts(run_id, path, dst_path=tmp)).read_text(encoding="utf-8")


@dataclass(frozen=True)
class RecordedSweep:
    """A sweep as MLflow recorded it: its parent run and the sweep file it ran (any --set applied)."""

    parent: Any
    spec: SweepSpec
    raw: dict[str, Any]

    @property
    def sweep_id(self) -> str:
        return str(self.parent.data.tags[C.SWEEP_TAG])


def find_sweep(client: Any, ref: str) -> RecordedSweep:
    """A sweep's latest parent run, from its name, its YAML file, or the parent run's ID."""
    import yaml

    from hpsweep.spec.sweep_spec import validate_data

    parent = _parent(client, ref)
    raw = yaml.safe_load(read_artifact_text(client, parent.info.run_id, C.EFFECTIVE_SWEEP))
    base_dir = Path(parent.data.tags.get(C.BASE_DIR_TAG, "."))
    return RecordedSweep(parent, validate_data(raw, parent.data.tags.get(C.SOURCE_TAG, "<sweep>"), base_dir), raw)


def _parent(client: Any, ref: str) -> Any:
    """The parent run named by its ID, or the latest of the sweep (experiment) named `ref` or by its file."""
    if ref.endswith((".yaml", ".yml")):
        from hpsweep.spec.sweep_spec import load_spec

        return latest_parent(client, load_spec(ref).experiment_name)
    if not re.fullmatch(r"[0-9a-f]{32}", ref):
        return latest_parent(client, ref)
    try:
        parent = client.get_run(ref)
    except Exception:
        raise UnknownSweep(f"no run {ref} in {client.tracking_uri}") from None
    if not is_parent(parent):
        raise UnknownSweep(f"run {parent.info.run_id} is not an hpsweep sweep's parent run")
    return parent


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
    mode: str = "max"
    scheduler: str = ""  #: the trial scheduler (asha, median, ...), which prunes trials


def sweep_status(name: str, uri: str | None = None) -> SweepStatus:
    """The latest sweep recorded in experiment `name` (a sweep's name or file, or its tracking.experiment),
    or the sweep whose parent run has that ID."""
    from mlflow import MlflowClient

    from hpsweep.track.writer import tracking_uri

    client = MlflowClient(tracking_uri(uri))
    parent = _parent(client, name)
    metric = parent.data.params.get("metric", "")
    rows = [_row(run, metric) for run in trial_runs(client, parent)]
    params = parent.data.params
    return SweepStatus(parent.data.tags[C.SWEEP_TAG], name, parent.info.run_id, parent.info.status, metric, rows,
                       mode=params.get("mode", "max"),
                       scheduler=params.get("search.scheduler") or params.get("scheduler", ""))  # older sweeps


def _row(run: Any, metric: str) -> TrialRow:
    metrics = run.data.metrics
    return TrialRow(run.info.run_name or run.info.run_id, run.info.status, run.data.tags.get(C.STOP_TAG, ""),
                    int(metrics.get(C.EPOCHS_RUN, 0)), metrics.get(C.best_metric(metric)), dict(run.data.params),
                    run.info.run_id)


def close_sweep_runs(uri: str, sweep_id: str, status: str, reason: str) -> int:
    """Close every run of a sweep that is still open (a sweep given up with --restart); how many."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    experiments = [e.experiment_id for page in _every_page(lambda token: client.search_experiments(
        view_type=ViewType.ACTIVE_ONLY, max_results=PAGE_SIZE, page_token=token)) for e in page]
    runs = search_all(client, experiments, f"tags.`{C.SWEEP_TAG}` = '{sweep_id}' and attributes.status = 'RUNNING'")
    for run in runs:
        client.set_tag(run.info.run_id, C.STOP_TAG, reason)
        client.set_terminated(run.info.run_id, status)
    return len(runs)


@dataclass(frozen=True)
class SweepSummary:
    """One sweep recorded in a tracking store, as `hpsweep list` shows it."""

    sweep_id: str
    experiment: str
    state: str  #: the parent run's status, lower case
    trials: int  #: trial runs recorded
    budget: int  #: trials the sweep asked for (a resume may have changed it)
    metric: str
    best: float | None
    started: float  #: seconds since the epoch


def recorded_sweeps(uri: str | None = None) -> list[SweepSummary]:
    """Every sweep in the store, newest first: one search for all parent runs and one for all trials."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from hpsweep.track.writer import tracking_uri

    client = MlflowClient(tracking_uri(uri))
    experiments = {e.experiment_id: e.name for page in _every_page(lambda token: client.search_experiments(
        view_type=ViewType.ACTIVE_ONLY, max_results=PAGE_SIZE, page_token=token)) for e in page}
    if not experiments:
        return []
    parents = search_all(client, list(experiments), f"tags.`{C.ROLE_TAG}` = '{C.SWEEP_ROLE}'")
    counts: dict[str, int] = {}
    for run in search_all(client, list(experiments), f"tags.`{C.PARENT_TAG}` != ''"):
        sweep = run.data.tags.get(C.SWEEP_TAG)
        counts[sweep] = counts.get(sweep, 0) + 1
    summaries = []
    for parent in parents:
        sweep, params = parent.data.tags[C.SWEEP_TAG], parent.data.params
        metric = params.get("metric", "")
        budget = parent.data.tags.get(C.NUM_TRIALS_TAG) or params.get("num_trials") or "0"
        summaries.append(SweepSummary(sweep, experiments.get(parent.info.experiment_id, ""),
                                      parent.info.status.lower(), counts.get(sweep, 0), int(budget), metric,
                                      parent.data.metrics.get(C.best_metric(metric)), parent.info.start_time / 1000))
    return sorted(summaries, key=lambda s: s.started, reverse=True)
