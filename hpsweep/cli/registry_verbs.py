"""`hpsweep promote` and `predict`: the Model Registry side of a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpsweep.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    at_least,
    checked,
    non_negative,
    probability,
    tracking_uri_option,
)
from hpsweep.cli.inspect_verbs import SWEEP_HELP
from hpsweep.cli.render import print_confirmation, print_decision
from hpsweep.errors import UserError
from hpsweep.spec.fields import check_alias, check_name
from hpsweep.track.uris import check_tracking_uri


def cmd_promote(args: argparse.Namespace) -> int:
    """Evaluate the sweep's best model and the champion on the test split; move the alias only if it wins.
    With --confirm, the top configurations are re-trained with fresh seeds first (sweep/confirm.py)."""
    from hpsweep.registry.promote import promote, target
    from hpsweep.sweep.quiet import quiet

    if args.confirm is None:
        given = [flag for flag, value in (("--seeds", args.seeds), ("--confidence", args.confidence))
                 if value is not None]
        if given:
            raise UserError(f"{given[0]}: takes effect with --confirm K")
        with quiet(args.verbose):
            decision = promote(args.sweep, model_name=args.model_name, alias=args.alias,
                               min_improvement=args.min_improvement, dry_run=args.dry_run, uri=args.tracking_uri,
                               storage=args.storage)
        print_decision(decision)
        return EXIT_OK
    check_tracking_uri(args.tracking_uri)
    with quiet(args.verbose):
        goal = target(args.sweep, args.model_name, args.alias, args.min_improvement, args.tracking_uri)
    return _confirm(args, goal)


def _confirm(args: argparse.Namespace, goal: Any) -> int:
    import sys

    from hpsweep.cli.live import LiveView
    from hpsweep.sweep.confirm import ConfirmationInterrupted, Request, confirm
    from hpsweep.sweep.interrupt import exit_code, terminate_as_interrupt
    from hpsweep.sweep.quiet import quiet

    request = Request(args.confirm, 3 if args.seeds is None else args.seeds,
                      0.95 if args.confidence is None else args.confidence, args.storage)
    spec = goal.sweep.spec
    view = LiveView(spec.train.metrics()[0], spec.train.modes()[0], request.top * request.seeds, sys.stdout.isatty(),
                    scheduler="fifo")
    try:
        with terminate_as_interrupt(), quiet(args.verbose):
            decision = confirm(goal, request, dry_run=args.dry_run,
                               hooks={"on_progress": view.update, "on_status": view.note,
                                      "on_trials": lambda n: setattr(view, "total", n)})
    except ConfirmationInterrupted as stop:
        view.close()
        print(f"interrupted: the confirmation sweep {stop} is kept and nothing was registered; the same "
              f"`hpsweep promote {args.sweep} --confirm {request.top} --seeds {request.seeds}` resumes it",
              file=sys.stderr)
        return exit_code(EXIT_INTERRUPTED)
    finally:
        view.close()
    print_confirmation(decision)
    print_decision(decision)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from hpsweep.registry.predict import predict
    from hpsweep.sweep.quiet import quiet

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; name the CSV to write (for example {out / 'predictions.csv'})")
    with quiet(args.verbose):
        table = predict(args.model_uri, Path(args.input), args.tracking_uri)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    try:
        table.to_csv(partial, index=False)
        partial.replace(out)  # nothing half-written
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {len(table)} predictions to {out}")
    return EXIT_OK


def register(verbs: Any) -> None:
    p = verbs.add_parser("promote", help="register the sweep's best model if it beats the champion on the test split")
    p.add_argument("sweep", metavar="SWEEP", help=SWEEP_HELP)
    p.add_argument("--model-name", type=checked(check_name),
                   help="registered model name (default: registry.model_name, or the sweep name)")
    p.add_argument("--alias", type=checked(check_alias), help="the alias to move (default: registry.alias, champion)")
    p.add_argument("--min-improvement", type=non_negative, help="how much better the test metric must be")
    p.add_argument("--dry-run", action="store_true",
                   help="evaluate and print, write nothing to the registry (--confirm still records its re-training)")
    p.add_argument("--confirm", type=at_least(1), metavar="K",
                   help="first re-train the sweep's top K configurations with fresh seeds, and promote only one "
                        "whose seeds' mean beats the champion with the stated confidence")
    p.add_argument("--seeds", type=at_least(2), metavar="S", help="seeds per configuration with --confirm (default 3)")
    p.add_argument("--confidence", type=probability, help="one-sided confidence of the gate (default 0.95)")
    p.add_argument("--storage", help="results storage: the test split is read through its cache of decoded data, "
                                      "and --confirm's sweep runs there (default: the cache the sweep recorded, "
                                      "if this machine has it; else $HPSWEEP_STORAGE or ./hpsweep-results)")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_promote)

    p = verbs.add_parser("predict", help="apply a model to a folder of images, a CSV of image paths or a table")
    p.add_argument("model_uri", metavar="MODEL_URI", help="e.g. models:/digits-cnn@champion")
    p.add_argument("input", metavar="INPUT", help="folder of images, CSV of image paths, or tabular CSV")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default: predictions.csv)")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_predict)
