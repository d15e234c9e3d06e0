"""The `hpsweep` command: verbs mapped to library functions. Only this module writes to the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsweep import __version__
from hpsweep.errors import SpecError

if TYPE_CHECKING:
    from hpsweep.space import SearchSpace
    from hpsweep.spec import SweepSpec

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


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
    from hpsweep.space import SearchSpace
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
        searched = len(SearchSpace(spec.space).dimensions())
        print(f"{path}: ok ({spec.num_trials} trials, {spec.search.algorithm}, {searched} searched parameters)")
    return EXIT_BAD_INPUT if failed else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from hpsweep.spec import SweepSpec

    schema = SweepSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hpsweep sweep file"
    print(json.dumps(schema, indent=2 if args.indent else None))
    return EXIT_OK


def cmd_space(args: argparse.Namespace) -> int:
    from hpsweep.space import SearchSpace
    from hpsweep.spec import load_spec

    spec = load_spec(args.file)
    space = SearchSpace(spec.space)
    print(f"sweep {spec.name}: {spec.search.algorithm}, {spec.num_trials} trials")
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
        for index, config in enumerate(_first_configs(spec, space, args.samples), 1):
            print(f"  {index:>3}: " + "  ".join(f"{k}={_short(v)}" for k, v in config.items()))
    return EXIT_OK


def _first_configs(spec: SweepSpec, space: SearchSpace, count: int) -> list[dict[str, Any]]:
    """What the sweep's sampler draws first (before any result could steer it)."""
    if spec.search.algorithm == "grid":
        return list(islice(space.grid(), count))
    import optuna

    from hpsweep.space import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if m == "max" else "minimize" for m in spec.train.modes()]
    study = optuna.create_study(sampler=make_sampler(spec), directions=directions)
    return [space.sample(study.ask()) for _ in range(count)]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
    except KeyboardInterrupt:
        print("hpsweep: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("HPSWEEP_DEBUG"):
            raise
        print(f"hpsweep: error: {type(exc).__name__}: {exc} (set HPSWEEP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
