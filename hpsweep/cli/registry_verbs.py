"""`hpsweep promote` and `predict`: the Model Registry side of a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpsweep.cli.common import EXIT_OK, checked, non_negative, tracking_uri_option
from hpsweep.cli.inspect_verbs import SWEEP_HELP
from hpsweep.cli.render import print_decision
from hpsweep.errors import UserError
from hpsweep.spec.fields import check_alias, check_name


def cmd_promote(args: argparse.Namespace) -> int:
    """Evaluate the sweep's best model and the champion on the test split; move the alias only if it wins."""
    from hpsweep.registry.promote import promote
    from hpsweep.sweep.quiet import quiet

    with quiet(args.verbose):
        decision = promote(args.sweep, model_name=args.model_name, alias=args.alias,
                           min_improvement=args.min_improvement, dry_run=args.dry_run, uri=args.tracking_uri)
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
    p.add_argument("--dry-run", action="store_true", help="evaluate and print, write nothing")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_promote)

    p = verbs.add_parser("predict", help="apply a model to a folder of images, a CSV of image paths or a table")
    p.add_argument("model_uri", metavar="MODEL_URI", help="e.g. models:/digits-cnn@champion")
    p.add_argument("input", metavar="INPUT", help="folder of images, CSV of image paths, or tabular CSV")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default: predictions.csv)")
    tracking_uri_option(p)
    p.set_defaults(func=cmd_predict)
