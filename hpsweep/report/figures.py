"""The report's figures: learning curves, importances, parallel coordinates, the metric against each parameter."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpsweep.report.analysis import log_scale
from hpsweep.report.gather import TrialResult
from hpsweep.search.space import Dimension, encode
from hpsweep.spec.params import IntRange, LogUniform, Uniform
from hpsweep.track.figures import pyplot


def save(figure: Any, path: Path) -> Path:
    plt = pyplot()
    try:
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path


def learning_curves(histories: Mapping[str, Sequence[tuple[int, float]]], metric: str,
                    pruned: Sequence[str] = ()) -> Any:
    """The top trials' curves, and dashed those of trials the scheduler pruned (`pruned` names them)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, points in histories.items():
        if points:
            cut = name in pruned
            axes.plot([p[0] for p in points], [p[1] for p in points], "x--" if cut else "o-", markersize=3,
                      label=f"{name} (pruned)" if cut else name, alpha=0.6 if cut else 1.0)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    top = len(histories) - len(pruned)
    axes.set_title(f"{metric} per epoch, top {top} trials" + (f" and {len(pruned)} pruned" if pruned else ""))
    if histories:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def importance_chart(found: Mapping[str, float], method: str) -> Any:
    plt = pyplot()
    names = list(found)[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    axes.barh(names, [found[n] for n in names], color="tab:blue")
    axes.set_xlabel(f"importance ({method})")
    figure.tight_layout()
    return figure


def _axis_values(values: Sequence[Any], param: Any) -> tuple[list[float], list[float], list[str]]:
    """Values placed on a 0-1 axis, with tick positions and labels."""
    if isinstance(param, Uniform | LogUniform | IntRange):
        low, high = param.bounds
        scale = math.log if log_scale(param) else float
        span = (scale(high) - scale(low)) or 1.0
        placed = [(scale(v) - scale(low)) / span for v in values]
        return placed, [0.0, 1.0], [f"{low:.3g}", f"{high:.3g}"]
    options = [str(encode(v, param)) for v in param.choice]
    step = 1 / max(1, len(options) - 1)
    placed = [options.index(str(encode(v, param))) * step if str(encode(v, param)) in options else 0.5
              for v in values]
    return placed, [i * step for i in range(len(options))], options


def parallel_coordinates(trials: Sequence[TrialResult], dims: Sequence[Dimension], metric: str) -> Any:
    """One line per finished trial through every parameter all of them have, coloured by the metric."""
    plt = pyplot()
    counted = [t for t in trials if t.counts]
    shared = [d for d in dims if all(d.name in t.params for t in counted)]
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * (len(shared) + 1)), 4))
    values = [float(t.best or 0) for t in counted]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    columns = [_axis_values([t.params[d.name] for t in counted], d.param) for d in shared]
    colormap = plt.get_cmap("viridis")
    for i in range(len(counted)):
        shade = (values[i] - low) / ((high - low) or 1.0)
        ys = [column[0][i] for column in columns] + [shade]
        axes.plot(range(len(ys)), ys, color=colormap(shade), alpha=0.8, linewidth=2.5 if i == 0 else 1.0)
    for x, column in enumerate(columns):
        axes.axvline(x, color="grey", linewidth=0.8)
        for tick, label in zip(column[1], column[2], strict=True):
            axes.annotate(label, (x, tick), fontsize=7, xytext=(3, 0), textcoords="offset points")
    axes.axvline(len(shared), color="grey", linewidth=0.8)
    axes.annotate(f"{low:.4g}", (len(shared), 0), fontsize=7, xytext=(3, 0), textcoords="offset points")
    axes.annotate(f"{high:.4g}", (len(shared), 1), fontsize=7, xytext=(3, 0), textcoords="offset points")
    axes.set_xticks(range(len(shared) + 1), [d.name for d in shared] + [metric], rotation=20, fontsize=8)
    axes.set_yticks([])
    axes.set_title("parallel coordinates (the best trial drawn thick)")
    figure.tight_layout()
    return figure


def parameter_plots(trials: Sequence[TrialResult], dims: Sequence[Dimension], metric: str,
                    warned: set[str]) -> Any:
    """The metric against each searched parameter, the searched range marked, the best trial starred."""
    plt = pyplot()
    columns = min(3, max(1, len(dims)))
    rows = math.ceil(len(dims) / columns) if dims else 1
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    counted = [t for t in trials if t.counts]
    for axes in grid.flat[len(dims):]:
        axes.set_visible(False)
    for axes, dim in zip(grid.flat, dims, strict=False):
        having = [t for t in counted if dim.name in t.params]
        ys = [float(t.best or 0) for t in having]
        if isinstance(dim.param, Uniform | LogUniform | IntRange):
            xs = [float(t.params[dim.name]) for t in having]
            axes.scatter(xs, ys, s=18)
            low, high = dim.param.bounds
            for edge in (low, high):
                axes.axvline(edge, color="grey", linestyle="--", linewidth=0.8)
            if log_scale(dim.param):
                axes.set_xscale("log")
            if having and having[0] is counted[0]:
                axes.scatter([xs[0]], [ys[0]], marker="*", s=160, color="tab:red", zorder=3)
        else:
            placed, ticks, labels = _axis_values([t.params[dim.name] for t in having], dim.param)
            axes.scatter(placed, ys, s=18)
            axes.set_xticks(ticks, labels, fontsize=8)
            if having and having[0] is counted[0]:
                axes.scatter([placed[0]], [ys[0]], marker="*", s=160, color="tab:red", zorder=3)
        title = dim.name + ("  (at the edge: widen)" if dim.name in warned else "")
        axes.set_title(title, fontsize=9, color="tab:red" if dim.name in warned else "black")
        axes.set_ylabel(metric, fontsize=8)
    figure.tight_layout()
    return figure
