"""What the sweep report adds to the leaderboard, after optuna-dashboard and W&B's sweep page: how the
best value improved trial by trial, and which way each important parameter pushes the metric."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from hpsweep.report.gather import TrialResult
from hpsweep.search.space import Dimension


def history_figure(trials: Sequence[TrialResult], metric: str, mode: str) -> Any | None:
    """Optuna's optimisation-history plot (each trial's value and the best so far, in trial order) of a
    study rebuilt from the trials that count; None with fewer than two."""
    import optuna

    counted = sorted((t for t in trials if t.counts), key=lambda t: t.number)
    if len(counted) < 2:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for trial in counted:
        study.add_trial(optuna.trial.create_trial(value=float(trial.best), user_attrs={"name": trial.name}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=metric)
    axes.set_xlabel("trial (in the order they were recorded)")
    figure = axes.get_figure()
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    return figure


def directions(trials: Sequence[TrialResult], dims: Sequence[Dimension], mode: str) -> dict[str, str]:
    """Which way each parameter helps, from the trials that count: for numbers the sign of the rank
    correlation with the metric (`larger helps`, `smaller helps`, or `no clear direction` below 0.2), for
    choices the option with the best mean result."""
    counted = [t for t in trials if t.counts]
    found = {}
    for dim in dims:
        pairs = [(t.params[dim.name], float(t.best)) for t in counted  # type: ignore[arg-type]
                 if dim.name in t.params and t.params[dim.name] is not None]
        if len(pairs) < 3:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v, _ in pairs):
            rho = _spearman([float(v) for v, _ in pairs], [m for _, m in pairs])
            if rho is None or abs(rho) < 0.2:
                found[dim.name] = "no clear direction"
            else:
                found[dim.name] = ("larger" if (rho > 0) == (mode == "max") else "smaller") + f" helps (ρ {rho:+.2f})"
        else:
            means: dict[str, list[float]] = {}
            for value, metric in pairs:
                means.setdefault(str(value), []).append(metric)
            pick = max if mode == "max" else min
            best = pick(means, key=lambda k: sum(means[k]) / len(means[k]))
            found[dim.name] = f"best on average: {best}"
    return found


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (scikit-learn's SciPy), None when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rho = float(spearmanr(xs, ys).statistic)
    return rho if math.isfinite(rho) else None
