"""Writing the report: its files (leaderboard CSV and Markdown, figures, summary.json, best.yaml) and one
self-contained HTML page, replaced whole in their folder and logged to the sweep's parent run."""

from __future__ import annotations

import base64
import csv
import html
import json
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hpsweep.contract import CONFUSION_FILE, PROMOTION_TAG, REPORT_ARTIFACTS, StopReason
from hpsweep.report import figures
from hpsweep.report.analysis import build_report
from hpsweep.report.confirmation import confirmation_html
from hpsweep.report.extras import directions, history_figure
from hpsweep.report.gather import TOP_CURVES, SweepReport
from hpsweep.search.space import Dimension, SearchSpace
from hpsweep.storage import results_root
from hpsweep.track.figures import confusion_matrix
from hpsweep.track.queries import RecordedSweep, read_artifact_text
from hpsweep.track.uris import run_page

#: rows of the leaderboard on the page and in leaderboard.md; leaderboard.csv has every trial
LEADERBOARD_SHOWN = 50


def write_report(ref: str, out: Path | None = None, uri: str | None = None, log_to_mlflow: bool = True,
                 storage: str | None = None) -> SweepReport:
    """Build the report of sweep `ref` into folder `out` (default: report/ in the sweep's results folder,
    where `hpsweep run` writes it; replaced whole, never left half-written) and, unless told not to, log
    it to the sweep's parent run under report/."""
    report, sweep, client = build_report(ref, uri)
    out = Path(out) if out is not None else results_root(storage) / report.sweep_id / "report"
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
    dims = SearchSpace.of(sweep.spec).trained_dimensions()
    files = report.files
    files["leaderboard_csv"] = _leaderboard_csv(report, dims, folder / "leaderboard.csv")
    (folder / "leaderboard.md").write_text(leaderboard_markdown(report, dims), encoding="utf-8")
    files["leaderboard_md"] = folder / "leaderboard.md"
    top = [t for t in report.trials if t.counts][:TOP_CURVES]
    pruned = [t for t in report.trials if t.stop_reason == StopReason.SCHEDULER and t not in top][:TOP_CURVES]
    histories = {t.name: [(int(m.step), float(m.value)) for m in
                          sorted(client.get_metric_history(t.run_id, report.metric), key=lambda m: m.step)]
                 for t in [*top, *pruned]}
    curves = figures.learning_curves(histories, report.metric, [t.name for t in pruned])
    files["learning_curves"] = figures.save(curves, folder / "learning_curves.png")
    if (history := history_figure(report.trials, report.metric, report.mode)) is not None:
        files["history"] = figures.save(history, folder / "optimization_history.png")
    if report.importances:
        chart = figures.importance_chart(report.importances, report.importance_method)
        files["importances"] = figures.save(chart, folder / "importances.png")
    if dims and len(top) >= 2:
        files["parallel_coordinates"] = figures.save(figures.parallel_coordinates(report.trials, dims, report.metric),
                                              folder / "parallel_coordinates.png")
    if dims:
        warned = {w.param for w in report.warnings}
        files["parameters"] = figures.save(figures.parameter_plots(report.trials, dims, report.metric, warned),
                                    folder / "parameters.png")
    best = report.best
    if best is not None:
        matrix = _confusion(client, best.run_id)
        if matrix is not None:
            files["confusion_matrix"] = figures.save(confusion_matrix(matrix["matrix"], matrix["classes"]),
                                              folder / "confusion_matrix.png")
        (folder / "best.yaml").write_text(report.best_yaml, encoding="utf-8")
        files["best_yaml"] = folder / "best.yaml"
    summary = {k: v for k, v in asdict(report).items() if k not in ("files", "best_yaml", "trials")}
    summary["best_trial"] = best.name if best else None
    summary["leaderboard"] = [{"rank": report.rank(t), **asdict(t)} for t in report.trials]
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    files["summary"] = folder / "summary.json"
    experiment = sweep.parent.info.experiment_id
    links = {t.name: run_page(client.tracking_uri, experiment, t.run_id) for t in report.trials}
    (folder / "report.html").write_text(render_html(report, sweep, dims, folder, links), encoding="utf-8")
    files["html"] = folder / "report.html"


def _confusion(client: Any, run_id: str) -> dict[str, Any] | None:
    try:
        text = read_artifact_text(client, run_id, CONFUSION_FILE)
    except Exception:
        return None  # a regression sweep, or a trial that never reported one
    return json.loads(text)


def value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _leaderboard_rows(report: SweepReport, dims: Sequence[Dimension], exact: bool = False
                      ) -> tuple[list[str], list[list[str]]]:
    """The leaderboard's cells: rounded for people, or `exact` (the CSV, for scripts)."""
    names = [d.name for d in dims]  # the searched parameters, in the space's order
    show = str if exact else value_text
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


def _more(report: SweepReport) -> str:
    """The line under a leaderboard cut to LEADERBOARD_SHOWN rows, or ''."""
    hidden = len(report.trials) - LEADERBOARD_SHOWN
    return f"The other {hidden} trials are in leaderboard.csv, with every trial." if hidden > 0 else ""


def leaderboard_markdown(report: SweepReport, dims: Sequence[Dimension]) -> str:
    """The top LEADERBOARD_SHOWN trials (leaderboard.csv holds them all)."""
    header, rows = _leaderboard_rows(report, dims)
    rows = rows[:LEADERBOARD_SHOWN]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    if more := _more(report):
        lines += ["", more]
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
.scroll { max-height: 30em; overflow: auto; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
.scroll table { margin: 0; }
.scroll th { position: sticky; top: 0; }
table.sortable th { cursor: pointer; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
"""

#: a click on a header of a `sortable` table sorts its rows by that column (numbers as numbers, empty
#: and '-' cells last either way); a second click reverses. Inline, so the page needs no network.
_SORT_SCRIPT = """
function sortRows(table, column, descending) {
  const body = table.tBodies[0];
  const key = row => {
    const text = row.cells[column].textContent.trim();
    if (text === "" || text === "-") return null;
    const number = Number(text);
    return Number.isNaN(number) ? text.toLowerCase() : number;
  };
  const rows = Array.from(body.rows).map(row => [key(row), row]);
  rows.sort(([a], [b]) => {
    if (a === null || b === null) return (a === null) - (b === null);
    const order = typeof a === typeof b ? (a < b ? -1 : a > b ? 1 : 0) : (typeof a === "number" ? -1 : 1);
    return descending ? -order : order;
  });
  rows.forEach(([, row]) => body.appendChild(row));
}
document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
    const descending = th.dataset.order === "asc";
    table.querySelectorAll("th").forEach(other => delete other.dataset.order);
    th.dataset.order = descending ? "desc" : "asc";
    sortRows(table, column, descending);
  }));
});
"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], highlight_first: bool = False,
           links: dict[str, str] | None = None, sortable: bool = False) -> str:
    """A table; a cell whose text `links` names becomes a link (a trial to its MLflow run); `sortable`:
    a click on a header sorts by it (_SORT_SCRIPT)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    best = ' class="best"'
    links = links or {}

    def cell(text: str) -> str:
        shown = html.escape(text)
        return f'<a href="{html.escape(links[text])}">{shown}</a>' if text in links else shown

    body = "".join(f"<tr{best if highlight_first and i == 0 else ''}>"
                   + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    kind = ' class="sortable"' if sortable else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _heading(report: SweepReport, sweep: RecordedSweep) -> list[str]:
    """The page's start: the sweep, its description, what it searched for, and any promotion's result."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hpsweep report: "
             f"{esc(report.sweep_id)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Sweep {esc(report.sweep_id)}</h1>",
             *([f"<p><i>{esc(sweep.spec.description)}</i></p>"] if sweep.spec.description else []),
             f"<p>Experiment <b>{esc(report.experiment)}</b>, parent run <code>{esc(report.parent_run_id)}</code>; "
             f"{len(report.trials)} trials, metric <b>{esc(report.metric)}</b> ({esc(report.mode)}).</p>"]
    promotions = {k.removeprefix(f"{PROMOTION_TAG}."): v for k, v in sweep.parent.data.tags.items()
                  if k.startswith(f"{PROMOTION_TAG}.")}
    return parts + [f"<p>Promotion to <b>@{esc(alias)}</b>: {esc(what)}</p>"
                    for alias, what in sorted(promotions.items())]


def render_html(report: SweepReport, sweep: RecordedSweep, dims: Sequence[Dimension], folder: Path,
                links: dict[str, str] | None = None) -> str:
    """One page, every image inlined: it opens from a file, an e-mail or MLflow's artifact view alike.
    `links`: each trial's name to its run in the MLflow UI."""
    best = report.best
    esc = html.escape
    parts = _heading(report, sweep) + confirmation_html(report.confirmation, report.metric.removeprefix("val_"))
    if best is not None:
        parts.append(f"<p>Best: <b>{esc(best.name)}</b> with {esc(report.metric)} = <b>{best.best:.6g}</b> "
                     f"after {best.epochs} epochs.</p>")
    else:
        parts.append("<p>No trial finished with a result.</p>")
    parts.append("<h2>Range warnings</h2>")
    parts += ([f'<div class="warning">{esc(w.message)}</div>' for w in report.warnings]
              or ["<p>No best value sits at the edge of its searched range.</p>"])
    header, rows = _leaderboard_rows(report, dims)
    parts += ["<h2>Leaderboard</h2>", '<div class="scroll">'
              + _table(header, rows[:LEADERBOARD_SHOWN], highlight_first=best is not None, links=links,
                       sortable=True) + "</div>"]
    if more := _more(report):
        parts.append(f"<p>{esc(more)}</p>")
    sections = [("history", "Optimisation history: each trial and the best so far"),
                ("learning_curves", "Learning curves of the top trials and of pruned ones"),
                ("importances", "Parameter importances"),
                ("parallel_coordinates", "Parallel coordinates"),
                ("parameters", "The metric against each parameter"),
                ("confusion_matrix", "Confusion matrix of the best trial (validation)")]
    for key, title in sections:
        if key in report.files:
            parts += [f"<h2>{esc(title)}</h2>", _image(report.files[key], title)]
        if key == "importances":
            if report.importances:
                way = directions(report.trials, dims, report.mode)
                parts.append(_table(["parameter", f"importance ({report.importance_method})", "direction"],
                                    [[k, f"{v:.3f}", way.get(k, "-")] for k, v in report.importances.items()]))
            else:
                parts += [f"<h2>{esc(title)}</h2>", f"<p>{esc(report.importance_note)}</p>"]
    parts += ["<h2>How trials ended</h2>",
              _table(["reason", "trials"], [[k, str(v)] for k, v in report.stops.items()]),
              "<h2>Compute used</h2>",
              _table(["measure", "value"], [[k.replace("_", " "), value_text(v)] for k, v in report.compute.items()])]
    if report.best_yaml:
        parts += ["<h2>best.yaml</h2>", f"<pre>{esc(report.best_yaml)}</pre>"]
    parts.append(f"<script>{_SORT_SCRIPT}</script></body></html>")
    return "\n".join(parts)
