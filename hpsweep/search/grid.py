"""The sampler behind `algorithm: grid` (its own module: importing it imports optuna)."""

from __future__ import annotations

from typing import Any

import optuna


class GridSampler(optuna.samplers.BruteForceSampler):
    """BruteForceSampler, which enumerates conditional spaces once each, minus its `study.stop()`.

    That call raises outside `study.optimize`, as under Ray Tune's ask-and-tell; there the number
    of trials (the grid's size) already ends the sweep.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise
