"""What `hpsweep run` is about to do: start a sweep in a new folder of the results storage, or resume the
unfinished sweep of the same name (its settings must match), or abandon it (--restart)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpsweep.spec.sweep_spec import SweepSpec
from hpsweep.storage import results_root
from hpsweep.sweep.state import SweepState, check_unchanged, fingerprint, settings_of, sweep_lock, unfinished_sweep
from hpsweep.track.queries import close_sweep_runs
from hpsweep.track.writer import tracking_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPlan:
    """What `hpsweep run` is about to do: start a sweep, or resume the unfinished one of the same name."""

    root: Path  #: the results storage
    state: SweepState
    resuming: bool
    abandoned: tuple[Path, SweepState] | None = None  #: an unfinished sweep that --restart gives up
    #: the configurations to run in place of a search, each once (a confirmation's: `promote --confirm`)
    fixed: list[dict[str, Any]] | None = None
    parent_tags: dict[str, str] = field(default_factory=dict)  #: extra tags of a new sweep's parent run

    @property
    def sweep_id(self) -> str:
        return self.state.sweep_id

    @property
    def folder(self) -> Path:
        return self.root / self.state.sweep_id


def plan_sweep(spec: SweepSpec, raw: dict[str, Any], *, storage: str | None = None, uri: str | None = None,
               restart: bool = False) -> SweepPlan:
    """Resume the latest unfinished sweep of this name if there is one (its settings must match, see
    state.check_unchanged), otherwise plan a new sweep. `restart` plans a new one regardless."""
    root = results_root(storage)
    previous = unfinished_sweep(root, spec.name)
    if previous is not None and not restart:
        _, state = previous
        check_unchanged(state, spec)
        state = replace(state, raw=raw, num_trials=spec.num_trials, time_budget=spec.search.time_budget,
                        tracking_uri=_absolute_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or state.tracking_uri))
        return SweepPlan(root, state, resuming=True)
    state = SweepState(_new_sweep_id(root, spec.name), spec.name, fingerprint(spec), settings_of(spec), raw,
                       spec.source, str(spec.base_dir), _absolute_uri(tracking_uri(uri)), num_trials=spec.num_trials,
                       time_budget=spec.search.time_budget)
    return SweepPlan(root, state, resuming=False, abandoned=previous)


def _new_sweep_id(root: Path, name: str) -> str:
    stamp = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = stamp, 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


def _absolute_uri(uri: str) -> str:
    """A relative SQLite URI made absolute, so a resume from another folder finds the same database."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def abandon(folder: Path, state: SweepState) -> None:
    """Give up an unfinished sweep (--restart): it is never resumed, and its open runs are closed."""
    with sweep_lock(folder, state.sweep_id):
        close_sweep_runs(state.tracking_uri, state.sweep_id, "KILLED", reason="abandoned")
        state.status = "abandoned"
        state.save(folder)
    log.info("abandoned sweep %s", state.sweep_id)
