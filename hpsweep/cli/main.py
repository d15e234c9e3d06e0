"""The `hpsweep` command: verbs mapped to library functions. Only this module writes to the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsweep import __version__
from hpsweep.cli.render import ProgressTable, print_decision, short
from hpsweep.errors import SpecError

if TYPE_CHECKING:
    from hpsweep.spec import SweepSpec

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  #: what a shell reports for a process that SIGPIPE ended


class BadInput(Exception):
    """A problem with what the user gave us; reported as one line and exit code 2."""


def _sweep_files(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders expand to the *.yaml / *.yml files directly inside them."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise BadInput(f"{path}: no .yaml files in this folder")
            files += found
        else:
            files.append(path)
    return files


def cmd_validate(args: argparse.Namespace) -> int:
    from hpsweep.search.space import SearchSpace
    from hpsweep.spec import load_spec

    failed = False
    for path in _sweep_files(args.files):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed = True
            for line in exc.lines():
                print(line, file=sys.stderr)
            continue
        searched = len(SearchSpace.of(spec).dimensions())
        print(f"{path}: ok ({spec.num_trials} trials, {_searching(spec)}, {searched} searched parameters)")
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _searching(spec: SweepSpec) -> str:
    """'tpe search, the first 4 trials at random': the sampler, and how long it draws blind."""
    if spec.startup_trials is None:
        return f"{spec.search.algorithm} search"
    blind = min(spec.startup_trials, spec.num_trials)
    return f"{spec.search.algorithm} search, the first {f'{blind} trials' if blind > 1 else 'trial'} at random"


def cmd_schema(args: argparse.Namespace) -> int:
    from hpsweep.spec import SweepSpec

    schema = SweepSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hpsweep sweep file"
    print(json.dumps(schema, indent=2 if args.indent else None))
    return EXIT_OK


def cmd_space(args: argparse.Namespace) -> int:
    from hpsweep.search.space import SearchSpace
    from hpsweep.spec import load_spec

    spec = load_spec(args.file)
    space = SearchSpace.of(spec)
    print(f"sweep {spec.name}: {spec.num_trials} trials, {_searching(spec)}")
    print("searched:")
    for dim in space.dimensions():
        print(f"  {dim.name:<34} {dim.describe()}")
    print("fixed:")
    for name, value in space.fixed().items():
        print(f"  {name:<34} {value}")
    size = space.grid_size()
    print(f"distinct configurations: {size if size is not None else 'unbounded (continuous ranges)'}")
    if args.samples:
        print(f"first {args.samples} trials the {spec.search.algorithm} sampler draws:")
        from hpsweep.search.space import first_configs

        for index, config in enumerate(first_configs(spec, args.samples), 1):
            print(f"  {index:>3}: " + "  ".join(f"{k}={short(v)}" for k, v in config.items()))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """One trial in this process, without Ray, printing a line per epoch."""
    from hpsweep.search.space import SearchSpace, first_configs
    from hpsweep.spec import load_spec
    from hpsweep.train.checkpoint import save_checkpoint
    from hpsweep.train.data import prepare
    from hpsweep.train.trial import apply_overrides, check_metrics, run_trial

    spec = load_spec(args.file)
    if args.epochs:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": args.epochs})})
    try:
        config = apply_overrides(first_configs(spec, 1)[0], args.set or [])
        SearchSpace.of(spec).resolve(config)
    except ValueError as exc:
        raise BadInput(f"--set: {exc}") from None
    data = prepare(spec)
    check_metrics(spec, data)
    print(f"training {spec.name}: {len(data.train)} train / {len(data.val)} val examples, config:")
    print("  " + "  ".join(f"{k}={short(v)}" for k, v in config.items()))
    out = Path(args.out) if args.out else None

    def show(report: Any) -> None:
        shown = [f"{k} {v:.4g}" for k, v in report.metrics.items() if k.startswith(("train_", "val_"))]
        mark = "  *best" if report.is_best else ""
        print(f"epoch {report.epoch}/{spec.train.epochs}  " + "  ".join(shown)
              + f"  ({report.metrics.get('epoch_time_s', 0):.2f}s){mark}", flush=True)
        if out is not None and report.is_best:
            save_checkpoint(report.state(), out)

    _, result = run_trial(spec, data, config, on_epoch=show)
    print(f"{result.status}: best {spec.train.metrics()[0]} {result.best_value:.4g} at epoch {result.best_epoch}"
          + (f"; best checkpoint in {out}" if out is not None and result.best_epoch else ""))
    return EXIT_FAILURE if result.status == "diverged" else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, then run the sweep on Ray Tune (or resume its unfinished run), showing a table of trials."""
    from hpsweep.spec import validate_data
    from hpsweep.spec.yamlio import read_yaml

    path = Path(args.file)
    raw = read_yaml(path)
    try:
        raw = _apply_sets(raw, args.set or [], trials=args.trials, concurrency=args.concurrency)
    except ValueError as exc:
        raise BadInput(f"--set: {exc}") from None
    spec = validate_data(raw, str(path), base_dir=path.parent)
    return _launch(args, spec, raw, path.read_text(encoding="utf-8"), f"hpsweep run {path}")


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume the unfinished sweep called NAME with the settings it was started with."""
    from hpsweep.spec import validate_data
    from hpsweep.sweep.state import unfinished_sweep

    root = _results_root(args.storage)
    found = unfinished_sweep(root, args.name)
    if found is None:
        raise BadInput(f"{args.name}: no unfinished sweep of that name in {root}")
    _, state = found
    raw = _apply_sets(state.raw, [], trials=args.trials, concurrency=None)
    spec = validate_data(raw, state.source, base_dir=Path(state.base_dir))
    import yaml

    return _launch(args, spec, raw, yaml.safe_dump(raw, sort_keys=False), f"hpsweep resume {args.name}")


def _results_root(storage: str | None) -> Path:
    from hpsweep.sweep.driver import results_root

    try:
        return results_root(storage)
    except ValueError as exc:
        raise BadInput(f"--storage: {exc}") from None


def _launch(args: argparse.Namespace, spec: Any, raw: dict[str, Any], sweep_text: str, again: str) -> int:
    from hpsweep.sweep.driver import StorageNotShared, plan_sweep, run_sweep
    from hpsweep.sweep.state import SweepBusy, SweepChanged

    _results_root(args.storage)
    try:
        plan = plan_sweep(spec, raw, storage=args.storage, uri=args.tracking_uri,
                          restart=getattr(args, "restart", False))
    except SweepChanged as exc:
        raise BadInput(str(exc)) from None
    if plan.abandoned is not None:
        print(f"--restart: sweep {plan.abandoned[1].sweep_id} is abandoned (its open runs are closed); "
              f"starting afresh")
    verb = "resuming" if plan.resuming else "starting"
    print(f"{verb} sweep {plan.sweep_id}: {spec.num_trials} trials, {_searching(spec)}, "
          f"{spec.search.scheduler.name} scheduler, optimising {spec.train.metrics()[0]}")
    table = ProgressTable(spec.train.metrics()[0], sys.stdout.isatty())
    try:
        outcome = run_sweep(spec, plan, sweep_text, on_progress=table.update, verbose=args.verbose)
    except (SweepBusy, StorageNotShared) as exc:
        raise BadInput(str(exc)) from None
    finally:
        table.close()
    total = len(outcome.trials)
    if outcome.interrupted:
        print(f"interrupted: {total} of {spec.num_trials} trials started; state saved in {outcome.results}; "
              f"open runs are marked KILLED. `{again}` resumes it")
    else:
        print(f"{total} trials: {total - outcome.failed} finished, {outcome.failed} failed")
    if outcome.best is not None:
        _, record = outcome.best
        print(f"best: trial {record.number}, {outcome.metric} {record.best:.4g}")
        print("  " + "  ".join(f"{k}={v}" for k, v in outcome.best_params.items()))
    print(f"MLflow: experiment {outcome.experiment!r}, parent run {outcome.parent_run_id} ({outcome.tracking_uri})")
    if outcome.report is not None:
        print(f"report: {outcome.report} (also under report/ in the parent run's artifacts)")
    print(f"see it: mlflow ui --backend-store-uri {outcome.tracking_uri}  (then open http://127.0.0.1:5000)")
    if outcome.interrupted:
        return 130
    return EXIT_FAILURE if total and outcome.failed == total else EXIT_OK


def _apply_sets(raw: dict[str, Any], sets: Sequence[str], trials: int | None, concurrency: int | None
                ) -> dict[str, Any]:
    """`section.key=value` sets a sweep-file value; a bare `key=value` fixes a hyperparameter (space.key)."""
    import copy

    from hpsweep.spec import SweepSpec
    from hpsweep.spec.yamlio import parse_scalar

    out = copy.deepcopy(raw)
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"takes key=value (got {item!r})")
        path = key.strip().split(".")
        if path[0] not in SweepSpec.model_fields:
            path = ["space", *path]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key} does not name a mapping in the sweep file")
        node[path[-1]] = parse_scalar(value)
    for name, number in (("num_trials", trials), ("max_concurrent", concurrency)):
        if number is not None:
            out.setdefault("search", {})[name] = number
    return out


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit the sweep to a Ray cluster as a job; print its id, and with --follow its log."""
    from hpsweep.spec import load_spec
    from hpsweep.sweep.quiet import quiet
    from hpsweep.sweep.submit import SubmitError, follow, jobs_address, submit

    path = Path(args.file)
    spec = load_spec(path)
    run_args = [a for item in args.set or [] for a in ("--set", item)]
    run_args += ["--trials", str(args.trials)] if args.trials else []
    import ray.job_submission  # noqa: F401  (Ray sets up its loggers on import: import, then silence)

    try:
        with quiet(args.verbose):
            job_id = submit(spec, path, workdir=Path(args.workdir), address=args.address, storage=args.storage,
                            tracking_uri=args.tracking_uri, run_args=run_args)
    except SubmitError as exc:
        raise BadInput(str(exc)) from None
    except ConnectionError as exc:
        raise BadInput(f"--address: no Ray jobs API at {jobs_address(args.address)} ({exc})") from None
    address = jobs_address(args.address)
    print(f"submitted sweep {spec.name} as job {job_id} to {address}")
    if not args.follow:
        print(f"follow it: hpsweep submit ... --follow, `ray job logs -f {job_id} --address {address}`, "
              f"or hpsweep status --address {address}")
        return EXIT_OK
    status = follow(job_id, args.address, write=lambda chunk: print(chunk, end="", flush=True))
    print(f"job {job_id}: {status}")
    return EXIT_OK if status == "SUCCEEDED" else EXIT_FAILURE


def cmd_status(args: argparse.Namespace) -> int:
    from hpsweep.track.queries import UnknownSweep, sweep_status

    if args.address is not None or args.name is None:
        return _jobs_status(args)
    name = args.name
    if name.endswith((".yaml", ".yml")):
        from hpsweep.spec import load_spec

        name = load_spec(name).experiment_name
    try:
        status = sweep_status(name, args.tracking_uri)
    except UnknownSweep as exc:
        raise BadInput(str(exc)) from None
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
        from hpsweep.spec import load_spec

        name = load_spec(name).name
    try:
        jobs = submitted_sweeps(args.address, name)
    except ConnectionError as exc:
        raise BadInput(f"--address: no Ray jobs API at {jobs_address(args.address)} ({exc})") from None
    print(f"sweeps submitted to {jobs_address(args.address)}:")
    print(f"{'job':<48} {'sweep':<20} {'status':<10} started")
    import time

    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started)) if job.started else "-"
        print(f"{job.job_id:<48} {job.sweep:<20} {job.status:<10} {started}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the sweep report (files and one HTML page) and log it to the sweep's parent run."""
    from hpsweep.report.gather import ReportError, write_report
    from hpsweep.sweep.quiet import quiet

    try:
        with quiet(args.verbose):  # MLflow draws a progress bar for every artifact it downloads
            report = write_report(args.sweep, Path(args.out) if args.out else None, args.tracking_uri,
                                  log_to_mlflow=not args.no_log)
    except ReportError as exc:
        raise BadInput(str(exc)) from None
    best = report.best
    print(f"sweep {report.sweep_id}: {len(report.trials)} trials"
          + (f", best {best.name} with {report.metric} {best.best:.4g}" if best is not None else ", no result"))
    for warning in report.warnings:
        print(f"warning: {warning.message}")
    if report.importances:
        print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in report.importances.items()))
    print(f"report: {report.files['html']}")
    if not args.no_log:
        print(f"logged to run {report.parent_run_id} under report/")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """Two sweeps' best trials side by side, and how their search spaces differ."""
    from hpsweep.report.gather import ReportError, compare_sweeps
    from hpsweep.sweep.quiet import quiet

    try:
        with quiet(args.verbose):
            found = compare_sweeps(args.sweep_a, args.sweep_b, args.tracking_uri)
    except ReportError as exc:
        raise BadInput(str(exc)) from None
    a, b = found.a, found.b
    rows = [("sweep", a.sweep_id, b.sweep_id), ("trials", str(len(a.trials)), str(len(b.trials)))]
    metric = a.metric if a.metric == b.metric else f"{a.metric} / {b.metric}"
    rows.append((f"best {metric}", f"{a.best.best:.4g}" if a.best else "-", f"{b.best.best:.4g}" if b.best else "-"))
    rows.append(("best trial", a.best.name if a.best else "-", b.best.name if b.best else "-"))
    rows.append(("trial-epochs", str(a.compute.get("trial_epochs", 0)), str(b.compute.get("trial_epochs", 0))))
    left, right = (a.best.params if a.best else {}), (b.best.params if b.best else {})
    for name in [*left, *(k for k in right if k not in left)]:
        rows.append((f"  {name}", _short(left.get(name, "-")), _short(right.get(name, "-"))))
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


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_promote(args: argparse.Namespace) -> int:
    """Evaluate the sweep's best model and the champion on the test split; move the alias only if it wins."""
    from hpsweep.registry.promote import PromotionError, promote
    from hpsweep.sweep.quiet import quiet

    try:
        with quiet(args.verbose):
            decision = promote(args.sweep, model_name=args.model_name, alias=args.alias,
                               min_improvement=args.min_improvement, dry_run=args.dry_run, uri=args.tracking_uri)
    except PromotionError as exc:
        raise BadInput(str(exc)) from None
    print_decision(decision)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from hpsweep.registry.predict import PredictError, predict
    from hpsweep.sweep.quiet import quiet

    try:
        with quiet(args.verbose):
            table = predict(args.model_uri, Path(args.input), args.tracking_uri)
    except PredictError as exc:
        raise BadInput(str(exc)) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    table.to_csv(partial, index=False)
    partial.replace(out)  # nothing half-written
    print(f"wrote {len(table)} predictions to {out}")
    return EXIT_OK


def cmd_export_digits(args: argparse.Namespace) -> int:
    from hpsweep.train.data.digits import export_digits

    count = export_digits(Path(args.folder), args.layout)
    print(f"wrote {count} digit images to {args.folder} ({args.layout} layout)")
    return EXIT_OK


def cmd_export_diabetes(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    print(f"wrote {len(frame)} rows to {path} (target column: target)")
    return EXIT_OK


def _tracking_uri_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def _storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="folder of Ray Tune state and checkpoints, one subfolder per sweep "
                                          "(default: $HPSWEEP_STORAGE or ./hpsweep-results)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpsweep", description="Hyperparameter sweeps for PyTorch.")
    parser.add_argument("--version", action="version", version=f"hpsweep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("validate", help="check sweep files; exit 2 with one line per problem")
    p.add_argument("files", nargs="+", metavar="FILE", help="sweep YAML files or folders of them")
    p.set_defaults(func=cmd_validate)

    p = verbs.add_parser("schema", help="print the JSON Schema of sweep files (for editors)")
    p.add_argument("--indent", action="store_true", help="pretty-print")
    p.set_defaults(func=cmd_schema)

    p = verbs.add_parser("space", help="show a sweep's search space and the first trials it draws")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--samples", type=int, default=0, metavar="N", help="also draw N trial configs")
    p.set_defaults(func=cmd_space)

    p = verbs.add_parser("train", help="train one trial here, without Ray (the sweep's first config, or --set)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="fix a hyperparameter, e.g. --set lr=0.01 --set optimizer=sgd (repeatable)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--out", metavar="DIR", help="save the best epoch's checkpoint here")
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("run", help="run a sweep on Ray Tune and record it in MLflow")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override the sweep file: train.epochs=3, or a hyperparameter: lr=0.01 (repeatable)")
    p.add_argument("--trials", type=int, help="search.num_trials")
    p.add_argument("--concurrency", type=int, help="search.max_concurrent")
    p.add_argument("--restart", action="store_true",
                   help="abandon this sweep's unfinished run, if any, and start afresh (default: resume it)")
    _tracking_uri_option(p)
    _storage_option(p)
    p.set_defaults(func=cmd_run)

    p = verbs.add_parser("resume", help="resume an interrupted sweep by name, with the settings it started with")
    p.add_argument("name", metavar="NAME", help="the sweep's name")
    p.add_argument("--trials", type=int, help="raise (or lower) search.num_trials")
    _tracking_uri_option(p)
    _storage_option(p)
    p.set_defaults(func=cmd_resume)

    p = verbs.add_parser("submit", help="submit a sweep to a Ray cluster as a Ray job (uploads the working folder)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--address", help="the cluster's dashboard, e.g. http://HEAD:8265 (default: $RAY_JOBS_ADDRESS, "
                                     "$RAY_ADDRESS if an http URL, or http://127.0.0.1:8265)")
    p.add_argument("--follow", action="store_true",
                   help="stream the job's log until it ends; exit 1 unless it succeeds")
    p.add_argument("--workdir", default=".", help="the folder uploaded with the job; it must hold FILE and its "
                                                 "relative data paths (default: .)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="as for run (repeatable)")
    p.add_argument("--trials", type=int, help="search.num_trials")
    p.add_argument("--storage", help="results folder on the cluster, absolute and mounted by every node "
                                     "(default: the cluster's $HPSWEEP_STORAGE)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI as the cluster reaches it (default: the "
                                          "cluster's $MLFLOW_TRACKING_URI)")
    p.set_defaults(func=cmd_submit)

    p = verbs.add_parser("status", help="the trials of the latest run of a sweep (MLflow), or the sweeps submitted "
                                        "to a cluster (--address)")
    p.add_argument("name", metavar="NAME", nargs="?", help="the sweep's name (its MLflow experiment), or its YAML file")
    _tracking_uri_option(p)
    p.add_argument("--address", help="list the sweeps submitted to this cluster (its dashboard URL)")
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser("report", help="the sweep report: leaderboard, curves, importances, range warnings, "
                         "best.yaml and one HTML page; logged to the sweep's parent run")
    p.add_argument("sweep", metavar="SWEEP", help="a sweep's name, its YAML file, or its parent run ID")
    p.add_argument("--out", metavar="DIR", help="where to write it (default: hpsweep-reports/<sweep id>)")
    p.add_argument("--no-log", action="store_true", help="write the files only; log nothing to MLflow")
    _tracking_uri_option(p)
    p.set_defaults(func=cmd_report)

    p = verbs.add_parser("compare", help="two sweeps' best trials side by side, and how their spaces differ")
    p.add_argument("sweep_a", metavar="SWEEP_A", help="a sweep's name, its YAML file, or its parent run ID")
    p.add_argument("sweep_b", metavar="SWEEP_B")
    _tracking_uri_option(p)
    p.set_defaults(func=cmd_compare)

    p = verbs.add_parser("promote", help="register the sweep's best model if it beats the champion on the test split")
    p.add_argument("sweep", metavar="SWEEP", help="a sweep's name, its YAML file, or its parent run ID")
    p.add_argument("--model-name", help="registered model name (default: registry.model_name, or the sweep name)")
    p.add_argument("--alias", help="the alias to move (default: registry.alias, champion)")
    p.add_argument("--min-improvement", type=float, help="how much better the test metric must be")
    p.add_argument("--dry-run", action="store_true", help="evaluate and print, write nothing")
    _tracking_uri_option(p)
    p.set_defaults(func=cmd_promote)

    p = verbs.add_parser("predict", help="apply a model to a folder of images, a CSV of image paths or a table")
    p.add_argument("model_uri", metavar="MODEL_URI", help="e.g. models:/digits-cnn@champion")
    p.add_argument("input", metavar="INPUT", help="folder of images, CSV of image paths, or tabular CSV")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default: predictions.csv)")
    _tracking_uri_option(p)
    p.set_defaults(func=cmd_predict)

    data = verbs.add_parser("data", help="write bundled datasets as files").add_subparsers(
        dest="data_verb", required=True, metavar="VERB")
    p = data.add_parser("export-digits", help="scikit-learn's digits as image files")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--layout", choices=["folders", "csv", "filename"], default="folders",
                   help="folders: DIR/<digit>/*.png; csv: DIR/labels.csv + DIR/images; filename: label in the name")
    p.set_defaults(func=cmd_export_digits)
    p = data.add_parser("export-diabetes", help="scikit-learn's diabetes table (regression) as a CSV")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_export_diabetes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hpsweep.errors import CheckpointError, ModelError  # torch-free: validate stays fast
    from hpsweep.train.trainable import UnknownTrainable

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except SpecError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInput as exc:
        print(f"hpsweep: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ModelError, CheckpointError, UnknownTrainable) as exc:
        print(f"hpsweep: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("hpsweep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader stopped early (`hpsweep status ... | head`): not an error. Output still buffered
        # for the closed pipe goes nowhere, so Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get("HPSWEEP_DEBUG"):
            raise
        print(f"hpsweep: error: {type(exc).__name__}: {exc} (set HPSWEEP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
