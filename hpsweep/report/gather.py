"""The sweep report: what a person looks at after a sweep, built from what MLflow recorded.

Which trials won (leaderboard, learning curves), which hyperparameters mattered (Optuna's fANOVA
importances on a study rebuilt from the trials' results, a parallel-coordinates view), whether the
searched ranges were wide enough (per-parameter plots, warnings when the best trial sits at the edge
of a range), what stopped trials early, what the sweep cost, and a `best.yaml` to run next. Written
as files and as one self-contained HTML page, and logged to the sweep's parent run.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import math
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpsweep.search.space import Dimension, SearchSpace, _encode
from hpsweep.spec.params import Choice, IntRange, LogUniform, Uniform
from hpsweep.track.figures import _pyplot
from hpsweep.track.queries import RecordedSweep, find_sweep
from hpsweep.track.tracker import CONFUSION_FILE, PARENT_TAG, read_artifact_text, tracking_uri

log = logging.getLogger(__name__)
REPORT_ARTIFACTS = "report"
#: stop reasons of trials that never count as a result
FAILED = ("diverged", "error", "oom")
#: how close to an end of a range (as a fraction of it, on the search's own scale) counts as the edge
EDGE = 0.1
TOP_CURVES = 5


@dataclass(frozen=True)
class TrialResult:
    number: int
    name: str
    run_id: str
    status: str  #: MLflow's: FINISHED, FAILED, KILLED
    stop_reason: str  #: completed, early_stopped, scheduler, time_budget, diverged, error, oom, interrupted
    best: float | None
    epochs: int
    seconds: float
    params: dict[str, Any]  #: typed, as the trial received them

    @property
    def counts(self) -> bool:
        """A result that can win: finished with a finite metric, neither diverged nor failed."""
        return (self.best is not None and math.isfinite(self.best) and self.status == "FINISHED"
                and self.stop_reason not in FAILED)


@dataclass(frozen=True)
class EdgeWarning:
    param: str
    side: str  #: high or low
    value: Any
    message: str


@dataclass
class SweepReport:
    sweep_id: str
    experiment: str
    parent_run_id: str
    metric: str
    mode: str
    trials: list[TrialResult]  #: ranked: results best first, then the trials that did not count
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""
    warnings: list[EdgeWarning] = field(default_factory=list)
    stops: dict[str, int] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=dict)
    best_yaml: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def best(self) -> TrialResult | None:
        return self.trials[0] if self.trials and self.trials[0].counts else None

    def rank(self, trial: TrialResult) -> int | None:
        return self.trials.index(trial) + 1 if trial.counts else None


class ReportError(Exception):
    """The sweep cannot be reported on: unknown, or nothing recorded yet."""


# ---------------------------------------------------------------- gathering


def build_report(ref: str, uri: str | None = None) -> tuple[SweepReport, RecordedSweep, Any]:
    """Everything the report shows, read from MLflow: (report, the recorded sweep, the client)."""
    from mlflow import MlflowClient

    from hpsweep.track.queries import UnknownSweep

    client = MlflowClient(tracking_uri(uri))
    try:
        sweep = find_sweep(client, ref)
    except UnknownSweep as exc:
        raise ReportError(str(exc)) from None
    spec = sweep.spec
    metric, mode = spec.train.metrics()[0], spec.train.modes()[0]
    space = SearchSpace.of(spec)
    runs = client.search_runs([sweep.parent.info.experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` = '{sweep.parent.info.run_id}'",
                              max_results=10_000)
    if not runs:
        raise ReportError(f"sweep {sweep.sweep_id} has no trials recorded yet")
    trials = rank_trials([_trial(run, metric, space) for run in runs], mode)
    report = SweepReport(sweep.sweep_id, spec.experiment_name, sweep.parent.info.run_id, metric, mode, trials)
    report.importances, report.importance_note = importances(trials, space)
    report.warnings = edge_warnings(trials, space.dimensions())
    report.stops = dict(Counter(t.stop_reason or t.status.lower() for t in trials).most_common())
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    seconds = sum(t.seconds for t in trials)
    report.compute = {"trials": len(trials), "trial_epochs": sum(t.epochs for t in trials),
                      "trial_seconds": round(seconds, 1), "cpu_seconds": round(seconds * cpu, 1),
                      "gpu_seconds": round(seconds * gpu, 1)}
    if (info := sweep.parent.info).end_time and info.start_time:
        report.compute["sweep_seconds"] = round((info.end_time - info.start_time) / 1000, 1)
    if report.best is not None:
        report.best_yaml = best_yaml(sweep, report.best, space, report)
    return report, sweep, client


def _trial(run: Any, metric: str, space: SearchSpace) -> TrialResult:
    info, data = run.info, run.data
    name = info.run_name or info.run_id
    digits = "".join(c for c in name if c.isdigit())
    seconds = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else 0.0
    return TrialResult(int(digits) if digits else 0, name, info.run_id, info.status,
                       data.tags.get("hpsweep.stop_reason", ""), data.metrics.get(f"best_{metric}"),
                       int(data.metrics.get("epochs_run", 0)), seconds, space.from_logged(data.params))


def rank_trials(trials: Sequence[TrialResult], mode: str) -> list[TrialResult]:
    """Results best first (ties: the earlier trial first), then the trials that did not count, by number."""
    sign = -1.0 if mode == "max" else 1.0
    counted = sorted((t for t in trials if t.counts), key=lambda t: (sign * float(t.best or 0.0), t.number))
    return counted + sorted((t for t in trials if not t.counts), key=lambda t: t.number)


# ---------------------------------------------------------------- analysis


def _distribution(param: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, Uniform):
        return FloatDistribution(*param.uniform)
    if isinstance(param, LogUniform):
        return FloatDistribution(*param.loguniform, log=True)
    if isinstance(param, IntRange):
        low, high = param.int_
        return IntDistribution(low, high, step=param.step, log=param.log)
    return CategoricalDistribution([_encode(v, param) for v in param.choice])


def importances(trials: Sequence[TrialResult], space: SearchSpace) -> tuple[dict[str, float], str]:
    """fANOVA importances of the parameters every counted trial has, on an Optuna study rebuilt from the
    trials' results; a note instead when there is too little to learn from."""
    import optuna

    dims = {d.name: d.param for d in space.dimensions()}
    counted = [t for t in trials if t.counts]
    if len(counted) < 3 or not dims:
        return {}, "parameter importances need at least 3 finished trials and a searched parameter"
    if len({t.best for t in counted}) < 2:
        return {}, "every finished trial reached the same value: no parameter made a difference"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")  # the direction does not change importances
    for trial in counted:
        params = {k: _encode(v, dims[k]) for k, v in trial.params.items() if k in dims}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: _distribution(dims[k]) for k in params}, value=float(trial.best or 0)))
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as exc:
        return {}, f"parameter importances could not be computed: {exc}"
    if not found:
        return {}, "no searched parameter was taken by every finished trial"
    return {k: round(float(v), 4) for k, v in found.items()}, ""


def _log_scale(param: Any) -> bool:
    """Whether the search draws this range on a log scale."""
    return isinstance(param, LogUniform) or (isinstance(param, IntRange) and param.log)


def _position(value: Any, param: Any) -> float | None:
    """Where `value` sits in the parameter's searched range, 0 (low end) to 1 (high end), on the scale
    the search draws on; None for parameters without an order (or with fewer than three choices)."""
    if isinstance(param, IntRange) and len(param.values()) < 3:
        return None  # two values: each is an edge, so sitting on one says nothing
    if isinstance(param, Uniform | LogUniform | IntRange):
        low, high = param.bounds
        if _log_scale(param):
            low, high, value = math.log(low), math.log(high), math.log(value)
        return (float(value) - low) / (high - low) if high > low else None
    if isinstance(param, Choice):
        numbers = sorted(v for v in param.choice if isinstance(v, int | float) and not isinstance(v, bool))
        if len(numbers) < 3 or len(numbers) != len(param.choice) or value not in numbers:
            return None
        return numbers.index(value) / (len(numbers) - 1)
    return None


def edge_warnings(trials: Sequence[TrialResult], dims: Sequence[Dimension]) -> list[EdgeWarning]:
    """The tuning playbook's check: when the best trial sits at the edge of a searched range, better values
    may lie beyond it, so the range should be widened on that side before trusting the result."""
    best = next((t for t in trials if t.counts), None)
    if best is None:
        return []
    found = []
    for dim in dims:
        if dim.name not in best.params:
            continue
        value = best.params[dim.name]
        where = _position(value, dim.param)
        if where is None:
            continue
        side = "high" if where >= 1 - EDGE else "low" if where <= EDGE else None
        if side is None:
            continue
        if isinstance(dim.param, Choice):
            what = (f"add a value {'above' if side == 'high' else 'below'} {value} to {dim.path}: the best trial "
                    f"({best.name}) took the {'largest' if side == 'high' else 'smallest'} one")
        else:
            searched = dim.describe().split("   (when")[0]
            what = (f"widen {dim.name}.{side} ({dim.path}: {searched}): the best trial ({best.name}) took "
                    f"{value:.4g}, in the {'top' if side == 'high' else 'bottom'} {EDGE:.0%} of the range")
        found.append(EdgeWarning(dim.name, side, value, what))
    return found


def best_yaml(sweep: RecordedSweep, best: TrialResult, space: SearchSpace, report: SweepReport) -> str:
    """The sweep file with every searched value fixed to the best trial's: one trial, nothing searched.
    Relative paths become absolute, so the file works wherever it is saved."""
    import copy

    import yaml

    from hpsweep.spec import local_paths

    out = copy.deepcopy(dict(sweep.raw))
    for name, value in local_paths(sweep.spec):
        if not Path(value).expanduser().is_absolute():
            section, key = name.split(".")
            out[section][key] = str(sweep.spec.resolve_path(value).resolve())
    params = dict(best.params)
    section = out.setdefault("space", {})
    extras = set(section.get("params") or {})
    model = params.pop("model", None)
    if model is not None:
        out.setdefault("model", {})["name"] = model
    for kind in ("optimizer", "scheduler"):
        if kind not in params:
            continue
        chosen = params.pop(kind)
        prefix = f"{kind}.{chosen}."
        options = {k[len(prefix):]: params.pop(k) for k in list(params) if k.startswith(prefix)}
        section[kind] = {"name": chosen, **options} if options else chosen
        for stale in [k for k in params if k.startswith(f"{kind}.")]:
            params.pop(stale)
    for name, value in params.items():
        if name in extras:
            section["params"][name] = value
        else:
            section[name] = value
    search = out.get("search") or {}
    out["search"] = {k: v for k, v in search.items() if k in ("algorithm", "seed")} | {"num_trials": 1}
    if out["search"].get("algorithm") == "grid":
        out["search"]["algorithm"] = "random"
    header = (f"# The best trial of sweep {report.sweep_id}: {best.name}, {report.metric} {best.best:.6g}.\n"
              "# Every searched value is fixed to that trial's; run it with `hpsweep train` or `hpsweep run`.\n")
    return header + yaml.safe_dump(out, sort_keys=False)


# ---------------------------------------------------------------- figures


def _save(figure: Any, path: Path) -> Path:
    plt = _pyplot()
    try:
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path


def learning_curves(histories: Mapping[str, Sequence[tuple[int, float]]], metric: str) -> Any:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, points in histories.items():
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name, markersize=3)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(f"{metric} per epoch, top {len(histories)} trials")
    if histories:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def importance_chart(found: Mapping[str, float]) -> Any:
    plt = _pyplot()
    names = list(found)[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    axes.barh(names, [found[n] for n in names], color="tab:blue")
    axes.set_xlabel("importance (fANOVA)")
    figure.tight_layout()
    return figure


def _axis_values(values: Sequence[Any], param: Any) -> tuple[list[float], list[float], list[str]]:
    """Values placed on a 0-1 axis, with tick positions and labels."""
    if isinstance(param, Uniform | LogUniform | IntRange):
        low, high = param.bounds
        scale = math.log if _log_scale(param) else float
        span = (scale(high) - scale(low)) or 1.0
        placed = [(scale(v) - scale(low)) / span for v in values]
        return placed, [0.0, 1.0], [f"{low:.3g}", f"{high:.3g}"]
    options = [str(_encode(v, param)) for v in param.choice]
    step = 1 / max(1, len(options) - 1)
    placed = [options.index(str(_encode(v, param))) * step if str(_encode(v, param)) in options else 0.5
              for v in values]
    return placed, [i * step for i in range(len(options))], options


def parallel_coordinates(trials: Sequence[TrialResult], dims: Sequence[Dimension], metric: str) -> Any:
    """One line per finished trial through every parameter all of them have, coloured by the metric."""
    plt = _pyplot()
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
    plt = _pyplot()
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
            if _log_scale(dim.param):
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


# ---------------------------------------------------------------- writing


def write_report(ref: str, out: Path | None = None, uri: str | None = None, log_to_mlflow: bool = True
                 ) -> SweepReport:
    """Build the report of sweep `ref` into folder `out` (default `hpsweep-reports/<sweep id>`; replaced
    whole, never left half-written) and, unless told not to, log it to the sweep's parent run under report/."""
    report, sweep, client = build_report(ref, uri)
    out = Path(out) if out is not None else Path("hpsweep-reports") / report.sweep_id
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_files(report, sweep, client, staging)
        if out.exists():
            retired = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.files = {name: out / path.name for name, path in report.files.items()}
    if log_to_mlflow:
        client.log_artifacts(report.parent_run_id, str(out), REPORT_ARTIFACTS)
    return report


def _write_files(report: SweepReport, sweep: RecordedSweep, client: Any, folder: Path) -> None:
    dims = SearchSpace.of(sweep.spec).dimensions()
    files = report.files
    files["leaderboard_csv"] = _leaderboard_csv(report, dims, folder / "leaderboard.csv")
    (folder / "leaderboard.md").write_text(leaderboard_markdown(report, dims), encoding="utf-8")
    files["leaderboard_md"] = folder / "leaderboard.md"
    top = [t for t in report.trials if t.counts][:TOP_CURVES]
    histories = {t.name: [(int(m.step), float(m.value)) for m in
                          sorted(client.get_metric_history(t.run_id, report.metric), key=lambda m: m.step)]
                 for t in top}
    files["learning_curves"] = _save(learning_curves(histories, report.metric), folder / "learning_curves.png")
    if report.importances:
        files["importances"] = _save(importance_chart(report.importances), folder / "importances.png")
    if dims and len(top) >= 2:
        files["parallel_coordinates"] = _save(parallel_coordinates(report.trials, dims, report.metric),
                                              folder / "parallel_coordinates.png")
    if dims:
        warned = {w.param for w in report.warnings}
        files["parameters"] = _save(parameter_plots(report.trials, dims, report.metric, warned),
                                    folder / "parameters.png")
    best = report.best
    if best is not None:
        matrix = _confusion(client, best.run_id)
        if matrix is not None:
            from hpsweep.track.figures import confusion_matrix

            files["confusion_matrix"] = _save(confusion_matrix(matrix["matrix"], matrix["classes"]),
                                              folder / "confusion_matrix.png")
        (folder / "best.yaml").write_text(report.best_yaml, encoding="utf-8")
        files["best_yaml"] = folder / "best.yaml"
    summary = {k: v for k, v in asdict(report).items() if k not in ("files", "best_yaml", "trials")}
    summary["best_trial"] = best.name if best else None
    summary["leaderboard"] = [{"rank": report.rank(t), **asdict(t)} for t in report.trials]
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    files["summary"] = folder / "summary.json"
    (folder / "report.html").write_text(render_html(report, sweep, dims, folder), encoding="utf-8")
    files["html"] = folder / "report.html"


def _confusion(client: Any, run_id: str) -> dict[str, Any] | None:
    try:
        text = read_artifact_text(client, run_id, CONFUSION_FILE)
    except Exception:
        return None  # a regression sweep, or a trial that never reported one
    return json.loads(text)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _leaderboard_rows(report: SweepReport, dims: Sequence[Dimension], exact: bool = False
                      ) -> tuple[list[str], list[list[str]]]:
    """The leaderboard's cells: rounded for people, or `exact` (the CSV, for scripts)."""
    names = [d.name for d in dims]  # the searched parameters, in the space's order
    show = str if exact else _value
    header = ["rank", "trial", "status", "stop_reason", f"best_{report.metric}", "epochs", *names]
    rows = [[str(report.rank(t) or "-"), t.name, t.status, t.stop_reason,
             ("" if t.best is None else repr(t.best) if exact else f"{t.best:.6g}"), str(t.epochs),
             *[show(t.params[n]) if n in t.params else "" for n in names]] for t in report.trials]
    return header, rows


def _leaderboard_csv(report: SweepReport, dims: Sequence[Dimension], path: Path) -> Path:
    header, rows = _leaderboard_rows(report, dims, exact=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def leaderboard_markdown(report: SweepReport, dims: Sequence[Dimension]) -> str:
    header, rows = _leaderboard_rows(report, dims)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
tr.best td { background: #eaf6ea; font-weight: bold; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.4em 0.8em; margin: 0.3em 0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], highlight_first: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    best = ' class="best"'
    body = "".join(f"<tr{best if highlight_first and i == 0 else ''}>"
                   + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: SweepReport, sweep: RecordedSweep, dims: Sequence[Dimension], folder: Path) -> str:
    """One page, every image inlined: it opens from a file, an e-mail or MLflow's artifact view alike."""
    best = report.best
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hpsweep report: "
             f"{esc(report.sweep_id)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Sweep {esc(report.sweep_id)}</h1>",
             f"<p>Experiment <b>{esc(report.experiment)}</b>, parent run <code>{esc(report.parent_run_id)}</code>; "
             f"{len(report.trials)} trials, metric <b>{esc(report.metric)}</b> ({esc(report.mode)}).</p>"]
    if best is not None:
        parts.append(f"<p>Best: <b>{esc(best.name)}</b> with {esc(report.metric)} = <b>{best.best:.6g}</b> "
                     f"after {best.epochs} epochs.</p>")
    else:
        parts.append("<p>No trial finished with a result.</p>")
    parts.append("<h2>Range warnings</h2>")
    parts += ([f'<div class="warning">{esc(w.message)}</div>' for w in report.warnings]
              or ["<p>No best value sits at the edge of its searched range.</p>"])
    header, rows = _leaderboard_rows(report, dims)
    parts += ["<h2>Leaderboard</h2>", _table(header, rows, highlight_first=best is not None)]
    sections = [("learning_curves", "Learning curves of the top trials"),
                ("importances", "Parameter importances"),
                ("parallel_coordinates", "Parallel coordinates"),
                ("parameters", "The metric against each parameter"),
                ("confusion_matrix", "Confusion matrix of the best trial (validation)")]
    for key, title in sections:
        if key in report.files:
            parts += [f"<h2>{esc(title)}</h2>", _image(report.files[key], title)]
        if key == "importances":
            if report.importances:
                parts.append(_table(["parameter", "importance"],
                                    [[k, f"{v:.3f}"] for k, v in report.importances.items()]))
            else:
                parts += [f"<h2>{esc(title)}</h2>", f"<p>{esc(report.importance_note)}</p>"]
    parts += ["<h2>How trials ended</h2>",
              _table(["reason", "trials"], [[k, str(v)] for k, v in report.stops.items()]),
              "<h2>Compute used</h2>",
              _table(["measure", "value"], [[k.replace("_", " "), _value(v)] for k, v in report.compute.items()])]
    if report.best_yaml:
        parts += ["<h2>best.yaml</h2>", f"<pre>{esc(report.best_yaml)}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------- comparing two sweeps


@dataclass(frozen=True)
class Comparison:
    a: SweepReport
    b: SweepReport
    space: list[tuple[str, str, str]]  #: (parameter, as sweep A has it, as B has it), only where they differ
    settings: list[tuple[str, str, str]]  #: the same for the sweep's other settings


def _space_terms(spec: Any) -> dict[str, str]:
    space = SearchSpace.of(spec)
    terms = {d.name: d.describe() for d in space.dimensions()}
    terms.update({k: f"fixed {_value(v)}" for k, v in space.fixed().items() if k not in terms})
    return terms


def _settings(spec: Any) -> dict[str, str]:
    search = spec.search
    return {"trainable": spec.trainable, "data.source": spec.data.source, "model": str(spec.model.names()),
            "train.epochs": str(spec.train.epochs), "train.metric": ",".join(spec.train.metrics()),
            "search.algorithm": search.algorithm, "search.num_trials": str(spec.num_trials),
            "search.startup_trials": str(spec.startup_trials or "-"),
            "search.scheduler": search.scheduler.name,
            "resources": f"cpu {spec.resources.cpu:g}, gpu {spec.resources.gpu:g}"}


def compare_sweeps(ref_a: str, ref_b: str, uri: str | None = None) -> Comparison:
    """The two sweeps' reports, and how their search spaces and settings differ."""
    a, sweep_a, _ = build_report(ref_a, uri)
    b, sweep_b, _ = build_report(ref_b, uri)

    def differ(left: dict[str, str], right: dict[str, str]) -> list[tuple[str, str, str]]:
        names = list(left) + [k for k in right if k not in left]
        return [(n, left.get(n, "default"), right.get(n, "default")) for n in names if left.get(n) != right.get(n)]

    return Comparison(a, b, differ(_space_terms(sweep_a.spec), _space_terms(sweep_b.spec)),
                      differ(_settings(sweep_a.spec), _settings(sweep_b.spec)))
