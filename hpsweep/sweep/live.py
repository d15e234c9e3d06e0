"""The driver-side state of running sweeps, found by sweep id.

Ray Tune pickles its callbacks, stopper and search algorithm with the experiment and unpickles them on
a resume; those keep only the sweep id and find the live objects here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsweep.storage import short_of_space
from hpsweep.sweep.interrupt import stop_gracefully
from hpsweep.sweep.state import SweepState
from hpsweep.track.tracker import SweepTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One thing that happened to a trial, for a live display."""

    event: str  #: start, epoch, end
    trial: int
    params: dict[str, Any]
    epoch: int = 0
    value: float | None = None
    status: str = "RUNNING"


@dataclass
class LiveSweep:
    """The driver-side objects of a running sweep. Ray Tune pickles its callbacks, stopper and search
    algorithm with the experiment and unpickles them on a resume; those keep only the sweep id and
    find the live objects here."""

    tracker: SweepTracker
    on_progress: Callable[[Progress], None] | None
    state: SweepState
    folder: Path
    started: float = field(default_factory=time.monotonic)
    spent_before: float = 0.0
    saved_at: float = 0.0
    reconciled: bool = False
    fault: str | None = None  #: why the sweep stopped itself (a full disk), when it did

    @property
    def deadline(self) -> float | None:
        budget = self.state.time_budget
        return None if budget is None else self.started + budget - self.spent_before

    def account(self, every: float = 0.0) -> None:
        """Record the time spent so far (every few seconds while running: a kill -9 loses at most that).
        While running (`every` > 0), a disk short of space or a save that fails stops the sweep as Ctrl-C
        does, with `fault` saying why; the final save (`every` 0) raises."""
        now, fault = time.monotonic(), None
        if now - self.saved_at >= every:
            self.state.elapsed_s = self.spent_before + now - self.started
            try:
                self.state.save(self.folder)
            except OSError as exc:
                if not every:
                    raise
                fault = f"cannot write to {self.folder}: {exc.strerror or exc}"
            self.saved_at = now
        if every and self.fault is None and (fault := fault or short_of_space(self.folder)):
            self.fault = fault
            log.error("%s; stopping the sweep (it can be resumed)", fault)
            stop_gracefully()


LIVE: dict[str, LiveSweep] = {}
