"""Finding sweeps in MLflow at any size: every search pages to the end, and a sweep's parent run is found
however many trial runs it has."""

from __future__ import annotations

import pytest

from conftest import spec_for
from hpsweep import contract as C


@pytest.fixture
def client(tmp_path):
    from mlflow import MlflowClient

    from hpsweep.track.writer import create_sqlite_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    create_sqlite_store(uri)
    return MlflowClient(uri)


def _runs(client, experiment_id: str, parent_tags: dict[str, str], trials: int) -> str:
    """A parent run with `parent_tags` and `trials` finished trial runs started after it."""
    parent = client.create_run(experiment_id, run_name="sweep-1", tags={C.SWEEP_TAG: "sweep-1", **parent_tags})
    for number in range(1, trials + 1):
        run = client.create_run(experiment_id, run_name=C.trial_run_name(number), tags={
            C.SWEEP_TAG: "sweep-1", C.PARENT_TAG: parent.info.run_id, C.TRIAL_TAG: f"t{number}"})
        client.log_metric(run.info.run_id, C.EPOCHS_RUN, 1.0)
        client.set_terminated(run.info.run_id, "FINISHED")
    return parent.info.run_id


@pytest.mark.parametrize("tagged", [True, False], ids=["role-tagged", "recorded-before-the-role-tag"])
def test_a_sweep_with_more_trial_runs_than_a_page_is_found_by_name(client, monkeypatch, tagged):
    """The parent of a sweep whose 60 trial runs started after it: the newest 50 runs tagged with the
    sweep id are all trials (what `status` used to read), yet the name must still lead to the parent."""
    from hpsweep.track import queries

    experiment = client.create_experiment("big")
    parent_id = _runs(client, experiment, {C.ROLE_TAG: C.SWEEP_ROLE} if tagged else {}, trials=60)
    monkeypatch.setattr(queries, "PAGE_SIZE", 7)  # pages of 7: every search must follow the page tokens
    assert queries.latest_parent(client, "big").info.run_id == parent_id
    trials = queries.trial_runs(client, client.get_run(parent_id))
    assert [r.info.run_name for r in trials] == [C.trial_run_name(n) for n in range(1, 61)]


def test_status_lists_every_trial_of_a_sweep_past_a_page(client, monkeypatch):
    from hpsweep.track import queries

    experiment = client.create_experiment("wide")
    _runs(client, experiment, {C.ROLE_TAG: C.SWEEP_ROLE}, trials=12)
    client.create_run(experiment, run_name=C.trial_run_name(1000), tags={  # sorts by number, not by name
        C.SWEEP_TAG: "sweep-1", C.PARENT_TAG: queries.latest_parent(client, "wide").info.run_id})
    monkeypatch.setattr(queries, "PAGE_SIZE", 5)
    status = queries.sweep_status("wide", client.tracking_uri)
    assert [row.name for row in status.trials] == [C.trial_run_name(n) for n in [*range(1, 13), 1000]]
    assert {row.epochs for row in status.trials[:12]} == {1}


def test_an_unknown_name_or_a_name_without_sweeps_is_bad_input(client, run_cli):
    client.create_experiment("empty")
    code, _, err = run_cli("status", "nothing-here", "--tracking-uri", client.tracking_uri)
    assert code == 2 and err.strip() == f"hpsweep: no sweep named 'nothing-here' in {client.tracking_uri}"
    code, _, err = run_cli("status", "empty", "--tracking-uri", client.tracking_uri)
    assert code == 2 and err.strip() == "hpsweep: experiment 'empty' holds no hpsweep sweep"


def test_a_new_sweeps_parent_carries_the_parent_only_role_tag(tmp_path):
    from hpsweep.track.tracker import SweepTracker

    spec = spec_for(tmp_path)
    tracker = SweepTracker(spec, "t-1", "name: t\n", f"sqlite:///{tmp_path / 'mlflow.db'}")
    record = tracker.start_trial("trial_a", {"lr": 0.01})
    tracker.wait()
    parent, trial = tracker.client.get_run(tracker.parent_id), tracker.client.get_run(record.run_id)
    assert parent.data.tags[C.ROLE_TAG] == C.SWEEP_ROLE and C.ROLE_TAG not in trial.data.tags
    assert trial.info.run_name == "trial-001" and C.trial_number(trial.info.run_name) == 1
    tracker.abort()
    tracker.wait()


@pytest.mark.parametrize(("epoch", "words"), [(1, "finished, 1 epoch"), (12, "finished, 12 epochs")])
def test_a_finished_trials_state_counts_its_epochs_in_english(epoch, words):
    assert C.state_words(C.StopReason.COMPLETED, epoch) == words
