"""`hpsweep status`, `report` and `compare`: what MLflow recorded of a sweep, found by name, file or run id."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from hpsweep.cli.common import EXIT_OK, storage_option, tracking_uri_option
from hpsweep.cli.render import number, short
from hpsweep.contract import FAILED_REASONS, StopReason, state_words
from hpsweep.errors import UserError

SWEEP_HELP = "a sweep's name, its YAML file, or its parent run ID"


def cmd_status(args: argparse.Namespace) -> int:
    from hpsweep.track.queries import sweep_status

    if args.address is not None:
        return _jobs_status(args)
    if args.name is None:  # no sweep named: the sweeps this store holds
        return cmd_list(args)
    status = sweep_status(args.name, args.tracking_uri)
    for line in status_lines(status):
        print(line)
    return EXIT_OK


#: status lines stay within this many columns (a terminal's default width with room to spare)
STATUS_WIDTH = 100
_ENDED = {"RUNNING": "running", "KILLED": StopReason.INTERRUPTED, "FAILED": StopReason.ERROR}


def status_lines(status: Any) -> list[str]:
    """The sweep's trials, best first (the best marked *), in the live display's words and rounding."""
    ranked = sorted(status.trials, key=lambda r: _rank(r, status.mode))
    best = ranked[0] if ranked and _rank(ranked[0], status.mode)[0] == 0 else None
    lines = [f"sweep {status.sweep_id} ({status.status.lower()}), {len(ranked)} trials, parent run "
             f"{status.parent_run_id}",
             f"  {'trial':<10} {'state':<28} {'best ' + status.metric:>18}  params"]
    for row in ranked:
        value = f"{row.best:.4g}" if row.best is not None else "-"
        stop = row.stop_reason or _ENDED.get(row.status, StopReason.COMPLETED)
        state = state_words(stop, row.epochs, status.scheduler)
        params = "  ".join(f"{k}={short(number(v))}" for k, v in row.params.items())
        line = f"{'*' if row is best else ' '} {row.name:<10} {state:<28} {value:>18}  {params}"
        lines.append(line if len(line) <= STATUS_WIDTH else line[:STATUS_WIDTH - 1] + "…")
    return lines


def _rank(row: Any, mode: str) -> tuple[int, float, str]:
    usable = row.best is not None and math.isfinite(row.best) and row.stop_reason not in FAILED_REASONS
    return (0 if usable else 1, (-row.best if mode == "max" else row.best) if usable else 0.0, row.name)


def cmd_list(args: argparse.Namespace) -> int:
    """The sweeps recorded in the tracking store, newest first."""
    from hpsweep.track.queries import recorded_sweeps
    from hpsweep.track.writer import tracking_uri

    uri = tracking_uri(args.tracking_uri)
    sweeps = recorded_sweeps(uri)
    if not sweeps:
        print(f"no sweeps recorded in {uri} (`hpsweep run SWEEP.yaml` records one there)")
        return EXIT_OK
    print(f"{len(sweeps)} sweep{'s' if len(sweeps) != 1 else ''} in {uri}, newest first:")
    print(f"  {'sweep':<36} {'state':<9} {'trials':>9}  {'best':<24} started")
    for sweep in sweeps:
        best = f"{sweep.metric} {sweep.best:.4g}" if sweep.best is not None else "-"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.started))
        print(f"  {sweep.sweep_id:<36} {sweep.state:<9} {f'{sweep.trials}/{sweep.budget}':>9}  {best:<24} {started}")
    return EXIT_OK


def _jobs_status(args: argparse.Namespace) -> int:
    """The sweeps submitted to the cluster (those of NAME only, when given)."""
    from hpsweep.sweep.submit import jobs_address, submitted_sweeps

    name = args.name
    if name is not None and name.endswith((".yaml", ".yml")):
        from hpsweep.spec.sweep_spec import load_spec

        name = load_spec(name).name
    try:
        jobs = submitted_sweeps(args.address, name)
    except ConnectionError as exc:
        raise UserError(f"--address: no Ray jobs API at {jobs_address(args.address)} ({exc})") from None
    print(f"sweeps submitted to {jobs_address(args.address)}:")
    print(f"{'job':<48} {'sweep':<20} {'status':<10} started")
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started)) if job.started else "-"
        print(f"{job.job_id:<48} {job.sweep:<20} {job.status:<10} {started}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the sweep report (files and one HTML page) and log it to the sweep's parent run."""
    from hpsweep.report.html import write_report
    from hpsweep.sweep.quiet import quiet

    with quiet(args.verbose):  # MLflow draws a progress bar for every artifact it downloads
        report = write_report(args.sweep, Path(args.out) if args.out else None, args.tracking_uri,
                              log_to_mlflow=not args.no_log, storage=args.storage)
    best = report.best
    print(f"sweep {report.sweep_id}: {len(report.trials)} trials"
          + (f", best {best.name} with {report.metric} {best.best:.4g}" if best is not None else ", no result"))
    for warning in report.warnings:
        print(f"warning: {warning.message}")
    if report.importances:
        print(f"importance ({report.importance_method}): "
              + ", ".join(f"{k} {v:.2f}" for k, v in report.importances.items()))
    print(f"report: {report.files['html']}")
    if not args.no_log:
        print(f"logged to run {report.parent_run_id} under report/")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """Two sweeps' best trials side by side, and how their search spaces differ."""
    from hpsweep.cli.render import comparison_rows
    from hpsweep.report.compare import compare_sweeps
    from hpsweep.sweep.quiet import quiet

    with quiet(args.verbose):
        found = compare_sweeps(args.sweep_a, args.sweep_b, args.tracking_uri)
    rows = comparison_rows(found)
    width = max(len(r[0]) for r in rows) + 2
    column = max(len(r[1]) for r in rows) + 2
    print(f"{'':<{width}}{'A':<{column}}B")
    for label, left, right in rows:
        print(f"{label:<{width}}{left:<{column}}{right}")
    print()
    if not found.space and not found.settings:
        print("the two sweeps search the same space with the same settings")
    for title, diffs in (("search space differs", found.space), ("settings differ", found.settings)):
        if diffs:
            print(f"{title}:")
            for name, left, right in diffs:
                print(f"  {name}: A {left}  |  B {right}")
    return EXIT_OK


def register(verbs: Any) -> None:
    p = verbs.add_parser("status", help="the trials of the latest run of a sweep (MLflow), or the sweeps submitted "
                                        "to a cluster (--address)")
    p.add_argument("name", metavar="SWEEP", nargs="?", help=SWEEP_HELP + "; without it, the sweeps the store holds")
    tracking_uri_option(p)
    p.add_argument("--address", help="list the sweeps submitted to this cluster (its dashboard URL)")
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser("list", help="the sweeps recorded in the tracking store, newest first: state, trials, "
                                      "best value")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_list)

    p = verbs.add_parser("report", help="the sweep report: leaderboard, curves, importances, range warnings, "
                         "best.yaml and one HTML page; logged to the sweep's parent run")
    p.add_argument("sweep", metavar="SWEEP", help=SWEEP_HELP)
    p.add_argument("--out", metavar="DIR", help="where to write it (default: report/ in the sweep's results "
                                                "folder, where `run` writes it)")
    storage_option(p)
    p.add_argument("--no-log", action="store_true", help="write the files only; log nothing to MLflow")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_report)

    p = verbs.add_parser("compare", help="two sweeps' best trials side by side, and how their spaces differ")
    p.add_argument("sweep_a", metavar="SWEEP_A", help=SWEEP_HELP)
    p.add_argument("sweep_b", metavar="SWEEP_B", help=SWEEP_HELP)
    tracking_uri_option(p)
    p.set_defaults(func=cmd_compare)
