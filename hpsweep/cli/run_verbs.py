"""`hpsweep run`, `resume` and `submit`: a sweep on Ray Tune, here or on a cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpsweep.cli.common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    load_with_sets,
    searching,
    set_option,
    storage_option,
    tracking_uri_option,
)
from hpsweep.cli.live import LiveView
from hpsweep.cli.render import number, short
from hpsweep.contract import StopReason, trial_run_name
from hpsweep.errors import UserError
from hpsweep.loading import import_without_gc
from hpsweep.sweep.interrupt import exit_code, importing, terminate_as_interrupt
from hpsweep.sweep.ray_session import RaySession
from hpsweep.sweep.state import STATE_FILE
from hpsweep.sweep.workers import trial_preload
from hpsweep.track.uris import check_tracking_uri, runs_page, ui_command


def _budget_sets(args: argparse.Namespace) -> list[str]:
    """--trials and --concurrency, as the --set they stand for."""
    sets = [f"search.num_trials={args.trials}"] if getattr(args, "trials", None) is not None else []
    if getattr(args, "concurrency", None) is not None:
        sets.append(f"search.max_concurrent={args.concurrency}")
    return sets


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, then run the sweep on Ray Tune (or resume its unfinished run), showing a table of trials."""
    spec, raw = load_with_sets(args.file, [*args.set, *_budget_sets(args)])
    return _launch(args, spec, raw, Path(args.file).read_text(encoding="utf-8"), f"hpsweep run {args.file}")


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume the unfinished sweep called NAME with the settings it was started with."""
    import yaml

    from hpsweep.spec.overrides import apply_sets
    from hpsweep.spec.sweep_spec import validate_data
    from hpsweep.sweep.state import unfinished_sweep

    root = _results_root(args.storage)
    found = unfinished_sweep(root, args.name)
    if found is None:
        raise UserError(f"{args.name}: no unfinished sweep of that name in {root}")
    _, state = found
    raw = apply_sets(state.raw, _budget_sets(args))
    spec = validate_data(raw, state.source, base_dir=Path(state.base_dir))
    return _launch(args, spec, raw, yaml.safe_dump(raw, sort_keys=False), f"hpsweep resume {args.name}")


def _results_root(storage: str | None, check: bool = False) -> Path:
    """The results storage; with `check`, UserError naming --storage unless it can be made and written
    (nothing is created here: a sweep stopped by bad input leaves no folder)."""
    from hpsweep.storage import results_root, unwritable

    try:
        root = results_root(storage)
    except ValueError as exc:
        raise UserError(f"--storage: {exc}") from None
    if check and (blocked := unwritable(root)) is not None:
        raise UserError(f"--storage: cannot use {root} as the results folder: {blocked} is not a writable folder")
    return root


def _launch(args: argparse.Namespace, spec: Any, raw: dict[str, Any], sweep_text: str, again: str) -> int:
    from hpsweep.storage import min_free_mb
    from hpsweep.sweep.plan import plan_sweep

    check_tracking_uri(args.tracking_uri)
    _results_root(args.storage, check=True)
    try:
        min_free_mb()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    plan = plan_sweep(spec, raw, storage=args.storage, uri=args.tracking_uri, restart=getattr(args, "restart", False))
    if plan.abandoned is not None:
        print(f"--restart: sweep {plan.abandoned[1].sweep_id} is abandoned (its open runs are closed); "
              f"starting afresh")
    verb = "resuming" if plan.resuming else "starting"
    workers = f", {spec.resources.workers} workers per trial" if spec.resources.workers > 1 else ""
    print(f"{verb} sweep {plan.sweep_id}: {spec.num_trials} trials{workers}, {searching(spec)}, "
          f"{spec.search.scheduler.name} scheduler, optimising {spec.train.metrics()[0]}")
    with terminate_as_interrupt():  # SIGTERM from here on ends the sweep as Ctrl-C does
        return _run_and_report(args, spec, plan, sweep_text, again)


def _run_and_report(args: argparse.Namespace, spec: Any, plan: Any, sweep_text: str, again: str) -> int:
    # Ray starts (or is joined) while the driver's imports load: torch, MLflow and Ray Tune take seconds
    session = RaySession(args.verbose, trial_preload(spec))
    try:
        with importing():
            run_sweep = import_without_gc("hpsweep.sweep.driver").run_sweep

        table = LiveView(spec.train.metrics()[0], spec.train.modes()[0], spec.num_trials, sys.stdout.isatty(),
                         scheduler=spec.search.scheduler.name)
        try:
            outcome = run_sweep(spec, plan, sweep_text, on_progress=table.update, verbose=args.verbose,
                                session=session, on_status=table.note)
        finally:
            table.close()
    except KeyboardInterrupt:  # while starting, or a second Ctrl-C: say whether there is a sweep to resume
        session.close()
        kept = (plan.folder / STATE_FILE).exists()
        print("interrupted: " + (f"`{again}` resumes the sweep" if kept else "nothing was started or recorded"),
              file=sys.stderr)
        return exit_code(EXIT_INTERRUPTED)
    finally:
        session.close()  # run_sweep closed it already, unless the import failed or was interrupted
    total = len(outcome.trials)
    if outcome.interrupted:
        why = f"stopped: {outcome.fault}" if outcome.fault else "interrupted"
        print(f"{why}: {total} of {spec.num_trials} trials started; state saved in {outcome.results}; "
              f"open runs are marked KILLED. {'Free some space, then ' if outcome.fault else ''}`{again}` resumes it")
    else:
        print(f"{total} trials: {total - outcome.failed} finished, {outcome.failed} failed")
    if outcome.best is not None:
        _, record = outcome.best
        print(f"best: {trial_run_name(record.number)}, {outcome.metric} {record.best:.4g}")
        print("  " + "  ".join(f"{k}={short(number(v))}" for k, v in outcome.best_params.items()))
    print(f"MLflow: experiment {outcome.experiment!r}, parent run {outcome.parent_run_id} ({outcome.tracking_uri})")
    if outcome.report is not None:
        print(f"report: {outcome.report} (also under report/ in the parent run's artifacts)")
    page = runs_page(outcome.tracking_uri, outcome.experiment_id, outcome.metric, outcome.mode)
    command = ui_command(outcome.tracking_uri)
    print(f"see it: {command}, then open {page}" if command else f"see it: {page}")
    if outcome.interrupted:
        return EXIT_FAILURE if outcome.fault else exit_code(EXIT_INTERRUPTED)
    if total and outcome.best is None:  # every trial failed, diverged or reported nothing usable
        diverged = sum(r.stop == StopReason.DIVERGED for r in outcome.trials.values())
        print(f"no usable trial: {diverged} of {total} diverged, {outcome.failed} failed; nothing to promote "
              f"(lower the learning rate or see the runs' hpsweep.error tags)")
        return EXIT_FAILURE
    return EXIT_FAILURE if total and outcome.failed == total else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit the sweep to a Ray cluster as a job; print its id, and with --follow its log."""
    from hpsweep.sweep.quiet import quiet
    from hpsweep.sweep.submit import follow, jobs_address, submit

    path = Path(args.file)
    spec, _ = load_with_sets(args.file, args.set)  # the file and its --set are checked here, before uploading
    run_args = [a for item in args.set for a in ("--set", item)]
    run_args += ["--trials", str(args.trials)] if args.trials else []
    import ray.job_submission  # noqa: F401  (Ray sets up its loggers on import: import, then silence)

    try:
        with quiet(args.verbose):
            job_id = submit(spec, path, workdir=Path(args.workdir), address=args.address, storage=args.storage,
                            tracking_uri=args.tracking_uri, run_args=run_args)
    except ConnectionError as exc:
        raise UserError(f"--address: no Ray jobs API at {jobs_address(args.address)} ({exc})") from None
    address = jobs_address(args.address)
    print(f"submitted sweep {spec.name} as job {job_id} to {address}")
    if not args.follow:
        print(f"follow it: hpsweep submit ... --follow, `ray job logs -f {job_id} --address {address}`, "
              f"or hpsweep status --address {address}")
        return EXIT_OK
    status = follow(job_id, args.address, write=lambda chunk: print(chunk, end="", flush=True))
    print(f"job {job_id}: {status}")
    return EXIT_OK if status == "SUCCEEDED" else EXIT_FAILURE


def register(verbs: Any) -> None:
    p = verbs.add_parser("run", help="run a sweep on Ray Tune and record it in MLflow")
    p.add_argument("file", metavar="FILE", help="a sweep YAML file")
    set_option(p, "override the sweep file")
    p.add_argument("--trials", type=int, help="search.num_trials")
    p.add_argument("--concurrency", type=int, help="search.max_concurrent")
    p.add_argument("--restart", action="store_true",
                   help="abandon this sweep's unfinished run, if any, and start afresh (default: resume it)")
    tracking_uri_option(p)
    storage_option(p)
    p.set_defaults(func=cmd_run, exit_at_once=True)

    p = verbs.add_parser("resume", help="resume an interrupted sweep by name, with the settings it started with")
    p.add_argument("name", metavar="NAME", help="the sweep's name")
    p.add_argument("--trials", type=int, help="raise (or lower) search.num_trials")
    tracking_uri_option(p)
    storage_option(p)
    p.set_defaults(func=cmd_resume, exit_at_once=True)

    p = verbs.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray job (uploads the working folder)")
    p.add_argument("file", metavar="FILE", help="a sweep YAML file")
    p.add_argument("--address", help="the cluster's dashboard, e.g. http://HEAD:8265 (default: $RAY_JOBS_ADDRESS, "
                                     "$RAY_ADDRESS if an http URL, or http://127.0.0.1:8265)")
    p.add_argument("--follow", action="store_true",
                   help="stream the job's log until it ends; exit 1 unless it succeeds")
    p.add_argument("--workdir", default=".", help="the folder uploaded with the job; it must hold FILE and its "
                                                 "relative data paths (default: .)")
    set_option(p, "as for run")
    p.add_argument("--trials", type=int, help="search.num_trials")
    p.add_argument("--storage", help="results folder on the cluster, absolute and mounted by every node "
                                     "(default: the cluster's $HPSWEEP_STORAGE)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI as the cluster reaches it (default: the "
                                          "cluster's $MLFLOW_TRACKING_URI)")
    p.set_defaults(func=cmd_submit)
