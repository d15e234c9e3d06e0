"""`hpsweep status`, `report` and `compare`: what MLflow recorded of a sweep, found by name, file or run id."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from hpsweep.cli.common import EXIT_OK, tracking_uri_option
from hpsweep.errors import UserError

SWEEP_HELP = "a sweep's name, its YAML file, or its parent run ID"


def cmd_status(args: argparse.Namespace) -> int:
    from hpsweep.track.queries import sweep_status

    if args.address is not None or args.name is None:
        return _jobs_status(args)
    name = args.name
    if name.endswith((".yaml", ".yml")):
        from hpsweep.spec.sweep_spec import load_spec

        name = load_spec(name).experiment_name
    status = sweep_status(name, args.tracking_uri)
    print(f"sweep {status.sweep_id} ({status.status}), parent run {status.parent_run_id}")
    print(f"{'trial':<10} {'status':<9} {'stopped by':<13} {'epochs':>6}  {'best ' + status.metric:>18}  params")
    for row in status.trials:
        best = f"{row.best:.4g}" if row.best is not None else "-"
        params = "  ".join(f"{k}={v}" for k, v in row.params.items())
        print(f"{row.name:<10} {row.status:<9} {row.stop_reason:<13} {row.epochs:>6}  {best:>18}  {params}")
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
                              log_to_mlflow=not args.no_log)
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
    for title, diffs in (("search space", found.space), ("settings", found.settings)):
        if diffs:
            print(f"{title} differs:")
            for name, left, right in diffs:
                print(f"  {name}: A {left}  |  B {right}")
    return EXIT_OK


def register(verbs: Any) -> None:
    p = verbs.add_parser("status", help="the trials of the latest run of a sweep (MLflow), or the sweeps submitted "
                                        "to a cluster (--address)")
    p.add_argument("name", metavar="NAME", nargs="?", help="the sweep's name (its MLflow experiment), or its YAML file")
    tracking_uri_option(p)
    p.add_argument("--address", help="list the sweeps submitted to this cluster (its dashboard URL)")
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser("report", help="the sweep report: leaderboard, curves, importances, range warnings, "
                         "best.yaml and one HTML page; logged to the sweep's parent run")
    p.add_argument("sweep", metavar="SWEEP", help=SWEEP_HELP)
    p.add_argument("--out", metavar="DIR", help="where to write it (default: hpsweep-reports/<sweep id>)")
    p.add_argument("--no-log", action="store_true", help="write the files only; log nothing to MLflow")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_report)

    p = verbs.add_parser("compare", help="two sweeps' best trials side by side, and how their spaces differ")
    p.add_argument("sweep_a", metavar="SWEEP_A", help=SWEEP_HELP)
    p.add_argument("sweep_b", metavar="SWEEP_B", help=SWEEP_HELP)
    tracking_uri_option(p)
    p.set_defaults(func=cmd_compare)
