"""`hpsweep data`: the bundled datasets written out as files, in the layouts the data sources read."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpsweep.cli.common import EXIT_OK


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


def register(verbs: Any) -> None:
    data = verbs.add_parser("data", help="write bundled datasets as files").add_subparsers(
        dest="data_verb", required=True, metavar="VERB")
    p = data.add_parser("export-digits", help="scikit-learn's digits as image files")
    p.add_argument("folder", metavar="DIR", help="the folder to write")
    p.add_argument("--layout", choices=["folders", "csv", "filename"], default="folders",
                   help="folders: DIR/<digit>/*.png; csv: DIR/labels.csv + DIR/images; filename: label in the name")
    p.set_defaults(func=cmd_export_digits)
    p = data.add_parser("export-diabetes", help="scikit-learn's diabetes table (regression) as a CSV")
    p.add_argument("file", metavar="FILE", help="the CSV to write")
    p.set_defaults(func=cmd_export_diabetes)
