"""The driver settles a sweep however its run ends, and never hides why it ended."""

from __future__ import annotations

import logging

import pytest

from conftest import spec_for


def _live(tmp_path):
    from hpsweep.sweep.live import LIVE, LiveSweep
    from hpsweep.sweep.state import SweepState
    from hpsweep.track.tracker import SweepTracker

    spec = spec_for(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(spec, "t-1", "name: t\n", uri)
    state = SweepState("t-1", "t", "f", {}, {}, str(tmp_path / "t.yaml"), str(tmp_path), uri)
    live = LIVE["t-1"] = LiveSweep(tracker, None, state, tmp_path / "t-1")
    return live


def test_an_error_stays_the_error_even_when_recording_it_fails_too(tmp_path, caplog):
    """A sweep that fails while a write to MLflow has also failed (here: a tag for a run that does not
    exist, refused by the real store) reports its own error; the failed write is logged beside it."""
    from hpsweep.sweep.driver import closing_out
    from hpsweep.sweep.live import LIVE

    live = _live(tmp_path)
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="the original failure"), closing_out(live):
        live.tracker.client.set_tag("0" * 32, "k", "v")  # queued; the store refuses it on the writer thread
        raise ValueError("the original failure")
    assert "recording it failed too: MlflowException: Run with id=" in caplog.text
    assert "t-1" not in LIVE and live.state.status == "interrupted"
    assert live.tracker.client.get_run(live.tracker.parent_id).info.status == "KILLED"


def test_without_an_error_a_failed_write_is_raised(tmp_path):
    from mlflow.exceptions import MlflowException

    from hpsweep.sweep.driver import closing_out

    live = _live(tmp_path)
    with pytest.raises(MlflowException), closing_out(live) as outcome:
        live.tracker.client.set_tag("0" * 32, "k", "v")
        outcome["completed"] = True
